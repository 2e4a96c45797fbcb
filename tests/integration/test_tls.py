"""wss:// served by wsplugd itself: the seed scenario, framing and limits
over TLS, certificates checked by -t and swapped by SIGHUP, and the
handshake phase's limits (slowloris, garbage, the wrong protocol on either
kind of port).  The CA and certificates are made by the test (tlspki.py);
the client is Python's ssl verifying that CA."""

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest
import websockets

from harness import SLOW, config, run_wsplugd, ws_connect
from rawws import Raw, build_frame
from tlspki import PKI


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


def tls_conf(pki, listen="127.0.0.1:0 tls", cert="ec.pem", key="ec.key",
             server=None, tls=None, **kw):
    return config(server={"listen": listen, **(server or {})},
                  extra=pki.tls_section(cert, key, **(tls or {})), **kw)


def start_tls(wsplugd, pki, **kw):
    d = wsplugd(tls_conf(pki, **kw))
    d.client_ssl = pki.client_context()
    return d


def ports(d):
    """(plain port, TLS port) of a daemon listening on both."""
    plain = tls = None
    for ev in d.find_all("listen.start"):
        port = int(ev["addr"].rsplit(":", 1)[1])
        if ev.get("tls") == "yes":
            tls = port
        elif plain is None:
            plain = port
    return plain, tls


def peer_serial(pki, port):
    """The serial of the certificate a fresh handshake on port gets."""
    ctx = pki.client_context()
    with socket.create_connection(("127.0.0.1", port),
                                  timeout=10 * SLOW) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            return t.getpeercert()["serialNumber"].lstrip("0")


def admin_get(d, path):
    addr = d.wait_for("admin.start")["addr"]
    with urllib.request.urlopen(f"http://{addr}{path}",
                                timeout=10 * SLOW) as r:
        return r.read().decode()


def test_seed_scenario_over_tls(wsplugd, pki):
    d = start_tls(wsplugd, pki)

    async def visit():
        async with ws_connect(d.url,
                              user_agent_header="wsplugd-test/1.0") as ws:
            hello = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "ping", "id": 7}))
            pong = json.loads(await ws.recv())
            return hello, pong, ws.transport.get_extra_info("ssl_object")

    hello, pong, sslobj = asyncio.run(visit())
    assert d.url.startswith("wss://")
    assert hello["type"] == "connection_established"
    assert pong["type"] == "pong" and pong["id"] == 7
    assert sslobj.version() == "TLSv1.3"
    assert sslobj.selected_alpn_protocol() is None  # websockets sends none
    opened = d.wait_for("ws.open", conn=hello["connectionId"])
    assert opened["tls"] == "TLSv1.3"
    assert opened["cipher"].startswith("TLS_")
    closed = d.wait_for("ws.close", conn=hello["connectionId"])
    assert closed["code"] == "1000"
    assert closed["msgs_in"] == "1" and closed["msgs_out"] == "2"


def test_rsa_certificate_tls12_and_alpn(wsplugd, pki):
    d = start_tls(wsplugd, pki, cert="rsa.pem", key="rsa.key")
    ctx = pki.client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", d.port),
                                  timeout=10 * SLOW) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            assert t.version() == "TLSv1.2"
            assert t.selected_alpn_protocol() == "http/1.1"
            assert "RSA" in t.cipher()[0]


def test_plain_and_tls_side_by_side_with_metrics_and_connections(wsplugd,
                                                                  pki):
    d = wsplugd(tls_conf(pki, listen="127.0.0.1:0, 127.0.0.1:0 tls"))
    plain, tls = ports(d)
    assert plain and tls and plain != tls
    ctx = pki.client_context()

    async def visit():
        async with ws_connect(f"ws://127.0.0.1:{plain}/ws") as a, \
                ws_connect(f"wss://127.0.0.1:{tls}/ws", ssl=ctx) as b:
            await a.recv()
            await b.recv()
            conns = json.loads(admin_get(d, "/connections"))
            return conns

    conns = asyncio.run(visit())
    kinds = sorted((c["tls"] or "plain") for c in conns["connections"])
    assert kinds == ["TLSv1.3", "plain"]
    assert all(c["cipher"] is None for c in conns["connections"]
               if c["tls"] is None)
    metrics = admin_get(d, "/metrics")
    assert "wsplugd_tls_handshakes_total 1\n" in metrics


