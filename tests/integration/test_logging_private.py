"""The syslog and journal targets on any machine, with or without a syslog
daemon or journald: the daemon runs in a private mount namespace where
/dev/log and /run/systemd/journal/socket are datagram sockets this test
serves, and every datagram it sends is read back and checked — syslog's
priority, identifier and pid; the journal's native protocol with its
MESSAGE, PRIORITY and per-field entries.  test_logging_targets.py reads
the real system log where there is one.

Needs root for the mount namespace (unshare -m) and overlayfs to add a
socket to /dev without touching the machine's /dev; a skip says which
is missing."""

import json
import os
import pathlib
import re
import shlex
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import uuid

import pytest

from harness import SLOW, parse_line
from test_logging_targets import built_with_libsystemd, visit

LOG_DAEMON = 3 << 3
LOG_INFO = 6


def _namespace_problem():
    if os.geteuid() != 0:
        return "a private /dev/log needs root (unshare -m); not root"
    if shutil.which("unshare") is None:
        return "unshare(1) not found (util-linux)"
    return None


class PrivateLog:
    """Sockets at /dev/log and /run/systemd/journal/socket as a daemon in
    a private mount namespace sees them; prefix is the command that sets
    that namespace up and execs the daemon."""

    def __init__(self):
        # Not pytest's tmp_path: under xdist its paths pass the 108 bytes
        # an AF_UNIX socket path may have.
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="wsp-log-",
                                                 dir="/tmp"))
        (self.dir / "upper").mkdir(parents=True)
        (self.dir / "work").mkdir()
        (self.dir / "run" / "systemd" / "journal").mkdir(parents=True)
        self.syslog = self._listen(self.dir / "syslog.sock")
        self.journal = self._listen(
            self.dir / "run" / "systemd" / "journal" / "socket")
        d = shlex.quote(str(self.dir))
        setup = (
            "set -e; "
            "mount --make-rprivate /; "
            # /dev with one file more, in this namespace only.
            f"mount -t overlay overlay -o lowerdir=/dev,upperdir={d}/upper,"
            f"workdir={d}/work /dev; "
            ": > /dev/log; "
            f"mount --bind {d}/syslog.sock /dev/log; "
            f"mount --bind {d}/run /run; "
            'exec "$@"')
        self.prefix = ["unshare", "--mount", "sh", "-c", setup, "private-log"]

    @staticmethod
    def _listen(path):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(str(path))
        # The sender's pid comes with each datagram, as journald gets it.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        s.settimeout(0.2)
        return s

    def check_namespace(self):
        """None if the set-up works here, else why not."""
        r = subprocess.run(self.prefix + ["test", "-S", "/dev/log"],
                           capture_output=True, text=True, timeout=20)
        if r.returncode != 0:
            return ("cannot set up a private /dev/log: " +
                    (r.stderr.strip() or f"exit {r.returncode}"))
        return None

    @staticmethod
    def receive(sock, want, timeout=10):
        """Datagrams (pid, bytes) until want(list) is true."""
        got = []
        deadline = time.monotonic() + timeout * SLOW
        while not want(got):
            assert time.monotonic() < deadline, \
                "timed out; received:\n" + "\n".join(
                    repr(b[:300]) for _, b in got[-20:])
            try:
                data, anc, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(12))
            except socket.timeout:
                continue
            pid = None
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and \
                        kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", cdata[:12])[0]
            got.append((pid, data))
        return got

    def close(self):
        self.syslog.close()
        self.journal.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_log():
    why = _namespace_problem()
    if why:
        pytest.skip(why)
    p = PrivateLog()
    why = p.check_namespace()
    if why:
        p.close()
        pytest.skip(why)
    yield p
    p.close()


# -- syslog ---------------------------------------------------------------

SYSLOG = re.compile(rb"<(\d+)>(\w{3} [ \d]\d \d\d:\d\d:\d\d) "
                    rb"([^\[ ]+)\[(\d+)\]: (.*)", re.S)


def syslog_events(got):
    out = []
    for _, data in got:
        m = SYSLOG.fullmatch(data)
        assert m, data
        line = m.group(5).decode().rstrip("\n")
        out.append((int(m.group(1)), m.group(3).decode(), int(m.group(4)),
                    parse_line(line)))
    return out


