"""RFC 6455 section 5 (data framing), as it binds a server.

Driven with the raw client: every frame the server sends is checked by
rawws.Raw.recv_frame (unmasked, no RSV bits, known opcode, control frames
final and short, minimal length encoding).  The server runs the echo plugin
as a catch-all, so every data message comes straight back.
"""

import os
import struct

import pytest

from rawws import Raw, ProtocolViolation, close_body

ECHO = {"plugins": ("echo",),
        "plugin_sections": {"echo": {"catch_all": "yes"}}}


def echo_daemon(wsplugd, **server):
    return wsplugd(server=server or None, **ECHO)


def opened(d):
    r = Raw(d.port)
    r.handshake()
    return r


def fails_with(d, code, *frames, raw=None):
    """Send the frames (build_frame argument tuples or bytes) on a fresh
    connection; the server must answer with a close frame carrying `code`,
    then close TCP, and log ws.error and ws.close with the code."""
    mark = d.mark()
    with opened(d) as r:
        for f in frames:
            if isinstance(f, bytes):
                r.send_raw(f)
            else:
                r.send_frame(*f[:2], **(f[2] if len(f) > 2 else {}))
        body = r.recv_close()
        assert len(body) >= 2, body
        got = struct.unpack("!H", body[:2])[0]
        assert got == code, (got, body)
        body[2:].decode("utf-8")  # the reason is UTF-8 (5.5.1)
        # The server fails the connection: it closes TCP on its own
        # (7.1.7), without waiting for our close frame.
        assert r.expect_eof() == b""
    closed = d.wait_for("ws.close", start=mark, code=code)
    d.wait_for("ws.error", start=mark, conn=closed["conn"], code=code)
    return body


def test_server_frames_are_never_masked(wsplugd):
    # 5.1: "A server MUST NOT mask any frames that it sends to the client."
    d = echo_daemon(wsplugd)
    with opened(d) as r:
        for n in (0, 1, 125, 126, 65535, 65536, 70000):
            r.send_frame(2, os.urandom(n))
            r._need(2)
            assert not r.buf[1] & 0x80, f"masked echo of {n} bytes"
            fin, op, payload = r.recv_frame()
            assert (fin, op, len(payload)) == (True, 2, n)
        r.send_frame(9, b"p")
        r._need(2)
        assert r.buf[:3] == b"\x8a\x01p"  # FIN|pong, unmasked, 1 byte
        r.recv_frame()
        r.send_frame(8, b"\x03\xe8")
        r._need(2)
        assert r.buf[:4] == b"\x88\x02\x03\xe8"
        assert r.recv_close() == b"\x03\xe8"


def test_unmasked_client_frame_fails_with_1002(wsplugd):
    # 5.1: the server MUST close on an unmasked frame (status 1002).
    d = echo_daemon(wsplugd)
    fails_with(d, 1002, (1, b"hello", {"mask": False}))
    fails_with(d, 1002, (9, b"", {"mask": False}))


@pytest.mark.parametrize("rsv", [1, 2, 4, 7])
def test_reserved_bits_fail_with_1002(wsplugd, rsv):
    # 5.2: RSV1-3 MUST be 0 unless an extension defines them; none is
    # negotiated, so the receiver MUST fail the connection.
    d = echo_daemon(wsplugd)
    fails_with(d, 1002, (1, b"hi", {"rsv": rsv}))
    fails_with(d, 1002, (9, b"", {"rsv": rsv}))


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcode_fails_with_1002(wsplugd, opcode):
    # 5.2: "If an unknown opcode is received, the receiving endpoint MUST
    # _Fail the WebSocket Connection_."
    d = echo_daemon(wsplugd)
    fails_with(d, 1002, (opcode, b"x"))


def test_64bit_length_with_msb_set_fails_with_1002(wsplugd):
    # 5.2: "the most significant bit MUST be 0" in the 64-bit length.
    d = echo_daemon(wsplugd)
    fails_with(d, 1002, (2, b"", {"length": 1 << 63}))
    fails_with(d, 1002, (1, b"", {"length": (1 << 64) - 1}))


def test_control_frame_over_125_bytes_fails_with_1002(wsplugd):
    # 5.5: "All control frames MUST have a payload length of 125 bytes or
    # less".
    d = echo_daemon(wsplugd)
    fails_with(d, 1002, (9, b"x" * 126))
    fails_with(d, 1002, (10, b"x" * 126))
    fails_with(d, 1002, (8, b"\x03\xe8" + b"x" * 124))


