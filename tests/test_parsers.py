"""Pure parsers and planners, tested on recorded data: no VM boots here."""

from __future__ import annotations

import os
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from lab.boot import kimage, prepared
from lab.boot.config import VMConfig, vng_command
from lab.errors import CatalogError, UsageError
from lab.guest import console
from lab.kernels import apt, catalog
from lab.kernels.arches import host_arch
from lab.kernels.unpacked import relativize_links

DATA = Path(__file__).parent / "data"


def test_deb822_sources_give_the_debian_mirror_not_security():
    text = (
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert apt.pick_debian_mirror(apt.parse_deb822_sources(text)) == "http://mirror.example/debian"


def test_one_line_sources_with_options():
    text = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian trixie main\n"
    assert apt.parse_one_line_sources(text) == [apt.Source(uri="http://m.example/debian", suites=("trixie",))]


def test_third_party_sources_are_not_a_debian_mirror():
    text = "deb https://repo.example/apt cloud-sdk main\n"
    assert apt.pick_debian_mirror(apt.parse_one_line_sources(text)) is None


def test_mirror_override(monkeypatch):
    monkeypatch.setenv("EBPF_LAB_MIRROR", "http://local.example/debian/")
    assert apt.system_mirror() == "http://local.example/debian"


def test_apt_cache_depends_parser():
    out = "linux-image-amd64\n  Depends: linux-image-6.1.0-50-amd64\n  Recommends: foo\n |Depends: <virtual-x>\n"
    assert apt.parse_depends(out) == ["linux-image-6.1.0-50-amd64", "virtual-x"]


def test_console_clean_and_tail():
    text = "\x1b[?2004hroot@x:/# ls\r\nfile\r\n\r\nlast\r\n"
    assert console.clean(text) == "root@x:/# ls\nfile\n\nlast\n"
    assert console.tail(text, lines=2) == "file\nlast"


def test_no_panic_in_a_normal_boot_log():
    assert console.find_panic((DATA / "boot-6.1-verbose.log").read_text(errors="replace")) is None


def test_panic_is_found_with_its_report():
    text = "ok\n[  5.1] sysrq: Trigger a crash\n[  5.2] Kernel panic - not syncing: sysrq triggered crash\n[  5.3] CPU: 0 PID: 1\n"
    report = console.find_panic(text)
    assert report is not None and report.startswith("[  5.2] Kernel panic") and "CPU: 0" in report


def test_poll_answer_is_split_into_output_size_and_status():
    assert console.parse_poll("a\nb\n\nLx:12:\n", nonce="Lx") == ("a\nb\n", 12, None)
    assert console.parse_poll("\nLx:0:3\n", nonce="Lx") == ("", 0, 3)


def test_last_error_line_prefers_the_compiler():
    output = "/virtual/main.c:3:5: error: use of undeclared identifier 'x'\nTraceback...\nException: Failed to compile BPF module <text>\n"
    assert console.last_error_line(output).startswith("/virtual/main.c:3:5: error:")
    assert console.last_error_line("Traceback\nKeyError: 'x'\n") == "KeyError: 'x'"


def test_compile_error_is_clangs_first_error_in_recorded_bcc_output():
    recorded = (DATA / "students" / "count_compile_error.output").read_text()
    first = "/virtual/main.c:6:5: error: use of undeclared identifier 'exec'; did you mean 'execs'?"
    assert console.compile_error(recorded) == first
    assert console.last_error_line(recorded) == first
    # Notes and warnings are not errors; a fatal error is.
    assert not console.is_compile_error("/virtual/main.c:2:10: note: 'execs' declared here")
    assert not console.is_compile_error("/virtual/main.c:4:1: warning: an error-prone cast")
    assert console.is_compile_error("/virtual/main.c:1:10: fatal error: 'linux/nope.h' file not found")
    # A program that compiled and failed otherwise has no compile error.
    assert console.compile_error("Traceback (most recent call last):\nException: Failed to attach BPF program\n") is None


def test_prepared_boot_keeps_virtmes_init_and_passes_our_parameters():
    argv = ["qemu", "-append", "a=1 quiet init=/venv/virtme-ng-init", "-initrd", "/proc/self/fd/3"]
    out = prepared.rewrite(argv, initramfs=Path("/c/initramfs.img"), cached_dirs=(Path("/k/6.1"),), cached_share=False)
    assert out[-1] == "/c/initramfs.img"
    assert out[2].split() == ["a=1", "quiet", "init=/venv/virtme-ng-init", "ebpflab_cached_dirs=/k/6.1", "ebpflab_cache=0"]


def test_switch_root_is_appended_to_the_initramfs_and_replaces_busyboxs_link(tmp_path):
    from lab.boot import cpio

    initramfs = tmp_path / "initramfs.img"
    # virtme-ng's archive links bin/switch_root to busybox; an odd length checks the padding.
    initramfs.write_bytes(cpio.archive([cpio.Entry("bin", 0o40755), cpio.Entry("bin/switch_root", 0o120777, b"busybox"),
                                        cpio.Entry("init", 0o100755, b"#!/bin/sh\n")]) + b"\0")
    prepared.add_switch_root(initramfs)
    data = initramfs.read_bytes()
    entries = cpio.read(data)
    assert [e.name for e in entries] == ["bin", "bin/switch_root", "init", "bin/switch_root"]
    last = entries[-1]
    assert last.mode == 0o100755 and last.data == prepared.SWITCH_ROOT.read_bytes()
    # The kernel wants each archive at a 4-byte boundary.
    assert data.index(b"070701", len(data) - len(cpio.archive([last]))) % 4 == 0


def test_prepared_root_disk_boot_drops_virtmes_init_script():
    # As virtme-ng 1.x prints it for `vng --root-disk ... --arch arm64 --dry-run` (shortened).
    append = ('virtme_hostname=ebpf-lab virtme_initmount0=/run/ebpf-lab/lab virtme_console=ttyAMA0 console=hvc0 '
              'virtme_shell=/run/ebpf-lab/lab/guest_files/shell.sh root=/dev/vda rootwait quiet loglevel=4 panic=-1 '
              'init=/bin/sh -- -c "mount -t tmpfs run /run; mount -t devtmpfs devtmpfs /dev; '
              'exec /run/virtme/guesttools/virtme-init"')
    argv = ["qemu-system-aarch64", "-kernel", "/k/vmlinuz", "-append", append, "-initrd", "/proc/self/fd/3"]
    out = prepared.rewrite(argv, initramfs=Path("/c/i.img"), cached_share=False, own_init=True)
    assert out[out.index("-initrd") + 1] == "/c/i.img"
    assert out[out.index("-kernel") + 1] == "/k/vmlinuz"
    assert "-device" not in out
    words = out[out.index("-append") + 1].split()
    assert words == ["virtme_hostname=ebpf-lab", "virtme_initmount0=/run/ebpf-lab/lab", "virtme_console=ttyAMA0",
                     "console=hvc0", "virtme_shell=/run/ebpf-lab/lab/guest_files/shell.sh", "root=/dev/vda",
                     "rootwait", "quiet", "loglevel=4", "panic=-1", "init=/bin/sh"]


def test_prepared_boot_adds_the_cached_share_and_the_uncompressed_kernel():
    argv = ["qemu", "-kernel", "/k/vmlinuz", "-append", "init=/venv/virtme-ng-init", "-initrd", "/x"]
    out = prepared.rewrite(argv, initramfs=Path("/c/i.img"), kernel=Path("/c/vmlinux"))
    assert out[out.index("-kernel") + 1] == "/c/vmlinux"
    devices = [out[i + 1] for i, word in enumerate(out) if word == "-device"]
    assert devices == ["virtio-9p-pci,fsdev=ebpflab,mount_tag=ebpflab"]
    assert "readonly=on" in out[out.index("-fsdev") + 1]
    assert "ebpflab_cache=0" not in out[out.index("-append") + 1]


def _elf_with_notes(notes: bytes) -> bytes:
    """A minimal ELF64 header with one PT_NOTE program header pointing at *notes*."""
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x20, 64)  # e_phoff
    struct.pack_into("<HH", header, 0x36, 56, 1)  # e_phentsize, e_phnum
    phdr = bytearray(56)
    struct.pack_into("<I", phdr, 0, kimage.PT_NOTE)
    struct.pack_into("<Q", phdr, 8, 120)  # p_offset
    struct.pack_into("<Q", phdr, 32, len(notes))  # p_filesz
    return bytes(header + phdr) + notes


