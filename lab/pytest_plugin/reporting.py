"""What the plugin reports: header lines, each test's kernel and timings (JUnit properties), the
guest console of a failing test, and the kernel x test table at the end."""

from __future__ import annotations

import os

import pytest

from lab import settings
from lab.boot import accel as accel_mod
from lab.guest import console, verifier
from lab.guest.kernel import needs_rootfs
from lab.kernels import catalog
from lab.kernels.fetch import cached
from lab.pytest_plugin import fixtures
from lab.pytest_plugin.state import STATE
from lab.report.report import merge, pytest_case, render_table

_LABELLED = pytest.StashKey[bool]()


def pytest_report_header(config: pytest.Config) -> list[str]:
    # Only a session that asked for ebpf-lab has state this early; the others get no lines.
    state = config.stash.get(STATE, None)
    if state is None:
        return []
    lines = [f"ebpf-lab kernels: {', '.join(s.id for s in state.specs) or 'none'}"
             + (f" (shard {state.shard})" if state.shard else "")]
    native = next((s for s in state.specs if not s.foreign), None)
    files = cached(native) if native else None
    verdict = accel_mod.detect(probe_image=files.image if files else None)
    lines.append(f"ebpf-lab accelerator: {verdict.name.upper()} ({verdict.reason})")
    lines.append(f"ebpf-lab guest memory: {_memory_line(config)}")
    return lines


def _memory_line(config: pytest.Config) -> str:
    if os.environ.get(settings.MEMORY_ENV):
        return f"{os.environ[settings.MEMORY_ENV]} each (${settings.MEMORY_ENV})"
    workers = getattr(config.option, "numprocesses", None)
    sized = settings.guest_memory(available_mib=settings.available_memory_mib(),
                                  guests=workers if isinstance(workers, int) and workers > 0 else 1)
    return sized.note or f"{sized.mib} MiB each"


def _label(item: pytest.Item) -> None:
    """Put the kernel (and its timings) into the test's properties, once: JUnit XML and the table read them."""
    if item.stash.get(_LABELLED, False):
        return
    callspec = getattr(item, "callspec", None)
    spec = callspec.params.get("kernel") if callspec else None
    if not isinstance(spec, catalog.KernelSpec):
        return
    item.stash[_LABELLED] = True
    item.user_properties.append(("kernel", spec.id))
    item.user_properties.append(("arch", spec.arch.name))
    item.user_properties.append(("userland", f"debian:{spec.userland}" if needs_rootfs(spec) else "host"))
    files = cached(spec)
    if files is not None:
        item.user_properties.append(("kernel_release", files.release))
        item.user_properties.append(("kernel_version", files.version))
    guest = item.stash.get(fixtures.GUEST, None)
    if guest is not None:
        if item.stash.get(fixtures.BOOTED, False):
            item.user_properties.append(("boot_seconds", round(guest.boot_seconds or 0.0, 2)))
        for result in guest.lab_results[item.stash.get(fixtures.LABS_BEFORE, 0):]:
            item.user_properties.append(("lab", result.lab))
            item.user_properties.append(("lab_attach_seconds", round(result.attach_seconds, 2)))
            item.user_properties.append(("lab_seconds", round(result.total_seconds, 2)))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # type: ignore[no-untyped-def]
    if call.when == "call" or (call.when == "setup" and call.excinfo is not None):
        _label(item)
    outcome = yield
    report = outcome.get_result()
    if report.when == "setup" and report.skipped:
        _label(item)
        report.user_properties = list(item.user_properties)
    if report.when != "call" or not report.failed:
        return
    guest = item.stash.get(fixtures.GUEST, None)
    if guest is None:
        return
    transcript = guest.transcript()
    panic = console.find_panic(transcript)
    if panic:
        # From its first line: a stack trace can push the panic's own words out of the last lines.
        report.sections.append(("guest kernel panic", panic))
    # A BPF program that did not load says why, in the verifier's words, whoever loaded it
    # (BCC, libbpf, bpftool, bpftrace): its output came through the console during this test.
    refused = verifier.load_failure(console.clean(guest.transcript(since=item.stash.get(fixtures.TRANSCRIPT_MARK, 0))))
    if refused:
        report.sections.append(("why the BPF program did not load", refused))
    # From where this test got the guest: what the console printed for earlier tests is not this one's.
    mark = item.stash.get(fixtures.TRANSCRIPT_MARK, None)
    report.sections.append(("guest console (last lines)",
                            console.tail(transcript if mark is None else guest.transcript(since=mark), lines=40)))
    report.sections.append(("guest console log", str(guest.log_path)))


class Table:
    """The kernel x test rows of one session: a plugin object per config, so the rows of an
    in-process pytester run stay out of the table of the session that started it."""

    KEY = pytest.StashKey["Table"]()

    def __init__(self) -> None:
        self.cases: list = []

    @classmethod
    def register(cls, config: pytest.Config) -> None:
        config.stash[cls.KEY] = table = cls()
        config.pluginmanager.register(table, "ebpf-lab-table")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Runs in the controller too under xdist, so the table covers every worker.
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            properties = dict(report.user_properties)
            if properties.get("kernel"):
                self.cases.append(pytest_case(report.nodeid, when=report.when, outcome=report.outcome,
                                              properties=properties, seconds=report.duration))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    table = config.stash.get(Table.KEY, None)
    if table is None or not table.cases:
        return
    terminalreporter.section("ebpf-lab: kernels x tests")
    for line in render_table(merge(table.cases), verdicts=False).splitlines():
        terminalreporter.write_line(line)
