"""permessage-deflate (RFC 7692): negotiation with Python's websockets for
each parameter combination, the seed scenario compressed, RSV1 misuse, zip
bombs, fragmented compressed messages, compress-once broadcast and the
memory budget, against the real daemon."""

import asyncio
import json
import os
import zlib

import pytest
from websockets.extensions.permessage_deflate import \
    ClientPerMessageDeflateFactory

from harness import ws_connect
from rawws import Raw, build_frame
from test_admin import scrape, value

ECHO = {"echo": {"catch_all": "yes"}}
PLUGINS = ("connection_established", "ping", "echo")
TAIL = b"\x00\x00\xff\xff"


def deflate_conf(**keys):
    return "\n[deflate]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())


def start(wsplugd, server=None, plugins=PLUGINS, **keys):
    keys.setdefault("threshold", "0B")
    return wsplugd(plugins=plugins, plugin_sections=ECHO, server=server,
                   extra=deflate_conf(**keys))


def compress(data, wbits=15, obj=None):
    """A message as a client compresses it: raw deflate, sync flush, the
    final 00 00 ff ff removed."""
    c = obj or zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def recv_raw_frame(r):
    """(b0, payload) of the next server frame; RSV bits are allowed."""
    r._need(2)
    b0, b1 = r.buf[0], r.buf[1]
    assert not b1 & 0x80
    n, off = b1 & 0x7F, 2
    if n == 126:
        r._need(4)
        n, off = int.from_bytes(r.buf[2:4], "big"), 4
    elif n == 127:
        r._need(10)
        n, off = int.from_bytes(r.buf[2:10], "big"), 10
    r._need(off + n)
    payload = r.buf[off:off + n]
    r.buf = r.buf[off + n:]
    return b0, payload


def open_raw(d, offer="permessage-deflate"):
    r = Raw(d.port)
    headers = r.handshake(headers={"Sec-WebSocket-Extensions": offer})
    return r, headers


def greeting(r, inflater=None):
    """The connection_established message, compressed or not."""
    b0, payload = recv_raw_frame(r)
    if b0 & 0x40:
        payload = (inflater or zlib.decompressobj(-15)).decompress(
            payload + TAIL)
    return b0, json.loads(payload)


# -- negotiation ----------------------------------------------------------

COMBOS = [
    dict(),
    dict(server_no_context_takeover=True),
    dict(client_no_context_takeover=True),
    dict(server_no_context_takeover=True, client_no_context_takeover=True),
    dict(server_max_window_bits=9),
    dict(server_max_window_bits=12),
    dict(client_max_window_bits=True),
    dict(client_max_window_bits=9),  # 8: zlib cannot compress with it
    dict(client_max_window_bits=11),
    dict(server_max_window_bits=10, client_max_window_bits=10,
         server_no_context_takeover=True, client_no_context_takeover=True),
    dict(server_max_window_bits=15, client_max_window_bits=15),
]


@pytest.mark.parametrize("kw", COMBOS, ids=lambda kw: ",".join(
    f"{k}={v}" for k, v in kw.items()) or "plain")
@pytest.mark.parametrize("takeover", ["yes", "no"])
def test_each_parameter_combination_round_trips(wsplugd, kw, takeover):
    d = start(wsplugd, context_takeover=takeover)
    ext = ClientPerMessageDeflateFactory(**kw)
    msgs = [json.dumps({"type": "ping", "id": i, "pad": "x" * (i * 50)})
            for i in range(5)]
    texts = ["é€𐍈 " * 300, "a" * 70000, ""]
    blobs = [os.urandom(3000), bytes(100000)]

    async def visit():
        async with ws_connect(d.url, extensions=[ext],
                              compression=None) as ws:
            hdr = ws.response_headers["Sec-WebSocket-Extensions"]
            hello = json.loads(await ws.recv())
            pongs = []
            for m in msgs:
                await ws.send(m)
                pongs.append(json.loads(await ws.recv()))
            echoed = []
            for t in texts + blobs:
                await ws.send(t)
                echoed.append(await ws.recv())
            return hdr, hello, pongs, echoed

    hdr, hello, pongs, echoed = asyncio.run(visit())
    params = [p.strip() for p in hdr.split(";")]
    assert params[0] == "permessage-deflate"
    if takeover == "no" or kw.get("server_no_context_takeover"):
        assert "server_no_context_takeover" in params
    if takeover == "no" or kw.get("client_no_context_takeover"):
        assert "client_no_context_takeover" in params
    if "server_max_window_bits" in kw:
        assert f"server_max_window_bits={kw['server_max_window_bits']}" \
            in params
    if "client_max_window_bits" not in kw:
        assert not any(p.startswith("client_max_window_bits")
                       for p in params)
    assert hello["type"] == "connection_established"
    assert [p["id"] for p in pongs] == list(range(5))
    assert echoed == texts + blobs
    closed = d.wait_for("ws.close")
    assert closed["code"] == "1000"
    # Compressed on the wire: far fewer bytes than the messages.
    assert int(closed["bytes_in"]) < 70000 and \
        int(closed["bytes_out"]) < 70000 + 100000 // 4


