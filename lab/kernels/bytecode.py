"""Bytecode for a guest's Python, made on the host when its root filesystem is built.

Without .pyc files (an ``extract`` tree lacks most: maintainer scripts make them) every
``import bcc`` compiles the stdlib anew, some seconds under emulation. Bytecode does not
depend on the CPU, only on the Python version.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from lab.errors import FetchError, ProcessTimeout
from lab.host import process
from lab.kernels import pybuilder

log = logging.getLogger(__name__)


def guest_pythons(tree: Path) -> list[str]:
    """The guest's Python versions (``3.11``), from its ``usr/lib/python3.X`` directories."""
    found = []
    for path in sorted((tree / "usr/lib").glob("python3.*")):
        version = path.name.removeprefix("python")
        if path.is_dir() and version.replace(".", "").isdigit():
            found.append(version)
    return found


def precompile_command(*, python: list[str], tree: Path, version: str, jobs: int = 0) -> list[str]:
    """compileall for the guest's stdlib and dist-packages, with paths as the guest sees them.

    *python* is the command that starts a Python of *version*. ``unchecked-hash`` pycs
    are used without comparing the source's mtime, which an image copy might not keep;
    the image is read-only, so they never go stale.
    """
    dirs = [str(tree / "usr/lib" / f"python{version}"), str(tree / "usr/lib/python3/dist-packages")]
    return [*python, "-m", "compileall", "-q", "-j", str(jobs), "--invalidation-mode", "unchecked-hash",
            "-s", str(tree), "-p", "/", "-x", r"/(test|tests|idlelib|lib2to3/tests)/", *dirs]


def precompile(tree: Path, *, suite: str, unpack: Callable[[Path, str], None],
               progress: Callable[[str], None] = lambda _: None) -> bool:
    """Byte-compile the guest's Python on the host: with a host Python of the same version
    if there is one, else with that version from *suite* for the host (lab/kernels/pybuilder.py),
    which ``unpack(target, version)`` puts into a directory (rootfs.py's mmdebstrap).

    Without .pyc files (an ``extract`` tree lacks most: maintainer scripts make them)
    every ``import bcc`` compiles the stdlib anew, some seconds under emulation.
    Bytecode does not depend on the CPU, only on the Python version.
    """
    done = False
    for version in guest_pythons(tree):
        python = shutil.which(f"python{version}", path="/usr/bin:/usr/local/bin")
        if python is not None:
            argv, env, jobs = [python], None, 0
        else:
            progress(f"unpacking Python {version} from {suite} to byte-compile the guest's modules")
            try:
                builder = pybuilder.ensure(suite=suite, version=version,
                                           unpack=lambda target, version=version: unpack(target, version))
            except (FetchError, ProcessTimeout) as error:
                # A guest without bytecode works, only slower: not a reason to fail the build.
                progress(f"not byte-compiling the guest's Python {version}: {error}")
                continue
            # One process: compileall's workers would start the interpreter without its loader.
            argv, env, jobs = builder.command([]), builder.env(), 1
        # Errors in odd modules (Python 2 leftovers) must not fail the build: -q and no check.
        command = precompile_command(python=argv, tree=tree, version=version, jobs=jobs)
        try:
            result = process.run(command, what=f"byte-compiling the guest's Python {version}", timeout=1800,
                                 check=False, env=env, error=FetchError)
        except ProcessTimeout as error:
            progress(f"not byte-compiling the guest's Python {version}: {error}")
            continue
        if "Traceback" in result.stderr:
            log.warning("byte-compiling the guest's Python %s: %s", version, result.stderr.strip().splitlines()[-1])
        done = True
    return done
