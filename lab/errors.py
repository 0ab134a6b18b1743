"""One exception hierarchy for ebpf-lab.

Every error carries a message that says what failed (which kernel, which arch)
and what the user can do about it. The CLI prints ``str(error)`` on one line and
exits with ``error.exit_code``; the pytest plugin turns them into failures.
"""

from __future__ import annotations


class LabError(Exception):
    """Root of every error ebpf-lab raises on purpose."""

    #: Exit code of the ``lab`` command for this kind of error.
    exit_code = 1

    def __init__(self, message: str, *, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}: {hint}" if hint else message)


class UsageError(LabError):
    """The user asked for something that does not exist (kernel, arch, lab)."""

    exit_code = 2


class CatalogError(LabError):
    """A catalog file is malformed."""

    exit_code = 2


class HostError(LabError):
    """The host lacks something (QEMU, virtme-ng, busybox, apt)."""

    exit_code = 3


class FetchError(LabError):
    """A kernel or root filesystem could not be downloaded or unpacked."""

    exit_code = 4


class ProcessTimeout(LabError):
    """A program on the host (apt-get, mmdebstrap, virtme-ng) did not finish in time.

    It exits like the failure of that program would (a fetch that times out like a failed
    fetch), so scripts that tell exit codes apart need no new case.
    """

    exit_code = 3

    def __init__(self, message: str, *, hint: str = "", exit_code: int | None = None) -> None:
        super().__init__(message, hint=hint)
        if exit_code is not None:
            self.exit_code = exit_code


class CompileError(LabError):
    """clang rejected BPF C on the host (a CO-RE object, the core lab): *output* has its diagnostics."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "", output: str = "") -> None:
        super().__init__(message, hint=hint)
        self.output = output


class GuestError(LabError):
    """Something went wrong inside or with the guest VM."""

    exit_code = 5

    def __init__(self, message: str, *, hint: str = "", tail: str = "", log_path: str = "") -> None:
        super().__init__(message, hint=hint)
        #: The last lines the guest printed, for the report.
        self.tail = tail
        #: Where the whole console transcript was written.
        self.log_path = log_path


class BootTimeout(GuestError):
    """The guest never reached its shell prompt."""


class CommandTimeout(GuestError):
    """A command in the guest did not finish in time."""


class GuestPanic(GuestError):
    """The guest kernel panicked (or QEMU died under us)."""


class GuestExited(GuestError):
    """QEMU exited while we were waiting for the guest."""


class LabFailure(LabError):
    """A lab's expectation did not hold (the BPF program failed or printed the wrong thing)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "", output: str = "", kind: str = "") -> None:
        super().__init__(message, hint=hint)
        #: What the program printed, so a student sees the compiler's own words.
        self.output = output
        #: Which kind of failure (lab.labs.runner.FAILURE_KINDS), e.g. "compile" or "no_output".
        self.kind = kind
