"""SIGUSR2 with [server] workers > 1: every worker's connections go to
its successor in the new master, all or nothing.

The daemon runs from a copy of the built binary (test_handover.py's
Upgradable), with workers = 2 (and 4), the broadcast plugin and the
clients of test_handover.py pinging; subscribers of a busy channel check
that each message comes once, in order, across every hand-over.  The
failures (a config refused, another worker count, a crash, a hang) leave
the old daemon with every connection.  Every wait is bounded.
"""

import asyncio
import json
import os
import signal
import time

import pytest

import harness
from harness import SLOW, WRAPPER
from test_handover import (Pingers, alive, fail_then_recover, install,
                           patched, raise_nofile, refused_while_one_runs,
                           until,
                           upgradable)  # noqa: F401 (fixture)
from test_redis import (REDIS, publish, redis,  # noqa: F401 (fixture)
                        subscribe, typed)

CLIENTS = 50 if WRAPPER else 200
SUBSCRIBERS = 10 if WRAPPER else 20
HANDOVERS = 3


class Feed:
    """One publisher sending a message every few ms on channel feed, and
    subscribers that keep every offset they get."""

    def __init__(self, url, n):
        self.url, self.n = url, n
        self.got = []
        self.errors = []
        self.published = 0
        self.stopping = False
        self.tasks = []

    async def open(self):
        self.pub = await harness.ws_connect(self.url, compression=None)
        await self.pub.recv()
        self.subs = []
        for _ in range(self.n):
            ws = await harness.ws_connect(self.url, compression=None)
            await ws.recv()
            await ws.send(json.dumps({"type": "subscribe",
                                      "channel": "feed"}))
            r = json.loads(await asyncio.wait_for(ws.recv(), 10 * SLOW))
            assert r["type"] == "subscribed", r
            self.subs.append(ws)
            self.got.append([])
        self.tasks = [asyncio.ensure_future(self.listen(i, ws))
                      for i, ws in enumerate(self.subs)]
        self.tasks.append(asyncio.ensure_future(self.publish()))

    async def publish(self):
        i = 0
        try:
            while not self.stopping:
                await self.pub.send(json.dumps({
                    "type": "publish", "channel": "feed", "data": i, "id": i}))
                r = json.loads(await asyncio.wait_for(self.pub.recv(),
                                                      20 * SLOW))
                if r.get("type") != "published":
                    self.errors.append(f"publish {i}: {r}")
                    return
                i += 1
                self.published = i
                await asyncio.sleep(0.005)
        except Exception as e:
            self.errors.append("publisher: " + repr(e))

    async def listen(self, k, ws):
        try:
            while True:
                m = json.loads(await ws.recv())
                if m.get("type") == "gap":  # nothing may be missed
                    self.errors.append(f"subscriber {k}: {m}")
                elif m.get("type") == "message":
                    # a message without offset is one Redis never saw
                    if "offset" not in m:
                        self.errors.append(f"subscriber {k}: {m} after "
                                           f"{self.got[k][-3:]}")
                        continue
                    self.got[k].append((m["offset"], m["data"]))
        except Exception as e:
            if not self.stopping:
                self.errors.append(f"subscriber {k}: {e!r}")

    async def close(self):
        self.stopping = True
        await self.tasks[-1]
        # every published message reaches every subscriber
        deadline = time.monotonic() + 10 * SLOW
        while (time.monotonic() < deadline and
               any(len(g) < self.published for g in self.got)):
            await asyncio.sleep(0.05)
        for ws in self.subs + [self.pub]:
            await ws.close()
        await asyncio.gather(*self.tasks[:-1])

    def check(self):
        want = [(i + 1, i) for i in range(self.published)]
        for k, g in enumerate(self.got):
            assert g == want, (k, len(g), self.published,
                               [x for x in g if x not in want][:5],
                               [x for x in want if x not in g][:5])


def adopted(d, mark):
    with d.cond:
        return sum(ev.get("event") == "handover.adopted"
                   for ev in d.events[mark:])