def test_default_client_gets_deflate_and_disabled_does_not(wsplugd):
    on = wsplugd(plugins=PLUGINS, plugin_sections=ECHO)
    off = wsplugd(plugins=PLUGINS, plugin_sections=ECHO,
                  extra=deflate_conf(enabled="no"))

    async def visit(d):
        async with ws_connect(d.url, compression="deflate") as ws:
            await ws.recv()
            await ws.send("z" * 10000)
            assert await ws.recv() == "z" * 10000
            return ws.response_headers.get("Sec-WebSocket-Extensions")

    assert asyncio.run(visit(on)) == "permessage-deflate"
    assert asyncio.run(visit(off)) is None
    on_bytes = int(on.wait_for("ws.close")["bytes_out"])
    off_bytes = int(off.wait_for("ws.close")["bytes_out"])
    assert on_bytes < 500 < 10000 < off_bytes


@pytest.mark.parametrize("offer,answer", [
    # several offers in one header: the first acceptable one
    ("permessage-deflate; server_max_window_bits=8, "
     "permessage-deflate; client_no_context_takeover",
     "permessage-deflate; client_no_context_takeover"),
    ("permessage-deflate; bogus, permessage-deflate",
     "permessage-deflate"),
    ("x-webkit-deflate-frame, permessage-deflate; "
     "server_max_window_bits=\"11\"",
     "permessage-deflate; server_max_window_bits=11"),
    # declined, connection kept
    ("permessage-deflate; server_max_window_bits=16", None),
    ("permessage-deflate; client_max_window_bits=7", None),
    ("permessage-deflate; server_no_context_takeover=yes", None),
    ("permessage-deflate; server_no_context_takeover; "
     "server_no_context_takeover", None),
    ("permessage-deflate; ;", None),
    ("permessage-deflate; a=\"unterminated", None),
])
def test_raw_offers(wsplugd, offer, answer):
    d = start(wsplugd)
    r, headers = open_raw(d, offer)
    with r:
        assert headers.get("sec-websocket-extensions") == answer
        b0, hello = greeting(r)
        assert hello["type"] == "connection_established"
        assert bool(b0 & 0x40) == (answer is not None)


def test_several_extension_headers(wsplugd):
    d = start(wsplugd)
    with Raw(d.port) as r:
        _, raw = r.request_bytes(headers={"Sec-WebSocket-Extensions":
                                          "permessage-deflate; "
                                          "server_max_window_bits=99"})
        # a second header line with the acceptable offer
        raw = raw.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: "
                          b"permessage-deflate; server_max_window_bits=10"
                          b"\r\n\r\n")
        r.send_raw(raw)
        status, headers, _ = r.response()
        assert status == 101
        assert headers["sec-websocket-extensions"] == \
            "permessage-deflate; server_max_window_bits=10"
        b0, hello = greeting(r, zlib.decompressobj(-10))
        assert b0 & 0x40 and hello["type"] == "connection_established"


# -- the seed scenario, compressed ----------------------------------------

def test_seed_scenario_compressed_on_the_wire(wsplugd):
    d = start(wsplugd, plugins=("connection_established", "ping"))
    r, headers = open_raw(d, "permessage-deflate; client_max_window_bits")
    with r:
        assert headers["sec-websocket-extensions"] == "permessage-deflate"
        inflater = zlib.decompressobj(-15)
        b0, hello = greeting(r, inflater)
        assert b0 == 0x80 | 0x40 | 1  # FIN, RSV1, text
        assert hello["type"] == "connection_established"
        deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        sizes = []
        for i in range(3):
            body = compress(json.dumps({"type": "ping", "id": i}).encode(),
                            obj=deflater)
            r.send_frame(1, body, rsv=4)
            b0, payload = recv_raw_frame(r)
            assert b0 & 0x40
            sizes.append(len(payload))
            pong = json.loads(inflater.decompress(payload + TAIL))
            assert pong["type"] == "pong" and pong["id"] == i
        # context takeover: later pongs shrink against the earlier ones
        assert sizes[2] < sizes[0]
        r.send_frame(8, b"\x03\xe8")
        assert recv_raw_frame(r)[1] == b"\x03\xe8"


