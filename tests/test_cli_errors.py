"""Bad input and broken caches give one clear line, never a traceback; no VM boots here.

Every case runs the real ``lab`` command (``python3 -m lab.cli``) or pytest in a
subprocess, the way a user meets it. Tests that touch the cache point
``EBPF_LAB_CACHE`` at a temporary directory: other runs share the real one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.boot.config import VMConfig
from lab.errors import HostError
from lab.guest.guest import Guest
from lab.kernels import catalog, fetch
from lab.kernels.apt import parse_sha256s, parse_update_errors
from lab.kernels.arches import host_arch

REPO = Path(__file__).resolve().parent.parent
#: Nothing listens on the discard port: "no network to the mirror" without waiting for a timeout.
DEAD_MIRROR = "http://127.0.0.1:9"


def lab(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def assert_one_line_error(result: subprocess.CompletedProcess[str], *, code: int, says: tuple[str, ...]) -> str:
    """The command failed with *code* and one ``lab: error:`` line containing every word in *says*."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("lab: error:")]
    assert len(errors) == 1, result.stderr
    for word in says:
        assert word in errors[0], errors[0]
    assert result.returncode == code, result.stderr
    return errors[0]


def test_unknown_lab():
    line = assert_one_line_error(lab("run", "no-such-lab"), code=2, says=("unknown lab 'no-such-lab'", "lab list"))
    assert "hello" in line


def test_unknown_kernel():
    assert_one_line_error(lab("run", "hello", "--kernel", "9.99"), code=2,
                          says=("no kernel in the catalog matches '9.99'", "6.1-amd64", "lab kernels"))


def test_unknown_arch():
    assert_one_line_error(lab("run", "hello", "--arch", "sparc"), code=2, says=("unknown arch 'sparc'", "arm64"))


def test_missing_program_file():
    assert_one_line_error(lab("check", "hello", "/nonexistent/prog.py"), code=2,
                          says=("no such file: /nonexistent/prog.py",))


def test_bad_option_value_is_a_usage_error():
    result = lab("run", "hello", "--boot-timeout", "soon")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "lab run: error: argument --boot-timeout: invalid float value: 'soon'"


@pytest.mark.parametrize("content, says", [
    ('series = "6.1\n', "malformed catalog file"),
    ('series = "6.1"\narch = "amd64"\n', "needs 'suite'"),
    ('series = "six"\narch = "amd64"\nsuite = "bookworm"\n', "is not like '6.1'"),
    ('series = "6.1"\narch = "vax"\nsuite = "bookworm"\n', "unknown arch 'vax'"),
])
def test_malformed_catalog_file(tmp_path, content, says):
    (tmp_path / "broken.toml").write_text(content)
    line = assert_one_line_error(lab("kernels", env={"EBPF_LAB_KERNELS": str(tmp_path)}), code=2, says=(says,))
    assert str(tmp_path / "broken.toml") in line


def test_pytest_usage_errors_are_one_line(tmp_path):
    (tmp_path / "broken.toml").write_text('series = "6.1\n')
    for extra, env, says in (
        (["--kernel", "9.99"], {}, "no kernel in the catalog matches '9.99'"),
        ([], {"EBPF_LAB_KERNELS": str(tmp_path)}, "malformed catalog file"),
    ):
        result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--co", "-q",
                                 "tests/test_hello.py", *extra], cwd=REPO, capture_output=True, text=True,
                                timeout=120, env={**os.environ, **env})
        assert result.returncode == 4, result.stderr
        assert "Traceback" not in result.stderr + result.stdout
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
        assert len(errors) == 1 and says in errors[0], result.stderr


def test_missing_qemu(tmp_path):
    # Only the Python and vng directory on PATH: QEMU is nowhere to be found.
    path = os.path.dirname(sys.executable)
    assert not os.path.exists(os.path.join(path, "qemu-system-x86_64"))
    assert_one_line_error(lab("run", "hello", env={"PATH": path}), code=3,
                          says=("qemu-system-x86_64 not found", "apt-get install qemu-system-x86"))


def test_missing_busybox(tmp_path):
    spec = catalog.load_catalog()[catalog.default_kernel_id()]
    files = fetch.cached(spec)
    if files is None:
        pytest.skip(f"{spec.id} is not cached")
    config = VMConfig(image=files.image, arch=host_arch(), kvm=False, busybox=tmp_path / "busybox")
    with pytest.raises(HostError, match="busybox .* not found.*apt-get install busybox-static"):
        Guest(config=config, log_path=tmp_path / "console.log").boot()


def test_missing_kernel_image(tmp_path):
    config = VMConfig(image=tmp_path / "vmlinuz", arch=host_arch(), kvm=False)
    with pytest.raises(HostError, match="does not exist.*lab fetch"):
        Guest(config=config, log_path=tmp_path / "console.log").boot()


def test_no_network_to_the_mirror(tmp_path):
    result = lab("fetch", "7.3", env={"EBPF_LAB_MIRROR": DEAD_MIRROR, "EBPF_LAB_CACHE": str(tmp_path)})
    assert_one_line_error(result, code=4, says=("cannot download the package lists", DEAD_MIRROR, "EBPF_LAB_MIRROR"))
    # Nothing half there.
    assert not (tmp_path / "kernels" / "7.3-amd64").exists()
    assert not list(tmp_path.glob("kernels/.7.3-amd64.tmp-*"))


def test_apt_update_errors_are_parsed():
    out = ("Ign:1 http://127.0.0.1:9 bookworm InRelease\nErr:1 http://127.0.0.1:9 bookworm InRelease\n"
           "  Could not connect to 127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)\n"
           "Reading package lists...\nW: Some index files failed to download.\n")
    assert parse_update_errors(out) == ["Could not connect to 127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)"]
    assert parse_update_errors("Hit:1 http://deb bookworm InRelease\nReading package lists...\n") == []
    show = "Package: a\nVersion: 1\nSHA256: " + "1" * 64 + "\n\nPackage: b\nSHA256: " + "2" * 64 + "\n"
    assert parse_sha256s(show) == {"a": "1" * 64, "b": "2" * 64}


def test_lab_list_names_the_bpf_features_a_lab_needs():
    listing = lab("list").stdout
    assert any(line.startswith("ringbuf") and "BPF map:ringbuf" in line for line in listing.splitlines()), listing