def _note(name: bytes, kind: int, desc: bytes) -> bytes:
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(name), len(desc), kind) + pad(name) + pad(desc)


def test_pvh_entry_note_is_found_among_other_xen_notes():
    other = _note(b"Xen\0", 6, b"linux\0") + _note(b"GNU\0", 18, b"\0" * 4)
    assert not kimage.has_pvh_entry(_elf_with_notes(other))
    assert kimage.has_pvh_entry(_elf_with_notes(other + _note(b"Xen\0", 18, b"\x50\x08\x00\x01" + b"\0" * 4)))
    assert not kimage.has_pvh_entry(b"MZ not an elf")


def test_uncompressed_kernel_is_found_after_a_false_magic():
    import lzma

    elf = _elf_with_notes(_note(b"Xen\0", 18, b"\0" * 8))
    image = b"setup" + b"\xfd7zXZ\x00 not a stream" + lzma.compress(elf) + b"trailer"
    assert kimage.extract_elf(image) == elf
    assert kimage.extract_elf(b"no kernel in here") is None


def test_absolute_links_become_relative_inside_the_tree(tmp_path):
    (tmp_path / "usr/src/linux-headers-1").mkdir(parents=True)
    moddir = tmp_path / "lib/modules/1"
    moddir.mkdir(parents=True)
    (moddir / "build").symlink_to("/usr/src/linux-headers-1")
    assert relativize_links(tmp_path) == 1
    assert os.readlink(moddir / "build") == "../../../usr/src/linux-headers-1"
    assert (moddir / "build").resolve() == (tmp_path / "usr/src/linux-headers-1").resolve()


