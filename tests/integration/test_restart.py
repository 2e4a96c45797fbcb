"""Sending clients away without a storm (wsplugd(8), "Restart without a
storm"): the graceful restart on SIGQUIT closes every connection with
1012 spread over restart_spread, each reason a retry slot
{"retry_after_ms":N}; a handshake refused meanwhile or over capacity gets
a 503 whose Retry-After is a slot too; a reload lowering max_connections
sheds the excess with 1013 and a slot; [server] gone paths answer 410 and
are listed in /.well-known/wsplugd.

The 1,000-client test plays what systemctl restart does with the unit's
ExecStop: SIGQUIT to the old daemon, a new daemon on the same port once it
has exited, and every client coming back at its slot as the browser
client does.  What it checks can fail: the closes must be spread, no slot
may fall before the restart has finished closing, and the slots (and the
reconnects the new daemon logs) must not bunch up.
"""

import asyncio
import datetime
import json
import signal
import time
import urllib.error
import urllib.request

import websockets

from harness import SLOW, WRAPPER, config, quiet_port, ws_connect
from rawws import Raw

# Under valgrind the daemon is some 20-50 times slower: fewer clients, and
# the bounds on bunching (which the daemon's own pace blurs) looser.
N = 200 if WRAPPER else 1000
SPREAD_MS = 2000
BUNCH = 3 if WRAPPER else 1


def get(port, path):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    try:
        with urllib.request.urlopen(req, timeout=10 * SLOW) as res:
            return res.status, res.headers, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def busiest(times_ms, width=100):
    """The most of times_ms (sorted or not) within any width ms."""
    xs = sorted(times_ms)
    peak = j = 0
    for i in range(len(xs)):
        while xs[i] - xs[j] > width:
            j += 1
        peak = max(peak, i - j + 1)
    return peak


def slot_of(reason):
    doc = json.loads(reason)
    assert set(doc) == {"retry_after_ms"}, reason
    assert isinstance(doc["retry_after_ms"], int)
    return doc["retry_after_ms"]


