"""Limits (DESIGN.md "The wire", "Keepalive and the registry"): message
size enforced before buffering, connection limits answered with 503, and a
client that does not read closed as a slow consumer."""

import asyncio
import base64
import json
import os
import socket
import struct
import time
import urllib.request

import pytest
import websockets

from harness import SLOW, http_status, ws_connect
from rawws import Raw, close_body


def echo_daemon(wsplugd, **server):
    return wsplugd(server=server, plugins=("echo",),
                   plugin_sections={"echo": {"catch_all": "yes"}})


def opened(d, **kw):
    r = Raw(d.port, **kw)
    r.handshake()
    return r


def expect_1009(r, d, mark):
    body = r.recv_close()
    assert struct.unpack("!H", body[:2])[0] == 1009, body
    assert r.expect_eof() == b""
    d.wait_for("ws.close", start=mark, code=1009)


def test_single_frame_over_max_message_size_closes_1009(wsplugd):
    d = echo_daemon(wsplugd, max_message_size="1KiB")
    for opcode in (1, 2):
        mark = d.mark()
        with opened(d) as r:
            r.send_frame(opcode, b"a" * 1025)
            expect_1009(r, d, mark)


def test_fragments_summing_over_max_message_size_close_1009(wsplugd):
    d = echo_daemon(wsplugd, max_message_size="1KiB")
    mark = d.mark()
    with opened(d) as r:
        r.send_frame(1, b"a" * 600, fin=False)
        r.send_frame(0, b"b" * 424, fin=False)  # 1024 so far: fine
        r.send_frame(0, b"c", fin=False)        # 1025: too big
        expect_1009(r, d, mark)
    mark = d.mark()
    with opened(d) as r:
        r.send_frame(2, b"a" * 1000, fin=False)
        r.send_frame(0, b"b" * 1000)
        expect_1009(r, d, mark)


def test_huge_announced_length_is_refused_from_the_header(wsplugd):
    # The client announces 1 GiB and sends only the header: the server
    # must refuse at once instead of waiting for (or buffering) the body.
    d = echo_daemon(wsplugd, max_message_size="1KiB")
    for opcode, fin in ((1, True), (2, True), (1, False)):
        mark = d.mark()
        with opened(d) as r:
            t0 = time.monotonic()
            r.send_frame(opcode, b"", fin=fin, length=1 << 30)
            expect_1009(r, d, mark)
            assert time.monotonic() - t0 < 2 * SLOW
    # And in the middle of a fragmented message.
    mark = d.mark()
    with opened(d) as r:
        r.send_frame(1, b"x" * 100, fin=False)
        r.send_frame(0, b"", length=(1 << 63) - 1)
        expect_1009(r, d, mark)


def test_message_of_exactly_max_message_size_is_accepted(wsplugd):
    d = echo_daemon(wsplugd, max_message_size="1KiB")
    with opened(d) as r:
        data = os.urandom(1024)
        r.send_frame(2, data)
        assert r.recv_frame() == (True, 2, data)
        r.send_frame(1, b"a" * 1000, fin=False)
        r.send_frame(0, b"b" * 24)
        assert r.recv_message() == ("text", "a" * 1000 + "b" * 24)
        # The limit is per message: the next one starts from zero.
        r.send_frame(1, b"c" * 1024)
        assert r.recv_message() == ("text", "c" * 1024)
        r.send_frame(8, close_body(1000))
        assert r.recv_close() == close_body(1000)


def test_default_plugins_enforce_the_limit_too(wsplugd):
    d = wsplugd(server={"max_message_size": "1KiB"})

    async def visit():
        async with ws_connect(d.url) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "ping", "pad": "x" * 2000}))
            with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
                await ws.recv()
            return e.value

    e = asyncio.run(visit())
    assert e.rcvd.code == 1009


def test_max_connections_refuses_the_third_with_503(wsplugd):
    d = wsplugd(server={"max_connections": 2})

    async def visit():
        async with ws_connect(d.url) as a, ws_connect(d.url) as b:
            await a.recv()
            await b.recv()
            with pytest.raises(
                    websockets.exceptions.InvalidStatusCode) as e:
                async with ws_connect(d.url):
                    pass
            # The two admitted clients are unaffected.
            for ws in (a, b):
                await ws.send(json.dumps({"type": "ping", "id": 1}))
                assert json.loads(await ws.recv())["type"] == "pong"
            return e.value.status_code

    assert asyncio.run(visit()) == 503
    ev = d.wait_for("ws.refuse", status=503)
    assert ev["reason"] == "max_connections"
    assert len(d.find_all("ws.open")) == 2