def test_framing_over_tls(wsplugd, pki):
    d = start_tls(wsplugd, pki, plugins=("echo",),
                  plugin_sections={"echo": {"catch_all": "yes"}})
    ctx = pki.client_context()
    with Raw(d.port) as r:
        r.sock = ctx.wrap_socket(r.sock, server_hostname="127.0.0.1")
        r.handshake()
        # one message in three fragments, a ping between them, all in
        # one TLS write: reassembled, and the ping answered in between
        r.send_raw(build_frame(1, b"hel", fin=False) +
                   build_frame(9, b"p!") +
                   build_frame(0, b"lo ", fin=False) +
                   build_frame(0, "wörld".encode(), fin=True))
        assert r.recv_frame() == (True, 10, b"p!")
        assert r.recv_frame() == (True, 1, "hello wörld".encode())
        # an unmasked frame is a protocol error: 1002
        r.send_raw(build_frame(1, b"x", mask=False))
        fin, op, body = r.recv_frame()
        assert op == 8 and body[:2] == (1002).to_bytes(2, "big")
    d.wait_for("ws.close", code=1002)


def test_limits_over_tls(wsplugd, pki):
    d = start_tls(wsplugd, pki, server={"max_message_size": "1KiB"})

    async def visit():
        async with ws_connect(d.url) as ws:
            await ws.recv()
            await ws.send("x" * 2000)
            try:
                await ws.recv()
            except Exception:
                pass
            return ws.close_code

    assert asyncio.run(visit()) == 1009
    d.wait_for("ws.close", code=1009)


def fd_count(d):
    return len(os.listdir(f"/proc/{d.proc.pid}/fd"))


def test_max_connections_per_ip_over_tls(wsplugd, pki):
    d = start_tls(wsplugd, pki, server={"max_connections_per_ip": "1"})
    base = fd_count(d)

    async def visit():
        async with ws_connect(d.url) as ws:
            await ws.recv()
            # at its limit, the address gets no TLS handshake at all
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                async with ws_connect(d.url):
                    pass
            refused = d.wait_for("ws.refuse",
                                 reason="max_connections_per_ip")
            return refused, admin_get(d, "/metrics")

    refused, metrics = asyncio.run(visit())
    assert refused["ip"] == "127.0.0.1"
    assert "wsplugd_tls_handshakes_total 1\n" in metrics
    assert 'wsplugd_tls_handshakes_failed_total{reason="protocol"} 0\n' \
        in metrics

    async def again():  # the first one gone, the address may come back
        async with ws_connect(d.url) as ws:
            return json.loads(await ws.recv())["type"]

    d.wait_for("ws.close")
    # gone when its socket is closed: the client's FIN, at most a linger
    deadline = time.monotonic() + 3 * SLOW
    while fd_count(d) > base:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert asyncio.run(again()) == "connection_established"


def test_unclean_eof_is_a_1006_not_an_error(wsplugd, pki):
    d = start_tls(wsplugd, pki)
    ctx = pki.client_context()
    with Raw(d.port) as r:
        r.sock = ctx.wrap_socket(r.sock, server_hostname="127.0.0.1")
        r.handshake()
        r.recv_message()  # the greeting
        # TCP FIN with no close_notify
        raw = socket.socket(fileno=os.dup(r.sock.fileno()))
        raw.shutdown(socket.SHUT_RDWR)
        raw.close()
    closed = d.wait_for("ws.close", code=1006)
    assert closed["reason"] == "connection closed without close frame"
    assert not d.find_all("ws.error")


