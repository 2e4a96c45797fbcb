"""The broadcast plugin: channels, fan-out, presence, reload survival."""

import asyncio
import json
import os
import resource
import shutil
import signal

import websockets

from harness import PLUGIN_DIR, SLOW, WRAPPER

SUBSCRIBERS = 100 if WRAPPER else 1000
MESSAGES = 20


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def connect(d):
    return websockets.connect(d.url, ping_interval=None,
                              open_timeout=60 * SLOW, max_queue=None)


async def typed(ws, want):
    """The next message of type want, skipping the greeting."""
    while True:
        m = json.loads(await ws.recv())
        if m["type"] == want:
            return m
        assert m["type"] == "connection_established", m


def test_every_subscriber_gets_every_message_once_in_order(wsplugd):
    raise_nofile()
    d = wsplugd(plugins=("connection_established", "broadcast"),
                server={"max_connections": 5000},
                log={"level": "info"})

    async def main():
        subs = await asyncio.gather(*[connect(d)
                                      for _ in range(SUBSCRIBERS)])
        quitters = await asyncio.gather(*[connect(d) for _ in range(10)])
        for ws in subs + quitters:
            await ws.send(json.dumps({"type": "subscribe",
                                      "channel": "news"}))
        for ws in subs + quitters:
            await typed(ws, "subscribed")
        for ws in quitters:
            await ws.send(json.dumps({"type": "unsubscribe",
                                      "channel": "news"}))
            assert (await typed(ws, "unsubscribed"))["channel"] == "news"
        async with connect(d) as pub:
            for i in range(MESSAGES):
                await pub.send(json.dumps({"type": "publish",
                                           "channel": "news",
                                           "data": {"seq": i}, "id": i}))
                ack = await typed(pub, "published")
                assert ack["delivered"] == SUBSCRIBERS and ack["id"] == i
            # Another channel's traffic reaches nobody here.
            await pub.send(json.dumps({"type": "publish",
                                       "channel": "other", "data": 1}))

        async def drain(ws):
            got = []
            for _ in range(MESSAGES):
                m = await typed(ws, "message")
                assert m["channel"] == "news"
                got.append(m["data"]["seq"])
            return got

        results = await asyncio.gather(*[drain(ws) for ws in subs])
        for got in results:
            assert got == list(range(MESSAGES))
        # Nothing more for anyone: not a duplicate, not "other".
        for ws in subs[:50] + quitters:
            try:
                m = await asyncio.wait_for(ws.recv(), 0.05)
                raise AssertionError(f"unexpected {m}")
            except asyncio.TimeoutError:
                pass
        await asyncio.gather(*[ws.close() for ws in subs + quitters])

    asyncio.run(asyncio.wait_for(main(), timeout=180 * SLOW))


def test_presence_and_errors(wsplugd):
    d = wsplugd(plugins=("broadcast",),
                plugin_sections={"broadcast": {"presence": "yes",
                                               "max_channels": "2"}})

    async def main():
        async with connect(d) as a, connect(d) as b:
            await a.send(json.dumps({"type": "subscribe", "channel": "room"}))
            assert (await typed(a, "subscribed"))["subscribers"] == 1
            await b.send(json.dumps({"type": "subscribe", "channel": "room"}))
            assert (await typed(b, "subscribed"))["subscribers"] == 2
            join = await typed(a, "presence")
            assert join["event"] == "join" and join["channel"] == "room"
            await b.send(json.dumps({"type": "subscribe", "channel": "x"}))
            await typed(b, "subscribed")
            await b.send(json.dumps({"type": "subscribe", "channel": "y",
                                     "id": 9}))
            err = await typed(b, "error")
            assert err["code"] == "too_many_channels" and err["id"] == 9
            await b.send(json.dumps({"type": "subscribe", "channel": ""}))
            assert (await typed(b, "error"))["code"] == "invalid_channel"
            await b.send(json.dumps({"type": "unsubscribe",
                                     "channel": "nope"}))
            assert (await typed(b, "error"))["code"] == "not_subscribed"
        # b left with its socket: a's leave notice went nowhere (a too
        # had gone); the daemon logged both closes.
        d.wait_count("ws.close", 2)

    asyncio.run(asyncio.wait_for(main(), timeout=30 * SLOW))


def test_subscriptions_survive_a_plugin_replacement(wsplugd, tmp_path):
    """A rebuilt broadcast.so is loaded by SIGHUP; the new build rebuilds
    its channel index from the daemon-owned attributes in adopt()."""
    so = str(tmp_path / "broadcast.so")
    shutil.copyfile(os.path.join(PLUGIN_DIR, "broadcast.so"), so)
    conf = tmp_path / "live.conf"
    conf.write_text("[server]\nlisten = 127.0.0.1:0\n"
                    "[admin]\nlisten = 127.0.0.1:0\n[plugins]\n"
                    f"dir = {PLUGIN_DIR}\n[plugin:broadcast]\npath = {so}\n")
    d = wsplugd(path=conf)

    async def main():
        async with connect(d) as sub, connect(d) as pub:
            await sub.send(json.dumps({"type": "subscribe",
                                       "channel": "c"}))
            await typed(sub, "subscribed")
            os.utime(so)  # "rebuilt"
            mark = d.mark()
            d.signal(signal.SIGHUP)
            ev = await asyncio.get_running_loop().run_in_executor(
                None, lambda: d.wait_for("reload", start=mark, result="ok"))
            assert ev["loaded"] == "1" and ev["unloaded"] == "1"
            await pub.send(json.dumps({"type": "publish", "channel": "c",
                                       "data": "after", "id": 1}))
            assert (await typed(pub, "published"))["delivered"] == 1
            assert (await typed(sub, "message"))["data"] == "after"

    asyncio.run(asyncio.wait_for(main(), timeout=30 * SLOW))
