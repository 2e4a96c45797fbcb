"""A raw WebSocket client for what no conforming client will send.

Conforming traffic in the tests goes through Python's websockets library.
This module exists for the other half: unmasked frames, reserved bits,
invalid UTF-8 split across fragments, oversize headers.  Its reader checks
the server's frames strictly (unmasked, no reserved bits, known opcodes,
control frames final and short) so a server bug cannot hide behind it.
"""

import base64
import hashlib
import os
import socket
import struct
import time

from harness import SLOW


class ProtocolViolation(AssertionError):
    pass


GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key):
    """The Sec-WebSocket-Accept a server must answer key with (4.2.2)."""
    return base64.b64encode(
        hashlib.sha1((key + GUID).encode()).digest()).decode()


def build_frame(opcode, payload=b"", fin=True, mask=True, rsv=0,
                length=None):
    """The bytes of one client frame; length overrides the announced
    payload length (the payload sent is still `payload`)."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    if n < 126:
        hdr = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if mask:
        key = os.urandom(4)
        hdr += key
        payload = _xor(payload, key)
    return hdr + payload


def _xor(data, key):
    if not data:
        return data
    k = (key * (len(data) // 4 + 1))[:len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(
        len(data), "big")


def close_body(code, reason=b""):
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


class Raw:
    def __init__(self, port, path="/ws", headers=None, timeout=10,
                 rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect, so the window the server sees is small.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        # Frames go out as written: no Nagle delay between small sends.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout * SLOW)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.port = port
        self.path = path
        self.extra = headers or {}
        self.timeout = timeout

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    # -- handshake ------------------------------------------------------

    def request_bytes(self, method="GET", path=None, headers=None, drop=(),
                      key=None):
        """(key, bytes) of an upgrade request, without sending it."""
        key = key or base64.b64encode(os.urandom(16)).decode()
        h = {"Host": f"127.0.0.1:{self.port}", "Upgrade": "websocket",
             "Connection": "Upgrade", "Sec-WebSocket-Key": key,
             "Sec-WebSocket-Version": "13", **self.extra, **(headers or {})}
        lines = [f"{method} {path or self.path} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in h.items() if k not in drop]
        return key, ("\r\n".join(lines) + "\r\n\r\n").encode()

    def request(self, method="GET", path=None, headers=None, drop=(),
                key=None):
        key, data = self.request_bytes(method, path, headers, drop, key)
        self.sock.sendall(data)
        return key

    def response(self):
        """Status, headers and body of the HTTP response."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        body = b""
        n = int(headers.get("content-length", 0))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def handshake(self, **kw):
        self.request(**kw)
        status, headers, _ = self.response()
        assert status == 101, status
        return headers

    # -- frames ---------------------------------------------------------

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0,
                   length=None):
        self.sock.sendall(build_frame(opcode, payload, fin, mask, rsv,
                                      length))

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed by the server")
        self.buf += data

    def _need(self, n):
        while len(self.buf) < n:
            self._fill()

    def recv_frame(self):
        """(fin, opcode, payload) of the next server frame, strictly."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        if b1 & 0x80:
            raise ProtocolViolation("server frame is masked")
        if b0 & 0x70:
            raise ProtocolViolation("server frame has reserved bits")
        op = b0 & 0x0F
        if op not in (0, 1, 2, 8, 9, 10):
            raise ProtocolViolation(f"server sent opcode {op}")
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
            if n < 126:
                raise ProtocolViolation("non-minimal 16-bit length")
        elif n == 127:
            self._need(10)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
            if n < 65536:
                raise ProtocolViolation("non-minimal 64-bit length")
        if op >= 8 and (n > 125 or not b0 & 0x80):
            raise ProtocolViolation("bad control frame")
        self._need(off + n)
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return bool(b0 & 0x80), op, payload

    def recv_message(self):
        """Next data message, skipping pings (answered) and pongs."""
        parts, kind = [], None
        while True:
            fin, op, payload = self.recv_frame()
            if op == 9:
                self.send_frame(10, payload)
                continue
            if op == 10:
                continue
            if op == 8:
                return "close", payload
            if op != 0:
                kind = op
            parts.append(payload)
            if fin:
                data = b"".join(parts)
                return ("text", data.decode()) if kind == 1 else \
                    ("binary", data)

    def expect_close(self, timeout=10, reply=True):
        """Read until the server's close frame; return (code, reason) and
        check that the server then closes TCP.  Like a conforming client,
        answer the close frame unless reply is False."""
        self.sock.settimeout(timeout * SLOW)
        while True:
            fin, op, payload = self.recv_frame()
            if op == 8:
                break
        if len(payload) >= 2:
            code = struct.unpack("!H", payload[:2])[0]
            reason = payload[2:].decode()
        else:
            code, reason = 1005, ""
        if reply:
            try:
                self.send_frame(8, payload[:2])
            except OSError:
                pass  # the server may already have closed after failing
        # The server closes the TCP connection after the close frame.
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            try:
                self._fill()
            except (EOFError, ConnectionResetError):
                return code, reason
        raise AssertionError("server did not close TCP after close frame")

    def recv_close(self, timeout=10):
        """Skip to the server's close frame (answering pings) and return
        its raw payload without answering it."""
        self.sock.settimeout(timeout * SLOW)
        while True:
            fin, op, payload = self.recv_frame()
            if op == 8:
                return payload
            if op == 9:
                self.send_frame(10, payload)

    def expect_eof(self, timeout=10):
        """Require that the server closes TCP with nothing more sent;
        returns the bytes that came before the EOF (must be none)."""
        self.sock.settimeout(timeout * SLOW)
        extra = self.buf
        self.buf = b""
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return extra
            except socket.timeout:
                break
            if not data:
                return extra
            extra += data
        raise AssertionError("server did not close TCP")