def test_below_threshold_goes_plain(wsplugd):
    d = start(wsplugd, plugins=("connection_established", "ping"),
              threshold="1KiB")
    r, headers = open_raw(d)
    with r:
        assert headers["sec-websocket-extensions"] == "permessage-deflate"
        b0, hello = greeting(r)
        assert b0 == 0x81  # RSV1 clear: under the threshold
        # a compressed ping is still understood
        r.send_frame(1, compress(b'{"type":"ping"}'), rsv=4)
        b0, payload = recv_raw_frame(r)
        assert b0 == 0x81 and json.loads(payload)["type"] == "pong"


# -- RSV1 misuse, bad data, zip bombs -------------------------------------

def fails_with(d, code, offer, *frames):
    r, headers = open_raw(d, offer) if offer else (Raw(d.port), None)
    with r:
        if headers is None:
            r.handshake()
        greeting(r)
        for f in frames:
            r.send_raw(f)
        got, reason = r.expect_close()
        assert got == code, reason
        return reason


def test_rsv1_misuse_closes_1002(wsplugd):
    d = start(wsplugd)
    body = compress(b'{"type":"ping"}')
    # not negotiated
    fails_with(d, 1002, None, build_frame(1, body, rsv=4))
    # on a control frame
    assert fails_with(d, 1002, "permessage-deflate",
                      build_frame(9, b"", rsv=4)) == \
        "compressed control frame"
    # on a continuation
    assert fails_with(d, 1002, "permessage-deflate",
                      build_frame(1, body[:3], fin=False, rsv=4),
                      build_frame(0, body[3:], rsv=4)) == \
        "compressed bit on a continuation frame"
    # RSV2 and RSV3 stay forbidden
    fails_with(d, 1002, "permessage-deflate", build_frame(1, body, rsv=2))
    fails_with(d, 1002, "permessage-deflate", build_frame(1, body, rsv=6))


def test_bad_compressed_data_and_utf8_close_1007(wsplugd):
    d = start(wsplugd)
    assert fails_with(d, 1007, "permessage-deflate",
                      build_frame(1, b"\xff\xff\xff\xff", rsv=4)) == \
        "invalid compressed data"
    assert fails_with(d, 1007, "permessage-deflate",
                      build_frame(1, compress(b"ok \xc0\xaf"), rsv=4)) == \
        "invalid UTF-8 in text message"
    # the same bytes as binary are echoed
    r, _ = open_raw(d)
    with r:
        greeting(r)
        r.send_frame(2, compress(b"ok \xc0\xaf"), rsv=4)
        b0, payload = recv_raw_frame(r)
        assert b0 & 0x0F == 2
        out = payload if not b0 & 0x40 else \
            zlib.decompressobj(-15).decompress(payload + TAIL)
        assert out == b"ok \xc0\xaf"


@pytest.mark.parametrize("takeover", ["yes", "no"])
def test_zip_bomb_closes_1009_without_growing(wsplugd, takeover):
    d = start(wsplugd, server={"max_message_size": "1MiB"},
              context_takeover=takeover)
    bomb = compress(bytes(64 * 1024 * 1024), wbits=15)
    assert len(bomb) < 128 * 1024  # 64 MiB of zeros in ~64 KiB
    pid = d.proc.pid

    def rss_kib():
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])

    before = rss_kib()
    assert fails_with(d, 1009, "permessage-deflate",
                      build_frame(2, bomb, rsv=4)) == "message too big"
    # Peak RSS grew by about the limit, not by the 64 MiB inflated.
    assert rss_kib() - before < 8 * 1024
    # exactly at the limit is fine, fragmented
    r, _ = open_raw(d)
    with r:
        greeting(r)
        body = compress(bytes(1024 * 1024))
        r.send_frame(2, body[:10], fin=False, rsv=4)
        r.send_frame(0, body[10:20], fin=False)
        r.send_frame(0, body[20:])
        b0, payload = recv_raw_frame(r)
        out = zlib.decompressobj(-15).decompress(payload + TAIL) \
            if b0 & 0x40 else payload
        assert out == bytes(1024 * 1024)


