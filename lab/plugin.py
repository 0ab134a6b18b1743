"""The pytest plugin: fixtures ``kernel`` and ``vm``, the ``--kernel``/``--arch`` axes, markers.

Registered through the ``pytest11`` entry point, so any test file can use the
fixtures once ebpf-lab is installed. Each selected kernel is booted once per
session (again only if a test killed its guest); tests are grouped by kernel.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import pytest

from . import accel as accel_mod
from . import catalog, console, session
from . import shard as shard_mod
from .errors import BootTimeout, HostError, LabError
from .guest import Guest
from .markers import kernel_matches

log = logging.getLogger(__name__)


@dataclass
class _State:
    specs: list[catalog.KernelSpec]
    boot_timeout: float | None
    command_timeout: float | None
    guests: dict[str, Guest] = field(default_factory=dict)
    boots: dict[str, list[float]] = field(default_factory=dict)
    accel: dict[str, accel_mod.Accel] = field(default_factory=dict)
    #: Kernels whose boot failed, with the error: their other tests fail at once.
    boot_failures: dict[str, str] = field(default_factory=dict)
    #: ``--shard K/N``: this job runs only its share of the kernels (see lab/shard.py).
    shard: shard_mod.Shard | None = None


STATE = pytest.StashKey[_State]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ebpf-lab", "eBPF labs in throw-away VMs")
    group.addoption("--kernel", action="store", default=None,
                    help="kernel(s) under test: id, series, comma list, glob (6.*) or 'all' (default: 6.1)")
    group.addoption("--arch", action="store", default=None, dest="lab_arch",
                    help="guest architecture(s): x86_64, arm64, comma list or 'all' (default: the host's)")
    group.addoption("--boot-timeout", action="store", type=float, default=None,
                    help="seconds a guest may take to boot (default: scaled for KVM/TCG)")
    group.addoption("--command-timeout", action="store", type=float, default=None,
                    help="seconds a guest command may take (default: scaled for KVM/TCG)")
    group.addoption("--userland", action="store", default=None, dest="lab_userland", metavar="WHICH",
                    help="the guest's programs: 'host' (default), 'debian' (each kernel's own Debian suite, "
                         "from a root disk) or 'debian:SUITE'")
    group.addoption("--shard", action="store", default=None, dest="lab_shard", metavar="K/N",
                    help="run shard K of N: whole kernels split deterministically across N CI jobs")
    parser.addini("lab_kernel", "default for --kernel", default="")
    parser.addini("lab_arch", "default for --arch", default="")
    parser.addini("lab_boot_timeout", "default for --boot-timeout", default="")
    parser.addini("lab_command_timeout", "default for --command-timeout", default="")
    parser.addini("lab_shard", "default for --shard", default="")
    parser.addini("lab_userland", "default for --userland", default="")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    # pytest-xdist: keep all tests of one kernel in one worker (they are xdist_group'ed by kernel
    # id), so each kernel boots exactly once and two workers never run the same kernel.
    if getattr(config.option, "numprocesses", None) and getattr(config.option, "dist", "no") in ("no", "load"):
        config.option.dist = "loadgroup"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # type: ignore[no-untyped-def]
    # Workers parse the original command line, not our choice above: tell them.
    node.workerinput["ebpf_lab_loadgroup"] = node.config.getvalue("dist") == "loadgroup"


def _worker_loadgroup(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput and workerinput.get("ebpf_lab_loadgroup"):
        # xdist's worker adds the '@group' suffix that loadgroup schedules by only when this is set.
        config.option.loadgroup = True


def _option(config: pytest.Config, name: str, ini: str) -> str | None:
    value = config.getoption(name)
    if value in (None, ""):
        value = config.getini(ini) or None
    return value


def pytest_configure(config: pytest.Config) -> None:
    _worker_loadgroup(config)
    config.addinivalue_line("markers", "kernel(constraint): run only on kernels whose series satisfies it, e.g. kernel('>=5.8')")
    config.addinivalue_line("markers", "arch(*names): run only on these guest architectures, e.g. arch('x86_64')")
    try:
        specs = catalog.select(catalog.load_catalog(), kernels=_option(config, "kernel", "lab_kernel"),
                               arches=_option(config, "lab_arch", "lab_arch"),
                               userland=_option(config, "lab_userland", "lab_userland"))
    except LabError as error:
        raise pytest.UsageError(str(error)) from None
    _stop_on_sigterm()
    shard, specs = _apply_shard(config, specs)
    boot = _option(config, "boot_timeout", "lab_boot_timeout")
    command = _option(config, "command_timeout", "lab_command_timeout")
    config.stash[STATE] = _State(specs=specs, boot_timeout=float(boot) if boot else None,
                                 command_timeout=float(command) if command else None, shard=shard)


def _apply_shard(config: pytest.Config, specs: list[catalog.KernelSpec]) -> tuple[shard_mod.Shard | None, list[catalog.KernelSpec]]:
    text = _option(config, "lab_shard", "lab_shard")
    if not text:
        return None, specs
    try:
        shard = shard_mod.parse_shard(text)
    except LabError as error:
        raise pytest.UsageError(str(error)) from None
    native = catalog.host_arch().debian
    costs = {s.id: 1.0 if s.arch.debian == native else shard_mod.FOREIGN_ARCH_COST for s in specs}
    return shard, shard_mod.select(specs, shard=shard, key=lambda s: s.id, costs=costs)


def _stop_on_sigterm() -> None:
    """Make SIGTERM end the session like Ctrl-C, so pytest_sessionfinish stops every guest.

    By default SIGTERM kills pytest outright; QEMU would then only go away through the
    pty hang-up. Left alone when someone else (pytest-timeout, xdist) installed a handler.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash[STATE]
    from .fetch import cached

    lines = [f"ebpf-lab kernels: {', '.join(s.id for s in state.specs) or 'none'}"
             + (f" (shard {state.shard})" if state.shard else "")]
    native = next((s for s in state.specs if s.arch.debian == catalog.host_arch().debian), None)
    files = cached(native) if native else None
    verdict = accel_mod.detect(probe_image=files.image if files else None)
    lines.append(f"ebpf-lab accelerator: {verdict.name.upper()} ({verdict.reason})")
    lines.append(f"ebpf-lab guest memory: {_memory_line(config)}")
    return lines


