"""Beyond BCC, in real guests: files in and out, bpftool and bpftrace, compiled BPF objects loaded
by the guest's libbpf with a classified reason when the kernel refuses one, and a libbpf CO-RE
program (skeleton, ring buffer) built once on the host and run unchanged.

The objects are built from ``tests/data/bpf/*.bpf.c`` with the host's clang, once per arch.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.errors import GuestError, UsageError
from lab.guest import files
from lab.host.clang import compile_bpf
from lab.kernels import catalog

SOURCES = Path(__file__).parent / "data" / "bpf"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "core"


@pytest.fixture(scope="session")
def objects(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """``objects(name, kernel)``: tests/data/bpf/<name>.bpf.c compiled for the kernel's arch."""
    built: dict[tuple[str, str], Path] = {}

    def build(name: str, kernel) -> Path:  # type: ignore[no-untyped-def]
        machine = kernel.spec.arch.name
        if (name, machine) not in built:
            out = tmp_path_factory.mktemp(f"bpf-{machine}") / f"{name}.bpf.o"
            built[name, machine] = compile_bpf(SOURCES / f"{name}.bpf.c", out, machine=machine,
                                               big_endian=kernel.spec.arch.big_endian)
        return built[name, machine]

    return build


def test_copy_in_and_out_is_binary_safe(vm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(100_000) + bytes(range(256)) * 4
    source = tmp_path / "blob.bin"
    source.write_bytes(data)
    where = vm.copy_in(source, "/tmp/ebpf lab copy/blob.bin")
    assert where == "/tmp/ebpf lab copy/blob.bin"
    assert vm.run(f"sha256sum < '{where}'").output.split()[0] == hashlib.sha256(data).hexdigest()
    back = vm.copy_out(where, tmp_path / "back")
    assert back.read_bytes() == data


def test_copy_errors_are_one_line_and_leave_the_guest_usable(vm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(GuestError, match="not a file in the guest"):
        vm.copy_out("/no/such/file", tmp_path)
    with pytest.raises(UsageError, match="no such file"):
        vm.copy_in(tmp_path / "missing")
    big = tmp_path / "big"
    big.write_bytes(b"x" * 2048)
    with pytest.raises(UsageError, match="over the"):
        files.copy_in(vm, big, "/tmp/big", limit=1024)
    assert vm.run("echo still here").output.strip() == "still here"


def test_bpftool_runs_in_the_guest(vm) -> None:  # type: ignore[no-untyped-def]
    result = vm.run("bpftool version")
    assert result.ok, result.output
    assert re.search(r"bpftool v\d+\.\d+", result.output)
    listed = vm.run("bpftool prog list")
    assert listed.ok, listed.output


def test_bpftrace_one_liner_on_execve(vm) -> None:  # type: ignore[no-untyped-def]
    if not vm.run("command -v bpftrace").ok:
        pytest.skip("Debian has no bpftrace for this guest's arch and suite")
    script = 'tracepoint:syscalls:sys_enter_execve { printf("bpftrace saw %s\\n", str(args->filename)); }'
    tracer = vm.spawn(f"bpftrace -e '{script}'")
    try:
        # bpftrace up to 0.23 says "Attaching 1 probe...", sid's newer one "Attached 1 probe".
        tracer.expect(r"Attach(ing|ed) 1 probe", timeout=vm.timeouts.attach)
        # bpftrace says it is attaching before it does: wait for the kernel to list the program.
        limit = int(vm.timeouts.attach)
        assert vm.run(f"(for i in $(seq {limit}); do bpftool perf | grep -q sys_enter_execve && exit 0;"
                      f" [ -e {tracer.status_file} ] && exit 1; sleep 1; done;"
                      " exit 1)", timeout=limit + 60).ok
        vm.run("/bin/true")
        match = tracer.expect(r"bpftrace saw /bin/true", timeout=30 * vm.timeouts.expect_scale)
        assert match
    finally:
        tracer.close()


def test_core_object_loads_and_attaches(vm, kernel, objects) -> None:  # type: ignore[no-untyped-def]
    result = vm.load(objects("hello", kernel))
    assert result.loaded and result.attached, result.summary()
    assert {p.name: p.status for p in result.programs} == {"hello_tp": "attached", "hello_kprobe": "attached"}
    assert result.libbpf


def test_broken_program_is_rejected_with_the_verifier_log(vm, kernel, objects) -> None:  # type: ignore[no-untyped-def]
    result = vm.load(objects("broken", kernel))
    by_name = {p.name: p for p in result.programs}
    assert by_name["fine"].status == "attached", result.summary()
    bad = by_name["null_deref"]
    assert bad.status == "rejected" and bad.reason == "verifier", result.summary()
    # The verifier's own words: a map value that may be NULL was dereferenced.
    assert re.search(r"invalid mem access 'map_value_or_null'", bad.verifier_log), bad.log
    assert not result.loaded
    assert "the verifier rejected the program" in result.summary()


def test_failures_are_classified_per_kernel(vm, kernel, objects) -> None:  # type: ignore[no-untyped-def]
    result = vm.load(objects("probes", kernel))
    by_name = {p.name: p for p in result.programs}
    assert (by_name["missing_field"].status, by_name["missing_field"].reason) == ("rejected", "core_relocation")
    assert (by_name["missing_function"].status, by_name["missing_function"].reason) == ("not attached", "attach_point")
    if kernel.spec.series_tuple >= (5, 11):
        assert by_name["new_helper"].status == "attached", result.summary()
    else:
        assert (by_name["new_helper"].status, by_name["new_helper"].reason) == ("rejected", "unknown_helper")
    newmap = vm.load(objects("newmap", kernel))
    if kernel.spec.series_tuple >= (6, 1):
        assert newmap.attached, newmap.summary()
    else:
        assert newmap.reasons == ["unsupported_type"], newmap.summary()


def test_core_skeleton_binary_runs_unchanged(vm, kernel, tmp_path_factory: pytest.TempPathFactory) -> None:  # type: ignore[no-untyped-def]
    """examples/core: clang + bpftool gen skeleton + cc -lbpf on the host, run by a host-root guest."""
    if kernel.spec.foreign or vm.guest_path(Path("/usr/lib")) is None:
        pytest.skip(f"the example is built for the host ({os.uname().machine}) and runs where the guest sees its libbpf")
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    out = tmp_path_factory.mktemp("core-example")
    subprocess.run(["make", "-s", "-C", str(EXAMPLE), f"OUT={out}"], check=True, capture_output=True, timeout=300)
    program = vm.spawn(f"{out}/hello")
    try:
        program.expect(r"hello: attached", timeout=vm.timeouts.attach)
        vm.run("/bin/true")
        assert program.expect(r"exec pid \d+ ppid \d+ comm \S+ file /bin/true", timeout=30 * vm.timeouts.expect_scale)
    finally:
        program.close()


def test_a_test_whose_bpf_program_fails_to_load_says_why(pytester: pytest.Pytester, kernel) -> None:  # type: ignore[no-untyped-def]
    """Whoever loads it (here BCC, as a user's test would): the report names the reason and quotes the verifier."""
    if kernel.id != catalog.default_kernel_id():
        pytest.skip("the report is the same on every kernel; checked on the default one")
    pytester.makepyfile(test_user=f'''
def test_users_loader(vm):
    result = vm.run("python3 {SOURCES / "bcc_unchecked.py"}")
    assert result.ok
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--kernel", kernel.id, timeout=600)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*why the BPF program did not load*", "the verifier rejected the program",
                                 "R0 invalid mem access 'map_value_or_null'"])
