"""Prepared boots: what virtme-ng's host side computes, done once per kernel and cached.

``vng`` spends seconds per boot on the host (Python start-up, module lookup, building an
initramfs) before QEMU starts, and has no way to keep udev out of the guest. We ask
virtme-ng once for its QEMU command line (``--dry-run``) and its initramfs
(``virtme-run --save-initramfs``), keep both in the cache, and start QEMU from them. A
guest on the host's root is the same virtme-ng guest (its initramfs, its init, its 9p
root); one file is added to the initramfs (``guest_files/switch_root.sh``) to hide udevd
and mount a cache. A root-disk guest (foreign arch, ``--userland debian``) gets
``guest_files/rootdisk_init.sh`` there instead, which replaces virtme-ng's bash init.

Each addition, measured under TCG on 6.1 (see bench/):

- an x86 kernel boots from its uncompressed ELF through PVH (lab/kimage.py) instead of
  decompressing its bzImage in the guest: 17 s to the shell became 10 s;
- a second, read-only 9p share of the host root, which switch_root.sh mounts with
  ``cache=loose`` for /usr and the kernel headers. virtme-ng's own share is mounted
  uncached and a 9p channel takes one mount only, so it has to be a device of its own:
  cold ``import bcc`` went from 6.5 s to 3.4 s and the first compile from 13 s to 9.5 s;
- that setup runs from the initramfs with busybox, not as an init= script on the 9p root;
- root-disk guests: our init instead of virtme-ng's took 6.1-arm64 from 13.6 s to the shell
  to about 5 s.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
from pathlib import Path

from lab.boot import cpio, kimage
from lab.boot.config import VMConfig, vng_binary, vng_command
from lab.errors import HostError
from lab.host import process, tools
from lab.host.resources import package_dir
from lab.settings import cache_dir

log = logging.getLogger(__name__)

#: Appended to virtme-ng's initramfs as /bin/switch_root, which virtme-ng's init execs last.
SWITCH_ROOT = package_dir("lab.boot", "guest_files") / "switch_root.sh"
#: The same place in a root-disk guest's initramfs: the whole init of the guest.
ROOTDISK_INIT = package_dir("lab.boot", "guest_files") / "rootdisk_init.sh"
#: Set to 0 to boot every guest through plain ``vng`` instead.
ENV = "EBPF_LAB_PREPARED"
#: Set to 0 to boot the bzImage as it is (no PVH entry through the uncompressed ELF).
PVH_ENV = "EBPF_LAB_PVH"
#: The 9p share switch_root.sh mounts with cache=loose.
CACHED_TAG = "ebpflab"
#: Bumped when what _prepare() produces changes, so older cache entries are not reused.
FORMAT = 4


def enabled(config: VMConfig) -> bool:
    """Whether *config* boots prepared: every kind of guest does, unless $EBPF_LAB_PREPARED=0."""
    return os.environ.get(ENV, "1") != "0"


def _init_script(config: VMConfig) -> Path:
    return SWITCH_ROOT if config.root_disk is None else ROOTDISK_INIT


def _virtme_version() -> str:
    try:
        from importlib.metadata import version

        return version("virtme-ng")
    except Exception:  # noqa: BLE001 - any failure just means "unknown", which only costs a re-prepare
        return "unknown"


def _key(vng_argv: list[str], image: Path, script: Path) -> str:
    stat = image.stat()
    material = json.dumps([FORMAT, vng_argv[1:], str(image), stat.st_size, stat.st_mtime_ns, _virtme_version(),
                           script.read_text(), os.environ.get("EBPF_LAB_9P_CACHE", "1"), os.environ.get(PVH_ENV, "1")])
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def boot_command(config: VMConfig) -> list[str]:
    """The one way a guest boots: the prepared QEMU argv, or with ``$EBPF_LAB_PREPARED=0`` plain
    ``vng``, the escape hatch kept for comparison and for a problem in our boot path."""
    if enabled(config):
        return qemu_command(config)
    return vng_command(config, vng=vng_binary())


def qemu_command(config: VMConfig) -> list[str]:
    """The QEMU argv for *config*, prepared (and cached) on first use."""
    vng_argv = vng_command(config, vng=vng_binary())
    directory = cache_dir() / "boot" / _key([*vng_argv, *map(str, config.cached_dirs)], config.image,
                                                 _init_script(config))
    manifest = directory / "qemu.json"
    if manifest.is_file():
        try:
            argv = json.loads(manifest.read_text())["argv"]
        except (OSError, ValueError, KeyError):
            argv = None
        # The uncompressed kernel lives outside this directory and may have been cleaned away.
        if argv and Path(argv[argv.index("-kernel") + 1]).is_file():
            return argv
    return _prepare(config, vng_argv=vng_argv, directory=directory)


def pvh_kernel(image: Path) -> Path | None:
    """The uncompressed ELF of the x86 bzImage *image*, extracted once and cached; None if it has no PVH entry."""
    stat = image.stat()
    key = hashlib.sha256(json.dumps([str(image), stat.st_size, stat.st_mtime_ns]).encode()).hexdigest()[:16]
    target = cache_dir() / "boot" / "vmlinux" / key
    if target.is_file():
        return target
    elf = kimage.extract_elf(image.read_bytes())
    if elf is None or not kimage.has_pvh_entry(elf):
        log.info("%s: no PVH entry point, booting the bzImage", image)
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{key}.tmp{os.getpid()}")
    tmp.write_bytes(elf)
    os.replace(tmp, target)
    return target


def _virtme(argv: list[str], *, what: str) -> str:
    """Run virtme-ng's *argv* (a dry run) and return what it printed."""
    # From /tmp: vng writes its working directory into the guest's command line (virtme_chdir),
    # and the cached command must not depend on where lab was started.
    return process.run(argv, what=what, timeout=300, cwd="/tmp", env=tools.virtme_environ(),
                       hint=f"set {ENV}=0 to boot through plain vng").stdout


