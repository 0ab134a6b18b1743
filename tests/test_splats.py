"""Kernel splats: the parser (lab/guest/splats.py) and the kernel log reader (lab/guest/kmsg.py) on
recorded logs of real splats, and the plugin failing a test whose guest kernel splatted.

The recorded logs (``tests/data/consoles/6.1-amd64-splat-*.log``) are console logs of 6.1
guests that loaded ``tests/data/splat_module/splat.ko`` (built against the cached headers).
Each guest opened its kernel log (``ebpflab_kmsg_open``) and ran ``dmesg -n 8`` first, so each
splat is there twice: as the kernel printed it on the console, and as ``ebpflab_kmsg_read``
printed it afterwards; then ``echo recorded``.
"""

from __future__ import annotations

import platform
import re
import shlex
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.guest import console, kmsg, splats
from lab.guest.shell import FUNCTIONS
from lab.kernels import catalog
from lab.kernels.fetch import cached

DATA = Path(__file__).parent / "data"
CONSOLES = DATA / "consoles"
MODULE_SOURCE = DATA / "splat_module"


def _log(name: str) -> str:
    return (CONSOLES / name).read_text()


def _titles(found: list[splats.Splat]) -> list[tuple[str, str]]:
    return [(s.kind, s.title) for s in found]


# -- recorded logs of real splats ----------------------------------------------------------------

#: Each recorded log: the kinds of splat in it, in order, and a line of the first one.
RECORDED = {
    # WARN(1, "ebpf-lab test splat") in the module's init.
    "6.1-amd64-splat-warning.log": (["warning"], "ebpf-lab test splat"),
    # msleep() with preemption off; do_one_initcall() then warns of the preemption imbalance.
    "6.1-amd64-splat-bug.log": (["bug", "warning"], "BUG: scheduling while atomic: insmod/"),
    # An uninterruptible sleep of 8 s with kernel.hung_task_timeout_secs=2: reported every 2 s.
    "6.1-amd64-splat-hung-task.log": (["hung task"] * 3, "INFO: task insmod:116 blocked for more than 2 seconds."),
    # A busy wait of 10 s with preemption off and kernel.watchdog_thresh=1.
    "6.1-amd64-splat-soft-lockup.log": (["soft lockup"] * 3, "watchdog: BUG: soft lockup - CPU#0 stuck for 3s! [insmod:116]"),
    # A sleep inside rcu_read_lock() (a warning at once) while a grace period waits for it.
    "6.1-amd64-splat-rcu-stall.log": (["warning", "rcu stall"], "at kernel/rcu/tree_plugin.h"),
    # A NULL dereference in init: an oops the kernel survived (insmod was killed: status 137).
    "6.1-amd64-splat-oops.log": (["oops"], "BUG: kernel NULL pointer dereference, address: 0000000000000000"),
}


def _outputs(text: str) -> list[str]:
    """What each command of a recorded session printed, in order (the boot first)."""
    nonce = re.search(r"\b(L[0-9a-f]{16}):\d+> ", text).group(1)
    return re.split(re.escape(nonce) + r":\d+> ", text)


def _read(name: str) -> list[splats.Splat]:
    """The splats in what ebpflab_kmsg_read printed in the recorded session *name*."""
    return splats.find_splats(kmsg.parse(_outputs(_log(name))[-3]).text)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_a_recorded_splat_is_found_on_the_console_and_in_the_kernel_log(name):
    kinds, line = RECORDED[name]
    *before, read, recorded, _ = _outputs(_log(name))
    assert recorded.strip() == "recorded"
    on_console = splats.find_splats("".join(before))
    assert [s.kind for s in on_console] == kinds
    assert any(line in text_line for text_line in on_console[0].lines)
    for splat in on_console:
        assert len(splat.lines) <= splats.MAX_LINES
        assert splat.lines[0].startswith("[") and console.READY_MARKER not in splat.text
    # What ebpf-lab read from /dev/kmsg after the splat: the same splats, line for line.
    kernel_log = kmsg.parse(read)
    assert kernel_log.lost == 0
    assert [s.lines for s in splats.find_splats(kernel_log.text)] == [s.lines for s in on_console]