def test_max_connections_per_ip_refuses_the_second_with_503(wsplugd):
    d = wsplugd(server={"max_connections_per_ip": 1})
    base = daemon_fds(d)

    async def visit():
        async with ws_connect(d.url) as a:
            await a.recv()
            with pytest.raises(
                    websockets.exceptions.InvalidStatusCode) as e:
                async with ws_connect(d.url):
                    pass
            await a.send(json.dumps({"type": "ping"}))
            assert json.loads(await a.recv())["type"] == "pong"
            return e.value.status_code

    assert asyncio.run(visit()) == 503
    ev = d.wait_for("ws.refuse", status=503)
    assert ev["reason"] == "max_connections_per_ip"
    # Once the first has gone (its socket closed, a moment after the close
    # handshake: at the client's FIN, or after a 1 s linger), the address
    # may connect again.
    d.wait_for("ws.close", code=1000)
    wait_fds(d, base)

    async def again():
        async with ws_connect(d.url) as ws:
            return json.loads(await ws.recv())["type"]

    assert asyncio.run(again()) == "connection_established"


def test_client_that_never_reads_is_closed_as_slow_consumer(wsplugd):
    d = echo_daemon(wsplugd, max_output_buffer="64KiB",
                    max_message_size="1MiB")
    msg = b"s" * 16384
    mark = d.mark()
    with opened(d, rcvbuf=4096) as r:
        r.sock.settimeout(2 * SLOW)
        deadline = time.monotonic() + 30 * SLOW
        sent = 0
        while d.find("ws.slow_consumer", start=mark) is None:
            assert time.monotonic() < deadline, \
                f"no ws.slow_consumer after {sent} messages"
            try:
                r.send_frame(1, msg)
            except (BrokenPipeError, ConnectionResetError):
                break  # closed by the server: the log line must be there
            except socket.timeout:
                continue  # our send buffer is full; look at the log again
            sent += 1
        slow = d.wait_for("ws.slow_consumer", start=mark)
        closed = d.wait_for("ws.close", start=mark, conn=slow["conn"])
        assert closed["code"] == "1008"
        assert closed["active"] == "0"
        # The server must not have buffered much more than its limit in
        # user space before giving up: it echoed at most what the socket
        # buffers hold plus 64 KiB.
        assert sent < 4000, sent

    # The daemon is unharmed and serves the next client.
    async def visit():
        async with ws_connect(d.url) as ws:
            await ws.send("still echoing")
            return await ws.recv()

    assert asyncio.run(visit()) == "still echoing"


