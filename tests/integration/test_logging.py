"""The log (DESIGN.md "Logging, monitoring"): one event per line, logfmt
by default and JSON optionally, whatever a client puts in the fields the
daemon logs."""

import asyncio
import json

from harness import ws_connect
from rawws import Raw, close_body

# A user agent that tries to forge fields and events in a logfmt line.
FORGING_UA = 'evil" event=ws.close code=1000 x="\\ \t tab'


def visit_with_ua(d, ua_bytes):
    """A raw visit with a given User-Agent (bytes); returns the conn id."""
    with Raw(d.port) as r:
        _, head = r.request_bytes(headers={"User-Agent": "UA-PLACEHOLDER"})
        r.send_raw(head.replace(b"UA-PLACEHOLDER", ua_bytes))
        status, _, _ = r.response()
        assert status == 101
        kind, hello = r.recv_message()
        conn = json.loads(hello)["connectionId"]
        r.send_frame(8, close_body(1000, 'q"uote\\'))
        assert r.recv_close() == close_body(1000, 'q"uote\\')
    d.wait_for("ws.close", conn=conn)
    return conn


def test_logfmt_fields_cannot_be_forged(wsplugd):
    d = wsplugd()
    conn = visit_with_ua(d, FORGING_UA.encode())
    opened = d.wait_for("ws.open", conn=conn)
    assert opened["ua"] == FORGING_UA
    assert opened["event"] == "ws.open"
    closes = d.find_all("ws.close")
    assert len(closes) == 1 and closes[0]["conn"] == conn
    assert closes[0]["reason"] == 'q"uote\\'


def test_json_format_every_line_is_one_json_object(wsplugd):
    d = wsplugd(log={"format": "json"})

    async def visit():
        async with ws_connect(d.url, user_agent_header="json-test/1") as ws:
            hello = json.loads(await ws.recv())
            await ws.send("not json")
            await ws.recv()
            await ws.close(4000, "é\"\\")
            return hello["connectionId"]

    conn = asyncio.run(visit())
    conn2 = visit_with_ua(d, FORGING_UA.encode())
    opened = d.wait_for("ws.open", conn=conn)
    assert opened["ua"] == "json-test/1"
    assert opened["active"] == "1"
    closed = d.wait_for("ws.close", conn=conn)
    assert closed["code"] == "4000" and closed["reason"] == "é\"\\"
    assert d.wait_for("ws.open", conn=conn2)["ua"] == FORGING_UA
    with d.cond:
        bad = [(ev, line) for ev, line in zip(d.events, d.lines)
               if "_invalid" in ev]
        raws = list(d.raw_lines)
    assert bad == []
    for raw in raws:
        json.loads(raw.decode("utf-8"))


def test_json_format_stays_valid_with_non_utf8_user_agent(wsplugd):
    # HTTP allows obs-text (bytes 0x80-0xFF) in a header value, and the
    # daemon accepts such a User-Agent; a JSON log line must still be
    # valid UTF-8 JSON (RFC 8259 8.1), so the bytes have to be escaped or
    # replaced rather than copied.
    d = wsplugd(log={"format": "json"})
    ua = b"legacy \xe9t\xe9 \x80\xff agent"
    conn = visit_with_ua(d, ua)
    with d.cond:
        raws = list(d.raw_lines)
        events = list(d.events)
    for raw in raws:
        try:
            json.loads(raw.decode("utf-8"))
        except ValueError as e:  # UnicodeDecodeError is a ValueError
            raise AssertionError(f"log line is not JSON ({e}): {raw!r}")
    opened = [ev for ev in events if ev.get("event") == "ws.open"]
    assert len(opened) == 1 and opened[0]["conn"] == conn
    assert opened[0]["ua"].startswith("legacy ")



def test_json_format_stays_valid_with_a_long_utf8_user_agent(wsplugd):
    # A valid UTF-8 User-Agent longer than whatever the daemon keeps of it
    # must not be cut inside a character on its way into a JSON line.
    d = wsplugd(log={"format": "json"})
    for prefix in range(3):
        ua = ("a" * prefix + "é€" * 400).encode()
        conn = visit_with_ua(d, ua)
        opened = d.wait_for("ws.open", conn=conn)
        assert "_invalid" not in opened, opened
        assert ua.decode().startswith(opened["ua"])
        assert len(opened["ua"]) >= 100
    with d.cond:
        raws = list(d.raw_lines)
    for raw in raws:
        try:
            json.loads(raw.decode("utf-8"))
        except ValueError as e:
            raise AssertionError(f"log line is not JSON ({e}): {raw!r}")


def test_nul_in_close_reason_is_logged_escaped(wsplugd):
    # A NUL is valid UTF-8 in a close reason; the log keeps what follows
    # it and escapes it, in both formats.
    for fmt, escaped in (("logfmt", b'reason="forged\\u0000after"'),
                         ("json", b'"reason":"forged\\u0000after"')):
        d = wsplugd(log={"format": fmt})
        with Raw(d.port) as r:
            r.handshake()
            r.send_frame(8, close_body(4001, b"forged\0after\x01"))
            assert r.recv_close() == close_body(4001, b"forged\0after\x01")
        closed = d.wait_for("ws.close", code=4001)
        assert closed["reason"] == "forged\0after\x01", closed
        with d.cond:
            raws = [raw for raw in d.raw_lines if b"ws.close" in raw]
        assert len(raws) == 1
        assert escaped[:-1] + b'\\u0001"' in raws[0], raws[0]
