"""The console commands the host sends to a guest: calls of the shell functions in
``guest_files/functions.sh``, which the console bash loads at start. Pure builders; every
argument is quoted here, once, so a student's path with a space in it is one argument.

The tests run the same calls in the host's bash, with the same functions file loaded.
"""

from __future__ import annotations

import re
import shlex

from lab.boot.config import SHELL

#: The functions file, beside the console shell (shell.sh loads it).
FUNCTIONS = SHELL.with_name("functions.sh")


def _call(function: str, *args: object) -> str:
    return " ".join([function, *(shlex.quote(str(a)) for a in args)])


def spawn(command: str, *, out: str) -> str:
    """Start *command* in the background: output to *out*, its pid to ``OUT.pid``, its exit
    status to ``OUT.rc`` when it ends. Prints the pid."""
    return _call("ebpflab_spawn", out, command)


def poll(*, out: str, size: int, nonce: str, chunk: int = 256 * 1024) -> str:
    """Print what a :func:`spawn`-ed process wrote to *out* after its first *size* bytes, at most
    *chunk* of them, then a line ``NONCE:END:STATUS:BACKLOG`` (see ``console.parse_poll`` and
    ``console.poll_backlog``)."""
    return _call("ebpflab_poll", out, int(size), int(chunk), nonce)


def stop(pid: int) -> str:
    """Interrupt the process group *pid* (SIGINT, so a tracer cleans up), then SIGKILL it after 3 s."""
    return _call("ebpflab_stop", int(pid))


def ready_loop(ready: str, *, status_file: str, timeout: float, interval: float = 0.5) -> str:
    """Print ``ready`` once the shell command *ready* succeeds, ``ended`` if the program's
    *status_file* appears first, ``late`` after *timeout* seconds. A ``grep -q WORD FILE``
    check is done by bash itself (see :func:`builtin_grep`)."""
    word_file = builtin_grep(ready)
    seconds = int(timeout + 0.999)
    if word_file is not None:
        return _call("ebpflab_ready", status_file, seconds, interval, *word_file)
    return _call("ebpflab_ready", status_file, seconds, interval, "", "", ready)


def builtin_grep(ready: str) -> tuple[str, str] | None:
    """(word, file) when *ready* is ``grep -q 'WORD' FILE`` with a literal word, which the guest
    checks without forking a grep; else None (a pipeline, a regex)."""
    match = re.fullmatch(r"grep -q '?([A-Za-z0-9_]+)'? (/[A-Za-z0-9_./-]+)", ready.strip())
    return (match.group(1), match.group(2)) if match else None