def test_syslog_target_private_dev_log(wsplugd, private_log):
    d = wsplugd(log={"target": "syslog"}, wait=False,
                prefix=private_log.prefix)

    def has(event, **fields):
        def want(got):
            return any(ev.get("event") == event and all(
                ev.get(k) == v for k, v in fields.items())
                for _, _, _, ev in syslog_events(got))
        return want

    got = private_log.receive(private_log.syslog, has("daemon.start"))
    events = syslog_events(got)
    for prio, ident, pid, ev in events:
        assert ident == "wsplugd" and pid == d.proc.pid, (ident, pid)
        assert prio & ~7 == LOG_DAEMON
        assert "ts" not in ev  # syslog stamps lines itself
    (start,) = [ev for _, _, _, ev in events if ev["event"] == "listen.start"]
    assert [p for p, _, _, ev in events if ev["event"] == "daemon.start"] == \
        [LOG_DAEMON | LOG_INFO]
    port = int(start["addr"].rsplit(":", 1)[1])

    ua = "syslog-" + uuid.uuid4().hex
    conn = visit(port, ua)
    got = private_log.receive(private_log.syslog,
                              has("ws.close", conn=conn))
    events = [ev for _, _, _, ev in syslog_events(got)]
    (opened,) = [ev for ev in events if ev.get("event") == "ws.open"]
    assert opened["ua"] == ua and opened["conn"] == conn
    (closed,) = [ev for ev in events if ev.get("event") == "ws.close"]
    assert closed["code"] == "1000"
    d.stop()
    assert d.lines == [], d.lines  # nothing on stderr
    got = private_log.receive(private_log.syslog, has("daemon.stop"))


# -- journal --------------------------------------------------------------

def journal_fields(data):
    """One entry of journald's native protocol: NAME=value lines, or NAME,
    a newline, a little-endian 64-bit length and the value (for values
    with newlines)."""
    fields, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            name, value = line.split(b"=", 1)
            i = nl + 1
        else:
            (n,) = struct.unpack("<Q", data[nl + 1:nl + 9])
            name, value = line, data[nl + 9:nl + 9 + n]
            assert data[nl + 9 + n:nl + 10 + n] == b"\n", data
            i = nl + 10 + n
        name = name.decode()
        assert re.fullmatch(r"[A-Z0-9_]+", name) and \
            not name.startswith("_"), name  # journald's rule for senders
        assert name not in fields, name
        fields[name] = value.decode()
    return fields


def test_journal_target_private_socket(wsplugd, private_log, tmp_path):
    if not built_with_libsystemd(tmp_path):
        pytest.skip("built without libsystemd: target = journal is refused")
    d = wsplugd(log={"target": "journal"}, wait=False,
                prefix=private_log.prefix)

    def entries(got):
        return [(pid, journal_fields(data)) for pid, data in got]

    def has(event, **fields):
        def want(got):
            return any(e.get("WSPLUGD_EVENT") == event and all(
                e.get(k) == v for k, v in fields.items())
                for _, e in entries(got))
        return want

    got = private_log.receive(private_log.journal, has("daemon.start"))
    for pid, e in entries(got):
        assert pid == d.proc.pid
        assert e["SYSLOG_IDENTIFIER"] == "wsplugd"
        assert "CODE_FILE" not in e
        msg = parse_line(e["MESSAGE"])
        assert msg["event"] == e["WSPLUGD_EVENT"]
        assert "ts" not in msg  # the journal stamps entries itself
    (start,) = [e for _, e in entries(got)
                if e["WSPLUGD_EVENT"] == "listen.start"]
    port = int(start["WSPLUGD_ADDR"].rsplit(":", 1)[1])

    ua = "journal-" + uuid.uuid4().hex
    conn = visit(port, ua)
    got = private_log.receive(private_log.journal,
                              has("ws.close", CONNECTION_ID=conn))
    mine = [e for _, e in entries(got) if e.get("CONNECTION_ID") == conn]
    assert mine[0]["WSPLUGD_EVENT"] == "ws.open"
    assert mine[0]["PRIORITY"] == str(LOG_INFO)
    assert mine[0]["CLIENT_IP"] == "127.0.0.1"
    assert mine[0]["WSPLUGD_UA"] == ua
    assert parse_line(mine[0]["MESSAGE"])["ua"] == ua
    assert mine[-1]["WSPLUGD_EVENT"] == "ws.close"
    assert mine[-1]["WSPLUGD_CODE"] == "1000"
    d.stop()
    assert d.lines == [], d.lines  # nothing on stderr, no log.error
    json.dumps(mine)  # every value decoded as text