def _catalog(tmp_path: Path) -> dict[str, catalog.KernelSpec]:
    for series, arch, suite in (("5.10", "amd64", "bullseye"), ("6.1", "amd64", "bookworm"),
                                ("6.12", "amd64", "trixie"), ("6.1", "arm64", "bookworm")):
        (tmp_path / f"{series}-{arch}.toml").write_text(f'series = "{series}"\narch = "{arch}"\nsuite = "{suite}"\n')
    return catalog.load_catalog(dirs=[tmp_path])


def test_selection_by_id_series_glob_and_all(tmp_path):
    cat = _catalog(tmp_path)
    ids = lambda **kw: [s.id for s in catalog.select(cat, **kw)]  # noqa: E731
    assert ids(kernels=None) == ["6.1-amd64"]
    assert ids(kernels="6.*") == ["6.1-amd64", "6.12-amd64"]
    assert ids(kernels="5.10,6.12") == ["5.10-amd64", "6.12-amd64"]
    assert ids(kernels="all") == ["5.10-amd64", "6.1-amd64", "6.12-amd64"]
    assert ids(kernels="all", arches="all") == ["5.10-amd64", "6.1-amd64", "6.12-amd64", "6.1-arm64"]
    assert ids(kernels="6.1", arches="arm64") == ["6.1-arm64"]
    assert ids(kernels="6.1-arm64") == ["6.1-arm64"]


def test_an_arch_without_the_default_series_runs_its_nearest_kernel_that_lacks_nothing(tmp_path):
    cat = _catalog(tmp_path)
    (tmp_path / "6.12-riscv64.toml").write_text('series = "6.12"\narch = "riscv64"\nsuite = "trixie"\n'
                                                '[lacks]\nentry-kprobes = "refused"\n')
    (tmp_path / "7.2-riscv64.toml").write_text('series = "7.2"\narch = "riscv64"\nsuite = "sid"\n')
    cat = catalog.load_catalog(dirs=[tmp_path])
    ids = lambda **kw: [s.id for s in catalog.select(cat, **kw)]  # noqa: E731
    assert ids(kernels=None, arches="riscv64") == ["7.2-riscv64"]
    assert ids(kernels=None, arches="all") == ["6.1-amd64", "6.1-arm64", "7.2-riscv64"]
    assert cat["6.12-riscv64"].lacking == {"entry-kprobes": "refused"}