def test_sigquit_spreads_1012_and_clients_return_at_their_slots(
        wsplugd, tmp_path):
    # The new daemon takes the old one's port while 1,000 clients retry
    # it: a port no other test's listener and no client's own end can
    # be given in between.
    port = quiet_port()
    d1 = wsplugd(server={"restart_spread": f"{SPREAD_MS}ms",
                         "shutdown_timeout": "5s",
                         "listen": f"127.0.0.1:{port}"},
                 log={"level": "info"})
    assert d1.port == port
    url = f"ws://127.0.0.1:{port}/ws"
    record = {}

    async def one(i, ready, quit_at):
        ws = await ws_connect(url, open_timeout=30 * SLOW)
        await ws.recv()  # connection_established
        ready.release()
        try:
            await ws.recv()
            raise AssertionError("a message where the close was expected")
        except websockets.ConnectionClosed:
            pass
        closed = time.monotonic()
        code, reason = ws.close_code, ws.close_reason
        record[i] = {"code": code, "closed": closed, "reason": reason}
        slot = closed + slot_of(reason) / 1000
        record[i]["slot"] = slot
        # Back at the slot, as the browser client is; a refused attempt
        # (the new daemon not up yet) retries shortly, jittered.
        await asyncio.sleep(max(0, slot - time.monotonic()))
        while True:
            try:
                ws2 = await ws_connect(url, open_timeout=30 * SLOW)
                break
            except (OSError, websockets.InvalidStatusCode):
                await asyncio.sleep(0.05 + 0.1 * (i % 7) / 7)
        record[i]["back"] = time.monotonic()
        await ws2.recv()
        return ws2

    async def crowd():
        ready = asyncio.Semaphore(0)
        quit_at = {}
        tasks = [asyncio.create_task(one(i, ready, quit_at))
                 for i in range(N)]
        for _ in range(N):
            await asyncio.wait_for(ready.acquire(), 60 * SLOW)
        d1.wait_count("ws.open", N, timeout=30)
        mark = d1.mark()
        t_quit = time.monotonic()
        d1.signal(signal.SIGQUIT)
        start = d1.wait_for("daemon.restart", start=mark, phase="start")
        assert start["connections"] == str(N)
        assert start["code"] == "1012"
        assert int(start["window_ms"]) >= SPREAD_MS
        # The old process ends on its own once its clients are gone.
        rc = await asyncio.to_thread(d1.wait_exit, 30)
        assert rc == 0, d1.log_text()
        assert d1.find("daemon.restart", phase="closed",
                       closed=str(N)) is not None
        exited = time.monotonic()
        d2 = wsplugd(server={"listen": f"127.0.0.1:{port}"},
                     log={"level": "info"})
        print(f"\nold daemon exited {(exited - t_quit) * 1000:.0f} ms after "
              f"SIGQUIT, new one serving at "
              f"{(time.monotonic() - t_quit) * 1000:.0f} ms")
        socks = await asyncio.wait_for(asyncio.gather(*tasks), 90 * SLOW)
        for s in socks:
            await s.close()
        return t_quit, d2

    t_quit, d2 = asyncio.run(crowd())
    assert len(record) == N
    assert all(r["code"] == 1012 for r in record.values())
    rel = {k: {f: (v - t_quit) * 1000 for f, v in r.items()
               if f in ("closed", "slot", "back")}
           for k, r in record.items()}
    closed = [r["closed"] for r in rel.values()]
    slots = [r["slot"] for r in rel.values()]
    # The closes are spread over restart_spread, not sent at once.
    assert max(closed) - min(closed) >= 0.7 * SPREAD_MS, closed
    assert busiest(closed) <= 3 * BUNCH * N * 100 / SPREAD_MS
    # No slot before the restart finished closing and the next process
    # had a second to start (the client's clock is at or after the
    # daemon's at the close).
    assert min(slots) >= SPREAD_MS + 1000 - 5, min(slots)
    # The slots spread over the window: N over 2 s is 50 per 100 ms.
    assert busiest(slots) <= 2 * BUNCH * N * 100 / SPREAD_MS, \
        busiest(slots)
    assert max(slots) - min(slots) >= 0.8 * SPREAD_MS
    # Nobody came back before its slot, and the new daemon took them all.
    assert all(r["back"] >= r["slot"] - 1 for r in rel.values())
    opens = d2.wait_count("ws.open", N, timeout=30)
    # As the new daemon saw them: its ws.open times (ts, in ms).
    seen = [datetime.datetime.fromisoformat(ev["ts"].replace("Z", "+00:00"))
            .timestamp() * 1000 for ev in opens]
    print(f"\nnew daemon: {N} opens over {max(seen) - min(seen):.0f} ms, "
          f"busiest 100 ms: {busiest(seen)}")
    print(f"\n{N} clients: closes over {max(closed) - min(closed):.0f} ms, "
          f"slots {min(slots):.0f}..{max(slots):.0f} ms after SIGQUIT, "
          f"busiest 100 ms: {busiest(closed)} closes, {busiest(slots)} "
          f"slots, {busiest([r['back'] for r in rel.values()])} reconnects")


