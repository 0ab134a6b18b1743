"""The ``newc`` cpio format the kernel unpacks an initramfs from: a writer, and a reader for tests.

The kernel unpacks concatenated archives in order, a later file replacing an earlier one
of the same name, so appending a small archive to virtme-ng's initramfs adds or replaces
files without rebuilding it.
"""

from __future__ import annotations

from dataclasses import dataclass

_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """One file of an archive: a path without a leading slash, its mode (type and permissions), its bytes."""

    name: str
    mode: int
    data: bytes = b""


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _header(*, ino: int, mode: int, size: int, name: bytes) -> bytes:
    fields = (ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(name) + 1, 0)
    return _MAGIC + b"".join(b"%08X" % value for value in fields)


def archive(entries: list[Entry]) -> bytes:
    """A complete newc archive (with its trailer) holding *entries*. Pure."""
    out = bytearray()
    for ino, entry in enumerate([*entries, Entry(_TRAILER, 0)], start=1):
        name = entry.name.encode()
        out += _header(ino=ino, mode=entry.mode, size=len(entry.data), name=name)
        out += name + b"\0"
        out += _pad(len(out))
        out += entry.data
        out += _pad(len(out))
    return bytes(out)


def read(data: bytes) -> list[Entry]:
    """The entries of the (possibly concatenated) newc archives in *data*, in order. Pure."""
    entries = []
    position = 0
    while position + 110 <= len(data):
        if data[position:position + 6] != _MAGIC:
            # Archives may be followed by NUL padding (to a block size) before the next one.
            position += 1
            continue
        fields = [int(data[position + 6 + 8 * i:position + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_start = position + 110
        name = data[name_start:name_start + namesize - 1].decode()
        body = name_start + namesize + (-(110 + namesize) % 4)
        position = body + size + (-size % 4)
        if name != _TRAILER:
            entries.append(Entry(name, mode, data[body:body + size]))
    return entries
