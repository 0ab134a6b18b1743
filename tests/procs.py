"""Processes a test started (``lab``, pytest), found again by a tag in their environment.

Other runs use QEMU on this machine too, so a test finds what *its* processes left
behind by the tag ``EBPF_LAB_TEST_TAG=<uuid>`` that each one inherits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TAG_ENV = "EBPF_LAB_TEST_TAG"
#: Every wait for a whole boot: TCG on a loaded 2-core host takes minutes.
BOOT_WAIT = 900.0



def tagged(tag: str) -> list[str]:
    """``pid comm`` of every live process whose environment carries *tag* (QEMU, vng, virtme-run…)."""
    needle = f"{TAG_ENV}={tag}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as file:
                if needle not in file.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry.name}/stat") as file:
                stat = file.read()
        except OSError:
            continue
        state = stat.rsplit(")", 1)[1].split()[0]
        if state != "Z":
            found.append(f"{entry.name} {stat.split('(', 1)[1].rsplit(')', 1)[0]}")
    return found


def wait_for(condition: Callable[[], object], *, timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {timeout:.0f}s")


def assert_nothing_left(tag: str) -> None:
    # The group is killed with a 5 s grace for SIGTERM; a pty hang-up is immediate.
    deadline = time.monotonic() + 30
    while (left := tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"processes left behind: {left}"


class Started:
    """A ``lab``/pytest process of our own with its stderr collected in a file."""

    def __init__(self, argv: list[str], *, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.tag = uuid.uuid4().hex
        self.err = tmp / f"stderr-{self.tag}"
        self.out = tmp / f"stdout-{self.tag}"
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=open(self.out, "w"), stderr=open(self.err, "w"),
                                     env={**os.environ, TAG_ENV: self.tag, **(env or {})})

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def qemu_running(self) -> bool:
        return any(" qemu-system" in p for p in tagged(self.tag))

    def stop(self, sig: int, *, timeout: float = 60) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def started_processes(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Start processes with ``started(argv)``; whatever happens, they and their guests end with the test."""
    runs: list[Started] = []

    def start(argv: list[str], env: dict[str, str] | None = None) -> Started:
        run = Started(argv, tmp=tmp_path, env=env)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()
        for line in tagged(run.tag):
            os.kill(int(line.split()[0]), signal.SIGKILL)


