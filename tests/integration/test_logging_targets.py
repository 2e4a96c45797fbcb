"""Log targets (DESIGN.md "Logging, monitoring"): a file that survives
logrotate's rename + SIGUSR1, syslog and the journal where the machine has
them, and the JSON format carrying the same events and fields as logfmt.

The syslog and journal tests here read back what the daemon wrote through
the system's own tools, so they run only where those services are up; each
skip says why (and is listed in check-all's summary).  On every machine,
test_logging_private.py checks both targets against sockets of its own."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import uuid

import pytest

from harness import SLOW, config, parse_line, run_wsplugd, ws_connect


def lines_of(path):
    try:
        with open(path, encoding="utf-8") as f:
            return [parse_line(line.rstrip("\n")) for line in f]
    except FileNotFoundError:
        return []


def wait_in_file(path, event, timeout=10, **fields):
    """Poll a log file until a line of event with fields is in it."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        for ev in lines_of(path):
            if ev.get("event") == event and all(
                    ev.get(k) == str(v) for k, v in fields.items()):
                return ev
        assert time.monotonic() < deadline, \
            f"no {event} {fields} in {path}:\n" + open(path).read()[-3000:]
        time.sleep(0.05)


def visit(port, ua):
    """Connect with user agent ua, ping, close; returns the conn id."""
    async def run():
        async with ws_connect(f"ws://127.0.0.1:{port}/ws",
                              user_agent_header=ua) as ws:
            hello = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "ping"}))
            await ws.recv()
            return hello["connectionId"]
    return asyncio.run(run())


def uas(path):
    return [ev["ua"] for ev in lines_of(path) if ev.get("event") == "ws.open"]


# -- file -----------------------------------------------------------------

def test_file_target_survives_rename_and_sigusr1(wsplugd, tmp_path):
    log = tmp_path / "wsplugd.log"
    rotated = tmp_path / "wsplugd.log.1"
    d = wsplugd(log={"target": f"file:{log}"}, wait=False)
    port = int(wait_in_file(log, "listen.start")["addr"].rsplit(":", 1)[1])
    wait_in_file(log, "daemon.start")

    conn = visit(port, "before-move")
    wait_in_file(log, "ws.close", conn=conn)
    os.rename(log, rotated)  # what logrotate does first
    conn = visit(port, "after-move")
    # the daemon still holds the renamed file open
    wait_in_file(rotated, "ws.close", conn=conn)
    assert not log.exists()

    d.signal(signal.SIGUSR1)
    wait_in_file(log, "log.reopen")
    conn = visit(port, "after-reopen")
    wait_in_file(log, "ws.close", conn=conn)

    assert uas(rotated) == ["before-move", "after-move"]
    assert uas(log) == ["after-reopen"]
    assert [ev["event"] for ev in lines_of(log)][0] == "log.reopen"
    assert oct(log.stat().st_mode & 0o777) == "0o640"
    d.stop()
    wait_in_file(log, "daemon.stop")
    # nothing went to stderr
    assert d.lines == [], d.lines


def test_file_target_in_a_missing_directory_fails_at_start(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text(config(log={"target": f"file:{tmp_path}/no/such.log"}))
    r = run_wsplugd(["-c", str(conf)])
    assert r.returncode == 1
    assert f"cannot open log file {tmp_path}/no/such.log" in r.stderr


# -- formats --------------------------------------------------------------

def scenario(d):
    """The same things happen to each daemon: an open, a ping, bad JSON,
    a clean close, a refusal, a reload, a shutdown."""
    async def run():
        async with ws_connect(d.url, user_agent_header="fmt/1") as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "ping"}))
            await ws.recv()
            await ws.send("{not json")
            await ws.recv()
        try:
            async with ws_connect(d.url.replace("/ws", "/elsewhere")):
                pass
        except Exception:
            pass
    asyncio.run(run())
    d.wait_for("ws.close")
    d.wait_for("ws.refuse")
    mark = d.mark()
    d.signal(signal.SIGHUP)
    d.wait_for("reload", start=mark, result="ok")
    d.stop()
    d.wait_for("daemon.stop")
    # debug lines of the keepalive depend on timing; the rest must not
    return [ev for ev in d.events
            if ev.get("event") not in ("ws.ping", "ws.pong")]


def test_json_lines_carry_the_same_events_and_keys_as_logfmt(wsplugd):
    logfmt = scenario(wsplugd(log={"format": "logfmt"}))
    d = wsplugd(log={"format": "json"})
    jsonl = scenario(d)
    for raw in d.raw_lines:
        assert isinstance(json.loads(raw), dict), raw
    for ev in jsonl:
        assert "_invalid" not in ev, ev
    assert [e["event"] for e in jsonl] == [e["event"] for e in logfmt]
    for a, b in zip(logfmt, jsonl):
        assert set(a) == set(b), (a, b)
        assert a["level"] == b["level"]
    names = {e["event"] for e in jsonl}
    assert {"daemon.start", "listen.start", "admin.start", "ws.open",
            "ws.close", "ws.refuse", "reload", "daemon.shutdown",
            "daemon.stop", "admin.stop", "plugin.load",
            "plugin.unload"} <= names, names


# -- syslog ---------------------------------------------------------------

