"""How long a guest may take for each kind of wait: one policy, one value a guest carries.

The CLI, the pytest plugin, the benchmark, the lab runner and the tests all read the
:class:`Timeouts` a guest was booted with (``guest.timeouts``) instead of scaling on their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.settings import timeout_scale

#: Seconds under KVM on an idle host; everything else is a multiple of these.
BASE_BOOT_TIMEOUT = 60.0
BASE_COMMAND_TIMEOUT = 60.0
#: TCG emulates every instruction (~10x slower than KVM), and CI runs two guests on two shared cores.
TCG_FACTOR = 3.0
#: A guest of another architecture (arm64 on x86_64) is emulated instruction by instruction, BCC's
#: LLVM included: measured 2-4x slower again than an emulated native guest.
FOREIGN_FACTOR = 3.0
#: A lab program's attach is BCC's import and clang compile, the longest wait of a lab: three
#: command timeouts, what the tests gave it before this policy (two guests compile at once in CI).
ATTACH_COMMANDS = 3.0
#: Multiplier of a lab's own ``expect_timeout`` under TCG. The trace after the trigger is the
#: kernel running the probe and the program printing (under 2 s even on an emulated arm64 guest),
#: and a wrong program waits this out in full, so it grows less than the other waits.
TCG_EXPECT_FACTOR = 2.0


@dataclass(frozen=True)
class Timeouts:
    """Seconds each kind of wait may take in one guest."""

    #: Start of QEMU until the console shell's first prompt.
    boot: float
    #: One console command, unless the caller gives its own timeout.
    command: float
    #: A lab program's start until its probes are attached (BCC import + compile + load + attach).
    attach: float
    #: What a lab's ``expect_timeout`` (trigger until the expected output) is multiplied by.
    expect_scale: float = 1.0


def timeouts_for(*, kvm: bool, foreign: bool = False, boot: float | None = None, command: float | None = None,
                 scale: float | None = None) -> Timeouts:
    """The timeouts of a guest under KVM or TCG, of the host's arch or a *foreign* one.

    *boot* and *command* (``--boot-timeout``/``--command-timeout``, their ini values) are taken
    as given; an explicit command timeout can lengthen the attach wait but never shorten it.
    *scale* is the user's multiplier (default: ``$EBPF_LAB_TIMEOUT_SCALE``); with it given this is a pure function.
    """
    user = timeout_scale() if scale is None else scale
    machine = (1.0 if kvm else TCG_FACTOR) * (FOREIGN_FACTOR if foreign else 1.0)
    default_command = BASE_COMMAND_TIMEOUT * user * machine
    return Timeouts(
        boot=boot or BASE_BOOT_TIMEOUT * user * machine,
        command=command or default_command,
        attach=ATTACH_COMMANDS * max(command or 0.0, default_command),
        expect_scale=user * (1.0 if kvm else TCG_EXPECT_FACTOR),
    )
