"""What this repository's own suite needs; the ``vm``/``kernel`` fixtures are the plugin's, for users.

``tests/`` is on ``sys.path`` (pytest's rootdir-relative import of test modules), so
test files import shared helpers from ``tests/procs.py`` as ``procs``.
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
