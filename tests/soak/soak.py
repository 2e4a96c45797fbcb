#!/usr/bin/python3
"""Soak wsplugd: churn, garbage and reloads for a while; nothing may leak.

    tests/soak/soak.py [--duration 600] [--steady 200] [--churn 40]

Starts the daemon from the build tree (WSPLUGD, WSPLUGD_PLUGIN_DIR, as in
`make check`) and, for the duration:

  - `--steady` well-behaved clients ping every 100 ms and must get every
    pong (a miss fails the run);
  - `--churn` workers open connection after connection, each doing one of:
    a few pings and a clean close, an abrupt TCP close, random garbage,
    an oversize frame (1009), invalid UTF-8 (1007), a half-sent handshake
    left to time out, a subscribe to a broadcast channel then a drop;
  - a SIGHUP every 10 s alternates two configurations (adding and removing
    plugins).

Every 2 s it samples the daemon's RSS, open descriptors and active count
(from /metrics).  It fails if RSS after the warm-up (the first fifth of
the run) grows by more than 5 %, if descriptors or the active count do
not return to their idle baseline once the clients are gone, or if a
well-behaved client ever misses a pong.  It prints the samples' summary
and exits 0 or 1.  Nothing here runs in CI: it is the reference run for
the robustness issue (10 minutes).
"""

import argparse
import asyncio
import json
import os
import random
import re
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

import websockets

WSPLUGD = os.environ.get("WSPLUGD", "core/wsplugd")
PLUGIN_DIR = os.environ.get("WSPLUGD_PLUGIN_DIR", "plugins/.libs")


def config(extra_plugin):
    plugins = ["connection_established", "ping", "broadcast"]
    if extra_plugin:
        plugins.append("echo")
    text = ("[server]\nlisten = 127.0.0.1:0\nmax_connections = 20000\n"
            "max_message_size = 64KiB\nhandshake_timeout = 2s\n"
            "[keepalive]\nping_interval = 2s\nsweep_interval = 1s\n"
            "idle_timeout = 5s\n"
            "[log]\nlevel = warn\n"
            "[admin]\nlisten = 127.0.0.1:0\n"
            f"[plugins]\ndir = {PLUGIN_DIR}\n")
    return text + "".join(f"[plugin:{p}]\n" for p in plugins)


