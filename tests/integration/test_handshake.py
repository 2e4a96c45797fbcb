"""The opening handshake (RFC 6455 section 4, DESIGN.md "The wire").

A conforming client (websockets) must get 101 on its first attempt; every
malformed or unwanted request gets the documented status, the connection
is closed after the response, and the refusal is logged as ws.refuse with
that status.
"""

import asyncio
import json
import re
import socket
import time

import pytest
import websockets

from harness import SLOW, ws_connect
from rawws import Raw, accept_key, build_frame


def refuse(d, status, reason=None, **request):
    """Send a (bad) upgrade request raw; require `status`, the TCP close
    after the response, and a ws.refuse log line with that status."""
    mark = d.mark()
    with Raw(d.port) as r:
        r.request(**request)
        got, headers, body = r.response()
        assert got == status, (got, request, body)
        assert r.expect_eof() == b"", "data after an error response"
    fields = {"status": status}
    if reason is not None:
        fields["reason"] = reason
    ev = d.wait_for("ws.refuse", start=mark, **fields)
    assert ev["ip"] == "127.0.0.1"
    return headers, body


def test_conforming_client_connects_on_first_attempt(wsplugd):
    d = wsplugd()

    async def visit():
        async with ws_connect(d.url) as ws:
            hello = json.loads(await ws.recv())
            return hello

    hello = asyncio.run(visit())
    assert hello["type"] == "connection_established"
    d.wait_for("ws.close", conn=hello["connectionId"], code=1000)
    assert d.find_all("ws.refuse") == []
    assert len(d.find_all("ws.open")) == 1


def test_raw_101_has_correct_accept_and_headers(wsplugd):
    d = wsplugd(extra="[deflate]\nenabled = no\n")
    with Raw(d.port) as r:
        # An extension offer is declined by leaving it out (RFC 6455 9.1):
        # with [deflate] off, permessage-deflate must not be accepted
        # (test_deflate.py has it on).
        key = r.request(headers={
            "Sec-WebSocket-Extensions":
                "permessage-deflate; client_max_window_bits"})
        status, headers, body = r.response()
        assert status == 101
        assert headers["upgrade"].lower() == "websocket"
        assert "upgrade" in [t.strip().lower()
                             for t in headers["connection"].split(",")]
        assert headers["sec-websocket-accept"] == accept_key(key)
        # No subprotocol or extension was offered, so none is chosen.
        assert "sec-websocket-protocol" not in headers
        assert "sec-websocket-extensions" not in headers
        assert body == b""


def _server_socket_nodelay(pid, client):
    """TCP_NODELAY of the daemon's end of `client`, read through a copy of
    its descriptor (pidfd_getfd(2): the test started the daemon, so it may
    look into it)."""
    import ctypes
    import os
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd_getfd = 438  # x86_64 and most others since Linux 5.6
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError) as e:
        pytest.skip(f"pidfd_open: {e}")
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            if not os.readlink(f"/proc/{pid}/fd/{name}").startswith(
                    "socket:"):
                continue
            fd = libc.syscall(pidfd_getfd, pidfd, int(name), 0)
            if fd < 0:
                pytest.skip("pidfd_getfd: "
                            + os.strerror(ctypes.get_errno()))
            with socket.socket(fileno=fd) as s:
                try:
                    peer = s.getpeername()
                except OSError:
                    continue
                if peer == client.getsockname():
                    return s.getsockopt(socket.IPPROTO_TCP,
                                        socket.TCP_NODELAY)
    finally:
        os.close(pidfd)
    raise AssertionError("the daemon's end of the connection not found")


def test_accepted_sockets_have_nodelay(wsplugd):
    # Replies are small frames: Nagle's algorithm with the peer's delayed
    # ACK would hold one back for up to 40 ms.  The option is set on the
    # listener, which Linux hands on to every accepted socket.
    d = wsplugd()
    with Raw(d.port) as r:
        r.request()
        assert r.response()[0] == 101
        assert _server_socket_nodelay(d.proc.pid, r.sock) != 0


def test_rfc_sample_key_gets_rfc_sample_accept(wsplugd):
    # RFC 6455 section 1.3's worked example.
    d = wsplugd()
    with Raw(d.port) as r:
        r.request(key="dGhlIHNhbXBsZSBub25jZQ==")
        status, headers, _ = r.response()
        assert status == 101
        assert headers["sec-websocket-accept"] == \
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_header_names_and_tokens_are_case_insensitive(wsplugd):
    # Firefox sends "Connection: keep-alive, Upgrade"; header names and
    # the upgrade tokens are case-insensitive (RFC 7230 3.2, 6.7).
    d = wsplugd()
    with Raw(d.port) as r:
        key = r.request(drop=("Upgrade", "Connection"),
                        headers={"upgrade": "WebSocket",
                                 "CONNECTION": "keep-alive, Upgrade"})
        status, headers, _ = r.response()
        assert status == 101
        assert headers["sec-websocket-accept"] == accept_key(key)


