"""The kernel × test matrix: from JUnit XML files of CI shards (``lab report``) or from a running
pytest session's reports (the plugin's terminal summary).

Pure functions: parse pytest's JUnit XML, merge shards, render a terminal table and a
single self-contained HTML page (inline CSS, inline SVG, no scripts or fonts fetched
from anywhere, so it opens from a CI artifact as it is). Reading files is left to the
edges (:func:`load`, the CLI).
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab.errors import UsageError
from lab.guest.features import Features
from lab.kernels.catalog import id_order
from lab.report import features_page
from lab.report.grid import render_grid

#: Column used for tests that boot no kernel (they ran on the CI host itself).
HOST = "host"
#: Outcomes, best first; merging keeps the worst when a cell was reported twice.
OUTCOMES = ("pass", "skip", "fail", "error")
#: What the table prints per outcome.
LABELS = {"pass": "PASS", "skip": "SKIP", "fail": "FAIL", "error": "ERROR", None: "-"}
#: Per-kernel time segments for the chart: (key, label, colour).
SEGMENTS = (
    ("boot", "boot", "#5b8def"),
    ("attach", "BCC compile + attach", "#f2a541"),
    ("lab", "lab run", "#8e6bd1"),
    ("other", "other test time", "#9aa5b1"),
)

_PARAM = re.compile(r"^(?P<base>.*?)\[(?P<param>.*)\]$")


@dataclass(frozen=True)
class Case:
    """One test case on one kernel, as one JUnit ``<testcase>`` reported it."""

    #: The test without its kernel parameter: ``tests.test_hello::test_hello_lab_traces_execve``.
    test: str
    #: Kernel id, or :data:`HOST` for a test that boots none.
    kernel: str
    #: One of :data:`OUTCOMES`.
    outcome: str
    #: One line: the failure/skip message.
    message: str = ""
    #: The whole failure text (traceback, guest console tail).
    details: str = ""
    #: Seconds pytest measured for the test case (setup + call + teardown).
    seconds: float = 0.0
    #: ``record_property`` values (``kernel``, ``kernel_version``, ``boot_seconds``…).
    properties: dict[str, str] = field(default_factory=dict, compare=False)
    #: Which JUnit file it came from, for the duplicate warning.
    source: str = field(default="", compare=False)


@dataclass
class Matrix:
    """Kernel × test: one :class:`Case` per cell, plus what merging noticed."""

    kernels: list[str]
    tests: list[str]
    cells: dict[tuple[str, str], Case]
    #: Cells reported by more than one file (shards that overlapped): "test on kernel: a, b".
    duplicates: list[str] = field(default_factory=list)

    def cell(self, test: str, kernel: str) -> Case | None:
        return self.cells.get((test, kernel))

    def counts(self) -> dict[str, int]:
        totals = {o: 0 for o in OUTCOMES}
        for case in self.cells.values():
            totals[case.outcome] += 1
        return totals

    def versions(self) -> dict[str, str]:
        """Kernel id -> the ``kernel_version`` property, where a test case recorded it."""
        found: dict[str, str] = {}
        for case in self.cells.values():
            if case.properties.get("kernel_version"):
                found.setdefault(case.kernel, case.properties["kernel_version"])
        return found

    def time_per_kernel(self) -> dict[str, dict[str, float]]:
        """Kernel -> seconds per :data:`SEGMENTS` key, plus ``total``.

        From the ``boot_seconds``, ``lab_attach_seconds`` and ``lab_seconds``
        properties where present (``lab_seconds`` includes the attach); whatever
        the test case's time leaves over is "other". Without properties a kernel
        has only "other".
        """
        result: dict[str, dict[str, float]] = {}
        for case in self.cells.values():
            row = result.setdefault(case.kernel, {key: 0.0 for key, _, _ in SEGMENTS} | {"total": 0.0})
            boot = _number(case.properties.get("boot_seconds"))
            attach = _number(case.properties.get("lab_attach_seconds"))
            lab = max(_number(case.properties.get("lab_seconds")) - attach, 0.0)
            # A case's time may not include the boot (pytest books session-fixture setup on
            # the first test, but a plugin may record it elsewhere); the bar shows the larger.
            total = max(case.seconds, boot + attach + lab)
            row["boot"] += boot
            row["attach"] += attach
            row["lab"] += lab
            row["other"] += total - boot - attach - lab
            row["total"] += total
        return {k: result[k] for k in self.kernels if k in result}


def _number(text: str | None) -> float:
    try:
        return max(float(text), 0.0) if text else 0.0
    except ValueError:
        return 0.0


def split_name(name: str, *, known_kernels: Iterable[str] = ()) -> tuple[str, str | None]:
    """``"test_x[6.1-amd64]"`` -> ``("test_x", "6.1-amd64")``; no parameter -> ``(name, None)``.

    pytest joins several parameters with ``-`` (``[6.1-amd64-big]``), and kernel ids
    contain ``-`` too, so with ``known_kernels`` the id found inside the brackets
    wins and the rest stays in the test's name.
    """
    match = _PARAM.match(name)
    if not match:
        return name, None
    base, param = match["base"], match["param"]
    for kid in sorted(known_kernels, key=len, reverse=True):
        for rest in (param.removeprefix(kid + "-") if param.startswith(kid + "-") else None,
                     param.removesuffix("-" + kid) if param.endswith("-" + kid) else None):
            if rest:
                return f"{base}[{rest}]", kid
        if param == kid:
            return base, kid
    if known_kernels:
        return name, None
    return base, param


def parse_junit(text: str, *, source: str = "", known_kernels: Iterable[str] = ()) -> list[Case]:
    """Every ``<testcase>`` of one pytest JUnit XML document.

    The kernel comes from the ``kernel`` property when the plugin recorded it, else
    from the ``[id]`` in the test's name; a test with neither ran on the host.
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise UsageError(f"{source or 'JUnit input'} is not valid XML: {exc}",
                         hint="give the files written by pytest --junitxml") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise UsageError(f"{source or 'JUnit input'} is not JUnit XML (root <{root.tag}>)",
                         hint="give the files written by pytest --junitxml")
    known = list(known_kernels)
    return [_case(element, source=source, known=known) for element in root.iter("testcase")]