def test_what_a_guest_lacks_skips_the_labs_that_need_it(tmp_path):
    from lab.labs.runner import get_lab, unsupported

    (tmp_path / "6.12-ppc64el.toml").write_text('series = "6.12"\narch = "ppc64el"\nsuite = "trixie"\n'
                                                '[lacks]\nentry-kprobes = "refused"\n')
    spec = catalog.load_catalog(dirs=[tmp_path])["6.12-ppc64el"]
    assert unsupported(get_lab("hello"), spec) == "lab hello needs what 6.12-ppc64el lacks: entry-kprobes: refused"
    # Foreign: its own Debian userland, trixie, which has no bpftrace on ppc64el (sid has).
    assert "bpftrace: Debian trixie has no bpftrace for ppc64el" in unsupported(get_lab("bpftrace"), spec)
    assert "bpftrace" not in (unsupported(get_lab("bpftrace"), replace(spec, userland="sid")) or "")
    assert unsupported(get_lab("opens"), spec) is None


def test_unknown_kernel_and_arch_are_usage_errors(tmp_path):
    cat = _catalog(tmp_path)
    with pytest.raises(UsageError, match="no kernel in the catalog matches '4.19'"):
        catalog.select(cat, kernels="4.19")
    with pytest.raises(UsageError, match="unknown arch 'sparc'"):
        catalog.select(cat, kernels="all", arches="sparc")


def test_malformed_catalog_file_names_the_file(tmp_path):
    (tmp_path / "bad.toml").write_text('series = "6.1"\narch = \n')
    with pytest.raises(CatalogError, match="bad.toml"):
        catalog.load_catalog(dirs=[tmp_path])


def test_local_kernel_entry(tmp_path):
    (tmp_path / "mine.toml").write_text('id = "mine"\nseries = "6.15"\narch = "x86_64"\nsource = "local"\nimage = "bzImage"\n')
    spec = catalog.load_catalog(dirs=[tmp_path])["mine"]
    assert spec.source == "local" and spec.image == (tmp_path / "bzImage").resolve()


def test_guest_cpus_share_the_host_among_parallel_guests(monkeypatch):
    from lab.settings import guest_cpus

    monkeypatch.delenv("EBPF_LAB_CPUS", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert guest_cpus(kvm=True, host_cpus=2, parallel=1) == 2
    assert guest_cpus(kvm=True, host_cpus=2, parallel=2) == 1
    assert guest_cpus(kvm=True, host_cpus=16, parallel=4) == 2
    assert guest_cpus(kvm=True, host_cpus=1, parallel=1) == 1
    # Emulated guests run fastest on one vCPU, however many cores the host has.
    assert guest_cpus(kvm=False, host_cpus=16, parallel=1) == 1
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    assert guest_cpus(kvm=True, host_cpus=2) == 1
    monkeypatch.setenv("EBPF_LAB_CPUS", "3")
    assert guest_cpus(kvm=False, host_cpus=2) == 3


def test_a_panicking_guest_exits_at_once():
    config = VMConfig(image=Path("/boot/vmlinuz"), arch=host_arch(), kvm=False)
    argv = vng_command(config)
    assert argv[argv.index("panic=-1") - 1] == "--append"
    assert "--qemu-opts=-no-reboot" in argv


def test_mmdebstrap_failure_names_apts_reason_not_its_own_summary():
    import subprocess

    from lab.kernels.apt import failure_line

    # As mmdebstrap printed it for sid/s390x from a mirror older than sid's Release's week.
    text = (Path(__file__).parent / "data" / "apt" / "mmdebstrap-expired.txt").read_text()
    line = failure_line(subprocess.CompletedProcess([], 25, stdout="", stderr=text))
    assert line.startswith("E: Release file for http://deb.debian.org/debian/dists/sid/InRelease is expired")
    only_summary = subprocess.CompletedProcess([], 25, stdout="", stderr="E: mmdebstrap failed to run\n")
    assert failure_line(only_summary) == "E: mmdebstrap failed to run"
