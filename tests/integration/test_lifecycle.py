"""The daemon's life (DESIGN.md "The command", "Reload and shutdown",
"Logging"): graceful shutdown on SIGTERM/SIGINT, the log of one visit, and
the command line's -t, -V and usage."""

import asyncio
import json
import os
import re
import signal
import time

import pytest

from harness import PLUGIN_DIR, SLOW, config, run_wsplugd, ws_connect
from rawws import Raw, build_frame, close_body


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT],
                         ids=["SIGTERM", "SIGINT"])
def test_signal_closes_every_client_with_1001_and_exits_0(wsplugd, sig):
    d = wsplugd()

    async def visit():
        clients = [await ws_connect(d.url) for _ in range(5)]
        ids = [json.loads(await ws.recv())["connectionId"]
               for ws in clients]
        await asyncio.to_thread(d.wait_count, "ws.open", 5)
        d.signal(sig)
        codes = []
        for ws in clients:
            await ws.wait_closed()
            codes.append((ws.close_code, ws.close_reason))
        return ids, codes

    ids, codes = asyncio.run(visit())
    assert [c for c, _ in codes] == [1001] * 5, codes
    rc = d.wait_exit()
    assert rc == 0, d.log_text()
    d.wait_for("daemon.shutdown")
    stop = d.wait_for("daemon.stop")
    assert stop["opened"] == "5" and stop["closed"] == "5", stop
    for conn in ids:
        assert d.find("ws.close", conn=conn)["code"] == "1001"


def test_shutdown_with_no_clients_is_immediate(wsplugd):
    d = wsplugd()
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    assert time.monotonic() - t0 < 5
    stop = d.wait_for("daemon.stop")
    assert stop["opened"] == "0"


def test_shutdown_refuses_new_connections(wsplugd):
    # While the daemon waits for close handshakes it accepts nobody new.
    d = wsplugd()
    with Raw(d.port) as r:
        r.handshake()
        r.recv_message()
        d.signal(signal.SIGTERM)
        body = r.recv_close()
        assert body[:2] == close_body(1001)
        with pytest.raises(OSError):
            with Raw(d.port) as late:
                late.handshake()
        r.send_frame(8, body[:2])
        assert r.expect_eof() == b""
    assert d.wait_exit() == 0


def frame_len(text):
    """Bytes on the wire of an unmasked server text frame."""
    n = len(text.encode())
    return n + (2 if n < 126 else 4 if n < 65536 else 10)


def test_one_visit_in_the_log(wsplugd):
    d = wsplugd()
    sent = []
    received = []
    with Raw(d.port, headers={"User-Agent": "visit-test/2.0 (x; y)"}) as r:
        r.handshake()
        local_port = r.sock.getsockname()[1]
        t0 = time.monotonic()
        kind, hello = r.recv_message()
        conn = json.loads(hello)["connectionId"]
        received.append(frame_len(hello))
        for i in range(3):
            f = build_frame(1, json.dumps({"type": "ping", "id": i}))
            r.send_raw(f)
            sent.append(len(f))
            kind, pong = r.recv_message()
            received.append(frame_len(pong))
        f = build_frame(8, close_body(1000, "done"))
        r.send_raw(f)
        sent.append(len(f))
        assert r.recv_close() == close_body(1000, "done")
        received.append(2 + 6)
        assert r.expect_eof() == b""
        held_ms = (time.monotonic() - t0) * 1000

    opened = d.wait_for("ws.open", conn=conn)
    assert opened["ip"] == "127.0.0.1"
    assert opened["port"] == str(local_port)
    assert opened["ua"] == "visit-test/2.0 (x; y)"
    assert opened["path"] == "/ws"
    assert opened["active"] == "1"
    closed = d.wait_for("ws.close", conn=conn)
    assert closed["ip"] == "127.0.0.1"
    assert closed["code"] == "1000"
    assert closed["reason"] == "done"
    assert closed["active"] == "0"
    assert closed["msgs_in"] == "3"
    assert closed["msgs_out"] == "4"
    assert 0 <= int(closed["duration_ms"]) <= held_ms + 1000
    # Bytes are at least the frames exchanged, and at most those plus the
    # HTTP handshake if the daemon counts it.
    assert sum(sent) <= int(closed["bytes_in"]) <= sum(sent) + 400
    assert sum(received) <= int(closed["bytes_out"]) <= sum(received) + 200
    # Open comes before close, and both carry the same id.
    with d.cond:
        order = [ev["event"] for ev in d.events if ev.get("conn") == conn
                 and ev.get("event") in ("ws.open", "ws.close")]
    assert order == ["ws.open", "ws.close"]