def _case(element: ET.Element, *, source: str, known: list[str]) -> Case:
    properties = {p.get("name", ""): p.get("value", "") for p in element.iter("property")}
    outcome, message, details = "pass", "", ""
    # pytest writes <failure> for a failing call and <error> for a broken setup/teardown;
    # a failing test whose teardown also broke carries both, and the failure is the news.
    for tag, kind in (("skipped", "skip"), ("error", "error"), ("failure", "fail")):
        found = element.find(tag)
        if found is not None:
            outcome, message, details = kind, found.get("message", ""), (found.text or "").strip()
    if outcome == "skip" and not message:
        message = details
    return _new_case(classname=element.get("classname", ""), name=element.get("name", ""), properties=properties,
                     known=known, outcome=outcome, message=message.strip(), details=details,
                     seconds=_number(element.get("time")), source=source)


def _new_case(*, classname: str, name: str, properties: dict[str, str], known: Iterable[str], **fields) -> Case:  # type: ignore[no-untyped-def]
    """The kernel from the ``kernel`` property when the plugin recorded it, else from the ``[id]`` in the name."""
    recorded = properties.get("kernel") or None
    base, from_name = split_name(name, known_kernels=[recorded] if recorded else known)
    return Case(test=f"{classname}::{base}" if classname else base, kernel=recorded or from_name or HOST,
                properties=properties, **fields)


#: pytest's outcome of a test's call -> ours (a failing setup or teardown is an error, as in JUnit XML).
_PYTEST_OUTCOMES = {"passed": "pass", "failed": "fail", "skipped": "skip"}


def pytest_case(nodeid: str, *, when: str, outcome: str, properties: dict[str, object], seconds: float = 0.0) -> Case:
    """One phase's report of a running pytest session as the Case its JUnit XML would give.

    The node id is named as pytest's junitxml names it: ``tests/test_x.py::TestY::test_z[p]``
    is class ``tests.test_x.TestY``, test ``test_z[p]``.
    """
    # pytest-xdist's --dist loadgroup appends "@<group>" to the node id it schedules by.
    nodeid = re.sub(r"(?<=\])@[^\[\]]*$", "", nodeid)
    path, bracket, params = nodeid.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    kind = "error" if when != "call" and outcome == "failed" else _PYTEST_OUTCOMES.get(outcome, outcome)
    return _new_case(classname=".".join(names[:-1]), name=names[-1] + bracket + params, known=(),
                     properties={k: str(v) for k, v in properties.items()}, outcome=kind, seconds=seconds)


