"""x86 kernel images: the uncompressed ELF inside a bzImage, and whether it can boot through PVH.

Under TCG a Debian bzImage spends 5-8 s decompressing itself (XZ, emulated instruction by
instruction) before the kernel prints its first line. QEMU can instead load the
uncompressed ``vmlinux`` ELF directly when it carries a PVH entry point (the Xen ELF note
``XEN_ELFNOTE_PHYS32_ENTRY``, present with ``CONFIG_PVH=y``, as in every Debian amd64
kernel since 5.x). We decompress once on the host, where it takes a second, and cache it.
"""

from __future__ import annotations

import logging
import lzma
import struct
import zlib

from lab.errors import ProcessTimeout
from lab.host import process, tools

log = logging.getLogger(__name__)

#: Compression magics a bzImage payload can start with, most common in Debian first.
_MAGICS = (
    ("xz", b"\xfd7zXZ\x00"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
    ("gzip", b"\x1f\x8b\x08"),
)
_ELF = b"\x7fELF"
PT_NOTE = 4
#: Xen's ELF note carrying the 32-bit PVH entry point.
XEN_ELFNOTE_PHYS32_ENTRY = 18


def has_pvh_entry(elf: bytes) -> bool:
    """Whether the 64-bit little-endian ELF *elf* has a ``Xen`` PHYS32_ENTRY note. Pure."""
    if len(elf) < 64 or elf[:4] != _ELF or elf[4] != 2 or elf[5] != 1:
        return False
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for index in range(phnum):
        base = phoff + index * phentsize
        if base + 56 > len(elf):
            return False
        p_type, = struct.unpack_from("<I", elf, base)
        if p_type != PT_NOTE:
            continue
        offset, = struct.unpack_from("<Q", elf, base + 8)
        size, = struct.unpack_from("<Q", elf, base + 32)
        if _notes_have(elf[offset:offset + size], name=b"Xen", kind=XEN_ELFNOTE_PHYS32_ENTRY):
            return True
    return False


def _notes_have(notes: bytes, *, name: bytes, kind: int) -> bool:
    position = 0
    while position + 12 <= len(notes):
        namesz, descsz, note_type = struct.unpack_from("<III", notes, position)
        position += 12
        note_name = notes[position:position + namesz].rstrip(b"\0")
        position += (namesz + 3) & ~3
        position += (descsz + 3) & ~3
        if note_name == name and note_type == kind:
            return True
    return False


def extract_elf(image: bytes) -> bytes | None:
    """The uncompressed kernel ELF inside the bzImage *image*, or None if none is found.

    Tries each compression magic where it occurs and keeps the first payload that
    decompresses to an ELF (a magic can also occur by chance inside the setup code).
    """
    for method, magic in _MAGICS:
        start = image.find(magic)
        while start != -1:
            payload = _decompress(method, image[start:])
            if payload is not None and payload[:4] == _ELF:
                return payload
            start = image.find(magic, start + 1)
    return None


def _decompress(method: str, data: bytes) -> bytes | None:
    try:
        if method == "xz":
            # The payload is followed by the rest of the bzImage: a decompressor object stops
            # at the end of the stream where lzma.decompress() would reject the trailing bytes.
            return lzma.LZMADecompressor().decompress(data)
        if method == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
        if method == "zstd":
            return _unzstd(data)
    except (lzma.LZMAError, zlib.error, EOFError):
        return None
    return None


def _unzstd(data: bytes) -> bytes | None:
    # Python 3.11 has no zstd module; the zstd tool is in host-packages.txt. The bzImage
    # tail after the frame makes zstd complain, but what it wrote before is the whole frame.
    # Without zstd, or when it hangs, the guest boots the bzImage as it is: slower, no worse.
    zstd = tools.find("zstd")
    if zstd is None:
        return None
    try:
        result = process.run([zstd, "-dc", "--no-check"], what="decompressing a zstd kernel image", timeout=120,
                             input=data, text=False, check=False)
    except ProcessTimeout as error:
        log.warning("%s; booting the bzImage", error)
        return None
    return result.stdout or None
