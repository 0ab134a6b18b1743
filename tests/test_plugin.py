"""The plugin in a project that never asked for it, and in one that did; no guest boots here.

Every project in an environment with ebpf-lab installed loads the plugin (pytest11 entry
point). Until a session names a lab option or ini value, or collects a test that takes
``kernel``, it must be as if the plugin were not there.
"""

from __future__ import annotations

import json
import re

import pytest

from lab.kernels import catalog

UNRELATED = """
    def test_unrelated():
        assert 1 + 1 == 2
"""

#: Writes what the session ended with to observed.json: --dist as the controller has it after
#: every plugin's pytest_cmdline_main, and the SIGTERM handler after the tests ran.
OBSERVER = """
    import json, signal
    from pathlib import Path

    def pytest_configure(config):
        if not hasattr(config, "workerinput"):
            config.stash_dist = getattr(config.option, "dist", None)

    def pytest_sessionfinish(session):
        config = session.config
        if not hasattr(config, "workerinput"):
            handler = signal.getsignal(signal.SIGTERM)
            Path("observed.json").write_text(json.dumps({"dist": config.stash_dist, "sigterm": repr(handler)}))
"""


def _run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict]:
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    return result, json.loads((pytester.path / "observed.json").read_text())


def _normalized(lines: list[str]) -> list[str]:
    # The header's list of installed plugins names ebpf-lab as long as it is installed, and times vary.
    return [re.sub(r"\d+\.\d+s", "T", line) for line in lines if not line.startswith("plugins:")]


@pytest.fixture
def broken_catalog(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed catalog file: a session that read the catalog would stop with a usage error."""
    directory = pytester.mkdir("broken-catalog")
    (directory / "broken.toml").write_text('series = "6.1\n')
    monkeypatch.setenv(catalog.EXTRA_ENV, str(directory))


@pytest.mark.usefixtures("broken_catalog")
def test_a_session_that_never_asked_is_as_without_the_plugin(pytester: pytest.Pytester):
    pytester.makepyfile(test_unrelated=UNRELATED)
    pytester.makeconftest(OBSERVER)
    with_plugin, seen = _run(pytester)
    without_plugin, seen_without = _run(pytester, "-p", "no:ebpf_lab")
    with_plugin.assert_outcomes(passed=1)
    assert _normalized(with_plugin.outlines) == _normalized(without_plugin.outlines)
    assert _normalized(with_plugin.errlines) == _normalized(without_plugin.errlines)
    assert "ebpf-lab" not in "\n".join(_normalized(with_plugin.outlines + with_plugin.errlines))
    assert seen == seen_without
    assert "SIG_DFL" in seen["sigterm"]


@pytest.mark.usefixtures("broken_catalog")
def test_a_session_that_never_asked_keeps_its_xdist_scheduling(pytester: pytest.Pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_unrelated=UNRELATED)
    pytester.makeconftest(OBSERVER)
    with_plugin, seen = _run(pytester, "-n", "2")
    with_plugin.assert_outcomes(passed=1)
    _, seen_without = _run(pytester, "-n", "2", "-p", "no:ebpf_lab")
    assert seen["dist"] == seen_without["dist"] == "load"


@pytest.mark.parametrize("ask", [["--kernel", "6.1"], ["--boot-timeout", "99"]], ids=["option", "other-option"])
def test_a_session_that_asked_gets_one_worker_per_kernel(pytester: pytest.Pytester, ask: list[str]):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_unrelated=UNRELATED)
    pytester.makeconftest(OBSERVER)
    result, seen = _run(pytester, "-n", "2", *ask)
    result.assert_outcomes(passed=1)
    assert seen["dist"] == "loadgroup"
    result.stdout.fnmatch_lines(["ebpf-lab kernels: 6.1-*"])


def test_an_ini_value_asks_too(pytester: pytest.Pytester):
    pytest.importorskip("xdist")
    pytester.makeini("[pytest]\nlab_kernel = 6.1\n")
    pytester.makepyfile(test_unrelated=UNRELATED)
    pytester.makeconftest(OBSERVER)
    _, seen = _run(pytester, "-n", "2")
    assert seen["dist"] == "loadgroup"


def test_a_test_that_takes_kernel_gets_the_default_kernel_without_any_option(pytester: pytest.Pytester):
    pytester.makepyfile(test_mine="""
        def test_mine(kernel):
            pass

        def test_other():
            pass
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--collect-only", "-q")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    assert result.outlines[:2] == [f"test_mine.py::test_mine[{catalog.default_kernel_id()}]",
                                   "test_mine.py::test_other"]


@pytest.mark.usefixtures("broken_catalog")
def test_a_broken_catalog_fails_the_first_test_that_takes_kernel_in_one_line(pytester: pytest.Pytester):
    pytester.makepyfile(test_mine="def test_mine(kernel):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*ERROR collecting test_mine.py*", "malformed catalog file *broken.toml: *fix or remove it"])
    assert "Traceback" not in result.stdout.str() and "pluggy" not in result.stdout.str()


@pytest.mark.parametrize("where", ["option", "ini"])
def test_an_unknown_kernel_is_a_one_line_usage_error(pytester: pytest.Pytester, where: str):
    pytester.makepyfile(test_mine="def test_mine(kernel):\n    pass\n")
    if where == "ini":
        pytester.makeini("[pytest]\nlab_kernel = 9.99\n")
    args = ["--kernel", "9.99"] if where == "option" else []
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--collect-only", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1 and "no kernel in the catalog matches '9.99'" in errors[0], result.errlines
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
