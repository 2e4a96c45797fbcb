"""The bus's history in systemd's file descriptor store: a crash-restart
resumes.

Under systemd (NOTIFY_SOCKET) the daemon keeps its history in a memfd it
gives the service manager (FDSTORE=1, FDNAME=bus-history) and rewrites
it at most once a second; started again, it reads the descriptor the
manager hands back (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID).  The test
plays the manager with the real protocol on both ends: a unix datagram
socket it listens on as NOTIFY_SOCKET receives the real SCM_RIGHTS
descriptor, and a launcher execs the next daemon with that file at
descriptor 3 and the three variables set for its own pid.  The first
daemon is killed (SIGKILL: a crash, no last write).  Every wait is
bounded.
"""

import asyncio
import json
import os
import signal
import socket
import struct
import sys
import time

import pytest
import websockets

import harness
from harness import SLOW, config, run_wsplugd

LAUNCHER = """\
import os, sys
# what systemd does for a service with a stored descriptor: the file at
# 3, and the variables naming it for this very pid (exec keeps the pid)
fd = os.open(sys.argv[1], os.O_RDWR)
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.set_inheritable(3, True)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_FDNAMES"] = "bus-history"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execvp(sys.argv[2], sys.argv[2:])
"""


def built_with_libsystemd(tmp_path):
    conf = tmp_path / "journal.conf"
    conf.write_text(config(log={"target": "journal"}))
    r = run_wsplugd(["-t", "-c", str(conf)])
    return "not built with libsystemd" not in r.stdout + r.stderr


class Manager:
    """NOTIFY_SOCKET's other end: each datagram as a dict, with the
    descriptors it carried."""

    def __init__(self):
        self.name = f"wsplugd-hist-{os.getpid()}-{time.monotonic_ns()}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.fds = []

    @property
    def env(self):
        return "@" + self.name

    def wait(self, key, timeout=10):
        deadline = time.monotonic() + timeout * SLOW
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no {key} notification"
            self.sock.settimeout(left)
            data, fds, _, _ = socket.recv_fds(self.sock, 4096, 16)
            self.fds += fds
            msg = dict(line.split("=", 1)
                       for line in data.decode().splitlines())
            if key in msg:
                return msg, fds

    def close(self):
        self.sock.close()
        for fd in self.fds:
            os.close(fd)


def history_count(fd):
    """Channels and messages in the bytes the daemon wrote (its format:
    a 16-byte header, then the channels, then the messages)."""
    size = os.fstat(fd).st_size
    b = os.pread(fd, size, 0)
    if len(b) < 24 or b[:4] != b"WSBH":
        return None
    off = 16
    nchans = struct.unpack_from("<I", b, off)[0]
    off += 4
    for _ in range(nchans):
        off += 1 + b[off] + 16 + 8
    return nchans, struct.unpack_from("<I", b, off)[0]


def bus_text():
    return config(plugins=("connection_established", "broadcast"),
                  log={"level": "info"},
                  extra="\n[bus]\nbackend = local\n")


async def recv(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), 10 * SLOW))


async def connect(url):
    ws = await websockets.connect(url, open_timeout=10 * SLOW,
                                  close_timeout=5 * SLOW,
                                  ping_interval=None)
    return ws


async def publish(ws, channel, k):
    await ws.send(json.dumps({"type": "publish", "channel": channel,
                              "data": k, "id": k}))
    r = await recv(ws)
    assert r["type"] == "published", r
    return r


