"""Prepared boots: what virtme-ng's host side computes, done once per kernel and cached.

``vng`` spends seconds per boot on the host (Python start-up, module lookup, building an
initramfs) before QEMU starts, and has no way to keep udev out of the guest. For native
guests we ask virtme-ng once for its QEMU command line (``--dry-run``) and its initramfs
(``virtme-run --save-initramfs``), keep both in the cache, and start QEMU from them. The
guest is the same virtme-ng guest (its initramfs, its init, its 9p root); only our
``guest_files/init.sh`` runs first, as PID 1, to hide udevd.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import subprocess
from pathlib import Path

from .errors import HostError
from .settings import cache_dir
from .vm import VMConfig, vng_binary, vng_command

log = logging.getLogger(__name__)

INIT = Path(__file__).resolve().parent / "guest_files" / "init.sh"
#: Set to 0 to boot every guest through plain ``vng`` instead.
ENV = "EBPF_LAB_PREPARED"


def enabled(config: VMConfig) -> bool:
    from .arches import host_arch

    # Foreign guests boot from a root disk through virtme's own init script; keep them on vng.
    return os.environ.get(ENV, "1") != "0" and config.arch.debian == host_arch().debian and config.root_disk is None


def _virtme_version() -> str:
    try:
        from importlib.metadata import version

        return version("virtme-ng")
    except Exception:  # noqa: BLE001 - any failure just means "unknown", which only costs a re-prepare
        return "unknown"


def _key(vng_argv: list[str], image: Path) -> str:
    stat = image.stat()
    material = json.dumps([vng_argv[1:], str(image), stat.st_size, stat.st_mtime_ns, _virtme_version(),
                           INIT.read_text(), os.environ.get("EBPF_LAB_9P_CACHE", "1")])
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def qemu_command(config: VMConfig) -> list[str]:
    """The QEMU argv for *config*, prepared (and cached) on first use."""
    vng_argv = vng_command(config, vng=vng_binary())
    directory = cache_dir() / "boot" / _key([*vng_argv, *map(str, config.fast_dirs)], config.image)
    manifest = directory / "qemu.json"
    if manifest.is_file():
        try:
            return json.loads(manifest.read_text())["argv"]
        except (OSError, ValueError, KeyError):
            pass
    return _prepare(config, vng_argv=vng_argv, directory=directory)


def _run(argv: list[str], *, what: str) -> str:
    log.info("+ %s", shlex.join(argv))
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, cwd="/tmp",
                                stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise HostError(f"{argv[0]} not found while {what}", hint="pip install virtme-ng (or run 'lab setup')") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise HostError(f"virtme-ng failed while {what}: {last}", hint=f"set {ENV}=0 to boot through plain vng")
    return result.stdout


def _prepare(config: VMConfig, *, vng_argv: list[str], directory: Path) -> list[str]:
    tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    initramfs = directory / "initramfs.img"
    out = _run([*vng_argv, "--dry-run"], what="preparing the QEMU command")
    lines = [line for line in out.splitlines() if "qemu-system" in line]
    if not lines:
        raise HostError("virtme-ng --dry-run printed no QEMU command", hint=f"set {ENV}=0 to boot through plain vng")
    argv = shlex.split(lines[-1])
    virtme_run = str(Path(vng_binary()).with_name("virtme-run"))
    # --overlay-rwdir puts overlay.ko into the initramfs, as vng's default overlays do.
    _run([virtme_run, "--kimg", str(config.image), "--mods", "auto", "--force-9p", "--overlay-rwdir", "/tmp",
          "--save-initramfs", str(tmp / "initramfs.img"), "--dry-run"], what="building the initramfs")
    argv = rewrite(argv, initramfs=initramfs, init=INIT, binds=config.fast_dirs)
    (tmp / "qemu.json").write_text(json.dumps({"argv": argv}, indent=1))
    try:
        os.rename(tmp, directory)
    except OSError:
        # Another process prepared the same boot first: theirs is as good as ours.
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return json.loads((directory / "qemu.json").read_text())["argv"]


def rewrite(argv: list[str], *, initramfs: Path, init: Path, binds: tuple[Path, ...] = ()) -> list[str]:
    """virtme-ng's QEMU argv with our saved initramfs and our init in front of virtme-ng-init. Pure.

    *binds* are host directories our init serves from its cached 9p mount (the kernel's headers).
    """
    out = list(argv)
    if "-initrd" in out:
        out[out.index("-initrd") + 1] = str(initramfs)
    index = out.index("-append") + 1
    words = shlex.split(out[index])
    for i, word in enumerate(words):
        if word.startswith("init="):
            # Unknown name=value kernel parameters reach PID 1 as environment variables.
            words[i] = f"ebpflab_next={word[len('init='):]}"
    if binds:
        words.append("ebpflab_bind=" + ":".join(str(b) for b in binds))
    if os.environ.get("EBPF_LAB_9P_CACHE", "1") == "0":
        words.append("ebpflab_cache=0")
    words.append(f"init={init}")
    out[index] = " ".join(shlex.quote(w) if " " in w else w for w in words)
    return out
