"""The upgrade callback: plugins decide on a client before the 101.

A test plugin, gate (tests/plugins/gate.c), does what the request's query
says: accept, refuse with a status, answer later from a host timer, or
never answer.  Each scenario drives the real daemon over a raw socket (the
refusals are plain HTTP answers) or a WebSocket client, and checks the
wire, the ws.refuse line and the refusal metric.
"""

import asyncio
import json
import os
import socket
import time

from harness import SLOW, config, run_wsplugd, ws_connect
from test_admin import admin_port, request

TEST_PLUGINS = os.environ.get("WSPLUGD_TEST_PLUGIN_DIR",
                              "tests/plugins/.libs")
GATE = os.path.join(TEST_PLUGINS, "gate.so")


def start(wsplugd, two=False, **server):
    sections = {"gate": {"path": GATE}}
    plugins = ["connection_established", "ping", "gate"]
    if two:
        sections["gate2"] = {"path": GATE, "param": "g2", "name": "gate2",
                             "whoami": "no"}
        plugins.append("gate2")
    return wsplugd(config(plugins=plugins, plugin_sections=sections,
                          server=server or None))


def handshake(d, query="", headers=(), timeout=10):
    """Send an upgrade request; (status, head text, seconds taken)."""
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", d.port), timeout=timeout * SLOW)
    try:
        req = (f"GET /ws{'?' + query if query else ''} HTTP/1.1\r\n"
               "Host: 127.0.0.1\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n")
        for h in headers:
            req += h + "\r\n"
        s.sendall((req + "\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        # the refusal's body, which follows its head
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                body += chunk
        status = int(head.split(b" ", 2)[1]) if head else 0
        text = (head + b"\n\n" + body).decode(errors="replace")
        return status, text, time.monotonic() - t0
    finally:
        s.close()


def refused_plugin(d):
    status, _, body = request(d, "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith('wsplugd_handshakes_refused_total{reason="plugin"}'):
            return int(float(line.split()[-1]))
    raise AssertionError("no plugin refusal counter:\n" + body.decode())


def test_accept_names_the_user_everywhere(wsplugd):
    d = start(wsplugd)

    async def main():
        async with ws_connect(d.url + "?user=alice&gate=accept",
                              origin="https://app.example",
                              extra_headers={"X-Role": "admin"}) as ws:
            hello = json.loads(await ws.recv())
            assert hello["type"] == "connection_established"
            await ws.send(json.dumps({"type": "whoami",
                                      "id": {"n": [1, "x"]}}))
            me = json.loads(await ws.recv())
            status, _, body = request(d, "/connections")
            assert status == 200
            conns = json.loads(body)["connections"]
            return me, conns
    me, conns = asyncio.run(main())
    assert me["user"] == "alice" and me["info_user"] == "alice"
    assert me["role"] == "admin"
    assert json.loads(me["id_text"]) == {"n": [1, "x"]}
    assert [c["user"] for c in conns] == ["alice"]
    d.wait_for("ws.open", user="alice")
    d.wait_for("ws.close", user="alice")
    ev = d.wait_for("plugin.log", plugin="gate")
    assert "GET /ws from 127.0.0.1" in ev["msg"]
    assert "query='user=alice&gate=accept'" in ev["msg"]
    assert "origin='https://app.example'" in ev["msg"]


def test_no_user_is_null(wsplugd):
    d = start(wsplugd)

    async def main():
        async with ws_connect(d.url) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "whoami"}))
            me = json.loads(await ws.recv())
            _, _, body = request(d, "/connections")
            return me, json.loads(body)["connections"]
    me, conns = asyncio.run(main())
    assert me["user"] is None and me["info_user"] == ""
    assert me["id_text"] is None and me["role"] is None
    assert conns[0]["user"] is None
    assert "user" not in d.wait_for("ws.open")


