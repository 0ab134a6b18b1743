"""What BPF a kernel really has, asked of the kernel: ``bpftool feature probe`` in a guest.

The probe's JSON is flattened into feature names people write in markers and read in the
matrix: ``prog:kprobe``, ``map:ringbuf``, ``helper:bpf_loop`` (available to some program
type), ``helper:kprobe:bpf_loop`` (to that one), ``misc:bounded_loops``. A kernel's probe is
cached beside nothing else: ``<cache>/features/<kernel id>-<Debian package version>.json``,
so a new Debian kernel is probed again and an unchanged one never twice. The flattening is
pure and tested on recorded probes (``tests/data/features/``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lab.errors import GuestError, UsageError
from lab.host import integrity
from lab.settings import cache_dir

if TYPE_CHECKING:
    from lab.guest.guest import Guest
    from lab.guest.kernel import Kernel

#: The families of feature names, for errors and the matrix's order. ``bcc:`` is the guest's
#: userland, not the kernel: ``bcc:0.26.0`` (its release) and ``bcc:compiles`` (it compiled a
#: program including the kernel's linux/fs.h, which an older BCC fails on with a newer kernel).
FAMILIES = ("prog", "map", "helper", "misc", "bcc")

#: The userland check: BCC compiles (and loads) a program that includes the kernel's own linux/fs.h.
_BCC_CHECK = ("python3 -c 'import bcc, sys; print(\"bcc\", bcc.__version__); sys.stdout.flush(); "
              "bcc.BPF(text=\"#include <linux/fs.h>\\nint f(void *c) { return 0; }\"); print(\"bcc compiles\")' 2>&1")

_PROG = re.compile(r"have_(\w+)_prog_type$")
_MAP = re.compile(r"have_(\w+)_map_type$")
_HELPERS = re.compile(r"(\w+)_available_helpers$")


@dataclass(frozen=True)
class Features:
    """The features one kernel has (names as above), and the ones probed but missing."""

    kernel: str
    present: frozenset[str]
    absent: frozenset[str]
    #: The guest's bpftool (``v7.1.0``), and the helpers it knows how to probe (empty: unknown).
    bpftool: str = ""
    known_helpers: frozenset[str] = frozenset()

    def has(self, name: str) -> bool:
        return name in self.present

    def state(self, name: str) -> str:
        """"yes", "no", or "?" when this guest's bpftool does not probe it (an older bpftool
        knows fewer map and program types; it lists the helpers it found, so others are "no")."""
        if name in self.present:
            return "yes"
        if name.startswith("helper:"):
            helper = name.rsplit(":", 1)[1]
            return "no" if not self.known_helpers or helper in self.known_helpers else "?"
        return "no" if name in self.absent else "?"

    def missing(self, names: Iterable[str]) -> list[str]:
        """Those of *names* this kernel does not have (or its bpftool does not probe); a name not
        written as ``family:name`` raises UsageError."""
        for name in names:
            family, _, rest = name.partition(":")
            if family not in FAMILIES or not re.fullmatch(r"\w+(:\w+)?", rest):
                raise UsageError(f"unknown BPF feature {name!r}",
                                 hint=f"names look like {', '.join(f'{f}:…' for f in FAMILIES)}; "
                                      "'lab features --all' lists them")
        return [n for n in names if n not in self.present]


def flatten(probe: Mapping[str, object], *, kernel: str) -> Features:
    """The feature names in bpftool's ``-j feature probe kernel`` answer *probe*."""
    present: set[str] = set()
    absent: set[str] = set()

    def note(name: str, have: object) -> None:
        (present if have is True else absent).add(name)

    for key, have in _section(probe, "program_types").items():
        if match := _PROG.match(key):
            note(f"prog:{match.group(1)}", have)
    for key, have in _section(probe, "map_types").items():
        if match := _MAP.match(key):
            note(f"map:{match.group(1)}", have)
    for key, have in _section(probe, "misc").items():
        note(f"misc:{key.removeprefix('have_')}", have)
    helpers: set[str] = set()
    for key, names in _section(probe, "helpers").items():
        if (match := _HELPERS.match(key)) and isinstance(names, list):
            present.update(f"helper:{match.group(1)}:{name}" for name in names)
            helpers.update(names)
    present.update(f"helper:{name}" for name in helpers)
    ours = _section(probe, "ebpf_lab")
    if ours.get("bcc"):
        present.add(f"bcc:{ours['bcc']}")
        note("bcc:compiles", ours.get("bcc_compiles"))
    known = ours.get("known_helpers", [])
    return Features(kernel=kernel, present=frozenset(present), absent=frozenset(absent - present),
                    bpftool=str(ours.get("bpftool", "")), known_helpers=frozenset(known if isinstance(known, list) else []))


