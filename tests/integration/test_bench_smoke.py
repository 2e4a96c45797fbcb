"""wsplugd-bench, the load generator of bench/, works: each mode for about
a second against the real daemon with no error and numbers that make
sense (the fan-out of one publisher to many subscribers, through the
broadcast plugin, too), and a server that breaks the protocol is caught,
not measured.

Throughput is not judged here (never a timed unit test: DESIGN.md
"Performance budget"); bench/run does that.  These only show that the
tool counts what it claims to count."""

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

from harness import SLOW, config
from tlspki import PKI

BENCH = os.environ.get("WSPLUGD_BENCH", "bench/wsplugd-bench")
# Short keepalive, so the idle run has protocol pings to answer.
KEEPALIVE = {"ping_interval": "300ms", "sweep_interval": "1s",
             "idle_timeout": "10s" if SLOW == 1 else "30s"}
INFO = {"level": "info"}


def bench(*args, expect_rc=0):
    """Run wsplugd-bench; its key=value line as a dict of strings."""
    p = subprocess.run([BENCH, "-T", str(int(10 * SLOW))] + list(args),
                       stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=60 * SLOW)
    assert p.returncode == expect_rc, (
        f"wsplugd-bench exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    lines = p.stdout.strip().splitlines()
    kv = dict(f.split("=", 1) for f in lines[-1].split())
    kv["_human"] = lines[-2] if len(lines) > 1 else ""
    kv["_stdout"] = p.stdout
    kv["_stderr"] = p.stderr
    return kv


def bench_acting(args, act, expect_rc=0):
    """bench(), calling act() when the measured window opens."""
    p = subprocess.Popen([BENCH, "-T", str(int(10 * SLOW))] + list(args),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        first = p.stdout.readline()
        assert first.startswith("measuring connections="), first
        act()
        out, err = p.communicate(timeout=60 * SLOW)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == expect_rc, (
        f"wsplugd-bench exited {p.returncode}:\n{first}{out}\n{err}")
    lines = out.strip().splitlines()
    kv = dict(f.split("=", 1) for f in lines[-1].split())
    kv["_human"] = lines[-2]
    kv["_first"] = first
    kv["_stderr"] = err
    return kv


def no_errors(kv):
    assert kv["errors"] == "0", kv["_stderr"]
    for k in ("connect", "handshake", "frame", "reply", "closed",
              "timeout", "tls"):
        assert kv[f"err_{k}"] == "0"


def server_cpu(kv, per):
    """The daemon's CPU time in the window (from /proc, in clock ticks):
    more than nothing, since it served every message or handshake; at
    most the window and a tick at each end, since it has one thread; and
    the per-unit figure is that time over the count."""
    cpu, secs, n = float(kv["server_cpu_s"]), float(kv["seconds"]), \
        int(kv[per])
    assert 0 < cpu <= secs + 0.03, kv
    unit = "msg" if per == "msgs" else "handshake"
    assert float(kv[f"server_cpu_us_per_{unit}"]) * n / 1e6 == \
        pytest.approx(cpu, abs=0.0006), kv


def test_ping_mode(wsplugd):
    d = wsplugd(log=INFO)
    kv = bench("-m", "ping", "-p", str(d.port), "-c", "4", "-d", "4",
               "-t", "1", "-w", "0.2", "-x", str(d.proc.pid))
    no_errors(kv)
    assert kv["mode"] == "ping" and kv["conns"] == "4" and kv["depth"] == "4"
    msgs = int(kv["msgs"])
    assert msgs > 0
    assert 0.9 < float(kv["seconds"]) < 1.5
    assert float(kv["msgs_per_s"]) == pytest.approx(
        msgs / float(kv["seconds"]), rel=0.01)
    p50, p99, p999, mx = (float(kv[k]) for k in
                          ("p50_us", "p99_us", "p999_us", "max_us"))
    assert 0 < p50 <= p99 <= p999 <= mx * 1.02
    # The daemon did the work: some CPU, and every connection ended with a
    # clean close handshake after more messages than were measured.
    server_cpu(kv, "msgs")
    closes = d.wait_count("ws.close", 4)
    assert all(c["code"] == "1000" for c in closes)
    assert sum(int(c["msgs_in"]) for c in closes) >= msgs


@pytest.mark.parametrize("takeover", ["yes", "no"])
def test_ping_mode_with_deflate(wsplugd, takeover):
    """-z: permessage-deflate negotiated, every message compressed both
    ways (threshold 0), checked after inflation; the 2 KiB pings (-S) go
    out at a fraction of their size, and without -z they do not."""
    d = wsplugd(log=INFO, extra=f"[deflate]\nthreshold = 0B\n"
                f"context_takeover = {takeover}\n")
    args = ["-m", "ping", "-p", str(d.port), "-c", "4", "-d", "4", "-t",
            "1", "-w", "0.2", "-S", "2048"]
    kv = bench(*args, "-z")
    no_errors(kv)
    assert kv["deflate_conns"] == "4"
    assert int(kv["msgs"]) > 0
    assert 0 < float(kv["wire_out_per_msg"]) < 1024
    plain = bench(*args)
    no_errors(plain)
    assert plain["deflate_conns"] == "0"
    assert float(plain["wire_out_per_msg"]) > 2048
    # A pong is too short to shrink without a context to refer to.
    if takeover == "yes":
        assert float(plain["wire_in_per_msg"]) > \
            float(kv["wire_in_per_msg"])


def test_ping_mode_through_a_reload(wsplugd):
    """What bench/run's reload check rests on: the window is announced,
    a SIGHUP inside it drops nothing, and every connection's longest wait
    for a reply is reported."""
    d = wsplugd(log=INFO)
    mark = d.mark()
    kv = bench_acting(["-m", "ping", "-p", str(d.port), "-c", "20", "-d",
                       "16", "-t", "1.5", "-w", "0.2", "-g", "0",
                       "-x", str(d.proc.pid)],
                      lambda: (time.sleep(0.5), d.signal(signal.SIGHUP)))
    no_errors(kv)
    assert kv["_first"] == "measuring connections=20\n"
    ev = d.wait_for("reload", start=mark, result="ok")
    assert ev["active"] == "20"
    assert kv["measured_conns"] == "20" and kv["dropped"] == "0"
    assert int(kv["msgs"]) > 0
    p50, p99, mx = (float(kv[k]) for k in
                    ("gap_p50_us", "gap_p99_us", "gap_max_us"))
    # No wait can be longer than the warm-up and the window together.
    assert 0 < p50 <= p99 <= mx * 1.02 and mx < 1.7e6 * SLOW
    # -g 0: every connection waited more than 0 ms.
    assert kv["gap_limit_us"] == "0.0" and kv["gap_over"] == "20"
    assert "longest wait for a reply" in kv["_human"]


def test_handshake_mode(wsplugd):
    d = wsplugd(log=INFO)
    kv = bench("-m", "handshake", "-p", str(d.port), "-c", "4", "-t", "1",
               "-w", "0.2", "-x", str(d.proc.pid))
    no_errors(kv)
    n = int(kv["handshakes"])
    assert n > 0 and float(kv["handshakes_per_s"]) > 0
    assert kv["greeting"] == "1"
    server_cpu(kv, "handshakes")
    # Every handshake it counted was a real session in the daemon, closed
    # with 1000 from sources spread over 127.0.0.2 and up.
    closes = d.wait_count("ws.close", n)
    assert all(c["code"] == "1000" for c in closes)
    ips = {c["ip"] for c in closes}
    assert "127.0.0.1" not in ips and len(ips) > 1


FANOUT = ("connection_established", "broadcast")


def test_fanout_mode(wsplugd):
    """-m fanout: every subscriber got every message once and in order
    (else a reply error), the deliveries counted are the messages
    completed times the subscribers, and the daemon did that work."""
    d = wsplugd(plugins=FANOUT, log=INFO)
    kv = bench("-m", "fanout", "-p", str(d.port), "-c", "20", "-d", "4",
               "-t", "1", "-w", "0.2", "-s", "0.1", "-x", str(d.proc.pid))
    no_errors(kv)
    assert kv["mode"] == "fanout" and kv["nodes"] == "1"
    assert kv["subscribed"] == "20" and kv["depth"] == "4"
    msgs, secs = int(kv["msgs"]), float(kv["seconds"])
    published = float(kv["published_per_s"]) * secs
    assert msgs > 0 and published > 0
    # Deliveries in the window against messages completed in it: apart
    # only by the messages in flight at either edge (2 x depth), and by
    # the printing: the rate is rounded to a message a second and the
    # window to a millisecond, so the count rebuilt from them is off by
    # up to half a message a second plus a thousandth of a second's
    # worth (at 19,400 a second that was 9.6 messages, 192 deliveries,
    # and failed a bound without it).
    slack = float(kv["published_per_s"]) * 0.0005 + 0.5 * secs
    assert abs(msgs - published * 20) <= (2 * 4 + slack) * 20
    assert float(kv["deliveries_per_s"]) == pytest.approx(msgs / secs,
                                                          rel=0.01)
    p50, p99, mx = (float(kv[k]) for k in ("p50_us", "p99_us", "max_us"))
    assert 0 < p50 <= p99 <= mx * 1.02
    server_cpu(kv, "msgs")
    # 20 subscribers and the publisher, each closed cleanly; the
    # subscribers between them were sent at least every delivery.
    closes = d.wait_count("ws.close", 21)
    assert all(c["code"] == "1000" for c in closes)
    assert sum(int(c["msgs_out"]) for c in closes) >= msgs


def test_fanout_mode_catches_undelivered_messages(wsplugd):
    """Two daemons, each with its own local bus, given as two nodes: the
    second one's subscribers never see a message, and that is an error
    (the publisher's message times out), not a slower figure."""
    a = wsplugd(plugins=FANOUT, log=INFO)
    b = wsplugd(plugins=FANOUT, log=INFO)
    kv = bench("-m", "fanout", "-p", f"{a.port},{b.port}", "-c", "6", "-d",
               "2", "-t", "1", "-w", "0.2", "-s", "0.1", "-T", "1",
               expect_rc=1)
    assert kv["nodes"] == "2" and kv["subscribed"] == "6"
    assert int(kv["err_timeout"]) >= 1, kv["_stderr"]
    assert "not delivered to every subscriber" in kv["_stderr"]


@pytest.fixture
def redis_socket():
    """A private redis-server on a unix socket, persistence off, as
    bench/run starts one on a loopback port; its socket's path."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (install-deps test)")
    d = tempfile.mkdtemp(prefix="wsbr")  # a unix socket path is short
    sock = os.path.join(d, "r.sock")
    proc = subprocess.Popen([exe, "--port", "0", "--unixsocket", sock,
                             "--save", "", "--appendonly", "no", "--dir", d],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10 * SLOW
        while not os.path.exists(sock):
            assert proc.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server never ready"
            time.sleep(0.05)
        yield sock
    finally:
        proc.kill()
        proc.wait(timeout=10)
        shutil.rmtree(d, ignore_errors=True)


def test_fanout_mode_over_two_nodes_on_redis(wsplugd, redis_socket):
    """bench/run's Redis fan-out: the subscribers spread over two daemons
    on one Redis, the publisher on the first; every subscriber of both
    gets every message once and in order."""
    nodes = []
    for _ in range(2):
        d = wsplugd(plugins=FANOUT, log=INFO,
                    extra=f"\n[bus]\nbackend = redis\nredis = "
                    f"{redis_socket}\n")
        d.wait_for("bus.redis_up", timeout=10)
        nodes.append(d)
    a, b = nodes
    kv = bench("-m", "fanout", "-p", f"{a.port},{b.port}", "-c", "10",
               "-d", "4", "-t", "1", "-w", "0.2", "-s", "0.3")
    no_errors(kv)
    assert kv["nodes"] == "2" and kv["subscribed"] == "10"
    assert int(kv["msgs"]) > 0
    # 1 publisher and 5 subscribers on the first, 5 on the second.
    assert len(a.wait_count("ws.close", 6)) == 6
    assert len(b.wait_count("ws.close", 5)) == 5


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


def tls_daemon(wsplugd, pki, listen="127.0.0.1:0 tls"):
    """A daemon serving wss:// with the test CA's ECDSA P-256 leaf, the
    [tls] keys otherwise at their defaults (session tickets on)."""
    return wsplugd(config(server={"listen": listen}, log=INFO,
                          extra=pki.tls_section("ec.pem", "ec.key")))


def test_ping_mode_over_tls(wsplugd, pki):
    """bench/run's TLS per-message row: -K checks the certificate against
    the test CA, TLS 1.3 is what was agreed, every connection a full
    handshake, and the daemon served it all over TLS."""
    d = tls_daemon(wsplugd, pki)
    kv = bench("-m", "ping", "-p", str(d.port), "-c", "4", "-d", "16",
               "-t", "1", "-w", "0.2", "-K", pki.path("ca.pem"),
               "-x", str(d.proc.pid))
    no_errors(kv)
    assert kv["tls"].startswith("TLSv1.3/TLS_"), kv
    assert kv["tls_handshakes"] == "4" and kv["tls_resumed"] == "0"
    msgs = int(kv["msgs"])
    assert msgs > 0 and float(kv["msgs_per_s"]) > 0
    assert 0 < float(kv["p50_us"]) <= float(kv["p99_us"])
    # What went over the wire is WebSocket bytes before encryption: the
    # same frames as in the clear.
    assert float(kv["wire_out_per_msg"]) > 0
    server_cpu(kv, "msgs")
    opens = d.wait_count("ws.open", 4)
    assert all(o["tls"] == "TLSv1.3" for o in opens)
    closes = d.wait_count("ws.close", 4)
    assert all(c["code"] == "1000" for c in closes)
    assert sum(int(c["msgs_in"]) for c in closes) >= msgs


def test_handshake_mode_over_tls(wsplugd, pki):
    """bench/run's CPU per full handshake: no handshake is a resumption
    though the daemon hands out session tickets, and every one counted
    is a wss:// session closed with 1000."""
    d = tls_daemon(wsplugd, pki)
    kv = bench("-m", "handshake", "-p", str(d.port), "-c", "4", "-t", "1",
               "-w", "0.2", "-L", "-x", str(d.proc.pid))
    no_errors(kv)
    n = int(kv["handshakes"])
    assert n > 0 and float(kv["handshakes_per_s"]) > 0
    assert kv["tls"].startswith("TLSv1.3/") and kv["tls_resumed"] == "0"
    assert int(kv["tls_handshakes"]) >= n
    server_cpu(kv, "handshakes")
    closes = d.wait_count("ws.close", n)
    assert all(c["code"] == "1000" for c in closes)
    opens = d.find_all("ws.open")
    assert len(opens) >= n and all(o["tls"] == "TLSv1.3" for o in opens)


def test_tls_errors_are_counted(wsplugd, pki):
    """A certificate the CA file does not vouch for, and TLS to a plain
    port, are TLS errors, exit 1, and not a measurement."""
    d = tls_daemon(wsplugd, pki)
    # A leaf is no CA: nothing signed the daemon's certificate here.
    kv = bench("-m", "ping", "-p", str(d.port), "-c", "2", "-t", "0.5",
               "-w", "0", "-K", pki.path("soon.pem"), expect_rc=1)
    assert kv["err_tls"] == "2" and kv["msgs"] == "0", kv
    assert "certificate verify failed" in kv["_stderr"]
    plain = wsplugd(log=INFO)
    kv = bench("-m", "ping", "-p", str(plain.port), "-c", "2", "-t", "0.5",
               "-w", "0", "-L", expect_rc=1)
    assert kv["err_tls"] == "2" and kv["tls_handshakes"] == "0", kv
    assert "TLS handshake" in kv["_stderr"]


def test_idle_mode_answers_server_pings(wsplugd):
    d = wsplugd(log=INFO, keepalive=KEEPALIVE)
    kv = bench("-m", "idle", "-p", str(d.port), "-c", "50", "-t", "1.2",
               "-s", "0.2", "-U", "100", "-x", str(d.proc.pid))
    no_errors(kv)
    assert kv["_stdout"].startswith("ready connections=50 failed=0 ")
    assert kv["held"] == "50" and kv["verified"] == "50"
    assert int(kv["server_pings"]) >= 50  # each pinged at least once
    before, after = int(kv["rss_before_kib"]), int(kv["rss_after_kib"])
    assert before > 0 and after >= before
    # A first connection came and went before the RSS was read, so that
    # what the daemon sets up once is not counted per connection.
    d.wait_count("ws.open", 51)
    opens = d.find_all("ws.open")
    assert len(opens) == 51
    assert all(len(o["ua"]) == 100 for o in opens)
    closes = d.wait_count("ws.close", 51)
    assert closes[0]["conn"] == opens[0]["conn"]
    assert closes[0]["msgs_in"] == "1"
    assert all(c["code"] == "1000" for c in closes)
    # The pings were answered: nobody missed one or was reaped.
    assert d.find("ws.ping_missed") is None and d.find("ws.reap") is None


def test_idle_mode_with_deflate_negotiated(wsplugd):
    """What bench/run's "RSS per idle connection, deflate negotiated" rests
    on: every connection negotiated the extension, its messages went
    plain, and the daemon made no zlib stream that outlived them (its
    pool would still hold one)."""
    from test_admin import scrape, value
    d = wsplugd(log=INFO)
    kv = bench("-m", "idle", "-p", str(d.port), "-c", "50", "-t", "1.2",
               "-s", "0.2", "-z", "-x", str(d.proc.pid))
    no_errors(kv)
    assert kv["held"] == "50" and kv["verified"] == "50"
    assert kv["deflate_conns"] == "51"  # and the probe
    samples, _ = scrape(d)
    assert value(samples, "wsplugd_deflate_zlib_bytes") == 0


# -- a server that breaks the protocol is caught ----------------------

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _recv_head(conn):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(4096)
        if not chunk:
            return None, b""
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.decode(), rest


def _recv_frame(conn, buf):
    """One masked client frame: (opcode, payload, rest) or None."""
    while True:
        if len(buf) >= 6:
            n = buf[1] & 0x7F
            if n < 126 and len(buf) >= 6 + n:
                key, data = buf[2:6], buf[6:6 + n]
                data = bytes(b ^ key[i % 4] for i, b in enumerate(data))
                return buf[0] & 0x0F, data, buf[6 + n:]
        chunk = conn.recv(4096)
        if not chunk:
            return None
        buf += chunk


def _text(payload, masked=False):
    data = json.dumps(payload).encode()
    if masked:
        key = b"\x01\x02\x03\x04"
        return (struct.pack("!BB", 0x81, 0x80 | len(data)) + key +
                bytes(b ^ key[i % 4] for i, b in enumerate(data)))
    return struct.pack("!BB", 0x81, len(data)) + data


def _serve(conn, fault):
    head, buf = _recv_head(conn)
    if head is None:
        return
    key = [line.split(":", 1)[1].strip() for line in head.split("\r\n")
           if line.lower().startswith("sec-websocket-key:")][0]
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode())
                              .digest()).decode()
    if fault == "accept":
        accept = base64.b64encode(b"\0" * 20).decode()
    opened = time.monotonic()
    stalled = False
    conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket"
                  f"\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
                  f"{accept}\r\n\r\n").encode())
    conn.sendall(_text({"type": "connection_established",
                        "connectionId": "0" * 32, "timestamp": 0},
                       masked=fault == "masked"))
    while True:
        got = _recv_frame(conn, buf)
        if got is None:
            return
        op, data, buf = got
        if op == 8:
            conn.sendall(b"\x88\x02\x03\xe8")
            return
        msg = json.loads(data)
        late = time.monotonic() - opened > 0.6
        if fault == "stall" and late and not stalled:
            time.sleep(0.4)  # once, inside the measured window
            stalled = True
        if fault == "drop" and late:
            conn.shutdown(socket.SHUT_RDWR)
            return
        reply = {"type": "pong", "timestamp": 0, "id": msg["id"]}
        if fault == "id":
            reply["id"] += 1
        conn.sendall(_text(reply))


