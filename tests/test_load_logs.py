"""Why a BPF program did not load, read from recorded answers of real guests: the loader's JSON
lines (``tests/data/loads/<kernel>.txt``, cut from console logs of tests/test_bpf_objects.py) and
BCC's and bpftrace's own failure output (``tests/data/loads/*.out``). Pure: no guest here."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.errors import GuestError
from lab.guest import bpf_objects, console, verifier
from lab.report import loads

LOADS = Path(__file__).parent / "data" / "loads"
RECORDED = sorted(LOADS.glob("*.txt"))


def expected(kernel: str, obj: str, program: str) -> str:
    """The reason each test program must fail for on *kernel* ("" when it must load and attach)."""
    series = tuple(int(part) for part in kernel.split("-")[0].split("."))
    return {
        ("broken", "null_deref"): "verifier",
        ("probes", "missing_field"): "core_relocation",
        ("probes", "missing_function"): "attach_point",
        ("probes", "new_helper"): "unknown_helper" if series < (5, 11) else "",
        ("newmap", "drain"): "unsupported_type" if series < (6, 1) else "",
    }.get((obj, program), "")


def answers(path: Path) -> dict[str, bpf_objects.ObjectLoad]:
    found = {}
    for line in path.read_text().splitlines():
        load = bpf_objects.parse_report(line)
        found[Path(load.object).name.removesuffix(".bpf.o")] = load
    return found


def test_recordings_cover_both_arches_and_old_and_new_kernels():
    kernels = {path.stem for path in RECORDED}
    assert {"5.10-amd64", "6.1-amd64"} <= kernels
    assert any(k.endswith("-arm64") for k in kernels)


@pytest.mark.parametrize("path", RECORDED, ids=[p.stem for p in RECORDED])
def test_each_program_is_classified_as_on_its_kernel(path: Path):
    recorded = answers(path)
    assert {"hello", "broken", "probes", "newmap"} <= set(recorded)
    for obj, load in recorded.items():
        for program in load.programs:
            want = expected(path.stem, obj, program.name)
            assert program.reason == want, f"{path.stem} {obj}:{program.name}: {program.status}\n{program.log}"
            assert program.ok == (not want)
    assert recorded["hello"].attached and recorded["broken"].loaded is False


@pytest.mark.parametrize("path", RECORDED, ids=[p.stem for p in RECORDED])
def test_a_rejection_carries_the_verifiers_own_words(path: Path):
    bad = next(p for p in answers(path)["broken"].programs if p.name == "null_deref")
    assert "R0 invalid mem access 'map_value_or_null'" in bad.verifier_log
    assert "-- BEGIN PROG LOAD LOG --" not in bad.verifier_log
    why = bad.why()
    assert why.startswith("the verifier rejected the program") and "invalid mem access" in why


def test_the_table_names_each_program_and_kernel():
    results = {path.stem: answers(path)["probes"] for path in RECORDED}
    results["7.3-amd64"] = GuestError("boot timed out")
    text = loads.render(results)
    header = text.splitlines()[0].split()
    assert header[0] == "program" and header[1:] == list(results)
    assert "rejected (core_relocation)" in text and "not attached (attach_point)" in text
    assert "7.3-amd64: the guest failed: boot timed out" in text
    assert not loads.ok(results)
    entries = loads.as_json(results)
    assert [e["kernel"] for e in entries] == list(results)
    assert entries[-1]["error"] == "boot timed out"


def test_a_loader_that_crashed_is_an_error_not_a_verdict():
    with pytest.raises(GuestError, match="gave no answer"):
        bpf_objects.parse_report("Traceback (most recent call last):\nOSError: libbpf.so.1: cannot open shared object file")


@pytest.mark.parametrize(("text", "kind"), [
    ("libbpf: failed to find valid kernel BTF\nlibbpf: Error loading vmlinux BTF: -3", "no_btf"),
    ("libbpf: prog 'x': failed to find kernel BTF type ID of 'do_nothing': -3", "attach_point"),
    ("libbpf: extern (func ksym) 'bpf_obj_new_impl': not found in kernel or module BTFs", "unknown_helper"),
    ("", "other"),
])
def test_libbpf_lines_for_kinds_no_catalog_kernel_shows(text: str, kind: str):
    # No Debian kernel lacks BTF or these symbols: these are libbpf's messages, quoted from its source.
    assert verifier.classify(text) == kind


@pytest.mark.parametrize("name", sorted(p.name for p in LOADS.glob("*.out")))
def test_recorded_tool_failures_say_why(name: str):
    text = console.clean((LOADS / name).read_text())
    why = verifier.load_failure(text)
    assert why is not None, name
    kind = name.removesuffix(".out").split("-", 2)[-1]
    assert why.startswith(verifier.explain(kind)), why


def test_an_old_bcc_failing_on_a_new_kernels_headers_is_named_with_the_userland_that_works():
    """Recorded: bookworm's BCC 0.26 on 7.3 (tests/data/bpf/bcc_fs.py includes linux/fs.h)."""
    from lab.labs.runner import _exit_kind

    output = (LOADS / "7.3-amd64-bcc-header.log").read_text()
    assert console.kernel_header_error(output) == "include/linux/fs.h"
    kind, what = _exit_kind(output, returncode=1)
    assert kind == "compile"
    assert "BCC cannot compile this kernel's own header include/linux/fs.h" in what and "--userland debian:sid" in what
    # A student's own mistake is not blamed on the kernel.
    student = (Path(__file__).parent / "data" / "students" / "count_compile_error.output").read_text()
    assert console.compile_error(student) and console.kernel_header_error(student) is None


def test_a_failure_read_from_the_console_after_a_prompt_is_still_recognised():
    # In a console transcript BCC's first line follows the shell's prompt (seen in CI).
    text = "L0754f11caf67ce75:0> " + (LOADS / "6.1-amd64-verifier.out").read_text()
    why = verifier.load_failure(console.clean(text))
    assert why is not None and why.startswith(verifier.explain("verifier"))
    assert "R0 invalid mem access 'map_value_or_null'" in why
