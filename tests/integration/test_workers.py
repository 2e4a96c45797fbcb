"""[server] workers > 1: a master and worker processes.

The daemon runs with 2 and 4 workers (on whatever cores the machine has).
Which worker took a connection is asked of the test plugin `worker`
(tests/plugins/worker.c), which answers with its process and its
WSPLUGD_WORKER number, and is checked against the worker= field of the
connection's ws.open line.  Every wait is on a log line or a reply, each
bounded.
"""

import asyncio
import json
import os
import resource
import signal
import ssl
import time

import pytest
import websockets

from harness import PLUGIN_DIR, SLOW, Daemon, config, run_wsplugd

TEST_PLUGINS = os.environ.get("WSPLUGD_TEST_PLUGIN_DIR",
                              "tests/plugins/.libs")
WORKER_SO = os.path.join(TEST_PLUGINS, "worker.so")


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def workers_config(n, server=None, worker_keys=None, plugins=("ping",)):
    sections = {"worker": {"path": WORKER_SO, **(worker_keys or {})}}
    return config(plugins=tuple(plugins) + ("worker",),
                  server={"workers": n, **(server or {})},
                  log={"level": "info"}, plugin_sections=sections)


def start(wsplugd, n, **kw):
    d = wsplugd(text=workers_config(n, **kw))
    d.wait_for("master.ready", timeout=30)
    return d


async def whoami(ws):
    await ws.send(json.dumps({"type": "whoami"}))
    while True:
        r = json.loads(await ws.recv())
        if r.get("type") == "whoami":
            return r


async def connect(d):
    ws = await websockets.connect(d.url, open_timeout=30 * SLOW,
                                  close_timeout=10 * SLOW, ping_interval=None)
    r = await whoami(ws)
    return ws, int(r["worker"] or 0), r["pid"]


def run(coro, timeout=120):
    return asyncio.run(asyncio.wait_for(coro, timeout=timeout * SLOW))


@pytest.mark.parametrize("n", [2, 4])
def test_clients_spread_over_workers(wsplugd, n):
    raise_nofile()
    d = start(wsplugd, n)
    clients = 50 * n

    async def main():
        conns = [await connect(d) for _ in range(clients)]
        for ws, _, _ in conns:
            await ws.close()
        return conns

    conns = run(main())
    per = {}
    for _, w, pid in conns:
        per.setdefault(w, set()).add(pid)
    assert sorted(per) == list(range(1, n + 1)), per
    # one process per worker number, and no worker starved
    assert all(len(p) == 1 for p in per.values()), per
    counts = {w: sum(1 for c in conns if c[1] == w) for w in per}
    assert min(counts.values()) >= clients / n / 3, counts
    # the ws.open lines agree: each carries the worker that answered
    opens = d.wait_count("ws.open", clients)
    assert sorted(int(e["worker"]) for e in opens) == \
        sorted(w for _, w, _ in conns)
    pids = {int(e["pid"]) for e in d.find_all("worker.start")}
    assert pids == {p for s in per.values() for p in s}


def test_one_worker_is_todays_single_process(wsplugd):
    d = wsplugd(text=workers_config(1))

    async def main():
        ws, w, pid = await connect(d)
        await ws.close()
        return w, pid

    w, pid = run(main())
    assert pid == d.proc.pid  # no master: the daemon itself serves
    assert w == 0  # WSPLUGD_WORKER unset
    assert not d.find_all("master.start")
    assert "worker" not in d.wait_for("ws.open")


@pytest.mark.parametrize("value,msg", [
    ("0", "workers: 0 is out of range (auto, or 1..256)"),
    ("257", "workers: 257 is out of range (auto, or 1..256)"),
    ("two", "workers: invalid number 'two' (expected an integer, auto, "
     "or 1..256)"),
])
def test_bad_workers_value_names_file_and_line(tmp_path, value, msg):
    conf = tmp_path / "w.conf"
    conf.write_text(f"[server]\nlisten = 127.0.0.1:0\nworkers = {value}\n")
    r = run_wsplugd(["-t", "-c", str(conf)])
    assert r.returncode == 1
    assert f"{conf}:3: [server] {msg}" in r.stderr, r.stderr


def test_workers_auto_is_accepted(tmp_path):
    conf = tmp_path / "w.conf"
    conf.write_text("[server]\nlisten = 127.0.0.1:0\nworkers = auto\n"
                    "worker_watchdog = 0\n"
                    f"[plugins]\ndir = {PLUGIN_DIR}\n")
    r = run_wsplugd(["-t", "-c", str(conf)])
    assert r.returncode == 0, r.stderr


