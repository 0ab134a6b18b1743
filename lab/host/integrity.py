"""Checksums of cache entries, so a damaged file is found before a guest boots from it.

A cache entry (a kernel, a root filesystem) is described by a JSON manifest that records
the sha256 of the files a guest boots from, and is itself sealed: ``manifest_sha256`` is
the digest of its other fields, so an edited manifest (a release changed by hand, a
path pointed elsewhere) is as damaged as a flipped byte in an image. Pure functions and
file reads only: what to do about damage (fetch again, build again) is the caller's.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

#: The manifest field that holds the digest of all its other fields.
SEAL = "manifest_sha256"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stamp(path: Path) -> list[int]:
    """What changes when a file is rewritten, truncated, copied or replaced: size, mtime, inode."""
    info = path.stat()
    return [info.st_size, info.st_mtime_ns, info.st_ino]


def _digest(data: dict[str, Any]) -> str:
    fields = {key: value for key, value in data.items() if key != SEAL}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seal(data: dict[str, Any]) -> dict[str, Any]:
    """*data* with its seal (the digest of every other field) added or renewed."""
    return {**{key: value for key, value in data.items() if key != SEAL}, SEAL: _digest(data)}


def is_sealed(data: dict[str, Any]) -> bool:
    return SEAL in data


def seal_holds(data: dict[str, Any]) -> bool:
    """Whether *data* is exactly what was sealed: False for a manifest edited afterwards."""
    return data.get(SEAL) == _digest(data)


def check_file(path: Path, *, what: str, size: int | None, sha256: str | None,
               verified: list[int] | None = None) -> tuple[str | None, list[int] | None]:
    """Check *path* against its recorded *size* and *sha256*: (damage, stamp to record).

    *damage* is None for a good file, else what is wrong, in the user's words ("cached
    image fails its checksum"). When *verified* (a stamp() recorded at the last full
    check) still matches, the hash is not computed again: see rootfs.py for why a root
    disk is checked that way. The returned stamp is the file's, after a full check that
    passed; None when there was nothing new to record.
    """
    try:
        now = stamp(path)
    except FileNotFoundError:
        return f"cached {what} is missing", None
    except OSError as error:
        return f"cached {what} cannot be read ({error.strerror})", None
    if size is not None and now[0] != size:
        return f"cached {what} has {now[0]} bytes, not the {size} it was made with", None
    if sha256 is None or (verified is not None and list(verified) == now):
        return None, None
    try:
        actual = sha256_of(path)
    except OSError as error:
        return f"cached {what} cannot be read ({error.strerror})", None
    if actual != sha256:
        return f"cached {what} fails its checksum", None
    return None, now


def write_manifest(path: Path, data: dict[str, Any]) -> None:
    """Write *data*, sealed, to *path* atomically: a reader sees the old manifest or the new one, whole."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(seal(data), indent=2) + "\n")
    os.replace(tmp, path)
