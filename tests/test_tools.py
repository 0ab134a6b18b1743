"""Tool lookup and running host programs: from a venv that is not on PATH, as a user runs ``lab``.

Most tests use fake tools in temporary directories; the bare-shell ones run the real
``lab`` under ``env -i`` with a minimal PATH, the way issue #22 found it failing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.errors import FetchError, HostError, ProcessTimeout
from lab.host import process, tools
from lab.host import setup as setup_host

REPO = Path(__file__).resolve().parent.parent
#: What a user's bare shell has: no venv, no /usr/local/bin.
BARE_ENV = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
FAKE = "ebpf-lab-fake-tool"
#: The interpreter behind this run's (a venv's python is a symlink to it).
REAL_PYTHON = os.path.realpath(sys.executable)


def _tool(directory: Path, name: str = FAKE, *, executable: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\necho fake\n")
    path.chmod(0o755 if executable else 0o644)
    return path


@pytest.fixture
def fake_host(tmp_path, monkeypatch):
    """An interpreter in ``venv/bin``, a PATH of ``path1:path2`` and ``sbin`` as the system directory."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv/bin/python"))
    monkeypatch.setenv("PATH", f"{tmp_path / 'path1'}{os.pathsep}{tmp_path / 'path2'}")
    monkeypatch.setattr(tools, "SYSTEM_DIRS", (str(tmp_path / "sbin"),))
    return tmp_path


# -- lookup order ---------------------------------------------------------------------------------


def test_a_tool_beside_the_interpreter_comes_first(fake_host):
    venv = _tool(fake_host / "venv/bin")
    _tool(fake_host / "path1")
    found = tools.locate(FAKE)
    assert found is not None and found.path == str(venv)
    assert found.origin == "next to the interpreter"


def test_then_path_in_order_then_the_system_directories(fake_host):
    _tool(fake_host / "sbin")
    assert tools.locate(FAKE) == tools.Found(str(fake_host / "sbin" / FAKE), "not on PATH")
    _tool(fake_host / "path2")
    assert tools.locate(FAKE) == tools.Found(str(fake_host / "path2" / FAKE), "on PATH")
    _tool(fake_host / "path1")
    assert tools.find(FAKE) == str(fake_host / "path1" / FAKE)


def test_a_file_that_is_not_executable_is_not_a_tool(fake_host):
    _tool(fake_host / "venv/bin", executable=False)
    assert tools.find(FAKE) is None


def test_the_interpreter_is_not_resolved_through_its_symlink(fake_host):
    # .venv/bin/python links to the system Python; .venv/bin is where vng is.
    (fake_host / "venv/bin").mkdir(parents=True)
    (fake_host / "venv/bin/python").symlink_to(REAL_PYTHON)
    venv = _tool(fake_host / "venv/bin")
    assert tools.find(FAKE) == str(venv)


def test_a_missing_tool_names_what_to_install(fake_host):
    with pytest.raises(HostError) as raised:
        tools.require("qemu-system-aarch64", needed_for="booting 6.1-arm64")
    assert str(raised.value) == ("qemu-system-aarch64 not found, needed for booting 6.1-arm64: "
                                 "apt-get install qemu-system-arm (or run 'lab setup')")
    with pytest.raises(HostError, match=r"vng not found, needed for booting a guest: .* -m pip install virtme-ng$"):
        tools.require("vng", needed_for="booting a guest")


def test_virtme_gets_the_interpreter_directory_first_on_path(fake_host):
    env = tools.virtme_environ({"PATH": "/usr/bin:/bin", "HOME": "/h"})
    assert env == {"PATH": f"{fake_host / 'venv/bin'}:/usr/bin:/bin", "HOME": "/h"}
    assert tools.virtme_environ(env) == env  # not twice


def test_every_debian_package_of_a_tool_is_in_host_packages():
    # Not apt and dpkg (advice instead of a package): every Debian system has them.
    wanted = {source.debian for source in tools.TOOLS.values() if source.debian and not source.advice}
    assert wanted <= set(setup_host.DEBIAN_PACKAGES)


# -- running ------------------------------------------------------------------------------------


def test_run_returns_output_and_finds_a_bare_name(fake_host):
    venv = _tool(fake_host / "venv/bin")
    result = process.run([FAKE], what="running the fake tool", timeout=30)
    assert result.args[0] == str(venv) and result.stdout == "fake\n"
    assert process.run(["/bin/cat"], what="cat", timeout=30, input=b"\0bytes", text=False).stdout == b"\0bytes"


def test_run_of_a_missing_tool_is_a_host_error(fake_host):
    with pytest.raises(HostError, match=r"^mmdebstrap not found, needed for building x: apt-get install mmdebstrap"):
        process.run(["mmdebstrap", "--version"], what="building x", timeout=30)
    with pytest.raises(HostError, match=r"^virtme-run not found, needed for building y: .* -m pip install virtme-ng"):
        process.run([str(fake_host / "nowhere/virtme-run")], what="building y", timeout=30)


