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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pexpect

from . import console
from .errors import BootTimeout, CommandTimeout, GuestError, GuestExited, GuestPanic
from .vm import VMConfig, check_files, guest_path, vng_binary, vng_command

log = logging.getLogger(__name__)

#: Called with each chunk of text a spawned process prints (for live display).
OutputSink = Callable[[str], None]

# The tty's canonical line buffer is 4096 bytes; longer lines are truncated by the guest kernel.
_MAX_LINE = 3800

#: Characters of console text, of one command's output and of a spawned process's output
#: kept in memory; the console log file has everything. A guest that floods its console
#: (`yes`, a program printing in a loop) sends some 200 KiB/s for as long as the command
#: timeout allows: kept whole, a session's memory would grow by that for every flood.
OUTPUT_KEPT = 4 * 2**20
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

    ``boot_timeout`` and ``command_timeout`` are seconds; each failure carries the
    last console lines and the path of the full transcript (``log_path``).
    """

    def __init__(self, *, config: VMConfig, log_path: Path, boot_timeout: float = 180.0,
                 command_timeout: float = 120.0, label: str = "") -> None:
        self.config = config
        self.log_path = log_path
        self.boot_timeout = boot_timeout
        self.command_timeout = command_timeout
        self.label = label or config.image.name
        self.nonce = "L" + secrets.token_hex(8)
        self.boot_seconds: float | None = None
        self._child: pexpect.spawn | None = None
        self._log_file = None
        self._transcript = _Transcript(keep=OUTPUT_KEPT)
        self._spawn_count = 0
        #: Where the transcript stood when the current command was sent (see out_of_memory()).
        self._command_mark = 0
        #: Labs run in this guest (LabResult), newest last: the plugin reports their times.
        self.lab_results: list = []

    # -- life cycle -------------------------------------------------------------------

    def boot(self) -> Guest:
        """Start QEMU and wait for the console shell; raises BootTimeout/GuestExited/GuestPanic."""
        from . import prepared

        if self._child is not None:
            # A second QEMU would run unseen beside the first (and slow it down) until exit.
            raise GuestError(f"{self.label}: the guest is already booted", hint="close() it before booting again")
        check_files(self.config)
        if prepared.enabled(self.config):
            argv = prepared.qemu_command(self.config)
        else:
            argv = vng_command(self.config, vng=vng_binary())
        log.info("+ %s", shlex.join(argv))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "w", encoding="utf-8", errors="replace")
        self._log_file.write(f"# {shlex.join(argv)}\n")
        started = time.monotonic()
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["TERM"] = "dumb"
        self._child = pexpect.spawn(
            argv[0], argv[1:], encoding="utf-8", codec_errors="replace", timeout=self.boot_timeout,
            dimensions=(50, 250), env=env, preexec_fn=_die_with_parent, searchwindowsize=_SEARCH_WINDOW,
        )
        self._child.logfile_read = _Tee(self._log_file, self._transcript, child=self._child)
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
        # The interactive shell puts a background job in its own process group, so setsid
        # forks and `$!` would name the short-lived parent: the script writes its own pid
        # (the new session's and process group's id, which close() signals). The subshell
        # keeps the job out of the shell's job table, whose "Done" notices would otherwise
        # land in the next command's output. A shell without job control starts background
        # jobs with SIGINT ignored, and Python then never raises KeyboardInterrupt, so a
        # tracer could not clean up on close(): env (coreutils 8.31+) restores the default.
        script = f"echo $$ > {out}.pid\n{command}\necho $? > {out}.rc"
        launch = (f"( setsid env --default-signal=INT bash -c {shlex.quote(script)} > {out} 2>&1 < /dev/null & );"
                  f" for i in $(seq 300); do [ -s {out}.pid ] && break; sleep 0.1; done; cat {out}.pid")
        result = self.run(launch, timeout=60)
        pid = int(result.output.strip().splitlines()[-1])
        return Process(guest=self, command=command, pid=pid, out=out, on_output=on_output)

    def guest_path(self, host: Path) -> str | None:
        """Where this guest sees the host path *host*; None when it cannot (a root-disk guest sees only shares)."""
        return guest_path(host, root_disk=self.config.root_disk is not None, rodirs=self.config.rodirs)

    def visible_path(self, host: Path) -> str:
        """A guest path with the contents of the host file *host*: where the guest sees it, else a copy.

        The copy travels through the console (base64, in chunks under the tty's line
        limit) into /tmp, so a student's program anywhere on the host reaches a
        root-disk guest without sharing its directory.
        """
        seen = self.guest_path(host)
        if seen is not None:
            return seen
        data = base64.b64encode(host.read_bytes()).decode()
        target = f"/tmp/.ebpf-lab-files/{secrets.token_hex(4)}/{host.name}"
        self.run(f"mkdir -p {shlex.quote(target.rsplit('/', 1)[0])}; : > {shlex.quote(target)}.b64", check=True, timeout=30)
        step = 3000
        for start in range(0, len(data), step):
            self.run(f"printf %s {data[start:start + step]} >> {shlex.quote(target)}.b64", check=True, timeout=30)
        self.run(f"base64 -d {shlex.quote(target)}.b64 > {shlex.quote(target)}", check=True, timeout=30)
        return target

    def out_of_memory(self, *, since: int | None = None) -> list[str]:
        """The processes the guest's OOM killer ended since transcript position *since*
        (default: since the current or last command was sent), as ``comm (pid N)``."""
        return console.oom_kills(self._transcript.since(self._command_mark if since is None else since))

    def transcript_mark(self) -> int:
        """A position in the transcript, for out_of_memory(since=...)."""
        return self._transcript.total

    def transcript(self) -> str:
        """What the console printed so far: all of it, or its last OUTPUT_KEPT characters (the log has all)."""
        return self._transcript.text()

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
        self._child.sendline(f"{_KILL_LEFTOVERS}; printf '%s-sync-%s:%s:%s\\n' {self.nonce} {self._spawn_count}"
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


#: Kills what a timed-out console command left behind: Ctrl-C reaches the foreground job
#: only, and background jobs (a fork bomb, `sleep 1000 &`) would slow or break every later
#: test on this guest. Processes of the console's session started after the shell are
#: killed (zombies only wait to be reaped), in rounds until none is left (at most ten, then
#: the guest is given up), with builtins only: under a fork bomb a fork may never succeed.
#: The session's leader (su) started before the shell; spawned tracers have sessions of their own.
_KILL_LEFTOVERS = (
    "read -r ebpflab_l 2>/dev/null < /proc/$$/stat; ebpflab_a=(${ebpflab_l##*) }); ebpflab_g=${ebpflab_a[3]};"
    " ebpflab_t=${ebpflab_a[19]}; ebpflab_n=0; for ebpflab_r in 1 2 3 4 5 6 7 8 9 10; do ebpflab_k=0;"
    " for ebpflab_f in /proc/[0-9]*/stat; do read -r ebpflab_l 2>/dev/null < $ebpflab_f || continue;"
    " ebpflab_a=(${ebpflab_l##*) }); ebpflab_p=${ebpflab_f#/proc/}; ebpflab_p=${ebpflab_p%/stat};"
    " [ \"${ebpflab_a[3]}\" = \"$ebpflab_g\" ] && [ \"${ebpflab_a[19]}\" -gt \"$ebpflab_t\" ] && [ $ebpflab_p != $$ ]"
    " && [ \"${ebpflab_a[0]}\" != Z ]"
    " && kill -9 $ebpflab_p 2>/dev/null && ebpflab_k=$((ebpflab_k+1)); done; ebpflab_n=$((ebpflab_n+ebpflab_k));"
    " [ $ebpflab_k = 0 ] && break; done"
)


#: Bytes of a spawned process's output one poll brings over the console (a second or two of
#: it): a program printing faster than the console carries would otherwise make every poll
#: longer than the last, until one outlasted its timeout (a lab check of such a program took
#: three minutes to say only "no output matching").
POLL_CHUNK = 256 * 1024


class Process:
    """A background process in the guest (a tracer): poll its output, wait for patterns."""

    def __init__(self, *, guest: Guest, command: str, pid: int, out: str, on_output: OutputSink | None) -> None:
        self.guest = guest
        self.command = command
        self.pid = pid
        self._out = out
        self._size = 0
        self._output = ""
        self.returncode: int | None = None
        self._on_output = on_output
        self._closed = False
        #: Bytes the process has printed that were not brought over yet (a program that
        #: prints faster than the console carries falls behind, and the verdict says so).
        self.backlog = 0

    @property
    def output(self) -> str:
        """What the process printed so far (as of the last poll; its last OUTPUT_KEPT characters)."""
        return self._output

    @property
    def status_file(self) -> str:
        """The guest file that holds the exit status once the process has ended (absent before)."""
        return f"{self._out}.rc"

    def poll(self) -> int | None:
        """Fetch new output; return the exit status once the process has ended."""
        f, n = self._out, self._size
        answer = self.guest.run(
            # The status first: once it exists the process has written all its output, so the
            # size read after it is final (read the other way round, the last lines could be lost).
            # At most POLL_CHUNK bytes come over at a time, and the status only with the last of them.
            f"r=$(cat {f}.rc 2>/dev/null); s=$(stat -c %s {f}); e=$((s > {n + POLL_CHUNK} ? {n + POLL_CHUNK} : s));"
            f" [ $e -lt $s ] && r=; tail -c +{n + 1} {f} | head -c $((e-{n}));"
            f" printf '\\n%s:%s:%s:%s\\n' {self.guest.nonce} \"$e\" \"$r\" $((s-e))",
            timeout=60,
        )
        new, size, status = console.parse_poll(answer.output, nonce=self.guest.nonce)
        self.backlog = console.poll_backlog(answer.output, nonce=self.guest.nonce)
        if new:
            self._output = (self._output + new)[-OUTPUT_KEPT:]
            if self._on_output is not None:
                self._on_output(new)
        self._size = size
        if status is not None:
            self.returncode = status
        return self.returncode

    def expect(self, pattern: str, *, timeout: float, interval: float = 0.25) -> re.Match[str]:
        """Wait until *pattern* (a regex) appears in the output; raise if the process ends first."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            status = self.poll()
            match = regex.search(self._output)
            if match:
                return match
            if status is not None:
                raise ProcessEnded(self, pattern)
            if time.monotonic() > deadline:
                raise CommandTimeout(
                    f"{self.guest.label}: {pattern!r} did not appear within {timeout:.0f}s of {self.command!r}",
                    hint="raise the timeout or check the program; its output is attached",
                    tail=console.tail(self._output), log_path=str(self.guest.log_path))
            time.sleep(interval)

    def wait(self, *, timeout: float, interval: float = 0.25) -> int:
        """Wait for the process to end and return its exit status."""
        deadline = time.monotonic() + timeout
        while (status := self.poll()) is None:
            if time.monotonic() > deadline:
                raise CommandTimeout(f"{self.guest.label}: {self.command!r} still running after {timeout:.0f}s",
                                     tail=console.tail(self._output), log_path=str(self.guest.log_path))
            time.sleep(interval)
        return status

    def close(self) -> None:
        """Interrupt the process (SIGINT, then SIGKILL) and collect its last output."""
        if self._closed:
            return
        self._closed = True
        if not self.guest.alive:
            return
        if self.returncode is None:
            self.guest.run(f"kill -INT -- -{self.pid} 2>/dev/null; for i in 1 2 3 4 5 6 7 8 9 10; do"
                           f" kill -0 -- -{self.pid} 2>/dev/null || break; sleep 0.3; done;"
                           f" kill -KILL -- -{self.pid} 2>/dev/null; true", timeout=30)
        # What it prints while being stopped (Python's KeyboardInterrupt traceback) is kept in
        # .output but not streamed: a live view should end with the trace, not with a traceback.
        self._on_output = None
        self.poll()

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ProcessEnded(GuestError):
    """A spawned process exited before printing what was expected."""

    def __init__(self, process: Process, pattern: str) -> None:
        super().__init__(
            f"{process.guest.label}: {process.command!r} exited with status {process.returncode} "
            f"before printing {pattern!r}: {console.last_error_line(process.output)}",
            tail=console.tail(process.output), log_path=str(process.guest.log_path))
        self.process = process


