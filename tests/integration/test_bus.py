"""The bus: channels in the core, driven through the broadcast plugin.

With workers = 1 the store is in the process; with workers = 2 it is in
the master and every worker reaches it over its socket.  Either way a
message reaches every subscriber exactly once, every subscriber sees one
order, each delivered message carries the channel's offset and epoch, and
a subscriber coming back with "since" gets what it missed (recovered) or
is told it cannot (recovered false).  Which worker took a connection is
asked of the test plugin `worker`.  Every wait is on a reply or a log
line, each bounded.
"""

import asyncio
import json
import os
import signal
import time

import pytest
import websockets

from harness import SLOW, config, run_wsplugd
from test_redis import publish_all_once_in_order

TEST_PLUGINS = os.environ.get("WSPLUGD_TEST_PLUGIN_DIR",
                              "tests/plugins/.libs")
WORKER_SO = os.path.join(TEST_PLUGINS, "worker.so")


def bus_config(workers, bus=None, broadcast=None):
    bus = {"backend": "local", **(bus or {})}
    extra = "\n[bus]\n" + "".join(f"{k} = {v}\n" for k, v in bus.items())
    return config(plugins=("broadcast", "worker"),
                  server={"workers": workers, "max_connections": 2000},
                  log={"level": "info"},
                  plugin_sections={"worker": {"path": WORKER_SO},
                                   "broadcast": broadcast or {}},
                  extra=extra)


def start(wsplugd, workers, **kw):
    d = wsplugd(text=bus_config(workers, **kw))
    if workers > 1:
        d.wait_for("master.ready", timeout=30)
    return d


def run(coro, timeout=120):
    return asyncio.run(asyncio.wait_for(coro, timeout=timeout * SLOW))


async def recv(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), 20 * SLOW))


async def typed(ws, want):
    """The next message of type want; anything else in between fails."""
    m = await recv(ws)
    assert m["type"] == want, m
    return m


async def connect(d):
    ws = await websockets.connect(d.url, open_timeout=30 * SLOW,
                                  close_timeout=10 * SLOW, ping_interval=None,
                                  max_queue=None)
    await ws.send(json.dumps({"type": "whoami"}))
    r = await typed(ws, "whoami")
    return ws, int(r["worker"] or 0)


async def spread(d, workers, count):
    """count connections, at least one on each worker."""
    conns = []
    while len(conns) < count or len({w for _, w in conns}) < workers:
        conns.append(await connect(d))
        assert len(conns) < 400, "connections never reached every worker"
    return conns


async def subscribe(ws, channel, since=None, **extra):
    msg = {"type": "subscribe", "channel": channel, **extra}
    if since is not None:
        msg["since"] = since
    await ws.send(json.dumps(msg))


@pytest.mark.parametrize("workers", [1, 2])
def test_every_subscriber_once_in_one_order_across_workers(wsplugd, workers):
    d = start(wsplugd, workers)
    per_publisher = 60

    async def main():
        subs = await spread(d, workers, 12)
        for ws, _ in subs:
            await subscribe(ws, "news")
        counts = []
        for ws, _ in subs:
            r = await typed(ws, "subscribed")
            assert r["recovered"] is False and r["offset"] == 0
            counts.append(r["subscribers"])
        # workers' subscribes reach the store in any order between them;
        # the last one it took counts them all
        assert max(counts) == len(subs)
        # One publisher on each worker, publishing at once.
        pubs = await spread(d, workers, workers)
        byw = {}
        for ws, w in pubs:
            byw.setdefault(w, ws)
        pubs = list(byw.values())

        # offsets 1..total, one epoch, each publisher's messages in its
        # own order, the very same sequence for every subscriber
        await publish_all_once_in_order(pubs, [ws for ws, _ in subs],
                                        per_publisher)
        # and nothing more: a ping-like probe comes back before anything
        for ws, _ in subs:
            await ws.send(json.dumps({"type": "whoami"}))
            await typed(ws, "whoami")
        for ws, _ in subs + [(p, 0) for p in pubs]:
            await ws.close()

    run(main())


