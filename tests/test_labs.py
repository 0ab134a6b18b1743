"""Every lab's reference solution on every selected kernel, and students' mistakes caught with a useful hint.

The labs are parametrized inside the session-scoped ``kernel`` axis, so all labs of one
kernel share one booted guest (``vm``). A lab whose ``kernel`` requirement the kernel
does not meet is skipped with a reason before the guest is even asked for.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from lab.errors import LabFailure
from lab.kernels import catalog
from lab.labs.constraints import kernel_matches
from lab.labs.runner import all_labs, get_lab, run_lab, unsupported

STUDENTS = Path(__file__).parent / "data" / "students"
ROOT = Path(__file__).resolve().parent.parent

#: (lab, student's file, failure kind, what the failure message must contain)
MISTAKES = [
    ("count", "count_compile_error.py", "compile", r"error: use of undeclared identifier 'exec'"),
    ("hello", "hello_wrong_function.py", "attach", r"[Ff]ailed to attach .*sys_execve_hello"),
    ("perfbuf", "perfbuf_wrong_syscall.py", "wrong_output", r"no output matching"),
    ("opens", "opens_silent.py", "no_output", r"no output matching"),
    ("core", "core_compile_error.bpf.c", "compile", r"error: use of undeclared identifier 'tgdi'"),
    ("core", "core_unchecked_map.bpf.c", "attach", r"the verifier rejected the program"),
    ("bpftrace", "bpftrace_typo.bt", "compile", r"ERROR: .*filname"),
]


def _only_on_default(kernel) -> None:  # type: ignore[no-untyped-def]
    # A student's mistake fails the same way on every kernel; one kernel is enough to test the checker.
    if kernel.id != catalog.default_kernel_id():
        pytest.skip(f"students' programs are checked on the default kernel {catalog.default_kernel_id()} only")


#: hello has its own test (tests/test_hello.py) on the same booted guest; no need to run it twice.
REFERENCE_LABS = [name for name in all_labs() if name != "hello"]


@pytest.mark.parametrize("name", REFERENCE_LABS)
def test_reference_solution_passes(request: pytest.FixtureRequest, kernel, name: str) -> None:  # type: ignore[no-untyped-def]
    lab = get_lab(name)
    if kernel.spec.foreign and os.environ.get("EBPF_LAB_FOREIGN_LABS") == "0":
        # Under emulation of another CPU each BCC compile takes 20-40 s: a quick local run may leave them out.
        pytest.skip(f"{kernel.id} is emulated {kernel.spec.arch.name} and EBPF_LAB_FOREIGN_LABS=0")
    if lab.kernel_constraint and not kernel_matches(kernel.spec.series, lab.kernel_constraint):
        pytest.skip(f"lab {name} needs kernel {lab.kernel_constraint}; {kernel.id} is {kernel.spec.series}")
    reason = unsupported(lab, kernel.spec)
    if reason:
        pytest.skip(reason)
    if lab.features:
        missing = request.getfixturevalue("bpf_features").missing(lab.features)
        if missing:
            pytest.skip(f"lab {name} needs BPF feature(s) {', '.join(missing)}, which {kernel.id} lacks")
    vm = request.getfixturevalue("vm")
    result = run_lab(vm, lab)
    assert result.passed
    assert re.search(lab.expect, result.matched)


@pytest.mark.parametrize(("name", "student", "kind", "message"), MISTAKES, ids=[m[1].split(".")[0] for m in MISTAKES])
def test_wrong_student_program_fails_with_its_hint(request: pytest.FixtureRequest, kernel, name: str,  # type: ignore[no-untyped-def]
                                                  student: str, kind: str, message: str) -> None:
    _only_on_default(kernel)
    lab = get_lab(name)
    vm = request.getfixturevalue("vm")
    with pytest.raises(LabFailure) as caught:
        run_lab(vm, lab, program=STUDENTS / student)
    failure = caught.value
    assert failure.kind == kind
    assert failure.hint == lab.hint_for(kind) and failure.hint
    assert re.search(message, failure.message), failure.message


def test_lab_check_prints_clang_error_and_hint(kernel) -> None:  # type: ignore[no-untyped-def]
    """The command a student runs: FAIL, the compiler's words, the hint, exit code 1, no traceback of ours."""
    _only_on_default(kernel)
    argv = [sys.executable, "-m", "lab.cli", "check", "count", str(STUDENTS / "count_compile_error.py"),
            "--kernel", kernel.id]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{kernel.id}: FAIL lab count: the BPF program does not compile" in done.stdout
    assert "use of undeclared identifier 'exec'" in done.stdout
    assert f"hint: {get_lab('count').hint_for('compile')}" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.guest
def test_lab_check_takes_a_program_whose_path_has_spaces(kernel) -> None:  # type: ignore[no-untyped-def]
    """A student's program where a student keeps it, spaces and all: a guest on the host's root runs it in place."""
    _only_on_default(kernel)
    # Under the repository, not /tmp: the guest's /tmp is an overlay of its own.
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent, prefix=".programs-") as base:
        program = Path(base) / "dir with space" / "my hello.py"
        program.parent.mkdir()
        shutil.copy(get_lab("hello").program, program)
        argv = [sys.executable, "-m", "lab.cli", "check", "hello", str(program), "--kernel", kernel.id]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{kernel.id}: PASS hello" in done.stdout


def test_closing_a_tracer_interrupts_it_so_it_cleans_up(vm) -> None:  # type: ignore[no-untyped-def]
    """Labs rely on it: the XDP lab detaches from lo in a `finally`, and a tracer left
    running would make the next lab's readiness check pass before its own probes exist."""
    script = ("import time\ntry:\n    print('running', flush=True)\n    time.sleep(600)\n"
              "except KeyboardInterrupt:\n    print('cleaned up', flush=True)\n")
    process = vm.spawn(f"/usr/bin/python3 -c {shlex.quote(script)}")
    process.expect("running", timeout=60)
    process.close()
    assert "cleaned up" in process.output
    assert process.returncode == 0
    assert not vm.run(f"kill -0 -- -{process.pid}").ok, "the tracer's process group is still alive"
