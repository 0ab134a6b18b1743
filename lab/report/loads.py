"""``lab load``'s answer: a kernel x program table of what loaded, and why the rest did not.

Pure functions over lab.guest.bpf_objects.ObjectLoad values, one per kernel (or a
GuestError where the guest itself failed).
"""

from __future__ import annotations

from collections.abc import Mapping

from lab.errors import GuestError
from lab.guest import verifier
from lab.guest.bpf_objects import ObjectLoad
from lab.report.grid import render_grid

Outcome = ObjectLoad | GuestError


def cell(load: Outcome | None, program: str) -> str:
    """One cell: attached, loaded, or rejected/not attached with the short reason."""
    if load is None:
        return "-"
    if isinstance(load, GuestError):
        return "ERROR"
    if load.error:
        return "unreadable"
    found = next((p for p in load.programs if p.name == program), None)
    if found is None:
        return "-"
    return found.status + (f" ({found.reason})" if found.reason else "")


def render(results: Mapping[str, Outcome], *, log_lines: int = 8) -> str:
    """The table, then for each failure its reason and the last lines of the verifier log."""
    programs: list[str] = []
    for load in results.values():
        if isinstance(load, ObjectLoad):
            programs += [p.name for p in load.programs if p.name not in programs]
    lines = render_grid("program", programs or ["(none)"], list(results), lambda p, k: cell(results[k], p))
    for kernel, load in results.items():
        if isinstance(load, GuestError):
            lines += ["", f"{kernel}: the guest failed: {load.message}"]
            continue
        if load.error:
            lines += ["", f"{kernel}: {load.error}", *_indent(verifier.last_lines(load.log, lines=log_lines))]
        for program in load.programs:
            if not program.ok:
                reason, _, detail = program.why(lines=log_lines).partition("\n")
                lines += ["", f"{kernel}: {program.name} ({program.section}): {program.status}: {reason}",
                          *_indent(detail)]
    return "\n".join(lines) + "\n"


def as_json(results: Mapping[str, Outcome]) -> list[dict]:
    """The same, for machines: one entry per kernel."""
    entries = []
    for kernel, load in results.items():
        if isinstance(load, GuestError):
            entries.append({"kernel": kernel, "error": load.message, "programs": []})
            continue
        entries.append({
            "kernel": kernel, "libbpf": load.libbpf, "error": load.error, "loaded": load.loaded,
            "attached": load.attached,
            "programs": [{"name": p.name, "section": p.section, "status": p.status, "loaded": p.loaded,
                          "attached": p.attached, "reason": p.reason,
                          "explanation": verifier.explain(p.reason) if p.reason else "",
                          "verifier_log": p.verifier_log, "log": p.log} for p in load.programs],
        })
    return entries


def ok(results: Mapping[str, Outcome]) -> bool:
    return all(isinstance(load, ObjectLoad) and load.attached for load in results.values())


def _indent(text: str) -> list[str]:
    return [f"    {line}" for line in text.splitlines()]
