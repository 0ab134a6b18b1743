"""Debian root filesystems for guests that cannot use the host's userland.

A foreign-architecture guest (arm64, riscv64 on an x86_64 host) needs its own
python3 and BCC. ``mmdebstrap --variant=extract`` unpacks the packages for the
target (suite, arch) without running any of their code, so no binfmt/qemu-user
is needed; the few things maintainer scripts would have done are fixed up here.
The kernel under test (image, modules, headers) is copied in, so
``/lib/modules/<release>/build`` resolves inside the guest.

A rootfs is cached when ``<cache>/rootfs/<suite>-<arch>-<kernel id>/rootfs.json``
exists: it is built in a temporary directory beside it and renamed into place,
under a lock, like kernels. The guest boots from ``root.ext4`` made from the tree
with ``mkfs.ext4 -d``: a block device is 2-3x faster than 9p for BCC, which reads
some 16,000 header files per compile.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from lab.errors import FetchError
from lab.host import integrity, process, tools
from lab.host.locks import fill_once
from lab.kernels import bytecode, pybuilder
from lab.kernels.apt import KEYRING, failure_line, system_mirror
from lab.kernels.arches import Arch, host_arch
from lab.kernels.diskimage import BUILD_HINT, make_image
from lab.kernels.fetch import KernelFiles, Progress
from lab.settings import cache_dir

log = logging.getLogger(__name__)

#: What a guest needs: BCC and its Python, the shells and tools virtme-ng's init and
#: our console shell use, and busybox for virtme-ng's initramfs.
PACKAGES = (
    "python3", "python3-bpfcc", "dash", "bash", "coreutils", "sed", "grep", "findutils", "util-linux",
    "mount", "kmod", "procps", "hostname", "busybox-static", "iproute2",
    # su (virtme-ng starts the console shell through it) needs PAM's modules.
    "libpam-modules", "libpam-runtime", "base-files",
    # BPF beyond BCC: libbpf loads CO-RE objects (lab load, the core lab); bpftool and bpftrace.
    "libbpf1", "bpftool", "bpftrace",
)



def packages_for(arch: Arch, *, suite: str) -> tuple[str, ...]:
    """PACKAGES less those *suite* has none of for *arch* (trixie's bpftrace on ppc64el); labs needing them are skipped."""
    return tuple(p for p in PACKAGES if p not in arch.missing_in(suite))


#: Bump when the contents change in a way that old cached trees lack.
LAYOUT = 4

#: Minimal account databases: virtme-ng's init runs ``su root`` and mounts devpts with gid=tty.
PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
GROUP = "root:x:0:\ntty:x:5:\ndisk:x:6:\nkmem:x:15:\nnogroup:x:65534:\n"
SHADOW = "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n"
#: pam-auth-update (a maintainer script) writes these; su includes them.
PAM_COMMON = {
    "common-auth": "auth [success=1 default=ignore] pam_rootok.so\nauth requisite pam_deny.so\nauth required pam_permit.so\n",
    "common-account": "account required pam_permit.so\n",
    "common-session": "session required pam_permit.so\n",
    "common-session-noninteractive": "session required pam_permit.so\n",
    "common-password": "password required pam_deny.so\n",
}
#: Commands systemd would provide; busybox does them (virtme-ng's init ends with ``poweroff -f``).
BUSYBOX_APPLETS = ("poweroff", "reboot", "halt")


@dataclass(frozen=True)
class RootFS:
    """A cached root filesystem for one (suite, arch, kernel)."""

    #: ``<suite>-<arch>-<kernel id>``.
    name: str
    #: The unpacked tree.
    tree: Path
    #: The ext4 image the guest boots from.
    disk: Path
    #: The guest's own busybox, as a host path (virtme-ng puts it in the initramfs).
    busybox: Path
    #: The kernel image, in ``kernel/boot`` beside ``kernel/lib/modules`` (where virtme-ng finds the modules).
    kernel_image: Path
    #: Bytes of the image file.
    size: int

    @classmethod
    def load(cls, manifest: Path) -> RootFS:
        data = json.loads(manifest.read_text())
        root = manifest.parent
        return cls(name=data["name"], tree=root / "tree", disk=root / data["disk"], busybox=root / data["busybox"],
                   kernel_image=root / data["kernel_image"], size=data.get("size", 0))


#: The manifest, written last: its presence marks a complete build.
MANIFEST = "rootfs.json"


def rootfs_name(*, suite: str, arch: Arch, kernel_id: str) -> str:
    return f"{suite}-{arch.debian}-{kernel_id}"


def rootfs_dir(name: str) -> Path:
    return cache_dir() / "rootfs" / name


def cached(name: str) -> RootFS | None:
    """The cached root filesystem *name*, or None when it was not built or is damaged."""
    return inspect(name)[0]


def inspect(name: str) -> tuple[RootFS | None, str | None]:
    """(the root filesystem, None); or (None, what is damaged); or (None, None) when none was built.

    The kernel image is hashed every time (8-30 MiB; it is a hard link to the kernel
    cache's, so damage there shows here too). The disk is ~600 MiB, some 2-3 s to hash, at
    every boot: it is hashed in full only when its (size, mtime, inode) differ from those
    recorded at its last full check, which any rewrite, truncation, copy or replacement of
    the file changes; the guest opens it read-only, so a boot never does. What this misses
    is damage that keeps all three (bit rot, a tool that restores mtimes), which the size
    check alone missed before.
    """
    manifest = rootfs_dir(name) / MANIFEST
    if not manifest.is_file():
        return None, None
    try:
        data = json.loads(manifest.read_text())
        found = RootFS.load(manifest)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, f"cached manifest {MANIFEST} is unreadable"
    if data.get("layout") != LAYOUT:
        return None, "cached root filesystem is of an older layout"
    # Built before checksums: hashed once and recorded below, not built again (minutes each).
    legacy = not integrity.is_sealed(data)
    if not legacy and not integrity.seal_holds(data):
        return None, f"cached manifest {MANIFEST} does not match its checksum (edited after the build?)"
    if not found.busybox.is_file():
        return None, "cached busybox is missing"
    damage, image_stamp = integrity.check_file(found.kernel_image, what="kernel image", size=None,
                                               sha256=data.get("kernel_image_sha256"))
    if damage:
        return None, damage
    verified = data.get("verified", {}).get("disk")
    damage, disk_stamp = integrity.check_file(found.disk, what="disk image", size=data.get("size"),
                                              sha256=data.get("disk_sha256"), verified=verified)
    if damage:
        return None, damage
    if legacy:
        _record(manifest, {**data, "disk_sha256": integrity.sha256_of(found.disk),
                           "kernel_image_sha256": integrity.sha256_of(found.kernel_image),
                           "verified": {"disk": integrity.stamp(found.disk)}})
    elif disk_stamp is not None:
        _record(manifest, {**data, "verified": {"disk": disk_stamp}})
    return found, None


def _record(manifest: Path, data: dict) -> None:
    try:
        integrity.write_manifest(manifest, data)
    except OSError as error:  # A read-only cache is hashed in full each time instead.
        log.info("cannot record the check of %s: %s", manifest, error)


def ensure(*, suite: str, arch: Arch, kernel: KernelFiles, progress: Progress = lambda _: None) -> RootFS:
    """The rootfs for (*suite*, *arch*) with *kernel* inside, built on first use (and again when damaged)."""
    name = rootfs_name(suite=suite, arch=arch, kernel_id=kernel.id)
    found, damage = inspect(name)
    if found:
        return found
    if damage:
        progress(f"root filesystem {name}: {damage}; building it again")
    dest = rootfs_dir(name)
    fill_once(dest, what=f"building root filesystem {name}", ready=lambda: cached(name) is not None,
              fill=lambda out: _build(name=name, suite=suite, arch=arch, kernel=kernel, out=out, progress=progress),
              on_wait=progress)
    return RootFS.load(dest / MANIFEST)


def _build(*, name: str, suite: str, arch: Arch, kernel: KernelFiles, out: Path, progress: Progress) -> None:
    started = time.monotonic()
    # Before mmdebstrap's minutes of downloading, not after.
    for tool in ("mmdebstrap", "mkfs.ext4", "depmod"):
        tools.require(tool, needed_for=f"building the {name} root filesystem")
    tree = out / "tree"
    packages = packages_for(arch, suite=suite)
    progress(f"{name}: unpacking {len(packages)} packages and their dependencies with mmdebstrap")
    _mmdebstrap(mmdebstrap_command(suite=suite, arch=arch, target=tree, mirror=system_mirror(), packages=packages),
                what=f"mmdebstrap for {name}", timeout=3600)
    finish(name=name, suite=suite, arch=arch, kernel=kernel, out=out, unpack_seconds=time.monotonic() - started,
           progress=progress)
    progress(f"{name}: ready ({(out / 'root.ext4').stat().st_size / 2**20:.0f} MiB image) in {time.monotonic() - started:.0f}s")


def finish(*, name: str, suite: str, arch: Arch, kernel: KernelFiles, out: Path, unpack_seconds: float,
           progress: Progress = lambda _: None) -> None:
    """Everything after mmdebstrap: fix-ups, the kernel, depmod, the image, the manifest."""
    started = time.monotonic()
    tree = out / "tree"
    fix_up(tree)
    progress(f"{name}: adding kernel {kernel.release}")
    kernel_dir = out / "kernel"
    copy_kernel(kernel, tree=tree, kernel_dir=kernel_dir)
    process.run(["depmod", "-a", "-b", str(kernel_dir), kernel.release], what=f"depmod for {name}", timeout=900,
                error=FetchError, hint=BUILD_HINT)
    busybox = _find(tree, ("usr/bin/busybox", "bin/busybox"), what="busybox")
    image = kernel_dir / "boot" / kernel.image.name
    if not image.is_file():
        # From 7.x the image lives in the module directory: give it a boot/ name virtme-ng knows,
        # with the release in it: virtme-ng reads an s390x image's release from its file name only
        # (neither `file` nor `strings` finds it), and without it finds no modules to boot with.
        image = image.with_name(f"{kernel.image.name}-{kernel.release}")
        image.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(kernel_dir / "lib/modules" / kernel.release / kernel.image.name, image)
    def unpack_python(target: Path, version: str) -> None:
        _mmdebstrap(mmdebstrap_command(suite=suite, arch=host_arch(), target=target, mirror=system_mirror(),
                                       packages=pybuilder.packages(version)),
                    what=f"mmdebstrap for Python {version} from {suite}", timeout=1800)

    if bytecode.precompile(tree, suite=suite, unpack=unpack_python, progress=progress):
        progress(f"{name}: precompiled the guest's Python modules")
    progress(f"{name}: making the ext4 image")
    disk = out / "root.ext4"
    make_image(tree, disk)
    manifest = {
        "name": name, "layout": LAYOUT, "suite": suite, "arch": arch.debian, "kernel": kernel.id,
        "release": kernel.release, "disk": disk.name, "busybox": str(busybox.relative_to(out)),
        "kernel_image": str(image.relative_to(out)), "size": disk.stat().st_size,
        "disk_sha256": integrity.sha256_of(disk), "kernel_image_sha256": integrity.sha256_of(image),
        # Renaming the build directory into place keeps inode and mtime: this check holds after it.
        "verified": {"disk": integrity.stamp(disk)},
        "unpack_seconds": round(unpack_seconds, 1), "finish_seconds": round(time.monotonic() - started, 1),
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    # Written last: its presence is what marks the rootfs complete.
    integrity.write_manifest(out / MANIFEST, manifest)


def _mmdebstrap(argv: list[str], *, what: str, timeout: float) -> None:
    # mmdebstrap says why it failed in apt's words (an E: line), which is seldom its last line.
    process.run(argv, what=what, timeout=timeout, error=FetchError, reason=failure_line, hint=BUILD_HINT,
                timeout_hint="check the network to the Debian mirror")


def mmdebstrap_command(*, suite: str, arch: Arch, target: Path, mirror: str,
                       packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """Unpack *packages* (and dependencies) for *arch*; ``extract`` runs no maintainer script."""
    return [
        "mmdebstrap", "--variant=extract", f"--architectures={arch.debian}",
        f"--include={','.join(packages)}", f"--keyring={KEYRING}",
        "--aptopt=Acquire::Retries=3", "--aptopt=Acquire::Languages=none",
        # sid's Release is valid for a week only: from an older mirror or snapshot mmdebstrap
        # (apt with --error-on=any) refuses it as expired, where lab/kernels/apt.py only warns.
        # Signatures are still checked against the keyring.
        '--aptopt=Acquire::Check-Valid-Until "false"',
        # As in lab/apt.py: 15 s without a byte fails an attempt, not apt's 30 s.
        "--aptopt=Acquire::http::Timeout=15",
        # No documentation: smaller image, fewer files for mkfs.
        "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        suite, str(target), mirror,
    ]


def fix_up(tree: Path) -> None:
    """What no maintainer script did in an ``extract`` tree: accounts, PAM, /bin/sh, poweroff."""
    etc = tree / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(PASSWD)
    (etc / "group").write_text(GROUP)
    (etc / "shadow").write_text(SHADOW)
    os.chmod(etc / "shadow", 0o640)
    (etc / "hostname").write_text("ebpf-lab\n")
    (etc / "hosts").write_text("127.0.0.1 localhost ebpf-lab\n::1 localhost\n")
    pam = etc / "pam.d"
    pam.mkdir(exist_ok=True)
    for file, text in PAM_COMMON.items():
        if not (pam / file).exists():
            (pam / file).write_text(text)
    sbin = tree / "usr/sbin"
    for applet in BUSYBOX_APPLETS:
        link = sbin / applet
        if not os.path.lexists(link):
            link.symlink_to("/usr/bin/busybox" if (tree / "usr/bin/busybox").exists() else "/bin/busybox")
    # dash's postinst makes /bin/sh on some releases; link it beside dash wherever dash is.
    for bindir in (tree / "bin", tree / "usr/bin"):
        if bindir.is_symlink() or not (bindir / "dash").exists() or os.path.lexists(bindir / "sh"):
            continue
        (bindir / "sh").symlink_to("dash")
    (tree / "root").mkdir(mode=0o700, exist_ok=True)
    for name in ("tmp", "run", "proc", "sys", "dev"):
        (tree / name).mkdir(exist_ok=True)
    os.chmod(tree / "tmp", 0o1777)


def kernel_part(rel: Path) -> str:
    """Where a path of the unpacked kernel goes: ``boot``/``modules`` to the host side, the rest into the image.

    virtme-ng exports the kernel's module directory to the guest by itself (a
    root disk knows nothing of the kernel under test) and mounts it over
    ``/lib/modules``, so modules in the image would only be hidden dead weight
    (~300 MiB). Headers must be in the image: BCC reads thousands of them.
    """
    parts = rel.parts
    if parts[:1] == ("boot",):
        return "boot"
    if parts[:2] == ("lib", "modules") or parts[:3] == ("usr", "lib", "modules"):
        return "modules"
    return "image"


def copy_kernel(kernel: KernelFiles, *, tree: Path, kernel_dir: Path) -> None:
    """Split the unpacked kernel: headers into *tree*, image and modules into *kernel_dir*.

    *kernel_dir* gets ``boot/`` and ``lib/modules/<release>`` (where virtme-ng looks
    beside an image). Symlinks become absolute: they are followed in the guest,
    whose root is the image, and the kernel's tree may lay out ``/usr`` differently
    from the rootfs, so a relative ``build`` link would dangle.
    """
    src_root = kernel.root
    for dirpath, dirnames, filenames in os.walk(src_root):
        here = Path(dirpath)
        rel_dir = here.relative_to(src_root)
        for name in sorted(dirnames + filenames):
            src = here / name
            rel = rel_dir / name
            if rel == Path("kernel.json"):
                continue
            part = kernel_part(rel)
            if part == "image":
                dst = tree / rel
            elif part == "boot":
                dst = kernel_dir / rel
            else:
                dst = kernel_dir / "lib" / Path(*rel.parts[rel.parts.index("modules"):])
            if src.is_symlink():
                target = os.readlink(src)
                absolute = target if target.startswith("/") else "/" + os.path.normpath(rel_dir / target)
                if os.path.lexists(dst):
                    dst.unlink()
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.symlink_to(absolute)
            elif src.is_dir():
                # is_dir() follows the rootfs's own directory symlinks (lib -> usr/lib).
                if not dst.is_dir():
                    dst.mkdir(parents=True)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                _link_or_copy(src, dst)
        # Do not descend into symlinked directories: they were recreated as links.
        dirnames[:] = [d for d in dirnames if not (here / d).is_symlink()]
    # The mount point virtme-ng's init puts the module directory link on (the root is read-only).
    (tree / "lib/modules").mkdir(parents=True, exist_ok=True)


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link from the kernel cache (same filesystem, no extra space), else copy."""
    if os.path.lexists(dst):
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def _find(tree: Path, candidates: tuple[str, ...], *, what: str) -> Path:
    for rel in candidates:
        path = tree / rel
        if path.is_file() and not path.is_symlink():
            return path
    raise FetchError(f"no {what} in {tree}", hint="the package list lacks it; report this")

