"""``--shard K/N`` and ``lab matrix``: the shards together run every target exactly once.

Pure unit tests, plus pytester runs with ``--collect-only`` (no guest is booted).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from lab.cli import main
from lab.errors import UsageError
from lab.kernels import catalog
from lab.pytest_plugin import shard

pytest_plugins = ["pytester"]

IDS = ["5.10-amd64", "6.1-amd64", "6.12-amd64", "7.3-amd64", "6.6-amd64",
       "5.10-arm64", "6.1-arm64", "6.12-arm64", "7.3-arm64", "6.6-arm64"]


@pytest.mark.parametrize("total", [1, 2, 3, 4, 7, 10, 13])
def test_shards_cover_each_kernel_exactly_once(total):
    shards = shard.split(IDS, total=total)
    flat = [kid for s in shards for kid in s]
    assert sorted(flat) == sorted(IDS)
    assert len(shards) == total
    # Balanced: with equal costs no shard has two kernels more than another.
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


def test_split_is_deterministic_whatever_the_input_order():
    expected = shard.split(IDS, total=4)
    for seed in range(20):
        shuffled = IDS[:]
        random.Random(seed).shuffle(shuffled)
        assert shard.split(shuffled, total=4) == expected
    assert expected[0] == ["5.10-amd64", "6.6-amd64", "7.3-amd64"]


def test_kernel_ids_sort_with_numbers_as_numbers():
    ids = ["6.12-amd64", "7.3-amd64", "6.1-arm64", "5.10-amd64", "6.1-amd64"]
    assert sorted(ids, key=catalog.id_order) == ["5.10-amd64", "6.1-amd64", "6.1-arm64", "6.12-amd64", "7.3-amd64"]


def test_split_balances_by_cost():
    costs = {kid: shard.FOREIGN_ARCH_COST if kid.endswith("arm64") else 1.0 for kid in IDS}
    shards = shard.split(IDS, total=4, costs=costs)
    loads = [sum(costs[k] for k in s) for s in shards]
    assert sorted(k for s in shards for k in s) == sorted(IDS)
    # Five 4-second arm64 kernels and five 1-second amd64 ones: 25 over 4 shards.
    assert max(loads) <= 8 and min(loads) >= 5, loads


def test_kernel_costs_charge_an_emulated_arch_more():
    specs = list(catalog.load_catalog().values())
    costs = shard.kernel_costs(specs)
    assert {costs[s.id] for s in specs if s.foreign} == {shard.FOREIGN_ARCH_COST}
    assert {costs[s.id] for s in specs if not s.foreign} == {1.0}


@pytest.mark.parametrize("text, expected", [("1/4", shard.Shard(1, 4)), (" 4 / 4 ", shard.Shard(4, 4)), ("1/1", shard.Shard(1, 1))])
def test_parse_shard(text, expected):
    assert shard.parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/4", "5/4", "1/0", "1", "a/b", "-1/4", "1/4/2", ""])
def test_parse_shard_rejects_nonsense(text):
    with pytest.raises(UsageError, match="--shard"):
        shard.parse_shard(text)


def test_ci_matrix_lists_every_kernel_once_in_shards():
    specs = list(catalog.load_catalog().values())
    entries = shard.ci_matrix(specs, shards=2)
    assert [e["shard"] for e in entries] == ["1/2", "2/2"]
    kernels = [k for e in entries for k in e["kernel"].split(",")]
    assert sorted(kernels) == sorted(s.id for s in specs)
    # One per kernel by default, and never more shards than kernels.
    assert len(shard.ci_matrix(specs)) == len(specs)
    assert len(shard.ci_matrix(specs, shards=99)) == len(specs)


def test_lab_matrix_prints_github_actions_json(capsys):
    assert main(["matrix", "--kernel", "6.1,6.12", "--arch", "x86_64"]) == 0
    matrix = json.loads(capsys.readouterr().out)
    assert matrix == {"include": [
        {"shard": "1/2", "kernel": "6.1-amd64", "arch": "x86_64"},
        {"shard": "2/2", "kernel": "6.12-amd64", "arch": "x86_64"},
    ]}
    assert main(["matrix", "--kernel", "all", "--shards", "0"]) == 2
    assert main(["matrix", "--kernel", "no-such-kernel"]) == 2


@pytest.fixture(autouse=True)
def _this_checkout_first(monkeypatch: pytest.MonkeyPatch) -> None:
    # pytester's subprocess runs in a temporary directory; put this checkout's ``lab``
    # ahead of whichever copy is pip-installed, so the plugin under test is this one.
    root = str(Path(__file__).resolve().parent.parent)
    monkeypatch.setenv("PYTHONPATH", root)


TESTS = """
    import pytest

    def test_on_kernel(kernel):
        pass

    @pytest.mark.kernel(">=6.1")
    def test_new_kernels_only(kernel):
        pass

    @pytest.mark.parametrize("n", [1, 2])
    def test_on_the_host(n):
        pass