def test_fragmented_control_frame_fails_with_1002(wsplugd):
    # 5.5: "All control frames ... MUST NOT be fragmented."
    d = echo_daemon(wsplugd)
    fails_with(d, 1002, (9, b"ab", {"fin": False}))
    fails_with(d, 1002, (10, b"", {"fin": False}))
    fails_with(d, 1002, (8, b"\x03\xe8", {"fin": False}))


def test_continuation_without_a_message_fails_with_1002(wsplugd):
    # 5.4: a continuation frame belongs to a fragmented message in
    # progress; one with nothing to continue is a protocol error.
    d = echo_daemon(wsplugd)
    fails_with(d, 1002, (0, b"orphan"))
    fails_with(d, 1002, (0, b"orphan", {"fin": False}))
    # ... also right after a complete message.
    fails_with(d, 1002, (1, b"done"), (0, b"late"))


def test_new_data_frame_inside_a_fragmented_message_fails_with_1002(wsplugd):
    # 5.4: fragments of one message MUST NOT be interleaved with another.
    d = echo_daemon(wsplugd)
    fails_with(d, 1002, (1, b"first", {"fin": False}), (1, b"second"))
    fails_with(d, 1002, (2, b"first", {"fin": False}), (2, b"second"))
    fails_with(d, 1002, (1, b"first", {"fin": False}), (2, b"second"))


def test_ping_between_fragments_is_answered_first(wsplugd):
    # 5.4: "An endpoint MUST be capable of handling control frames in the
    # middle of a fragmented message"; 5.5.3: the pong carries the ping's
    # "Application data".
    d = echo_daemon(wsplugd)
    with opened(d) as r:
        r.send_frame(1, b"Hel", fin=False)
        r.send_frame(9, b"in the middle")
        assert r.recv_frame() == (True, 10, b"in the middle")
        r.send_frame(0, b"lo, ", fin=False)
        r.send_frame(9, b"")
        r.send_frame(10, b"unsolicited")
        r.send_frame(0, "wörld")
        assert r.recv_frame() == (True, 10, b"")
        assert r.recv_frame() == (True, 1, "Hello, wörld".encode())


def test_ping_with_125_byte_payload_gets_identical_pong(wsplugd):
    # 5.5.2/5.5.3: the pong's payload is the ping's, byte for byte.
    d = echo_daemon(wsplugd)
    with opened(d) as r:
        for payload in (bytes(range(125)), os.urandom(125), b"\xff" * 125,
                        b""):
            r.send_frame(9, payload)
            assert r.recv_frame() == (True, 10, payload)


def test_unsolicited_pong_is_ignored(wsplugd):
    # 5.5.3: "A response to an unsolicited Pong frame is not expected."
    d = echo_daemon(wsplugd)
    with opened(d) as r:
        r.send_frame(10, b"heartbeat")
        r.send_frame(10, b"")
        r.send_frame(1, b"after")
        assert r.recv_frame() == (True, 1, b"after")
        r.send_frame(8, close_body(1000))
        assert r.recv_close() == close_body(1000)
    assert d.wait_for("ws.close")["code"] == "1000"
    assert d.find_all("ws.error") == []


