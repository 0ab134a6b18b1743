"""Faults injected on purpose: a panic, a hung boot, a hung command, Ctrl-C/SIGTERM/SIGKILL,
a broken cache, a guest writing everywhere, bad BPF programs, a failing test.

Each test states the promise it checks. Tests that use ``vm`` share the session's
guest; the others start their own ``lab``/pytest processes and find what those
left behind by a tag in the environment (other runs use QEMU on this machine too).
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from procs import BOOT_WAIT, TAG_ENV, assert_nothing_left, wait_for

from lab.errors import BootTimeout, CommandTimeout, LabFailure
from lab.guest import console
from lab.guest import kernel as guest_kernel
from lab.guest.timeouts import Timeouts
from lab.kernels.fetch import cached, kernel_dir
from lab.labs.runner import get_lab, run_lab

LAB_RUN = [sys.executable, "-m", "lab.cli", "run", "hello"]


# -- a guest that misbehaves ---------------------------------------------------------------------


def test_hung_command_times_out_and_the_guest_stays_usable(vm):
    started_at = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"'sleep 1000' did not finish within 3s"):
        vm.run("sleep 1000", timeout=3)
    assert time.monotonic() - started_at < 40
    # Ctrl-C got the shell back: same guest, next command works and sees no stray output.
    assert vm.alive
    result = vm.run("echo still-here")
    assert result.returncode == 0 and result.output.strip() == "still-here"
    # In step: each answer belongs to its own command, not to the one before.
    assert vm.run("(exit 7)").returncode == 7
    assert vm.run("echo $((40 + 2))").output.strip() == "42"


def test_guest_writes_do_not_reach_the_host(vm):
    name = f"ebpf-lab-isolation-{uuid.uuid4().hex[:8]}"
    targets = [Path("/") / name, Path("/etc") / name, Path("/tmp") / name, Path.home() / name,
               Path("/usr/local/bin") / name]
    script = "; ".join(f"echo pwned > {t} 2>/dev/null" for t in targets)
    vm.run(script + "; rm -f /etc/hostname 2>/dev/null; true")
    # Inside, the writes to the overlaid directories worked ...
    assert vm.run(f"cat /tmp/{name}").output.strip() == "pwned"
    assert vm.run(f"cat /etc/{name}").output.strip() == "pwned"
    # ... and on the host, nothing changed.
    for target in targets:
        assert not target.exists(), f"the guest wrote {target} on the host"
    assert Path("/etc/hostname").exists()


@pytest.fixture(scope="module")
def program_dir():  # type: ignore[no-untyped-def]
    # Under the repository, not /tmp: the guest's /tmp is an overlay of its own.
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent, prefix=".programs-") as path:
        yield Path(path)


def test_bpf_syntax_error_is_reported_with_the_compiler_line(vm, program_dir):
    program = program_dir / "syntax_error.py"
    program.write_text((get_lab("hello").program.read_text()).replace('return 0;', 'return 0'))
    with pytest.raises(LabFailure) as failure:
        run_lab(vm, get_lab("hello"), program=program)
    message = str(failure.value)
    assert "the BPF program does not compile" in message
    assert "error: expected ';'" in message
    assert "\n" not in failure.value.message


def test_probe_on_a_missing_function_is_reported(vm, program_dir):
    program = program_dir / "missing_probe.py"
    program.write_text(get_lab("hello").program.read_text().replace(
        "event=syscall", 'event="ebpf_lab_no_such_function"'))
    with pytest.raises(LabFailure) as failure:
        run_lab(vm, get_lab("hello"), program=program)
    message = str(failure.value)
    assert "could not be loaded or attached" in message
    assert "ebpf_lab_no_such_function" in message
    assert vm.run("true").ok


#: Kernel arguments that keep a guest from reaching its shell for minutes, whatever the host's
#: speed: every console message at any level, each followed by a one-second pause
#: (CONFIG_BOOT_PRINTK_DELAY, set in Debian's kernels). A test of a boot timeout that only
#: raced a quick boot passed or failed with the machine's load.
STALLED_BOOT = ("loglevel=8", "boot_delay=1000")


def test_boot_that_never_reaches_the_prompt(kernel, tmp_path):
    # The kernel's own messages on the serial console, each a second apart: the guest is stuck
    # as far as we can tell, with console lines to show.
    timeouts = Timeouts(boot=3, command=10, attach=10)
    guest = guest_kernel.new_guest(kernel, accel=guest_kernel.choose_accel(kernel), timeouts=timeouts,
                              append=("console=ttyS0", *STALLED_BOOT), log_path=tmp_path / "console.log")
    os.environ[TAG_ENV] = tag = uuid.uuid4().hex
    try:
        started_at = time.monotonic()
        with pytest.raises(BootTimeout) as timeout:
            guest.boot()
        elapsed = time.monotonic() - started_at
    finally:
        del os.environ[TAG_ENV]
        guest.close()
    assert 3 <= elapsed < 30
    assert "boot did not finish within 3s" in str(timeout.value)
    # The error carries the last console lines (whatever the guest managed to print on a
    # loaded host) and names the full log, which holds the same text.
    log_text = (tmp_path / "console.log").read_text()
    assert timeout.value.log_path == str(tmp_path / "console.log")
    assert timeout.value.tail == console.tail(log_text.split("\n", 1)[1])
    last = timeout.value.tail.splitlines()[-1][:160] if timeout.value.tail else "nothing"
    assert f"(last console line: {last})" in str(timeout.value)
    assert_nothing_left(tag)


# -- interrupt and kill --------------------------------------------------------------------------


def test_ctrl_c_during_boot_leaves_nothing(started):
    run = started(LAB_RUN)
    wait_for(run.qemu_running, timeout=120, what="QEMU starting")
    time.sleep(2)
    assert run.stop(signal.SIGINT) == 130
    assert "interrupted" in run.stderr() and "Traceback" not in run.stderr()
    assert_nothing_left(run.tag)


def test_sigkill_of_lab_takes_qemu_down_too(started):
    run = started(LAB_RUN)
    wait_for(run.qemu_running, timeout=120, what="QEMU starting")
    run.proc.kill()
    run.proc.wait(timeout=30)
    # No handler runs on SIGKILL: QEMU goes because vng gets the parent-death signal
    # and the console pty hangs up on the whole group.
    assert_nothing_left(run.tag)


def test_sigterm_during_a_running_lab_leaves_nothing(started):
    run = started(LAB_RUN)
    wait_for(lambda: "running program.py" in run.stderr() or run.proc.poll() is not None,
             timeout=BOOT_WAIT, what="the lab starting")
    assert run.proc.poll() is None, run.stderr()
    time.sleep(5)  # BCC is compiling or tracing now
    assert run.stop(signal.SIGTERM) == 130, run.stdout() + run.stderr()
    assert "Traceback" not in run.stderr()
    assert_nothing_left(run.tag)


PYTEST_SLEEPER = """
import os
from pathlib import Path

