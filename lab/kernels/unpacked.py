"""A kernel's Debian packages unpacked into a tree: where its image and modules are, and the
fix-ups that make the tree bootable wherever it lies (relative links, plain ``.ko`` modules)."""

from __future__ import annotations

import os
from pathlib import Path

from lab.errors import FetchError
from lab.host import process

#: What to do when a step of unpacking fails.
UNPACK_HINT = "run 'lab fetch' again; the download is checked and replaced"


def find_image(root: Path) -> tuple[Path, str]:
    """The kernel image in an unpacked tree and its release (``uname -r``)."""
    # Up to 6.12: boot/vmlinuz-<release>; from 7.x: usr/lib/modules/<release>/vmlinuz.
    for image in sorted(root.glob("boot/vmlinu[xz]-*")):
        return image, image.name.split("-", 1)[1]
    for sub in ("usr/lib/modules", "lib/modules"):
        for image in sorted(root.glob(f"{sub}/*/vmlinu[xz]")):
            return image, image.parent.name
    raise FetchError(f"no kernel image in {root}", hint="the packages changed layout; report this")


def find_modules(root: Path, release: str) -> Path | None:
    for sub in ("lib/modules", "usr/lib/modules"):
        path = root / sub / release
        if path.is_dir():
            return path
    return None


def relativize_links(root: Path) -> int:
    """Make absolute symlinks inside *root* relative, so they resolve wherever the tree is.

    Debian's ``lib/modules/<release>/build`` points at ``/usr/src/linux-headers-…``; in the
    guest the tree is not at ``/``, so the link would dangle and BCC would find no headers.
    """
    changed = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            link = Path(dirpath) / name
            if not link.is_symlink():
                continue
            target = os.readlink(link)
            if not target.startswith("/"):
                continue
            inside = root / target.lstrip("/")
            if not os.path.lexists(inside) and target.startswith("/lib/"):
                inside = root / "usr" / target.lstrip("/")  # merged-/usr trees
            link.unlink()
            link.symlink_to(os.path.relpath(inside, link.parent))
            changed += 1
    return changed


def decompress_modules(modules: Path) -> int:
    """Turn ``.ko.xz``/``.ko.zst`` into ``.ko``: virtme-ng's initramfs loads modules with busybox
    insmod, which takes only plain ELF (it unpacks .zst itself, not .xz), so trixie's and newer
    kernels would never find their 9p root otherwise."""
    count = 0
    for suffix, tool in ((".ko.xz", ["xz", "-d", "-f"]), (".ko.zst", ["zstd", "-d", "-f", "-q", "--rm"])):
        found = [str(p) for p in modules.rglob(f"*{suffix}")]
        for start in range(0, len(found), 500):
            process.run([*tool, *found[start:start + 500]], what=f"decompressing {suffix} modules", timeout=900,
                        error=FetchError, hint=UNPACK_HINT)
        count += len(found)
    return count
