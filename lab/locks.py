"""Advisory file locks, so two processes never fill the same cache entry at once."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import FetchError


@contextlib.contextmanager
def file_lock(path: Path, *, timeout: float = 1800.0, what: str = "") -> Iterator[None]:
    """Hold an exclusive ``flock`` on *path* (created if needed) for the block.

    The kernel drops the lock when the process dies, so a killed fetch never leaves
    a stale lock behind (unlike lock files that merely exist).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise FetchError(
                        f"timed out after {timeout:.0f}s waiting for another ebpf-lab process to finish {what or path}",
                        hint="wait for it, or stop it, then try again",
                    ) from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)