def test_sleeps(vm):
    Path(os.environ["EBPF_LAB_TEST_RUNNING"]).write_text("running")
    vm.run("sleep 600", timeout=900)
"""


def test_pytest_interrupted_during_boot_and_during_a_test(started, tmp_path):
    test_file = tmp_path / "test_sleeper.py"
    test_file.write_text(PYTEST_SLEEPER)
    marker = tmp_path / "running"
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(test_file)]
    env = {"EBPF_LAB_TEST_RUNNING": str(marker)}

    during_boot = started(argv, env=env)
    wait_for(during_boot.qemu_running, timeout=120, what="QEMU starting")
    assert during_boot.stop(signal.SIGINT) == 2  # pytest's "interrupted"
    assert_nothing_left(during_boot.tag)

    during_test = started(argv, env=env)
    wait_for(lambda: marker.exists() or during_test.proc.poll() is not None, timeout=BOOT_WAIT,
             what="the test starting")
    assert during_test.proc.poll() is None, during_test.stdout()
    time.sleep(2)
    assert during_test.stop(signal.SIGTERM) == 2
    assert "KeyboardInterrupt" in during_test.stdout()
    assert_nothing_left(during_test.tag)


# -- what a failing test shows -------------------------------------------------------------------


PYTEST_FAULTS = """
import pytest

GUESTS = []

def test_1_panics(vm):
    GUESTS.append(vm)
    vm.run("echo c > /proc/sysrq-trigger", timeout=120)

def test_2_gets_a_fresh_guest(vm, kernel):
    assert vm is not GUESTS[0] and vm.alive
    assert vm.run("uname -r").output.strip() == kernel.release