def test_a_warning_is_kept_from_its_cut_here_line_to_its_end_trace():
    (warning,) = _read("6.1-amd64-splat-warning.log")
    assert warning.lines[0].endswith("------------[ cut here ]------------")
    assert warning.lines[1].endswith("ebpf-lab test splat")
    assert re.fullmatch(r"WARNING: CPU: 0 PID: \d+ at /tmp/\S+/splat\.c:\d+ splat_init\+0x\w+/0x\w+ \[splat\]", warning.title)
    assert "Call Trace:" in warning.text and warning.lines[-1].endswith("---[ end trace 0000000000000000 ]---")


def test_an_oops_is_one_splat_with_its_oops_line_and_end_trace():
    (oops,) = _read("6.1-amd64-splat-oops.log")
    assert "Oops: 0000 [#1] PREEMPT SMP NOPTI" in oops.text
    # After its stack: "Modules linked in", CR2, then the end of the trace.
    assert oops.lines[-1].endswith("---[ end trace 0000000000000000 ]---")


def test_each_splat_ends_where_its_report_ends():
    for name in RECORDED:
        for splat in _read(name):
            last = splat.lines[-1]
            assert last.endswith(("</TASK>", "---[ end trace 0000000000000000 ]---")), (name, last)


def test_logs_without_splats_have_none():
    # A boot (its "virtme-ng-init: WARNING: ..." is no splat), an OOM kill with its stack dump,
    # a panic (console.find_panic's), and an arm64 session.
    for path in [DATA / "boot-6.1-verbose.log", DATA / "oom-fill-6.1.log", CONSOLES / "6.1-amd64-panic.log",
                 CONSOLES / "6.1-arm64-hello.log"]:
        assert splats.find_splats(path.read_text()) == [], path.name


# -- splats no Debian kernel here makes --------------------------------------------------------
# Debian's kernels have no KASAN or lockdep, 7.3's UBSAN needs a module built with gcc-14 (the
# host has gcc-12), and no hard lockup detector fires under TCG: these excerpts are written in
# the formats the catalog's kernel images hold (``strings`` of 6.1's and 7.3's vmlinux), with
# the shape of real reports (syzkaller's, the kernel's documentation).

HARD_LOCKUP_6_1 = """\
[  123.456789] NMI watchdog: Watchdog detected hard LOCKUP on cpu 1
[  123.456790] Modules linked in: bpf_preload
[  123.456791] CPU: 1 PID: 0 Comm: swapper/1 Not tainted 6.1.0-50-amd64 #1  Debian 6.1.176-1
[  123.456792] RIP: 0010:native_queued_spin_lock_slowpath+0x3b/0x2c0
[  123.456793] Call Trace:
[  123.456794]  <TASK>
[  123.456795]  _raw_spin_lock+0x2a/0x30
[  123.456796]  </TASK>
"""

HARD_LOCKUP_7_3 = "[   42.000001] watchdog: CPU1: Watchdog detected hard LOCKUP on cpu 1\n"

KASAN = """\
[   88.100000] ==================================================================
[   88.100001] BUG: KASAN: slab-out-of-bounds in ___bpf_prog_run+0x7f35/0x8fd0
[   88.100002] Read of size 4 at addr ffff88801cadf880 by task a.out/6957
[   88.100003]
[   88.100004] CPU: 1 PID: 6957 Comm: a.out Not tainted 6.1.0-rc8 #137
[   88.100005] Call Trace:
[   88.100006]  <TASK>
[   88.100007]  dump_stack_lvl+0x100/0x178
[   88.100008]  kasan_report+0xbf/0x1e0
[   88.100009]  ___bpf_prog_run+0x7f35/0x8fd0
[   88.100010]  </TASK>
[   88.100011]
[   88.100012] Allocated by task 6957:
[   88.100013]  kmalloc_trace+0x26/0x60
[   88.100014] ==================================================================
"""

UBSAN_7_3 = """\
[   12.000000] ------------[ cut here ]------------
[   12.000001] UBSAN: array-index-out-of-bounds in kernel/bpf/verifier.c:123:45
[   12.000002] index 12 is out of range for type 'u32 [12]'
[   12.000003] CPU: 0 UID: 0 PID: 140 Comm: bpftool Not tainted 7.3.4+deb13-amd64 #1 PREEMPT(lazy)  Debian 7.3.4-1~bpo13+1
[   12.000004] Call Trace:
[   12.000005]  <TASK>
[   12.000006]  __ubsan_handle_out_of_bounds+0xc6/0x100
[   12.000007]  </TASK>
[   12.000008] ---[ end trace ]---
"""

