"""The ``kernel`` and ``vm`` fixtures, the kernel axis they are parametrized over, and shards."""

from __future__ import annotations

import contextlib
import sys

import pytest

from lab.errors import LabError
from lab.guest import features as features_mod
from lab.guest import kernel as guest_kernel
from lab.guest.guest import Guest
from lab.kernels import catalog
from lab.kernels.arches import get_arch
from lab.labs.constraints import kernel_matches
from lab.pytest_plugin.pool import NotBooted
from lab.pytest_plugin.state import STATE, state_of

#: On a test item: the guest its ``vm`` was, whether it was booted for it, and how many labs
#: that guest had run before the test (lab/pytest_plugin/reporting.py labels the test with them).
GUEST = pytest.StashKey[Guest]()
BOOTED = pytest.StashKey[bool]()
LABS_BEFORE = pytest.StashKey[int]()
#: Where the guest's transcript stood when the test got it: what the test's guest printed starts there.
TRANSCRIPT_MARK = pytest.StashKey[int]()


def _skip_reason(spec: catalog.KernelSpec, node) -> str | None:  # type: ignore[no-untyped-def]
    for mark in node.iter_markers("kernel"):
        for constraint in mark.args:
            if not kernel_matches(spec.series, constraint):
                return f"kernel {spec.id} (series {spec.series}) does not satisfy {constraint}"
    for mark in node.iter_markers("arch"):
        allowed = {get_arch(a).debian for a in mark.args}
        if spec.arch.debian not in allowed:
            return f"kernel {spec.id} is {spec.arch.name}; test needs {', '.join(mark.args)}"
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kernel" not in metafunc.fixturenames:
        return
    try:
        state = state_of(metafunc.config)
    except pytest.UsageError as error:
        # The first test that takes ``kernel`` reads the catalog (unless an option did, at
        # start-up). Raised from here a UsageError comes with pluggy's traceback: the message says it.
        raise pytest.fail.Exception(str(error), pytrace=False) from None
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
    # Kernel tests were already limited to this shard's kernels by pytest_generate_tests;
    # what is left: tests that boot no kernel (shard 1 runs them) and the empty
    # "NOTSET" parameter pytest makes when a shard has no kernel at all.
    state = config.stash.get(STATE, None)
    if state is None or state.shard is None:
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
def kernel(request: pytest.FixtureRequest) -> guest_kernel.Kernel:
    """The kernel under test (``.id``, ``.version``, ``.release``, ``.arch``), fetched into the cache."""
    spec: catalog.KernelSpec = request.param
    try:
        return guest_kernel.prepare(spec, progress=_progress(request.config))
    except LabError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def _lab_guest_slot(request: pytest.FixtureRequest, kernel: guest_kernel.Kernel):  # type: ignore[no-untyped-def]
    # Session scope per kernel: when the last test of a kernel is done, its guest stops.
    pool = state_of(request.config).pool
    yield kernel
    pool.close(kernel.id)


@pytest.fixture
def vm(request: pytest.FixtureRequest, _lab_guest_slot: guest_kernel.Kernel) -> Guest:
    """A booted guest running the kernel under test; booted once per kernel per session.

    ``vm.run(cmd)`` returns ``.returncode``/``.output``; ``vm.spawn(cmd)`` starts a
    tracer with ``expect()``/``close()``; ``vm.timeouts`` are the waits the policy gives
    this guest. If a test crashes the guest, the next test gets a freshly booted one.
    """
    try:
        guest, booted = state_of(request.config).pool.get(_lab_guest_slot, progress=_progress(request.config))
    except NotBooted as error:
        pytest.fail(str(error), pytrace=False)
    if booted:
        request.node.stash[BOOTED] = True
    request.node.stash[GUEST] = guest
    request.node.stash[LABS_BEFORE] = len(guest.lab_results)
    request.node.stash[TRANSCRIPT_MARK] = guest.transcript_mark()
    return guest


@pytest.fixture
def bpf_features(request: pytest.FixtureRequest, kernel: guest_kernel.Kernel) -> features_mod.Features:
    """What BPF the kernel under test has (``bpftool feature probe`` in its guest, cached per
    Debian package version): ``.has("map:ringbuf")``, ``.present``. Boots the guest only when the
    kernel was never probed."""
    found = features_mod.cached(kernel)
    if found is None:
        guest = request.getfixturevalue("vm")
        try:
            found = features_mod.probe(guest, kernel)
        except LabError as error:
            pytest.fail(str(error), pytrace=False)
    return found


@pytest.fixture(autouse=True)
def _lab_bpf_marker(request: pytest.FixtureRequest) -> None:
    """``@pytest.mark.bpf(...)``: skip, naming the missing features, on a kernel that lacks any."""
    wanted = [name for mark in request.node.iter_markers("bpf") for name in mark.args]
    if not wanted or "kernel" not in request.fixturenames:
        return
    have = request.getfixturevalue("bpf_features")
    try:
        missing = have.missing(wanted)
    except LabError as error:
        pytest.fail(str(error), pytrace=False)
    if missing:
        pytest.skip(f"kernel {have.kernel} lacks BPF feature(s) {', '.join(missing)} (bpftool feature probe)")


def _progress(config: pytest.Config):  # type: ignore[no-untyped-def]
    """Print progress lines as ``lab`` does: a fetch or a build, a wait for another process's,
    a damaged cache entry, smaller guests. Past pytest's capture: a wait of minutes that
    shows only on failure looks like a hang. An xdist worker's stderr is the terminal's."""
    capture = config.pluginmanager.getplugin("capturemanager")

    def say(text: str) -> None:
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            print(f"\nebpf-lab: {text}", file=sys.stderr, flush=True)

    return say


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(STATE, None)
    if state is not None:
        state.pool.close_all()