def test_worker_failing_to_start_stops_the_daemon(tmp_path):
    d = Daemon(tmp_path, workers_config(
        2, worker_keys={"fail_in_worker": 2})).start(wait=False)
    ev = d.wait_for("config.error", timeout=30)
    assert ev["worker"] == "2"
    assert "fail_in_worker: refusing to load in worker 2" in ev["msg"]
    assert d.wait_exit(30) == 1
    d.wait_for("worker.exit", worker=2, status=1)


async def pinging(ws, stop, stats):
    """Ping until stop; count answers, or the close that ended it."""
    n = 0
    try:
        while not stop.is_set():
            n += 1
            await ws.send(json.dumps({"type": "ping", "id": n}))
            while True:
                r = json.loads(await ws.recv())
                if r.get("type") == "pong":
                    break
            assert r["id"] == n
            stats["answered"] += 1
            await asyncio.sleep(0.01)
    except websockets.ConnectionClosed:
        stats["closed"] += 1


def crash_under_load(d, victim_worker, how):
    """Clients on every worker ping; the victim worker dies (how: a crash
    inside the plugin, or kill -SEGV from outside).  Returns the victim's
    old pid, the per-group stats and the new pid that serves."""
    async def main():
        conns = []
        while len({w for _, w, _ in conns}) < 2 or len(conns) < 40:
            conns.append(await connect(d))
            assert len(conns) < 400, "connections never spread"
        victims = [c for c in conns if c[1] == victim_worker]
        others = [c for c in conns if c[1] != victim_worker]
        old_pid = victims[0][2]
        stop = asyncio.Event()
        vstats = {"answered": 0, "closed": 0}
        ostats = {"answered": 0, "closed": 0}
        tasks = [asyncio.create_task(pinging(ws, stop, vstats))
                 for ws, _, _ in victims[1:]]
        tasks += [asyncio.create_task(pinging(ws, stop, ostats))
                  for ws, _, _ in others]
        await asyncio.sleep(0.3)
        mark = d.mark()
        if how == "crash":
            await victims[0][0].send(json.dumps({"type": "crash"}))
        else:
            os.kill(old_pid, signal.SIGSEGV)
        loop = asyncio.get_running_loop()
        ex = await loop.run_in_executor(None, lambda: d.wait_for(
            "worker.exit", start=mark, worker=victim_worker))
        t_exit = time.monotonic()
        # a new worker serves: new connections reach it within 1 s
        new_pid = None
        spare = []
        while new_pid is None:
            ws, w, pid = await connect(d)
            spare.append(ws)
            if w == victim_worker:
                assert pid != old_pid
                new_pid = pid
            assert time.monotonic() - t_exit < 1.0 * SLOW + 0.5, \
                "no new worker within 1 s"
        served_after = time.monotonic() - t_exit
        answered_before = ostats["answered"]
        await asyncio.sleep(0.5)
        assert ostats["answered"] > answered_before  # still pinging
        stop.set()
        await asyncio.gather(*tasks)
        for ws, _, _ in others:
            await ws.close()
        for ws in spare:
            await ws.close()
        return ex, old_pid, new_pid, vstats, ostats, served_after

    return run(main())


def test_plugin_crash_names_plugin_and_callback(wsplugd):
    raise_nofile()
    d = start(wsplugd, 2)
    ex, old_pid, new_pid, vstats, ostats, after = crash_under_load(
        d, 1, "crash")
    assert ex["pid"] == str(old_pid)
    # SIGSEGV; under ASan its report ends the process with status 1
    assert ex.get("signal") == "SEGV" or ex.get("status") not in (None, "0")
    assert ex["plugin"] == "worker" and ex["callback"] == "message", ex
    assert ex["respawn_ms"] == "0"
    assert ex["level"] == "warn"
    assert vstats["closed"] >= 1 and ostats["closed"] == 0, (vstats, ostats)
    d.wait_for("worker.ready", worker=1, pid=new_pid)
    print(f"plugin crash: new worker served {after:.3f} s after the exit")


@pytest.mark.parametrize("n", [2, 4])
def test_kill_segv_loses_only_that_workers_connections(wsplugd, n):
    raise_nofile()
    d = start(wsplugd, n)
    ex, old_pid, new_pid, vstats, ostats, after = crash_under_load(
        d, 2, "kill")
    assert ex.get("signal") == "SEGV" or ex.get("status") not in (None, "0")
    assert vstats["closed"] >= 1 and ostats["closed"] == 0, (vstats, ostats)
    # every connection of the dead worker ended, none of the others'
    assert d.wait_for("worker.start", worker=2, pid=new_pid)
    print(f"kill -SEGV: new worker served {after:.3f} s after the exit")