def workers_daemon(upgradable, n, bus="", **server):
    return upgradable(server={"workers": n, **server},
                      extra="\n[plugin:broadcast]\n" + bus)


@pytest.mark.parametrize("n,backend", [(2, "local"), (4, "local"),
                                       (2, "redis")])
def test_workers_hand_over_every_connection(upgradable, redis, n, backend):
    """Clients pinging and subscribers of a busy channel, SIGUSR2 several
    times: nothing closes, every ping is answered, every message comes
    once and in order, the ids stay, the version changes, and a new
    master serves each time.  With Redis, each new worker subscribes
    again before its predecessor leaves, and the offsets Redis keeps go
    on without a gap."""
    raise_nofile()
    bus = ""
    if backend == "redis":
        if REDIS is None:
            pytest.skip("redis-server is not installed (install-deps test)")
        bus = f"\n[bus]\nbackend = redis\nredis = {redis().sock}\n"
    u = workers_daemon(upgradable, n, bus)
    d = u.d
    d.wait_for("master.ready", timeout=30)
    pids = [u.pid]
    figures = []

    async def run():
        p = Pingers(d.url, CLIENTS)
        await p.open()
        feed = Feed(d.url, SUBSCRIBERS)
        await feed.open()
        ids = set(p.ids)
        assert ids <= u.connection_ids()
        for k in range(1, HANDOVERS + 1):
            data, version = patched(u.version, k)
            install(u.binary, data)
            before, pub = p.answered, feed.published
            mark = d.mark()
            done = await asyncio.get_running_loop().run_in_executor(
                None, u.handover)
            assert int(done["workers"]) == n, done
            assert int(done["moved"]) == CLIENTS + SUBSCRIBERS + 1, done
            pids.append(u.pid)
            # each new worker adopted its predecessor's connections
            deadline = time.monotonic() + 10 * SLOW
            while adopted(d, mark) < n and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert adopted(d, mark) == n
            with d.cond:
                pause = max(int(ev["pause_us"]) for ev in d.events[mark:]
                            if ev.get("event") == "handover.moved")
            figures.append((int(done["took_ms"]), pause / 1000))
            d.wait_for("master.ready", start=mark, timeout=30)
            assert u.served_version() == version
            assert ids <= u.connection_ids()
            await until(lambda: p.answered >= before + 2 * CLIENTS, 60)
            try:
                await until(lambda: feed.published >= pub + 20, 30)
            except AssertionError:
                with d.cond:
                    tail = "\n".join(d.lines[-60:])
                raise AssertionError(f"the publisher stalled at "
                                     f"{feed.published} {feed.errors}:"
                                     f"\n{tail}")
            assert p.errors == [], p.errors[:5]
            assert feed.errors == [], feed.errors[:5]
        await feed.close()
        await p.close()
        assert p.errors == [], p.errors[:5]
        assert feed.errors == [], feed.errors[:5]
        feed.check()
        return feed.published, p.longest

    published, longest = asyncio.run(run())
    assert len(set(pids)) == HANDOVERS + 1
    m = u.get("/metrics")
    assert f'wsplugd_handovers_total{{result="ok"}} {HANDOVERS}' in m
    # none of the moved connections was closed by a process (the clients'
    # own closes' lines may still be waiting to be written)
    d.wait_count("ws.close", CLIENTS + SUBSCRIBERS + 1)
    assert len(d.find_all("ws.close")) == CLIENTS + SUBSCRIBERS + 1
    print(f"\n{n} workers, {HANDOVERS} hand-overs: {CLIENTS} pingers, "
          f"{SUBSCRIBERS} subscribers, {published} messages each; "
          f"took_ms/longest worker pause_ms {figures}; longest ping round "
          f"trip {longest * 1000:.1f} ms")


