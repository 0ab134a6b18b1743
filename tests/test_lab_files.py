"""The lab directories and the failure report, without a guest: fast checks of data and pure functions."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from lab.boot import config as vm
from lab.boot import prepared
from lab.errors import CatalogError, HostError, LabFailure
from lab.guest import features
from lab.host.resources import package_dir
from lab.kernels import catalog
from lab.labs.constraints import kernel_matches
from lab.labs.feedback import failure_lines, program_excerpt
from lab.labs.runner import FAILURE_KINDS, LABS_DIR, all_labs, load_lab

DATA = Path(__file__).parent / "data"

# What BCC 0.26 prints for tests/data/students/count_compile_error.py (recorded in a 6.1 guest).
COMPILE_OUTPUT = (DATA / "students" / "count_compile_error.output").read_text()


def test_the_tutorial_labs_are_all_there_in_order() -> None:
    assert list(all_labs())[:6] == ["hello", "count", "perfbuf", "ringbuf", "opens", "packets"]


@pytest.mark.parametrize("name", list(all_labs()))
def test_lab_directory_is_complete(name: str) -> None:
    lab = all_labs()[name]
    assert lab.program.is_file()
    assert (lab.directory / "README.md").is_file()
    assert lab.title and lab.summary and lab.expect
    assert lab.hint_for("compile"), "every lab needs a hint for a compile failure"
    assert set(lab.kind_hints) <= set(FAILURE_KINDS)
    if lab.kernel_constraint:
        kernel_matches("6.1", lab.kernel_constraint)  # raises on a malformed constraint


def test_ringbuf_asks_the_kernel_for_ring_buffers_not_a_version() -> None:
    ringbuf = all_labs()["ringbuf"]
    assert ringbuf.features == ("map:ringbuf",) and not ringbuf.kernel_constraint
    recorded = Path(__file__).parent / "data" / "features"
    for probe in recorded.glob("*.json"):
        have = features.flatten(json.loads(probe.read_text()), kernel=probe.stem)
        assert have.missing(ringbuf.features) == [], probe.stem  # every catalog kernel has them (5.8+)


def test_the_shipped_files_are_real_files_of_the_package() -> None:
    assert (catalog.BUILTIN_DIR / f"{catalog.default_kernel_id()}.toml").is_file()
    assert (LABS_DIR / "hello" / "lab.toml").is_file()
    for script in (vm.SHELL, prepared.SWITCH_ROOT, prepared.ROOTDISK_INIT):
        assert script.is_file() and script.is_relative_to(vm.LAB_PACKAGE)


def test_package_files_inside_a_zip_are_a_clear_host_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What a zip install would give: files a guest could never see through its 9p share.
    archive = tmp_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("ebpf_lab_zipped/__init__.py", "")
        zipped.writestr("ebpf_lab_zipped/guest_files/shell.sh", "")
    monkeypatch.syspath_prepend(str(archive))
    with pytest.raises(HostError, match=r"ebpf_lab_zipped/guest_files is not a directory on disk.*pip, not from a zip"):
        package_dir("ebpf_lab_zipped", "guest_files")
    with pytest.raises(HostError, match=r"ebpf_lab_not_there is missing.*pip install"):
        package_dir("ebpf_lab_not_there")


def test_hints_list_form_still_works(tmp_path: Path) -> None:
    (tmp_path / "lab.toml").write_text('title = "t"\nexpect = "x"\nhints = ["first", "second"]\n')
    lab = load_lab(tmp_path)
    assert lab.hints == ("first", "second")
    assert lab.hint_for("compile") == "first second"


def test_hints_table_gives_the_specific_hint_else_the_general_one(tmp_path: Path) -> None:
    (tmp_path / "lab.toml").write_text('title = "t"\nexpect = "x"\n[hints]\ngeneral = "g"\ncompile = "c"\n')
    lab = load_lab(tmp_path)
    assert lab.hint_for("compile") == "c"
    assert lab.hint_for("no_output") == "g"


def test_unknown_hint_kind_is_a_catalog_error(tmp_path: Path) -> None:
    (tmp_path / "lab.toml").write_text('title = "t"\nexpect = "x"\n[hints]\ncompiel = "c"\n')
    with pytest.raises(CatalogError, match="compiel"):
        load_lab(tmp_path)


def test_excerpt_of_a_compile_failure_is_clangs_diagnostic_not_the_traceback() -> None:
    excerpt = program_excerpt(COMPILE_OUTPUT)
    assert "error: use of undeclared identifier 'exec'" in excerpt
    assert "exec.increment(uid);" in excerpt
    assert "Traceback" not in excerpt


def test_excerpt_of_other_failures_is_the_tail() -> None:
    output = "\n".join(f"line {i}" for i in range(40))
    assert program_excerpt(output, lines=3) == "line 37\nline 38\nline 39"


def test_failure_lines_show_verdict_hint_and_output() -> None:
    failure = LabFailure("lab count: the BPF program does not compile", hint="read the clang error",
                         output=COMPILE_OUTPUT, kind="compile")
    lines = failure_lines(failure, kernel_id="6.1-amd64", show_output=True)
    assert lines[0] == "6.1-amd64: FAIL lab count: the BPF program does not compile"
    assert lines[1] == "  hint: read the clang error"
    assert "compiler errors" in lines[2]
    assert any("undeclared identifier" in line for line in lines[3:])


def test_failure_lines_say_when_the_program_printed_nothing() -> None:
    failure = LabFailure("lab opens: no output", hint="print", output="", kind="no_output")
    assert failure_lines(failure, kernel_id="k", show_output=True)[-1] == "--- your program printed nothing ---"