@pytest.mark.parametrize("workers", [1, 2])
def test_publish_ack_counts_every_worker(wsplugd, workers):
    d = start(wsplugd, workers)

    async def main():
        subs = await spread(d, workers, 6)
        for ws, _ in subs:
            await subscribe(ws, "room")
            await typed(ws, "subscribed")
        pub, _ = await connect(d)
        await pub.send(json.dumps({"type": "publish", "channel": "room",
                                   "data": "hi", "id": 7}))
        ack = await typed(pub, "published")
        assert ack["delivered"] == len(subs) and ack["id"] == 7
        assert ack["offset"] == 1 and ack["epoch"]
        for ws, _ in subs:
            m = await typed(ws, "message")
            assert m["offset"] == 1 and m["epoch"] == ack["epoch"]
        # presence lists the connections of every worker
        await pub.send(json.dumps({"type": "presence", "channel": "room"}))
        p = await typed(pub, "presence")
        assert p["total"] == len(subs) and len(p["connections"]) == len(subs)
        for ws, _ in subs + [(pub, 0)]:
            await ws.close()

    run(main())


async def history_of(d, channel, n):
    """Publish n messages on channel from a fresh connection; the acks."""
    pub, _ = await connect(d)
    acks = []
    for i in range(n):
        await pub.send(json.dumps({"type": "publish", "channel": channel,
                                   "data": i, "id": i}))
        acks.append(await typed(pub, "published"))
    await pub.close()
    return acks


@pytest.mark.parametrize("workers", [1, 2])
def test_since_recovers_what_was_missed_then_live(wsplugd, workers):
    d = start(wsplugd, workers)

    async def main():
        ws, w1 = await connect(d)
        await subscribe(ws, "feed")
        await typed(ws, "subscribed")
        await history_of(d, "feed", 5)
        seen = [await typed(ws, "message") for _ in range(5)]
        last = seen[-1]
        await ws.close()
        await history_of(d, "feed", 10)  # missed while away
        # come back, as many times as there are workers, the first time
        # on another worker than before: each time the missed ones, then
        # live
        for k in range(workers + 1):
            ws, w2 = await connect(d)
            tries = 0
            while k == 0 and workers > 1 and w2 == w1:
                await ws.close()
                ws, w2 = await connect(d)
                tries += 1
                assert tries < 400, "never reached the other worker"
            await subscribe(ws, "feed", {"offset": last["offset"],
                                         "epoch": last["epoch"]})
            got = [await typed(ws, "message") for _ in range(10 + k)]
            assert [m["offset"] for m in got] == list(range(6, 16 + k))
            assert [m["data"] for m in got[:10]] == list(range(10))
            r = await typed(ws, "subscribed")
            assert r["recovered"] is True and r["offset"] == 15 + k
            await history_of(d, "feed", 1)
            m = await typed(ws, "message")
            assert m["offset"] == 16 + k and m["epoch"] == last["epoch"]
            await ws.close()

    run(main())


@pytest.mark.parametrize("workers", [1, 2])
def test_since_past_history_size_is_not_recovered(wsplugd, workers):
    d = start(wsplugd, workers, bus={"history_size": 5})

    async def main():
        acks = await history_of(d, "feed", 3)
        ws, _ = await connect(d)
        # within history: the 2 after offset 1
        await subscribe(ws, "feed", {"offset": 1, "epoch": acks[0]["epoch"]})
        got = [await typed(ws, "message") for _ in range(2)]
        assert [m["offset"] for m in got] == [2, 3]
        assert (await typed(ws, "subscribed"))["recovered"] is True
        await ws.close()
        await history_of(d, "feed", 10)  # 13 now, 9..13 kept
        ws, _ = await connect(d)
        await subscribe(ws, "feed", {"offset": 3, "epoch": acks[0]["epoch"]})
        r = await typed(ws, "subscribed")  # no replay before it
        assert r["recovered"] is False and r["offset"] == 13
        await subscribe(ws, "feed2", {"offset": 8, "epoch": r["epoch"]})
        assert (await typed(ws, "subscribed"))["recovered"] is False
        await ws.close()
        ws, _ = await connect(d)
        await subscribe(ws, "feed", {"offset": 8, "epoch": r["epoch"]})
        got = [await typed(ws, "message") for _ in range(5)]
        assert [m["offset"] for m in got] == [9, 10, 11, 12, 13]
        assert (await typed(ws, "subscribed"))["recovered"] is True
        await ws.close()

    run(main())


