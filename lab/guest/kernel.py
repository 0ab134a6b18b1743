"""From a catalog entry to a booted guest: fetch, pick the accelerator, boot.

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

from lab.boot import accel as accel_mod
from lab.boot.config import INTERACTIVE_SHELL, VMConfig, guest_shell, root_disk_shares
from lab.errors import HostError
from lab.guest import features
from lab.guest.guest import Guest
from lab.guest.timeouts import Timeouts
from lab.host import tools
from lab.kernels import rootfs as rootfs_mod
from lab.kernels.arches import host_arch
from lab.kernels.catalog import KernelSpec
from lab.kernels.fetch import KernelFiles, Progress, fetch
from lab.settings import guest_cpus, logs_dir, sized_guest_memory

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
    def features(self):  # type: ignore[no-untyped-def]
        """The kernel's BPF features (lab.guest.features.Features) if it was ever probed, else None:
        the ``bpf_features`` fixture and ``lab features`` probe it."""
        return features.cached(self)

    @property
    def version(self) -> str:
        """Upstream version, e.g. ``6.1.176`` (falls back to the series)."""
        match = re.match(r"(\d+\.\d+(?:\.\d+)?)", self.files.version)
        return match.group(1) if match else self.spec.series


def needs_rootfs(spec: KernelSpec) -> bool:
    """A foreign-architecture guest cannot run the host's userland: it boots its own, as does
    any guest asked to (``--userland debian``)."""
    return spec.own_userland or spec.foreign


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
    if kernel.spec.foreign:
        return accel_mod.Accel("tcg", f"{kernel.spec.arch.name} guest on a {host_arch().name} host is emulated")
    return accel_mod.detect(probe_image=kernel.files.image, qemu=kernel.spec.arch.qemu)


def check_host(kernel: Kernel) -> None:
    """Fail early, in one line, when QEMU or virtme-ng is missing."""
    tools.require(kernel.spec.arch.qemu, needed_for=f"booting {kernel.id}")
    tools.require("vng", needed_for=f"booting {kernel.id}")


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
    return Guest(config=config, log_path=log_path, timeouts=timeouts, label=kernel.id)


def vm_config(kernel: Kernel, *, accel: accel_mod.Accel, append: tuple[str, ...] = (), memory: str | None = None,
              interactive: bool = False, progress: Progress = lambda _: None) -> VMConfig:
    """How *kernel* boots: on the host's root, or from its own root disk with the lab package shared;
    with the console shell for pexpect, or (*interactive*) one for a person (``lab shell``)."""
    kernel = with_rootfs(kernel, progress=progress)
    memory = memory or sized_guest_memory()[0]
    if kernel.rootfs is None:
        return VMConfig(image=kernel.files.image, arch=kernel.spec.arch, kvm=accel.kvm, append=append, memory=memory,
                        cpus=guest_cpus(kvm=accel.kvm), cached_dirs=(kernel.files.root,) if kernel.spec.source != "local" else (),
                        shell=str(INTERACTIVE_SHELL) if interactive else "")
    shares = root_disk_shares()
    return VMConfig(
        # The image beside its own lib/modules, so virtme-ng exports the right modules.
        image=kernel.rootfs.kernel_image, arch=kernel.spec.arch, kvm=accel.kvm, append=append, memory=memory,
        cpus=guest_cpus(kvm=accel.kvm), root_disk=kernel.rootfs.disk, root_fstype="ext4", busybox=kernel.rootfs.busybox,
        rodirs=shares, shell=guest_shell(shares, interactive=interactive),
    )