def test_slowloris_on_tls_port_closed_at_handshake_timeout(wsplugd, pki):
    d = start_tls(wsplugd, pki, server={"handshake_timeout": "500ms"})
    # A valid ClientHello's first bytes, then nothing.
    hello = bytes.fromhex("16030100c8010000c40303")
    silent = socket.create_connection(("127.0.0.1", d.port))
    dribble = socket.create_connection(("127.0.0.1", d.port))
    t0 = time.monotonic()
    dribble.sendall(hello[:1])
    for s in (silent, dribble):
        s.settimeout(5 * SLOW)
    for b in hello[1:4]:
        time.sleep(0.1)
        dribble.sendall(bytes([b]))
    assert silent.recv(100) == b""
    assert dribble.recv(100) == b""
    assert time.monotonic() - t0 < 4 * SLOW
    silent.close()
    dribble.close()
    d.wait_count("ws.refuse", 2, reason="handshake_timeout")
    assert 'wsplugd_tls_handshakes_failed_total{reason="handshake_timeout"}' \
        ' 2\n' in admin_get(d, "/metrics")


def test_garbage_on_tls_port(wsplugd, pki):
    d = start_tls(wsplugd, pki)
    with socket.create_connection(("127.0.0.1", d.port),
                                  timeout=5 * SLOW) as s:
        s.sendall(b"\x16\x03\x01\x00\x05" + os.urandom(5) + b"\x00" * 100)
        got = b""
        while True:
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                break
            if not data:
                break
            got += data
    # nothing but (at most) a TLS alert record
    assert got == b"" or got[0] == 0x15
    fail = d.wait_for("tls.fail", reason="protocol")
    assert fail["ip"] == "127.0.0.1"
    # the daemon still serves
    assert peer_serial(pki, d.port) == pki.serial_of("ec.pem")


def test_plain_http_on_tls_port_gets_a_readable_400(wsplugd, pki):
    d = start_tls(wsplugd, pki)
    with Raw(d.port) as r:
        r.request()
        status, headers, body = r.response()
        assert status == 400
        assert b"TLS" in body
        r.expect_eof()
    d.wait_for("ws.refuse", reason="plain_on_tls_port", status=400)
    d.wait_for("tls.fail", reason="plain_on_tls_port")


def test_tls_on_plain_port_is_logged_and_closed(wsplugd, pki):
    d = wsplugd(tls_conf(pki, listen="127.0.0.1:0, 127.0.0.1:0 tls"))
    plain, _ = ports(d)
    ctx = pki.client_context()
    with socket.create_connection(("127.0.0.1", plain),
                                  timeout=5 * SLOW) as s:
        with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
            ctx.wrap_socket(s, server_hostname="127.0.0.1")
    d.wait_for("ws.refuse", reason="tls_on_plain_port")
    assert 'wsplugd_handshakes_refused_total{reason="tls_on_plain_port"}' \
        ' 1\n' in admin_get(d, "/metrics")


def kernel_has_tls_ulp():
    """Can a TCP socket take the kernel's "tls" upper layer (kTLS)?"""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        with socket.create_connection(srv.getsockname()) as c:
            a, _ = srv.accept()
            with a:
                try:
                    a.setsockopt(socket.IPPROTO_TCP, 31, b"tls")  # TCP_ULP
                    return True
                except OSError:
                    return False


@pytest.mark.parametrize("ktls", ["auto", "off"])
def test_ktls_where_the_kernel_allows(wsplugd, pki, ktls):
    d = start_tls(wsplugd, pki, tls={"ktls": ktls,
                                     "ciphersuites": "TLS_AES_128_GCM_SHA256"})

    async def visit():
        async with ws_connect(d.url) as ws:
            hello = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "ping", "id": 1}))
            assert json.loads(await ws.recv())["id"] == 1
            return hello["connectionId"]

    opened = d.wait_for("ws.open", conn=asyncio.run(visit()))
    if ktls == "off" or not kernel_has_tls_ulp():
        assert opened["ktls"] == "no"
    else:
        assert "send" in opened["ktls"]


