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


def guest_cpus(*, kvm: bool, host_cpus: int | None = None, parallel: int | None = None) -> int:
    """vCPUs per guest: ``$EBPF_LAB_CPUS``, else one under emulation, else the host's CPUs
    shared among the guests that run at once (at most two).

    Under TCG one vCPU is faster, alone or not: QEMU then translates guest atomics and
    barriers without the care parallel vCPUs need, and the boot brings up no second CPU.
    Measured with BCC's import and compile after boot, alternating runs: 6.12-arm64 took
    25.4 s with one against 28.4 s with two (median of six each), 6.1-amd64 19.2 s against
    21.7 s (three each). BCC compiles in one thread, so a second vCPU had nothing to do
    but cost. *parallel* defaults to pytest-xdist's worker count.
    """
    raw = os.environ.get(CPUS_ENV, "")
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    if not kvm:
        return 1
    host = host_cpus or os.cpu_count() or 1
    if parallel is None:
        workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
        parallel = int(workers) if workers.isdigit() and int(workers) > 0 else 1
    return max(1, min(2, host // parallel))
