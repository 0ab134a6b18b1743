"""Compiling BPF C on the host with clang: one object file, for any guest architecture.

``-target bpfel`` (or ``bpfeb`` for a big-endian guest) and ``-D__TARGET_ARCH_<arch>``
(which libbpf's bpf_tracing.h reads for PT_REGS and syscall wrappers) are what make one
host compile fit a guest of another architecture; libbpf-dev's headers come from the host.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

from lab.errors import CompileError
from lab.host import process

#: libbpf's __TARGET_ARCH_ names, by ``uname -m``.
TARGET_ARCH = {"x86_64": "x86", "aarch64": "arm64", "riscv64": "riscv", "s390x": "s390", "ppc64le": "powerpc"}


def compile_bpf(source: Path, out: Path, *, machine: str = "x86_64", big_endian: bool = False,
                includes: tuple[Path, ...] = (), timeout: float = 120) -> Path:
    """Compile the BPF C file *source* to the object *out* for a guest whose ``uname -m`` is *machine*."""
    if not source.is_file():
        raise CompileError(f"no such file: {source}", hint="give the path of a .bpf.c file")
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = ["clang", "-O2", "-g", "-Wall", "-target", "bpfeb" if big_endian else "bpfel",
            f"-D__TARGET_ARCH_{TARGET_ARCH.get(machine, 'x86')}", *(f"-I{d}" for d in includes),
            *_asm_includes(), "-I", str(source.parent), "-c", str(source), "-o", str(out)]
    result = process.run(argv, what=f"compiling {source.name} with clang", timeout=timeout, check=False)
    if result.returncode != 0:
        diagnostics = (result.stderr or result.stdout or "").strip()
        first = next((line for line in diagnostics.splitlines() if "error:" in line), diagnostics[:200])
        raise CompileError(f"{source.name} does not compile: {first}", output=diagnostics,
                           hint="fix the first error clang reports (its full output is below)")
    return out


def _asm_includes() -> list[str]:
    """The host's <asm/...> headers (linux/types.h includes them; -target bpf has none of its own)."""
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    directory = Path("/usr/include") / multiarch
    return ["-idirafter", str(directory)] if multiarch and directory.is_dir() else []