def test_ocsp_staple_from_a_file(wsplugd, pki, tmp_path):
    resp = pki.ocsp_response("ec.pem", "ec.ocsp")
    d = start_tls(wsplugd, pki, tls={"ocsp_staple": resp})
    r = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{d.port}",
         "-status", "-CAfile", pki.path("ca.pem")],
        input="", capture_output=True, text=True, timeout=30 * SLOW)
    assert "OCSP Response Status: successful" in r.stdout
    assert "Cert Status: good" in r.stdout
    # a file that is not an OCSP response fails the check with FILE:LINE
    bad = tmp_path / "bad.der"
    bad.write_bytes(b"\x30\x03junk")
    p, r = check(tmp_path, tls_conf(pki, tls={"ocsp_staple": str(bad)}))
    assert r.returncode == 1
    assert f"[tls] ocsp_staple {bad}: not a DER OCSP response" in r.stderr


def write_conf(tmp_path, pki, cert, key):
    path = tmp_path / "live.conf"
    path.write_text(tls_conf(pki, cert=cert, key=key))
    return path


def test_sighup_swaps_the_certificate_old_sessions_keep_going(wsplugd, pki,
                                                             tmp_path):
    path = write_conf(tmp_path, pki, "ec.pem", "ec.key")
    d = wsplugd(path=path)
    d.client_ssl = pki.client_context()
    assert peer_serial(pki, d.port) == pki.serial_of("ec.pem")

    async def visit():
        async with ws_connect(d.url) as old:
            await old.recv()
            path.write_text(tls_conf(pki, cert="rsa.pem", key="rsa.key"))
            mark = d.mark()
            d.signal(signal.SIGHUP)
            d.wait_for("reload", start=mark, result="ok")
            new_serial = await asyncio.to_thread(peer_serial, pki, d.port)
            for i in range(3):
                await old.send(json.dumps({"type": "ping", "id": i}))
                pong = json.loads(await old.recv())
                assert pong["id"] == i
            return new_serial

    assert asyncio.run(visit()) == pki.serial_of("rsa.pem")


def test_reload_with_mismatched_key_fails_and_changes_nothing(wsplugd, pki,
                                                             tmp_path):
    path = write_conf(tmp_path, pki, "ec.pem", "ec.key")
    d = wsplugd(path=path)
    path.write_text(tls_conf(pki, cert="rsa.pem", key="other.key"))
    mark = d.mark()
    d.signal(signal.SIGHUP)
    d.wait_for("reload", start=mark, result="failed")
    err = d.wait_for("config.error", start=mark)
    assert "does not match certificate" in err["msg"]
    assert f"{path}:" in err["msg"]
    assert peer_serial(pki, d.port) == pki.serial_of("ec.pem")


def check(tmp_path, text, name="t.conf"):
    p = tmp_path / name
    p.write_text(text)
    return p, run_wsplugd(["-t", "-c", str(p)])


