"""Bash completion (etc/bash-completion/wsplugd), driven by a real bash
with Debian's bash-completion loaded, as an interactive shell would call
it: every option `wsplugd --help` prints is offered, and the arguments of
-c/--config and -l/--log-level are completed."""

import os
import re
import shutil
import subprocess

import pytest

from harness import run_wsplugd

SRCDIR = os.environ.get("WSPLUGD_SRCDIR",
                        os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(SRCDIR, "etc", "bash-completion", "wsplugd")
BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"

pytestmark = pytest.mark.skipif(
    not os.path.exists(BASH_COMPLETION) or shutil.which("bash") is None,
    reason="bash-completion is not installed (scripts/install-deps test)")


def complete(words, cwd=None):
    """What completing the last of words offers, sorted."""
    line = " ".join(words)
    prog = f"""
        source {BASH_COMPLETION}
        source {SCRIPT}
        COMP_WORDS=({" ".join(_quote(w) for w in words)})
        COMP_CWORD={len(words) - 1}
        COMP_LINE={_quote(line)}
        COMP_POINT={len(line)}
        _wsplugd wsplugd {_quote(words[-1])} {_quote(words[-2])}
        printf '%s\\n' "${{COMPREPLY[@]}}"
    """
    res = subprocess.run(["bash", "--norc", "--noprofile", "-c", prog],
                         capture_output=True, text=True, timeout=20,
                         cwd=cwd)
    assert res.returncode == 0, res.stderr
    return sorted(w for w in res.stdout.split("\n") if w)


def _quote(word):
    return "'" + word.replace("'", "'\\''") + "'"


def test_every_option_in_help_is_offered():
    helptext = run_wsplugd(["--help"]).stdout
    documented = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*=?)",
                                helptext.split("\n", 1)[1]))
    offered = set(complete(["wsplugd", "-"]))
    assert documented <= offered, documented - offered
    assert offered <= documented, offered - documented
    assert complete(["wsplugd", "--v"]) == ["--version"]


@pytest.mark.parametrize("flag", ["-l", "--log-level"])
def test_log_levels_after_the_option(flag):
    assert complete(["wsplugd", flag, ""]) == ["debug", "error", "info",
                                                "warn"]
    assert complete(["wsplugd", flag, "w"]) == ["warn"]


def test_log_level_after_the_equals_sign():
    assert complete(["wsplugd", "--log-level=d"]) == ["debug"]


@pytest.mark.parametrize("flag", ["-c", "--config"])
def test_files_after_config(tmp_path, flag):
    (tmp_path / "site.conf").write_text("")
    (tmp_path / "sub").mkdir()
    assert complete(["wsplugd", flag, "s"], cwd=tmp_path) == ["site.conf",
                                                               "sub"]


def test_nothing_after_version():
    assert complete(["wsplugd", "--version", ""]) == []