def test_active_counts_concurrent_connections(wsplugd):
    d = wsplugd()

    async def visit():
        async with ws_connect(d.url) as a:
            await a.recv()
            async with ws_connect(d.url) as b:
                await b.recv()
                async with ws_connect(d.url) as c:
                    await c.recv()
                await asyncio.to_thread(d.wait_count, "ws.close", 1)
            await asyncio.to_thread(d.wait_count, "ws.close", 2)

    asyncio.run(visit())
    d.wait_count("ws.close", 3)
    assert [e["active"] for e in d.find_all("ws.open")] == ["1", "2", "3"]
    assert [e["active"] for e in d.find_all("ws.close")] == ["2", "1", "0"]


# -- the command line ----------------------------------------------------

def write(tmp_path, text, name="wsplugd.conf"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def line_of(path, needle):
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if needle in line:
                return n
    raise AssertionError(f"{needle!r} not in {path}")


def test_check_good_config(tmp_path):
    conf = write(tmp_path, config(plugins=("connection_established", "ping",
                                           "echo")))
    res = run_wsplugd(["-t", "-c", conf])
    assert res.returncode == 0, res.stderr
    assert "configuration OK" in res.stdout
    assert res.stderr == ""


def test_check_bad_value_names_file_and_line(tmp_path):
    conf = write(tmp_path, config(keepalive={"ping_interval": "soon"}))
    line = line_of(conf, "ping_interval = soon")
    res = run_wsplugd(["-t", "-c", conf])
    assert res.returncode == 1
    assert f"{conf}:{line}:" in res.stderr, res.stderr
    assert "ping_interval" in res.stderr
    assert "configuration OK" not in res.stdout
    # Started for real, the same file is refused the same way.
    res = run_wsplugd(["-c", conf])
    assert res.returncode == 1
    assert f"{conf}:{line}:" in res.stdout + res.stderr


@pytest.mark.parametrize("section,key,value", [
    ("server", "max_connections", "many"),
    ("server", "max_message_size", "10"),        # a size needs a unit
    ("server", "handshake_timeout", "5"),         # a duration needs a unit
    ("server", "bogus_key", "1"),
    ("keepalive", "idle_timeout", "-1s"),
    ("log", "level", "loud"),
])
def test_check_each_bad_line_is_located(tmp_path, section, key, value):
    kw = {section: {key: value}}
    conf = write(tmp_path, config(**kw))
    line = line_of(conf, f"{key} = {value}")
    res = run_wsplugd(["-t", "-c", conf])
    assert res.returncode == 1
    assert f"{conf}:{line}:" in res.stderr, res.stderr


def test_check_duplicate_key_is_an_error(tmp_path):
    text = config().replace("path = /ws\n", "path = /ws\npath = /other\n")
    conf = write(tmp_path, text)
    res = run_wsplugd(["-t", "-c", conf])
    assert res.returncode == 1
    assert f"{conf}:{line_of(conf, 'path = /other')}:" in res.stderr, \
        res.stderr


def test_check_missing_plugin_is_named(tmp_path):
    conf = write(tmp_path, config(
        plugins=("connection_established", "ping", "ghost"),
        plugin_sections={"ghost": {"path": str(tmp_path / "ghost.so")}}))
    res = run_wsplugd(["-t", "-c", conf])
    assert res.returncode == 1
    assert "ghost" in res.stderr, res.stderr
    assert f"{conf}:" in res.stderr
    assert "configuration OK" not in res.stdout


def test_check_unknown_plugin_key_names_file_and_line(tmp_path):
    conf = write(tmp_path, config(
        plugins=("echo",), plugin_sections={"echo": {"catch_al": "yes"}}))
    line = line_of(conf, "catch_al = yes")
    res = run_wsplugd(["-t", "-c", conf])
    assert res.returncode == 1
    assert f"{conf}:{line}:" in res.stderr, res.stderr
    assert "catch_al" in res.stderr


def test_check_bad_plugin_value_is_refused(tmp_path):
    conf = write(tmp_path, config(
        plugins=("echo",), plugin_sections={"echo": {"catch_all": "maybe"}}))
    res = run_wsplugd(["-t", "-c", conf])
    assert res.returncode == 1
    assert f"{conf}:" in res.stderr, res.stderr


def test_check_two_plugins_claiming_one_type(tmp_path):
    echo = os.path.join(PLUGIN_DIR, "echo.so")
    conf = write(tmp_path, config(
        plugins=("echo", "echo2"),
        plugin_sections={"echo2": {"path": echo}}))
    res = run_wsplugd(["-t", "-c", conf])
    assert res.returncode == 1
    assert "echo2" in res.stderr and '"echo"' in res.stderr, res.stderr
    assert f"{conf}:" in res.stderr
    # Two catch-alls are the same conflict over "*".
    conf = write(tmp_path, config(
        plugins=("echo", "echo2"),
        plugin_sections={"echo": {"catch_all": "yes"},
                         "echo2": {"path": echo, "catch_all": "yes"}}),
        name="two-catch-alls.conf")
    res = run_wsplugd(["-t", "-c", conf])
    assert res.returncode == 1, res.stdout


def test_version_names_the_abi():
    res = run_wsplugd(["-V"])
    assert res.returncode == 0
    m = re.fullmatch(r"wsplugd (\S+) \(plugin ABI (\d+)\)\n", res.stdout)
    assert m, res.stdout
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "..", "configure.ac")) as f:
        ac = re.search(r"AC_INIT\(\[wsplugd\], \[([^]]+)\]", f.read())
    if ac:
        assert m.group(1) == ac.group(1)


