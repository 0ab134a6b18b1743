"""``lab shell``: a person's shell in the very guest the tests boot (prepared boot, our init),
driven here as a person would, through a terminal."""

from __future__ import annotations

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