def _section(probe: Mapping[str, object], name: str) -> Mapping[str, object]:
    value = probe.get(name, {})
    return value if isinstance(value, Mapping) else {}


def cache_path(kernel_id: str, version: str) -> Path:
    """Where the probe of kernel *kernel_id* at Debian package *version* is kept."""
    return cache_dir() / "features" / f"{kernel_id}-{version}.json"


def cached(kernel: Kernel) -> Features | None:
    """The kernel's probe from the cache, or None when it was not probed (or the entry is damaged)."""
    return load(kernel.id, kernel.files.version)


def load(kernel_id: str, version: str) -> Features | None:
    try:
        data = json.loads(cache_path(kernel_id, version).read_text())
    except (OSError, ValueError):
        return None
    # Sealed when written: an entry edited or cut short afterwards is probed again.
    return flatten(data, kernel=kernel_id) if isinstance(data, dict) and integrity.seal_holds(data) else None


def probe(guest: Guest, kernel: Kernel) -> Features:
    """Probe *kernel* in its booted *guest* with the guest's bpftool, and cache the answer."""
    answer = guest.run("bpftool -j feature probe kernel 2>/dev/null", timeout=guest.timeouts.attach)
    # What this bpftool can tell at all: an older one knows fewer helpers, and "no" would lie.
    about = guest.run("bpftool version | head -1; bpftool feature list_builtins helpers 2>/dev/null", timeout=120)
    text = answer.output.strip()
    start = text.find("{")
    try:
        data = json.loads(text[start:]) if answer.ok and start >= 0 else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise GuestError(f"{guest.label}: 'bpftool feature probe' gave no JSON (exit {answer.returncode})",
                         hint="is bpftool installed in the guest? ('lab setup'; root filesystems carry their suite's)",
                         log_path=str(guest.log_path))
    lines = about.output.split()
    bcc = guest.run(_BCC_CHECK, timeout=guest.timeouts.attach).output.splitlines()
    release = next((line.split()[1] for line in bcc if line.startswith("bcc ") and len(line.split()) == 2), "")
    data["ebpf_lab"] = {"bpftool": lines[1] if len(lines) > 1 else "",
                        "known_helpers": [word for word in lines[2:] if word.startswith("bpf_")],
                        "bcc": release, "bcc_compiles": "bcc compiles" in bcc}
    path = cache_path(kernel.id, kernel.files.version)
    path.parent.mkdir(parents=True, exist_ok=True)
    integrity.write_manifest(path, data)
    return flatten(data, kernel=kernel.id)


def matrix_rows(table: Mapping[str, Features], *, everything: bool = False) -> list[str]:
    """Feature names for the matrix: those that differ between the kernels (all with *everything*)."""
    names: set[str] = set()
    for features in table.values():
        names |= features.present | features.absent
    rows = [n for n in names if n.count(":") == 1]  # per-program-type helpers only in --json
    if not everything:
        rows = [n for n in rows if len({f.state(n) for f in table.values()}) > 1]
    return sorted(rows, key=lambda n: (FAMILIES.index(n.split(":")[0]) if n.split(":")[0] in FAMILIES else 9, n))