WARNING_7_3 = """\
[   30.000000] ------------[ cut here ]------------
[   30.000001] ebpf-lab test splat
[   30.000002] WARNING: /tmp/splat/splat.c:34 at splat_init+0x2d/0x1000 [splat], CPU#0: insmod/116
[   30.000003] Modules linked in: splat(OE+)
[   30.000004] ---[ end trace 0000000000000000 ]---
"""

LOCKDEP = """\
[   77.000000] ======================================================
[   77.000001] WARNING: possible circular locking dependency detected
[   77.000002] 6.1.0 #1 Not tainted
[   77.000003] ------------------------------------------------------
[   77.000004] bpftool/321 is trying to acquire lock:
[   77.000005] stack backtrace:
[   77.000006] Call Trace:
[   77.000007]  <TASK>
[   77.000008]  dump_stack_lvl+0x44/0x5c
[   77.000009]  </TASK>
"""

ARM64_OOPS = """\
[   55.000000] Unable to handle kernel NULL pointer dereference at virtual address 0000000000000000
[   55.000001] Mem abort info:
[   55.000002]   ESR = 0x0000000096000045
[   55.000003] Internal error: Oops: 0000000096000045 [#1] SMP
[   55.000004] Call trace:
[   55.000005]  splat_init+0x10/0x1000 [splat]
[   55.000006] ---[ end trace 0000000000000000 ]---
"""

RCU_SELF_DETECTED_5_10 = """\
[  200.000000] rcu: INFO: rcu_sched self-detected stall on CPU
[  200.000001] rcu: 	0-....: (5250 ticks this GP) idle=b52/1/0x4000000000000002 softirq=2090/2090 fqs=2562
[  200.000002] 	(t=5251 jiffies g=2957 q=26)
[  200.000003] Call Trace:
[  200.000004]  <IRQ>
[  200.000005]  </IRQ>
[  200.000006]  <TASK>
[  200.000007]  </TASK>
"""

HUNG_TASK_7_3 = "[  240.000000] INFO: task kworker/0:1:12 blocked in I/O wait for more than 120 seconds.\n"


@pytest.mark.parametrize(("text", "kind", "lines"), [
    (HARD_LOCKUP_6_1, "hard lockup", 8),
    (HARD_LOCKUP_7_3, "hard lockup", 1),
    (KASAN, "kasan", 15),   # from ruler to ruler, the blank lines left out
    (UBSAN_7_3, "ubsan", 9),
    (WARNING_7_3, "warning", 5),
    (LOCKDEP, "lockdep", 10),
    (ARM64_OOPS, "oops", 7),
    (RCU_SELF_DETECTED_5_10, "rcu stall", 8),
    (HUNG_TASK_7_3, "hung task", 1),
], ids=["hard-lockup-6.1", "hard-lockup-7.3", "kasan", "ubsan", "warning-7.3", "lockdep", "arm64-oops",
        "rcu-self-detected", "hung-task-7.3"])
def test_each_kind_of_splat_is_recognised(text, kind, lines):
    (splat,) = splats.find_splats(text)
    assert splat.kind == kind
    assert len(splat.lines) == lines, splat.text


@pytest.mark.parametrize("line", [
    # Kernel lines that say WARNING or BUG without being a splat.
    "[   10.000000] WARNING: Unprivileged eBPF is enabled with eIBRS+LFENCE mitigation and SMT, data leaks possible",
    "[    0.000000] WARNING: BIOS bug: CPU MTRRs don't cover all of memory, losing 64MB of RAM.",
    "[    2.663302] virtme-ng-init: WARNING: failed to run: \"systemd-tmpfiles\"",
    "[    5.000000] Spectre V2 : WARNING: Unprivileged eBPF is enabled",
    # A program's output is no kernel line: it has no time stamp.
    "BUG: my test found a bug",
    "WARNING: CPU: 0 PID: 1 at nowhere",
])
def test_lines_that_are_no_splat(line):
    assert splats.find_splats(line) == []


def test_a_console_line_that_begins_with_shell_output_is_still_the_kernels():
    text = "L0123456789abcdef:0> [    4.1] BUG: scheduling while atomic: insmod/116/0x00000002\n"
    assert _titles(splats.find_splats(text)) == [("bug", "BUG: scheduling while atomic: insmod/116/0x00000002")]


