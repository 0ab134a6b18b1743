"""Files into and out of a guest, through the console: the one channel every guest has.

A host-root guest sees the host's files read-only, so a file it can read needs no copy;
a root-disk guest (arm64, ``--userland``) sees only the lab package. Anything else travels
base64-encoded, in chunks that fit the guest tty's 4096-byte line buffer, one console
command per chunk, so nothing is lost when the guest reads slower than the host sends.
Both directions are binary-safe and checked against the sender's size and SHA-256.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from lab.errors import GuestError, UsageError

if TYPE_CHECKING:
    from lab.guest.guest import Guest

#: The largest file either direction takes. Into a guest the console carries some 25 KiB/s under
#: TCG (a console round trip per 3,000 base64 characters: ~100 KB in 4 s, measured in CI).
COPY_LIMIT = 64 * 2**20

#: Base64 characters per console line into the guest (the tty's canonical buffer is 4096).
_LINE = 3000

#: Bytes read back per console command: the transcript keeps the newest 4 MiB.
_OUT_CHUNK = 1536 * 1024

#: Where copies land in a guest when the caller names no place.
INBOX = "/tmp/.ebpf-lab-files"


def copy_in(guest: Guest, host: Path, guest_path: str | None = None, *, limit: int = COPY_LIMIT) -> str:
    """Put the host file *host* into *guest*; return its path there.

    With no *guest_path*, a file the guest already sees is not copied; otherwise it lands in
    a fresh directory under /tmp. A *guest_path* that ends in ``/`` is a directory.
    """
    data = _read_host(host, limit=limit)
    if guest_path is None:
        seen = guest.guest_path(host)
        if seen is not None:
            return seen
        guest_path = f"{INBOX}/{secrets.token_hex(4)}/"
    if guest_path.endswith("/"):
        guest_path += host.name
    target = shlex.quote(guest_path)
    encoded = base64.b64encode(data).decode()
    guest.run(f"mkdir -p -- \"$(dirname -- {target})\" && : > {target}.b64", check=True, timeout=30)
    for start in range(0, len(encoded), _LINE):
        guest.run(f"printf %s {encoded[start:start + _LINE]} >> {target}.b64", check=True, timeout=30)
    guest.run(f"base64 -d {target}.b64 > {target} && rm -f {target}.b64", check=True, timeout=60)
    _verify(guest, guest_path, size=len(data), digest=hashlib.sha256(data).hexdigest(), what=f"copying {host} in")
    return guest_path


def copy_out(guest: Guest, guest_path: str, host: Path, *, limit: int = COPY_LIMIT) -> Path:
    """Copy the guest file *guest_path* to *host* (a file, or an existing directory); return the host path."""
    target = shlex.quote(guest_path)
    answer = guest.run(f"[ -f {target} ] && stat -c %s -- {target} && sha256sum < {target}", timeout=60)
    lines = answer.output.split()
    if not answer.ok or len(lines) < 2:
        raise GuestError(f"{guest.label}: cannot copy {guest_path} out: it is not a file in the guest",
                         hint="check the path with vm.run('ls -l …')")
    size, digest = int(lines[0]), lines[1]
    if size > limit:
        raise UsageError(f"{guest_path} is {size / 2**20:.1f} MiB, over the {limit / 2**20:.0f} MiB the console copies",
                         hint="compress it in the guest first, or copy a smaller part")
    chunks = []
    for offset in range(0, size, _OUT_CHUNK):
        # tail -c +N counts from 1; base64 -w 0 keeps each chunk one line.
        part = guest.run(f"tail -c +{offset + 1} -- {target} | head -c {_OUT_CHUNK} | base64 -w 0; echo",
                         check=True, timeout=120)
        chunks.append(base64.b64decode("".join(part.output.split())))
    data = b"".join(chunks)
    if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
        raise GuestError(f"{guest.label}: copying {guest_path} out garbled it ({len(data)} of {size} bytes arrived)",
                         hint=f"see the console log {guest.log_path}")
    if host.is_dir():
        host = host / Path(guest_path).name
    host.parent.mkdir(parents=True, exist_ok=True)
    host.write_bytes(data)
    return host


def _read_host(host: Path, *, limit: int) -> bytes:
    if not host.is_file():
        raise UsageError(f"no such file: {host}", hint="give the path of a file on the host")
    size = host.stat().st_size
    if size > limit:
        raise UsageError(f"{host} is {size / 2**20:.1f} MiB, over the {limit / 2**20:.0f} MiB the console copies",
                         hint="a host-root guest sees the host's files as they are; pass a smaller file")
    return host.read_bytes()


def _verify(guest: Guest, guest_path: str, *, size: int, digest: str, what: str) -> None:
    answer = guest.run(f"stat -c %s -- {shlex.quote(guest_path)} && sha256sum < {shlex.quote(guest_path)}",
                       check=True, timeout=60).output.split()
    if answer[:2] != [str(size), digest]:
        raise GuestError(f"{guest.label}: {what} garbled it (the guest has {answer[:1]} bytes, expected {size})",
                         hint=f"see the console log {guest.log_path}")