def _encode(command: str) -> str:
    """One console line for *command*; multi-line or long commands travel base64-encoded."""
    if "\n" not in command and len(command) < 1000 and command.isprintable():
        return command
    encoded = base64.b64encode(command.encode()).decode()
    if len(encoded) > _MAX_LINE:
        raise GuestError(f"command too long for the console ({len(command)} bytes)",
                         hint="put it in a file under a directory the guest can see and run that")
    return f"eval \"$(echo {encoded} | base64 -d)\""


class _Transcript:
    """Console text in memory: the newest *keep* characters, in chunks as they came."""

    def __init__(self, *, keep: int) -> None:
        self._keep = keep
        self._chunks: list[str] = []
        self._size = 0
        #: Characters ever appended: a mark for since().
        self.total = 0
        #: Characters of command output pexpect was made to forget (see _Tee).
        self.dropped_output = 0

    def append(self, text: str) -> None:
        self._chunks.append(text)
        self._size += len(text)
        self.total += len(text)
        if self._size > 2 * self._keep:  # Trimmed at twice the size: amortized O(1) per chunk.
            kept = "".join(self._chunks)[-self._keep:]
            self._chunks, self._size = [kept], len(kept)

    def text(self) -> str:
        return "".join(self._chunks)[-self._keep:]

    def since(self, mark: int) -> str:
        """What was appended after *total* was *mark* (as much of it as is kept)."""
        return self.text()[-(self.total - mark):] if self.total > mark else ""


class _Tee:
    """pexpect's logfile: the transcript on disk and in memory, and a bound on pexpect's own.

    pexpect keeps all output since the last match for ``child.before``, which has no
    bound of its own; it is cut here to its newest half of OUTPUT_KEPT when it outgrows
    that (through pexpect's private ``_before``, which every 4.x release has: without it
    only the bound is lost).
    """

    def __init__(self, file, transcript: _Transcript, *, child: pexpect.spawn) -> None:  # type: ignore[no-untyped-def]
        self._file = file
        self._transcript = transcript
        self._child = child

    def write(self, text: str) -> None:
        self._transcript.append(text)
        before = getattr(self._child, "_before", None)
        if before is not None and before.tell() > OUTPUT_KEPT:
            kept = before.getvalue()[-OUTPUT_KEPT // 2:]
            self._transcript.dropped_output += before.tell() - len(kept)
            self._child._before = self._child.buffer_type()
            self._child._before.write(kept)
        self._file.write(text)
        # Flushed as it comes: the log is what a user reads while a guest hangs.
        self._file.flush()

    def flush(self) -> None:
        self._file.flush()


def _die_with_parent() -> None:
    """In the child before exec: receive SIGKILL if the Python process that started it dies."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


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