def test_refusal_status_reason_log_and_metric(wsplugd):
    d = start(wsplugd)
    before = refused_plugin(d)
    lines = {401: "HTTP/1.1 401 Unauthorized", 403: "HTTP/1.1 403 Forbidden",
             429: "HTTP/1.1 429 Too Many Requests"}
    for code in (401, 403, 429):
        status, text, _ = handshake(d, f"gate=refuse-{code}")
        assert status == code, text
        assert text.startswith(lines[code] + "\r\n"), text
        assert "gate says no" in text
        d.wait_for("ws.refuse", status=code, reason="plugin", plugin="gate",
                   detail="gate says no")
    assert refused_plugin(d) == before + 3
    assert not d.find("ws.open")


def test_a_status_out_of_range_is_500(wsplugd):
    d = start(wsplugd)
    status, _, _ = handshake(d, "gate=refuse-200")
    assert status == 500
    d.wait_for("plugin.error")
    d.wait_for("ws.refuse", status=500, reason="plugin", plugin="gate")


def test_deferred_accept_then_messages_flow(wsplugd):
    d = start(wsplugd)

    async def main():
        t0 = time.monotonic()
        async with ws_connect(d.url + "?gate=later-300&user=bob") as ws:
            took = time.monotonic() - t0
            assert json.loads(await ws.recv())["type"] == \
                "connection_established"
            await ws.send(json.dumps({"type": "ping", "id": "p1"}))
            pong = json.loads(await ws.recv())
            return took, pong
    took, pong = asyncio.run(main())
    assert took >= 0.25
    assert pong["type"] == "pong" and pong["id"] == "p1"
    d.wait_for("ws.open", user="bob")


def test_deferred_refusal(wsplugd):
    d = start(wsplugd)
    status, text, took = handshake(d, "gate=laterno-200")
    assert status == 403, text
    assert "gate says no, later" in text
    assert took >= 0.15
    d.wait_for("ws.refuse", status=403, reason="plugin", plugin="gate")


def test_never_answered_is_408_at_handshake_timeout(wsplugd):
    d = start(wsplugd, handshake_timeout="1s")
    status, _, took = handshake(d, "gate=never")
    assert status == 408
    assert 0.8 <= took < 5 * SLOW
    d.wait_for("ws.refuse", status=408, reason="handshake_timeout")
    # the plugin was told, and its answer can no longer go anywhere
    d.wait_for("plugin.log", plugin="gate", msg="gate: cancelled")


