"""Advisory file locks, so two processes never fill the same cache entry at once."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from lab.errors import FetchError


@contextlib.contextmanager
def file_lock(path: Path, *, timeout: float = 1800.0, what: str = "",
              on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on *path* (created if needed) for the block.

    The kernel drops the lock when the process dies, so a killed fetch never leaves
    a stale lock behind (unlike lock files that merely exist). When another process
    holds it, *on_wait* is told once, in a line for the user: a silent wait of minutes
    (a root filesystem build) looks like a hang.
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
                if on_wait is not None:
                    on_wait(f"waiting for another ebpf-lab process to finish {what or path}")
                    on_wait = None
                if time.monotonic() > deadline:
                    raise FetchError(
                        f"timed out after {timeout:.0f}s waiting for another ebpf-lab process to finish {what or path}",
                        hint="wait for it, or stop it, then try again",
                    ) from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


def fill_once(dest: Path, *, what: str, ready: Callable[[], bool], fill: Callable[[Path], None],
              on_wait: Callable[[str], None] | None = None) -> None:
    """Make the cache entry *dest* unless *ready*() says another process already did.

    Under a lock, *fill* writes into a temporary directory beside *dest*, which is renamed
    into place only when *fill* returns: an interrupted fill leaves no half entry behind,
    and debris at *dest* (an older layout, a damaged entry) is replaced.
    """
    with file_lock(dest.parent / f".{dest.name}.lock", what=what, on_wait=on_wait):
        if ready():  # Another process may have made it while we waited.
            return
        if dest.exists():
            shutil.rmtree(dest)
        # The temporary trees of fills that were killed (SIGKILL, power loss) are debris too:
        # we hold the lock, so no live process is still filling one. A root filesystem's is
        # hundreds of MiB, left forever otherwise.
        for debris in dest.parent.glob(f".{dest.name}.tmp-*"):
            shutil.rmtree(debris, ignore_errors=True)
        tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
        tmp.mkdir(parents=True)
        try:
            fill(tmp)
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