@pytest.mark.parametrize("workers", [1, 2])
def test_epoch_mismatch_is_not_recovered(wsplugd, workers):
    d = start(wsplugd, workers)

    async def main():
        acks = await history_of(d, "feed", 4)
        ws, _ = await connect(d)
        await subscribe(ws, "feed", {"offset": 2, "epoch": "0000000000000000"})
        r = await typed(ws, "subscribed")
        assert r["recovered"] is False and r["offset"] == 4
        assert r["epoch"] == acks[0]["epoch"]
        # a live message follows, offset 5: nothing of the history
        await history_of(d, "feed", 1)
        assert (await typed(ws, "message"))["offset"] == 5
        # a bad since is an error reply, the connection lives on
        await subscribe(ws, "x", {"offset": -1, "epoch": "e"}, id=3)
        e = await typed(ws, "error")
        assert e["code"] == "invalid_since" and e["id"] == 3
        await ws.close()

    run(main())


@pytest.mark.parametrize("workers", [1, 2])
def test_history_ttl_forgets(wsplugd, workers):
    d = start(wsplugd, workers, bus={"history_ttl": "1s"})

    async def main():
        acks = await history_of(d, "feed", 3)
        since = {"offset": 1, "epoch": acks[0]["epoch"]}
        ws, _ = await connect(d)
        await subscribe(ws, "feed", since)
        assert (await typed(ws, "message"))["offset"] == 2
        assert (await typed(ws, "message"))["offset"] == 3
        assert (await typed(ws, "subscribed"))["recovered"] is True
        await ws.close()
        # The history expires 1 s after the publish, applied once a
        # second: within a bounded wait, since no longer recovers.
        deadline = time.monotonic() + 10 * SLOW
        while True:
            ws, _ = await connect(d)
            await subscribe(ws, "feed", since)
            r = await recv(ws)
            while r["type"] == "message":
                r = await recv(ws)
            await ws.close()
            if r["recovered"] is False:
                break
            assert time.monotonic() < deadline, "history never expired"
            await asyncio.sleep(0.2)
        # the channel had no subscriber and no history left: it is gone,
        # and comes back under a new epoch
        assert r["epoch"] != acks[0]["epoch"] and r["offset"] == 0

    run(main())


@pytest.mark.parametrize("workers", [1, 2])
def test_history_memory_caps_every_channel(wsplugd, workers):
    d = start(wsplugd, workers, bus={"history_memory": "4KiB"})

    async def main():
        pub, _ = await connect(d)
        big = "x" * 1000
        for i in range(10):
            await pub.send(json.dumps({"type": "publish", "channel": "a",
                                       "data": big, "id": i}))
            ack = await typed(pub, "published")
        # 4 KiB holds 3 of these: the oldest are gone
        ws, _ = await connect(d)
        await subscribe(ws, "a", {"offset": 1, "epoch": ack["epoch"]})
        assert (await typed(ws, "subscribed"))["recovered"] is False
        await subscribe(ws, "b")
        await typed(ws, "subscribed")
        await subscribe(ws, "a2", {"offset": 8, "epoch": ack["epoch"]})
        assert (await typed(ws, "subscribed"))["recovered"] is False
        await ws.close()
        ws, _ = await connect(d)
        await subscribe(ws, "a", {"offset": 8, "epoch": ack["epoch"]})
        assert [(await typed(ws, "message"))["offset"]
                for _ in range(2)] == [9, 10]
        assert (await typed(ws, "subscribed"))["recovered"] is True
        await ws.close()
        await pub.close()

    run(main())