def test_a_failure_is_one_line_with_the_last_thing_said_on_stderr():
    script = "echo progress; echo 'W: first' >&2; echo 'E: the reason' >&2; exit 3"
    with pytest.raises(FetchError) as raised:
        process.run(["/bin/sh", "-c", script], what="unpacking k", timeout=30, error=FetchError, hint="try again")
    assert str(raised.value) == "unpacking k failed (exit 3): E: the reason: try again"
    assert raised.value.exit_code == FetchError.exit_code
    result = process.run(["/bin/sh", "-c", script], what="unpacking k", timeout=30, check=False)
    assert result.returncode == 3 and result.stdout == "progress\n"
    with pytest.raises(HostError, match=r"^quiet failed \(exit 1\)$"):
        process.run(["/bin/false"], what="quiet", timeout=30)


def test_a_timeout_is_one_line_saying_what_took_too_long(monkeypatch):
    monkeypatch.delenv("EBPF_LAB_TIMEOUT_SCALE", raising=False)
    started = time.monotonic()
    with pytest.raises(ProcessTimeout) as raised:
        process.run(["/bin/sh", "-c", "echo starting >&2; exec sleep 5"], what="downloading k", timeout=0.2,
                    error=FetchError, timeout_hint="check the network")
    assert time.monotonic() - started < 3
    assert str(raised.value) == ("downloading k did not finish within 0.2 s (last output: starting): check the network; "
                                 "if it is only slow, raise EBPF_LAB_TIMEOUT_SCALE (now 1) to wait longer")
    # It exits like a failed fetch would.
    assert raised.value.exit_code == FetchError.exit_code


def test_the_timeout_scale_applies(monkeypatch):
    monkeypatch.setenv("EBPF_LAB_TIMEOUT_SCALE", "4")
    with pytest.raises(ProcessTimeout, match="within 0.4 s"):
        process.run(["sleep", "5"], what="sleeping", timeout=0.1)


def test_a_timeout_does_not_wait_for_a_grandchild_holding_the_output(monkeypatch):
    monkeypatch.setattr(process, "DRAIN_SECONDS", 0.5)
    started = time.monotonic()
    with pytest.raises(ProcessTimeout):
        # The background sleep keeps stdout open after sh is killed (and ends by itself).
        process.run(["/bin/sh", "-c", "sleep 4 & exec sleep 30"], what="x", timeout=0.2)
    assert time.monotonic() - started < 3


@pytest.fixture
def children(monkeypatch):
    """Every Popen that process.run starts in this test."""
    started: list[subprocess.Popen] = []

    class Recorded(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(process.subprocess, "Popen", Recorded)
    return started


def test_an_interrupt_kills_and_reaps_the_child_before_it_is_raised_again(children):
    # A Ctrl-C that lands while run() waits: SIGALRM's handler raises it in this thread.
    def interrupt(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            process.run(["sleep", "30"], what="sleeping", timeout=60)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    [child] = children
    # Reaped, not a zombie: the caller may now delete whatever the child was writing into.
    assert child.returncode == -signal.SIGKILL
    assert not Path(f"/proc/{child.pid}").exists()


def test_a_timed_out_child_is_gone(children):
    with pytest.raises(ProcessTimeout):
        process.run(["sleep", "30"], what="sleeping", timeout=0.2)
    [child] = children
    assert child.returncode == -signal.SIGKILL


# -- the lab command from a bare shell ------------------------------------------------------------


def _bare(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m lab.cli ARGS`` under ``env -i``, with this test run's interpreter (the venv's)."""
    return subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in {**BARE_ENV, **(env or {})}.items()),
                           sys.executable, "-m", "lab.cli", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_doctor_from_a_bare_shell_finds_vng_beside_the_interpreter():
    here = Path(sys.executable).parent
    if not (here / "vng").exists():
        pytest.skip(f"virtme-ng is not installed beside {sys.executable}")
    result = _bare("doctor")
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    assert f"ok      vng: {here / 'vng'} (next to the interpreter)" in lines, result.stdout
    assert any(line.startswith("ok      virtme-run: ") for line in lines), result.stdout


def test_doctor_fails_with_a_fix_line_when_a_tool_is_missing(tmp_path):
    # No QEMU on this PATH (nor in the sbin directories); an empty cache, so no KVM probe either.
    result = _bare("doctor", env={"PATH": str(tmp_path), "EBPF_LAB_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert ("MISSING qemu-system-x86_64: not found (runs x86_64 guests) -> apt-get install qemu-system-x86 "
            "(or run 'lab setup')") in result.stdout.splitlines(), result.stdout
    fix = [line for line in result.stdout.splitlines() if line.startswith("fix: ")]
    # One command for every missing Debian package first (apt-get and dpkg are missing too on this PATH).
    assert fix[0].startswith("fix: apt-get install ") and "qemu-system-x86" in fix[0].split(), result.stdout


@pytest.mark.guest
def test_run_hello_from_a_bare_shell():
    """Issue #22: ``lab run hello`` where the venv's bin directory is not on PATH (boots 6.1)."""
    result = _bare("run", "hello", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Hello World!" in result.stdout