def test_handshake_during_restart_gets_503_with_a_later_slot(wsplugd):
    d = wsplugd(server={"restart_spread": "3s", "shutdown_timeout": "2s"})

    async def run():
        async with ws_connect(d.url) as a:
            await a.recv()
            async with ws_connect(d.url) as b:
                await b.recv()
                mark = d.mark()
                d.signal(signal.SIGQUIT)
                d.wait_for("daemon.restart", start=mark, phase="start")
                # The listener stays open until the last close: a client
                # arriving now is told to come back after the slots.
                with Raw(d.port) as r:
                    r.request()
                    status, headers, _ = r.response()
                codes = []
                for ws in (a, b):
                    try:
                        await asyncio.wait_for(ws.recv(), 10 * SLOW)
                    except websockets.ConnectionClosed:
                        codes.append((ws.close_code, ws.close_reason))
                return status, headers, codes

    status, headers, codes = asyncio.run(run())
    assert status == 503
    # Its slot lies after the two planned ones, past the 3 s spread and
    # the second the next process is given to start.
    assert int(headers["retry-after"]) >= 4
    assert headers["access-control-expose-headers"] == "Retry-After"
    assert [c for c, _ in codes] == [1012, 1012]
    # Two closes over 3 s: the second a second and a half in; both told
    # to come back after the spread.
    assert all(slot_of(r) >= 1000 for _, r in codes)
    d.wait_for("ws.refuse", status=503, reason="shutting_down")
    assert d.wait_exit(20) == 0


def test_503_over_capacity_retry_after_from_slots(wsplugd):
    d = wsplugd(server={"max_connections": 1})

    async def run():
        async with ws_connect(d.url) as a:
            await a.recv()
            out = []
            for _ in range(3):
                with Raw(d.port) as r:
                    r.request()
                    status, headers, _ = r.response()
                    out.append((status, headers.get("retry-after")))
            return out

    out = asyncio.run(run())
    assert [s for s, _ in out] == [503, 503, 503]
    # A second away, then the next slots at the accept rate: whole
    # seconds rounded up, so never sooner than the slot.
    assert out[0][1] == "1"
    assert all(ra in ("1", "2") for _, ra in out)


def test_reload_lowering_max_connections_sheds_newest_with_1013(
        wsplugd, tmp_path):
    conf = tmp_path / "shed.conf"
    conf.write_text(config(server={"max_connections": 10}))
    d = wsplugd(path=conf)

    async def run():
        socks = []
        for _ in range(8):
            ws = await ws_connect(d.url)
            await ws.recv()
            socks.append(ws)
        d.wait_count("ws.open", 8)
        conf.write_text(config(server={"max_connections": 5}))
        mark = d.mark()
        d.signal(signal.SIGHUP)
        shed = d.wait_for("daemon.shed", start=mark)
        closed, alive = [], []
        for i, ws in enumerate(socks):
            try:
                await ws.send('{"type":"ping","id":"x"}')
                msg = json.loads(await asyncio.wait_for(ws.recv(),
                                                        5 * SLOW))
                assert msg["type"] == "pong"
                alive.append(i)
            except websockets.ConnectionClosed:
                closed.append((i, ws.close_code, ws.close_reason))
        for ws in socks:
            await ws.close()
        return shed, closed, alive

    shed, closed, alive = asyncio.run(run())
    assert shed["shed"] == "3" and shed["max_connections"] == "5"
    assert alive == [0, 1, 2, 3, 4]  # the oldest stay
    assert [i for i, _, _ in closed] == [5, 6, 7]
    assert all(code == 1013 for _, code, _ in closed)
    assert all(slot_of(r) >= 1000 for _, _, r in closed)
    d.wait_for("reload", result="ok")


def test_gone_paths_answer_410_and_the_document_lists_them(wsplugd):
    d = wsplugd(server={"gone": "/old /v1/socket"})
    for path in ("/old", "/v1/socket"):
        with Raw(d.port) as r:
            r.request(path=path)
            status, headers, body = r.response()
        assert status == 410, path
        assert headers["access-control-allow-origin"] == "*"
        assert body == b"this endpoint is gone\n"
    d.wait_count("ws.refuse", 2, status=410, reason="gone")
    # A plain fetch of it too, as the client's probe makes.
    assert get(d.port, "/old")[0] == 410
    # Not every unknown path: those stay 404.
    with Raw(d.port) as r:
        r.request(path="/other")
        assert r.response()[0] == 404
    status, _, body = get(d.port, "/.well-known/wsplugd")
    assert status == 200
    doc = json.loads(body)
    assert doc["endpoints"] == ["/ws"]
    assert doc["gone"] == ["/old", "/v1/socket"]
    assert doc["retry_slots"] == {"close_codes": [1012, 1013],
                                  "reason": "retry_after_ms"}
    with Raw(d.port) as r:
        r.handshake()


