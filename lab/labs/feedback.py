"""What a student sees when a lab fails: the verdict, the hint, and the program's own words.

Pure functions over a LabFailure, so the CLI prints them and tests check them without a guest.
"""

from __future__ import annotations

import re

from lab.errors import LabFailure
from lab.guest import console


def program_excerpt(output: str, *, lines: int = 15) -> str:
    """The part of a program's *output* that says what went wrong.

    For a compile failure that is clang's diagnostics (error, source line, caret), which BCC
    prints before a long Python traceback that would otherwise fill the tail; else the last lines.
    """
    kept = [line.rstrip() for line in console.clean(output).split("\n") if line.strip()]
    first = next((i for i, line in enumerate(kept) if console.is_compile_error(line)), None)
    if first is None:
        return "\n".join(kept[-lines:])
    block: list[str] = []
    for line in kept[first:]:
        if line.startswith("Traceback") or re.match(r"\d+ (errors?|warnings?)( and \d+ \w+)? generated", line):
            break
        block.append(line)
    return "\n".join(block[:lines])


def failure_lines(failure: LabFailure, *, kernel_id: str, show_output: bool) -> list[str]:
    """The lines ``lab check`` prints for a failed lab on one kernel."""
    lines = [f"{kernel_id}: FAIL {failure.message}"]
    if failure.hint:
        lines.append(f"  hint: {failure.hint}")
    excerpt = program_excerpt(failure.output) if show_output else ""
    if excerpt:
        lines.append("--- your program's output" + (" (compiler errors)" if failure.kind == "compile" else " (last lines)")
                     + " ---")
        lines.extend(excerpt.split("\n"))
    elif show_output:
        lines.append("--- your program printed nothing ---")
    return lines
