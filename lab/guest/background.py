"""A background process in a guest (a tracer): started by ``Guest.spawn``, polled over the console."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from lab.errors import CommandTimeout, GuestError
from lab.guest import console
from lab.guest import shell as guest_shell
from lab.guest.transcript import OUTPUT_KEPT

if TYPE_CHECKING:
    from lab.guest.guest import Guest

#: Called with each chunk of text a spawned process prints (for live display).
OutputSink = Callable[[str], None]


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
        answer = self.guest.run(guest_shell.poll(out=self._out, size=self._size, nonce=self.guest.nonce,
                                                 chunk=POLL_CHUNK), timeout=60)
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
            self.guest.run(guest_shell.stop(self.pid), timeout=30)
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
