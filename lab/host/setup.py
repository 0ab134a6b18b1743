"""What the host needs, checked (``lab doctor``) and installed (``lab setup``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.host import process, tools
from lab.host.resources import package_dir

#: Debian packages the kit needs on the host. BCC runs in the guest from the host's
#: python3-bpfcc (x86_64); the rest boot, unpack and build guests (foreign-arch guests boot
#: a Debian rootfs made with mmdebstrap and mkfs.ext4).
DEBIAN_PACKAGES = tuple(
    line.strip() for line in (package_dir("lab.host") / "host-packages.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    #: The command that fixes it.
    fix: str = ""
    #: The Debian package that fixes it ("" when the fix is not apt's), so one command can install them all.
    package: str = ""


def checks() -> list[Check]:
    """Host prerequisites: each tool of lab.host.tools.TOOLS with where it was found, and the guest's BCC."""
    found = []
    for name, source in tools.TOOLS.items():
        where = tools.locate(name)
        detail = f"{where.path} ({where.origin})" if where else f"not found ({source.purpose})"
        found.append(Check(name, where is not None, detail, source.install(), "" if source.advice else source.debian))
    bcc = Path("/usr/lib/python3/dist-packages/bcc/__init__.py")
    found.append(Check("python3-bpfcc (guest BCC)", bcc.is_file(), str(bcc) if bcc.is_file() else "missing",
                       "apt-get install python3-bpfcc", "python3-bpfcc"))
    found.append(Check("/usr/bin/python3 (guest Python)", Path("/usr/bin/python3").exists(),
                       "/usr/bin/python3", "apt-get install python3", "python3"))
    return found


def fix_lines(failed: list[Check]) -> list[str]:
    """One command per way of installing what *failed* lacks: apt-get for all the Debian packages, then the rest."""
    packages = sorted({check.package for check in failed if check.package})
    lines = [f"apt-get install {' '.join(packages)} (as root; or run 'lab setup')"] if packages else []
    return lines + sorted({check.fix for check in failed if not check.package and check.fix})


def missing_packages() -> list[str]:
    """Debian packages from DEBIAN_PACKAGES that dpkg does not list as installed."""
    # dpkg-query exits 1 when it has never heard of a package in the list: no error, that is the answer.
    result = process.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\n", *DEBIAN_PACKAGES],
                         what="listing the installed Debian packages", timeout=60, check=False)
    installed = {line.split()[0] for line in result.stdout.splitlines() if line.split()[1:2] == ["ii"]}
    return [p for p in DEBIAN_PACKAGES if p not in installed]


def install_command(packages: list[str]) -> list[str]:
    return ["apt-get", "install", "-y", "--no-install-recommends", *packages]