@pytest.mark.parametrize("args", [["-x"], ["--bogus"], ["extra-arg"],
                                  ["-c"], ["-l", "loud"], ["--config"],
                                  ["--version=2"], ["--log-level=loud"]])
def test_bad_command_line_prints_usage_and_exits_1(args):
    res = run_wsplugd(args)
    assert res.returncode == 1, res
    assert res.stdout == ""
    if args not in (["-l", "loud"], ["--log-level=loud"]):
        assert "usage: wsplugd" in res.stderr, res.stderr


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_prints_usage_and_exits_0(flag):
    res = run_wsplugd([flag])
    assert res.returncode == 0
    assert "usage: wsplugd" in res.stdout
    for opt in ("-c", "-t", "-l", "-V", "-h", "--config=FILE", "--test",
                "--log-level=LEVEL", "--version", "--help"):
        assert opt in res.stdout


def test_long_options_are_the_short_ones(tmp_path):
    # --version prints what -V prints; --test and --config, in both of
    # getopt_long's spellings, check the file -t -c checks; --log-level
    # takes what -l takes.
    assert run_wsplugd(["--version"]).stdout == run_wsplugd(["-V"]).stdout
    conf = write(tmp_path, config())
    for args in (["--test", "--config", conf], ["--test", f"--config={conf}"],
                 ["--test", "--log-level=debug", "-c", conf]):
        res = run_wsplugd(args)
        assert res.returncode == 0, (args, res)
        assert res.stdout == f"{conf}: configuration OK\n", res.stdout
    bad = write(tmp_path, "[server]\nbogus = 1\n", name="bad.conf")
    res = run_wsplugd(["--test", f"--config={bad}"])
    assert res.returncode == 1
    assert f"{bad}:2:" in res.stderr, res.stderr


# -- shutdown edge cases ---------------------------------------------------

def test_shutdown_timeout_bounds_the_wait_for_silent_clients(wsplugd):
    # A client that never answers the 1001 close does not hold the daemon
    # past shutdown_timeout, and it still exits 0 with its summary.
    d = wsplugd(server={"shutdown_timeout": "500ms"})
    with Raw(d.port) as r:
        r.handshake()
        kind, hello = r.recv_message()
        conn = json.loads(hello)["connectionId"]
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        assert r.recv_close()[:2] == close_body(1001)
        # Say nothing back.
        rc = d.wait_exit()
        elapsed = time.monotonic() - t0
    assert rc == 0, d.log_text()
    assert 0.4 <= elapsed < 0.5 + 3 * SLOW, elapsed
    d.wait_for("daemon.stop")
    assert d.find("ws.close", conn=conn) is not None


