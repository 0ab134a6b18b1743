"""A root filesystem tree packed into a read-only ext4 image, sized to fit (``mkfs.ext4 -d``, no root needed)."""

from __future__ import annotations

import os
from pathlib import Path

from lab.errors import FetchError
from lab.host import process

#: What to do when a step of a root filesystem build fails (this one, and rootfs.py's).
BUILD_HINT = "run it again; the build starts over in a fresh directory"


def tree_usage(tree: Path) -> tuple[int, int]:
    """Bytes (rounded up to 4 KiB blocks) and inodes *tree* needs."""
    total = 0
    inodes = 0
    for dirpath, dirnames, filenames in os.walk(tree):
        inodes += 1 + len(filenames)
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                size = os.lstat(path).st_size
            except OSError:
                continue
            total += -(-size // 4096) * 4096
        inodes += sum(1 for d in dirnames if os.path.islink(os.path.join(dirpath, d)))
    return total, inodes


def image_size(*, data_bytes: int, inodes: int) -> int:
    """Bytes for an ext4 image holding *data_bytes* of files: room for metadata, rounded to MiB.

    Inode tables (256 bytes each), directories and the block bitmaps cost roughly 10%
    plus a fixed overhead; the guest mounts it read-only, so no room is left to write.
    """
    needed = data_bytes * 1.10 + inodes * 256 + 64 * 2**20
    mib = 2**20
    return int(-(-needed // mib) * mib)


def inode_count(inodes: int) -> int:
    return int(inodes * 1.1) + 1024


def mkfs_command(*, tree: Path, image: Path, size: int, inodes: int) -> list[str]:
    return [
        "mkfs.ext4", "-q", "-F", "-d", str(tree), "-N", str(inode_count(inodes)),
        # Read-only root: no journal, no reserved blocks, nothing to gain from either.
        "-O", "^has_journal", "-m", "0", "-L", "ebpf-lab-root",
        str(image), f"{size // 1024}k",
    ]


def make_image(tree: Path, image: Path) -> None:
    data, inodes = tree_usage(tree)
    size = image_size(data_bytes=data, inodes=inodes)
    process.run(mkfs_command(tree=tree, image=image, size=size, inodes=inodes), what=f"mkfs.ext4 for {image}",
                timeout=900, error=FetchError, hint=BUILD_HINT)