def _memory_line(config: pytest.Config) -> str:
    from . import settings

    if os.environ.get(settings.MEMORY_ENV):
        return f"{os.environ[settings.MEMORY_ENV]} each (${settings.MEMORY_ENV})"
    workers = getattr(config.option, "numprocesses", None)
    sized = settings.guest_memory(available_mib=settings.available_memory_mib(),
                                  guests=workers if isinstance(workers, int) and workers > 0 else 1)
    return sized.note or f"{sized.mib} MiB each"


def _skip_reason(spec: catalog.KernelSpec, node) -> str | None:  # type: ignore[no-untyped-def]
    for mark in node.iter_markers("kernel"):
        for constraint in mark.args:
            if not kernel_matches(spec.series, constraint):
                return f"kernel {spec.id} (series {spec.series}) does not satisfy {constraint}"
    for mark in node.iter_markers("arch"):
        from .arches import get_arch

        allowed = {get_arch(a).debian for a in mark.args}
        if spec.arch.debian not in allowed:
            return f"kernel {spec.id} is {spec.arch.name}; test needs {', '.join(mark.args)}"
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kernel" not in metafunc.fixturenames:
        return
    state = metafunc.config.stash[STATE]
    params = []
    for spec in state.specs:
        reason = _skip_reason(spec, metafunc.definition)
        # With pytest-xdist's --dist loadgroup, all tests of one kernel go to one worker. The mark
        # is set here, on the parameter, so it exists before any collection hook (xdist's own
        # modifyitems, which turns it into the node-id suffix it schedules by, may run before ours).
        marks = [pytest.mark.xdist_group(spec.id)]
        if reason:
            marks.append(pytest.mark.skip(reason=reason))
        params.append(pytest.param(spec, id=spec.id, marks=marks))
    # Session scope groups the tests of one kernel together, so each kernel boots once
    # and only one guest runs at a time in a worker.
    metafunc.parametrize("kernel", params, indirect=True, scope="session")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _deselect_other_shards(config, items)


