"""The files ebpf-lab ships (catalog, labs, guest files), found wherever the package is installed."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from lab.errors import HostError


def package_dir(package: str, *parts: str) -> Path:
    """The directory *parts* of *package* (``lab`` or ``lab.kernels``), as a real directory on disk.

    Through importlib.resources, so an editable checkout and a ``pip install``-ed copy
    find the same files. A real directory, not any Traversable: the guest reads the
    console shell and the labs through the 9p share of the host's files.
    """
    where = "/".join((package.replace(".", "/"), *parts))
    try:
        root = resources.files(package).joinpath(*parts)
    except ModuleNotFoundError:
        raise HostError(f"ebpf-lab's {where} is missing: this copy of ebpf-lab is not installed",
                        hint="install it: pip install -e . in a checkout, or pip install <path or git url>") from None
    if not isinstance(root, Path) or not root.is_dir():
        raise HostError(f"ebpf-lab's {where} is not a directory on disk ({root}); guests can only see real files",
                        hint="install ebpf-lab unpacked, with pip, not from a zip")
    return root.resolve()
