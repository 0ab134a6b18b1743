"""Pure functions over what a guest prints on its console: no I/O here.

They are tested against recorded console logs in ``tests/data/``.
"""

from __future__ import annotations

import re

#: What the guest's console shell prints once it is ready for commands (see guest_files/shell.sh).
READY_MARKER = "EBPF-LAB-SHELL-READY"

# CSI/OSC escape sequences (bracketed paste, colours, title) that shells and QEMU emit.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")

#: The first line of an oops: the kernel faulted in its own code. One the guest survives is a
#: splat (lab/guest/splats.py); one that kills it is part of a panic.
OOPS = re.compile(r"BUG: kernel NULL pointer dereference|\bOops\b:|general protection fault|Unable to handle kernel")

#: Lines that mean the guest kernel is dying, whatever it was doing.
_PANIC = re.compile(r"Kernel panic - not syncing|" + OOPS.pattern + r"|---\[ end Kernel panic")


def clean(text: str) -> str:
    """Console text without escape sequences and carriage returns."""
    return _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


def tail(text: str, *, lines: int = 25) -> str:
    """The last *lines* non-empty lines of console *text*, cleaned."""
    kept = [line for line in clean(text).split("\n") if line.strip()]
    return "\n".join(kept[-lines:])


def find_panic(text: str) -> str | None:
    """The panic report in *text* (from its first line on), or None if the kernel did not die."""
    cleaned = clean(text)
    match = _PANIC.search(cleaned)
    if not match:
        return None
    start = cleaned.rfind("\n", 0, match.start()) + 1
    # A panic report is a dozen to a hundred lines; keep it whole but bounded.
    return "\n".join(cleaned[start:].split("\n")[:60]).strip()


#: The kernel's line for each process its OOM killer ends: the pid and the command name.
_OOM_KILL = re.compile(r"Out of memory: Killed process (\d+) \(([^)]*)\)")


def oom_kills(text: str) -> list[str]:
    """``comm (pid N)`` of each process the guest kernel's OOM killer ended in *text*, in order, once each."""
    seen: dict[str, str] = {}
    for pid, comm in _OOM_KILL.findall(text):
        seen.setdefault(pid, f"{comm} (pid {pid})")
    return list(seen.values())


def prompt_pattern(nonce: str) -> str:
    """Regex for the prompt our shell prints after each command: ``<nonce>:<status>> ``.

    The nonce is random per guest, so no program output can imitate the prompt.
    """
    return re.escape(nonce) + r":(\d+)> "


def parse_poll(text: str, *, nonce: str) -> tuple[str, int, int | None]:
    """Split the answer of a spawn poll into (new output, file size, exit status or None).

    The poll prints the new bytes of the process's output file, then a line
    ``<nonce>:<size>:<status>`` where status is empty while the process runs.
    """
    marker = f"\n{nonce}:"
    cleaned = text.replace("\r\n", "\n")
    head, sep, rest = cleaned.rpartition(marker)
    if not sep:
        raise ValueError("poll answer without its status line")
    fields = rest.strip().split(":")
    size = int(fields[0])
    status = int(fields[1]) if len(fields) > 1 and fields[1].strip().lstrip("-").isdigit() else None
    return head, size, status


#: clang's error diagnostic as BCC prints it, before Python's traceback: ``/virtual/main.c:6:5: error: …``.
# clang's "file:12:5: error:", and bpftrace's "file:1:12-20: ERROR:".
_COMPILE_ERROR = re.compile(r":\d+:\d+(?:-\d+)?: (?:fatal )?(?:error|ERROR):")


def is_compile_error(line: str) -> bool:
    """Whether *line* is clang's error diagnostic (not a warning or a note)."""
    return _COMPILE_ERROR.search(line) is not None


def compile_error(output: str) -> str | None:
    """The first clang error line in a BPF program's *output*, or None when the BPF C code compiled."""
    return next((line.strip() for line in clean(output).split("\n") if is_compile_error(line)), None)


# Where a kernel's own headers are: /lib/modules/<release>/build/include/linux/fs.h, linux-headers-*, arch/*/include.
_KERNEL_HEADER = re.compile(r"(?:/lib/modules/[^/\s]+/(?:build|source)/|/linux-headers-[^/\s]+/|^\s*)"
                            r"((?:arch/\w+/)?include/(?:linux|asm|asm-generic|uapi|generated)/\S+?\.h):\d+:\d+: (?:fatal )?error:")


def kernel_header_error(output: str) -> str | None:
    """The kernel header (``include/linux/fs.h``) the first clang error is in, or None when the
    error is the program's own: BCC compiles the kernel's headers too, and an older BCC's clang
    can fail on a newer kernel's."""
    first = compile_error(output)
    match = _KERNEL_HEADER.search(first) if first else None
    return match.group(1) if match else None


def poll_backlog(text: str, *, nonce: str) -> int:
    """Bytes a spawned process printed beyond what this poll answer brought (its status line's
    fourth field; 0 when absent)."""
    fields = text.replace("\r\n", "\n").rpartition(f"\n{nonce}:")[2].strip().split(":")
    return int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else 0


def last_error_line(output: str) -> str:
    """The line of a program's output that best says why it failed.

    BCC prints the clang diagnostic (``file:line:col: error: …``) before Python's
    traceback; a student wants the former, else the exception line at the end.
    """
    diagnostic = compile_error(output)
    if diagnostic:
        return diagnostic
    lines = [line.strip() for line in clean(output).split("\n") if line.strip()]
    for line in reversed(lines):
        if re.match(r"[A-Za-z_.]+(Error|Exception)\b", line) or line.startswith(("Exception:", "error:")):
            return line
    return lines[-1] if lines else ""