def test_second_signal_exits_at_once(wsplugd):
    d = wsplugd(server={"shutdown_timeout": "1m"})
    with Raw(d.port) as r:
        r.handshake()
        r.recv_message()
        mark = d.mark()
        d.signal(signal.SIGTERM)
        assert r.recv_close()[:2] == close_body(1001)
        d.wait_for("daemon.shutdown", start=mark)
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.wait_exit()
        assert time.monotonic() - t0 < 3 * SLOW
    assert rc == 0, d.log_text()
    d.wait_for("daemon.stop")


def test_busy_port_fails_startup_naming_the_line(wsplugd, tmp_path):
    first = wsplugd()
    text = config(server={"listen": f"127.0.0.1:{first.port}"})
    conf = write(tmp_path, text, name="busy.conf")
    res = run_wsplugd(["-c", conf])
    assert res.returncode == 1
    out = res.stdout + res.stderr
    assert f"{conf}:{line_of(conf, 'listen =')}:" in out, out
    assert "daemon.start" not in out


def test_listens_on_every_configured_address(wsplugd):
    d = wsplugd(server={"listen": "127.0.0.1:0, [::1]:0"})
    addrs = [ev["addr"] for ev in d.find_all("listen.start")]
    assert len(addrs) == 2, addrs
    v6 = [a for a in addrs if a.startswith("[::1]:")]
    assert len(v6) == 1, addrs
    port6 = int(v6[0].rsplit(":", 1)[1])

    async def visit():
        async with ws_connect(f"ws://[::1]:{port6}/ws") as ws:
            return json.loads(await ws.recv())["connectionId"]

    conn = asyncio.run(visit())
    assert d.wait_for("ws.open", conn=conn)["ip"] == "::1"


def test_check_unknown_section_names_file_and_line(tmp_path):
    conf = write(tmp_path, config(extra="\n[surprise]\nkey = 1\n"))
    res = run_wsplugd(["-t", "-c", conf])
    assert res.returncode == 1
    assert f"{conf}:{line_of(conf, '[surprise]')}:" in res.stderr, res.stderr


def test_check_type_conflict_reports_only_true_errors(tmp_path):
    # -t prints every error, so it must print only real ones: catch_all
    # is a key the echo plugin knows, whether or not its section lost a
    # type conflict.
    echo = os.path.join(PLUGIN_DIR, "echo.so")
    conf = write(tmp_path, config(
        plugins=("echo", "echo2"),
        plugin_sections={"echo": {"catch_all": "yes"},
                         "echo2": {"path": echo, "catch_all": "yes"}}))
    res = run_wsplugd(["-t", "-c", conf])
    assert res.returncode == 1
    assert "already claimed" in res.stderr, res.stderr
    assert "unknown key" not in res.stderr, res.stderr


def test_abrupt_disconnect_is_logged_1006(wsplugd):
    # 7.1.5: a connection closed without a close frame has status 1006.
    d = wsplugd()
    with Raw(d.port) as r:
        r.handshake()
        kind, hello = r.recv_message()
    conn = json.loads(hello)["connectionId"]
    closed = d.wait_for("ws.close", conn=conn)
    assert closed["code"] == "1006"
    assert closed["active"] == "0"


def test_summary_counts_refusals(wsplugd):
    d = wsplugd()
    for path in ("/a", "/b"):
        with Raw(d.port) as r:
            r.request(path=path)
            assert r.response()[0] == 404
    with Raw(d.port) as r:
        r.request(method="PUT")
        assert r.response()[0] == 405

    async def visit():
        async with ws_connect(d.url) as ws:
            await ws.recv()

    asyncio.run(visit())
    d.wait_count("ws.refuse", 3)
    d.wait_for("ws.close")
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    stop = d.wait_for("daemon.stop")
    assert stop["refused"] == "3", stop
    assert stop["opened"] == "1" and stop["closed"] == "1", stop


def test_relative_plugin_dir_is_relative_to_the_config_file(wsplugd,
                                                           tmp_path):
    rel = os.path.relpath(os.path.abspath(PLUGIN_DIR), str(tmp_path / "d0"))
    text = config().replace(f"dir = {PLUGIN_DIR}", f"dir = {rel}")
    assert f"dir = {rel}" in text
    d = wsplugd(text=text)

    async def visit():
        async with ws_connect(d.url) as ws:
            return json.loads(await ws.recv())["type"]

    assert asyncio.run(visit()) == "connection_established"