def test_metrics_count_the_bus(wsplugd):
    from test_workers import metrics_until, one
    d = start(wsplugd, 2)

    async def main():
        subs = await spread(d, 2, 4)
        for ws, _ in subs:
            await subscribe(ws, "m")
            await typed(ws, "subscribed")
        await history_of(d, "m", 3)
        for ws, _ in subs:
            for _ in range(3):
                await typed(ws, "message")
        for ws, _ in subs:
            await ws.close()
        return len(subs)

    n = run(main())
    s = metrics_until(d, lambda s: one(s, "wsplugd_bus_delivered_total")
                      >= 3 * n and one(s, "wsplugd_bus_history_bytes") > 0)
    assert one(s, "wsplugd_bus_published_total") == 3
    assert one(s, "wsplugd_bus_delivered_total") == 3 * n
    assert one(s, "wsplugd_bus_channels") == 1
    assert one(s, "wsplugd_bus_history_bytes") > 0


def test_a_dead_worker_leaves_its_channels(wsplugd):
    d = start(wsplugd, 2)

    async def main():
        subs = await spread(d, 2, 6)
        for ws, _ in subs:
            await subscribe(ws, "c")
            await typed(ws, "subscribed")
        victim = [ws for ws, w in subs if w == 2]
        alive = [ws for ws, w in subs if w != 2]
        mark = d.mark()
        await victim[0].send(json.dumps({"type": "crash"}))
        d.wait_for("worker.exit", timeout=20 * SLOW, start=mark)
        d.wait_for("worker.ready", timeout=20 * SLOW, start=mark)
        pub = None
        while pub is None:  # publish from the worker that lived
            ws, w = await connect(d)
            if w == 1:
                pub = ws
        await pub.send(json.dumps({"type": "publish", "channel": "c",
                                   "data": 1, "id": 1}))
        ack = await typed(pub, "published")
        assert ack["delivered"] == len(alive)
        for ws in alive:
            assert (await typed(ws, "message"))["data"] == 1
            await ws.close()
        await pub.close()

    run(main())


def test_an_unknown_backend_is_a_config_error(tmp_path):
    conf = tmp_path / "wsplugd.conf"
    conf.write_text(bus_config(1, bus={"backend": "memcached"}))
    res = run_wsplugd(["-t", "-c", str(conf)])
    assert res.returncode == 1
    lines = conf.read_text().splitlines()
    line = lines.index("backend = memcached") + 1
    assert f"{conf}:{line}: [bus] backend: invalid backend 'memcached' " \
        "(expected local or redis)" in res.stderr + res.stdout


def test_an_abi_2_plugin_is_refused(tmp_path):
    conf = tmp_path / "wsplugd.conf"
    conf.write_text(config(plugins=("ping", "abi2"), plugin_sections={
        "abi2": {"path": os.path.join(TEST_PLUGINS, "abi2.so")}}))
    res = run_wsplugd(["-t", "-c", str(conf)])
    assert res.returncode == 1
    assert "was built for plugin ABI 2, this wsplugd has ABI 3: rebuild " \
        "the plugin" in res.stderr + res.stdout


