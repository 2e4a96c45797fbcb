"""The seed scenario: one attempt, greeted, pings answered, clean close."""

import asyncio
import json
import re

import websockets


def test_first_attempt_greets_and_answers_ping(wsplugd):
    d = wsplugd()

    async def visit():
        async with websockets.connect(
                d.url, user_agent_header="wsplugd-test/1.0") as ws:
            hello = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "ping", "id": 7}))
            pong = json.loads(await ws.recv())
            return hello, pong

    hello, pong = asyncio.run(visit())
    assert hello["type"] == "connection_established"
    assert re.fullmatch(r"[0-9a-f]{32}", hello["connectionId"])
    assert isinstance(hello["timestamp"], int)
    assert pong["type"] == "pong" and pong["id"] == 7
    assert pong["timestamp"] >= hello["timestamp"]

    opened = d.wait_for("ws.open", conn=hello["connectionId"])
    assert opened["ip"] == "127.0.0.1"
    assert opened["ua"] == "wsplugd-test/1.0"
    assert opened["active"] == "1"
    closed = d.wait_for("ws.close", conn=hello["connectionId"])
    assert closed["code"] == "1000"
    assert closed["active"] == "0"
    assert closed["msgs_in"] == "1" and closed["msgs_out"] == "2"