def _prepare(config: VMConfig, *, vng_argv: list[str], directory: Path) -> list[str]:
    tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    initramfs = directory / "initramfs.img"
    out = _virtme([*vng_argv, "--dry-run"], what=f"virtme-ng preparing the QEMU command for {config.image.name}")
    lines = [line for line in out.splitlines() if "qemu-system" in line]
    if not lines:
        raise HostError("virtme-ng --dry-run printed no QEMU command", hint=f"set {ENV}=0 to boot through plain vng")
    argv = shlex.split(lines[-1])
    virtme_run = tools.require("virtme-run", needed_for=f"building the initramfs for {config.image.name}")
    # --overlay-rwdir puts overlay.ko into the initramfs, as vng's default overlays do.
    mkinitramfs = [virtme_run, "--kimg", str(config.image), "--mods", "auto", "--force-9p", "--overlay-rwdir", "/tmp",
                   "--save-initramfs", str(tmp / "initramfs.img"), "--dry-run"]
    if "--arch" in vng_argv:
        mkinitramfs += ["--arch", config.arch.virtme or config.arch.vng]
    if config.busybox is not None:
        mkinitramfs += ["--busybox", str(config.busybox)]
    if config.root_disk is not None:
        # The initramfs then carries virtio_blk and the filesystem's module, to mount the disk.
        mkinitramfs += ["--root-disk", str(config.root_disk), "--root-fstype", config.root_fstype, "--force-initramfs"]
    _virtme(mkinitramfs, what=f"virtme-run building the initramfs for {config.image.name}")
    kernel = None
    if config.arch.name == "x86_64" and os.environ.get(PVH_ENV, "1") != "0":
        kernel = pvh_kernel(config.image)
    add_switch_root(tmp / "initramfs.img", script=_init_script(config))
    argv = rewrite(argv, initramfs=initramfs, cached_dirs=config.cached_dirs, kernel=kernel,
                   cached_share=config.root_disk is None and os.environ.get("EBPF_LAB_9P_CACHE", "1") != "0",
                   own_init=config.root_disk is not None)
    (tmp / "qemu.json").write_text(json.dumps({"argv": argv}, indent=1))
    try:
        os.rename(tmp, directory)
    except OSError:
        # Another process prepared the same boot first: theirs is as good as ours.
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return json.loads((directory / "qemu.json").read_text())["argv"]


def add_switch_root(initramfs: Path, *, script: Path = SWITCH_ROOT) -> None:
    """Append *script* to *initramfs* as ``bin/switch_root`` (replacing busybox's link there)."""
    size = initramfs.stat().st_size
    with open(initramfs, "ab") as out:
        # The kernel looks for the next archive at a 4-byte boundary; 512 is what cpio tools pad to.
        out.write(b"\0" * (-size % 512))
        out.write(cpio.archive([cpio.Entry("bin/switch_root", 0o100755, script.read_bytes())]))


def rewrite(argv: list[str], *, initramfs: Path, cached_dirs: tuple[Path, ...] = (),
            kernel: Path | None = None, cached_share: bool = True, own_init: bool = False) -> list[str]:
    """virtme-ng's QEMU argv with our saved initramfs, kernel and cached share. Pure.

    *cached_dirs* are host directories switch_root.sh serves from its cached 9p mount (the kernel's headers);
    *kernel* replaces the image (the uncompressed ELF); *cached_share* adds the share for that mount;
    *own_init* drops virtme-ng's init script from the command line (rootdisk_init.sh replaces it).
    """
    out = list(argv)
    if "-initrd" in out:
        out[out.index("-initrd") + 1] = str(initramfs)
    if kernel is not None:
        out[out.index("-kernel") + 1] = str(kernel)
    if cached_share:
        out[1:1] = ["-fsdev", f"local,id={CACHED_TAG},path=/,security_model=none,readonly=on,multidevs=remap",
                    "-device", f"virtio-9p-pci,fsdev={CACHED_TAG},mount_tag={CACHED_TAG}"]
    index = out.index("-append") + 1
    # Unknown name=value kernel parameters reach the initramfs's init as environment variables.
    words = shlex.split(out[index])
    if own_init and "--" in words:
        # `init=/bin/sh -- -c "<virtme-ng's mounts>; exec virtme-init"`: the initramfs's init
        # still wants an init= word, which it passes to /bin/switch_root, our script, which ignores it.
        words = [w for w in words[:words.index("--")] if not w.startswith("init=")] + ["init=/bin/sh"]
    if cached_dirs:
        words.append("ebpflab_cached_dirs=" + ":".join(str(d) for d in cached_dirs))
    if not cached_share and not own_init:
        words.append("ebpflab_cache=0")
    out[index] = " ".join(shlex.quote(w) if " " in w else w for w in words)
    return out
