"""Kernel splats fail tests. After each test that used a guest, what its kernel logged during the
test (lab/guest/kmsg.py) is searched for splats (lab/guest/splats.py): a WARNING, a BUG, an oops,
a lockup, an RCU stall, a hung task, a KASAN or UBSAN report. One that no ``allow_splat`` marker
of the test allows fails a test that passed, and is shown in the report of one that failed.

A test whose guest died is left to the panic report (reporting.py): there is no log to read.
"""

from __future__ import annotations

import logging
import re
import time
from weakref import WeakKeyDictionary

import pytest

from lab.errors import LabError
from lab.guest import kmsg, splats
from lab.guest.guest import Guest
from lab.pytest_plugin import fixtures

log = logging.getLogger(__name__)

#: The marker that allows splats a test expects: ``@pytest.mark.allow_splat(r"regex", ...)``.
MARKER = "allow_splat"

#: On the config: the guests whose kernel log is open (True), or could not be opened (False).
_OPENED = pytest.StashKey["WeakKeyDictionary[Guest, bool]"]()
#: On a test item: where the guest's transcript stood after the log was read for it, so its
#: teardown reads again only when something used the console since.
_READ_AT = pytest.StashKey[int]()

#: Splats shown in one report; a lockup repeats every few seconds for as long as it lasts.
_SHOWN = 5


def _opened(config: pytest.Config) -> WeakKeyDictionary[Guest, bool]:
    # Weak: a guest the pool replaced (its kernel died) is forgotten with it.
    if _OPENED not in config.stash:
        config.stash[_OPENED] = WeakKeyDictionary()
    return config.stash[_OPENED]


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    # Right after ``vm`` hands out a guest we have not seen (the first test on a kernel, or the
    # next after its guest died): open its log here, before the test's other fixtures use the
    # guest, so what they make the kernel log is the test's and the boot's log is nobody's.
    outcome = yield
    if fixturedef.argname != "vm" or outcome.excinfo is not None:
        return
    guest = outcome.get_result()
    opened = _opened(request.config)
    if not isinstance(guest, Guest) or guest in opened:
        return
    try:
        kmsg.open_log(guest)
        opened[guest] = True
    except LabError as error:
        opened[guest] = False
        request.node.warn(pytest.PytestWarning(f"ebpf-lab: kernel splats will not be looked for on {guest.label}: {error}"))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # type: ignore[no-untyped-def]
    # tryfirst makes this the outermost wrapper: the code below runs after reporting.py's, so
    # the console tail that one attaches to a failure is the test's, not this log read.
    outcome = yield
    report = outcome.get_result()
    if report.when not in ("call", "teardown"):
        return
    guest = item.stash.get(fixtures.GUEST, None)
    if guest is None or not _opened(item.config).get(guest, False) or not guest.alive:
        return
    if report.when == "teardown" and item.stash.get(_READ_AT, None) == guest.transcript_mark():
        # No command ran in the guest since the call's read: nothing of the teardown's to look for.
        return
    started = time.monotonic()
    try:
        kernel_log = kmsg.read_log(guest)
    except LabError as error:
        report.sections.append(("guest kernel log", f"not read, so not searched for splats: {error}"))
        return
    log.debug("%s: kernel log read in %.3fs", guest.label, time.monotonic() - started)
    item.stash[_READ_AT] = guest.transcript_mark()
    _judge(item, report, kernel_log=kernel_log, label=guest.label)


def _allow_patterns(item: pytest.Item) -> list[str] | None:
    """The test's allow_splat patterns; [] when a marker without patterns allows every splat,
    None without the marker."""
    marks = list(item.iter_markers(MARKER))
    if not marks:
        return None
    if any(not mark.args for mark in marks):
        return []
    return [str(pattern) for mark in marks for pattern in mark.args]


def _judge(item: pytest.Item, report: pytest.TestReport, *, kernel_log: kmsg.KernelLog, label: str) -> None:
    """Fail a passed *report* for each splat no marker allows; show them on a failed one."""
    patterns = _allow_patterns(item)
    found = splats.find_splats(kernel_log.text)
    try:
        unexpected = [s for s in found if patterns is None or not splats.allowed(s, patterns=patterns)]
    except re.error as error:
        unexpected = found
        report.sections.append(("guest kernel splat", f"@pytest.mark.{MARKER}: bad pattern among {patterns}: {error}"))
    lost = f"\n({kernel_log.lost} kernel messages were overwritten before they were read)" if kernel_log.lost else ""
    if not unexpected:
        # Shown only if the test failed anyway: what the kernel said may be why.
        if found:
            report.sections.append((f"guest kernel splat (allowed by {MARKER})", _show(found) + lost))
        elif lost:
            report.sections.append(("guest kernel log", f"searched for splats, but{lost[1:]}"))
        return
    phase = "this test" if report.when == "call" else "this test's teardown"
    report.sections.append(("guest kernel splat", _show(unexpected) + lost))
    if report.passed and not hasattr(report, "wasxfail"):
        # A failed call report is a FAIL, a failed teardown report an ERROR; the JUnit XML and
        # the kernel x test table (which has the call) read the outcome.
        report.outcome = "failed"
        titles = "\n".join(f"  {s.title}" for s in unexpected[:_SHOWN])
        report.longrepr = (f"the guest kernel ({label}) logged {_count(unexpected)} during {phase}:\n{titles}\n"
                           f"(its lines are under 'guest kernel splat'; a test that expects it: "
                           f"@pytest.mark.{MARKER}(r\"<regex found in its lines>\"))")


def _count(found: list[splats.Splat]) -> str:
    kinds = sorted({s.kind for s in found})
    return f"{len(found)} splat{'s' if len(found) > 1 else ''} ({', '.join(kinds)})"


def _show(found: list[splats.Splat]) -> str:
    shown = "\n\n".join(s.text for s in found[:_SHOWN])
    return shown + (f"\n\n... and {len(found) - _SHOWN} more" if len(found) > _SHOWN else "")