@pytest.fixture
def manager(tmp_path, monkeypatch):
    if not built_with_libsystemd(tmp_path):
        pytest.skip("built without libsystemd: no fd store")
    m = Manager()
    monkeypatch.setenv("NOTIFY_SOCKET", m.env)
    for k in ("LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID",
              "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(k, raising=False)
    yield m
    m.close()


def launcher(tmp_path, fd):
    path = tmp_path / "launch.py"
    path.write_text(LAUNCHER)
    return [sys.executable, str(path), f"/proc/{os.getpid()}/fd/{fd}"]


def test_crash_restart_resumes_from_the_fd_store(wsplugd, manager, tmp_path):
    (tmp_path / "first").mkdir()
    first = harness.Daemon(tmp_path / "first", bus_text())
    first.start()
    try:
        manager.wait("FDSTOREREMOVE")
        msg, fds = manager.wait("FDSTORE")
        assert msg["FDNAME"] == "bus-history" and len(fds) == 1, msg
        fd = fds[0]

        async def before():
            sub = await connect(first.url)
            pub = await connect(first.url)
            for ws in (sub, pub):
                await recv(ws)
            await sub.send(json.dumps({"type": "subscribe",
                                       "channel": "feed"}))
            assert (await recv(sub))["type"] == "subscribed"
            for k in range(2):
                await publish(pub, "feed", k)
            seen = [await recv(sub) for _ in range(2)]
            await sub.close()
            for k in range(2, 5):  # missed by the one that left
                await publish(pub, "feed", k)
            await pub.close()
            return seen[-1]

        last = asyncio.run(before())
        # the memfd is the manager's copy too: rewritten within a second
        deadline = time.monotonic() + 5 * SLOW
        while history_count(fd) != (1, 5):
            assert time.monotonic() < deadline, history_count(fd)
            time.sleep(0.05)
    finally:
        first.proc.send_signal(signal.SIGKILL)  # a crash: no last write
        first.proc.wait(timeout=10 * SLOW)

    d = wsplugd(text=bus_text(), prefix=launcher(tmp_path, fd))
    ev = d.wait_for("history.restore")
    assert ev.get("channels") == "1", ev
    # the new process stores a memfd of its own, the old one removed
    manager.wait("FDSTOREREMOVE")
    msg, fds2 = manager.wait("FDSTORE")
    assert msg["FDNAME"] == "bus-history" and len(fds2) == 1

    async def after():
        ws = await connect(d.url)
        await recv(ws)
        await ws.send(json.dumps({"type": "subscribe", "channel": "feed",
                                  "since": {"offset": last["offset"],
                                            "epoch": last["epoch"]}}))
        missed = [await recv(ws) for _ in range(3)]
        assert [m["type"] for m in missed] == ["message"] * 3, missed
        assert [m["offset"] for m in missed] == [3, 4, 5]
        assert [m["data"] for m in missed] == [2, 3, 4]
        r = await recv(ws)
        assert r["type"] == "subscribed", r
        assert r["recovered"] is True and r["offset"] == 5, r
        # offsets continue: the message (to itself, a subscriber) and
        # the acknowledgement, in whichever order
        await ws.send(json.dumps({"type": "publish", "channel": "feed",
                                  "data": 5, "id": 5}))
        got = {m["type"]: m for m in [await recv(ws), await recv(ws)]}
        assert got["published"]["offset"] == 6, got
        assert got["message"]["offset"] == 6, got
        assert got["message"]["epoch"] == last["epoch"], got
        await ws.close()

    asyncio.run(after())


@pytest.mark.parametrize("what", ["garbage", "truncated", "empty"])
def test_a_bad_history_is_logged_and_ignored(wsplugd, manager, tmp_path,
                                             what):
    fd = os.memfd_create("test-bus-history")
    try:
        if what == "garbage":
            os.write(fd, b"WSBH" + os.urandom(200))
        elif what == "truncated":
            # a good header and a body cut short, as a crash mid-write
            body = struct.pack("<I", 1) + bytes([4]) + b"feed" + \
                b"0123456789abcdef" + struct.pack("<Q", 3)
            head = b"WSBH" + struct.pack("<HHI", 1, 0, len(body) + 40)
            os.write(fd, head + struct.pack("<I", 0) + body)
        d = wsplugd(text=bus_text(), prefix=launcher(tmp_path, fd))
        ev = d.wait_for("history.restore")
        assert ev["level"] == "warn" and "ignored" in ev["msg"], ev

        async def still_serves():
            ws = await connect(d.url)
            await recv(ws)
            await ws.send(json.dumps({"type": "subscribe",
                                      "channel": "feed",
                                      "since": {"offset": 1,
                                                "epoch": "0123456789abcdef"}}))
            r = await recv(ws)
            assert r["type"] == "subscribed" and r["recovered"] is False
            await ws.close()

        asyncio.run(still_serves())
    finally:
        os.close(fd)
