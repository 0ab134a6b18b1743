"""``lab report``: JUnit shards -> kernel × test matrix, terminal table and HTML (checked in Chromium).

The sample files in tests/data/junit/ are shaped like pytest's --junitxml output
(xunit2) with the plugin's record_property values: three shards of one run over
five kernels, with a lab failure on 7.3, a boot error on arm64, a kernel-marker
skip on 5.10 and two tests that boot no kernel.
"""

from __future__ import annotations

import json

import shutil
import subprocess
from pathlib import Path

import pytest

from lab.cli import main
from lab.guest import features
from lab.report import report

DATA = Path(__file__).parent / "data" / "junit"
SHARDS = sorted(DATA.glob("shard-*-of-3.xml"))
KERNELS = ["5.10-amd64", "6.1-amd64", "6.12-amd64", "7.3-amd64", "6.1-arm64"]
HELLO = "tests.test_hello::test_hello_lab_traces_execve"


def _matrix() -> report.Matrix:
    return report.load(SHARDS, known_kernels=KERNELS)


def test_split_name_takes_the_kernel_out_of_the_test_id():
    assert report.split_name("test_x[6.1-amd64]") == ("test_x", "6.1-amd64")
    assert report.split_name("test_x") == ("test_x", None)
    # Several parameters: the known kernel id wins, the rest stays part of the test.
    assert report.split_name("test_x[6.1-amd64-big]", known_kernels=KERNELS) == ("test_x[big]", "6.1-amd64")
    assert report.split_name("test_x[small-6.12-amd64]", known_kernels=KERNELS) == ("test_x[small]", "6.12-amd64")
    # A parameter that is no kernel means the test ran on the host.
    assert report.split_name("test_y[utf8]", known_kernels=KERNELS) == ("test_y[utf8]", None)


def test_parse_reads_outcomes_messages_times_and_properties():
    cases = report.parse_junit(SHARDS[0].read_text(), source="shard-1")
    by_key = {(c.test, c.kernel): c for c in cases}
    failed = by_key[(HELLO, "7.3-amd64")]
    assert failed.outcome == "fail"
    assert failed.message.startswith("lab.errors.LabFailure: lab hello on 7.3-amd64")
    assert "Failed to compile BPF module" in failed.details
    skipped = by_key[("tests.test_maps::test_ringbuf_map_delivers_events", "5.10-amd64")]
    assert skipped.outcome == "skip"
    assert skipped.message == "kernel 5.10-amd64 (series 5.10) does not satisfy >=5.15"
    passed = by_key[(HELLO, "5.10-amd64")]
    assert passed.outcome == "pass" and passed.seconds == pytest.approx(34.348)
    assert passed.properties["kernel_version"] == "5.10.0-35-amd64"
    assert by_key[("tests.test_report::test_parse_reads_every_shard", report.HOST)].outcome == "pass"


def test_parse_falls_back_to_the_id_in_the_name_without_properties():
    xml = ('<testsuites><testsuite name="pytest"><testcase classname="tests.test_hello" '
           'name="test_hello_lab_traces_execve[6.12-amd64]" time="40.5"><error message="failed on setup">'
           'BootTimeout</error></testcase></testsuite></testsuites>')
    (case,) = report.parse_junit(xml)
    assert (case.test, case.kernel, case.outcome) == (HELLO, "6.12-amd64", "error")


def test_parse_rejects_what_is_not_junit():
    with pytest.raises(report.UsageError, match="not valid XML"):
        report.parse_junit("<testsuites>", source="broken.xml")
    with pytest.raises(report.UsageError, match="not JUnit XML"):
        report.parse_junit("<html/>", source="page.html")


def test_merge_of_the_shards_is_the_whole_matrix():
    matrix = _matrix()
    assert matrix.kernels == [*KERNELS, report.HOST]
    assert len(matrix.tests) == 6
    assert matrix.counts() == {"pass": 19, "skip": 1, "fail": 1, "error": 1}
    assert matrix.duplicates == []
    assert matrix.cell(HELLO, "7.3-amd64").outcome == "fail"
    assert matrix.cell(HELLO, report.HOST) is None
    assert matrix.versions()["6.12-amd64"] == "6.12.57+deb13-amd64"
    # Shard order does not matter.
    assert report.load(SHARDS[::-1], known_kernels=KERNELS).cells == matrix.cells


def test_merge_reports_overlapping_shards_and_keeps_the_worse_outcome():
    first = report.Case(test="t::a", kernel="6.1-amd64", outcome="fail", source="x.xml")
    again = report.Case(test="t::a", kernel="6.1-amd64", outcome="pass", source="y.xml")
    matrix = report.merge([first, again])
    assert matrix.cell("t::a", "6.1-amd64").outcome == "fail"
    assert matrix.duplicates == ["t::a on 6.1-amd64: x.xml, y.xml"]


