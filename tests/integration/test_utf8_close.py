"""UTF-8 in text messages (RFC 6455 5.6, 8.1) and the closing handshake
(5.5.1, 7.1, 7.4)."""

import asyncio
import json
import struct

import pytest
import websockets

from harness import SLOW, ws_connect
from rawws import Raw, build_frame, close_body

ECHO = {"plugins": ("echo",),
        "plugin_sections": {"echo": {"catch_all": "yes"}}}

# Bytes no UTF-8 decoder may accept (RFC 3629): a lone continuation byte,
# overlong forms, a UTF-16 surrogate, a code point past U+10FFFF, bytes
# that never occur, and a sequence cut short at the end of the message.
INVALID_UTF8 = [
    b"\x80", b"abc\xbfdef", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf",
    b"\xf0\x80\x80\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xfe", b"\xff",
    b"\xce\xba\xe1\xbd", b"hello\xf0\x90\x80",
]


def opened(d):
    r = Raw(d.port)
    r.handshake()
    return r


def close_code(body):
    assert len(body) >= 2, body
    return struct.unpack("!H", body[:2])[0]


def failed_with(r, code):
    body = r.recv_close()
    assert close_code(body) == code, body
    assert r.expect_eof() == b""


@pytest.mark.parametrize("data", INVALID_UTF8, ids=lambda b: b.hex())
def test_invalid_utf8_text_fails_with_1007(wsplugd, data):
    # 8.1: "When an endpoint is to interpret a byte stream as UTF-8 but
    # finds that the byte stream is not ... a valid UTF-8 stream, that
    # endpoint MUST _Fail the WebSocket Connection_" (1007, 7.4.1).
    d = wsplugd(**ECHO)
    with opened(d) as r:
        r.send_frame(1, data)
        failed_with(r, 1007)
    d.wait_for("ws.close", code=1007)


def test_invalid_utf8_split_across_fragments_fails_with_1007(wsplugd):
    # 5.6/8.1: validity is a property of the whole message; a sequence
    # started in one fragment and broken in the next is invalid.
    d = wsplugd(**ECHO)
    with opened(d) as r:
        r.send_frame(1, b"\xce\xba\xf0\x90", fin=False)
        r.send_frame(0, b"\x28\x80", fin=False)
        r.send_frame(0, b"")
        failed_with(r, 1007)
    with opened(d) as r:
        # The message ends inside a sequence.
        r.send_frame(1, b"ok\xf0\x90", fin=False)
        r.send_frame(0, b"\x80")
        failed_with(r, 1007)
    with opened(d) as r:
        # Invalid in the first fragment: fail fast, before the rest.
        r.send_frame(1, b"\xce\xba\xff", fin=False)
        failed_with(r, 1007)
    d.wait_count("ws.close", 3, code=1007)


def test_valid_multibyte_split_at_every_byte_is_accepted(wsplugd):
    d = wsplugd(**ECHO)
    text = "κόσμε €𐍈 \u0800\uffff\U0010ffff x"
    data = text.encode()
    with opened(d) as r:
        for i in range(1, len(data)):
            r.send_frame(1, data[:i], fin=False)
            r.send_frame(0, data[i:])
            assert r.recv_message() == ("text", text), i
        # Two cuts, with a ping between the pieces.
        for i in range(1, len(data) - 1):
            r.send_frame(1, data[:i], fin=False)
            r.send_frame(9, b"mid")
            r.send_frame(0, data[i:i + 1], fin=False)
            r.send_frame(0, data[i + 1:])
            assert r.recv_frame() == (True, 10, b"mid")
            assert r.recv_message() == ("text", text), i
        # One byte per fragment.
        for i, b in enumerate(data):
            r.send_frame(0 if i else 1, bytes([b]), fin=i == len(data) - 1)
        assert r.recv_message() == ("text", text)
        r.send_frame(8, close_body(1000))
        assert r.recv_close() == close_body(1000)
    assert d.wait_for("ws.close")["code"] == "1000"
    assert d.find_all("ws.error") == []


