"""The application protocol (DESIGN.md "The wire"): JSON objects routed by
"type", the greeting, the ping plugin, and the error replies that keep the
connection open."""

import asyncio
import json
import re

import websockets

from harness import ws_connect


ECHO_TYPED = ("connection_established", "ping", "echo")


def run(coro):
    return asyncio.run(coro)


async def greet(ws):
    hello = json.loads(await ws.recv())
    assert hello["type"] == "connection_established", hello
    return hello


async def ask(ws, msg):
    """Send one message (an object is JSON-encoded) and return the reply,
    parsed."""
    await ws.send(msg if isinstance(msg, (str, bytes)) else json.dumps(msg))
    reply = await ws.recv()
    assert isinstance(reply, str), reply
    return json.loads(reply)


async def still_alive(ws, ident="alive"):
    pong = await ask(ws, {"type": "ping", "id": ident})
    assert pong["type"] == "pong" and pong["id"] == ident, pong


def test_greeting_comes_first_with_the_logged_id(wsplugd):
    d = wsplugd()

    async def visit():
        async with ws_connect(d.url) as ws:
            return await greet(ws)

    hello = run(visit())
    assert set(hello) == {"type", "connectionId", "timestamp"}
    assert re.fullmatch(r"[0-9a-f]{32}", hello["connectionId"])
    assert isinstance(hello["timestamp"], int)
    opened = d.wait_for("ws.open")
    assert opened["conn"] == hello["connectionId"]


def test_connection_ids_are_distinct(wsplugd):
    d = wsplugd()

    async def visit():
        ids = set()
        for _ in range(20):
            async with ws_connect(d.url) as ws:
                ids.add((await greet(ws))["connectionId"])
        return ids

    assert len(run(visit())) == 20


def test_ping_gets_pong_with_timestamp_and_id(wsplugd):
    d = wsplugd()

    async def visit():
        async with ws_connect(d.url) as ws:
            hello = await greet(ws)
            plain = await ask(ws, {"type": "ping"})
            num = await ask(ws, {"type": "ping", "id": 42})
            flt = await ask(ws, {"type": "ping", "id": 1.5})
            text = await ask(ws, {"type": "ping", "id": "abc-é"})
            obj = await ask(ws, {"type": "ping", "id": {"k": [1, None]}})
            return hello, plain, num, flt, text, obj

    hello, plain, num, flt, text, obj = run(visit())
    assert plain["type"] == "pong"
    assert "id" not in plain
    assert isinstance(plain["timestamp"], int)
    # Unix milliseconds, not seconds or microseconds.
    assert abs(plain["timestamp"] - hello["timestamp"]) < 60_000
    assert plain["timestamp"] >= hello["timestamp"]
    assert num["type"] == "pong" and num["id"] == 42 and \
        isinstance(num["id"], int)
    assert flt["id"] == 1.5
    assert text["type"] == "pong" and text["id"] == "abc-é"
    assert obj["id"] == {"k": [1, None]}


def test_invalid_json_gets_error_and_connection_survives(wsplugd):
    d = wsplugd()

    async def visit():
        async with ws_connect(d.url) as ws:
            hello = await greet(ws)
            replies = [await ask(ws, bad) for bad in
                       ("{not json", "", "   ", "{\"type\":\"ping\"",
                        "{\"type\":\"ping\"} trailing")]
            await still_alive(ws)
            return hello, replies

    hello, replies = run(visit())
    for reply in replies:
        assert reply["type"] == "error", reply
        assert reply["code"] == "invalid_json", reply
    # The connection ended only when the client closed it.
    ev = d.wait_for("ws.close", conn=hello["connectionId"])
    assert ev["code"] == "1000"
    assert ev["msgs_in"] == "6"


def test_json_that_is_not_an_object_is_invalid_json(wsplugd):
    d = wsplugd()

    async def visit():
        async with ws_connect(d.url) as ws:
            await greet(ws)
            replies = [await ask(ws, v) for v in
                       ("[1]", '"x"', "1", "null", "true", "[]")]
            await still_alive(ws)
            return replies

    for reply in run(visit()):
        assert reply["type"] == "error" and reply["code"] == "invalid_json", \
            reply


def test_missing_or_non_string_type(wsplugd):
    d = wsplugd()

    async def visit():
        async with ws_connect(d.url) as ws:
            await greet(ws)
            replies = [await ask(ws, v) for v in
                       ({}, {"id": 1}, {"type": 1}, {"type": None},
                        {"type": ["ping"]}, {"type": {"a": "ping"}},
                        {"Type": "ping"})]
            await still_alive(ws)
            return replies

    for reply in run(visit()):
        assert reply["type"] == "error" and reply["code"] == "missing_type", \
            reply