def syslog_lines(pid, needle, timeout=10):
    """The system log's lines from pid that hold needle (polling until
    there is one), or None when the system log cannot be read here."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        if journald_running():
            r = subprocess.run(["journalctl", "--no-pager", "-o", "cat",
                                f"_PID={pid}", "SYSLOG_IDENTIFIER=wsplugd"],
                               capture_output=True, text=True)
            lines = r.stdout.splitlines()
        else:
            files = [f for f in ("/var/log/syslog", "/var/log/daemon.log",
                                 "/var/log/messages") if os.access(f, os.R_OK)]
            if not files:
                return None
            with open(files[0], errors="replace") as fp:
                lines = [line for line in fp if f"wsplugd[{pid}]:" in line]
        found = [line for line in lines if needle in line]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.mark.skipif(not os.path.exists("/dev/log"),
                    reason="no /dev/log: no syslog daemon on this machine")
def test_syslog_target(wsplugd):
    d = wsplugd(log={"target": "syslog"}, wait=False)
    starts = syslog_lines(d.proc.pid, "event=listen.start")
    if starts is None:
        pytest.skip("/dev/log exists but the system log cannot be read back")
    assert starts, "listen.start not in the system log"
    port = int(parse_line(starts[-1])["addr"].rsplit(":", 1)[1])
    ua = "syslog-" + uuid.uuid4().hex
    conn = visit(port, ua)
    (opened,) = syslog_lines(d.proc.pid, ua)
    ev = parse_line(opened)
    assert ev["event"] == "ws.open" and ev["conn"] == conn
    assert "ts" not in ev  # syslog stamps lines itself
    d.stop()
    assert d.lines == [], d.lines  # nothing on stderr


# -- journal --------------------------------------------------------------

def built_with_libsystemd(tmp_path):
    conf = tmp_path / "journal.conf"
    conf.write_text(config(log={"target": "journal"}))
    r = run_wsplugd(["-t", "-c", str(conf)])
    return "not built with libsystemd" not in r.stdout + r.stderr


JOURNAL_SOCKET = "/run/systemd/journal/socket"


def journald_running():
    """Something answers on journald's socket (a stale socket file left by
    a journald that is gone refuses the connection) and journalctl works."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.connect(JOURNAL_SOCKET)
    except OSError:
        return False
    finally:
        s.close()
    return subprocess.run(["journalctl", "-n", "0", "--no-pager"],
                          capture_output=True).returncode == 0


def journal_entries(timeout=10, **match):
    """Journal entries (dicts) matching every FIELD=value, polling."""
    args = ["journalctl", "--no-pager", "-o", "json"] + \
        [f"{k}={v}" for k, v in match.items()]
    deadline = time.monotonic() + timeout * SLOW
    while True:
        r = subprocess.run(args, capture_output=True, text=True)
        out = [json.loads(line) for line in r.stdout.splitlines() if line]
        if out or time.monotonic() > deadline:
            return out
        time.sleep(0.2)


def test_journal_target_sends_structured_fields(wsplugd, tmp_path):
    if not built_with_libsystemd(tmp_path):
        pytest.skip("built without libsystemd: target = journal is refused")
    if not journald_running():
        pytest.skip("journald is not running here (no "
                    "/run/systemd/journal/socket)")
    d = wsplugd(log={"target": "journal"}, wait=False)
    pid = d.proc.pid
    (start,) = journal_entries(_PID=pid, WSPLUGD_EVENT="listen.start")
    port = int(start["WSPLUGD_ADDR"].rsplit(":", 1)[1])
    ua = "journal-" + uuid.uuid4().hex
    conn = visit(port, ua)

    (opened,) = journal_entries(WSPLUGD_UA=ua)
    assert opened["SYSLOG_IDENTIFIER"] == "wsplugd"
    assert opened["PRIORITY"] == "6"
    assert opened["WSPLUGD_EVENT"] == "ws.open"
    assert opened["CONNECTION_ID"] == conn
    assert opened["CLIENT_IP"] == "127.0.0.1"
    assert "CODE_FILE" not in opened
    msg = parse_line(opened["MESSAGE"])
    assert msg["event"] == "ws.open" and msg["ua"] == ua
    assert "ts" not in msg  # the journal stamps entries itself

    # Every line about the connection, the plugins' own included, is
    # found by its id.
    deadline = time.monotonic() + 10 * SLOW
    while True:
        entries = journal_entries(CONNECTION_ID=conn)
        events = [e["WSPLUGD_EVENT"] for e in entries]
        if "ws.close" in events or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert events[0] == "ws.open" and events[-1] == "ws.close", events
    assert entries[-1]["WSPLUGD_CODE"] == "1000"
    d.stop()
    assert d.lines == [], d.lines  # nothing on stderr


def test_journal_target_without_journald_writes_to_stderr(wsplugd,
                                                          tmp_path):
    if not built_with_libsystemd(tmp_path):
        pytest.skip("built without libsystemd: target = journal is refused")
    if journald_running():
        pytest.skip("journald is running: lines go to the journal")
    d = wsplugd(log={"target": "journal"})
    conn = visit(d.port, "no-journald/1")
    closed = d.wait_for("ws.close", conn=conn)
    assert closed["ip"] == "127.0.0.1"
    # the line meant for the journal: no ts of ours, level first
    assert all(line.startswith("level=") for line in d.lines), d.lines[:3]


def test_journal_target_refused_without_libsystemd(tmp_path):
    if built_with_libsystemd(tmp_path):
        pytest.skip("built with libsystemd: target = journal is accepted")
    conf = tmp_path / "c.conf"
    conf.write_text(config(log={"target": "journal"}))
    line = conf.read_text().splitlines().index("target = journal") + 1
    r = run_wsplugd(["-t", "-c", str(conf)])
    assert r.returncode == 1
    assert f"{conf}:{line}: [log] target: journal: not built with " \
        "libsystemd" in r.stderr