"""


def _collected(pytester: pytest.Pytester, *args: str) -> list[str]:
    result = pytester.runpytest_subprocess("--kernel", "all", "--collect-only", "-q", "-p", "no:cacheprovider", *args)
    assert result.ret in (0, 5), result.stdout.str() + result.stderr.str()
    return [line for line in result.outlines if re.match(r"^test_\w+\.py::", line)]


def test_two_shards_collect_every_test_exactly_once(pytester: pytest.Pytester):
    pytester.makepyfile(test_targets=TESTS)
    whole = _collected(pytester)
    first = _collected(pytester, "--shard", "1/2")
    second = _collected(pytester, "--shard", "2/2")
    assert first and second
    assert sorted(first + second) == sorted(whole)
    assert len(set(first) & set(second)) == 0
    kernels = {s.id for s in catalog.select(catalog.load_catalog(), kernels="all")}
    assert len(whole) == 2 * len(kernels) + 2
    # Tests that boot no kernel run in shard 1 only.
    assert [t for t in first if "on_the_host" in t] == ["test_targets.py::test_on_the_host[1]",
                                                        "test_targets.py::test_on_the_host[2]"]
    # Whole kernels: a kernel's tests are all in the same shard.
    ids_first = {t.rpartition("[")[2] for t in first if "on_the_host" not in t}
    ids_second = {t.rpartition("[")[2] for t in second}
    assert not ids_first & ids_second


def test_shard_option_is_validated(pytester: pytest.Pytester):
    pytester.makepyfile(test_targets=TESTS)
    result = pytester.runpytest_subprocess("--shard", "3/2", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--shard 3/2: K must be between 1 and 2*"])


def test_more_shards_than_kernels_leaves_empty_shards_empty(pytester: pytest.Pytester):
    pytester.makepyfile(test_targets=TESTS)
    result = pytester.runpytest_subprocess("--kernel", "6.1", "--shard", "2/2", "--collect-only", "-q")
    # Nothing to boot and the host tests belong to shard 1: pytest's "no tests ran".
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert "NOTSET" not in result.stdout.str()


FAKE_KERNELS = [("5.10", "amd64"), ("6.1", "amd64"), ("6.12", "amd64"), ("7.3", "amd64"), ("6.1", "arm64"), ("6.12", "arm64")]

RUN_TESTS = """
    import pytest

    def test_kernel_is_prepared(kernel):
        assert kernel.id.startswith("fake-")

    def test_fails_on_7_3(kernel):
        assert kernel.spec.series != "7.3", "pretend the lab breaks on 7.3"

    @pytest.mark.kernel(">=6.1")
    def test_skipped_on_5_10(kernel):
        pass

    def test_on_the_host():
        pass
"""


def test_four_shards_report_the_same_matrix_as_one_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """The issue's "done when", without VMs: tests that take ``kernel`` but not ``vm`` boot nothing."""
    from lab.report import report

    kernels = pytester.mkdir("fake-kernels")
    image = kernels / "vmlinuz"
    image.write_bytes(b"not a kernel; never booted")
    for series, arch in FAKE_KERNELS:
        (kernels / f"{series}-{arch}.toml").write_text(
            f'id = "fake-{series}-{arch}"\nseries = "{series}"\narch = "{arch}"\nsource = "local"\nimage = "vmlinuz"\n')
    monkeypatch.setenv("EBPF_LAB_KERNELS", str(kernels))
    pytester.makepyfile(test_run=RUN_TESTS)

    def run(name: str, *args: str) -> Path:
        junit = pytester.path / f"{name}.xml"
        result = pytester.runpytest_subprocess("--kernel", "fake-*", "--arch", "all", "--no-header", "-q",
                                               "-p", "no:cacheprovider", f"--junitxml={junit}", *args)
        assert result.ret in (0, 1), result.stdout.str()
        return junit

    whole = report.load([run("whole")])
    shards = report.load([run(f"shard-{k}", "--shard", f"{k}/4") for k in range(1, 5)])
    assert shards.duplicates == []
    assert shards.kernels == whole.kernels
    assert len(whole.kernels) == len(FAKE_KERNELS) + 1  # and the host
    outcomes = {key: case.outcome for key, case in whole.cells.items()}
    assert {key: case.outcome for key, case in shards.cells.items()} == outcomes
    assert whole.counts() == {"pass": 6 + 5 + 5 + 1, "fail": 1, "skip": 1, "error": 0}
    table = report.render_table(whole)
    assert report.render_table(shards).split("\ntime per kernel")[0] == table.split("\ntime per kernel")[0]


GROUP_TESTS = """
    import os

    def test_a(kernel):
        open(os.environ["GROUP_LOG"], "a").write(f"{kernel.id} {os.environ['PYTEST_XDIST_WORKER']}\\n")

    def test_b(kernel):
        test_a(kernel)

    def test_c(kernel):
        test_a(kernel)
"""


def test_xdist_keeps_each_kernel_in_one_worker(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """With -n 2, every test of one kernel runs in the same worker, so each kernel boots once."""
    pytest.importorskip("xdist")
    kernels = pytester.mkdir("fake-kernels")
    (kernels / "vmlinuz").write_bytes(b"not a kernel; never booted")
    for series, arch in FAKE_KERNELS[:4]:
        (kernels / f"{series}-{arch}.toml").write_text(
            f'id = "fake-{series}-{arch}"\nseries = "{series}"\narch = "{arch}"\nsource = "local"\nimage = "vmlinuz"\n')
    monkeypatch.setenv("EBPF_LAB_KERNELS", str(kernels))
    log = pytester.path / "groups.txt"
    monkeypatch.setenv("GROUP_LOG", str(log))
    pytester.makepyfile(test_groups=GROUP_TESTS)
    result = pytester.runpytest_subprocess("--kernel", "fake-*", "-n", "2", "-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=12)
    workers: dict[str, set[str]] = {}
    for line in log.read_text().splitlines():
        kernel, worker = line.split()
        workers.setdefault(kernel, set()).add(worker)
    assert len(workers) == 4
    assert all(len(w) == 1 for w in workers.values()), workers
