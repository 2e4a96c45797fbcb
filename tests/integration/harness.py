"""Run the real wsplugd for a test and watch what it logs.

A test writes the configuration it needs, starts the daemon on
127.0.0.1:0 (the kernel picks the port; the daemon logs it) and waits for
log lines, never for wall-clock sleeps.  Every wait is bounded.  On stop
the daemon must exit 0: under valgrind (WSPLUGD_WRAPPER) or an ASan build
a leak or invalid access turns into a non-zero exit and fails the test.
"""

import json
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import threading
import time

WSPLUGD = os.environ.get("WSPLUGD", "core/wsplugd")
PLUGIN_DIR = os.environ.get("WSPLUGD_PLUGIN_DIR", "plugins/.libs")
WRAPPER = shlex.split(os.environ.get("WSPLUGD_WRAPPER", ""))
# Valgrind runs the daemon some 20-50 times slower.
SLOW = 10.0 if WRAPPER else 1.0

# wss:// URLs of running TLS daemons -> the client's ssl.SSLContext
CLIENT_SSL = {}

_FIELD = re.compile(r'([A-Za-z_][\w.]*)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_logfmt(line):
    """One logfmt line to a dict; quoted values are unescaped."""
    out = {}
    for key, val in _FIELD.findall(line):
        if val.startswith('"'):
            val = bytes(val[1:-1], "utf-8").decode("unicode_escape")
            # unicode_escape decodes the bytes as latin-1; undo that.
            val = val.encode("latin-1", "backslashreplace").decode(
                "utf-8", "replace")
        out[key] = val
    return out


def parse_line(line):
    """A log line of either format to a dict of strings.  A line that
    starts like JSON but is not valid JSON gets the key "_invalid"."""
    if line.startswith("{"):
        try:
            obj = json.loads(line)
        except ValueError as e:
            return {"_invalid": str(e)}
        out = {}
        for k, v in obj.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            out[k] = v if isinstance(v, str) else json.dumps(v)
        return out
    return parse_logfmt(line)


def config(plugins=("connection_established", "ping"), server=None,
           keepalive=None, log=None, plugin_sections=None, extra="",
           admin=None):
    """An INI text for a test: loopback, port 0, debug logging.  The admin
    listener is on a kernel-picked port too (the default 127.0.0.1:9180
    would clash between daemons)."""
    server = {"listen": "127.0.0.1:0", "path": "/ws", **(server or {})}
    log = {"level": "debug", **(log or {})}
    admin = {"listen": "127.0.0.1:0", **(admin or {})}
    parts = ["[server]"] + [f"{k} = {v}" for k, v in server.items()]
    if keepalive:
        parts += ["", "[keepalive]"]
        parts += [f"{k} = {v}" for k, v in keepalive.items()]
    parts += ["", "[log]"] + [f"{k} = {v}" for k, v in log.items()]
    parts += ["", "[admin]"] + [f"{k} = {v}" for k, v in admin.items()]
    parts += ["", "[plugins]", f"dir = {PLUGIN_DIR}"]
    for name in plugins:
        parts += ["", f"[plugin:{name}]"]
        for k, v in (plugin_sections or {}).get(name, {}).items():
            parts.append(f"{k} = {v}")
    return "\n".join(parts) + "\n" + extra


class Daemon:
    def __init__(self, tmpdir, text, path=None):
        """text: the configuration to write; or path: a file the test
        writes itself (and may rewrite before a SIGHUP)."""
        if path is not None:
            self.conf = str(path)
        else:
            self.conf = os.path.join(str(tmpdir), "wsplugd.conf")
            with open(self.conf, "w") as f:
                f.write(text)
        self.lines = []
        self.raw_lines = []  # as the daemon wrote them, bytes
        self.events = []
        self.cond = threading.Condition()
        self.proc = None
        self.port = None
        self.returncode = None
        self.args = []  # before -c
        self.preexec = None  # run in the child before exec (limits)

    # -- life cycle -----------------------------------------------------

    def start(self, wait=True, prefix=()):
        """prefix: a command that execs the rest of the line (the daemon)
        in a set-up of its own, e.g. a private mount namespace."""
        self.proc = subprocess.Popen(
            list(prefix) + WRAPPER + [WSPLUGD] + self.args + ["-c", self.conf],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, preexec_fn=self.preexec)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if wait:
            ev = self.wait_for("listen.start")
            self.port = int(ev["addr"].rsplit(":", 1)[1])
            self.wait_for("daemon.start")
        return self

    def _read(self):
        for raw in self.proc.stdout:
            try:
                line = raw.decode("utf-8").rstrip("\n")
                ev = parse_line(line)
            except UnicodeDecodeError as e:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                ev = parse_line(line)
                ev["_invalid"] = str(e)
            with self.cond:
                self.raw_lines.append(raw)
                self.lines.append(line)
                self.events.append(ev)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=20):
        self.returncode = self.proc.wait(timeout=timeout * SLOW)
        self.reader.join(timeout=5)
        return self.returncode

    def stop(self):
        """SIGTERM and require a clean exit."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.wait_exit()
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("wsplugd did not exit on SIGTERM:\n" +
                                 self.log_text())
        return rc

    def log_text(self):
        with self.cond:
            return "\n".join(self.lines[-200:])

    # -- log matching ---------------------------------------------------

    def find(self, event, start=0, **fields):
        with self.cond:
            for ev in self.events[start:]:
                if ev.get("event") != event:
                    continue
                if all(ev.get(k) == str(v) for k, v in fields.items()):
                    return ev
        return None

    def find_all(self, event, **fields):
        with self.cond:
            return [ev for ev in self.events
                    if ev.get("event") == event and
                    all(ev.get(k) == str(v) for k, v in fields.items())]

    def mark(self):
        """The position from which a later wait_for should look."""
        with self.cond:
            return len(self.events)

    def wait_for(self, event, timeout=10, start=0, **fields):
        deadline = time.monotonic() + timeout * SLOW
        with self.cond:
            while True:
                for ev in self.events[start:]:
                    if ev.get("event") == event and all(
                            ev.get(k) == str(v) for k, v in fields.items()):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and
                                 not self.reader.is_alive()):
                    raise AssertionError(
                        f"no {event} {fields} in the log:\n" +
                        "\n".join(self.lines[-60:]))
                self.cond.wait(left)

    def wait_count(self, event, count, timeout=10, start=0, **fields):
        """Wait until `count` matching lines were logged; return them."""
        deadline = time.monotonic() + timeout * SLOW
        with self.cond:
            while True:
                found = [ev for ev in self.events[start:]
                         if ev.get("event") == event and all(
                             ev.get(k) == str(v) for k, v in fields.items())]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and
                                 not self.reader.is_alive()):
                    raise AssertionError(
                        f"only {len(found)} of {count} {event} {fields} "
                        "in the log:\n" + "\n".join(self.lines[-60:]))
                self.cond.wait(left)

    # A TLS test sets client_ssl (an ssl.SSLContext trusting its CA):
    # then url is wss:// and ws_connect uses that context for it.
    client_ssl = None

    @property
    def url(self):
        if self.client_ssl is None:
            return f"ws://127.0.0.1:{self.port}/ws"
        url = f"wss://127.0.0.1:{self.port}/ws"
        CLIENT_SSL[url] = self.client_ssl
        return url


def quiet_port():
    """A free port below the kernel's ephemeral range, for a test that
    stops a daemon and needs its port again (a restart), or needs
    connections to it refused: every other listener in the tests binds
    port 0 and every outgoing connection takes a port, both from that
    range, so neither can be given this one in between, and no client
    can connect to itself on it."""
    low = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0]) or low
    except (OSError, ValueError, IndexError):
        pass  # no procfs: the common default
    first = 20000
    assert low - first >= 1000, f"ephemeral ports start at {low}: no room"
    rng = random.SystemRandom()
    for _ in range(50):
        port = rng.randrange(first, low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {first}..{low - 1} in 50 tries")


def http_status(sock, timeout):
    """The status code of the HTTP response on sock, or None when the
    server closes or stays silent for timeout seconds."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    if not data.startswith(b"HTTP/1.1 "):
        return None
    return int(data.split()[1])

def run_wsplugd(args, timeout=20):
    """Run wsplugd once (-t, -V, ...) under the wrapper; the result has
    .returncode, .stdout and .stderr as text."""
    return subprocess.run(WRAPPER + [WSPLUGD] + list(args),
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout * SLOW)


def ws_connect(url, **kw):
    """websockets.connect with timeouts scaled for a wrapped daemon and no
    client-side keepalive pings (the server's keepalive is under test)."""
    import websockets
    kw.setdefault("open_timeout", 10 * SLOW)
    kw.setdefault("close_timeout", 10 * SLOW)
    kw.setdefault("ping_interval", None)
    if url in CLIENT_SSL:
        kw.setdefault("ssl", CLIENT_SSL[url])
    return websockets.connect(url, **kw)
