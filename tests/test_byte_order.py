"""Byte order is part of a BPF program's interface: the test that shows it, on every arch.

s390x is big-endian. tests/data/bpf/byteorder.bpf.c stores a record (a 32-bit magic, a 16-bit
port) in an array map; its reader decodes the raw bytes either in the guest's own byte order
(right everywhere) or as little-endian (the bug x86_64, arm64, riscv64 and ppc64el never show).
The object is compiled once on the host, ``-target bpfeb`` for a big-endian guest, and libbpf
refuses one built for the other byte order.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.guest.bpf_objects import LOADER
from lab.host.clang import compile_bpf

SOURCES = Path(__file__).parent / "data" / "bpf"
MAGIC, PORT = 0x0A0B0C0D, 4242
#: What the little-endian reader makes of the big-endian record.
SWAPPED = f"magic=0x{int.from_bytes(MAGIC.to_bytes(4, 'big'), 'little'):08x} port={int.from_bytes(PORT.to_bytes(2, 'big'), 'little')}"
RIGHT = f"magic=0x{MAGIC:08x} port={PORT}"


def _object(kernel, tmp_path: Path, *, big_endian: bool) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path / ("bpfeb" if big_endian else "bpfel") / "byteorder.bpf.o"
    return compile_bpf(SOURCES / "byteorder.bpf.c", out, machine=kernel.spec.arch.name, big_endian=big_endian)


@pytest.fixture
def recorded(vm, kernel, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The guest after byteorder.bpf.c (built for its byte order) recorded an execve; the reader's path."""
    obj = vm.copy_in(_object(kernel, tmp_path, big_endian=kernel.spec.arch.big_endian))
    loader = vm.spawn(f"python3 {vm.copy_in(LOADER)} run {obj}")
    try:
        loader.expect(r"bpfload: attached 1 program", timeout=vm.timeouts.attach)
        vm.run("/bin/true", check=True)
        yield vm.copy_in(SOURCES / "byteorder_read.py")
    finally:
        loader.close()


def test_reading_the_record_in_the_guests_byte_order_works_on_every_arch(vm, recorded) -> None:  # type: ignore[no-untyped-def]
    result = vm.run(f"python3 {recorded} native", check=True)
    assert RIGHT in result.output, result.output


def test_reading_it_as_little_endian_is_wrong_on_big_endian_s390x(vm, kernel, recorded) -> None:  # type: ignore[no-untyped-def]
    result = vm.run(f"python3 {recorded} little", check=True)
    if kernel.spec.arch.big_endian:
        # The bug: every byte of the magic and of the port swapped.
        assert SWAPPED in result.output and RIGHT not in result.output, result.output
    else:
        assert RIGHT in result.output, result.output


def test_an_object_built_for_the_other_byte_order_is_refused(vm, kernel, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wrong = _object(kernel, tmp_path, big_endian=not kernel.spec.arch.big_endian)
    result = vm.load(wrong)
    assert not result.loaded
    assert "endian" in result.summary().lower(), result.summary()