def test_unknown_type(wsplugd):
    d = wsplugd()

    async def visit():
        async with ws_connect(d.url) as ws:
            await greet(ws)
            replies = [await ask(ws, {"type": t}) for t in
                       ("nope", "", "PING", "ping ", "echo",
                        "connection_established")]
            await still_alive(ws)
            return replies

    for reply in run(visit()):
        assert reply["type"] == "error" and reply["code"] == "unknown_type", \
            reply


def test_long_multibyte_unknown_type_gets_valid_json_error(wsplugd):
    # However the server shortens the type for its message, the reply
    # must stay valid UTF-8 (websockets fails the connection with 1007
    # otherwise) and valid JSON.
    d = wsplugd()

    async def visit():
        async with ws_connect(d.url) as ws:
            await greet(ws)
            replies = []
            for prefix in range(4):
                for ch in ("é", "€", "𐍈"):
                    t = "a" * prefix + ch * 400
                    replies.append(await ask(ws, {"type": t, "id": prefix}))
            replies.append(await ask(ws, {"type": "\u00e9" * 100000}))
            await still_alive(ws)
            return replies

    replies = run(visit())
    assert len(replies) == 13
    for reply in replies:
        assert reply["type"] == "error" and reply["code"] == "unknown_type", \
            reply
    assert d.wait_for("ws.close")["code"] == "1000"


def test_binary_without_catch_all_closes_1003(wsplugd):
    d = wsplugd()

    async def visit():
        async with ws_connect(d.url) as ws:
            hello = await greet(ws)
            await ws.send(b"\x00\x01binary")
            try:
                extra = await ws.recv()
            except websockets.exceptions.ConnectionClosed as e:
                return hello, e
            raise AssertionError(f"server sent {extra!r} instead of closing")

    hello, e = run(visit())
    assert e.rcvd is not None, "no close frame from the server"
    assert e.rcvd.code == 1003
    assert e.rcvd_then_sent  # the server started the close
    closed = d.wait_for("ws.close", conn=hello["connectionId"])
    assert closed["code"] == "1003"


def test_echo_plugin_typed_mode_returns_the_message_verbatim(wsplugd):
    d = wsplugd(plugins=ECHO_TYPED)
    messages = [
        '{"type":"echo","text":"héllo 𐍈","n":[1,2.5,null,true]}',
        '{ "type" : "echo" ,\n "spacing":  "kept" }',
        json.dumps({"type": "echo", "big": "x" * 100000}),
    ]

    async def visit():
        async with ws_connect(d.url) as ws:
            await greet(ws)
            out = []
            for m in messages:
                await ws.send(m)
                out.append(await ws.recv())
            # Other types still go to their plugins, or get errors.
            await still_alive(ws)
            unknown = await ask(ws, {"type": "nope"})
            return out, unknown

    out, unknown = run(visit())
    assert out == messages
    assert unknown["code"] == "unknown_type"


def test_greeting_timestamp_is_unix_milliseconds_now(wsplugd):
    import time
    d = wsplugd()

    async def visit():
        before = int(time.time() * 1000)
        async with ws_connect(d.url) as ws:
            hello = await greet(ws)
            pong = await ask(ws, {"type": "ping"})
        after = int(time.time() * 1000)
        return before, hello, pong, after

    before, hello, pong, after = run(visit())
    assert before - 1000 <= hello["timestamp"] <= after + 1000
    assert before - 1000 <= pong["timestamp"] <= after + 1000


def test_deeply_nested_json_is_refused_without_harm(wsplugd):
    # A hostile nesting depth must neither crash the daemon nor end the
    # connection: the message is invalid JSON, or is handled normally.
    d = wsplugd()
    deep = "[" * 200000 + "]" * 200000
    deep_obj = '{"type":"ping","x":' + "[" * 100000 + "]" * 100000 + "}"

    async def visit():
        async with ws_connect(d.url) as ws:
            await greet(ws)
            first = await ask(ws, deep)
            second = await ask(ws, deep_obj)
            await still_alive(ws)
            return first, second

    first, second = run(visit())
    assert first["type"] == "error" and first["code"] == "invalid_json"
    assert (second["type"], second.get("code")) in (
        ("error", "invalid_json"), ("pong", None)), second


def test_large_ids_are_echoed_whole(wsplugd):
    # Replies bigger than any fixed serialisation buffer, then small ones
    # again, come out whole and valid.
    d = wsplugd()
    ids = ["x" * 100, "é" * 100000, {"nested": ["€" * 5000] * 20}, 7]

    async def visit():
        async with ws_connect(d.url) as ws:
            await greet(ws)
            return [await ask(ws, {"type": "ping", "id": i}) for i in ids]

    pongs = run(visit())
    assert [p["id"] for p in pongs] == ids
    assert all(p["type"] == "pong" for p in pongs)