def test_splats_in_a_row_are_told_apart_and_bounded():
    text = WARNING_7_3 + KASAN + "".join(f"[  300.{i:06d}] line {i}\n" for i in range(200))
    found = splats.find_splats(text.replace("[   30.000004] ---[ end trace 0000000000000000 ]---\n", ""))
    assert [s.kind for s in found] == ["warning", "kasan"]
    # Without its end the warning stops where the next splat's ruler begins.
    assert found[0].lines[-1].endswith("Modules linked in: splat(OE+)")
    hung = splats.find_splats(HUNG_TASK_7_3 + "".join(f"[  300.{i:06d}] line {i}\n" for i in range(200)))
    assert len(hung[0].lines) == splats.MAX_LINES


def test_allow_patterns_are_searched_in_the_lines_without_time_stamps():
    (warning,) = _read("6.1-amd64-splat-warning.log")
    assert splats.allowed(warning, patterns=[r"ebpf-lab test splat"])
    assert splats.allowed(warning, patterns=[r"^WARNING: CPU: \d+ PID: \d+ at \S+/splat\.c"])
    assert splats.allowed(warning, patterns=[r"nothing like it", r"splat_init\+"])
    assert not splats.allowed(warning, patterns=[r"soft lockup"])
    assert not splats.allowed(warning, patterns=[r"^\[ "])
    # No pattern at all: every splat is allowed.
    assert splats.allowed(warning, patterns=[])


# -- the kernel log reader ---------------------------------------------------------------------


def _bash(script: str) -> str:
    """*script* in the host's bash with the console's functions loaded, as the guest's console runs them."""
    return subprocess.run(["bash", "-c", f". {shlex.quote(str(FUNCTIONS))}; {script}"], capture_output=True, text=True,
                          timeout=20, check=True).stdout


def test_kmsg_records_are_printed_as_dmesg_prints_them(tmp_path):
    records = tmp_path / "records"
    records.write_text("6,417,4160167,-;splat: loading out-of-tree module taints kernel.\n"
                       " SUBSYSTEM=module\n"
                       "3,418,7509583,-;rcu: \\x09Tasks blocked on level-0 rcu_node: 50%s \\x5c\n"
                       "4,425,12000000,c;PGD 0 P4D 0 \n")
    output = _bash(f"ebpflab_kmsg_seq=416; ebpflab_kmsg_print < {shlex.quote(str(records))}")
    assert output.split("\n") == [
        "[    4.160167] splat: loading out-of-tree module taints kernel.",
        "[    7.509583] rcu: \tTasks blocked on level-0 rcu_node: 50%s \\",
        # Sequence numbers rise by one per record: 419 to 424 were overwritten before this read.
        "ebpf-lab: 6 kernel log records were overwritten before they were read",
        "[   12.000000] PGD 0 P4D 0 ",
        "",
    ]
    log = kmsg.parse(output)
    assert log.lost == 6 and "overwritten" not in log.text and log.text.endswith("PGD 0 P4D 0 ")


# -- in a guest ----------------------------------------------------------------------------------


def test_the_kernel_log_is_read_from_where_the_last_read_stopped(vm):
    # The plugin opened the log when this test got its guest; what this test reads, it will not.
    kmsg.read_log(vm)
    vm.run("echo '<6>ebpf-lab: first' > /dev/kmsg; echo '<6>ebpf-lab: second' > /dev/kmsg")
    log = kmsg.read_log(vm)
    assert [line.split("] ", 1)[1] for line in log.text.split("\n")] == ["ebpf-lab: first", "ebpf-lab: second"]
    assert log.lost == 0
    assert kmsg.read_log(vm).text == ""


def test_a_kernel_log_that_wrapped_between_reads_says_how_much_was_lost(vm):
    # 2,000 records of 100 bytes overflow the 128 KiB ring buffer (CONFIG_LOG_BUF_SHIFT=17):
    # the read starts again at the oldest record left and counts what it missed.
    kmsg.read_log(vm)
    vm.run("echo on > /proc/sys/kernel/printk_devkmsg; exec {w}>/dev/kmsg; "
           "for i in $(seq 2000); do printf '<6>ebpf-lab flood %04d %s\\n' $i "
           f"{'x' * 80} >&$w; done; exec {{w}}>&-; echo ratelimit > /proc/sys/kernel/printk_devkmsg", timeout=300)
    log = kmsg.read_log(vm)
    lines = log.text.split("\n")
    assert log.lost > 0
    assert lines[-1].split("] ", 1)[1].startswith("ebpf-lab flood 2000 ")
    assert log.lost + len(lines) == 2000