def test_3_fails(vm):
    vm.run("echo the-guest-said-this")
    assert False, "planned failure"

def test_4_passes(vm):
    assert vm.run("true").ok
"""


@pytest.mark.guest
def test_failures_are_diagnosable_and_a_panic_gets_a_fresh_guest(pytester):
    pytester.makepyfile(test_faults=PYTEST_FAULTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", timeout=2 * BOOT_WAIT)
    result.assert_outcomes(passed=2, failed=2)
    out = result.stdout.str()
    # The panic: its own words, the panic lines, where the full log is.
    result.stdout.fnmatch_lines(["*GuestPanic: 6.1-amd64: guest kernel panicked during command*",
                                 "*Kernel panic - not syncing: sysrq triggered crash*"])
    # A plain failure carries the console tail and the log path; passing tests carry neither.
    result.stdout.fnmatch_lines(["*guest console (last lines)*", "*the-guest-said-this*",
                                 "*guest console log*", "*/logs/6.1-amd64-*.log"])
    assert out.count("guest console (last lines)") == 2
    assert out.count("guest console log") == 2


@pytest.mark.guest
def test_boot_timeout_from_the_ini_file(pytester):
    pytester.makeini(f"[pytest]\nlab_boot_timeout = 5\nlab_kernel_args = {' '.join(STALLED_BOOT)}\n")
    pytester.makepyfile(test_boot="def test_boots(vm):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*boot did not finish within 5s*"])


# -- a broken cache, fetched again; two fetches at once ------------------------------------------


def test_interrupted_and_corrupt_fetches_are_never_used(started, tmp_path):
    cache = tmp_path / "cache"
    env = {"EBPF_LAB_CACHE": str(cache)}
    fetch_73 = [sys.executable, "-m", "lab.cli", "fetch", "7.3"]
    dest = cache / "kernels" / "7.3-amd64"

    # Ctrl-C while the packages are being unpacked: no tree, no temporary tree.
    first = started(fetch_73, env=env)
    wait_for(lambda: "unpacking" in first.stderr() or first.proc.poll() is not None, timeout=600,
             what="unpacking")
    assert first.stop(signal.SIGINT) == 130, first.stderr()
    assert not dest.exists() and not list(dest.parent.glob(".7.3-amd64.tmp-*"))

    # Damage what the next run would reuse: a downloaded .deb (same size, flipped bytes) and
    # the temporary tree of a fetch that was SIGKILLed.
    debs = sorted((cache / "debs" / "7.3-amd64").glob("*.deb"), key=lambda p: p.stat().st_size)
    assert debs, first.stderr()
    with open(debs[-1], "r+b") as file:
        file.seek(debs[-1].stat().st_size // 2)
        file.write(b"\xff" * 4096)
    (dest.parent / ".7.3-amd64.tmp-99999" / "boot").mkdir(parents=True)

    # Two fetches at once: both succeed, one good copy, nothing else in the kernels directory.
    a, b = started(fetch_73, env=env), started(fetch_73, env=env)
    assert a.proc.wait(timeout=900) == 0, a.stderr()
    assert b.proc.wait(timeout=900) == 0, b.stderr()
    assert sorted(p.name for p in dest.parent.iterdir() if not p.name.endswith(".lock")) == ["7.3-amd64"]
    os.environ["EBPF_LAB_CACHE"] = str(cache)
    try:
        from lab.kernels import catalog

        files = cached(catalog.load_catalog()["7.3-amd64"])
        assert files is not None and files.root == kernel_dir(catalog.load_catalog()["7.3-amd64"])
    finally:
        del os.environ["EBPF_LAB_CACHE"]
    assert files.image.stat().st_size > 1_000_000


@pytest.mark.guest
def test_kernel_args_reach_the_guest(pytester):
    pytester.makepyfile(test_cmdline="def test_cmdline(vm):\n    assert 'ebpflab_marker=42' in vm.run('cat /proc/cmdline').output\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--kernel-args", "ebpflab_marker=42", timeout=BOOT_WAIT)
    result.assert_outcomes(passed=1)
    bad = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--kernel-args", "'unclosed", timeout=120)
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--kernel-args \"'unclosed\": No closing quotation; quote words as a shell would*"])