@pytest.mark.parametrize("path", ["/", "/other", "/wsx", "/ws/", "/WS"])
def test_other_path_gets_404(wsplugd, path):
    d = wsplugd()
    refuse(d, 404, "not_found", path=path)


def test_post_gets_405_with_allow(wsplugd):
    d = wsplugd()
    headers, _ = refuse(d, 405, "method", method="POST")
    # RFC 7231 6.5.5: a 405 MUST carry Allow.
    assert headers.get("allow") == "GET"


@pytest.mark.parametrize("drop", ["Upgrade", "Connection",
                                  "Sec-WebSocket-Key", "Host"])
def test_missing_upgrade_header_gets_400(wsplugd, drop):
    d = wsplugd()
    refuse(d, 400, drop=(drop,))


@pytest.mark.parametrize("headers", [
    {"Upgrade": "h2c"},
    {"Connection": "keep-alive"},
    {"Host": ""},
], ids=["upgrade-h2c", "connection-keepalive", "empty-host"])
def test_wrong_upgrade_header_gets_400(wsplugd, headers):
    d = wsplugd()
    refuse(d, 400, headers=headers)


@pytest.mark.parametrize("key", [
    "abc",
    "AAAAAAAAAAAAAAAAAAAA",          # base64 of 15 bytes
    "AAAAAAAAAAAAAAAAAAAAAAA=",      # base64 of 17 bytes
    "AAAAAAAAAAAAAAAAAAAAAAAAAA==",  # base64 of 19 bytes
    "AAAAAAAAAA!AAAAAAAAAAA==",      # not base64
    "",
], ids=["short", "15-bytes", "17-bytes", "19-bytes", "bad-char", "empty"])
def test_bad_key_gets_400(wsplugd, key):
    d = wsplugd()
    refuse(d, 400, headers={"Sec-WebSocket-Key": key})


@pytest.mark.parametrize("version", ["8", "12", "14"])
def test_unsupported_version_gets_426_naming_13(wsplugd, version):
    # RFC 6455 4.2.2: answer with the versions the server speaks.
    d = wsplugd()
    headers, _ = refuse(d, 426, "version",
                        headers={"Sec-WebSocket-Version": version})
    assert headers.get("sec-websocket-version") == "13"


def test_origin_allow_list(wsplugd):
    d = wsplugd(server={"origins": "https://good.example, "
                                   "https://also.example"})
    refuse(d, 403, "origin", headers={"Origin": "https://evil.example"})
    refuse(d, 403, "origin", headers={"Origin": "https://good.example.evil"})

    async def visit(origin):
        async with ws_connect(d.url, origin=origin) as ws:
            return json.loads(await ws.recv())

    for origin in ("https://good.example", "https://also.example"):
        mark = d.mark()
        hello = asyncio.run(visit(origin))
        assert hello["type"] == "connection_established"
        ev = d.wait_for("ws.open", start=mark, conn=hello["connectionId"])
        assert ev.get("origin") == origin


def test_oversize_request_head_gets_431(wsplugd):
    d = wsplugd(server={"max_header_size": "1KiB"})
    refuse(d, 431, "header_too_large", headers={"X-Pad": "a" * 2000})


def test_request_head_of_exactly_max_header_size_is_accepted(wsplugd):
    d = wsplugd(server={"max_header_size": "1KiB"})
    with Raw(d.port) as r:
        _, base = r.request_bytes(headers={"X-Pad": ""})
        pad = 1024 - len(base)
        assert pad > 0
        key, data = r.request_bytes(headers={"X-Pad": "p" * pad})
        assert len(data) == 1024
        r.send_raw(data)
        status, headers, _ = r.response()
        assert status == 101
        assert headers["sec-websocket-accept"] == accept_key(key)
    with Raw(d.port) as r:
        _, data = r.request_bytes(headers={"X-Pad": "p" * (pad + 1)})
        assert len(data) == 1025
        r.send_raw(data)
        status, _, _ = r.response()
        assert status == 431