def test_gone_may_not_name_the_endpoint(tmp_path):
    from harness import run_wsplugd
    conf = tmp_path / "bad.conf"
    conf.write_text(config(server={"gone": "/old /ws"}))
    res = run_wsplugd(["-t", "-c", str(conf)])
    assert res.returncode == 1
    assert "gone: /ws is the endpoint's own path" in res.stdout + res.stderr


def test_workers_each_restart_their_connections(wsplugd):
    d = wsplugd(server={"workers": 2, "restart_spread": "500ms",
                        "shutdown_timeout": "2s"})

    async def run():
        socks = []
        for _ in range(20):
            ws = await ws_connect(d.url)
            await ws.recv()
            socks.append(ws)
        mark = d.mark()
        t_quit = time.monotonic()
        d.signal(signal.SIGQUIT)
        codes = []

        async def closed(ws):
            try:
                await asyncio.wait_for(ws.recv(), 10 * SLOW)
            except websockets.ConnectionClosed:
                codes.append((ws.close_code, ws.close_reason,
                              (time.monotonic() - t_quit) * 1000))
        await asyncio.gather(*(closed(ws) for ws in socks))
        return mark, codes

    mark, codes = asyncio.run(run())
    assert len(codes) == 20 and all(c == 1012 for c, _, _ in codes)
    # Each worker's slots start after its spread: the retry_after_ms of a
    # close sent late by the loop is shorter, the slot the same.
    assert all(t + slot_of(r) >= 1500 - 5 for _, r, t in codes), codes
    assert d.wait_exit(30) == 0
    starts = [ev for ev in d.events[mark:]
              if ev.get("event") == "daemon.restart" and
              ev.get("phase") == "start"]
    assert len(starts) == 2  # one per worker


def test_workers_shed_their_share_of_the_excess(wsplugd, tmp_path):
    conf = tmp_path / "wshed.conf"
    conf.write_text(config(server={"workers": 2, "max_connections": 20}))
    d = wsplugd(path=conf)

    async def run():
        socks = []
        for _ in range(12):
            ws = await ws_connect(d.url)
            await ws.recv()
            socks.append(ws)
        conf.write_text(config(server={"workers": 2, "max_connections": 8}))
        mark = d.mark()
        d.signal(signal.SIGHUP)
        # the master's line and each worker's (its shed comes in the same
        # turn of its loop, so is written with it)
        d.wait_count("reload", 3, start=mark, result="ok")
        closed, alive = [], 0
        for ws in socks:
            try:
                await ws.send('{"type":"ping","id":"x"}')
                await asyncio.wait_for(ws.recv(), 5 * SLOW)
                alive += 1
            except websockets.ConnectionClosed:
                closed.append((ws.close_code, ws.close_reason))
        for ws in socks:
            await ws.close()
        return mark, closed, alive

    mark, closed, alive = asyncio.run(run())
    sheds = [ev for ev in d.events[mark:] if ev.get("event") == "daemon.shed"]
    # 4 over the limit: each worker its share, rounded up, so 4 or 5.
    assert len(closed) in (4, 5), closed
    assert alive == 12 - len(closed)
    assert sum(int(ev["shed"]) for ev in sheds) == len(closed)
    assert all(code == 1013 and slot_of(r) >= 1000 for code, r in closed)


def test_sigquit_without_clients_exits_at_once(wsplugd):
    # systemctl restart of an idle daemon must not wait out the spread.
    d = wsplugd(server={"restart_spread": "30s"})
    t0 = time.monotonic()
    d.signal(signal.SIGQUIT)
    assert d.wait_exit(10) == 0
    assert time.monotonic() - t0 < 5 * SLOW
    assert d.find("daemon.restart", phase="closed", closed="0") is not None
    assert d.find("daemon.stop") is not None
