"""Where ebpf-lab finds the programs it runs, and what to install when one is missing.

A user runs ``.venv/bin/lab`` from a shell whose PATH does not include ``.venv/bin``
(no activated venv, a bare ``env -i`` shell, a desktop launcher), yet virtme-ng was
installed there with the kit. So a tool is looked for first beside the running
interpreter, then on PATH, then in the sbin directories a non-root PATH often lacks
(depmod, mkfs.ext4).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.errors import HostError

#: Searched after PATH: Debian puts depmod and mkfs.ext4 here, and a user's PATH may lack them.
SYSTEM_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


@dataclass(frozen=True)
class Source:
    """How to get a tool."""

    #: Debian package that ships it ("" when it comes from pip).
    debian: str = ""
    #: Python package that ships it, installed beside the interpreter ("" for Debian tools).
    pip: str = ""
    #: What ebpf-lab uses it for, shown by ``lab doctor``.
    purpose: str = ""
    #: What to say instead of an install command (a host without apt has no apt-get to install it with).
    advice: str = ""

    def install(self) -> str:
        """The one command that installs it."""
        if self.advice:
            return self.advice
        if self.pip:
            # This interpreter's pip: a bare 'pip' may be another Python's, and the venv's
            # bin directory is where find() looks first.
            return f"{sys.executable} -m pip install {self.pip}"
        return f"apt-get install {self.debian} (or run 'lab setup')"


def _apt(package: str, purpose: str) -> Source:
    return Source(debian=package, purpose=purpose)


#: apt and dpkg are the Debian host's own: missing, the host is not Debian.
_DEBIAN = "ebpf-lab needs a Debian or Ubuntu host (apt and dpkg)"


#: Every program ebpf-lab runs on the host, and where it comes from. Debian packages
#: named here are in host-packages.txt (quickstart's list), apt and dpkg aside: every
#: Debian system has them.
TOOLS: dict[str, Source] = {
    "vng": Source(pip="virtme-ng", purpose="boots guests"),
    "virtme-run": Source(pip="virtme-ng", purpose="builds a guest's initramfs"),
    "qemu-system-x86_64": _apt("qemu-system-x86", "runs x86_64 guests"),
    "qemu-system-aarch64": _apt("qemu-system-arm", "runs arm64 guests"),
    "qemu-system-riscv64": _apt("qemu-system-misc", "runs riscv64 guests"),
    "qemu-system-s390x": _apt("qemu-system-misc", "runs s390x guests"),
    "qemu-system-ppc64": _apt("qemu-system-ppc", "runs ppc64el guests"),
    "busybox": _apt("busybox-static", "the guest's early init"),
    "apt-get": Source(debian="apt", purpose="downloads kernels", advice=_DEBIAN),
    "apt-cache": Source(debian="apt", purpose="resolves kernel packages", advice=_DEBIAN),
    "dpkg-deb": Source(debian="dpkg", purpose="unpacks kernels", advice=_DEBIAN),
    "dpkg-query": Source(debian="dpkg", purpose="tells 'lab setup' what is installed", advice=_DEBIAN),
    "depmod": _apt("kmod", "indexes a kernel's modules"),
    "xz": _apt("xz-utils", "decompresses kernel modules"),
    "zstd": _apt("zstd", "decompresses kernel modules and images"),
    "mmdebstrap": _apt("mmdebstrap", "unpacks Debian root filesystems"),
    "mkfs.ext4": _apt("e2fsprogs", "makes root disk images"),
    "clang": _apt("clang", "compiles BPF C (the core lab, CO-RE objects)"),
    "bpftool": _apt("bpftool", "x86_64 guests' bpftool; generates skeletons and vmlinux.h"),
    "bpftrace": _apt("bpftrace", "x86_64 guests' bpftrace (the bpftrace lab)"),
}


@dataclass(frozen=True)
class Found:
    """Where a tool was found."""

    #: Full path of the program.
    path: str
    #: How it was found, in words for ``lab doctor`` (the path shows the directory).
    origin: str


def interpreter_dir() -> Path:
    """The directory of the running interpreter: a venv's ``bin`` when run from a venv.

    Not resolved through symlinks: ``.venv/bin/python`` links to the system Python, but
    it is ``.venv/bin`` that holds vng.
    """
    return Path(sys.executable).parent


def locate(name: str) -> Found | None:
    """Where *name* is: beside the interpreter, on PATH, or in SYSTEM_DIRS; None when nowhere."""
    if os.sep in name:
        return Found(name, "as given") if os.access(name, os.X_OK) and os.path.isfile(name) else None
    here = interpreter_dir()
    # An embedded interpreter may not know its own path (sys.executable is then empty).
    found = shutil.which(name, path=str(here)) if sys.executable else None
    if found:
        return Found(found, "next to the interpreter")
    found = shutil.which(name, path=os.environ.get("PATH", os.defpath))
    if found:
        return Found(found, "on PATH")
    found = shutil.which(name, path=os.pathsep.join(SYSTEM_DIRS))
    if found:
        return Found(found, "not on PATH")
    return None


def find(name: str) -> str | None:
    """The full path of the program *name*, or None (see locate() for the search order)."""
    found = locate(name)
    return found.path if found else None


def install_hint(name: str) -> str:
    """What to do when *name* is missing."""
    source = TOOLS.get(os.path.basename(name))
    return source.install() if source else f"install {os.path.basename(name)}"


def require(name: str, *, needed_for: str) -> str:
    """The full path of *name*, or HostError saying what needs it and how to install it."""
    found = find(name)
    if found is None:
        raise HostError(f"{os.path.basename(name)} not found, needed for {needed_for}", hint=install_hint(name))
    return found


def virtme_environ(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """*base* (default: this process's environment) for virtme-ng and the QEMU it starts:
    with the interpreter's directory first on PATH.

    vng starts ``virtme-run`` through a shell by its bare name, so from a PATH without the
    venv's bin directory it fails with "virtme-run: not found". Only virtme-ng gets this
    PATH: an apt-get whose maintainer scripts run ``python3`` must not get the venv's.
    """
    env = dict(os.environ if base is None else base)
    here = str(interpreter_dir())
    path = env.get("PATH", os.defpath)
    if sys.executable and here not in path.split(os.pathsep):
        env["PATH"] = os.pathsep.join([here, path]) if path else here
    return env
