"""Which accelerator guests get: KVM when it really boots a kernel, else TCG.

``/dev/kvm`` existing proves little: under nested virtualization it opens, yet QEMU
aborts on an MSR (``-cpu host``) or hangs after decompression. So we boot a real
kernel under KVM with no root filesystem and wait for its first console lines; the
verdict is cached per host (kernel release, QEMU binary) in the cache directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lab.host import tools
from lab.settings import cache_dir

log = logging.getLogger(__name__)

#: Environment variable forcing the accelerator: ``kvm`` or ``tcg``.
ACCEL_ENV = "EBPF_LAB_ACCEL"
#: How long a KVM probe boot may take before KVM is judged unusable (KVM boots in ~1 s).
PROBE_TIMEOUT = 15.0


@dataclass(frozen=True)
class Accel:
    """The accelerator verdict."""

    #: ``kvm`` or ``tcg``.
    name: str
    #: Why: shown in ``lab doctor`` and the pytest header.
    reason: str

    @property
    def kvm(self) -> bool:
        return self.name == "kvm"


def _cache_key(qemu: str) -> str:
    qemu_path = tools.find(qemu) or qemu
    try:
        stat = os.stat(qemu_path)
        qemu_id = f"{qemu_path}:{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        qemu_id = qemu_path
    return hashlib.sha256(f"{platform.release()}|{qemu_id}".encode()).hexdigest()[:16]


def detect(*, probe_image: Path | None, qemu: str = "qemu-system-x86_64", refresh: bool = False) -> Accel:
    """Decide KVM or TCG for native guests; *probe_image* is a bootable kernel image."""
    forced = os.environ.get(ACCEL_ENV, "").lower()
    if forced in ("kvm", "tcg"):
        return Accel(forced, f"forced by {ACCEL_ENV}")
    if not os.path.exists("/dev/kvm"):
        return Accel("tcg", "no /dev/kvm")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return Accel("tcg", "/dev/kvm is not accessible (add yourself to the kvm group)")
    cache_file = cache_dir() / "accel.json"
    key = _cache_key(qemu)
    if not refresh and cache_file.is_file():
        try:
            data = json.loads(cache_file.read_text())
            if data.get("key") == key:
                return Accel(data["name"], data["reason"] + " (cached)")
        except (OSError, ValueError, KeyError):
            pass
    if probe_image is None:
        return Accel("tcg", "KVM not probed yet (no kernel cached to probe with)")
    verdict = probe_kvm(image=probe_image, qemu=qemu)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"key": key, "name": verdict.name, "reason": verdict.reason}))
    os.replace(tmp, cache_file)
    return verdict


def probe_kvm(*, image: Path, qemu: str) -> Accel:
    """Boot *image* under KVM with no root filesystem; KVM works if the kernel gets to mounting root."""
    # Popen, not lab.host.process: the verdict comes from reading the console as it streams.
    binary = tools.find(qemu)
    if binary is None:
        return Accel("tcg", f"{qemu} not found")
    argv = [
        binary, "-accel", "kvm", "-cpu", "host", "-m", "256M", "-smp", "1",
        "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
        "-kernel", str(image), "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent",
    ]
    log.info("+ %s", shlex.join(argv))
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return Accel("tcg", f"{qemu} not found")
    output = b""
    try:
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
        while time.monotonic() - started < PROBE_TIMEOUT:
            if not sel.select(timeout=0.5):
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)  # type: ignore[union-attr]
            if not chunk:
                break
            output += chunk
            # Reaching the root mount (or its failure) means the kernel ran well past early boot.
            if b"VFS:" in output or b"Kernel panic" in output or b"Run /init" in output:
                return Accel("kvm", f"KVM probe booted a kernel in {time.monotonic() - started:.1f}s")
    finally:
        proc.kill()
        proc.wait(timeout=10)
    last = output.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
    return Accel("tcg", f"KVM cannot boot a kernel here (probe: {last[0][:100]}); using TCG emulation")
