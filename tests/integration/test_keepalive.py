"""Keepalive and the idle sweep (DESIGN.md "Keepalive and the registry"):
a ping every ping_interval, any inbound frame counts as life, and a sweep
every sweep_interval reaps what stayed silent past idle_timeout."""

import asyncio
import json
import struct
import time

from harness import SLOW, ws_connect
from rawws import Raw

# Under valgrind the daemon can stall for most of a second; a longer idle
# timeout there keeps a stall from passing for silence.
IDLE_MS = 1000 if SLOW == 1 else 3000
KEEPALIVE = {"ping_interval": "200ms", "sweep_interval": "200ms",
             "idle_timeout": f"{IDLE_MS}ms"}


def test_answering_client_stays_connected(wsplugd):
    d = wsplugd(keepalive=KEEPALIVE)

    async def visit():
        # websockets answers the server's pings by itself; it sends no
        # pings of its own (ping_interval=None), so only the pongs keep
        # the connection alive.
        async with ws_connect(d.url) as ws:
            t0 = time.monotonic()
            hello = json.loads(await ws.recv())
            conn = hello["connectionId"]
            # Pongs at 200 ms for twice the idle timeout.
            await asyncio.to_thread(d.wait_count, "ws.pong",
                                    2 * IDLE_MS // 200 + 1, conn=conn,
                                    timeout=30)
            held = time.monotonic() - t0
            await ws.send(json.dumps({"type": "ping", "id": "late"}))
            pong = json.loads(await ws.recv())
            return conn, held, pong

    conn, held, pong = asyncio.run(visit())
    assert held > 2 * IDLE_MS / 1000, held
    assert pong["type"] == "pong" and pong["id"] == "late"
    closed = d.wait_for("ws.close", conn=conn)
    assert closed["code"] == "1000"
    pings = d.find_all("ws.ping", conn=conn)
    pongs = d.find_all("ws.pong", conn=conn)
    assert len(pings) >= 2 * IDLE_MS // 200 and \
        len(pongs) >= 2 * IDLE_MS // 200
    # A pong later than the next ping would be a missed ping (checked
    # below): on loopback each comes back within the interval.
    for p in pongs:
        assert int(p["rtt_ms"]) < 200
    assert d.find_all("ws.reap") == []
    assert d.find_all("ws.ping_missed", conn=conn) == []


def test_silent_client_is_reaped(wsplugd):
    d = wsplugd(keepalive=KEEPALIVE, plugins=())
    with Raw(d.port) as r:
        r.handshake()
        t0 = time.monotonic()
        opened = d.wait_for("ws.open")
        conn = opened["conn"]
        assert opened["active"] == "1"
        # Neither read nor write until the server gives up on us.
        reap = d.wait_for("ws.reap", timeout=5, conn=conn)
        elapsed = time.monotonic() - t0
        # Reaped after idle_timeout, within one sweep_interval of it (plus
        # scheduling margin).
        idle_ms = int(reap["idle_ms"])
        assert IDLE_MS <= idle_ms <= IDLE_MS + 200 + 500 * SLOW, reap
        assert elapsed <= (IDLE_MS + 200) / 1000 + 1.0 * SLOW, elapsed
        closed = d.wait_for("ws.close", conn=conn)
        assert closed["active"] == "0"
        missed = d.find_all("ws.ping_missed", conn=conn)
        assert missed, "no ws.ping_missed:\n" + d.log_text()
        assert d.find_all("ws.ping", conn=conn), d.log_text()
        # What reached the socket: pings, then a close frame with the
        # code the log names, then the end of the connection.
        frames = []
        r.sock.settimeout(5 * SLOW)
        try:
            while True:
                frames.append(r.recv_frame())
        except (EOFError, ConnectionResetError):
            pass
        ops = [op for _, op, _ in frames]
        assert ops and ops[-1] == 8, ops
        assert set(ops[:-1]) == {9}, ops
        code = struct.unpack("!H", frames[-1][2][:2])[0]
        assert str(code) == closed["code"] == "1001"


def test_any_inbound_frame_counts_as_life(wsplugd):
    # A client that never answers pings but sends a message after each
    # one is alive: pings go missed, yet it is not reaped.
    d = wsplugd(keepalive=KEEPALIVE)
    with Raw(d.port) as r:
        r.handshake()
        kind, hello = r.recv_message()
        conn = json.loads(hello)["connectionId"]
        t0 = time.monotonic()
        pongs = 0
        while time.monotonic() - t0 < 2 * IDLE_MS / 1000:
            fin, op, payload = r.recv_frame()
            if op == 9:
                r.send_frame(1, json.dumps({"type": "ping"}))
            elif op == 1:
                assert json.loads(payload)["type"] == "pong"
                pongs += 1
            else:
                raise AssertionError(f"unexpected opcode {op}")
        assert pongs >= 5
        d.wait_for("ws.ping_missed", conn=conn)
        assert d.find_all("ws.reap") == []
        assert d.find("ws.close", conn=conn) is None