def test_time_per_kernel_splits_boot_attach_lab_and_the_rest():
    times = _matrix().time_per_kernel()
    arm = times["6.1-arm64"]
    assert arm["boot"] == pytest.approx(71.5)
    assert arm["attach"] == pytest.approx(88.0 + 88.0 * 1.3)
    assert arm["boot"] + arm["attach"] + arm["lab"] + arm["other"] == pytest.approx(arm["total"])
    assert times["6.1-amd64"]["total"] < arm["total"]


def test_table_shows_the_matrix_and_the_failures():
    table = report.render_table(_matrix())
    lines = table.splitlines()
    assert lines[0].split() == ["test", *KERNELS, "host"]
    hello = next(line for line in lines if line.startswith("test_hello::test_hello_lab_traces_execve"))
    assert hello.split()[1:] == ["PASS", "PASS", "PASS", "FAIL", "PASS", "-"]
    ringbuf = next(line for line in lines if line.startswith("test_maps::"))
    assert ringbuf.split()[1] == "SKIP"
    assert "19 passed, 1 failed, 1 error, 1 skipped" in lines
    assert any(line.startswith("FAIL test_hello::test_hello_lab_traces_execve on 7.3-amd64: lab.errors.LabFailure")
               for line in lines)
    assert any(line.startswith("ERROR test_hello::test_guest_runs_the_kernel_under_test on 6.1-arm64") for line in lines)


def test_html_is_self_contained():
    page = report.render_html(_matrix())
    for external in ("http://", "https://", "<link", "<script src", "@import", "url("):
        assert external not in page
    assert page.count('data-outcome="fail"') == 1
    assert "<details><summary>FAIL</summary>" in page
    assert "&#x27;linux/btf_ids.h&#x27; file not found" in page  # escaped, inside the details
    assert page.count("<rect ") == 5 * 4  # five kernels, four segments each


def _probes() -> dict:  # type: ignore[type-arg]
    """The catalog's BPF feature probes, recorded (tests/data/features/)."""
    return {path.stem: features.flatten(json.loads(path.read_text()), kernel=path.stem)
            for path in sorted((DATA.parent / "features").glob("*.json"))}


def test_html_has_the_bpf_feature_matrix_with_a_filter():
    page = report.render_html(_matrix(), features=_probes())
    assert "<h2>BPF features per kernel</h2>" in page and 'id="feature-filter"' in page
    assert '<tr class="differs"><th>helper:bpf_loop</th>\n<td class="no">no</td>' in page  # 5.10 first
    assert '<tr class="same"><th>map:hash</th>' in page  # hidden until "also the features..." is ticked
    assert "<script src" not in page
    assert "BPF features" not in report.render_html(_matrix())  # nothing probed, no section


def test_lab_report_command_prints_the_table_and_writes_html(tmp_path, capsys):
    out = tmp_path / "site" / "report.html"
    assert main(["report", *map(str, SHARDS), "--html", str(out)]) == 0
    assert "19 passed, 1 failed, 1 error, 1 skipped" in capsys.readouterr().out
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert main(["report", str(tmp_path / "missing.xml")]) == 2


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_html_renders_in_headless_chromium(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(report.render_html(_matrix(), title="ebpf-lab sample report", features=_probes()))
    shot = tmp_path / "report.png"
    base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,900"]
    subprocess.run([*base, f"--user-data-dir={tmp_path / 'profile-shot'}", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    dom = subprocess.run([*base, f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    # A PNG, and not a blank page: a rendered matrix compresses far worse than white.
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000, f"screenshot is only {len(data)} bytes"
    assert 'data-outcome="fail" data-test="tests.test_hello::test_hello_lab_traces_execve" data-kernel="7.3-amd64"' in dom
    assert dom.count('data-outcome="pass"') == 19
    assert dom.count('data-outcome="skip"') == 1
    assert 'id="time-chart"' in dom
    assert dom.count('<tr class="differs">') == len(features.matrix_rows(_probes()))


def test_recorded_shard_with_boot_timeouts_and_no_properties():
    """Recorded: ``pytest --kernel all --shard 1/4`` on a loaded host, where 5.10 never booted."""
    matrix = report.load([DATA / "recorded-shard-1-of-4-boot-timeout.xml"], known_kernels=KERNELS)
    assert matrix.kernels == ["5.10-amd64"]
    assert matrix.counts() == {"pass": 0, "skip": 0, "fail": 0, "error": 3}
    case = matrix.cell(HELLO, "5.10-amd64")
    assert case.message.startswith('failed on setup with "Failed: 5.10-amd64: boot did not finish within 180s')
    assert case.properties == {}
    # No properties: all the time is "other", and it is the test cases' own time.
    assert matrix.time_per_kernel()["5.10-amd64"]["other"] == pytest.approx(183.142 + 182.751 + 182.498)
