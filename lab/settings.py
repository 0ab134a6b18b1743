"""Where ebpf-lab keeps things, and the environment variables that move them."""

from __future__ import annotations

import os
from dataclasses import dataclass
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


#: Environment variable that sets each guest's memory (QEMU syntax: 1G, 768M) instead of sizing it.
MEMORY_ENV = "EBPF_LAB_MEMORY"
#: A guest's memory when the host has room: a lab uses about 200 MiB of it (BCC, clang,
#: the trace), the rest leaves room for a student's program and the guest's tmpfs writes.
GUEST_MEMORY_MIB = 2048
#: The least a guest gets: the hello lab passes in 384 MiB (measured on 6.1, host userland).
MIN_GUEST_MEMORY_MIB = 512
#: Host memory each guest costs beyond its own: QEMU itself, mostly its translation cache
#: under TCG (a 6.1 guest's QEMU had 650-700 MiB resident after a lab, with 384 MiB of
#: guest memory or 2 GiB alike), and the pytest worker that drives it.
GUEST_OVERHEAD_MIB = 768
#: Host memory left alone for everything else.
HOST_RESERVE_MIB = 1024


@dataclass(frozen=True)
class GuestMemory:
    """How much memory each guest gets, and why when it is less than the default."""

    #: MiB per guest.
    mib: int
    #: One line for the user when guests are smaller than GUEST_MEMORY_MIB (else "").
    note: str = ""


def guest_memory(*, available_mib: int, guests: int) -> GuestMemory:
    """Memory per guest when *guests* run at once on a host with *available_mib* free. Pure.

    Each guest gets the default while all of them, with QEMU's own overhead and a reserve
    for the host, fit in what is available; else an equal share in steps of 256 MiB, never
    below MIN_GUEST_MEMORY_MIB; and when even that does not fit, the note says how many
    guests would (QEMU allocates guest memory as it is touched, so an oversized guest only
    fails when it uses it: the OOM killer of the host would end someone's work).
    """
    guests = max(1, guests)
    share = (available_mib - HOST_RESERVE_MIB) // guests - GUEST_OVERHEAD_MIB
    if share >= GUEST_MEMORY_MIB:
        return GuestMemory(GUEST_MEMORY_MIB)
    mib = max(MIN_GUEST_MEMORY_MIB, share // 256 * 256)
    free = f"{available_mib / 1024:.1f} GiB of memory available for {guests} guest{'s' if guests > 1 else ''} at once"
    if share >= MIN_GUEST_MEMORY_MIB:
        return GuestMemory(mib, f"guests get {mib} MiB each instead of {GUEST_MEMORY_MIB}: {free}")
    fits = max(1, (available_mib - HOST_RESERVE_MIB) // (MIN_GUEST_MEMORY_MIB + GUEST_OVERHEAD_MIB))
    return GuestMemory(mib, f"guests get {mib} MiB each, and {guests} of them may not fit: {free}; "
                            f"run at most {fits} at once (pytest -n {fits})")


def available_memory_mib(meminfo: Path = Path("/proc/meminfo")) -> int:
    """The host's MemAvailable in MiB (what can be used without swapping)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return GUEST_MEMORY_MIB + GUEST_OVERHEAD_MIB + HOST_RESERVE_MIB  # Unknown: as if there were room for one.


def parallel_guests() -> int:
    """Guests this run starts at once: one per pytest-xdist worker, else one."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    return int(workers) if workers.isdigit() and int(workers) > 0 else 1


def sized_guest_memory() -> tuple[str, str]:
    """(QEMU memory size, note) for the next guest: ``$EBPF_LAB_MEMORY``, else sized from the host now."""
    explicit = os.environ.get(MEMORY_ENV, "")
    if explicit:
        return explicit, ""
    sized = guest_memory(available_mib=available_memory_mib(), guests=parallel_guests())
    # "2G" as before sizing existed: prepared boots are cached by their command line.
    return (f"{sized.mib // 1024}G" if sized.mib % 1024 == 0 else f"{sized.mib}M"), sized.note
