"""What ebpf-lab knows about each CPU architecture: data only."""

from __future__ import annotations

from dataclasses import dataclass

from lab.errors import UsageError


@dataclass(frozen=True)
class Arch:
    """One guest architecture."""

    #: The name the kernel and QEMU use (``uname -m``): x86_64, aarch64, riscv64.
    name: str
    #: Debian's name for it (package architecture): amd64, arm64, riscv64.
    debian: str
    #: virtme-ng's ``--arch`` value.
    vng: str
    #: QEMU system emulator binary.
    qemu: str
    #: Prefix of syscall entry points, so ``execve`` becomes e.g. ``__x64_sys_execve``.
    syscall_prefix: str
    #: virtme-run's ``--arch`` (which builds the initramfs), where vng's name differs: vng takes
    #: Debian's ``ppc64el`` and hands ``ppc64`` on (virtme_ng.run.ARCH_MAPPING); empty: *vng*.
    virtme: str = ""
    #: QEMU ``-cpu`` when emulated on another architecture (empty: virtme-ng's choice).
    emulated_cpu: str = ""
    #: QEMU ``-machine`` when emulated, after virtme-ng's (QEMU merges the two; empty: virtme-ng's alone).
    emulated_machine: str = ""
    #: Packages of the guest root filesystem a Debian suite has none of for this arch, as
    #: (suite, package): left out of its root filesystem, and labs needing them are skipped.
    missing_packages: tuple[tuple[str, str], ...] = ()
    #: Byte order: s390x is the one big-endian arch here (BPF objects for it are built ``-target bpfeb``).
    big_endian: bool = False

    def missing_in(self, suite: str) -> tuple[str, ...]:
        """The packages Debian's *suite* has none of for this arch."""
        return tuple(package for missing_suite, package in self.missing_packages if missing_suite == suite)

    @property
    def foreign(self) -> bool:
        """Not the host's architecture: a guest of it is emulated instruction by instruction (TCG)."""
        return self.debian != host_arch().debian


ARCHES: dict[str, Arch] = {
    a.debian: a
    for a in (
        Arch(name="x86_64", debian="amd64", vng="x86_64", qemu="qemu-system-x86_64", syscall_prefix="__x64_sys_"),
        # virtme-ng picks cortex-a57 (ARMv8.0) under TCG. With 'max', glibc and LLVM use LSE
        # atomics and newer instructions that TCG maps to the host's more directly; pointer
        # authentication (QARMA, costly to emulate) and SVE stay off. Measured on 6.1 (bookworm
        # userland): BCC's compile 27.9 s -> 21.2 s cold, 27.3 s -> 16.9 s warm.
        Arch(name="aarch64", debian="arm64", vng="arm64", qemu="qemu-system-aarch64", syscall_prefix="__arm64_sys_",
             emulated_cpu="max,pauth=off,sve=off"),
        Arch(name="riscv64", debian="riscv64", vng="riscv64", qemu="qemu-system-riscv64", syscall_prefix="__riscv_sys_"),
        Arch(name="s390x", debian="s390x", vng="s390x", qemu="qemu-system-s390x", syscall_prefix="__s390x_sys_",
             big_endian=True),
        # trixie has no bpftrace for ppc64el (sid has).
        # VOF (QEMU's minimal Virtual Open Firmware) instead of SLOF, which probes every device in
        # emulated Forth before the kernel starts: 7.2-ppc64el's boot to the shell went from
        # 18.1 s and 16.0 s to 9.3 s and 7.6 s (bench/hello.py, alternating, another guest running).
        Arch(name="ppc64le", debian="ppc64el", vng="ppc64el", virtme="ppc64", qemu="qemu-system-ppc64",
             syscall_prefix="sys_", emulated_machine="pseries,x-vof=on",
             missing_packages=(("trixie", "bpftrace"),)),
    )
}


def get_arch(name: str) -> Arch:
    """Look an architecture up by any of its names (``x86_64``/``amd64``, ``aarch64``/``arm64``)."""
    for arch in ARCHES.values():
        if name in (arch.name, arch.debian, arch.vng):
            return arch
    raise UsageError(f"unknown arch {name!r}", hint=f"use one of {', '.join(ARCHES)}")


def host_arch() -> Arch:
    """The architecture of the machine ebpf-lab runs on."""
    import platform

    return get_arch(platform.machine())