def test_stalled_worker_is_killed_by_the_watchdog(wsplugd):
    # Under valgrind on a busy machine a healthy loop can miss 500 ms.
    watchdog = int(500 * SLOW)
    d = start(wsplugd, 2, server={"worker_watchdog": f"{watchdog}ms"})

    async def main():
        conns = []
        while not any(w == 2 for _, w, _ in conns):
            conns.append(await connect(d))
            assert len(conns) < 200
        ws, _, pid = next(c for c in conns if c[1] == 2)
        mark = d.mark()
        await ws.send(json.dumps({"type": "hang"}))
        loop = asyncio.get_running_loop()
        wd = await loop.run_in_executor(None, lambda: d.wait_for(
            "worker.watchdog", start=mark, worker=2, pid=pid))
        ex = await loop.run_in_executor(None, lambda: d.wait_for(
            "worker.exit", start=mark, worker=2, pid=pid))
        for c in conns:
            await c[0].close()
        return wd, ex

    wd, ex = run(main())
    assert int(wd["ms"]) >= watchdog
    assert ex["signal"] == "KILL"
    assert ex["plugin"] == "worker" and ex["callback"] == "message", ex
    d.wait_count("worker.ready", 3)


def test_sigterm_drains_every_worker_and_master_exits_0(wsplugd):
    d = start(wsplugd, 4)

    async def main():
        conns = []
        while len({w for _, w, _ in conns}) < 4 or len(conns) < 20:
            conns.append(await connect(d))
            assert len(conns) < 400
        d.signal(signal.SIGTERM)
        codes = []
        for ws, _, _ in conns:
            try:
                await asyncio.wait_for(ws.recv(), 10 * SLOW)
            except websockets.ConnectionClosed:
                pass
            codes.append(ws.close_code)
        return conns, codes

    conns, codes = run(main())
    assert codes == [1001] * len(conns), codes
    assert d.wait_exit(30) == 0
    stops = d.find_all("daemon.stop")
    assert sorted(e.get("worker", "master") for e in stops) == \
        ["1", "2", "3", "4", "master"]
    assert d.lines[-1].find("every worker has stopped") != -1


async def refused(d, local="127.0.0.1"):
    """Try to connect: the HTTP status of a refusal, or None if it opened
    (then it is closed again)."""
    try:
        ws = await websockets.connect(d.url, open_timeout=30 * SLOW,
                                      ping_interval=None,
                                      local_addr=(local, 0))
    except websockets.exceptions.InvalidStatusCode as e:
        return e.status_code
    await ws.close()
    return None


async def connect_from(d, local):
    ws = await websockets.connect(d.url, open_timeout=30 * SLOW,
                                  ping_interval=None, local_addr=(local, 0))
    r = await whoami(ws)
    return ws, int(r["worker"]), r["pid"]


@pytest.mark.parametrize("n", [2, 4])
def test_per_ip_limit_is_global_across_workers(wsplugd, n):
    d = start(wsplugd, n, server={"max_connections_per_ip": 20})

    async def main():
        conns = [await connect_from(d, "127.0.0.1") for _ in range(20)]
        mark = d.mark()
        statuses = []
        # until refusals came from two workers (the kernel's pick)
        while len(statuses) < 60 and (len(statuses) < 4 * n or len({
                e["worker"] for e in d.find_all(
                    "ws.refuse", reason="max_connections_per_ip")}) < 2):
            statuses.append(await refused(d))
        other = await connect_from(d, "127.0.0.2")  # its own count
        # a place given back is a place for the next one, any worker: it
        # is given back when the worker closes the socket, which may be
        # a moment after the close handshake (when the worker reads the
        # client's FIN, or its linger of about 1 s ends)
        await conns.pop()[0].close()
        d.wait_for("ws.close", start=mark)
        deadline = time.monotonic() + 5 * SLOW
        while True:
            try:
                conns.append(await connect_from(d, "127.0.0.1"))
                break
            except websockets.exceptions.InvalidStatusCode as e:
                statuses.append(e.status_code)
            assert time.monotonic() < deadline, "the place was not freed"
            await asyncio.sleep(0.05)
        after = await refused(d)
        for ws, _, _ in conns + [other]:
            await ws.close()
        return conns, statuses, mark, after

    conns, statuses, mark, after = run(main())
    assert len({w for _, w, _ in conns}) >= 2  # the 20 were spread
    assert statuses == [503] * len(statuses), statuses
    assert after == 503
    refusals = d.wait_count("ws.refuse", len(statuses) + 1,
                            reason="max_connections_per_ip")
    assert len(refusals) == len(statuses) + 1
    # refused by whichever worker the kernel picked, not only one
    assert len({e["worker"] for e in refusals}) >= 2, refusals


