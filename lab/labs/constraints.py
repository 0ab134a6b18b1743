"""Kernel version constraints: ``>=5.8``, ``<6.12``, ``>=5.10,<7``, ``==6.1``. Pure functions."""

from __future__ import annotations

import operator
import re

from lab.errors import UsageError

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq, "!=": operator.ne}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def kernel_matches(series: str, constraint: str) -> bool:
    """True when kernel *series* (``6.1``) satisfies every comma-separated part of *constraint*."""
    have = _version(series)
    for part in constraint.split(","):
        part = part.strip()
        if not part:
            continue
        match = re.fullmatch(r"(>=|<=|==|!=|>|<)?\s*(\d+(?:\.\d+)*)", part)
        if not match:
            raise UsageError(f"bad kernel constraint {part!r}", hint="write e.g. '>=5.8', '<6.12' or '>=5.10,<7'")
        op = _OPS[match.group(1) or "=="]
        want = _version(match.group(2))
        # Compare on as many components as the constraint gives: '>=6' admits 6.1.
        if not op(have[: len(want)] + (0,) * (len(want) - len(have[: len(want)])), want):
            return False
    return True
