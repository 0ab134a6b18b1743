"""From a catalog entry to a booted guest: fetch, pick the accelerator, size timeouts, boot.

The CLI, the pytest plugin and the benchmark all go through here, so they boot
guests the same way.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from . import accel as accel_mod
from . import rootfs as rootfs_mod
from .arches import host_arch
from .catalog import KernelSpec
from .errors import HostError
from .fetch import KernelFiles, Progress, fetch
from .guest import Guest
from .settings import guest_cpus, logs_dir, sized_guest_memory, timeout_scale
from .vm import VMConfig, guest_shell, root_disk_shares

#: Timeouts under KVM; TCG multiplies them (emulation is ~10x slower, and CI runs two guests at once).
BASE_BOOT_TIMEOUT = 60.0
BASE_COMMAND_TIMEOUT = 60.0
TCG_FACTOR = 3.0
#: Extra factor for a guest of another architecture than the host's.
FOREIGN_FACTOR = 3.0


_serial = itertools.count(1)


@dataclass(frozen=True)
class Kernel:
    """A kernel under test, ready to boot."""

    spec: KernelSpec
    files: KernelFiles
    #: The guest's own root filesystem; None when it boots on the host's userland.
    rootfs: rootfs_mod.RootFS | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def arch(self) -> str:
        return self.spec.arch.name

    @property
    def release(self) -> str:
        """``uname -r`` in the guest."""
        return self.files.release

    @property
    def version(self) -> str:
        """Upstream version, e.g. ``6.1.176`` (falls back to the series)."""
        match = re.match(r"(\d+\.\d+(?:\.\d+)?)", self.files.version)
        return match.group(1) if match else self.spec.series


@dataclass(frozen=True)
class Timeouts:
    """Seconds each kind of wait may take."""

    boot: float
    command: float
    attach: float


def timeouts_for(*, kvm: bool, boot: float | None = None, command: float | None = None,
                 foreign: bool = False) -> Timeouts:
    """Timeouts scaled for the accelerator and ``$EBPF_LAB_TIMEOUT_SCALE``; explicit values win.

    A *foreign* guest (arm64 on x86_64) is emulated instruction by instruction, BCC's
    LLVM included: measured 2-4x slower again than an emulated native guest.
    """
    scale = timeout_scale() * (1.0 if kvm else TCG_FACTOR) * (FOREIGN_FACTOR if foreign else 1.0)
    return Timeouts(
        boot=boot if boot else BASE_BOOT_TIMEOUT * scale,
        command=command if command else BASE_COMMAND_TIMEOUT * scale,
        attach=BASE_COMMAND_TIMEOUT * scale,
    )


def needs_rootfs(spec: KernelSpec) -> bool:
    """A foreign-architecture guest cannot run the host's userland: it boots its own, as does
    any guest asked to (``--userland debian``)."""
    return spec.own_userland or is_foreign(spec)


def is_foreign(spec: KernelSpec) -> bool:
    """The guest's architecture is not the host's: every instruction is emulated."""
    return spec.arch.debian != host_arch().debian


def prepare(spec: KernelSpec, *, progress: Progress = lambda _: None) -> Kernel:
    """Fetch *spec* if needed (a no-op when cached). Its root filesystem, if it needs one, is built at first boot."""
    return Kernel(spec=spec, files=fetch(spec, progress=progress))


def with_rootfs(kernel: Kernel, *, progress: Progress = lambda _: None) -> Kernel:
    """*kernel* with its root filesystem built (foreign arch), or unchanged when it boots on the host's root."""
    if kernel.rootfs is not None or not needs_rootfs(kernel.spec):
        return kernel
    spec = kernel.spec
    if not spec.userland:
        raise HostError(f"kernel {spec.id} needs a Debian userland to boot and names none",
                        hint=f"add userland = \"bookworm\" (or another suite) to {spec.path}")
    root = rootfs_mod.ensure(suite=spec.userland, arch=spec.arch, kernel=kernel.files, progress=progress)
    return Kernel(spec=spec, files=kernel.files, rootfs=root)


def choose_accel(kernel: Kernel) -> accel_mod.Accel:
    """KVM or TCG for *kernel*: foreign architectures are always emulated."""
    if kernel.spec.arch.debian != host_arch().debian:
        return accel_mod.Accel("tcg", f"{kernel.spec.arch.name} guest on a {host_arch().name} host is emulated")
    return accel_mod.detect(probe_image=kernel.files.image, qemu=kernel.spec.arch.qemu)


def check_host(kernel: Kernel) -> None:
    """Fail early, in one line, when QEMU or virtme-ng is missing."""
    import shutil

    if not shutil.which(kernel.spec.arch.qemu):
        package = {"x86_64": "qemu-system-x86", "aarch64": "qemu-system-arm", "riscv64": "qemu-system-misc"}
        raise HostError(f"{kernel.spec.arch.qemu} not found, needed to boot {kernel.id}",
                        hint=f"apt-get install {package.get(kernel.spec.arch.name, 'qemu-system')} (or run 'lab setup')")
    if not shutil.which("vng"):
        raise HostError("virtme-ng (vng) not found", hint="pip install virtme-ng (or run 'lab setup')")


def new_guest(kernel: Kernel, *, accel: accel_mod.Accel, timeouts: Timeouts, append: tuple[str, ...] = (),
              log_path: Path | None = None, memory: str | None = None, progress: Progress = lambda _: None) -> Guest:
    """A Guest for *kernel*, not booted yet; its memory is sized from the host unless *memory* is given,
    and *progress* hears one line when that makes it smaller than usual."""
    check_host(kernel)
    if memory is None:
        memory, note = sized_guest_memory()
        if note:
            progress(note)
    if log_path is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        log_path = logs_dir() / f"{kernel.id}-{stamp}-{os.getpid()}-{next(_serial)}.log"
    config = vm_config(kernel, accel=accel, append=append, memory=memory, progress=progress)
    return Guest(config=config, log_path=log_path, boot_timeout=timeouts.boot, command_timeout=timeouts.command,
                 label=kernel.id)


def vm_config(kernel: Kernel, *, accel: accel_mod.Accel, append: tuple[str, ...] = (),
              memory: str | None = None, progress: Progress = lambda _: None) -> VMConfig:
    """How *kernel* boots: on the host's root, or from its own root disk with the lab package shared."""
    kernel = with_rootfs(kernel, progress=progress)
    memory = memory or sized_guest_memory()[0]
    if kernel.rootfs is None:
        return VMConfig(image=kernel.files.image, arch=kernel.spec.arch, kvm=accel.kvm, append=append, memory=memory,
                        cpus=guest_cpus(kvm=accel.kvm), fast_dirs=(kernel.files.root,) if kernel.spec.source != "local" else ())
    shares = root_disk_shares()
    return VMConfig(
        # The image beside its own lib/modules, so virtme-ng exports the right modules.
        image=kernel.rootfs.kernel_image, arch=kernel.spec.arch, kvm=accel.kvm, append=append, memory=memory,
        cpus=guest_cpus(kvm=accel.kvm), root_disk=kernel.rootfs.disk, root_fstype="ext4", busybox=kernel.rootfs.busybox,
        rodirs=shares, shell=guest_shell(shares),
    )
