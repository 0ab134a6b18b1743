"""A booted guest: virtme-ng under pexpect, driven through its console shell.

The console is the only channel: virtme-ng's virtio-serial script channel needs
udevd on the host and loses exit codes without it. Our shell (guest_files/shell.sh)
turns echo off and we set a prompt that carries a random nonce and the last exit
status, so every command's output and status are read back exactly.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import secrets
import shlex
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pexpect

from lab.boot.config import VMConfig, check_files, guest_path
from lab.errors import BootTimeout, CommandTimeout, GuestError, GuestExited, GuestPanic
from lab.guest import bpf_objects, console, files
from lab.guest import shell as guest_shell
from lab.guest.background import OutputSink, Process
from lab.guest.timeouts import Timeouts, timeouts_for
from lab.guest.transcript import OUTPUT_KEPT, Tee, Transcript
from lab.host import tools
from lab.host.process import die_with_parent

log = logging.getLogger(__name__)


# The tty's canonical line buffer is 4096 bytes; longer lines are truncated by the guest kernel.
_MAX_LINE = 3800

#: How much of the newest console text pexpect searches for a prompt. Left unset, it
#: searches all output since the last prompt at every read (2,000 bytes at a time), which
#: under a flood costs time quadratic in its length: half a host core after a minute.
_SEARCH_WINDOW = 64 * 1024


@dataclass(frozen=True)
class Result:
    """What a command run in the guest returned."""

    command: str
    returncode: int
    output: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Guest:
    """One throw-away VM. Use as a context manager, or call :meth:`close`.

    ``timeouts`` (default: the policy's for ``config``) say how long each wait may take;
    labs and tests read them too. Each failure carries the last console lines and the path
    of the full transcript (``log_path``).
    """

    def __init__(self, *, config: VMConfig, log_path: Path, timeouts: Timeouts | None = None,
                 label: str = "") -> None:
        self.config = config
        self.log_path = log_path
        self.timeouts = timeouts or timeouts_for(kvm=config.kvm, foreign=config.arch.foreign)
        self.label = label or config.image.name
        self.nonce = "L" + secrets.token_hex(8)
        self.boot_seconds: float | None = None
        self._child: pexpect.spawn | None = None
        self._log_file = None
        self._transcript = Transcript(keep=OUTPUT_KEPT)
        self._spawn_count = 0
        #: Where the transcript stood when the current command was sent (see out_of_memory()).
        self._command_mark = 0
        #: Labs run in this guest (LabResult), newest last: the plugin reports their times.
        self.lab_results: list = []

    @property
    def boot_timeout(self) -> float:
        """Seconds the boot may take: ``timeouts.boot``."""
        return self.timeouts.boot

    @property
    def command_timeout(self) -> float:
        """Seconds a command may take unless given its own: ``timeouts.command``."""
        return self.timeouts.command

    # -- life cycle -------------------------------------------------------------------

    def boot(self) -> Guest:
        """Start QEMU and wait for the console shell; raises BootTimeout/GuestExited/GuestPanic."""
        from lab.boot import prepared

        if self._child is not None:
            # A second QEMU would run unseen beside the first (and slow it down) until exit.
            raise GuestError(f"{self.label}: the guest is already booted", hint="close() it before booting again")
        check_files(self.config)
        argv = prepared.boot_command(self.config)
        log.info("+ %s", shlex.join(argv))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "w", encoding="utf-8", errors="replace")
        self._log_file.write(f"# {shlex.join(argv)}\n")
        started = time.monotonic()
        env = tools.virtme_environ({k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")})
        env["TERM"] = "dumb"
        self._child = pexpect.spawn(
            argv[0], argv[1:], encoding="utf-8", codec_errors="replace", timeout=self.boot_timeout,
            dimensions=(50, 250), env=env, preexec_fn=die_with_parent, searchwindowsize=_SEARCH_WINDOW,
        )
        self._child.logfile_read = Tee(self._log_file, self._transcript, child=self._child)
        try:
            self._expect([console.READY_MARKER], timeout=self.boot_timeout, what="boot",
                         error=BootTimeout)
            self._child.sendline(f"PS1='{self.nonce}:$?> '")
            self._expect([console.prompt_pattern(self.nonce)], timeout=60, what="the first prompt",
                         error=BootTimeout)
        except BaseException:
            self.close()
            raise
        self.boot_seconds = time.monotonic() - started
        log.info("%s: booted in %.1fs", self.label, self.boot_seconds)
        return self

    def __enter__(self) -> Guest:
        if self._child is None:
            self.boot()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self._child is not None and self._child.isalive()

    def close(self) -> None:
        """Stop QEMU (and everything virtme-ng started), whatever state the guest is in."""
        child, self._child = self._child, None
        if child is not None:
            _kill_group(child)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # -- commands ---------------------------------------------------------------------

    def run(self, command: str, *, timeout: float | None = None, check: bool = False) -> Result:
        """Run a shell *command* in the guest and return its status and output.

        On timeout the command is interrupted (Ctrl-C); if the shell does not come
        back, the guest is closed. Either way CommandTimeout is raised.
        """
        child = self._require()
        timeout = self.command_timeout if timeout is None else timeout
        started = time.monotonic()
        line = _encode(command)
        dropped_before = self._transcript.dropped_output
        self._command_mark = self._transcript.total
        child.sendline(line)
        try:
            self._expect([console.prompt_pattern(self.nonce)], timeout=timeout,
                         what=f"command {command!r}", error=CommandTimeout)
        except CommandTimeout as timeout:
            what = self._recover()
            if what:
                raise CommandTimeout(f"{timeout.message}; {what}", hint=timeout.hint, tail=timeout.tail,
                                     log_path=timeout.log_path) from None
            raise
        status = int(child.match.group(1))
        output = console.clean(child.before)
        dropped = self._transcript.dropped_output - dropped_before
        if dropped:
            output = f"[ebpf-lab: {dropped} characters of output before these were not kept; see {self.log_path}]\n" + output
        result = Result(command=command, returncode=status, output=output, duration=time.monotonic() - started)
        if check and not result.ok:
            raise GuestError(f"{self.label}: {command!r} exited with {status}: {console.tail(output, lines=5)}",
                             log_path=str(self.log_path))
        return result

    def spawn(self, command: str, *, on_output: OutputSink | None = None) -> Process:
        """Start *command* in the background of the guest and return a handle to it."""
        self._spawn_count += 1
        out = f"/tmp/.ebpf-lab-{self.nonce}-{self._spawn_count}"
        result = self.run(guest_shell.spawn(command, out=out), timeout=60)
        pid = int(result.output.strip().splitlines()[-1])
        return Process(guest=self, command=command, pid=pid, out=out, on_output=on_output)

    def guest_path(self, host: Path) -> str | None:
        """Where this guest sees the host path *host*; None when it cannot (a root-disk guest sees only shares)."""
        return guest_path(host, root_disk=self.config.root_disk is not None, rodirs=self.config.rodirs)

    def copy_in(self, host: Path, guest_path: str | None = None) -> str:
        """Put the host file *host* into the guest and return its guest path (see lab.guest.files).

        Without *guest_path*, a file the guest already sees (a host-root guest sees the
        host's files read-only) is not copied.
        """
        return files.copy_in(self, Path(host), guest_path)

    def copy_out(self, guest_path: str, host: Path) -> Path:
        """Copy the guest file *guest_path* to *host* (a file or a directory); return the host path."""
        return files.copy_out(self, guest_path, Path(host))

    def load(self, obj: Path, *, attach: bool = True) -> bpf_objects.ObjectLoad:
        """Load (and attach) each program of the BPF object *obj* with the guest's libbpf: an ObjectLoad."""
        return bpf_objects.load_object(self, Path(obj), attach=attach)

    def out_of_memory(self, *, since: int | None = None) -> list[str]:
        """The processes the guest's OOM killer ended since transcript position *since*
        (default: since the current or last command was sent), as ``comm (pid N)``."""
        return console.oom_kills(self._transcript.since(self._command_mark if since is None else since))

    def transcript_mark(self) -> int:
        """A position in the transcript, for out_of_memory(since=...)."""
        return self._transcript.total

    def transcript(self, *, since: int | None = None) -> str:
        """What the console printed so far (or since transcript_mark() returned *since*): all of
        it, or its last OUTPUT_KEPT characters (the log has all)."""
        return self._transcript.text() if since is None else self._transcript.since(since)

    # -- internals --------------------------------------------------------------------

    def _require(self) -> pexpect.spawn:
        if self._child is None or not self._child.isalive():
            raise GuestExited(f"{self.label}: the guest is not running", hint="boot a new one",
                              tail=console.tail(self.transcript()), log_path=str(self.log_path))
        return self._child

    def _expect(self, patterns: list[str], *, timeout: float, what: str, error: type[GuestError]) -> int:
        child = self._require()
        index = child.expect([*patterns, pexpect.TIMEOUT, pexpect.EOF], timeout=timeout)
        if index < len(patterns):
            return index
        transcript = self.transcript()
        panic = console.find_panic(transcript)
        tail = console.tail(transcript)
        if panic:
            self.close()
            raise GuestPanic(f"{self.label}: guest kernel panicked during {what}", tail=panic,
                             hint=f"see the console log {self.log_path}", log_path=str(self.log_path))
        # The kernel's own words when memory ran out: a guest whose console shell the OOM
        # killer ended powers off, and "QEMU exited" alone would not say why.
        oom = self.out_of_memory()
        why = f"; the guest ran out of memory (its OOM killer ended {', '.join(oom)})" if oom else ""
        if index == len(patterns) + 1:
            self.close()
            raise GuestExited(f"{self.label}: QEMU exited during {what}{why}", tail=tail,
                              hint=f"see the console log {self.log_path}", log_path=str(self.log_path))
        last = tail.splitlines()[-1] if tail else "nothing"
        raise error(f"{self.label}: {what} did not finish within {timeout:.0f}s (last console line: {last[:160]}){why}",
                    hint="raise the timeout (--boot-timeout/--command-timeout or EBPF_LAB_TIMEOUT_SCALE) "
                         f"or read {self.log_path}",
                    tail=tail, log_path=str(self.log_path))

    def _recover(self) -> str:
        """After a timed-out command: interrupt it and kill what it left running; give up on
        the guest if the shell is gone or the leftovers keep coming back. Returns what
        happened, for the error, or "" when Ctrl-C was all it took."""
        if not self.alive:
            return ""
        assert self._child is not None
        self._child.sendcontrol("c")
        # Resynchronise on a marker only a fresh command can print: waiting a fixed time for
        # "the extra prompt" loses the race on a loaded host, and then every later command
        # would read the previous command's prompt and status.
        self._spawn_count += 1
        token = f"{self.nonce}-sync-{self._spawn_count}"
        # ebpflab_kill_leftovers (guest_files/functions.sh) kills what the command left running.
        self._child.sendline(f"ebpflab_kill_leftovers; printf '%s-sync-%s:%s:%s\\n' {self.nonce} {self._spawn_count}"
                             " $ebpflab_n $ebpflab_k")
        try:
            # Between the counts and the prompt, bash may print its notices of the jobs killed.
            self._child.expect(re.escape(token) + r":(\d+):(\d+)\s[\s\S]*?" + console.prompt_pattern(self.nonce),
                               timeout=60)
        except (pexpect.TIMEOUT, pexpect.EOF):
            self.close()
            return "the guest did not answer after Ctrl-C and was stopped"
        killed, still = int(self._child.match.group(1)), int(self._child.match.group(2))
        if still:
            self.close()
            return (f"it left processes that kept coming back ({killed} killed; a fork bomb?), "
                    "so the guest was stopped")
        if not killed:
            return ""
        return "1 process it left running was killed" if killed == 1 else f"{killed} processes it left running were killed"




def _encode(command: str) -> str:
    """One console line for *command*; multi-line or long commands travel base64-encoded."""
    # Up to the tty's line limit as it is: base64 would make a long line a third longer.
    if "\n" not in command and len(command) <= _MAX_LINE and command.isprintable():
        return command
    encoded = base64.b64encode(command.encode()).decode()
    if len(encoded) > _MAX_LINE:
        raise GuestError(f"command too long for the console ({len(command)} bytes)",
                         hint="put it in a file under a directory the guest can see and run that")
    return f"eval \"$(echo {encoded} | base64 -d)\""


def _kill_group(child: pexpect.spawn) -> None:
    """Terminate vng, QEMU and any helper: pexpect made vng a session and group leader."""
    pgid = child.pid
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
            # Reap vng so it does not linger as a zombie.
            child.isalive()
        else:
            continue
        break
    try:
        child.close(force=True)
    except Exception:  # noqa: BLE001 - closing a dead pty may fail in several harmless ways
        pass
