"""What this repository's own suite needs; the ``vm``/``kernel`` fixtures are the plugin's, for users.

``tests/`` is on ``sys.path`` (pytest's rootdir-relative import of test modules), so
test files import shared helpers from ``tests/procs.py`` as ``procs``.

Tests that boot guests are marked ``guest``: ``pytest -m "not guest"`` is the suite of seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))

import procs  # noqa: E402  (needs the path above)

from lab.settings import cache_dir  # noqa: E402

pytest_plugins = ["pytester"]

#: The kernel cache of this session, taken before any fixture moves HOME.
CACHE = cache_dir()

#: Fixtures that boot (or fetch) a guest, in this process or in a process a test starts.
GUEST_FIXTURES = ("vm", "kernel", "started")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "guest: boots a guest or fetches a kernel (minutes under TCG); "
                                       "-m 'not guest' leaves them out")
    config.addinivalue_line("markers", "slow: a fault that takes minutes to inject (a root filesystem build, a "
                                       "stalled mirror); -m 'not slow' leaves them out")


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # By fixture, so a new test that boots cannot forget the mark; tests that boot another
    # way (pytester runs, a guest of their own) carry it themselves.
    for item in items:
        if any(name in GUEST_FIXTURES for name in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.guest)


@pytest.fixture
def started(tmp_path):  # type: ignore[no-untyped-def]
    """Start processes with ``started(argv)``; whatever happens, they and their guests end with the test."""
    yield from procs.started_processes(tmp_path)


@pytest.fixture
def pytester(pytester, monkeypatch):  # type: ignore[no-untyped-def]
    """pytester whose subprocesses load this checkout's plugin (not an installed copy).

    pytester moves HOME; the kernel cache stays where it was, or each run would fetch anew.
    """
    monkeypatch.setenv("PYTHONPATH", str(procs.REPO))
    monkeypatch.setenv("EBPF_LAB_CACHE", str(CACHE))
    return pytester
