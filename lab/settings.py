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


#: Environment variable that sets the number of vCPUs per guest.
CPUS_ENV = "EBPF_LAB_CPUS"


def guest_cpus(*, host_cpus: int | None = None, parallel: int | None = None) -> int:
    """vCPUs per guest: ``$EBPF_LAB_CPUS``, else the host's CPUs shared among the guests that run at once.

    Under TCG each vCPU is a busy host thread. Alone, a guest is faster with two (measured on
    6.12: hello lab 28 s with 2, 37 s with 1); but with pytest -n 2 on a 2-core host, two
    guests of two vCPUs fight over the cores: the 4-kernel x86 matrix took 175 s, with one
    vCPU each 120 s. *parallel* defaults to pytest-xdist's worker count.
    """
    raw = os.environ.get(CPUS_ENV, "")
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    host = host_cpus or os.cpu_count() or 1
    if parallel is None:
        workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
        parallel = int(workers) if workers.isdigit() and int(workers) > 0 else 1
    return max(1, min(2, host // parallel))
