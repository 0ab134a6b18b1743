"""The guest kernel's log, read over the console from ``/dev/kmsg``: each read returns what the
kernel logged since the one before, as ``dmesg`` prints it.

Why not what the console printed: guests boot with ``loglevel=4`` (lab/boot/config.py), so the
console shows only messages more severe than KERN_WARNING, and ``WARN()`` prints at
KERN_WARNING, as do the call traces of hung tasks, lockups and stalls (KERN_DEFAULT, which is
4). A higher console level would put such lines into commands' output: the kernel writes to
the serial port whenever it likes. /dev/kmsg has every message.

The console bash keeps /dev/kmsg open (``ebpflab_kmsg_open`` in guest_files/functions.sh), so a
read costs one dd and bash builtins. Measured on 6.1 under TCG: a read with nothing new takes
0.10-0.15 s, the console's round trip (0.06 s) included; opening, once per guest, 0.26 s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab.errors import GuestError
from lab.guest import console

if TYPE_CHECKING:
    from lab.guest.guest import Guest

#: Open the kernel log for the console shell, past what it holds now (the boot).
OPEN_COMMAND = "ebpflab_kmsg_open"
#: Print what the kernel logged since the last read (or the open).
READ_COMMAND = "ebpflab_kmsg_read"

#: The line ebpflab_kmsg_print writes when the kernel's ring buffer wrapped between two reads.
_LOST = re.compile(r"^ebpf-lab: (\d+) kernel log records were overwritten before they were read$", re.MULTILINE)


@dataclass(frozen=True)
class KernelLog:
    """What the kernel logged between two reads."""

    #: ``[    5.123456] message`` lines, as dmesg prints them.
    text: str
    #: Records the kernel overwrote before they were read (its ring buffer wrapped).
    lost: int = 0


def parse(output: str) -> KernelLog:
    """The kernel log in *output*, the console's answer to READ_COMMAND."""
    cleaned = console.clean(output)
    lost = sum(int(count) for count in _LOST.findall(cleaned))
    return KernelLog(text=_LOST.sub("", cleaned).strip("\n"), lost=lost)


def open_log(guest: Guest) -> None:
    """Start reading *guest*'s kernel log from now on."""
    result = guest.run(OPEN_COMMAND)
    if not result.ok:
        raise GuestError(f"{guest.label}: cannot read the kernel log (/dev/kmsg): {console.tail(result.output, lines=3)}",
                         log_path=str(guest.log_path))


def read_log(guest: Guest) -> KernelLog:
    """What *guest*'s kernel logged since the last read (open_log() first)."""
    return parse(guest.run(READ_COMMAND).output)
