"""The console commands the host sends to a guest (lab/guest/shell.py, guest_files/functions.sh), run in the host's bash.

The guest's console shell is bash too. Paths with a space in them, as a student's may have, are quoted.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

import pytest

from lab.guest import console
from lab.guest.shell import FUNCTIONS, builtin_grep, poll, ready_loop, spawn, stop

NONCE = "Ltest"


def _bash(script: str) -> str:
    """*script* run as the guest's console runs it: in bash, with the console's functions loaded."""
    return subprocess.run(["bash", "-c", f". {shlex.quote(str(FUNCTIONS))}; {script}"], capture_output=True, text=True,
                          timeout=20, check=True).stdout


@pytest.fixture
def spaced(tmp_path: Path) -> Path:
    """A directory whose path has a space in it."""
    directory = tmp_path / "dir with space"
    directory.mkdir()
    return directory


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_spawned_command_is_polled_for_its_output_and_status(spaced):
    out = str(spaced / "out")
    pid = int(_bash(spawn("echo hello; (exit 3)", out=out)).split()[-1])
    assert pid > 0
    _wait_for(spaced / "out.rc")
    assert console.parse_poll(_bash(poll(out=out, size=0, nonce=NONCE)), nonce=NONCE) == ("hello\n", 6, 3)
    # From an offset, only what is new.
    assert console.parse_poll(_bash(poll(out=out, size=6, nonce=NONCE)), nonce=NONCE) == ("", 6, 3)


def test_stop_interrupts_the_process_group_so_it_cleans_up(spaced):
    out = str(spaced / "out")
    program = "trap 'echo cleaned up; exit 0' INT; echo running; while :; do sleep 0.1; done"
    pid = int(_bash(spawn(f"bash -c {program!r}", out=out)).split()[-1])
    deadline = time.monotonic() + 10
    while "running" not in (spaced / "out").read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    _bash(stop(pid))
    _wait_for(spaced / "out.rc")
    new, _, status = console.parse_poll(_bash(poll(out=out, size=0, nonce=NONCE)), nonce=NONCE)
    assert new == "running\ncleaned up\n" and status == 0


@pytest.mark.parametrize("files, verdict", [(["ready"], "ready"), (["rc"], "ended"), ([], "late")])
def test_readiness_loop_says_ready_ended_or_late(tmp_path, files, verdict):
    for name in files:
        (tmp_path / name).touch()
    script = ready_loop(f"test -e {tmp_path}/ready", status_file=f"{tmp_path}/rc", timeout=1, interval=0.1)
    assert _bash(script).split() == [verdict]


@pytest.mark.parametrize("listing, verdict", [("p:kprobes/p___x64_sys_execve_bcc_1 __x64_sys_execve\n", "ready"),
                                              ("p:kprobes/other do_nanosleep\n", "late"), (None, "late")])
def test_readiness_loop_greps_a_word_without_forking(tmp_path, listing, verdict):
    kprobes = tmp_path / "list"
    if listing is not None:
        kprobes.write_text(listing)
    ready = f"grep -q 'sys_execve' {kprobes}"
    # The labs' kprobe check becomes bash's own loop (no grep process per check)...
    assert builtin_grep(ready) == ("sys_execve", str(kprobes))
    # ...and a pipeline or a regex stays as written.
    assert builtin_grep("ip link show dev lo | grep -q xdp") is None
    assert builtin_grep("grep -q 'sys_.*' /x") is None
    script = ready_loop(ready, status_file=f"{tmp_path}/rc", timeout=1, interval=0.1)
    assert _bash(script).split() == [verdict]
    assert not (tmp_path / "rc.wait").exists()


def test_readiness_loop_sees_a_status_file_whose_path_has_a_space(spaced):
    (spaced / "rc").touch()
    script = ready_loop(f"test -e {spaced}/never", status_file=f"{spaced}/rc", timeout=1, interval=0.1)
    assert _bash(script).split() == ["ended"]
    assert not (spaced / "rc.wait").exists()


def test_leftovers_of_a_timed_out_command_are_killed():
    # In a session of its own, as the guest's console is: its later-started members are the leftovers.
    # (A start time is in clock ticks: the first sleep makes the leftovers start after the shell.)
    script = (f". {shlex.quote(str(FUNCTIONS))}; sleep 0.1; sleep 100 & sleep 100 & sleep 0.1;"
              " ebpflab_kill_leftovers; echo $ebpflab_n $ebpflab_k")
    done = subprocess.run(["setsid", "bash", "-c", script], capture_output=True, text=True, timeout=20, check=True)
    killed, still = map(int, done.stdout.split())
    # At least both; a process killed but not yet a zombie may be counted again in the next round.
    assert killed >= 2 and still == 0
