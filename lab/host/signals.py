"""SIGTERM ends a run the way Ctrl-C does, so the code that stops guests runs on the way out."""

from __future__ import annotations

import signal
import threading


def interrupt_on_sigterm(*, replace_others: bool = False) -> bool:
    """Make SIGTERM raise KeyboardInterrupt in the main thread; return whether it does now.

    By default SIGTERM ends Python at once, and QEMU would only go away through the pty
    hang-up. Only the main thread may set a handler, so elsewhere this does nothing. A
    handler someone else installed (pytest-timeout, xdist) is left alone unless
    *replace_others*: the ``lab`` command owns its process, a pytest plugin does not.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    if not replace_others and signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False
    signal.signal(signal.SIGTERM, _interrupt)
    return True


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