@pytest.mark.parametrize("n", [125, 126, 127, 65535, 65536, 65537, 300000])
def test_7_16_and_64_bit_lengths(wsplugd, n):
    # 5.2: payload lengths 0-125 in 7 bits, 126-65535 in 16, more in 64;
    # the server's own frames must use the minimal encoding (checked by
    # Raw.recv_frame).
    d = echo_daemon(wsplugd)
    with opened(d) as r:
        data = os.urandom(n)
        r.send_frame(2, data)
        assert r.recv_frame() == (True, 2, data)
        text = ("é" * n)[: n // 2]
        r.send_frame(1, text)
        assert r.recv_message() == ("text", text)


def test_empty_message_and_empty_fragments(wsplugd):
    # 5.4/5.6: a message may be empty, and so may any of its fragments.
    d = echo_daemon(wsplugd)
    with opened(d) as r:
        r.send_frame(1, b"")
        assert r.recv_frame() == (True, 1, b"")
        r.send_frame(2, b"")
        assert r.recv_frame() == (True, 2, b"")
        r.send_frame(1, b"", fin=False)
        r.send_frame(0, b"ab", fin=False)
        r.send_frame(0, b"", fin=False)
        r.send_frame(0, b"")
        assert r.recv_message() == ("text", "ab")
        r.send_frame(1, b"", fin=False)
        r.send_frame(0, b"", fin=False)
        r.send_frame(0, b"")
        assert r.recv_message() == ("text", "")
        r.send_frame(2, b"\x00", fin=False)
        r.send_frame(0, b"")
        assert r.recv_message() == ("binary", b"\x00")


def test_fragment_boundaries_do_not_matter(wsplugd):
    # 5.4: the message is the concatenation of its fragments, whatever
    # their sizes, and TCP may split frames anywhere.
    d = echo_daemon(wsplugd)
    with opened(d) as r:
        data = os.urandom(5000)
        pieces = [data[:1], data[1:2], data[2:1000], data[1000:4999],
                  data[4999:]]
        for i, p in enumerate(pieces):
            r.send_frame(0 if i else 2, p, fin=i == len(pieces) - 1)
        assert r.recv_message() == ("binary", data)
        # A frame dribbled one byte per send.
        from rawws import build_frame
        frame = build_frame(1, "split across segments")
        for i in range(len(frame)):
            r.send_raw(frame[i:i + 1])
        assert r.recv_message() == ("text", "split across segments")


def test_raw_reader_rejects_masked_server_frames():
    # The strict reader is what the tests above rely on; make sure it does
    # catch a masked frame.
    import socket
    a, b = socket.socketpair()
    try:
        r = Raw.__new__(Raw)
        r.sock, r.buf = b, b""
        a.sendall(b"\x81\x81abcd\x00")
        with pytest.raises(ProtocolViolation):
            r.recv_frame()
    finally:
        a.close()
        b.close()


def test_control_frames_dribbled_byte_by_byte(wsplugd):
    # 5.5: a control frame may arrive in any number of TCP segments.
    from rawws import build_frame
    d = echo_daemon(wsplugd)
    with opened(d) as r:
        payload = bytes(range(125))
        for b in [bytes([x]) for x in build_frame(9, payload)]:
            r.send_raw(b)
        assert r.recv_frame() == (True, 10, payload)
        body = close_body(3003, "dribbled")
        for b in [bytes([x]) for x in build_frame(8, body)]:
            r.send_raw(b)
        assert r.recv_close() == body
        assert r.expect_eof() == b""


def test_burst_of_frames_in_one_segment_answered_in_order(wsplugd):
    # 5.4: messages are delivered in order, however many share a read.
    from rawws import build_frame
    d = echo_daemon(wsplugd)
    with opened(d) as r:
        burst = b"".join(build_frame(9, f"p{i}") if i % 3 == 0 else
                         build_frame(1, f"m{i}") for i in range(3000))
        r.send_raw(burst)
        for i in range(3000):
            if i % 3 == 0:
                assert r.recv_frame() == (True, 10, f"p{i}".encode())
            else:
                assert r.recv_frame() == (True, 1, f"m{i}".encode())


def test_replies_past_a_full_socket_arrive_whole_and_in_order(wsplugd):
    # Replies made during one read are gathered and written together, and
    # what the socket does not take is queued from the frame it cut.  A
    # client with a 4 KiB window sends 6,000 messages one by one (7- and
    # 16-bit lengths, 6 MB of replies: more than the server's socket
    # buffer holds, 4 MiB at most) before it reads any; it must get every
    # one, whole and in order.
    from rawws import build_frame
    d = echo_daemon(wsplugd)
    sizes = [1 + (i * 397) % 2000 for i in range(6000)]
    r = Raw(d.port, rcvbuf=4096)
    with r:
        r.handshake()
        for i, n in enumerate(sizes):
            r.send_raw(build_frame(1, bytes([97 + i % 26]) * n))
        r.send_frame(9, b"last")
        for i, n in enumerate(sizes):
            assert r.recv_frame() == (True, 1, bytes([97 + i % 26]) * n), i
        assert r.recv_frame() == (True, 10, b"last")


def test_close_frame_survives_data_sent_after_the_violation(wsplugd):
    # 7.1.1/7.1.7: the server fails the connection with a close frame and
    # closes TCP; a client still sending must get that close frame and a
    # clean FIN, not a reset that would destroy it unread.
    from rawws import build_frame
    d = echo_daemon(wsplugd)
    with opened(d) as r:
        junk = build_frame(2, b"j" * 60000) * 40  # 2.4 MB after the error
        r.send_raw(build_frame(1, b"bad", rsv=2) + junk[:1000])
        body = r.recv_close()
        assert body[:2] == close_body(1002)
        try:
            r.send_raw(junk)
            r.sock.shutdown(2 - 1)  # SHUT_WR: our EOF ends the drain
        except (BrokenPipeError, ConnectionResetError) as e:
            raise AssertionError(f"server reset a draining client: {e}")
        assert r.expect_eof() == b""