def fd_count(pid):
    """How many descriptors the process has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def raw_client(port, local="127.0.0.1"):
    """A TCP connection from the address local, nothing sent yet."""
    s = socket.socket()
    s.bind((local, 0))
    s.connect(("127.0.0.1", port))
    return s


def upgrade_request(port):
    key = base64.b64encode(os.urandom(16))
    return (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (port, key))


def upgrade_status(port, local="127.0.0.1"):
    """A whole upgrade from local: the status it got (then closed)."""
    with raw_client(port, local) as s:
        try:
            s.sendall(upgrade_request(port))
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused at accept, before the request: still answered
        return http_status(s, 5 * SLOW)


def test_refused_socket_counts_for_a_short_linger_only(wsplugd):
    # A refused client (404 here) that keeps its socket open holds one of
    # the daemon's descriptors while the daemon lingers on it, so it
    # counts toward max_connections; and that linger is short (about
    # 1 s), after which the place is free for the next client.
    d = wsplugd(server={"max_connections": 1})
    with Raw(d.port) as refused:
        refused.request(path="/nowhere")
        assert refused.response()[0] == 404
        t0 = time.monotonic()
        # `refused` keeps its socket open, as a slow or careless client
        # does after an error response.
        assert upgrade_status(d.port) == 503
        ev = d.wait_for("ws.refuse", status=503)
        assert ev["reason"] == "max_connections"
        while upgrade_status(d.port) != 101:
            assert time.monotonic() - t0 < 2 * SLOW, \
                "the refused socket still holds its place"
            time.sleep(0.05)
        # It was not a matter of luck: the place came free after the
        # linger, not before.
        assert time.monotonic() - t0 > 0.5


def test_idle_handshakes_from_one_address_do_not_take_every_place(wsplugd):
    # 50 connections from one address that never send a request: only
    # max_connections_per_ip of them hold a place, the others are answered
    # 503 at once and closed, and a client from another address still
    # gets in while the 10 sit in their handshake.
    d = wsplugd(server={"max_connections": 50, "max_connections_per_ip": 10,
                        "handshake_timeout": "60s"})
    idle = [raw_client(d.port) for _ in range(50)]
    try:
        d.wait_count("ws.refuse", 40, reason="max_connections_per_ip",
                     timeout=5)
        statuses = [http_status(s, 0.2 * SLOW) for s in idle]
        assert statuses.count(503) == 40, statuses
        assert statuses.count(None) == 10, statuses
        assert upgrade_status(d.port, "127.0.0.2") == 101
        # The 10 admitted are still waited for, and upgrade when they ask.
        held = [s for s, st in zip(idle, statuses) if st is None]
        for s in held:
            s.sendall(upgrade_request(d.port))
        assert [http_status(s, 5 * SLOW) for s in held] == [101] * 10
        # From one address, still no more than 10 at once.
        assert upgrade_status(d.port) == 503
    finally:
        for s in idle:
            s.close()


def lingering(d):
    """wsplugd_connections_lingering from the admin listener."""
    addr = d.wait_for("admin.start")["addr"]
    with urllib.request.urlopen(f"http://{addr}/metrics",
                                timeout=5 * SLOW) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("wsplugd_connections_lingering "):
                return int(line.split()[1])
    raise AssertionError("no wsplugd_connections_lingering")


def test_refused_and_closed_sockets_are_gone_within_a_second(wsplugd):
    # Clients that were refused (404) or closed by the server (1002) and
    # then keep their sockets open without a word: the daemon lingers on
    # each about 1 s, not 5, and then closes its descriptor.
    d = wsplugd()
    base = fd_count(d.proc.pid)
    clients = []
    try:
        for _ in range(10):
            r = Raw(d.port)
            clients.append(r)
            r.request(path="/nowhere")
            assert r.response()[0] == 404
        for _ in range(10):
            r = opened(d)
            clients.append(r)
            r.recv_message()  # connection_established
            r.send_frame(1, b"{}", mask=False)
            assert struct.unpack("!H", r.recv_close()[:2])[0] == 1002
        t0 = time.monotonic()
        assert fd_count(d.proc.pid) >= base + 10
        assert lingering(d) > 0
        while fd_count(d.proc.pid) > base:
            assert time.monotonic() - t0 < 2 * SLOW, \
                f"{fd_count(d.proc.pid) - base} sockets still held"
            time.sleep(0.05)
        assert lingering(d) == 0
    finally:
        for r in clients:
            r.close()


TEST_PLUGINS = os.environ.get("WSPLUGD_TEST_PLUGIN_DIR",
                              "tests/plugins/.libs")


def test_unanswered_close_frame_is_given_up_after_5_s(wsplugd):
    # The server closes (the closer test plugin, at the client's request)
    # and the client never answers its close frame: the connection holds
    # its place while the server waits, about 5 s, then its descriptor is
    # closed at once, with no linger after.
    d = wsplugd(server={"max_connections": 1}, plugins=("closer",),
                plugin_sections={"closer": {
                    "path": os.path.join(TEST_PLUGINS, "closer.so")}})
    base = fd_count(d.proc.pid)
    with opened(d) as r:
        r.send_frame(1, json.dumps({"type": "close_me", "code": 4000,
                                    "reason": "bye"}))
        assert r.recv_close()[:2] == struct.pack("!H", 4000)
        t0 = time.monotonic()
        # closing, it still counts
        assert upgrade_status(d.port) == 503
        ev = d.wait_for("ws.close", timeout=10, code=4000)
        waited = time.monotonic() - t0
        assert ev["reason"] == "close handshake timed out"
        assert 4 < waited < 7 * SLOW, waited
        while fd_count(d.proc.pid) > base:
            assert time.monotonic() - t0 < waited + 0.5 * SLOW
            time.sleep(0.02)
        assert upgrade_status(d.port) == 101


def daemon_fds(d):
    """Descriptors of the daemon's processes: the master and its
    workers, or the one process."""
    pids = {d.proc.pid} | {int(e["pid"]) for e in d.find_all("worker.start")}
    return sum(fd_count(p) for p in pids if os.path.exists(f"/proc/{p}"))


def wait_fds(d, n):
    deadline = time.monotonic() + 3 * SLOW
    while daemon_fds(d) != n:
        assert time.monotonic() < deadline, (daemon_fds(d), n)
        time.sleep(0.02)


@pytest.mark.parametrize("workers", [1, 2])
def test_every_path_gives_its_place_back_once(wsplugd, workers):
    # max_connections and max_connections_per_ip of 1: after each way a
    # connection can end, its place is free again (one client gets in)
    # and was given back only once (the next is still refused).
    d = wsplugd(server={"workers": workers, "max_connections": 1,
                        "max_connections_per_ip": 1,
                        "handshake_timeout": "1s"})
    if workers > 1:
        d.wait_for("master.ready", timeout=30)
    base = daemon_fds(d)

    def refused_404():
        with Raw(d.port) as r:
            r.request(path="/nowhere")
            assert r.response()[0] == 404

    def handshake_timeout():
        with raw_client(d.port) as s:
            assert http_status(s, 5 * SLOW) == 408

    def gone_mid_request():
        with raw_client(d.port) as s:
            s.sendall(b"GET /ws HTTP/1.1\r\n")
            wait_fds(d, base + 1)  # accepted (nothing is logged)

    def closed_cleanly():
        with opened(d) as r:
            r.send_frame(8, close_body(1000))
            assert r.recv_close() == close_body(1000)

    def dropped():
        with opened(d):
            pass

    def failed_1002():
        with opened(d) as r:
            r.send_frame(1, b"{}", mask=False)
            assert r.recv_close()[:2] == struct.pack("!H", 1002)

    for path in (refused_404, handshake_timeout, gone_mid_request,
                 closed_cleanly, dropped, failed_1002):
        path()
        wait_fds(d, base)
        with raw_client(d.port) as s:
            s.sendall(upgrade_request(d.port))
            assert http_status(s, 5 * SLOW) == 101, path.__name__
            with raw_client(d.port) as t:
                assert http_status(t, 5 * SLOW) == 503, path.__name__
        wait_fds(d, base)
