"""A plugin author's path: install wsplugd into a temporary prefix, build
examples/plugin-hello out of tree with nothing but pkg-config and the
installed header, drop the .so in, SIGHUP, and see it answer."""

import asyncio
import json
import os
import shutil
import signal
import subprocess

import websockets

from harness import PLUGIN_DIR, SLOW, run_wsplugd

BUILDDIR = os.environ.get("WSPLUGD_BUILDDIR", ".")
SRCDIR = os.environ.get("WSPLUGD_SRCDIR", ".")


def clean_env(**extra):
    """No make variables from the `make check` running us."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    env.update(extra)
    return env


def test_out_of_tree_plugin_builds_and_loads_on_reload(wsplugd, tmp_path):
    dest = tmp_path / "root"
    subprocess.run(["make", "-s", "install", f"DESTDIR={dest}"],
                   cwd=BUILDDIR, env=clean_env(), check=True,
                   stdout=subprocess.DEVNULL, timeout=300)
    pcdirs = [str(p.parent) for p in dest.rglob("wsplugd-plugin.pc")]
    assert len(pcdirs) == 1, pcdirs
    assert list(dest.rglob("wsplugd/plugin.h"))
    assert not list(dest.rglob("*.la")), "no libtool archives installed"

    src = tmp_path / "plugin-hello"
    shutil.copytree(os.path.join(SRCDIR, "examples", "plugin-hello"), src)
    env = clean_env(PKG_CONFIG_PATH=pcdirs[0],
                    PKG_CONFIG_SYSROOT_DIR=str(dest))
    subprocess.run(["make", "-s"], cwd=src, env=env, check=True,
                   timeout=120)
    so = src / "hello.so"
    exported = subprocess.run(["nm", "-D", "--defined-only", str(so)],
                              capture_output=True, text=True, check=True)
    symbols = [line.split()[-1] for line in exported.stdout.splitlines()]
    assert [s for s in symbols if not s.startswith("_")] == \
        ["wsplugd_plugin"], symbols

    conf = tmp_path / "live.conf"
    conf.write_text("[server]\nlisten = 127.0.0.1:0\n"
                    "[admin]\nlisten = 127.0.0.1:0\n[plugins]\n"
                    f"dir = {PLUGIN_DIR}\n[plugin:ping]\n")
    d = wsplugd(path=conf)

    async def main():
        async with websockets.connect(d.url) as ws:
            await ws.send(json.dumps({"type": "hello", "name": "Ada"}))
            assert json.loads(await ws.recv())["code"] == "unknown_type"
            with open(conf, "a") as f:
                f.write(f"[plugin:hello]\npath = {so}\ngreeting = Hi\n")
            mark = d.mark()
            d.signal(signal.SIGHUP)
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: d.wait_for("reload", start=mark, result="ok"))
            await ws.send(json.dumps({"type": "hello", "name": "Ada"}))
            reply = json.loads(await ws.recv())
            assert reply["greeting"] == "Hi, Ada!"
            await ws.send(json.dumps({"type": "ping", "id": 1}))
            assert json.loads(await ws.recv())["id"] == 1

    asyncio.run(asyncio.wait_for(main(), timeout=60 * SLOW))


def test_example_builds_from_a_checkout_and_says_what_it_needs(tmp_path):
    # Without wsplugd-dev (no wsplugd-plugin.pc on the search path) the
    # Makefile says what it needs; WSPLUGD_SRC=<checkout> builds from the
    # checkout's header, and the result passes the daemon's own check.
    src = tmp_path / "plugin-hello"
    shutil.copytree(os.path.join(SRCDIR, "examples", "plugin-hello"), src)
    env = clean_env(PKG_CONFIG_PATH=str(tmp_path / "nothing"),
                    PKG_CONFIG_LIBDIR=str(tmp_path / "nothing"))
    res = subprocess.run(["make", "-s"], cwd=src, env=env,
                         capture_output=True, text=True, timeout=120)
    if subprocess.run(["pkg-config", "--exists", "wsplugd-plugin"],
                      env=env).returncode != 0:
        assert res.returncode != 0
        assert "wsplugd-dev" in res.stderr and "WSPLUGD_SRC" in res.stderr, \
            res.stderr
    subprocess.run(["make", "-s", "clean"], cwd=src, env=env, check=True,
                   timeout=60)
    env = clean_env()
    subprocess.run(["make", "-s", f"WSPLUGD_SRC={os.path.abspath(SRCDIR)}"],
                   cwd=src, env=env, check=True, timeout=120)
    conf = tmp_path / "hello.conf"
    conf.write_text(f"[plugins]\ndir = {PLUGIN_DIR}\n"
                    f"[plugin:hello]\npath = {src / 'hello.so'}\n"
                    "greeting = Hi\n")
    res = run_wsplugd(["-t", "-c", str(conf)])
    assert res.returncode == 0, res.stderr
