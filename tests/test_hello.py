"""The tutorial, end to end: boot the kernel, run the hello lab, see Hello World! from trace_pipe."""

import pytest

from lab.labs.runner import get_lab, run_lab, unsupported


def test_hello_lab_traces_execve(request, kernel):
    lab = get_lab("hello")
    reason = unsupported(lab, kernel.spec)
    if reason:
        pytest.skip(reason)
    result = run_lab(request.getfixturevalue("vm"), lab)
    assert "Hello World!" in result.matched
    assert "bpf_trace_printk" in result.output


def test_guest_runs_the_kernel_under_test(vm, kernel):
    result = vm.run("uname -r")
    assert result.returncode == 0
    assert result.output.strip() == kernel.release


def test_exit_status_and_output_come_back(vm):
    result = vm.run("echo out; echo err >&2; exit_with() { return $1; }; exit_with 3")
    assert result.returncode == 3
    assert result.output.split() == ["out", "err"]


@pytest.mark.kernel(">=6.1")
def test_kernel_marker_selects_by_series(kernel):
    # Decided before anything boots: on 5.10 this is skipped with a reason naming the kernel.
    assert kernel.spec.series_tuple >= (6, 1)