def merge(cases: Iterable[Case], *, kernel_order: Sequence[str] = ()) -> Matrix:
    """One matrix from the cases of every shard; a cell reported twice keeps the worse outcome."""
    cells: dict[tuple[str, str], Case] = {}
    duplicates: list[str] = []
    tests: list[str] = []
    for case in cases:
        key = (case.test, case.kernel)
        if case.test not in tests:
            tests.append(case.test)
        old = cells.get(key)
        if old is not None:
            duplicates.append(f"{case.test} on {case.kernel}: {old.source or '?'}, {case.source or '?'}")
            if OUTCOMES.index(old.outcome) >= OUTCOMES.index(case.outcome):
                continue
        cells[key] = case
    seen = {kernel for _, kernel in cells}
    ordered = [k for k in kernel_order if k in seen]
    ordered += sorted((k for k in seen if k not in ordered and k != HOST), key=id_order)
    if HOST in seen and HOST not in ordered:
        ordered.append(HOST)
    return Matrix(kernels=ordered, tests=sorted(tests), cells=cells, duplicates=duplicates)


def load(paths: Sequence[Path], *, known_kernels: Iterable[str] = ()) -> Matrix:
    """Read and merge JUnit files (the I/O edge of this module)."""
    known = list(known_kernels)
    cases: list[Case] = []
    for path in paths:
        try:
            text = path.read_text()
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}", hint="give pytest --junitxml files") from None
        cases += parse_junit(text, source=str(path), known_kernels=known)
    return merge(cases, kernel_order=known)


# --- terminal ---------------------------------------------------------------------------------


def render_table(matrix: Matrix, *, verdicts: bool = True) -> str:
    """The matrix for a terminal: one row per test, one column per kernel, then failures and time.

    Without *verdicts* (the counts and each failure's first line) for pytest's terminal summary,
    where pytest has printed those already.
    """
    short = {_short(t): t for t in matrix.tests}
    lines = render_grid("test", list(short), matrix.kernels,
                        lambda name, k: LABELS[c.outcome if (c := matrix.cell(short[name], k)) else None])
    if verdicts:
        lines.append("")
        lines += _verdict_lines(matrix)
    times = matrix.time_per_kernel()
    if times:
        lines.append("")
        lines.append("time per kernel: " + "; ".join(
            f"{k} {row['total']:.0f}s" + (f" (boot {row['boot']:.0f}s, attach {row['attach']:.0f}s, lab {row['lab']:.0f}s)"
                                          if row["boot"] or row["attach"] or row["lab"] else "")
            for k, row in times.items()))
    for duplicate in matrix.duplicates:
        lines.append(f"warning: reported twice (overlapping shards?): {duplicate}")
    return "\n".join(lines) + "\n"


def _verdict_lines(matrix: Matrix) -> list[str]:
    problems = [c for t in matrix.tests for k in matrix.kernels
                if (c := matrix.cell(t, k)) and c.outcome in ("fail", "error")]
    return [summary_line(matrix.counts())] + [
        f"{LABELS[case.outcome]} {_short(case.test)} on {case.kernel}: {_first_line(case.message or case.details)}"
        for case in problems]


def summary_line(counts: dict[str, int]) -> str:
    """pytest's own wording: ``3 passed, 1 failed, 1 error, 2 skipped``."""
    error = "error" if counts["error"] == 1 else "errors"
    return ", ".join(f"{counts[o]} {word}" for o, word in
                     (("pass", "passed"), ("fail", "failed"), ("error", error), ("skip", "skipped")))


def _short(test: str) -> str:
    module, _, name = test.rpartition("::")
    return f"{module.rpartition('.')[2]}::{name}" if module else name


