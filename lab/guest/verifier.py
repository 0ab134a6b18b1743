"""Why a BPF program did not load or attach, read from libbpf's and the verifier's words.

Pure functions over text: they are tested on logs recorded from real kernels
(``tests/data/loads/``). The order of the checks matters: a failed CO-RE relocation
surfaces in the verifier log as a call of an unknown function (libbpf's poison
instruction), so relocations are recognised before helpers.
"""

from __future__ import annotations

import re

#: Each failure kind, with what to tell a person.
REASONS = {
    "no_btf": "the kernel has no BTF, which CO-RE needs (/sys/kernel/btf/vmlinux)",
    "core_relocation": "a CO-RE relocation failed: a type or field the program reads is not in this kernel",
    "unknown_helper": "the program calls a helper or kfunc this kernel does not have (for this program type)",
    "unsupported_type": "this kernel does not support the program's or a map's type",
    "attach_point": "the attach point does not exist in this kernel",
    "verifier": "the verifier rejected the program",
    "not_permitted": "the kernel did not permit the load (lockdown, or missing capabilities)",
    "other": "the load failed; see libbpf's messages",
}

# (kind, pattern) in the order they are tried.
_PATTERNS = (
    ("no_btf", (r"failed to find valid kernel BTF|vmlinux BTF is not found|Error loading vmlinux BTF"
               r"|kernel BTF is (?:missing|not found)|failed to load vmlinux BTF")),
    ("core_relocation", (r"failed to resolve CO-RE relocation|<invalid CO-RE relocation>|relo #\d+: no matching targets"
                        r"|failed to relocate|CO-RE relocating .* failed")),
    ("attach_point", (r"failed to find kernel BTF type ID of|failed to create kprobe|failed to create uprobe"
                     r"|failed to (?:create|attach to) tracepoint|failed to determine tracepoint"
                     r"|failed to attach to (?:kprobe|tracepoint)|failed to find target func"
                     r"|Cannot find .* in kernel|cannot attach kprobe|probe entry may not exist|not traceable")),
    ("unknown_helper", (r"invalid func unknown#\d+|unknown func \w+#\d+|cannot use helper|cannot call helper"
                       r"|calling kernel function \S+ is not allowed|kernel function \S+ .*not (?:found|allowed)"
                       r"|extern \(func ksym\) '[^']*': not found|failed to find BTF for extern"
                       r"|kfunc .* is not (?:found|allowed)")),
    ("unsupported_type", (r"map '[^']*': failed to create|failed to create map|program type .* not supported"
                         r"|map type .* not supported|unknown (?:prog|map) type")),
)

_LOG = re.compile(r"-- BEGIN PROG LOAD LOG --\n(.*?)\n?-- END PROG LOAD LOG --", re.DOTALL)
# BCC prints the log after this line, and Python's traceback after the log.
# Not anchored: in a console transcript the line can start with the shell's prompt.
_BCC_LOG = re.compile(r"bpf: Failed to load program: [^\n]*\n(.*?)(?=^Traceback|^HINT:|\Z)", re.DOTALL | re.MULTILINE)
#: Lines that say a BPF program failed to load or attach, from BCC, libbpf, bpftool or bpftrace.
_FAILED = re.compile(r"-- BEGIN PROG LOAD LOG --|bpf: Failed to load program|BPF program load failed"
                     r"|failed to load (?:object|BPF object|program)|failed to create map|map '[^']*': failed to create"
                     r"|[Ff]ailed to attach|ERROR: Error loading program|ERROR: Could not attach")

#: errno values, as libbpf reports them.
EPERM, ENOENT, E2BIG, EINVAL, EOPNOTSUPP, ENOTSUPP = 1, 2, 7, 22, 95, 524


def verifier_log(text: str) -> str:
    """The verifier's log in libbpf's or BCC's messages *text* (all of them, joined), or ""."""
    parts = _LOG.findall(text) or _BCC_LOG.findall(text)
    return "\n".join(part.strip("\n") for part in parts if part.strip())


def load_failure(text: str, *, lines: int = 30) -> str | None:
    """What to put in a failed test's report when a BPF program in *text* (a guest's output)
    failed to load or attach: the reason, then the end of the verifier log; None if none did."""
    if not _FAILED.search(text):
        return None
    log = verifier_log(text)
    found = "\n".join(line for line in text.splitlines() if _FAILED.search(line))
    return f"{explain(classify(text))}\n{excerpt(log, lines=lines) if log else last_lines(found, lines=lines)}"


def classify(text: str, *, errno: int = 0, stage: str = "load") -> str:
    """The kind (a key of REASONS) of a failure to load or, with *stage* "attach", to attach."""
    for kind, pattern in _PATTERNS:
        if re.search(pattern, text):
            return kind
    if stage == "attach" and errno in (ENOENT, EINVAL):
        return "attach_point"
    if verifier_log(text):
        return "verifier"
    if errno == EPERM:
        return "not_permitted"
    if errno in (EINVAL, EOPNOTSUPP, ENOTSUPP, E2BIG):
        # An empty log with EINVAL is how a kernel refuses a program type it does not know.
        return "unsupported_type"
    return "other"


def explain(kind: str) -> str:
    return REASONS.get(kind, REASONS["other"])


def excerpt(log: str, *, lines: int = 8) -> str:
    """The part of a verifier *log* that says what it refused: the end of its instruction trace
    (the failing instruction and the verifier's error), and the "Verification failed", "Reason"
    and "Suggestion" paragraphs newer kernels add after it."""
    paragraphs = re.split(r"\n\s*\n", log.strip())
    trace = [line for line in paragraphs[0].splitlines() if line.strip() and not line.startswith("processed ")]
    kept = trace[-lines:]
    for paragraph in paragraphs[1:]:
        if paragraph.lstrip().startswith(("Verification failed", "Reason:", "Suggestion:")):
            kept += paragraph.splitlines()
    return "\n".join(kept)


def last_lines(text: str, *, lines: int = 8) -> str:
    """The last *lines* non-empty lines of a log: where the verifier says what it refused."""
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])