@pytest.mark.parametrize("n", [1, 2])
def test_redis_answer_out_at_the_pause_is_not_lost(upgradable, redis, n):
    """With Redis, a publish whose answer is still out when the
    connections move: redis-server is stopped (SIGSTOP) before the
    publish and SIGUSR2, and let go (SIGCONT) only once the new binary
    has loaded its plugins and the old one stands paused.  The old
    process's Redis connections do not move, so it must take the answer
    before the transfer: the publisher gets its acknowledgement through
    the new process, and the subscriber the message once, with its
    offset.  Before that wait, the acknowledgement died with the old
    process and the publisher waited for ever.  redis_timeout is long so
    that a slow start (valgrind) does not count as Redis lost."""
    if REDIS is None:
        pytest.skip("redis-server is not installed (install-deps test)")
    r = redis()
    u = workers_daemon(upgradable, n, f"\n[bus]\nbackend = redis\n"
                       f"redis = {r.sock}\nredis_timeout = 20s\n")
    d = u.d
    if n > 1:
        d.wait_for("master.ready", timeout=30)
    d.wait_count("bus.redis_up", n, timeout=10)

    async def acked_and_seen(pub, sub, k):
        """Publish k's acknowledgement and its delivery: offset k + 1."""
        a = await typed(pub, "published")
        assert (a["id"], a["offset"]) == (k, k + 1), a
        m = await typed(sub, "message")
        assert (m["offset"], m["data"]) == (k + 1, k), m

    async def run():
        sub = await harness.ws_connect(d.url, compression=None)
        pub = await harness.ws_connect(d.url, compression=None)
        await sub.recv()
        await pub.recv()
        await subscribe(sub, "c")
        await typed(sub, "subscribed")
        await publish(pub, "c", 0, id=0)
        await acked_and_seen(pub, sub, 0)
        data, version = patched(u.version, 1)
        install(u.binary, data)
        mark = d.mark()
        os.kill(r.proc.pid, signal.SIGSTOP)
        try:
            await publish(pub, "c", 1, id=1)
            await asyncio.sleep(0.1)
            loop = asyncio.get_running_loop()
            done = loop.run_in_executor(None, u.handover)
            # the new binary's plugins loaded: READY follows at once,
            # and the old side stands in its transfer
            await loop.run_in_executor(None, lambda: d.wait_count(
                "plugin.load", 3 * n, timeout=30, start=mark))
            await asyncio.sleep(0.5 * SLOW)
        finally:
            os.kill(r.proc.pid, signal.SIGCONT)
        ev = await done
        assert int(ev["moved"]) == 2, ev
        assert u.served_version() == version
        await acked_and_seen(pub, sub, 1)
        # nothing twice: the next one comes next
        await publish(pub, "c", 2, id=2)
        await acked_and_seen(pub, sub, 2)
        await sub.close()
        await pub.close()

    asyncio.run(asyncio.wait_for(run(), 90 * SLOW))
    assert len(d.find_all("handover.failed")) == 0


@pytest.mark.parametrize("kind", ["config", "workers", "one", "listen",
                                  "crash", "hang"])
def test_workers_failed_hand_over_keeps_every_connection(upgradable, kind):
    """A new binary that refuses the configuration, one whose
    configuration has another worker count (3, or 1) or another listen
    address, one that crashes, one that hangs: the old daemon keeps every
    connection, and a good one then takes them all."""
    raise_nofile()
    u = workers_daemon(upgradable, 2, **({"handover_timeout": "1s"}
                                           if kind == "hang" else {}))
    u.d.wait_for("master.ready", timeout=30)
    good = open(u.binary, "rb").read()
    why = {"config": "refused", "workers": "number of workers",
           "one": "worker count", "listen": "keeps the listen addresses",
           "crash": "died of",
           "hang": "no answer within handover_timeout"}[kind]
    if kind == "config":
        with open(u.conf, "a") as f:
            f.write("\n[server]\nno_such_key = 1\n")
    elif kind in ("workers", "one"):
        with open(u.conf, "w") as f:
            f.write(u.text.replace("workers = 2", "workers = 3"
                                   if kind == "workers" else "workers = 1"))
    elif kind == "listen":
        assert "listen = 127.0.0.1:0" in u.text
        with open(u.conf, "w") as f:
            f.write(u.text.replace("listen = 127.0.0.1:0",
                                   "listen = 127.0.0.2:0", 1))
    elif kind == "crash":
        install(u.binary, b"#!/bin/sh\nkill -SEGV $$\n")
    else:
        install(u.binary, b"#!/bin/sh\nexec sleep 60\n")

    asyncio.run(fail_then_recover(u, why, good, 40))
    m = u.get("/metrics")
    assert 'wsplugd_handovers_total{result="failed"} 1' in m
    assert 'wsplugd_handovers_total{result="ok"} 1' in m