def test_dash_t_reports_certificate_problems_with_file_and_line(pki,
                                                                tmp_path):
    p, r = check(tmp_path, tls_conf(pki))
    assert r.returncode == 0, r.stderr
    # the [tls] section is the last; certificate then key
    lines = p.read_text().splitlines()
    cline = lines.index(f"certificate = {pki.path('ec.pem')}") + 1
    kline = cline + 1

    p, r = check(tmp_path, tls_conf(pki, cert="missing.pem"))
    assert r.returncode == 1
    assert f"{p}:{cline}: [tls] certificate {pki.path('missing.pem')}: " \
        "No such file or directory" in r.stderr

    p, r = check(tmp_path, tls_conf(pki, cert="ec.pem", key="other.key"))
    assert r.returncode == 1
    assert f"{p}:{kline}: [tls] key {pki.path('other.key')} does not " \
        "match certificate" in r.stderr

    p, r = check(tmp_path, tls_conf(pki, cert="expired.pem",
                                    key="expired.key"))
    assert r.returncode == 1
    assert f"{p}:{cline}: [tls] certificate {pki.path('expired.pem')} " \
        "expired on Jan  2 00:00:00 2020 GMT" in r.stderr

    p, r = check(tmp_path, tls_conf(pki, cert="soon.pem", key="soon.key"))
    assert r.returncode == 0, r.stderr
    assert "warning: " in r.stderr and "expires on" in r.stderr
    assert "within 7 days" in r.stderr

    os.chmod(pki.path("other.key"), 0o640)
    try:
        p, r = check(tmp_path, tls_conf(pki, key="other.key"))
    finally:
        os.chmod(pki.path("other.key"), 0o600)
    assert r.returncode == 1
    assert f"{p}:{kline}: [tls] key {pki.path('other.key')}: readable " \
        "or writable by group or others (mode 640" in r.stderr

    junk = tmp_path / "junk.key"
    junk.write_text("not a key\n")
    junk.chmod(0o600)
    p, r = check(tmp_path, tls_conf(pki, key=str(junk)))
    assert r.returncode == 1
    assert f"{p}:{kline}: [tls] key {junk}: cannot load a PEM private " \
        "key" in r.stderr

    p, r = check(tmp_path, tls_conf(pki, tls={"ciphersuites": "NOPE"}))
    assert r.returncode == 1
    assert f"{p}:{kline + 1}: [tls] ciphersuites: invalid list 'NOPE'" \
        in r.stderr


def test_every_tls_path_gives_its_place_back_once(wsplugd, pki):
    """max_connections and max_connections_per_ip of 1 on a TLS listener:
    after each way a TLS connection can end, its place is free again (a
    wss client gets in) and was given back only once (the next one is
    closed before any TLS handshake)."""
    d = start_tls(wsplugd, pki, server={
        "max_connections": 1, "max_connections_per_ip": 1,
        "handshake_timeout": "1s"})
    base = fd_count(d)

    def wait_fds(n):
        deadline = time.monotonic() + 3 * SLOW
        while fd_count(d) != n:
            assert time.monotonic() < deadline
            time.sleep(0.02)

    def until_eof(s):
        s.settimeout(5 * SLOW)
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass

    def tls_failure():
        with socket.create_connection(("127.0.0.1", d.port)) as s:
            s.sendall(b"\x16\x03\x01\x00\x05" + b"\x00" * 100)
            until_eof(s)

    def plain_on_tls_port():
        with Raw(d.port) as r:
            r.request()
            assert r.response()[0] == 400

    def tls_handshake_timeout():
        with socket.create_connection(("127.0.0.1", d.port)) as s:
            until_eof(s)

    def refused_in_tls():
        async def visit():
            with pytest.raises(
                    websockets.exceptions.InvalidStatusCode) as e:
                async with ws_connect(d.url.replace("/ws", "/nowhere"),
                                      ssl=d.client_ssl):
                    pass
            return e.value.status_code
        assert asyncio.run(visit()) == 404

    def closed_cleanly():
        async def visit():
            async with ws_connect(d.url) as ws:
                return json.loads(await ws.recv())["type"]
        assert asyncio.run(visit()) == "connection_established"

    for path in (tls_failure, plain_on_tls_port, tls_handshake_timeout,
                 refused_in_tls, closed_cleanly):
        path()
        wait_fds(base)

        async def probe():
            async with ws_connect(d.url) as ws:
                await ws.recv()
                with pytest.raises((ssl.SSLError, ConnectionError, OSError,
                                    asyncio.TimeoutError)):
                    async with ws_connect(d.url, open_timeout=5 * SLOW):
                        pass

        asyncio.run(probe())
        wait_fds(base)
    # the last refusal's line may still be on its way to the file
    d.wait_count("ws.refuse", 5, reason="max_connections")
    assert len(d.find_all("ws.refuse", reason="max_connections")) == 5
