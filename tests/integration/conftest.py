"""pytest fixtures: a factory for real daemons, checked on the way out."""

import pytest

from harness import Daemon, config


@pytest.fixture
def wsplugd(tmp_path):
    """start(text=None, **config_args) -> a running Daemon.

    Every daemon started in a test is stopped with SIGTERM afterwards and
    must exit 0 (under valgrind or ASan that also means no leak).
    """
    started = []

    def start(text=None, wait=True, path=None, prefix=(), **kw):
        d = Daemon(tmp_path / f"d{len(started)}",
                   None if path else (text or config(**kw)), path=path)
        started.append(d)
        return d.start(wait=wait, prefix=prefix)

    (tmp_path / "d0").mkdir()
    for i in range(1, 8):
        (tmp_path / f"d{i}").mkdir()
    yield start
    for d in started:
        rc = d.stop()
        assert rc == 0, f"wsplugd exited {rc}:\n{d.log_text()}"