def test_client_gone_while_deferred(wsplugd):
    d = start(wsplugd, handshake_timeout="1s")
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5 * SLOW)
    s.sendall(b"GET /ws?gate=never HTTP/1.1\r\nHost: x\r\n"
              b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n")
    d.wait_for("plugin.log", plugin="gate")
    s.close()
    d.wait_for("plugin.log", plugin="gate", msg="gate: cancelled")
    # and a later answer for a connection that went away: timer cancelled
    status, _, _ = handshake(d, "gate=later-50")
    assert status == 101


def test_every_plugin_must_accept(wsplugd):
    d = start(wsplugd, two=True)
    status, _, _ = handshake(d, "gate=accept&g2=refuse-429")
    assert status == 429
    d.wait_for("ws.refuse", status=429, reason="plugin", plugin="gate2")

    mark = d.mark()
    status, _, _ = handshake(d, "gate=refuse-401&g2=accept")
    assert status == 401
    d.wait_for("ws.refuse", start=mark, status=401, plugin="gate")
    # the first refusal ends it: the second plugin was never asked
    assert not [e for e in d.events[mark:] if e.get("event") ==
                "plugin.log" and e.get("plugin") == "gate2"]

    # both defer: the second is asked once the first said yes
    status, _, took = handshake(d, "gate=later-150&g2=later-150")
    assert status == 101
    assert took >= 0.25

    status, _, _ = handshake(d, "gate=later-100&g2=laterno-100")
    assert status == 403
    d.wait_for("ws.refuse", status=403, plugin="gate2")


def test_no_upgrade_callback_costs_nothing(wsplugd):
    # Without a plugin that has the callback, handshakes are as before.
    d = wsplugd(config())

    async def main():
        async with ws_connect(d.url + "?gate=refuse-401") as ws:
            return json.loads(await ws.recv())
    assert asyncio.run(main())["type"] == "connection_established"


def test_shutdown_while_deferred(wsplugd):
    d = start(wsplugd, handshake_timeout="30s")
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5 * SLOW)
    s.sendall(b"GET /ws?gate=later-20000 HTTP/1.1\r\nHost: x\r\n"
              b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n")
    d.wait_for("plugin.log", plugin="gate")
    assert d.stop() == 0
    assert d.find("plugin.log", plugin="gate", msg="gate: cancelled")
    s.close()


def gated_request_with_early_ping(s, user, stop_on=()):
    """Send a request the gate plugin answers 300 ms late, as user, with a
    ping frame right behind it, and read until the pong (10 s at most,
    the socket closing, or an exception of stop_on)."""
    from rawws import build_frame
    s.sendall(b"GET /ws?gate=later-300&user=" + user.encode() +
              b" HTTP/1.1\r\nHost: x\r\n"
              b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n" +
              build_frame(0x1, b'{"type":"ping","id":"early"}'))
    data = b""
    deadline = time.monotonic() + 10 * SLOW
    while data.count(b"pong") < 1 and time.monotonic() < deadline:
        try:
            chunk = s.recv(4096)
        except stop_on:
            break
        if not chunk:
            break
        data += chunk
    return data


def test_deferred_over_tls_with_pipelined_frames(wsplugd, tmp_path):
    """A TLS client that sends a frame right behind its request while a
    plugin takes its time: nothing is read meanwhile, and after the late
    yes the 101, the greeting and the answer to the pipelined ping come
    in order."""
    import ssl
    from tlspki import PKI
    pki = PKI(tmp_path / "pki")
    sections = {"gate": {"path": GATE}}
    d = wsplugd(config(plugins=["connection_established", "ping", "gate"],
                       plugin_sections=sections,
                       server={"listen": "127.0.0.1:0 tls"},
                       extra=pki.tls_section("ec.pem", "ec.key")))
    ctx = pki.client_context()
    raw = socket.create_connection(("127.0.0.1", d.port), timeout=10 * SLOW)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    try:
        data = gated_request_with_early_ping(
            s, "tls", stop_on=(ssl.SSLError, socket.timeout))
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 101 ")
    assert data.index(b"connection_established") < data.index(b'"pong"')
    assert b'"id":"early"' in data
    d.wait_for("ws.open", user="tls")


def test_deferred_plaintext_with_pipelined_frames(wsplugd):
    """The same over plain TCP, where a request is parsed in the daemon's
    read buffer: a plugin's late answer needs it kept, with the frame
    behind it, until the answer comes."""
    d = start(wsplugd)
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10 * SLOW)
    try:
        data = gated_request_with_early_ping(s, "plain")
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 101 ")
    assert data.index(b"connection_established") < data.index(b'"pong"')
    assert b'"id":"early"' in data
    d.wait_for("ws.open", user="plain")


def test_a_plugin_built_for_abi_2_is_refused_clearly(tmp_path):
    conf = tmp_path / "abi2.conf"
    conf.write_text(config(plugins=["ping", "abi2"], plugin_sections={
        "abi2": {"path": os.path.join(TEST_PLUGINS, "abi2.so")}}))
    r = run_wsplugd(["-t", "-c", str(conf)])
    assert r.returncode == 1
    assert "[plugin:abi2]" in r.stderr + r.stdout
    assert "was built for plugin ABI 2, this wsplugd has ABI 3: rebuild " \
        "the plugin" in r.stderr + r.stdout