class Daemon:
    def __init__(self, workdir):
        self.conf = os.path.join(workdir, "soak.conf")
        self.log = open(os.path.join(workdir, "soak.log"), "w+")
        self.generation = 0
        self.write_config()
        self.proc = subprocess.Popen(
            [WSPLUGD, "-c", self.conf, "-l", "info"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.port = self.admin = None
        deadline = time.monotonic() + 10
        while self.admin is None and time.monotonic() < deadline:
            time.sleep(0.05)
            self.log.seek(0)
            text = self.log.read()
            m = re.search(r"event=listen.start addr=127.0.0.1:(\d+)", text)
            a = re.search(r"event=admin.start addr=127.0.0.1:(\d+)", text)
            if m and a:
                self.port, self.admin = int(m.group(1)), int(a.group(1))
        if self.admin is None:
            raise SystemExit("wsplugd did not start")
        self.url = f"ws://127.0.0.1:{self.port}/ws"

    def write_config(self):
        with open(self.conf + ".tmp", "w") as f:
            f.write(config(self.generation % 2 == 1))
        os.replace(self.conf + ".tmp", self.conf)

    def reload(self):
        self.generation += 1
        self.write_config()
        self.proc.send_signal(signal.SIGHUP)

    def sample(self):
        pid = self.proc.pid
        with open(f"/proc/{pid}/status") as f:
            rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        with urllib.request.urlopen(
                f"http://127.0.0.1:{self.admin}/metrics", timeout=5) as r:
            text = r.read().decode()
        active = int(float(re.search(
            r"^wsplugd_connections_active (\S+)", text, re.M).group(1)))
        return rss, fds, active

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def masked(opcode, payload, fin=True, length=None):
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        hdr = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
    key = os.urandom(4)
    return hdr + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")


async def raw(port, payload, read=True):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        w.write(payload)
        await w.drain()
        if read:
            await asyncio.wait_for(r.read(65536), 5)
    except (ConnectionError, asyncio.TimeoutError):
        pass
    finally:
        w.close()


async def churn_one(d, stats):
    kind = random.choice(["clean", "abrupt", "garbage", "oversize",
                          "utf8", "half", "subscribe"])
    stats["churn"][kind] = stats["churn"].get(kind, 0) + 1
    try:
        if kind == "clean":
            async with websockets.connect(d.url, ping_interval=None) as ws:
                await ws.recv()
                for i in range(random.randint(1, 5)):
                    await ws.send(json.dumps({"type": "ping", "id": i}))
                    await ws.recv()
        elif kind == "abrupt":
            ws = await websockets.connect(d.url, ping_interval=None)
            await ws.recv()
            ws.transport.abort()
        elif kind == "garbage":
            await raw(d.port, HANDSHAKE + os.urandom(random.randint(1, 400)))
        elif kind == "oversize":
            await raw(d.port, HANDSHAKE + masked(1, b"", length=1 << 20)[:14])
        elif kind == "utf8":
            await raw(d.port, HANDSHAKE + masked(1, b"\xc3\x28"))
        elif kind == "half":
            await raw(d.port, HANDSHAKE[:30], read=True)
        elif kind == "subscribe":
            ws = await websockets.connect(d.url, ping_interval=None)
            await ws.send(json.dumps({"type": "subscribe",
                                      "channel": f"c{random.randint(1, 9)}"}))
            await ws.recv()
            ws.transport.abort()
    except (OSError, websockets.WebSocketException, asyncio.TimeoutError):
        stats["churn_errors"] += 1


async def churner(d, stop, stats):
    while not stop.is_set():
        await churn_one(d, stats)


async def steady(d, stop, stats):
    async with websockets.connect(d.url, ping_interval=None) as ws:
        await ws.recv()
        n = 0
        while not stop.is_set():
            n += 1
            await ws.send(json.dumps({"type": "ping", "id": n}))
            try:
                while True:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    if m.get("type") == "pong":
                        break
                stats["pongs"] += 1
                if m.get("id") != n:
                    stats["missed"] += 1
            except asyncio.TimeoutError:
                stats["missed"] += 1
            await asyncio.sleep(0.1)


async def run(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = tempfile.mkdtemp(prefix="wsplugd-soak.")
    d = Daemon(work)
    idle_rss, idle_fds, idle_active = d.sample()
    stats = {"pongs": 0, "missed": 0, "churn": {}, "churn_errors": 0,
             "dropped": 0}
    stop = asyncio.Event()
    samples = []

    async def guarded_steady():
        try:
            await steady(d, stop, stats)
        except websockets.ConnectionClosed:
            stats["dropped"] += 1

    tasks = [asyncio.create_task(guarded_steady())
             for _ in range(args.steady)]
    tasks += [asyncio.create_task(churner(d, stop, stats))
              for _ in range(args.churn)]
    start = time.monotonic()
    next_reload = start + 10
    while time.monotonic() - start < args.duration:
        await asyncio.sleep(2)
        rss, fds, active = d.sample()
        samples.append((time.monotonic() - start, rss, fds, active))
        print(f"t={samples[-1][0]:6.0f}s rss={rss}KiB fds={fds} "
              f"active={active} pongs={stats['pongs']} "
              f"missed={stats['missed']}", flush=True)
        if time.monotonic() >= next_reload:
            d.reload()
            next_reload += 10
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    # Idle again: wait for the daemon to settle (lingering closes, reaps).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rss, fds, active = d.sample()
        if active == idle_active and fds <= idle_fds:
            break
        await asyncio.sleep(0.5)
    end_rss, end_fds, end_active = d.sample()
    rc = d.stop()

    warm = [s for s in samples if s[0] >= args.duration / 5]
    base = warm[0][1] if warm else idle_rss
    peak = max(s[1] for s in warm) if warm else idle_rss
    failures = []
    if peak > base * 1.05:
        failures.append(f"RSS grew {100 * (peak - base) / base:.1f}% after "
                        f"warm-up ({base} -> {peak} KiB)")
    if end_fds > idle_fds:
        failures.append(f"descriptors {end_fds} > idle {idle_fds}")
    if end_active != idle_active:
        failures.append(f"active {end_active} != idle {idle_active}")
    if stats["missed"] or stats["dropped"]:
        failures.append(f"well-behaved clients: {stats['missed']} pongs "
                        f"missed, {stats['dropped']} dropped")
    if rc != 0:
        failures.append(f"wsplugd exited {rc}")
    print(f"\nidle: rss={idle_rss}KiB fds={idle_fds}; after warm-up "
          f"rss {base} -> peak {peak} KiB; end: rss={end_rss}KiB "
          f"fds={end_fds} active={end_active}")
    print(f"pongs={stats['pongs']} churn={stats['churn']} "
          f"(client-side errors {stats['churn_errors']}) "
          f"reloads={d.generation}")
    print("soak: " + ("FAILED: " + "; ".join(failures) if failures
                      else "passed") + f"  (log: {d.log.name})")
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--steady", type=int, default=200)
    ap.add_argument("--churn", type=int, default=40)
    sys.exit(asyncio.run(run(ap.parse_args())))


if __name__ == "__main__":
    main()
