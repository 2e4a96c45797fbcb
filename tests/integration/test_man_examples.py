"""Every example configuration in the manual pages works as shipped.

An operator copies these blocks; wsplugd.conf(5)'s own "echo server for a
conformance suite" once failed the suite's 16 MiB cases.  Each literal
block of a page that holds an INI section is checked with `wsplugd -t`,
unchanged except for one added [plugins] dir: the pages rely on the
installed plugin directory, which a build tree does not have.  A block
that names files the operator supplies (a certificate, a plugin the
reader builds) must fail on those files alone.  The conformance examples
are also run, on a port the test picks, and echo 16 MiB.
"""

import asyncio
import glob
import os
import re

import pytest

from harness import PLUGIN_DIR, SLOW, run_wsplugd, ws_connect

MAN = os.path.join(os.environ.get("WSPLUGD_SRCDIR",
                                  os.path.join(os.path.dirname(__file__),
                                               "..", "..")), "man")
SECTION = re.compile(r"^\s*\[(server|keepalive|log|admin|plugins|deflate|"
                     r"tls|plugin:[^\]]+)\]")
# Blocks that name what only the operator or the reader has: the errors
# -t reports must all be about these.
OPERATOR_FILES = ("/etc/wsplugd/cert.pem", "/etc/wsplugd/key.pem",
                  "hello.so", "/etc/wsplugd/jwt.secret",
                  "/etc/wsplugd/jwt.pem", "/etc/wsplugd/jwks.json")


def unroff(line):
    return line.replace("\\e", "\\").replace("\\&", "").replace("\\-", "-")


def examples():
    """(page, line, text) of every literal block holding an INI section."""
    out = []
    for path in sorted(glob.glob(os.path.join(MAN, "*.[1-8]"))):
        with open(path) as f:
            lines = f.read().split("\n")
        i = 0
        while i < len(lines):
            if lines[i].startswith(".Bd -literal"):
                j = i + 1
                while not lines[j].startswith(".Ed"):
                    j += 1
                block = [unroff(x) for x in lines[i + 1:j]]
                if any(SECTION.match(x) for x in block):
                    out.append((os.path.basename(path), i + 1,
                                "\n".join(block) + "\n"))
                i = j
            i += 1
    return out


EXAMPLES = examples()


def test_the_pages_have_examples():
    pages = {p for p, _, _ in EXAMPLES}
    assert {"wsplugd.conf.5", "wsplugd-echo.7",
            "wsplugd-broadcast.7"} <= pages, pages
    assert len(EXAMPLES) >= 6


def write(tmp_path, text):
    conf = tmp_path / "wsplugd.conf"
    conf.write_text(text + f"\n[plugins]\ndir = {PLUGIN_DIR}\n")
    conf.chmod(0o644)
    return conf


@pytest.mark.parametrize("page,line,text", EXAMPLES,
                         ids=[f"{p}:{n}" for p, n, _ in EXAMPLES])
def test_example_passes_check(tmp_path, page, line, text):
    conf = write(tmp_path, text)
    r = run_wsplugd(["-t", "-c", str(conf)])
    named = [f for f in OPERATOR_FILES if f in text]
    if not named:
        assert r.returncode == 0, (page, line, r.stdout, r.stderr)
        assert "configuration OK" in r.stdout + r.stderr
        return
    # Only the operator's own files may be missing.
    errors = [x for x in (r.stdout + r.stderr).splitlines() if x.strip()]
    if r.returncode == 0:
        return  # this machine has them
    assert errors
    for e in errors:
        assert any(f in e for f in named), (page, line, e)


CONFORMANCE = [(p, n, t) for p, n, t in EXAMPLES
               if "catch_all = yes" in t and "max_message_size" in t]


@pytest.mark.parametrize("page,line,text", CONFORMANCE,
                         ids=[f"{p}:{n}" for p, n, _ in CONFORMANCE])
def test_conformance_example_echoes_16mib(wsplugd, tmp_path, page, line,
                                          text):
    """RFC 6455 cases 9.1.6 and 9.2.6 against the example, on a port the
    test picks (the listen line is the only change)."""
    text = re.sub(r"(?m)^listen = .*$", "listen = 127.0.0.1:0", text)
    d = wsplugd(text=text + f"\n[plugins]\ndir = {PLUGIN_DIR}\n")

    async def main():
        async with ws_connect(d.url, max_size=None) as ws:
            t = "9" * (16 * 1024 * 1024)
            await ws.send(t)
            assert await ws.recv() == t
            b = bytes(range(256)) * (64 * 1024)
            await ws.send(b)
            assert await ws.recv() == b

    asyncio.run(asyncio.wait_for(main(), 120 * SLOW))
    assert d.find("ws.slow_consumer") is None
