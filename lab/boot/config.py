"""The virtme-ng command line for a guest: built here as data, run by ``guest.py``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lab.errors import HostError
from lab.host import tools
from lab.host.resources import package_dir
from lab.kernels.arches import Arch

#: The console shell that makes the guest predictable for pexpect.
SHELL = package_dir("lab.boot", "guest_files") / "shell.sh"
#: The console shell of ``lab shell``, for a person at the terminal.
INTERACTIVE_SHELL = SHELL.with_name("interactive.sh")
#: The lab package directory (console shell, labs), which root-disk guests see at GUEST_LAB_DIR.
LAB_PACKAGE = package_dir("lab")
#: Where a root-disk guest finds LAB_PACKAGE: under /run, a tmpfs by the time virtme-ng's
#: init mounts shared directories (the image itself is mounted read-only, so no new mount points there).
GUEST_LAB_DIR = "/run/ebpf-lab/lab"


@dataclass(frozen=True)
class VMConfig:
    """Everything that decides how one guest boots."""

    #: Kernel image to boot.
    image: Path
    #: Guest architecture.
    arch: Arch
    #: Use KVM (else TCG emulation).
    kvm: bool
    #: Guest memory, QEMU syntax.
    memory: str = "2G"
    #: Guest CPUs.
    cpus: int = 2
    #: Root filesystem image for guests that cannot use the host's userland (foreign arch).
    root_disk: Path | None = None
    #: Filesystem type of *root_disk*.
    root_fstype: str = "ext4"
    #: busybox for the guest's early init (a foreign guest needs its own).
    busybox: Path | None = None
    #: Extra kernel command line words.
    append: tuple[str, ...] = ()
    #: Extra QEMU options.
    qemu_opts: tuple[str, ...] = field(default=())
    #: Guest hostname.
    name: str = "ebpf-lab"
    #: Host directories read heavily in the guest (kernel headers), served through a cached 9p mount.
    cached_dirs: tuple[Path, ...] = ()
    #: Host directories shared read-only, as (guest path, host path): a root-disk guest sees no host path otherwise.
    rodirs: tuple[tuple[str, Path], ...] = ()
    #: The console shell as the guest sees it (default: SHELL, visible when the guest uses the host's root).
    shell: str = ""


def root_disk_shares() -> tuple[tuple[str, Path], ...]:
    """What a root-disk guest needs from the host: the lab package (console shell and labs)."""
    return ((GUEST_LAB_DIR, LAB_PACKAGE),)


def guest_shell(rodirs: tuple[tuple[str, Path], ...], *, interactive: bool = False) -> str:
    """The console shell's path in a guest that has *rodirs*: ours for pexpect, or one for a person."""
    shell = INTERACTIVE_SHELL if interactive else SHELL
    path = guest_path(shell, root_disk=True, rodirs=rodirs)
    if path is None:
        raise HostError(f"the console shell {shell} is not shared with the guest", hint="report this")
    return path


def guest_path(host: Path, *, root_disk: bool, rodirs: tuple[tuple[str, Path], ...]) -> str | None:
    """Where the guest sees the host path *host*, or None when it cannot see it.

    A guest on the host's root sees every host path as it is; a root-disk guest
    only what is shared with it.
    """
    host = host.resolve()
    if not root_disk:
        return str(host)
    for guest_dir, host_dir in rodirs:
        host_dir = host_dir.resolve()
        if host == host_dir or host_dir in host.parents:
            rel = host.relative_to(host_dir)
            return guest_dir if rel == Path() else f"{guest_dir}/{rel.as_posix()}"
    return None


def vng_binary() -> str:
    """The full path of virtme-ng's ``vng`` (see lab.host.tools for where it is looked for)."""
    return tools.require("vng", needed_for="booting a guest")


def check_files(config: VMConfig) -> None:
    """Fail in one line before starting vng when a file the guest boots from is missing."""
    if not config.image.is_file():
        raise HostError(f"kernel image {config.image} does not exist",
                        hint="run 'lab fetch' for this kernel (a damaged cache entry is fetched again)")
    if config.busybox is not None and not config.busybox.is_file():
        raise HostError(f"busybox {config.busybox} not found, needed to boot a {config.arch.name} guest",
                        hint="apt-get install busybox-static (or run 'lab setup')")
    if config.root_disk is not None and not config.root_disk.is_file():
        raise HostError(f"root disk {config.root_disk} does not exist", hint="build it again with 'lab fetch'")


#: Boot-time work a lab guest does not need, found with initcall_debug (see vng_command).
SKIPPED_INITCALLS = "initcall_blacklist=jent_mod_init,crypto_kdf108_init,init_encrypted"


def vng_command(config: VMConfig, *, vng: str = "vng") -> list[str]:
    """The virtme-ng argv that boots *config* with its console shell (``config.shell``)."""
    argv = [vng, "--run", str(config.image), "--memory", config.memory, "--cpus", str(config.cpus),
            "--name", config.name,
            # virtiofsd fails to start here and costs seconds before virtme-ng falls back to 9p.
            "--force-9p"]
    argv += ["--shell", config.shell or str(SHELL)]
    if config.arch.foreign:
        argv += ["--arch", config.arch.vng]
    if not config.kvm:
        argv.append("--disable-kvm")
    if config.root_disk is not None:
        argv += ["--root-disk", str(config.root_disk), "--root-fstype", config.root_fstype]
        # Our init (rootdisk_init.sh) lives in the initramfs, which virtme-ng leaves out when the
        # kernel has virtio_blk, ext4 and 9p built in (Debian's s390x): it would boot the disk bare.
        argv.append("--force-initramfs")
    if config.busybox is not None:
        argv += ["--busybox", str(config.busybox)]
    for guest_dir, host_dir in config.rodirs:
        argv.append(f"--rodir={guest_dir}={host_dir}")
    # Kernel messages at loglevel 4 and up only: a panic still shows, boot chatter does not slow the console.
    # panic=-1 reboots at once on a panic and -no-reboot turns that reboot into QEMU exiting, so a
    # crashed guest is seen as dead within a second instead of after a command timeout (virtme-ng
    # does the same for --exec scripts, but not for a --shell session).
    # cryptomgr.notests: the kernel's self-tests of its crypto algorithms took 0.7 s of an
    # emulated arm64 boot (initcall_debug), and a throw-away lab guest encrypts nothing. The
    # initcalls skipped are three more self-tests and key setup of no use to a lab guest
    # (jitterentropy, SP800-108 KDF, encrypted keys): 0.39 s of a 6.12-arm64 boot.
    for word in ("loglevel=4", "panic=-1", "cryptomgr.notests", SKIPPED_INITCALLS, *config.append):
        argv += ["--append", word]
    opts: tuple[str, ...] = ("-no-reboot",)
    if config.arch.emulated_cpu and config.arch.foreign:
        # QEMU takes the last -cpu: this one, after virtme-ng's.
        opts += ("-cpu", config.arch.emulated_cpu)
    if config.arch.emulated_machine and config.arch.foreign:
        opts += ("-machine", config.arch.emulated_machine)
    # The '=' form: a value that starts with '-' would otherwise be taken for an option of vng.
    for opt in (*opts, *config.qemu_opts):
        argv.append(f"--qemu-opts={opt}")
    return argv
