"""The guests of one pytest session: one per kernel, booted on first use, booted again after a crash."""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.boot import accel as accel_mod
from lab.errors import BootTimeout, GuestError, HostError, LabError
from lab.guest import kernel as guest_kernel
from lab.guest.guest import Guest
from lab.guest.timeouts import timeouts_for
from lab.kernels.fetch import Progress


class NotBooted(LabError):
    """A kernel whose guest did not boot, now or earlier in the session."""


@dataclass
class GuestPool:
    """Guests by kernel id, with what the session's options say about booting them."""

    #: ``--boot-timeout``/``--command-timeout`` (None: the timeout policy's).
    boot_timeout: float | None = None
    command_timeout: float | None = None
    #: ``--kernel-args``: words added to every guest's kernel command line.
    kernel_args: tuple[str, ...] = ()
    guests: dict[str, Guest] = field(default_factory=dict)
    #: Boot times per kernel, in the order the guests booted.
    boots: dict[str, list[float]] = field(default_factory=dict)
    accel: dict[str, accel_mod.Accel] = field(default_factory=dict)
    #: Kernels whose boot failed, with the error: their other tests fail at once.
    failures: dict[str, str] = field(default_factory=dict)

    def get(self, kernel: guest_kernel.Kernel, *, progress: Progress = lambda _: None) -> tuple[Guest, bool]:
        """A live guest of *kernel*, and whether it was booted just now; NotBooted when it cannot be.
        *progress* hears what a boot says of itself (a root filesystem built, smaller guests)."""
        if kernel.id in self.failures:
            # A kernel that did not boot will not boot for the next test either: fail fast
            # instead of waiting out the boot timeout once per test.
            raise NotBooted(f"{kernel.id}: not booted, an earlier boot in this session failed: {self.failures[kernel.id]}")
        guest = self.guests.get(kernel.id)
        if guest is not None and guest.alive:
            return guest, False
        if guest is not None:
            guest.close()
        try:
            guest = self._boot(kernel, progress=progress)
        except LabError as error:
            if isinstance(error, (BootTimeout, HostError)) or not self.boots.get(kernel.id):
                self.failures[kernel.id] = str(error)
            tail = error.tail if isinstance(error, GuestError) else ""
            raise NotBooted(str(error) + (f"\n--- last console lines ---\n{tail}" if tail else "")) from None
        self.guests[kernel.id] = guest
        self.boots.setdefault(kernel.id, []).append(guest.boot_seconds or 0.0)
        return guest, True

    def _boot(self, kernel: guest_kernel.Kernel, *, progress: Progress) -> Guest:
        verdict = self.accel.get(kernel.id) or guest_kernel.choose_accel(kernel)
        self.accel[kernel.id] = verdict
        timeouts = timeouts_for(kvm=verdict.kvm, foreign=kernel.spec.foreign, boot=self.boot_timeout,
                                command=self.command_timeout)
        guest = guest_kernel.new_guest(kernel, accel=verdict, timeouts=timeouts, append=self.kernel_args,
                                  progress=progress)
        return guest.boot()

    def close(self, kernel_id: str) -> None:
        """Stop *kernel_id*'s guest, if it has one."""
        guest = self.guests.pop(kernel_id, None)
        if guest is not None:
            guest.close()

    def close_all(self) -> None:
        for kernel_id in list(self.guests):
            self.close(kernel_id)