def test_max_connections_is_global_across_workers(wsplugd):
    d = start(wsplugd, 4, server={"max_connections": 30})

    async def main():
        conns = []
        for i in range(30):
            conns.append(await connect_from(d, f"127.0.0.{1 + i % 3}"))
        statuses = []
        while len(statuses) < 60 and (len(statuses) < 12 or len({
                e["worker"] for e in d.find_all(
                    "ws.refuse", reason="max_connections")}) < 2):
            statuses.append(await refused(d, f"127.0.0.{4 + len(statuses) % 3}"))
        for ws, _, _ in conns:
            await ws.close()
        return conns, statuses

    conns, statuses = run(main())
    assert len({w for _, w, _ in conns}) >= 2
    assert statuses == [503] * len(statuses), statuses
    refusals = d.wait_count("ws.refuse", len(statuses),
                            reason="max_connections")
    assert len(refusals) == len(statuses)
    assert len({e["worker"] for e in refusals}) >= 2, refusals


def test_dead_workers_places_are_given_back(wsplugd):
    d = start(wsplugd, 2, server={"max_connections_per_ip": 20})

    async def main():
        conns = [await connect_from(d, "127.0.0.1") for _ in range(20)]
        lost = [c for c in conns if c[1] == 1]
        assert lost and len(lost) < 20
        mark = d.mark()
        os.kill(lost[0][2], signal.SIGSEGV)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: d.wait_for(
            "worker.ready", start=mark, worker=1))
        # exactly as many places as the dead worker held are free again
        fresh = [await connect_from(d, "127.0.0.1") for _ in lost]
        over = await refused(d)
        for ws, _, _ in conns + fresh:
            await ws.close()
        return over

    assert run(main()) == 503


def write_conf(path, n, extra_plugins=(), worker_keys=None, server=None):
    path.write_text(config(
        plugins=("ping",) + tuple(extra_plugins) + ("worker",),
        server={"workers": n, **(server or {})}, log={"level": "info"},
        plugin_sections={"worker": {"path": WORKER_SO,
                                    **(worker_keys or {})},
                         "echo": {}}))


def hup(d, n, expect):
    """SIGHUP the master; the master's own reload line (workers=n)."""
    mark = d.mark()
    d.signal(signal.SIGHUP)
    return d.wait_for("reload", start=mark, workers=n, result=expect,
                      timeout=60)


async def ask(ws, msg):
    await ws.send(json.dumps(msg))
    while True:
        r = json.loads(await ws.recv())
        if r.get("type") in ("echo", "error"):
            return r


@pytest.mark.parametrize("n", [2, 4])
def test_sighup_under_load_all_or_nothing(wsplugd, tmp_path, n):
    raise_nofile()
    conf = tmp_path / "live.conf"
    write_conf(conf, n)
    d = wsplugd(path=conf)
    d.wait_for("master.ready", timeout=30)
    reloads = 20

    async def main():
        conns = []
        while len({w for _, w, _ in conns}) < n or len(conns) < 40:
            conns.append(await connect(d))
            assert len(conns) < 400
        # one probe per worker sees what that worker runs
        probes = {}
        for ws, w, _ in conns:
            probes.setdefault(w, ws)
        pingers = [ws for ws, _, _ in conns if ws not in probes.values()]
        stop = asyncio.Event()
        stats = {"answered": 0, "closed": 0}
        tasks = [asyncio.create_task(pinging(ws, stop, stats))
                 for ws in pingers]
        loop = asyncio.get_running_loop()
        for i in range(reloads):
            echo = i % 2 == 0
            write_conf(conf, n, extra_plugins=("echo",) if echo else ())
            await loop.run_in_executor(None, hup, d, n, "ok")
            for w, ws in sorted(probes.items()):
                r = await ask(ws, {"type": "echo", "i": i})
                assert (r["type"] == "echo") == echo, (i, w, r)
        # now one that only worker 2 fails to prepare: nothing changes
        mark = d.mark()
        write_conf(conf, n, extra_plugins=("echo",), worker_keys={
            "fail_in_worker": 2})
        ev = await loop.run_in_executor(None, hup, d, n, "failed")
        for w, ws in sorted(probes.items()):
            r = await ask(ws, {"type": "echo", "i": "after"})
            assert r["type"] == "error", (w, r)  # echo still not loaded
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*tasks)
        for ws, _, _ in conns:
            await ws.close()
        return stats, ev, mark

    stats, ev, mark = run(main(), timeout=240)
    assert stats["closed"] == 0, stats  # 0 drops
    assert stats["answered"] > 0
    assert ev["failed_in"] == "worker 2", ev
    err = d.wait_for("config.error", start=mark, worker=2)
    assert f"{conf}:" in err["msg"] and \
        "fail_in_worker: refusing to load in worker 2" in err["msg"], err
    aborted = d.wait_count("reload", n - 1, start=mark, result="aborted")
    assert sorted(e["worker"] for e in aborted) == \
        [str(i) for i in range(1, n + 1) if i != 2]
    assert len(d.find_all("reload", result="ok", workers=n)) == reloads