@pytest.mark.parametrize("workers", [1, 2])
def test_reload_applies_history_limits_and_keeps_subscriptions(wsplugd,
                                                               workers):
    d = start(wsplugd, workers)

    async def main():
        subs = await spread(d, workers, 4)
        for ws, _ in subs:
            await subscribe(ws, "r")
            await typed(ws, "subscribed")
        acks = await history_of(d, "r", 10)
        for ws, _ in subs:
            for _ in range(10):
                await typed(ws, "message")
        with open(d.conf, "w") as f:
            f.write(bus_config(workers, bus={"history_size": 2}))
        mark = d.mark()
        d.signal(signal.SIGHUP)
        d.wait_for("reload", start=mark, result="ok", timeout=60 * SLOW,
                   **({"workers": workers} if workers > 1 else {}))
        epoch = acks[0]["epoch"]
        ws, _ = await connect(d)
        await subscribe(ws, "r", {"offset": 7, "epoch": epoch})
        assert (await typed(ws, "subscribed"))["recovered"] is False
        await subscribe(ws, "r2", {"offset": 0, "epoch": "x"})
        await typed(ws, "subscribed")
        await ws.close()
        ws, _ = await connect(d)
        await subscribe(ws, "r", {"offset": 8, "epoch": epoch})
        assert [(await typed(ws, "message"))["offset"]
                for _ in range(2)] == [9, 10]
        assert (await typed(ws, "subscribed"))["recovered"] is True
        await ws.close()
        # the subscriptions made before the reload still deliver
        await history_of(d, "r", 1)
        for ws, _ in subs:
            assert (await typed(ws, "message"))["offset"] == 11
            await ws.close()

    run(main())


def test_presence_events_cross_workers(wsplugd):
    d = start(wsplugd, 2, broadcast={"presence": "yes"})

    async def main():
        conns = await spread(d, 2, 2)
        a = next(ws for ws, w in conns if w == 1)
        b = next(ws for ws, w in conns if w == 2)
        await subscribe(a, "p")
        await typed(a, "subscribed")
        await subscribe(b, "p")
        await typed(b, "subscribed")
        await b.send(json.dumps({"type": "whoami"}))
        bid = None
        ev = await typed(a, "presence")
        assert ev["event"] == "join" and ev["channel"] == "p"
        bid = ev["connectionId"]
        # b hears nothing of its own join; a's own join may reach it,
        # though, when a's announcement was published after b's subscribe
        # reached the store (the two race through the master)
        while True:
            m = await recv(b)
            if m["type"] == "whoami":
                break
            assert m["type"] == "presence" and m["connectionId"] != bid, m
        await b.close()
        ev = await typed(a, "presence")
        assert ev["event"] == "leave" and ev["connectionId"] == bid
        for ws, _ in conns:
            await ws.close()

    run(main())


@pytest.mark.parametrize("workers", [1, 2])
def test_connections_gone_before_their_answers(wsplugd, workers):
    d = start(wsplugd, workers, broadcast={"presence": "yes"})

    async def main():
        for i in range(30):
            ws, _ = await connect(d)
            await subscribe(ws, "g", id=i)
            await ws.send(json.dumps({"type": "publish", "channel": "g",
                                      "data": i, "id": i}))
            await ws.send(json.dumps({"type": "presence", "channel": "g"}))
            await ws.close()
        # the daemon carries on: a last one is answered in full
        ws, _ = await connect(d)
        await subscribe(ws, "g")
        r = await typed(ws, "subscribed")
        # (the others' leaving may still be on its way from their worker)
        assert r["subscribers"] >= 1 and r["offset"] == 30
        await ws.close()

    run(main())


def test_since_in_the_browser_clients_flat_form(wsplugd):
    """clients/js resubscribes with "since": N and "epoch": E beside it."""
    d = start(wsplugd, 2)

    async def main():
        acks = await history_of(d, "f", 4)
        ws, _ = await connect(d)
        await ws.send(json.dumps({"type": "subscribe", "channel": "f",
                                  "since": 2, "epoch": acks[0]["epoch"]}))
        assert [(await typed(ws, "message"))["offset"]
                for _ in range(2)] == [3, 4]
        assert (await typed(ws, "subscribed"))["recovered"] is True
        await ws.send(json.dumps({"type": "subscribe", "channel": "f2",
                                  "since": 2}))
        assert (await typed(ws, "subscribed"))["recovered"] is False
        await ws.send(json.dumps({"type": "subscribe", "channel": "f3",
                                  "since": 2, "epoch": 5}))
        assert (await typed(ws, "error"))["code"] == "invalid_since"
        await ws.close()

    run(main())