@pytest.fixture
def broken_server():
    """start(fault) -> port of a server that breaks one rule."""
    socks = []

    def start(fault):
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(16)
        socks.append(ls)

        def loop():
            while True:
                try:
                    conn, _ = ls.accept()
                except OSError:
                    return
                with conn:
                    try:
                        _serve(conn, fault)
                    except OSError:
                        pass
        threading.Thread(target=loop, daemon=True).start()
        return ls.getsockname()[1]

    yield start
    for s in socks:
        s.close()


@pytest.mark.parametrize("fault,kind", [
    ("accept", "handshake"),  # Sec-WebSocket-Accept for another key
    ("masked", "frame"),      # a masked server frame
    ("id", "reply"),          # a pong for another ping
])
def test_protocol_errors_are_counted(broken_server, fault, kind):
    port = broken_server(fault)
    kv = bench("-m", "ping", "-p", str(port), "-c", "1", "-t", "0.3",
               "-w", "0", "-T", "3", expect_rc=1)
    assert int(kv[f"err_{kind}"]) >= 1
    assert int(kv["errors"]) >= 1
    assert f": {kind}: " in kv["_stderr"]


def test_a_stall_is_the_longest_wait(broken_server):
    """A server that stops answering for 0.4 s once: the longest wait is
    the stall, found on that connection, and it is not an error."""
    port = broken_server("stall")
    kv = bench("-m", "ping", "-p", str(port), "-c", "1", "-d", "4",
               "-t", "1.5", "-w", "0.3", "-g", "300")
    no_errors(kv)
    assert 400e3 <= float(kv["gap_max_us"]) < 1000e3
    assert kv["gap_over"] == "1" and kv["dropped"] == "0"


def test_a_dropped_connection_is_counted(broken_server):
    port = broken_server("drop")
    kv = bench("-m", "ping", "-p", str(port), "-c", "1", "-d", "4",
               "-t", "1.5", "-w", "0.3", "-T", "3", expect_rc=1)
    assert kv["dropped"] == "1" and kv["measured_conns"] == "1"
    assert kv["err_closed"] == "1" and kv["errors"] == "1"
