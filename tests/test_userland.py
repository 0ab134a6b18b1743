"""``--userland debian``: a native kernel paired with the BCC of its own Debian suite, from a root disk.

The host's userland (bookworm's BCC 0.26) is the default; here 6.12 boots trixie's (BCC 0.31,
Python 3.13) from an ext4 image built by mmdebstrap, the path arm64 guests take.
"""

from __future__ import annotations

import pytest

from lab.guest import kernel as guest_kernel
from lab.guest.timeouts import timeouts_for
from lab.kernels import catalog
from lab.labs.runner import get_lab, run_lab

pytestmark = pytest.mark.guest


@pytest.fixture(scope="module")
def trixie_guest():
    [spec] = catalog.select(catalog.load_catalog(), kernels="6.12-amd64", userland="debian")
    kernel = guest_kernel.with_rootfs(guest_kernel.prepare(spec))
    accel = guest_kernel.choose_accel(kernel)
    guest = guest_kernel.new_guest(kernel, accel=accel, timeouts=timeouts_for(kvm=accel.kvm, foreign=spec.foreign))
    with guest:
        yield guest


def test_guest_runs_its_own_suites_userland(trixie_guest):
    assert trixie_guest.config.root_disk is not None
    release = trixie_guest.run(". /etc/os-release; echo $VERSION_CODENAME", check=True).output.split()
    assert release == ["trixie"]
    python = trixie_guest.run("python3 -c 'import sys, bcc; print(sys.version_info[:2], bcc.__file__)'", check=True)
    assert python.output.startswith("(3, 13) /usr/lib/python3/dist-packages/bcc/")


def test_hello_lab_with_the_suites_bcc(trixie_guest):
    result = run_lab(trixie_guest, get_lab("hello"))
    assert "Hello World!" in result.matched


def test_guest_python_finds_bytecode_in_the_image(trixie_guest):
    # Trixie's stdlib .pyc files come from maintainer scripts, which mmdebstrap's extract
    # does not run: the rootfs build makes them (lab/pybuilder.py). Without them every
    # import compiles, seconds per process under emulation.
    script = ("import importlib.util as u, json, ctypes, bcc; "
              "print([m.__name__ for m in (json, ctypes, bcc) if not __import__('os').path.exists(u.cache_from_source(m.__file__))])")
    found = trixie_guest.run(f"env -u PYTHONPYCACHEPREFIX PYTHONDONTWRITEBYTECODE=1 python3 -c {script!r}", check=True)
    assert found.output.strip().splitlines()[-1] == "[]"
