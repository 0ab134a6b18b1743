"""Running a program on the host: one way, logged, with a timeout and one-line errors.

Every host program ebpf-lab runs to completion (apt-get, dpkg-deb, mmdebstrap, mkfs.ext4,
virtme-ng's dry runs) goes through run(). Guests are not run here: they are long-lived
and talked to through pexpect (lab/guest/guest.py).
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from lab.errors import HostError, LabError, ProcessTimeout
from lab.host import tools
from lab.settings import TIMEOUT_SCALE_ENV, timeout_scale

log = logging.getLogger(__name__)

#: Picks the line that says why a program failed, from its result.
Reason = Callable[["subprocess.CompletedProcess[str] | subprocess.CompletedProcess[bytes]"], str]
#: How long a killed program may take to close its output before we stop reading it: a
#: grandchild (apt-get's methods, dpkg-deb's tar) can hold the pipe after its parent died.
DRAIN_SECONDS = 5.0


def _text(stream: str | bytes | None) -> str:
    if stream is None:
        return ""
    return stream.decode(errors="replace") if isinstance(stream, bytes) else stream


def _last(stream: str | bytes | None) -> str:
    lines = [line.strip() for line in _text(stream).splitlines() if line.strip()]
    return lines[-1] if lines else ""


def last_line(result: subprocess.CompletedProcess) -> str:  # type: ignore[type-arg]
    """The last line the program wrote to stderr, else to stdout: usually why it failed."""
    return _last(result.stderr) or _last(result.stdout)


def run(argv: list[str], *, what: str, timeout: float, error: type[LabError] = HostError, hint: str = "",
        timeout_hint: str = "", input: bytes | str | None = None, env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None, text: bool = True, check: bool = True, capture: bool = True,
        reason: Reason = last_line) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    """Run *argv* to completion and return its result, its output captured (unless *capture* is False).

    *what* says what the run is for, in the user's words ("unpacking linux-image-… for
    6.1-amd64"); every error names it. A bare ``argv[0]`` is looked up with lab.host.tools, so
    a missing program raises HostError naming what to install. A run longer than
    *timeout* seconds (times ``$EBPF_LAB_TIMEOUT_SCALE``) raises ProcessTimeout, with
    *timeout_hint* first among what to do. With *check*, a non-zero exit raises
    *error* with *hint* and the line *reason* picks from the output (default: the last
    line on stderr). stdin is empty unless *input* is given, or *capture* is False
    (then the program shares the terminal: ``apt-get install`` for ``lab setup``).
    """
    argv = [_resolve(argv[0], what=what), *argv[1:]]
    log.info("+ %s", shlex.join(argv))
    limit = timeout * timeout_scale()
    pipe = subprocess.PIPE if capture else None
    stdin = subprocess.PIPE if input is not None else subprocess.DEVNULL if capture else None
    try:
        # Killed with us: a SIGKILLed `lab fetch` must not leave mmdebstrap unpacking for minutes.
        proc = subprocess.Popen(argv, stdin=stdin, stdout=pipe, stderr=pipe, env=env, cwd=cwd, text=text,
                                preexec_fn=die_with_parent)  # noqa: PLW1509 (no threads start host programs)
    except OSError as exc:
        raise _cannot_start(argv[0], exc, what=what, cwd=cwd) from None
    try:
        stdout, stderr = proc.communicate(input=input, timeout=limit)
    except subprocess.TimeoutExpired:
        stdout, stderr = _kill(proc)
        said = _last(stderr) or _last(stdout)
        raise ProcessTimeout(f"{what} did not finish within {_seconds(limit)}" + (f" (last output: {said})" if said else ""),
                             hint=_timeout_hint(timeout_hint), exit_code=error.exit_code) from None
    except BaseException:
        # Ctrl-C or SIGTERM: subprocess.run would give the child only 0.25 s, and callers
        # then delete the tree it may still be writing into (lab/kernels/fetch.py), so wait until
        # it is really gone.
        proc.kill()
        proc.wait()
        raise
    result = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
    if check and proc.returncode != 0:
        said = reason(result)
        raise error(f"{what} failed ({_status(proc.returncode)})" + (f": {said}" if said else ""), hint=hint)
    return result


def _load_prctl():  # type: ignore[no-untyped-def]
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except OSError:
        return None


#: Loaded once here: the child between fork and exec should do as little as it can.
_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child before exec: receive SIGKILL if the Python process that started it dies.

    Only the child itself: what it starts in turn (mmdebstrap's dpkg-deb) ends when it notices."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _resolve(program: str, *, what: str) -> str:
    """*program*'s full path when it is a bare name (HostError when it is nowhere), else as given."""
    if os.sep in program:
        return program
    return tools.require(program, needed_for=what)


def _cannot_start(program: str, exc: OSError, *, what: str, cwd: str | Path | None) -> LabError:
    if cwd is not None and not os.path.isdir(cwd):
        return HostError(f"{what}: working directory {cwd} does not exist", hint="report this")
    if isinstance(exc, FileNotFoundError):
        return HostError(f"{os.path.basename(program)} not found, needed for {what}",
                         hint=tools.install_hint(program))
    return HostError(f"cannot run {program} for {what}: {exc.strerror}", hint=tools.install_hint(program))


def _kill(proc: subprocess.Popen) -> tuple[str | bytes | None, str | bytes | None]:  # type: ignore[type-arg]
    """Kill *proc* and return what it wrote before it died."""
    proc.kill()
    try:
        # communicate() again after a timeout loses nothing already read.
        return proc.communicate(timeout=DRAIN_SECONDS)
    except subprocess.TimeoutExpired:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        proc.wait()
        return None, None


def _status(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit {code}"


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


def _timeout_hint(first: str) -> str:
    longer = f"if it is only slow, raise {TIMEOUT_SCALE_ENV} (now {timeout_scale():g}) to wait longer"
    return f"{first}; {longer}" if first else longer
