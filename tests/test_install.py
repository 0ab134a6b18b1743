"""ebpf-lab as a user gets it: ``pip install`` of this checkout (not editable) into a new venv,
used from a directory of its own with a bare environment.

The editable install the suite runs from reads everything from the checkout, so it cannot
tell whether the wheel ships the catalog, the labs and the guest files. One venv serves the
whole module: it takes a minute or two to make.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from procs import BOOT_WAIT, REPO, TAG_ENV, tagged

from lab.kernels import catalog
from lab.settings import cache_dir

pytestmark = pytest.mark.guest

#: How long creating the venv and installing ebpf-lab with its dependencies may take.
INSTALL_WAIT = 600.0


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throw-away venv with this checkout installed as a wheel, the way a user installs it."""
    path = tmp_path_factory.mktemp("installed") / "venv"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=INSTALL_WAIT)
    done = subprocess.run([str(path / "bin" / "python"), "-m", "pip", "install", "-q", str(REPO)],
                          capture_output=True, text=True, timeout=INSTALL_WAIT)
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"venv with ebpf-lab installed in {time.monotonic() - started:.0f}s")
    where = subprocess.run([str(path / "bin" / "python"), "-c", "import lab; print(lab.__file__)"], cwd=path,
                           capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert Path(where).is_relative_to(path), f"lab is imported from {where}, not from the installed copy"
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's project directory: outside the checkout, no ini file of ours."""
    return tmp_path_factory.mktemp("project")


def bare_env(venv: Path, **extra: str) -> dict[str, str]:
    """What ``env -i HOME=... PATH=<system dirs> LANG=C.UTF-8`` leaves, with the real kernel cache."""
    env = {"HOME": os.environ["HOME"], "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           "EBPF_LAB_CACHE": str(cache_dir()), **extra}
    return env


def run(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run *argv*; whatever happens, the processes (and guests) it started end with it."""
    tag = uuid.uuid4().hex
    try:
        return subprocess.run(argv, cwd=cwd, env={**env, TAG_ENV: tag}, capture_output=True, text=True,
                              timeout=timeout)
    finally:
        for line in tagged(tag):
            os.kill(int(line.split()[0]), signal.SIGKILL)


def test_lab_kernels_lists_the_whole_catalog(venv: Path, project: Path):
    done = run([str(venv / "bin" / "lab"), "kernels"], cwd=project, env=bare_env(venv), timeout=120)
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0].rstrip("*") for line in done.stdout.splitlines()[1:] if line and not line.startswith("(")}
    assert listed == set(catalog.load_catalog(dirs=[REPO / "kernels"]))


def test_lab_list_lists_the_labs(venv: Path, project: Path):
    done = run([str(venv / "bin" / "lab"), "list"], cwd=project, env=bare_env(venv), timeout=120)
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}
    assert listed == {path.parent.name for path in (REPO / "lab" / "labs").glob("*/lab.toml")}


def test_a_users_test_boots_the_default_kernel(venv: Path, project: Path):
    (project / "test_uname.py").write_text(
        "def test_uname(vm, kernel):\n"
        "    assert vm.run('uname -r').output.strip() == kernel.release\n")
    done = run([str(venv / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider", "-v", "test_uname.py"],
               cwd=project, env=bare_env(venv), timeout=BOOT_WAIT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"test_uname.py::test_uname[{catalog.default_kernel_id()}] PASSED" in done.stdout


def test_an_unrelated_test_sees_nothing_of_ebpf_lab(venv: Path, project: Path):
    (project / "test_unrelated.py").write_text("def test_unrelated():\n    assert 1 + 1 == 2\n")
    done = run([str(venv / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider", "test_unrelated.py"],
               cwd=project, env=bare_env(venv), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    # The header's list of installed plugins names it; nothing else may.
    lines = [line for line in (done.stdout + done.stderr).splitlines() if not line.startswith("plugins:")]
    assert not [line for line in lines if "ebpf" in line.lower()], done.stdout
