"""Root filesystems for foreign-architecture guests: the pure parts, and the plumbing around them.

No VM boots here; tests/test_hello.py with ``--arch arm64`` boots one.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lab.boot.config import (
    GUEST_LAB_DIR,
    LAB_PACKAGE,
    SHELL,
    VMConfig,
    guest_path,
    guest_shell,
    root_disk_shares,
    vng_command,
)
from lab.guest import kernel as guest_kernel
from lab.host import tools
from lab.kernels import bytecode, catalog, diskimage, rootfs
from lab.kernels.arches import ARCHES, get_arch, host_arch
from lab.kernels.fetch import KernelFiles

ARM64 = get_arch("arm64")


def test_mmdebstrap_unpacks_without_running_foreign_code():
    argv = rootfs.mmdebstrap_command(suite="bookworm", arch=ARM64, target=Path("/x/tree"), mirror="http://mirror.invalid/debian")
    assert argv[:3] == ["mmdebstrap", "--variant=extract", "--architectures=arm64"]
    included = next(a for a in argv if a.startswith("--include=")).split("=", 1)[1].split(",")
    for needed in ("python3", "python3-bpfcc", "busybox-static", "util-linux", "kmod", "bash"):
        assert needed in included
    assert argv[-3:] == ["bookworm", "/x/tree", "http://mirror.invalid/debian"]


def test_fix_up_writes_accounts_pam_and_poweroff(tmp_path):
    tree = tmp_path / "tree"
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "usr/sbin").mkdir(parents=True)
    (tree / "bin").mkdir()
    (tree / "bin/busybox").write_bytes(b"")
    (tree / "bin/dash").write_bytes(b"")
    rootfs.fix_up(tree)
    passwd = (tree / "etc/passwd").read_text().splitlines()
    assert passwd[0].split(":") == ["root", "x", "0", "0", "root", "/root", "/bin/bash"]
    # virtme-ng's init mounts devpts with gid=tty.
    assert any(line.startswith("tty:x:5:") for line in (tree / "etc/group").read_text().splitlines())
    assert (tree / "etc/shadow").read_text().startswith("root:*:")
    assert oct((tree / "etc/shadow").stat().st_mode & 0o777) == "0o640"
    assert "pam_rootok.so" in (tree / "etc/pam.d/common-auth").read_text()
    assert os.readlink(tree / "usr/sbin/poweroff") == "/bin/busybox"
    assert os.readlink(tree / "bin/sh") == "dash"
    assert (tree / "tmp").stat().st_mode & 0o1777 == 0o1777


def test_fix_up_keeps_pam_files_a_package_shipped(tmp_path):
    tree = tmp_path / "tree"
    (tree / "etc/pam.d").mkdir(parents=True)
    (tree / "usr/sbin").mkdir(parents=True)
    (tree / "etc/pam.d/common-auth").write_text("shipped\n")
    rootfs.fix_up(tree)
    assert (tree / "etc/pam.d/common-auth").read_text() == "shipped\n"


def test_kernel_parts_split_between_image_and_host():
    assert rootfs.kernel_part(Path("boot/vmlinuz-6.1.0-50-arm64")) == "boot"
    assert rootfs.kernel_part(Path("lib/modules/6.1.0-50-arm64/kernel/fs/ext4.ko")) == "modules"
    assert rootfs.kernel_part(Path("usr/lib/modules/6.12.117+deb13-arm64/modules.dep")) == "modules"
    assert rootfs.kernel_part(Path("usr/src/linux-headers-6.1.0-50-arm64/Makefile")) == "image"
    assert rootfs.kernel_part(Path("usr/lib/linux-kbuild-6.1/scripts")) == "image"


def _fake_kernel(root: Path, *, modules: str) -> KernelFiles:
    release = "6.1.0-50-arm64"
    (root / "boot").mkdir(parents=True)
    (root / "boot" / f"vmlinuz-{release}").write_bytes(b"Image")
    moddir = root / modules / release
    (moddir / "kernel").mkdir(parents=True)
    (moddir / "kernel/a.ko").write_bytes(b"ko")
    headers = root / "usr/src" / f"linux-headers-{release}"
    headers.mkdir(parents=True)
    (headers / "Makefile").write_text("all:\n")
    (moddir / "build").symlink_to(os.path.relpath(headers, moddir))
    (root / "kernel.json").write_text("{}")
    return KernelFiles(id="6.1-arm64", release=release, version="6.1.176-1", image=root / "boot" / f"vmlinuz-{release}",
                       modules=moddir, root=root, size=0)


@pytest.mark.parametrize("modules", ["lib/modules", "usr/lib/modules"])
def test_copy_kernel_puts_headers_in_image_and_modules_beside_the_image(tmp_path, modules):
    kernel = _fake_kernel(tmp_path / "kernel-cache", modules=modules)
    tree, kernel_dir = tmp_path / "tree", tmp_path / "kernel"
    # A merged-/usr rootfs: the kernel tree's lib/ must land in usr/lib through the link.
    (tree / "usr/lib").mkdir(parents=True)
    (tree / "lib").symlink_to("usr/lib")
    rootfs.copy_kernel(kernel, tree=tree, kernel_dir=kernel_dir)
    assert (tree / "usr/src/linux-headers-6.1.0-50-arm64/Makefile").is_file()
    assert (tree / "lib/modules").is_dir() and not (tree / "lib/modules/6.1.0-50-arm64").exists()
    assert (kernel_dir / "boot/vmlinuz-6.1.0-50-arm64").is_file()
    moddir = kernel_dir / "lib/modules/6.1.0-50-arm64"
    assert (moddir / "kernel/a.ko").read_bytes() == b"ko"
    # Absolute: it is followed in the guest, whose root is the image.
    assert os.readlink(moddir / "build") == "/usr/src/linux-headers-6.1.0-50-arm64"
    assert not (tree / "kernel.json").exists() and not (kernel_dir / "kernel.json").exists()


def test_image_size_fits_data_and_inodes():
    data, inodes = 700 * 2**20, 30_000
    size = diskimage.image_size(data_bytes=data, inodes=inodes)
    assert size % 2**20 == 0
    assert size >= data * 1.1 + inodes * 256
    assert size < data * 1.3 + 100 * 2**20
    assert diskimage.inode_count(inodes) > inodes


def test_tree_usage_counts_blocks_and_inodes(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d/small").write_bytes(b"x")
    (tmp_path / "big").write_bytes(b"x" * 5000)
    (tmp_path / "link").symlink_to("big")
    data, inodes = diskimage.tree_usage(tmp_path)
    assert data == 4096 + 8192 + 4096  # a symlink's target text costs a block at most
    assert inodes == 2 + 3  # two directories, three names


def test_mkfs_makes_an_image_of_a_tree(tmp_path):
    """The real mkfs.ext4 -d, on a small tree: sized by image_size, checked by e2fsck."""
    if not tools.find("mkfs.ext4") or not tools.find("e2fsck"):
        pytest.skip("e2fsprogs not installed")
    tree = tmp_path / "tree"
    (tree / "usr/src").mkdir(parents=True)
    for i in range(200):
        (tree / "usr/src" / f"h{i}.h").write_text("#define X 1\n" * 100)
    (tree / "bin").mkdir()
    (tree / "bin/sh").symlink_to("dash")
    image = tmp_path / "root.ext4"
    diskimage.make_image(tree, image)
    check = subprocess.run([tools.find("e2fsck"), "-fn", str(image)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    listing = subprocess.run(["debugfs", "-R", "ls -l /usr/src", str(image)], capture_output=True, text=True, timeout=60)
    assert "h199.h" in listing.stdout


def test_precompile_targets_guest_paths(tmp_path):
    (tmp_path / "usr/lib/python3.11").mkdir(parents=True)
    (tmp_path / "usr/lib/python3.13").mkdir(parents=True)
    (tmp_path / "usr/lib/python3").mkdir(parents=True)
    assert bytecode.guest_pythons(tmp_path) == ["3.11", "3.13"]
    argv = bytecode.precompile_command(python=["/usr/bin/python3.11"], tree=tmp_path, version="3.11")
    # Compiled-in paths are the guest's (/usr/lib/...), not the host's cache directory.
    assert argv[argv.index("-s") + 1] == str(tmp_path) and argv[argv.index("-p") + 1] == "/"
    assert "unchecked-hash" in argv


def test_guest_paths_through_shares():
    shares = root_disk_shares()
    assert guest_shell(shares) == f"{GUEST_LAB_DIR}/boot/guest_files/shell.sh"
    hello = LAB_PACKAGE / "labs" / "hello"
    assert guest_path(hello, root_disk=True, rodirs=shares) == f"{GUEST_LAB_DIR}/labs/hello"
    assert guest_path(Path("/somewhere/else/prog.py"), root_disk=True, rodirs=shares) is None
    # On the host's root every path is what it is.
    assert guest_path(SHELL, root_disk=False, rodirs=()) == str(SHELL)


def test_root_disk_guest_command_line(tmp_path):
    shares = root_disk_shares()
    config = VMConfig(image=tmp_path / "vmlinuz", arch=ARM64, kvm=False, root_disk=tmp_path / "root.ext4",
                      busybox=tmp_path / "busybox", rodirs=shares, shell=guest_shell(shares))
    argv = vng_command(config)
    assert argv[argv.index("--arch") + 1] == "arm64"
    assert argv[argv.index("--root-disk") + 1] == str(tmp_path / "root.ext4")
    assert argv[argv.index("--root-fstype") + 1] == "ext4"
    assert argv[argv.index("--busybox") + 1] == str(tmp_path / "busybox")
    assert argv[argv.index("--shell") + 1] == f"{GUEST_LAB_DIR}/boot/guest_files/shell.sh"
    assert f"--rodir={GUEST_LAB_DIR}={LAB_PACKAGE}" in argv
    # An emulated arm64 CPU without pointer authentication: QEMU takes the last -cpu given.
    assert argv[argv.index("--qemu-opts=-cpu") + 1] == "--qemu-opts=max,pauth=off,sve=off"
    # Our init is in the initramfs, which virtme-ng would leave out for a kernel needing no modules.
    assert "--force-initramfs" in argv


def test_the_new_arches_boot_as_virtme_ng_names_them(tmp_path):
    def argv(arch: str) -> list[str]:
        return vng_command(VMConfig(image=tmp_path / "vmlinuz", arch=get_arch(arch), kvm=False,
                                    root_disk=tmp_path / "root.ext4", busybox=tmp_path / "busybox"))

    assert argv("ppc64le")[argv("ppc64le").index("--arch") + 1] == "ppc64el"
    assert get_arch("ppc64el").virtme == "ppc64" and get_arch("s390x").big_endian
    # ppc64el boots through VOF, not SLOF: QEMU merges this -machine into virtme-ng's -M pseries.
    assert "--qemu-opts=pseries,x-vof=on" in argv("ppc64el")
    assert [a for a in argv("s390x") if a.startswith("--qemu-opts=") and "-machine" in a] == []


def test_foreign_means_not_the_hosts_arch():
    host = host_arch()
    assert not host.foreign and not get_arch(host.name).foreign
    assert [a.debian for a in ARCHES.values() if not a.foreign] == [host.debian]
    specs = catalog.load_catalog().values()
    assert {s.foreign for s in specs} == {True, False}
    assert all(s.foreign == (s.arch.debian != host.debian) == s.arch.foreign for s in specs)


def test_host_guests_keep_the_host_userland():
    native = next(s for s in catalog.load_catalog().values() if not s.foreign)
    assert not guest_kernel.needs_rootfs(native)
    assert VMConfig(image=Path("/k"), arch=native.arch, kvm=True).root_disk is None


def test_userland_choice_pairs_native_kernels_with_a_debian_suite():
    entries = catalog.load_catalog()
    native = catalog.select(entries, kernels="6.12")
    assert catalog.with_userland(native, None) == native
    assert catalog.with_userland(native, "host") == native
    own = catalog.with_userland(native, "debian")[0]
    assert (own.userland, own.own_userland) == ("trixie", True)
    assert guest_kernel.needs_rootfs(own) and not own.foreign
    assert catalog.with_userland(native, "debian:bookworm")[0].userland == "bookworm"
    # A foreign kernel boots a Debian userland whatever --userland says; a suite named for it is used.
    arm = catalog.select(entries, kernels="6.1-arm64")
    assert guest_kernel.needs_rootfs(catalog.with_userland(arm, "host")[0])
    assert catalog.with_userland(arm, "debian:trixie")[0].userland == "trixie"


@pytest.mark.parametrize("bad", ["ubuntu", "debian:Trixie", "debian:a b", "deb"])
def test_unknown_userland_is_a_usage_error(bad):
    from lab.errors import UsageError

    with pytest.raises(UsageError, match="unknown userland"):
        catalog.parse_userland(bad)


def test_arm64_catalog_entries_pair_kernels_with_their_suite():
    entries = catalog.load_catalog()
    assert entries["6.1-arm64"].userland == "bookworm"
    assert entries["6.12-arm64"].userland == "trixie"
    chosen = {s.id for s in catalog.select(entries, kernels="all", arches="arm64")}
    assert {"6.1-arm64", "6.12-arm64"} <= chosen
    assert all(s.arch.debian == "arm64" for s in catalog.select(entries, kernels="all", arches="arm64"))
    assert "6.1-arm64" in {s.id for s in catalog.select(entries, kernels="6.1", arches="x86_64,arm64")}
    assert [s.id for s in catalog.select(entries, kernels="6.1-arm64")] == ["6.1-arm64"]


def test_cached_rootfs_is_found_only_when_complete(tmp_path, monkeypatch):
    monkeypatch.setenv("EBPF_LAB_CACHE", str(tmp_path))
    name = rootfs.rootfs_name(suite="bookworm", arch=ARM64, kernel_id="6.1-arm64")
    assert name == "bookworm-arm64-6.1-arm64"
    directory = rootfs.rootfs_dir(name)
    (directory / "tree/bin").mkdir(parents=True)
    (directory / "kernel/boot").mkdir(parents=True)
    (directory / "root.ext4").write_bytes(b"")
    (directory / "tree/bin/busybox").write_bytes(b"")
    (directory / "kernel/boot/vmlinuz").write_bytes(b"")
    assert rootfs.cached(name) is None  # no manifest: an interrupted build
    manifest = {"name": name, "layout": rootfs.LAYOUT, "disk": "root.ext4", "busybox": "tree/bin/busybox",
                "kernel_image": "kernel/boot/vmlinuz", "size": 0}
    import json

    (directory / "rootfs.json").write_text(json.dumps(manifest))
    found = rootfs.cached(name)
    assert found is not None and found.disk == directory / "root.ext4"
    (directory / "rootfs.json").write_text(json.dumps({**manifest, "layout": rootfs.LAYOUT - 1}))
    assert rootfs.cached(name) is None  # an older layout is rebuilt


pytest_plugins = ["pytester"]


def test_arch_marker_skips_other_architectures(pytester):
    """``@pytest.mark.arch("x86_64")`` skips a test on arm64 targets, without fetching or booting anything."""
    pytester.makepyfile(test_marked="""
        import pytest

        @pytest.mark.arch("x86_64")
        def test_native_only(kernel):
            raise AssertionError("must not run on arm64")
    """)
    result = pytester.runpytest("--kernel", "6.1-arm64,6.12-arm64", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*kernel 6.1-arm64 is aarch64; test needs x86_64*"])


def test_python_builder_runs_through_its_own_loader(tmp_path):
    from lab.kernels import pybuilder

    tree = tmp_path / "tree"
    (tree / "usr/lib64").mkdir(parents=True)
    (tree / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (tree / "usr/lib64/ld-linux-x86-64.so.2").write_text("")
    builder = pybuilder.Builder(root=tree, version="3.13")
    argv = builder.command(["-m", "compileall"])
    # The tree's loader and libc, never the host's: the binary alone would get the host's older glibc.
    assert argv[:2] == [str(tree / "usr/lib64/ld-linux-x86-64.so.2"), "--library-path"]
    assert argv[2].split(":")[0] == str(tree / "usr/lib/x86_64-linux-gnu")
    assert argv[3:] == [str(tree / "usr/bin/python3.13"), "-m", "compileall"]
    assert builder.env()["PYTHONHOME"] == str(tree / "usr")
    assert pybuilder.packages("3.13") == ("python3.13-minimal", "libpython3.13-stdlib")


def test_rootfs_build_goes_on_without_a_python_to_byte_compile_with(tmp_path, monkeypatch):
    from lab.errors import FetchError
    from lab.kernels import pybuilder

    (tmp_path / "usr/lib/python3.99").mkdir(parents=True)

    def unreachable(**_):
        raise FetchError("mmdebstrap for Python 3.99 from nowhere failed (exit 1): E: no such package")

    monkeypatch.setattr(pybuilder, "ensure", unreachable)
    said = []
    assert bytecode.precompile(tmp_path, suite="nowhere", unpack=lambda target, version: None,
                               progress=said.append) is False
    assert said[-1].startswith("not byte-compiling the guest's Python 3.99: mmdebstrap")