def test_one_process_to_workers_refused(upgradable):
    """A single process cannot hand over to a configuration with
    workers > 1 (the worker count stays): it keeps its connections."""
    u = upgradable()
    with open(u.conf, "w") as f:
        f.write(u.text.replace("[server]\n", "[server]\nworkers = 2\n", 1))

    async def run():
        p = Pingers(u.d.url, 10)
        await p.open()
        await asyncio.get_running_loop().run_in_executor(
            None, u.failed_handover, "number of workers")
        before = p.answered
        await until(lambda: p.answered >= before + 20, 30)
        await p.close()
        assert p.errors == [], p.errors[:5]

    asyncio.run(run())


def test_workers_hand_over_refused_while_one_runs(upgradable):
    u = workers_daemon(upgradable, 2, handover_timeout="2s")
    u.d.wait_for("master.ready", timeout=30)
    refused_while_one_runs(u)
    assert alive(u.pid)


def test_one_stuck_worker_calls_off_every_worker(upgradable):
    """One worker stuck in a plugin never answers its part: past
    handover_timeout the whole hand-over is called off, the other worker,
    whose successor was ready, carries on with every connection, and once
    the watchdog has replaced the stuck one a hand-over goes through."""
    worker_so = os.path.join(os.environ.get("WSPLUGD_TEST_PLUGIN_DIR",
                                            "tests/plugins/.libs"),
                             "worker.so")
    u = upgradable(server={"workers": 2, "handover_timeout": "1s",
                           "worker_watchdog": "3s"},
                   extra=f"\n[plugin:worker]\npath = {worker_so}\n")
    d = u.d
    d.wait_for("master.ready", timeout=30)

    async def whoami(ws):
        await ws.send(json.dumps({"type": "whoami"}))
        while True:
            r = json.loads(await asyncio.wait_for(ws.recv(), 10 * SLOW))
            if r.get("type") == "whoami":
                return r["worker"]

    async def ping(ws, k):
        await ws.send(json.dumps({"type": "ping", "id": k}))
        r = json.loads(await asyncio.wait_for(ws.recv(), 10 * SLOW))
        assert r == {"type": "pong", "id": k} or (
            r.get("type") == "pong" and r.get("id") == k), r

    async def run():
        socks = {"1": [], "2": []}
        ids = {}
        for _ in range(40):
            ws = await harness.ws_connect(d.url, compression=None)
            hello = json.loads(await ws.recv())
            w = await whoami(ws)
            socks[w].append(ws)
            ids[ws] = hello["connectionId"]
            if socks["1"] and socks["2"] and len(ids) >= 20:
                break
        assert socks["1"] and socks["2"]
        stuck, kept = socks["1"], socks["2"]
        await stuck[0].send(json.dumps({"type": "hang"}))
        await asyncio.sleep(0.2)
        await asyncio.get_running_loop().run_in_executor(
            None, u.failed_handover, "handover_timeout")
        for k, ws in enumerate(kept):
            await ping(ws, k)
        # the watchdog replaces the stuck worker (its clients are lost)
        d.wait_for("worker.watchdog", timeout=30)
        mark = d.mark()
        d.wait_for("worker.ready", start=mark, worker=1, timeout=30)
        # the master counts it ready on its next tick (100 ms)
        await asyncio.sleep(0.5)
        await asyncio.get_running_loop().run_in_executor(None, u.handover)
        for k, ws in enumerate(kept):
            await ping(ws, 100 + k)
        assert {ids[ws] for ws in kept} <= u.connection_ids()
        for ws in kept:
            await ws.close()
        for ws in stuck:
            await ws.close()

    asyncio.run(run())
