"""What the host needs, checked (``lab doctor``) and installed (``lab setup``)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .resources import package_dir

#: Debian packages the kit needs on the host. BCC runs in the guest from the host's
#: python3-bpfcc (x86_64); the rest boot, unpack and build guests (foreign-arch guests boot
#: a Debian rootfs made with mmdebstrap and mkfs.ext4).
DEBIAN_PACKAGES = tuple(
    line.strip() for line in (package_dir("lab") / "host-packages.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def checks() -> list[Check]:
    """Host prerequisites, each with what to do when it is missing."""
    found = []

    def tool(name: str, package: str) -> None:
        path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.path.exists(p)), None)
        found.append(Check(name, bool(path), path or "missing", f"apt-get install {package}"))

    tool("qemu-system-x86_64", "qemu-system-x86")
    tool("qemu-system-aarch64", "qemu-system-arm")
    tool("qemu-system-riscv64", "qemu-system-misc")
    tool("mkfs.ext4", "e2fsprogs")
    tool("vng", "virtme-ng (pip install virtme-ng)")
    tool("busybox", "busybox-static")
    tool("depmod", "kmod")
    tool("apt-get", "apt")
    tool("dpkg-deb", "dpkg")
    tool("mmdebstrap", "mmdebstrap")
    bcc = Path("/usr/lib/python3/dist-packages/bcc/__init__.py")
    found.append(Check("python3-bpfcc (guest BCC)", bcc.is_file(), str(bcc) if bcc.is_file() else "missing",
                       "apt-get install python3-bpfcc"))
    found.append(Check("/usr/bin/python3 (guest Python)", Path("/usr/bin/python3").exists(),
                       "/usr/bin/python3", "apt-get install python3"))
    return found


def missing_packages() -> list[str]:
    """Debian packages from DEBIAN_PACKAGES that dpkg does not list as installed."""
    import subprocess

    result = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\n", *DEBIAN_PACKAGES],
                            capture_output=True, text=True, timeout=60, check=False)
    installed = {line.split()[0] for line in result.stdout.splitlines() if line.split()[1:2] == ["ii"]}
    return [p for p in DEBIAN_PACKAGES if p not in installed]


def install_command(packages: list[str]) -> list[str]:
    return ["apt-get", "install", "-y", "--no-install-recommends", *packages]
