"""One boot path: ``lab shell`` is a person's shell in the very guest the tests boot (prepared
boot, our init), driven here through a terminal; and each switch of the prepared boot still boots."""

from __future__ import annotations

import os
import subprocess
import sys

import pexpect
import pytest
from procs import BOOT_WAIT, REPO

pytestmark = pytest.mark.guest


@pytest.mark.parametrize("kernel_id", ["6.1-amd64", "6.1-arm64"])
def test_lab_shell_is_interactive_and_ends_with_exit(kernel_id, tmp_path):
    child = pexpect.spawn(sys.executable, ["-m", "lab.cli", "shell", "--kernel", kernel_id], cwd=str(REPO),
                          encoding="utf-8", codec_errors="replace", timeout=BOOT_WAIT, dimensions=(40, 160))
    child.logfile_read = open(tmp_path / "terminal.log", "w")
    try:
        child.expect("Leave with exit or Ctrl-D")
        child.expect(r"ebpf-lab \S+:\S*labs#")  # the prompt, in the lab package's labs
        child.sendline("uname -m; echo $((6 * 7)); ls hello")
        child.expect("42")
        child.expect("lab.toml")
        child.expect(r"ebpf-lab \S+:\S*#")
        child.sendline("exit")
        child.expect(pexpect.EOF, timeout=120)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, (tmp_path / "terminal.log").read_text()
    log = (tmp_path / "terminal.log").read_text()
    assert ("aarch64" if "arm64" in kernel_id else "x86_64") in log


@pytest.mark.parametrize("switch", ["EBPF_LAB_PREPARED", "EBPF_LAB_PVH", "EBPF_LAB_9P_CACHE"])
def test_each_boot_switch_still_boots_a_working_guest(switch, tmp_path):
    """The prepared boot's switches, each turned off: plain vng (the escape hatch), the bzImage
    instead of the PVH entry, the uncached share. Each guest still runs the tutorial's BPF."""
    env = {**os.environ, switch: "0"}
    done = subprocess.run([sys.executable, "-m", "lab.cli", "run", "hello"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=BOOT_WAIT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Hello World!" in done.stdout and "6.1-amd64: PASS hello" in done.stdout
