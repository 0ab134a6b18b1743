"""The kernel x test table printed at the end of a pytest run. Pure: rows in, lines out."""

from __future__ import annotations

import re

_SYMBOL = {"passed": "pass", "failed": "FAIL", "skipped": "skip"}


def short_test_name(nodeid: str) -> str:
    """``tests/test_hello.py::test_x[6.1-amd64]`` -> ``test_hello.py::test_x`` (the kernel is a column)."""
    name = re.sub(r"\[[^\]]*\]$", "", nodeid)
    return name.split("/")[-1]


def kernel_table(rows: list[tuple[str, str, dict]]) -> list[str]:
    """Lines of a table: one row per test, one column per kernel, then boot and lab times.

    *rows* are (nodeid, outcome, properties) with at least the ``kernel`` property.
    """
    kernels: list[str] = []
    cells: dict[tuple[str, str], str] = {}
    boot: dict[str, float] = {}
    lab: dict[str, float] = {}
    for nodeid, outcome, props in rows:
        kernel = str(props["kernel"])
        if kernel not in kernels:
            kernels.append(kernel)
        test = short_test_name(nodeid)
        params = re.search(r"\[([^\]]*)\]$", nodeid)
        extra = params.group(1).replace(kernel, "").strip("-") if params else ""
        key = (test + (f"[{extra}]" if extra else ""), kernel)
        previous = cells.get(key)
        # Several params of one test on one kernel: a failure wins over a pass.
        if previous is None or outcome == "failed":
            cells[key] = _SYMBOL.get(outcome, outcome)
        if "boot_seconds" in props:
            boot[kernel] = boot.get(kernel, 0.0) + float(props["boot_seconds"])
        if "lab_seconds" in props:
            lab[kernel] = lab.get(kernel, 0.0) + float(props["lab_seconds"])
    tests = list(dict.fromkeys(test for test, _ in cells))
    width = max([len(t) for t in tests] + [10])
    col = max([len(k) for k in kernels] + [6]) + 2
    lines = [f"{'test':<{width}}" + "".join(f"{k:>{col}}" for k in kernels)]
    for test in tests:
        lines.append(f"{test:<{width}}" + "".join(f"{cells.get((test, k), '-'):>{col}}" for k in kernels))
    lines.append(f"{'boot (s)':<{width}}" + "".join(f"{boot[k]:>{col}.1f}" if k in boot else f"{'-':>{col}}" for k in kernels))
    lines.append(f"{'labs (s)':<{width}}" + "".join(f"{lab[k]:>{col}.1f}" if k in lab else f"{'-':>{col}}" for k in kernels))
    return lines