def test_client_close_is_echoed_and_tcp_closed(wsplugd):
    # 5.5.1: the endpoint answers a Close frame with one, typically
    # echoing the status code; 7.1.1: the server closes TCP first.
    d = wsplugd(**ECHO)
    with opened(d) as r:
        r.send_frame(8, close_body(1000, "bye"))
        assert r.recv_close() == close_body(1000, "bye")
        assert r.expect_eof() == b""
    ev = d.wait_for("ws.close", code=1000)
    assert ev["reason"] == "bye"
    assert ev["active"] == "0"


def test_conforming_client_close_handshake(wsplugd):
    d = wsplugd()

    async def visit():
        async with ws_connect(d.url) as ws:
            hello = json.loads(await ws.recv())
            await ws.close(4321, "done here")
            return hello, ws.close_code, ws.close_reason

    hello, code, reason = asyncio.run(visit())
    assert (code, reason) == (4321, "done here")
    ev = d.wait_for("ws.close", conn=hello["connectionId"])
    assert ev["code"] == "4321" and ev["reason"] == "done here"


def test_close_with_empty_body_gets_empty_close(wsplugd):
    # 5.5.1: a Close frame may have no body; echoing it means no body.
    d = wsplugd(**ECHO)
    with opened(d) as r:
        r.send_frame(8, b"")
        assert r.recv_close() == b""
        assert r.expect_eof() == b""
    ev = d.wait_for("ws.close")
    assert ev["code"] == "1005"  # 7.1.5: no status code was received


def test_close_with_1_byte_body_fails_with_1002(wsplugd):
    # 5.5.1: a body, if present, MUST start with a 2-byte status code.
    d = wsplugd(**ECHO)
    with opened(d) as r:
        r.send_frame(8, b"\x03")
        failed_with(r, 1002)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016,
                                  1100, 2000, 2999, 5000, 65535])
def test_invalid_close_code_fails_with_1002(wsplugd, code):
    # 7.4.1/7.4.2: 1004-1006 and 1015 are reserved or MUST NOT be sent,
    # 0-999 are unused, 1016-2999 are for future revisions of the
    # protocol, and 5000+ are not defined.
    d = wsplugd(**ECHO)
    with opened(d) as r:
        r.send_frame(8, close_body(code, "x"))
        failed_with(r, 1002)
    d.wait_for("ws.close", code=1002)


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                  1010, 1011, 3000, 3999, 4000, 4999])
def test_valid_close_code_is_echoed(wsplugd, code):
    # 7.4.1 defined codes, 3000-3999 registered, 4000-4999 private use.
    d = wsplugd(**ECHO)
    with opened(d) as r:
        body = close_body(code, "reason é")
        r.send_frame(8, body)
        assert r.recv_close() == body
        assert r.expect_eof() == b""
    d.wait_for("ws.close", code=code)


def test_close_reason_of_123_bytes_is_echoed(wsplugd):
    # 5.5: 125 bytes of body at most: a code and 123 bytes of reason.
    d = wsplugd(**ECHO)
    with opened(d) as r:
        body = close_body(1000, "é" * 61 + "x")
        assert len(body) == 125
        r.send_frame(8, body)
        assert r.recv_close() == body
        assert r.expect_eof() == b""


def test_close_reason_with_invalid_utf8_fails_with_1007(wsplugd):
    # 5.5.1: the reason is UTF-8; 8.1: invalid UTF-8 fails with 1007.
    d = wsplugd(**ECHO)
    with opened(d) as r:
        r.send_frame(8, close_body(1000, b"bad \xff"))
        failed_with(r, 1007)
    with opened(d) as r:
        r.send_frame(8, close_body(1000, b"cut \xe2\x82"))
        failed_with(r, 1007)


