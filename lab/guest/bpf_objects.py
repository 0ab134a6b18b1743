"""Load a compiled BPF object (``.bpf.o``) in a guest and report, per program, what happened.

The work is done in the guest by ``guest_files/bpfload.py`` with the guest's own libbpf;
this side copies the object in, runs the loader and reads its one JSON line (a pure
parse, tested on recorded answers), classifying each failure with lab.guest.verifier.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lab.errors import GuestError
from lab.guest import verifier
from lab.host.resources import package_dir

if TYPE_CHECKING:
    from lab.guest.guest import Guest

#: The loader, run by the guest's Python.
LOADER = package_dir("lab.guest", "guest_files") / "bpfload.py"

_MARK = "EBPF-LAB-LOAD "


@dataclass(frozen=True)
class ProgramLoad:
    """One program of an object on one kernel."""

    name: str
    section: str
    loaded: bool
    #: None when attaching was not tried (not asked, or the load failed).
    attached: bool | None
    #: A key of verifier.REASONS, or "" when nothing failed.
    reason: str = ""
    #: The verifier's log when it rejected the program, else "".
    verifier_log: str = ""
    #: Everything libbpf printed for this program.
    log: str = ""

    @property
    def status(self) -> str:
        if not self.loaded:
            return "rejected"
        if self.attached is False:
            return "not attached"
        return "attached" if self.attached else "loaded"

    @property
    def ok(self) -> bool:
        return self.loaded and self.attached is not False

    def why(self, *, lines: int = 8) -> str:
        """The reason in words, then the last lines of the verifier log (or of libbpf's messages)."""
        if self.ok:
            return ""
        detail = (verifier.excerpt(self.verifier_log, lines=lines) if self.verifier_log
                  else verifier.last_lines(self.log, lines=lines))
        return f"{verifier.explain(self.reason)}\n{detail}"


@dataclass(frozen=True)
class ObjectLoad:
    """Every program of an object on one kernel: what ``vm.load()`` returns."""

    object: str
    libbpf: str = ""
    #: Set when the object could not even be opened (not an ELF, not BPF, no programs).
    error: str = ""
    log: str = ""
    programs: tuple[ProgramLoad, ...] = field(default_factory=tuple)

    @property
    def loaded(self) -> bool:
        return not self.error and bool(self.programs) and all(p.loaded for p in self.programs)

    @property
    def attached(self) -> bool:
        return self.loaded and all(p.attached is not False for p in self.programs)

    @property
    def verifier_log(self) -> str:
        return "\n".join(p.verifier_log for p in self.programs if p.verifier_log)

    @property
    def reasons(self) -> list[str]:
        return [p.reason for p in self.programs if p.reason]

    def summary(self) -> str:
        """Lines for a person: each program's status, and why the failed ones failed."""
        if self.error:
            return f"{self.object}: {self.error}" + (f"\n{verifier.last_lines(self.log)}" if self.log.strip() else "")
        lines = []
        for program in self.programs:
            lines.append(f"{program.name} ({program.section}): {program.status}")
            if not program.ok:
                lines.extend("  " + line for line in program.why().splitlines())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def load_object(guest: Guest, obj: Path, *, attach: bool = True, python: str = "/usr/bin/python3") -> ObjectLoad:
    """Load each program of *obj* alone in *guest* (and attach it, where its section says how)."""
    path = guest.copy_in(obj)
    loader = guest.copy_in(LOADER)
    argv = [python, loader, "report", path] + ([] if attach else ["--no-attach"])
    result = guest.run(shlex.join(argv), timeout=guest.timeouts.attach)
    return parse_report(result.output, what=f"{guest.label}: loading {obj.name}")


def parse_report(output: str, *, what: str = "loading") -> ObjectLoad:
    """The loader's answer in console *output*; GuestError when there is none (the loader crashed)."""
    line = next((line for line in reversed(output.splitlines()) if line.startswith(_MARK)), None)
    if line is None:
        raise GuestError(f"{what}: the guest's loader gave no answer: {verifier.last_lines(output, lines=3)}",
                         hint="is libbpf1 installed in the guest? (python3 -c 'import ctypes; ctypes.CDLL(\"libbpf.so.1\")')")
    data = json.loads(line[len(_MARK):])
    programs = tuple(_program(entry) for entry in data.get("programs", []))
    return ObjectLoad(object=data.get("object", ""), libbpf=data.get("libbpf") or "", error=data.get("error", ""),
                      log=data.get("log", ""), programs=programs)


def _program(entry: dict) -> ProgramLoad:
    log = entry.get("log", "")
    loaded, attached = bool(entry.get("loaded")), entry.get("attached")
    reason = ""
    if not loaded:
        reason = verifier.classify(log, errno=entry.get("errno", 0))
    elif attached is False:
        reason = verifier.classify(log, errno=entry.get("errno", 0), stage="attach")
    return ProgramLoad(name=entry.get("name", "?"), section=entry.get("section", ""), loaded=loaded,
                       attached=attached, reason=reason, verifier_log=verifier.verifier_log(log), log=log)
