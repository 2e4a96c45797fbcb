"""The echo relay a conformance suite grades (DESIGN.md: echo with
catch_all = yes returns every message verbatim, text as text and binary as
binary), driven by a conforming client."""

import asyncio
import base64
import hashlib
import json
import os

import pytest

from harness import ws_connect
from tlspki import PKI

BIG = {"max_message_size": "64MiB", "max_output_buffer": "128MiB"}
CATCH_ALL = {"echo": {"catch_all": "yes"}}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(params=["plain", "tls"])
def wsplugd(request, wsplugd):
    """Every test of the battery twice: over ws:// and over wss:// (a
    listener marked tls, the client verifying the test's CA)."""
    if request.param == "plain":
        return wsplugd
    pki = request.getfixturevalue("pki")

    def start(text=None, server=None, **kw):
        server = {**(server or {}), "listen": "127.0.0.1:0 tls"}
        d = wsplugd(text, server=server, extra=pki.tls_section(), **kw)
        d.client_ssl = pki.client_context()
        return d

    return start


def echo_only(wsplugd):
    return wsplugd(server=BIG, plugins=("echo",), plugin_sections=CATCH_ALL)


def test_16_mib_text_and_binary_echoed_intact(wsplugd):
    d = echo_only(wsplugd)
    raw = os.urandom(12 * 1024 * 1024)
    text = base64.b64encode(raw).decode()  # 16 MiB of ASCII
    text = text[:-1000] + "é€𐍈" * 100 + text[-1000 + 900:]
    binary = os.urandom(16 * 1024 * 1024)

    async def visit():
        async with ws_connect(d.url, max_size=None) as ws:
            await ws.send(text)
            got_text = await ws.recv()
            await ws.send(binary)
            got_binary = await ws.recv()
            return got_text, got_binary

    got_text, got_binary = asyncio.run(visit())
    assert isinstance(got_text, str)
    assert len(got_text) == len(text)
    assert hashlib.sha256(got_text.encode()).digest() == \
        hashlib.sha256(text.encode()).digest()
    assert isinstance(got_binary, bytes)
    assert len(got_binary) == len(binary)
    assert got_binary == binary
    closed = d.wait_for("ws.close")
    assert closed["code"] == "1000"
    assert closed["msgs_in"] == "2" and closed["msgs_out"] == "2"


def test_text_in_20000_fragments_echoed_as_one_message(wsplugd):
    d = echo_only(wsplugd)
    parts = [f"{i:05d}:é;" for i in range(20000)]

    async def visit():
        async with ws_connect(d.url, max_size=None) as ws:
            await ws.send(iter(parts))  # one fragment per element
            return await ws.recv()

    got = asyncio.run(visit())
    assert got == "".join(parts)
    closed = d.wait_for("ws.close")
    assert closed["msgs_in"] == "1"


def test_binary_fragments_echoed_as_binary(wsplugd):
    d = echo_only(wsplugd)
    parts = [os.urandom(n) for n in (1, 0, 1000, 70000, 3)]

    async def visit():
        async with ws_connect(d.url) as ws:
            await ws.send(b"\x00\xff binary")
            one = await ws.recv()
            await ws.send(iter(parts))
            many = await ws.recv()
            await ws.send(b"")
            empty = await ws.recv()
            await ws.send("")
            empty_text = await ws.recv()
            return one, many, empty, empty_text

    one, many, empty, empty_text = asyncio.run(visit())
    assert one == b"\x00\xff binary"
    assert many == b"".join(parts)
    assert empty == b"" and isinstance(empty, bytes)
    assert empty_text == "" and isinstance(empty_text, str)


def test_text_that_looks_like_json_is_echoed_raw(wsplugd):
    d = echo_only(wsplugd)
    messages = ['{"type":"ping","id":1}', '{"type":"nope"}', "not json",
                "[1,2]", '{"type":"echo"}', '  {"spaced" : true}  ']

    async def visit():
        async with ws_connect(d.url) as ws:
            out = []
            for m in messages:
                await ws.send(m)
                out.append(await ws.recv())
            return out

    assert asyncio.run(visit()) == messages


def test_catch_all_beside_typed_plugins(wsplugd):
    # Typed plugins keep their types; the catch-all gets the rest raw.
    d = wsplugd(server=BIG,
                plugins=("connection_established", "ping", "echo"),
                plugin_sections=CATCH_ALL)
    raw_texts = ['{"type":"nope","x":1}', "not json at all", "[1]",
                 '{"id":3}', '{"type":7}']

    async def visit():
        async with ws_connect(d.url) as ws:
            hello = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "ping", "id": 9}))
            pong = json.loads(await ws.recv())
            echoed = []
            for m in raw_texts:
                await ws.send(m)
                echoed.append(await ws.recv())
            await ws.send(b"\x01\x02")
            binary = await ws.recv()
            return hello, pong, echoed, binary

    hello, pong, echoed, binary = asyncio.run(visit())
    assert hello["type"] == "connection_established"
    assert pong["type"] == "pong" and pong["id"] == 9
    assert echoed == raw_texts
    assert binary == b"\x01\x02"


def test_the_battery_runs_with_permessage_deflate(wsplugd):
    """websockets offers permessage-deflate by default and [deflate] is on
    by default, so every test above runs compressed both ways: the client
    compresses every message, the daemon every reply of 128 bytes or
    more (test_deflate.py covers the extension itself)."""
    d = echo_only(wsplugd)

    async def visit():
        async with ws_connect(d.url) as ws:
            ext = ws.response_headers.get("Sec-WebSocket-Extensions")
            await ws.send("é" * 5000)
            return ext, await ws.recv()

    ext, got = asyncio.run(visit())
    assert ext == "permessage-deflate"
    assert got == "é" * 5000
    # 10,000 bytes each way went over the wire in far fewer
    closed = d.wait_for("ws.close")
    assert int(closed["bytes_in"]) < 1000 and int(closed["bytes_out"]) < 1000
