"""Where ebpf-lab keeps things, and the environment variables that move them."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that moves the cache (kernels, root filesystems, logs).
CACHE_ENV = "EBPF_LAB_CACHE"
#: Environment variable that overrides the Debian mirror taken from apt's sources.
MIRROR_ENV = "EBPF_LAB_MIRROR"
#: Environment variable that multiplies every timeout (slow or loaded hosts).
TIMEOUT_SCALE_ENV = "EBPF_LAB_TIMEOUT_SCALE"


def cache_dir() -> Path:
    """The cache root: ``$EBPF_LAB_CACHE``, else ``$XDG_CACHE_HOME/ebpf-lab``, else ``~/.cache/ebpf-lab``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ebpf-lab"


def kernels_cache() -> Path:
    return cache_dir() / "kernels"


def logs_dir() -> Path:
    return cache_dir() / "logs"


def timeout_scale() -> float:
    """A user-set multiplier for all timeouts (1.0 unless ``$EBPF_LAB_TIMEOUT_SCALE`` says otherwise)."""
    raw = os.environ.get(TIMEOUT_SCALE_ENV, "")
    try:
        value = float(raw) if raw else 1.0
    except ValueError:
        return 1.0
    return value if value > 0 else 1.0