def test_no_data_after_the_clients_close(wsplugd):
    # 5.5.1: after the Close frame the other side sends nothing more; the
    # server must not echo data the client sent after its own close.
    d = wsplugd(**ECHO)
    with opened(d) as r:
        r.send_raw(build_frame(1, "before") +
                   build_frame(8, close_body(1000)) +
                   build_frame(1, "after") + build_frame(9, b"p"))
        assert r.recv_frame() == (True, 1, b"before")
        assert r.recv_close() == close_body(1000)
        assert r.expect_eof() == b""


def test_no_data_after_the_servers_close(wsplugd):
    # 5.5.1: "After sending a Close frame, the endpoint MUST NOT send any
    # further data frames."  Binary without a catch-all makes the server
    # close (1003); what the client sends after that is not answered, and
    # the server closes TCP once the client's close arrives (7.1.1).
    d = wsplugd()
    with opened(d) as r:
        kind, hello = r.recv_message()
        assert kind == "text"
        r.send_frame(2, b"\x01\x02")
        body = r.recv_close()
        assert close_code(body) == 1003
        r.send_frame(1, json.dumps({"type": "ping", "id": 1}))
        r.send_frame(9, b"still there?")
        r.send_frame(8, body[:2])
        assert r.expect_eof() == b""
    ev = d.wait_for("ws.close", conn=json.loads(hello)["connectionId"])
    assert ev["code"] == "1003"


def test_server_close_seen_by_conforming_client(wsplugd):
    d = wsplugd()

    async def visit():
        async with ws_connect(d.url) as ws:
            await ws.recv()
            await ws.send(b"bin")
            with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
                await ws.recv()
            return e.value

    e = asyncio.run(visit())
    assert e.rcvd.code == 1003 and e.sent.code == 1003


@pytest.mark.parametrize("cp", [0x0, 0x7F, 0x80, 0x7FF, 0x800, 0xD7FF, 0xE000,
                                0xFFFD, 0xFFFE, 0xFFFF, 0x10000, 0x10FFFF],
                         ids=hex)
def test_boundary_code_points_are_valid(wsplugd, cp):
    # RFC 3629: every scalar value, noncharacters included, is valid.
    d = wsplugd(**ECHO)
    text = f"<{chr(cp)}>"
    with opened(d) as r:
        r.send_frame(1, text.encode())
        assert r.recv_message() == ("text", text)


def test_invalid_utf8_fails_fast_inside_an_unfinished_frame(wsplugd):
    # 8.1 and the design ("UTF-8 validated incrementally"): the server
    # must not wait for the rest of a frame whose first bytes are already
    # invalid.
    d = wsplugd(**ECHO)
    with opened(d) as r:
        frame = build_frame(1, b"valid start \xff" + b"x" * 987)
        r.send_raw(frame[:8 + 13])  # 16-bit header, mask, 13 bytes of data
        failed_with(r, 1007)


def test_message_ending_mid_sequence_with_empty_final_fragment(wsplugd):
    d = wsplugd(**ECHO)
    with opened(d) as r:
        r.send_frame(1, b"\xf0\x90\x80", fin=False)
        r.send_frame(0, b"")
        failed_with(r, 1007)


def test_server_close_waits_for_the_client_then_gives_up(wsplugd):
    # 7.1.1/7.1.2: after its own close frame the server waits for the
    # client's; it closes TCP by itself only when that does not come in
    # time (the daemon's limit is 5 s).
    import time
    d = wsplugd()
    with opened(d) as r:
        kind, hello = r.recv_message()
        conn = json.loads(hello)["connectionId"]
        r.send_frame(2, b"\x00")
        t0 = time.monotonic()
        assert close_code(r.recv_close()) == 1003
        assert r.expect_eof(timeout=15) == b""
        waited = time.monotonic() - t0
    assert 4.5 <= waited <= 5.0 + 2 * SLOW, waited
    closed = d.wait_for("ws.close", conn=conn)
    assert closed["code"] == "1003"