def _first_line(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= 160 else line[:157] + "..."


# --- HTML -------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1f2328;background:#fff}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
.summary span{display:inline-block;margin-right:12px;padding:2px 8px;border-radius:10px}
table.matrix{border-collapse:collapse} .matrix th,.matrix td{border:1px solid #d0d7de;padding:4px 8px;vertical-align:top}
.matrix th{background:#f6f8fa;text-align:left} .matrix th.kernel{text-align:center} .kver{font-weight:normal;color:#57606a;font-size:12px}
td.pass{background:#d3f5dc;color:#0f5323} td.fail{background:#ffd7d5;color:#82071e} td.error{background:#ffe2b8;color:#7a2e00}
td.skip{background:#eaeef2;color:#424a53} td.none{color:#8c959f;text-align:center}
td.cell{min-width:72px;font-weight:600;text-align:center} summary{cursor:pointer}
details pre{font-weight:normal;text-align:left;white-space:pre-wrap;max-width:640px;max-height:320px;overflow:auto;
  background:#fff;color:#1f2328;border:1px solid #d0d7de;padding:6px;font-size:12px}
.legend span{display:inline-block;margin-right:14px} .legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
.warn{color:#82071e}
"""


def render_html(matrix: Matrix, *, title: str = "ebpf-lab test report", features: Mapping[str, Features] | None = None) -> str:
    """One self-contained HTML page: summary, matrix (failure details in ``<details>``), time chart,
    and the kernels' BPF features when they were probed."""
    counts = matrix.counts()
    versions = matrix.versions()
    esc = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_CSS}{features_page.CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        '<p class="summary">' + "".join(
            f'<span class="{o}" style="background:{bg}">{part}</span>'
            for o, part, bg in zip(("pass", "fail", "error", "skip"), summary_line(counts).split(", "),
                                   ("#d3f5dc", "#ffd7d5", "#ffe2b8", "#eaeef2")))
        + f"<span>{len(matrix.tests)} tests × {len([k for k in matrix.kernels if k != HOST])} kernels</span></p>",
        "<h2>Kernel × test</h2>", '<table class="matrix" id="matrix"><thead><tr><th>test</th>',
    ]
    for kernel in matrix.kernels:
        version = f'<br><span class="kver">{esc(versions[kernel])}</span>' if kernel in versions else ""
        parts.append(f'<th class="kernel">{esc(kernel)}{version}</th>')
    parts.append("</tr></thead><tbody>")
    for test in matrix.tests:
        parts.append(f'<tr><th title="{esc(test)}">{esc(_short(test))}</th>')
        for kernel in matrix.kernels:
            parts.append(_html_cell(matrix.cell(test, kernel), test=test, kernel=kernel))
        parts.append("</tr>")
    parts.append("</tbody></table>")
    for duplicate in matrix.duplicates:
        parts.append(f'<p class="warn">reported twice (overlapping shards?): {esc(duplicate)}</p>')
    parts.append("<h2>Where the time went, per kernel</h2>")
    parts.append(render_chart({k: v for k, v in matrix.time_per_kernel().items() if k != HOST}))
    parts.append(features_page.render_section(features or {}))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_cell(case: Case | None, *, test: str, kernel: str) -> str:
    esc = html.escape
    if case is None:
        return '<td class="cell none" data-outcome="none">-</td>'
    label = LABELS[case.outcome]
    attrs = f'class="cell {case.outcome}" data-outcome="{case.outcome}" data-test="{esc(test)}" data-kernel="{esc(kernel)}"'
    tip = f' title="{case.seconds:.1f}s"'
    if case.outcome == "pass":
        return f"<td {attrs}{tip}>{label}</td>"
    text = case.details if case.outcome != "skip" else (case.message or case.details)
    return (f"<td {attrs}{tip}><details><summary>{label}</summary>"
            f"<pre>{esc(case.message)}\n\n{esc(text) if text != case.message else ''}</pre></details></td>")


def render_chart(times: dict[str, dict[str, float]]) -> str:
    """Inline SVG: one horizontal stacked bar per kernel (boot, BCC compile + attach, lab, other)."""
    if not times:
        return "<p>no timings</p>"
    esc = html.escape
    label_w, bar_w, row_h, top = 130, 720, 28, 8
    longest = max(row["total"] for row in times.values()) or 1.0
    height = top + row_h * len(times) + 24
    # No xmlns: an HTML parser puts inline <svg> in the SVG namespace by itself, and the page names no URL.
    out = [f'<svg id="time-chart" width="{label_w + bar_w + 90}" height="{height}" '
           f'role="img" aria-label="seconds per kernel">']
    for row_index, (kernel, row) in enumerate(times.items()):
        y = top + row_index * row_h
        out.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" font-size="13">{esc(kernel)}</text>')
        x = float(label_w)
        for key, label, colour in SEGMENTS:
            width = bar_w * row[key] / longest
            if width <= 0:
                continue
            out.append(f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{row_h - 8}" fill="{colour}">'
                       f"<title>{esc(kernel)}: {esc(label)} {row[key]:.1f}s</title></rect>")
            x += width
        out.append(f'<text x="{x + 6:.1f}" y="{y + 16}" font-size="12">{row["total"]:.1f}s</text>')
    out.append(f'<text x="{label_w}" y="{height - 6}" font-size="11" fill="#57606a">0 s … {longest:.0f} s</text>')
    out.append("</svg>")
    legend = "".join(f'<span><i style="background:{c}"></i>{esc(label)}</span>' for _, label, c in SEGMENTS)
    return "\n".join(out) + f'\n<p class="legend">{legend}</p>'