def test_reload_refuses_to_change_workers_or_addresses(wsplugd, tmp_path):
    conf = tmp_path / "live.conf"
    write_conf(conf, 2)
    d = wsplugd(path=conf)
    d.wait_for("master.ready", timeout=30)
    write_conf(conf, 3)
    mark = d.mark()
    hup(d, 2, "failed")
    err = d.wait_for("config.error", start=mark)
    assert err["msg"].startswith(f"{conf}:")
    assert "workers: 3, but 2 are running" in err["msg"], err
    assert not d.find_all("reload", result="aborted")  # no worker asked
    write_conf(conf, 2, server={"listen": "127.0.0.1:1"})
    mark = d.mark()
    hup(d, 2, "failed")
    err = d.wait_for("config.error", start=mark)
    assert "listen: with workers > 1 a reload does not change" in err["msg"]
    # and the daemon still serves as before, on every worker
    write_conf(conf, 2)
    hup(d, 2, "ok")


def metrics_until(d, pred, timeout=10):
    """Scrape /metrics (worker 1 serves it) until pred(samples) holds:
    workers publish their counts with each 100 ms heartbeat."""
    from test_admin import scrape
    deadline = time.monotonic() + timeout * SLOW
    while True:
        samples, _ = scrape(d)
        if pred(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def one(samples, name, **labels):
    return samples[name][tuple(sorted(labels.items()))]


@pytest.mark.parametrize("n", [2, 4])
def test_metrics_and_healthz_sum_the_workers(wsplugd, n):
    from test_admin import request
    d = start(wsplugd, n)

    async def main():
        loop = asyncio.get_running_loop()

        def off(fn, *a):
            return loop.run_in_executor(None, fn, *a)

        conns = []
        while len({w for _, w, _ in conns}) < n or len(conns) < 8 * n:
            conns.append(await connect(d))
            assert len(conns) < 400
        total = len(conns)
        # Both counts come with a worker's heartbeat, and one can come
        # between a connection's open and its message (under valgrind a
        # scrape saw 32 connections and 31 messages): wait for both.
        s = await off(metrics_until, d, lambda s: one(
            s, "wsplugd_connections_active") == total and one(
            s, "wsplugd_messages_received_total") >= total)
        assert one(s, "wsplugd_connections_active") == total
        assert one(s, "wsplugd_workers") == n
        assert one(s, "wsplugd_workers_alive") == n
        assert one(s, "wsplugd_messages_received_total") >= total
        status, _, body = await off(request, d, "/healthz")
        assert status == 200
        assert body.strip() == f"ok: {n} of {n} workers alive".encode()
        before = one(s, "wsplugd_messages_received_total")
        # a worker that dies: its counters stay in the sums, its gauges go
        victim = next(c for c in conns if c[1] == 2)
        on_victim = sum(1 for c in conns if c[1] == 2)
        mark = d.mark()
        os.kill(victim[2], signal.SIGKILL)
        await off(lambda: d.wait_for("worker.ready", start=mark, worker=2))
        s = await off(metrics_until, d, lambda s: one(
            s, "wsplugd_connections_active") == total - on_victim and one(
            s, "wsplugd_workers_alive") == n)
        assert one(s, "wsplugd_connections_active") == total - on_victim
        assert one(s, "wsplugd_workers_alive") == n
        assert one(s, "wsplugd_messages_received_total") >= before
        for ws, _, _ in conns:
            await ws.close()

    run(main())


def test_master_alone_notifies_systemd_with_the_total(tmp_path, monkeypatch):
    from test_admin import Notifications, built_with_libsystemd
    if not built_with_libsystemd(tmp_path):
        pytest.skip("built without libsystemd: no sd_notify")
    n = Notifications()
    monkeypatch.setenv("NOTIFY_SOCKET", n.env)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    d = Daemon(tmp_path, workers_config(2))
    try:
        d.start(wait=False)
        d.wait_for("master.ready", timeout=30)
        d.port = int(d.wait_for("listen.start")["addr"].rsplit(":", 1)[1])
        assert n.wait("READY") == {"READY": "1",
                                   "STATUS": "0 active connections"}

        async def main():
            conns = []
            while len({w for _, w, _ in conns}) < 2 or len(conns) < 6:
                conns.append(await connect(d))
                assert len(conns) < 200
            loop = asyncio.get_running_loop()
            want = f"{len(conns)} active connections"
            deadline = time.monotonic() + 10 * SLOW
            while True:
                m = await loop.run_in_executor(None, n.wait, "STATUS")
                if m["STATUS"] == want or time.monotonic() > deadline:
                    break
            for ws, _, _ in conns:
                await ws.close()
            return m["STATUS"], want

        got, want = run(main())
        assert got == want  # the sum over both workers
        d.signal(signal.SIGTERM)
        assert n.wait("STOPPING")["STOPPING"] == "1"
        assert d.wait_exit(30) == 0
        # READY came from the master alone: workers run without
        # NOTIFY_SOCKET, so no second READY ever arrives
        assert not any("READY" in m for m in n.collect(0.2))
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
        n.close()


def test_tls_deflate_and_limits_across_workers(wsplugd, tmp_path):
    """wss:// with permessage-deflate on workers = 2: the per-address limit
    is the daemon's at accept (no TLS handshake past it) and each admitted
    connection takes one place, not two; every refusal gives back the
    max_connections place it took; /metrics sums the TLS and deflate
    figures of both workers."""
    from tlspki import PKI
    pki = PKI(tmp_path / "pki")
    d = wsplugd(text=config(
        plugins=("ping", "worker"),
        server={"workers": 2, "listen": "127.0.0.1:0 tls",
                "max_connections_per_ip": 6, "max_connections": 8},
        log={"level": "info"},
        plugin_sections={"worker": {"path": WORKER_SO}},
        extra=pki.tls_section()))
    d.wait_for("master.ready", timeout=30)
    d.client_ssl = pki.client_context()

    async def open_one():
        ws = await websockets.connect(d.url, ssl=d.client_ssl,
                                      open_timeout=30 * SLOW,
                                      ping_interval=None)
        r = await whoami(ws)
        return ws, int(r["worker"]), r["pid"]

    async def main():
        conns = [await open_one() for _ in range(6)]
        mark = d.mark()
        refusals = 0
        # until refusals came from both workers (the kernel's pick)
        while refusals < 40 and (refusals < 8 or len({
                e["worker"] for e in d.find_all(
                    "ws.refuse", reason="max_connections_per_ip")}) < 2):
            with pytest.raises((ssl.SSLError, ConnectionError, OSError,
                                asyncio.TimeoutError)):
                await open_one()
            refusals += 1
        # a place given back is a place for the next one, any worker,
        # once the worker has closed the socket (see above)
        await conns.pop()[0].close()
        d.wait_for("ws.close", start=mark)
        deadline = time.monotonic() + 5 * SLOW
        while True:
            try:
                conns.append(await open_one())
                break
            except (ssl.SSLError, ConnectionError, OSError,
                    asyncio.TimeoutError):
                refusals += 1
            assert time.monotonic() < deadline, "the place was not freed"
            await asyncio.sleep(0.05)
        s = await asyncio.get_running_loop().run_in_executor(
            None, metrics_until, d, lambda s: one(
                s, "wsplugd_tls_handshakes_total") == 7 and one(
                s, "wsplugd_deflate_connections") == 6 and one(
                s, "wsplugd_handshakes_refused_total",
                reason="max_connections_per_ip") == refusals)
        for ws, _, _ in conns:
            await ws.close()
        return refusals, s, mark

    refusals, s, mark = run(main())
    found = d.wait_count("ws.refuse", refusals,
                         reason="max_connections_per_ip", start=mark)
    assert len({e["worker"] for e in found}) == 2, found
    assert one(s, "wsplugd_tls_handshakes_total") == 7
    assert one(s, "wsplugd_tls_handshakes_failed_total",
               reason="protocol") == 0
    assert one(s, "wsplugd_handshakes_refused_total",
               reason="max_connections_per_ip") == refusals
    assert one(s, "wsplugd_handshakes_refused_total",
               reason="max_connections") == 0
    assert one(s, "wsplugd_deflate_connections") == 6
    assert one(s, "wsplugd_connections_active") == 6


def worker_pids(d, n):
    """The pid of each worker now serving, by number."""
    pids = {}
    for e in d.find_all("worker.start"):
        pids[int(e["worker"])] = int(e["pid"])
    assert sorted(pids) == list(range(1, n + 1)), pids
    return pids


def timed(fn, *a):
    t = time.monotonic()
    r = fn(*a)
    return r, time.monotonic() - t


def healthz_until(d, port, want, timeout=10):
    from test_admin import request
    deadline = time.monotonic() + timeout * SLOW
    while True:
        status, _, body = request(d, "/healthz", port=port)
        if status == 200 and body.decode().strip() == want:
            return
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


@pytest.mark.parametrize("n", [2, 4])
def test_connections_lists_every_workers_connections(wsplugd, n):
    from test_admin import admin_port, request
    d = start(wsplugd, n)
    port = admin_port(d)

    def get(query=""):
        status, headers, body = request(d, "/connections" + query, port=port)
        assert status == 200 and headers["content-type"] == \
            "application/json"
        return json.loads(body)

    async def main():
        loop = asyncio.get_running_loop()

        def off(fn, *a):
            return loop.run_in_executor(None, fn, *a)

        conns = []
        while len({w for _, w, _ in conns}) < n or len(conns) < 6 * n:
            conns.append(await connect(d))
            assert len(conns) < 400
        # the client's port is the connection's: which worker holds it
        by_port = {ws.local_address[1]: w for ws, w, _ in conns}
        doc, took = await off(timed, get, "?limit=10000")
        assert doc["active"] == len(conns) and doc["workers"] == n
        assert doc["missing"] == [] and doc["truncated"] is False
        listed = doc["connections"]
        assert {c["port"]: c["worker"] for c in listed} == by_port
        assert list(listed[0])[0] == "worker"
        stamps = [c["connected_at_ms"] for c in listed]
        assert stamps == sorted(stamps)  # oldest first, across workers
        print(f"/connections, {n} workers, {len(listed)} entries: "
              f"{took * 1000:.1f} ms")
        # at most limit, the oldest of every worker's
        few = await off(get, "?limit=3")
        assert few["active"] == len(conns) and few["truncated"] is True
        assert [c["connected_at_ms"] for c in few["connections"]] == \
            stamps[:3]

        # a stopped worker: the answer comes within a second or so,
        # naming it missing, with every other worker's connections
        victim = worker_pids(d, n)[2]
        os.kill(victim, signal.SIGSTOP)
        try:
            doc, took = await off(timed, get, "?limit=10000")
            # a client that leaves while the workers are asked: the
            # daemon forgets its request (and serves the next one)
            raw = await asyncio.open_connection("127.0.0.1", port)
            raw[1].write(b"GET /connections HTTP/1.1\r\nHost: 127.0.0.1:"
                         + str(port).encode() + b"\r\n\r\n")
            await raw[1].drain()
            raw[1].close()
            # past 2 s without a turn of its loop it is not alive
            await off(healthz_until, d, port, f"ok: {n - 1} of {n} "
                      "workers alive")
        finally:
            os.kill(victim, signal.SIGCONT)
        await off(healthz_until, d, port, f"ok: {n} of {n} workers alive")
        assert 0.9 <= took < 1.0 * SLOW + 2, took
        assert doc["missing"] == [2] and doc["truncated"] is True
        assert {c["worker"] for c in doc["connections"]} == \
            set(range(1, n + 1)) - {2}
        assert doc["active"] == sum(1 for w in by_port.values() if w != 2)
        print(f"/connections with worker 2 stopped: {took * 1000:.0f} ms")
        await asyncio.sleep(1.2 * SLOW)  # its late answer is dropped
        doc = await off(get, "?limit=10000")
        assert doc["missing"] == [] and doc["active"] == len(conns)
        # worker 1 dies: its replacement serves the admin listener and
        # lists everyone's that are left
        mark = d.mark()
        os.kill(worker_pids(d, n)[1], signal.SIGKILL)
        await off(lambda: d.wait_for("worker.ready", start=mark, worker=1))
        doc = await off(get, "?limit=10000")
        assert doc["missing"] == []
        assert {c["port"] for c in doc["connections"]} == \
            {p for p, w in by_port.items() if w != 1}
        for ws, _, _ in conns:
            await ws.close()

    run(main())
    assert not d.find_all("daemon.error")


def test_worker_that_stops_reading_the_bus_is_replaced(wsplugd):
    """A stopped worker: the master holds at most its bus budget for it
    (64 MiB; history_memory is 0 here), logs worker.backlog, replaces it,
    and every other subscriber keeps receiving, in order."""
    from test_admin import vm_kib
    from test_bus import connect as bus_connect, typed
    d = wsplugd(text=config(
        plugins=("broadcast", "worker"),
        server={"workers": 2, "worker_watchdog": 0},
        log={"level": "info"},
        plugin_sections={"worker": {"path": WORKER_SO}},
        extra="\n[bus]\nhistory_size = 0\nhistory_memory = 0B\n"))
    d.wait_for("master.ready", timeout=30)
    master = d.proc.pid
    size = 200 * 1024
    count = 1000  # about 200 MiB through the master, 3 times the budget

    async def main():
        conns = []
        while {1, 2} - {w for _, w in conns}:
            conns.append(await bus_connect(d))
            assert len(conns) < 200
        sub1 = next(ws for ws, w in conns if w == 1)
        sub2 = next(ws for ws, w in conns if w == 2)
        pub = sub1  # on a worker that keeps reading; it gets its own
        for ws in (sub1, sub2):
            await ws.send(json.dumps({"type": "subscribe",
                                      "channel": "load"}))
            await typed(ws, "subscribed")
        victim = worker_pids(d, 2)[2]
        rss0 = vm_kib(master, "VmRSS")
        peak = rss0
        got = []
        mark = d.mark()
        os.kill(victim, signal.SIGSTOP)
        try:
            async def reader():
                while len(got) < count:
                    m = json.loads(await asyncio.wait_for(sub1.recv(),
                                                          30 * SLOW))
                    if m["type"] == "message":
                        got.append((m["data"]["i"], m["offset"]))

            task = asyncio.create_task(reader())
            blob = "x" * size
            for i in range(count):
                # at most 32 ahead of the subscriber that keeps up
                while i - len(got) > 32:
                    await asyncio.sleep(0.001)
                    assert not task.done(), task.exception()
                await pub.send(json.dumps({"type": "publish",
                                           "channel": "load",
                                           "data": {"i": i, "b": blob}}))
                if i % 20 == 0:
                    peak = max(peak, vm_kib(master, "VmRSS"))
            await task
            peak = max(peak, vm_kib(master, "VmRSS"))
        finally:
            try:
                os.kill(victim, signal.SIGCONT)
            except ProcessLookupError:
                pass  # replaced already, as it should be
        loop = asyncio.get_running_loop()
        ev = await loop.run_in_executor(None, lambda: d.wait_for(
            "worker.backlog", start=mark, worker=2, pid=victim))
        ex = await loop.run_in_executor(None, lambda: d.wait_for(
            "worker.exit", start=mark, worker=2, pid=victim))
        await loop.run_in_executor(None, lambda: d.wait_for(
            "worker.ready", start=mark, worker=2))
        closed = False
        try:
            while True:
                await asyncio.wait_for(sub2.recv(), 10 * SLOW)
        except websockets.ConnectionClosed:
            closed = True
        for ws, _ in conns:
            await ws.close()
        return got, ev, ex, rss0, peak, closed

    got, ev, ex, rss0, peak, closed = run(main(), timeout=300)
    # the subscriber on worker 1 got every message, once, in order
    assert [i for i, _ in got] == list(range(count))
    offsets = [o for _, o in got]
    assert offsets == list(range(offsets[0], offsets[0] + count))
    assert ex["signal"] == "KILL"
    assert closed  # the stopped worker's clients went with it
    budget = int(ev["budget"])
    assert budget == 64 * 1024 * 1024 and int(ev["bytes"]) > budget
    grown = (peak - rss0) * 1024
    print(f"master RSS {rss0} KiB before, peak {peak} KiB: "
          f"+{grown / 2**20:.1f} MiB for {count * size / 2**20:.0f} MiB "
          f"published with worker 2 stopped")
    from test_admin import sanitized
    if not sanitized():  # ASan's quarantine holds what was freed
        assert grown < budget + 48 * 2**20, grown
    from test_admin import request
    body = request(d, "/metrics")[2].decode()
    assert "wsplugd_workers_backlogged_total 1" in body.splitlines()