# -- the plugin ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def splat_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``splat.ko`` built against 6.1-amd64's cached headers, with the compiler Debian built it with."""
    if platform.machine() != "x86_64":
        pytest.skip("the module is built for the x86_64 6.1 kernel, and loaded by a guest on the host's root")
    files = cached(catalog.load_catalog()["6.1-amd64"])
    if files is None or files.modules is None or not shutil.which("make"):
        pytest.skip("needs 6.1-amd64 in the cache ('lab fetch 6.1') and make")
    out = tmp_path_factory.mktemp("splat-module")
    for name in ("splat.c", "Kbuild"):
        shutil.copy(MODULE_SOURCE / name, out / name)
    result = subprocess.run(_kbuild(files.modules / "build", root=files.root) + [f"M={out}", "modules"],
                            capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        pytest.skip(f"the module did not build (gcc-12 and make needed): {result.stderr.strip()[-300:]}")
    return out / "splat.ko"


def _kbuild(build: Path, *, root: Path) -> list[str]:
    """make for Debian's split headers unpacked under *root*: the arch directory's Makefile
    includes the common one by its installed path (/usr/src/...), which is under *root* here."""
    build = build.resolve()
    included = re.search(r"^include (\S+)", (build / "Makefile").read_text(), re.MULTILINE)
    argv = ["make", "-s", "-C", str(build)]
    if included and not Path(included.group(1)).exists():
        argv += ["-f", str(root / included.group(1).lstrip("/"))]
    return argv


INNER = """
import pytest

KO = {ko!r}

def test_1_warns(vm):
    vm.run(f"insmod {{KO}}")

@pytest.mark.allow_splat(r"ebpf-lab test splat")
def test_2_warns_as_it_expects(vm):
    vm.run(f"insmod {{KO}}")

def test_3_quiet(vm):
    assert vm.run("true").ok

def test_4_fails_and_warns(vm):
    vm.run(f"insmod {{KO}}")
    assert False, "planned failure"

@pytest.fixture
def warns_at_teardown(vm):
    yield
    vm.run(f"insmod {{KO}} mode=atomic")

def test_5_teardown_splats(warns_at_teardown):
    pass

@pytest.mark.allow_splat(r"soft lockup")
def test_6_allowed_is_not_this_splat(vm):
    vm.run(f"insmod {{KO}}")

@pytest.mark.allow_splat()
def test_7_allows_any_splat(vm):
    vm.run(f"insmod {{KO}} mode=atomic")
"""


@pytest.mark.guest
def test_a_test_whose_kernel_splats_fails_unless_it_allows_it(pytester, splat_module):
    pytester.makepyfile(test_inner=INNER.format(ko=str(splat_module)))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--junitxml=inner.xml", timeout=900)
    result.assert_outcomes(passed=4, failed=3, errors=1)
    out = result.stdout.str()
    # The splat fails a test that passed, with its lines in a section of the report.
    result.stdout.fnmatch_lines(["*_ test_1_warns*_", "*the guest kernel (6.1-amd64) logged 1 splat (warning) during this test:",
                                 "*WARNING: CPU: * PID: * at */splat.c:* splat_init+*"])
    assert "guest kernel splat" in out and "ebpf-lab test splat" in out
    # A failing test shows its splat too, beside the console tail reporting.py attaches.
    result.stdout.fnmatch_lines(["*_ test_4_fails_and_warns*_", "*planned failure*", "*guest console (last lines)*",
                                 "*guest kernel splat*"])
    # At teardown it is an error; a marker for another splat does not allow this one.
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_5_teardown_splats*",
                                 "*logged * splats (bug, warning) during this test's teardown*"])
    result.stdout.fnmatch_lines(["*_ test_6_allowed_is_not_this_splat*_"])
    # The JUnit XML says so too: what CI and 'lab report' read.
    cases = {case.get("name"): case for case in ET.parse(pytester.path / "inner.xml").getroot().iter("testcase")}
    failure = cases["test_1_warns[6.1-amd64]"].find("failure")
    assert failure is not None and "logged 1 splat (warning)" in failure.get("message", "")
    assert cases["test_2_warns_as_it_expects[6.1-amd64]"].find("failure") is None
    assert cases["test_3_quiet[6.1-amd64]"].find("failure") is None
    assert cases["test_7_allows_any_splat[6.1-amd64]"].find("failure") is None
    # And the kernel x test table at the end.
    result.stdout.fnmatch_lines(["*ebpf-lab: kernels x tests*", "*test_1_warns*FAIL*", "*test_2_warns_as_it_expects*PASS*"])