def test_fragmented_compressed_messages_interleaved_with_pings(wsplugd):
    d = start(wsplugd)
    r, _ = open_raw(d)
    with r:
        greeting(r)
        inflater = zlib.decompressobj(-15)
        deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        for n in (1, 2, 7, 100):
            text = ("fragment é " * 500).encode()
            body = compress(text, obj=deflater)
            step = max(1, len(body) // n + 1)
            chunks = [body[i:i + step] for i in range(0, len(body), step)]
            for i, chunk in enumerate(chunks):
                r.send_frame(1 if i == 0 else 0, chunk,
                             fin=i == len(chunks) - 1,
                             rsv=4 if i == 0 else 0)
                r.send_frame(9, b"p")  # interleaved control frame
            got = b""
            while True:
                b0, payload = recv_raw_frame(r)
                if b0 & 0x0F == 10:
                    continue
                break
            assert b0 & 0x40
            got = inflater.decompress(payload + TAIL)
            assert got == text


# -- compress once, and the memory budget ---------------------------------

def test_broadcast_compressed_once(wsplugd):
    n = 20
    d = start(wsplugd, plugins=("broadcast",), context_takeover="no")

    async def main():
        subs = [await ws_connect(d.url, compression="deflate")
                for _ in range(n)]
        for ws in subs:
            await ws.send(json.dumps({"type": "subscribe", "channel": "c"}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
        before, _ = scrape(d)
        async with ws_connect(d.url, compression="deflate") as pub:
            await pub.send(json.dumps({"type": "publish", "channel": "c",
                                       "data": {"text": "hello " * 100}}))
            got = [json.loads(await ws.recv()) for ws in subs]
            after, _ = scrape(d)
        for ws in subs:
            await ws.close()
        return before, after, got

    before, after, got = asyncio.run(main())
    assert all(m["data"]["text"] == "hello " * 100 for m in got)
    reused = value(after, "wsplugd_deflate_compressions_reused_total") - \
        value(before, "wsplugd_deflate_compressions_reused_total")
    assert reused >= n - 1
    assert value(after, "wsplugd_deflate_full_contexts") == 0


def test_budget_answers_tight_and_metrics_count(wsplugd):
    # one full context (about 301 KiB) fits, a second does not
    d = start(wsplugd, context_budget="400KiB")
    offer = "permessage-deflate; client_max_window_bits"
    r1, h1 = open_raw(d, offer)
    r2, h2 = open_raw(d, offer)
    with r1, r2:
        assert h1["sec-websocket-extensions"] == "permessage-deflate"
        assert h2["sec-websocket-extensions"] == (
            "permessage-deflate; server_no_context_takeover; "
            "client_no_context_takeover; server_max_window_bits=10; "
            "client_max_window_bits=10")
        greeting(r1)
        greeting(r2, zlib.decompressobj(-10))
        s, _ = scrape(d)
        assert value(s, "wsplugd_deflate_connections") == 2
        assert value(s, "wsplugd_deflate_full_contexts") == 1
        assert 256 * 1024 < value(s, "wsplugd_deflate_full_context_bytes") \
            <= 400 * 1024
        assert value(s, "wsplugd_deflate_tight_answers_total") == 1
    d.wait_count("ws.close", 2)
    s, _ = scrape(d)
    assert value(s, "wsplugd_deflate_full_contexts") == 0
    assert value(s, "wsplugd_deflate_zlib_bytes") < 256 * 1024


def test_idle_negotiated_connections_hold_no_stream(wsplugd):
    """Lazy streams: 50 connections that negotiated deflate and exchanged
    only uncompressed (below-threshold) messages hold no zlib memory."""
    d = start(wsplugd, plugins=("connection_established", "ping"),
              threshold="1KiB")
    conns = [open_raw(d)[0] for _ in range(50)]
    try:
        for r in conns:
            greeting(r)
            r.send_frame(1, b'{"type":"ping"}')
            b0, _ = recv_raw_frame(r)
            assert b0 == 0x81
        s, _ = scrape(d)
        assert value(s, "wsplugd_deflate_connections") == 50
        assert value(s, "wsplugd_deflate_zlib_bytes") == 0
    finally:
        for r in conns:
            r.close()
