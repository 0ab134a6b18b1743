"""A Python of the guest's version that runs on the host, to byte-compile a root filesystem.

A root filesystem unpacked with ``mmdebstrap --variant=extract`` has no ``.pyc`` files
for most of Python's standard library: Debian makes them in maintainer scripts, which
``extract`` does not run. Without them every Python process in the guest compiles every
module it imports, under emulation: measured on 6.12-arm64 (trixie, Python 3.13), a
first ``import bcc`` took 5.6 s, and 1.2 s once the bytecode existed.

Bytecode depends on the Python version, not on the CPU, so the host can make it. When
the host has no Python of the guest's version (a bookworm host has 3.11, trixie ships
3.13), the guest's suite ships one for the host's architecture: it is unpacked here, C
library included, and run through its own dynamic loader, so the host's older glibc is
never mixed in. Nothing of it goes into the image, which gets only the ``.pyc`` files.

Cached per (suite, host architecture, version) in ``<cache>/pybuilder/``, built in a
temporary directory and renamed into place under a lock, like kernels and rootfs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.errors import FetchError
from lab.host.locks import fill_once
from lab.kernels.arches import Arch, host_arch
from lab.settings import cache_dir

log = logging.getLogger(__name__)

#: Bumped when what _build() produces changes.
LAYOUT = 1


@dataclass(frozen=True)
class Builder:
    """An unpacked Python for the host, from a Debian suite."""

    #: The unpacked tree.
    root: Path
    #: ``3.13``.
    version: str

    @property
    def python(self) -> Path:
        return self.root / "usr/bin" / f"python{self.version}"

    def loader(self) -> Path:
        """The tree's own dynamic loader (``ld-linux-x86-64.so.2``), which loads its own libc."""
        for pattern in ("usr/lib64/ld-linux*.so.*", "usr/lib/ld-linux*.so.*", "usr/lib/*/ld-linux*.so.*"):
            for path in sorted(self.root.glob(pattern)):
                if path.is_file():
                    return path
        raise FetchError(f"no dynamic loader in {self.root}", hint=f"remove {self.root} and run again")

    def library_path(self) -> str:
        dirs = [p for p in sorted((self.root / "usr/lib").glob("*-linux-gnu*")) if p.is_dir()]
        return ":".join(str(p) for p in [*dirs, self.root / "usr/lib"])

    def command(self, args: list[str]) -> list[str]:
        """Run the builder's Python with *args*.

        Through the loader, not the binary: the kernel would start the binary with the
        host's loader, which cannot load a newer libc.
        """
        return [str(self.loader()), "--library-path", self.library_path(), str(self.python), *args]

    def env(self) -> dict[str, str]:
        # PYTHONHOME: started through the loader, Python cannot find its prefix from its own path.
        return {"PYTHONHOME": str(self.root / "usr"), "PATH": "/usr/bin:/bin", "LC_ALL": "C"}


def packages(version: str) -> tuple[str, ...]:
    """What compileall needs: the interpreter and its standard library."""
    return (f"python{version}-minimal", f"libpython{version}-stdlib")


def builder_dir(*, suite: str, arch: Arch, version: str) -> Path:
    return cache_dir() / "pybuilder" / f"{suite}-{arch.debian}-{version}"


def cached(*, suite: str, arch: Arch, version: str) -> Builder | None:
    root = builder_dir(suite=suite, arch=arch, version=version)
    try:
        data = json.loads((root / "builder.json").read_text())
    except (OSError, ValueError):
        return None
    found = Builder(root=root / "tree", version=version)
    if data.get("layout") != LAYOUT or not found.python.is_file():
        return None
    return found


def ensure(*, suite: str, version: str, unpack: Callable[[Path], None]) -> Builder:
    """Python *version* from *suite* for the host, unpacked on first use by *unpack*(tree)
    (lab/kernels/rootfs.py's mmdebstrap of packages(version))."""
    arch = host_arch()
    dest = builder_dir(suite=suite, arch=arch, version=version)

    def fill(out: Path) -> None:
        unpack(out / "tree")
        (out / "builder.json").write_text(json.dumps({"layout": LAYOUT, "suite": suite, "version": version}) + "\n")

    if cached(suite=suite, arch=arch, version=version) is None:
        fill_once(dest, what=f"unpacking Python {version} from {suite}",
                  ready=lambda: cached(suite=suite, arch=arch, version=version) is not None, fill=fill)
    return Builder(root=dest / "tree", version=version)