def _deselect_other_shards(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Kernel tests were already limited to this shard's kernels by pytest_generate_tests;
    # what is left: tests that boot no kernel (shard 1 runs them) and the empty
    # "NOTSET" parameter pytest makes when a shard has no kernel at all.
    state = config.stash[STATE]
    if state.shard is None:
        return
    mine = {s.id for s in state.specs}
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        param = callspec.params.get("kernel") if callspec else None
        if "kernel" in getattr(item, "fixturenames", ()):
            wanted = isinstance(param, catalog.KernelSpec) and param.id in mine
        else:
            wanted = state.shard.runs_host_tests
        (keep if wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def kernel(request: pytest.FixtureRequest) -> session.Kernel:
    """The kernel under test (``.id``, ``.version``, ``.release``, ``.arch``), fetched into the cache."""
    spec: catalog.KernelSpec = request.param
    try:
        return session.prepare(spec, progress=_progress(request.config))
    except LabError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def _lab_guest_slot(request: pytest.FixtureRequest, kernel: session.Kernel):  # type: ignore[no-untyped-def]
    state = request.config.stash[STATE]
    yield kernel
    guest = state.guests.pop(kernel.id, None)
    if guest is not None:
        guest.close()


@pytest.fixture
def vm(request: pytest.FixtureRequest, _lab_guest_slot: session.Kernel) -> Guest:
    """A booted guest running the kernel under test; booted once per kernel per session.

    ``vm.run(cmd)`` returns ``.returncode``/``.output``; ``vm.spawn(cmd)`` starts a
    tracer with ``expect()``/``close()``. If a test crashes the guest, the next test
    gets a freshly booted one.
    """
    kernel = _lab_guest_slot
    state = request.config.stash[STATE]
    if kernel.id in state.boot_failures:
        # A kernel that did not boot will not boot for the next test either: fail fast
        # instead of waiting out the boot timeout once per test.
        pytest.fail(f"{kernel.id}: not booted, an earlier boot in this session failed: {state.boot_failures[kernel.id]}",
                    pytrace=False)
    guest = state.guests.get(kernel.id)
    if guest is None or not guest.alive:
        if guest is not None:
            guest.close()
        try:
            verdict = state.accel.get(kernel.id) or session.choose_accel(kernel)
            state.accel[kernel.id] = verdict
            timeouts = session.timeouts_for(kvm=verdict.kvm, boot=state.boot_timeout, command=state.command_timeout,
                                            foreign=session.is_foreign(kernel.spec))
            guest = session.new_guest(kernel, accel=verdict, timeouts=timeouts, progress=_progress(request.config))
            guest.boot()
        except LabError as error:
            if isinstance(error, (BootTimeout, HostError)) or not state.boots.get(kernel.id):
                state.boot_failures[kernel.id] = str(error)
            pytest.fail(str(error) + (f"\n--- last console lines ---\n{error.tail}" if getattr(error, "tail", "") else ""),
                        pytrace=False)
        state.guests[kernel.id] = guest
        state.boots.setdefault(kernel.id, []).append(guest.boot_seconds or 0.0)
        request.node.stash[_BOOTED] = True
    request.node.stash[_GUEST] = guest
    request.node.stash[_LABS_BEFORE] = len(guest.lab_results)
    return guest


def _progress(config: pytest.Config):  # type: ignore[no-untyped-def]
    """Print progress lines as ``lab`` does: a fetch or a build, a wait for another process's,
    a damaged cache entry, smaller guests. Past pytest's capture: a wait of minutes that
    shows only on failure looks like a hang. An xdist worker's stderr is the terminal's."""
    import contextlib
    import sys

    capture = config.pluginmanager.getplugin("capturemanager")

    def say(text: str) -> None:
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            print(f"\nebpf-lab: {text}", file=sys.stderr, flush=True)

    return say


_GUEST = pytest.StashKey[Guest]()
_BOOTED = pytest.StashKey[bool]()
_LABS_BEFORE = pytest.StashKey[int]()


_LABELLED = pytest.StashKey[bool]()


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
    from .session import needs_rootfs

    item.user_properties.append(("userland", f"debian:{spec.userland}" if needs_rootfs(spec) else "host"))
    from .fetch import cached

    files = cached(spec)
    if files is not None:
        item.user_properties.append(("kernel_release", files.release))
        item.user_properties.append(("kernel_version", files.version))
    guest = item.stash.get(_GUEST, None)
    if guest is not None:
        if item.stash.get(_BOOTED, False):
            item.user_properties.append(("boot_seconds", round(guest.boot_seconds or 0.0, 2)))
        for result in guest.lab_results[item.stash.get(_LABS_BEFORE, 0):]:
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
    guest = item.stash.get(_GUEST, None)
    if guest is None:
        return
    transcript = guest.transcript()
    panic = console.find_panic(transcript)
    if panic:
        # From its first line: a stack trace can push the panic's own words out of the last lines.
        report.sections.append(("guest kernel panic", panic))
    report.sections.append(("guest console (last lines)", console.tail(transcript, lines=40)))
    report.sections.append(("guest console log", str(guest.log_path)))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Runs in the controller too under xdist, so the table covers every worker.
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _REPORTS.append(report)


_REPORTS: list[pytest.TestReport] = []


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    from .table import kernel_table

    rows = [(r.nodeid, r.outcome, dict(r.user_properties)) for r in _REPORTS if dict(r.user_properties).get("kernel")]
    if not rows:
        return
    terminalreporter.section("ebpf-lab: kernels x tests")
    for line in kernel_table(rows):
        terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(STATE, None)
    if state is None:
        return
    for guest in state.guests.values():
        guest.close()
    state.guests.clear()