def test_half_request_times_out_with_408(wsplugd):
    d = wsplugd(server={"handshake_timeout": "300ms"})
    mark = d.mark()
    with Raw(d.port) as r, Raw(d.port) as silent:
        t0 = time.monotonic()
        r.send_raw(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: webs")
        status, headers, _ = r.response()
        elapsed = time.monotonic() - t0
        assert status == 408
        assert r.expect_eof() == b""
        # Not before the timeout, and not much after it.
        assert 0.25 <= elapsed < 0.3 + 2 * SLOW, elapsed
        # A client that sends nothing at all is timed out the same way.
        status, _, _ = silent.response()
        assert status == 408
        assert silent.expect_eof() == b""
    refusals = d.wait_count("ws.refuse", 2, start=mark, status=408,
                            reason="handshake_timeout")
    assert len(refusals) == 2
    assert d.find_all("ws.open") == []


def test_subprotocol_negotiated(wsplugd):
    d = wsplugd(server={"subprotocols": "chat, superchat"})

    async def visit(offer):
        async with ws_connect(d.url, subprotocols=offer) as ws:
            hello = json.loads(await ws.recv())
            return ws.subprotocol, hello["connectionId"]

    proto, conn = asyncio.run(visit(["superchat"]))
    assert proto == "superchat"
    assert d.wait_for("ws.open", conn=conn).get("subprotocol") == "superchat"
    # The server's list is in its order of preference.
    proto, _ = asyncio.run(visit(["superchat", "chat"]))
    assert proto == "chat"
    # No offer: no subprotocol, and still 101.
    proto, _ = asyncio.run(visit(None))
    assert proto is None
    # Nothing in common: no Sec-WebSocket-Protocol at all (4.2.2).
    proto, conn = asyncio.run(visit(["other"]))
    assert proto is None
    assert "subprotocol" not in d.wait_for("ws.open", conn=conn)
    with Raw(d.port) as r:
        r.request(headers={"Sec-WebSocket-Protocol": "x, superchat"})
        status, headers, _ = r.response()
        assert status == 101
        assert headers.get("sec-websocket-protocol") == "superchat"


def test_query_string_is_accepted(wsplugd):
    d = wsplugd()

    async def visit():
        async with ws_connect(d.url + "?x=1&y=%20") as ws:
            return json.loads(await ws.recv())

    hello = asyncio.run(visit())
    assert hello["type"] == "connection_established"
    ev = d.wait_for("ws.open", conn=hello["connectionId"])
    assert ev["path"] == "/ws?x=1&y=%20"


def test_frames_pipelined_behind_the_head_are_processed(wsplugd):
    d = wsplugd()
    with Raw(d.port) as r:
        key, head = r.request_bytes()
        ping = json.dumps({"type": "ping", "id": "early"})
        r.send_raw(head + build_frame(1, ping) + build_frame(9, b"ctl"))
        status, headers, _ = r.response()
        assert status == 101
        assert headers["sec-websocket-accept"] == accept_key(key)
        # The greeting comes first, then the answers, in order.
        fin, op, payload = r.recv_frame()
        assert (fin, op) == (True, 1)
        assert json.loads(payload)["type"] == "connection_established"
        fin, op, payload = r.recv_frame()
        assert (fin, op) == (True, 1)
        pong = json.loads(payload)
        assert pong["type"] == "pong" and pong["id"] == "early"
        assert r.recv_frame() == (True, 10, b"ctl")
        r.send_frame(8, b"\x03\xe8")
        assert r.recv_close() == b"\x03\xe8"
        assert r.expect_eof() == b""


def test_request_in_pieces_then_frames_behind_it(wsplugd):
    # A request that comes whole is parsed in the daemon's read buffer;
    # one that comes in pieces is kept in a buffer of its own between
    # reads.  Its end, with a frame right behind it, must still upgrade
    # and answer in order.
    d = wsplugd()
    with Raw(d.port) as r:
        key, head = r.request_bytes()
        ping = json.dumps({"type": "ping", "id": "late"})
        r.send_raw(head[:20])
        time.sleep(0.2)
        r.send_raw(head[20:-3])
        time.sleep(0.2)
        r.send_raw(head[-3:] + build_frame(1, ping))
        status, headers, _ = r.response()
        assert status == 101
        assert headers["sec-websocket-accept"] == accept_key(key)
        fin, op, payload = r.recv_frame()
        assert json.loads(payload)["type"] == "connection_established"
        fin, op, payload = r.recv_frame()
        pong = json.loads(payload)
        assert pong["type"] == "pong" and pong["id"] == "late"
        r.send_frame(8, b"\x03\xe8")
        assert r.recv_close() == b"\x03\xe8"
        assert r.expect_eof() == b""


def test_refused_client_gets_invalid_status_in_websockets(wsplugd):
    # The same refusal, seen by a conforming client.
    d = wsplugd()

    async def visit():
        async with ws_connect(f"ws://127.0.0.1:{d.port}/nope"):
            pass

    with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
        asyncio.run(visit())
    assert e.value.status_code == 404
    ev = d.wait_for("ws.refuse", status=404)
    assert re.fullmatch(r"\d+", ev["port"])


def test_slow_dribbled_request_still_times_out(wsplugd):
    # The deadline runs from the accept, not from the last byte: a client
    # trickling its request (slowloris) is cut off like a silent one.
    d = wsplugd(server={"handshake_timeout": "300ms"})
    mark = d.mark()
    with Raw(d.port) as r:
        _, head = r.request_bytes()
        t0 = time.monotonic()
        sent = 0
        r.sock.settimeout(0.05)
        while sent < len(head) - 1:
            try:
                r.send_raw(head[sent:sent + 1])
            except OSError:
                break
            sent += 1
            try:
                if r.sock.recv(1, 2):  # MSG_PEEK: the answer is there
                    break
            except socket.timeout:
                pass
            assert time.monotonic() - t0 < 5 * SLOW, "never timed out"
        r.sock.settimeout(10 * SLOW)
        status, _, _ = r.response()
        assert status == 408
        assert time.monotonic() - t0 < 0.3 + 2 * SLOW
    d.wait_for("ws.refuse", start=mark, status=408,
               reason="handshake_timeout")


def test_handshake_timeout_does_not_apply_after_101(wsplugd):
    # Once upgraded, a connection lives by keepalive, not by the opening
    # handshake's deadline.
    d = wsplugd(server={"handshake_timeout": "300ms"},
                keepalive={"ping_interval": "400ms"})

    async def visit():
        async with ws_connect(d.url) as ws:
            hello = json.loads(await ws.recv())
            conn = hello["connectionId"]
            # Two answered pings: 800 ms, well past the 300 ms.
            await asyncio.to_thread(d.wait_count, "ws.pong", 2, conn=conn)
            await ws.send(json.dumps({"type": "ping", "id": "still"}))
            return conn, json.loads(await ws.recv())

    conn, pong = asyncio.run(visit())
    assert pong["id"] == "still"
    assert d.wait_for("ws.close", conn=conn)["code"] == "1000"
    assert d.find_all("ws.refuse") == []


def test_pipelined_frames_filling_the_head_buffer(wsplugd):
    # The request head and the first frames may arrive in one segment
    # larger than max_header_size; only the head is bound by it.
    d = wsplugd(server={"max_header_size": "1KiB"}, plugins=("echo",),
                plugin_sections={"echo": {"catch_all": "yes"}})
    with Raw(d.port) as r:
        _, base = r.request_bytes(headers={"X-Pad": ""})
        _, head = r.request_bytes(headers={"X-Pad": "p" * (1000 -
                                                          len(base))})
        assert len(head) == 1000
        frames = [build_frame(1, f"message {i} " + "x" * 90)
                  for i in range(20)]
        r.send_raw(head + b"".join(frames))
        assert r.response()[0] == 101
        for i in range(20):
            assert r.recv_message() == ("text", f"message {i} " + "x" * 90)


def test_pipelined_frames_count_in_bytes_and_messages_in(wsplugd):
    # Frames that arrived with the request head are traffic like any
    # other: ws.close's msgs_in and bytes_in include them.
    d = wsplugd()
    with Raw(d.port) as r:
        _, head = r.request_bytes()
        frames = b"".join(build_frame(1, json.dumps({"type": "ping",
                                                     "id": i}))
                          for i in range(3))
        r.send_raw(head + frames)
        assert r.response()[0] == 101
        kind, hello = r.recv_message()
        for i in range(3):
            kind, pong = r.recv_message()
            assert json.loads(pong)["id"] == i
        close = build_frame(8, b"\x03\xe8")
        r.send_raw(close)
        assert r.recv_close() == b"\x03\xe8"
        assert r.expect_eof() == b""
    closed = d.wait_for("ws.close",
                        conn=json.loads(hello)["connectionId"])
    assert closed["msgs_in"] == "3"
    assert int(closed["bytes_in"]) >= len(frames) + len(close), closed


@pytest.mark.parametrize("data", [
    # every line ends in a bare LF, blank line included
    b"GET /ws HTTP/1.1\nHost: 127.0.0.1\nUpgrade: websocket\n\n",
    # one bare LF in the middle of an otherwise CRLF head, which is still
    # incomplete: the LF alone is reason enough
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\nUpgrade: websocket\r\n",
])
def test_bare_lf_gets_400_at_once(wsplugd, data):
    # A bare LF is never going to become a valid head: it is refused when
    # it arrives, not after handshake_timeout or max_header_size.
    d = wsplugd(server={"handshake_timeout": "30s"})
    mark = d.mark()
    with Raw(d.port, timeout=3) as r:
        t0 = time.monotonic()
        r.send_raw(data)
        status, _, body = r.response()
        assert status == 400
        assert time.monotonic() - t0 < 2 * SLOW
        assert b"bare LF" in body
        assert r.expect_eof() == b""
    d.wait_for("ws.refuse", start=mark, status=400, reason="bad_request")
