"""Fetch a catalog kernel: resolve its packages, download, unpack, fix up, publish.

A kernel is cached when ``<cache>/kernels/<id>/kernel.json`` exists: everything is
unpacked into a temporary directory beside it and renamed into place last, so a
killed fetch leaves nothing half there. Two processes fetching the same kernel
serialize on a lock; the second finds the first one's result.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.errors import FetchError
from lab.host import integrity, process, tools
from lab.host.integrity import sha256_of
from lab.host.locks import file_lock
from lab.kernels.apt import PrivateApt, system_mirror
from lab.kernels.catalog import KernelSpec
from lab.kernels.unpacked import (
    UNPACK_HINT,
    decompress_modules,
    find_image,
    find_modules,
    relativize_links,
)
from lab.settings import cache_dir, kernels_cache

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

#: Package name prefixes that make up a kernel (image side), newest packaging included:
#: from 7.x the image package is a wrapper over linux-binary/-modules/-base.
IMAGE_PARTS = ("linux-image-", "linux-binary-", "linux-modules-", "linux-base-")
#: Package name prefixes that make up its headers.
HEADER_PARTS = ("linux-headers-", "linux-kbuild-")


@dataclass(frozen=True)
class KernelFiles:
    """A kernel ready to boot: what the manifest in the cache says."""

    #: Catalog id.
    id: str
    #: ``uname -r`` of the kernel.
    release: str
    #: Debian package version (or ``local``).
    version: str
    #: Image to hand to virtme-ng.
    image: Path
    #: ``lib/modules/<release>`` directory (with a working ``build`` link).
    modules: Path | None
    #: The unpacked tree (headers live under it).
    root: Path
    #: Bytes on disk.
    size: int

    @classmethod
    def load(cls, manifest: Path) -> KernelFiles:
        data = json.loads(manifest.read_text())
        root = manifest.parent
        return cls(
            id=data["id"], release=data["release"], version=data["version"],
            image=root / data["image"], modules=(root / data["modules"]) if data.get("modules") else None,
            root=root, size=data.get("size", 0),
        )


def kernel_dir(spec: KernelSpec) -> Path:
    return kernels_cache() / spec.id


#: Bumped when the unpacked layout changes, so older cache entries are fetched again.
#: 3: the manifest records the image's sha256 and is sealed (lab/host/integrity.py).
FORMAT = 3
#: Format 2 trees lack only the checksums: they are hashed once and recorded instead of
#: fetched again (each kernel is ~100 MiB of downloads and half a minute; a CI cache holds
#: six). A file damaged before that first check passes unseen, as it did before.
UNSEALED_FORMAT = 2
MANIFEST = "kernel.json"


def cached(spec: KernelSpec) -> KernelFiles | None:
    """The cached kernel for *spec*, or None when it has not been fetched (or is damaged).

    Cheap enough for every listing and test report: the manifest's seal and the image's
    size are checked, not its checksum (fetch() does that, before every boot).
    """
    return inspect(spec, thorough=False)[0]


def inspect(spec: KernelSpec, *, thorough: bool) -> tuple[KernelFiles | None, str | None]:
    """(the cached kernel, None); or (None, what is damaged); or (None, None) when nothing is cached.

    With *thorough* the image is hashed too: 8-30 MiB, some 20-60 ms before a boot.
    """
    if spec.source == "local":
        return local_kernel(spec), None
    manifest = kernel_dir(spec) / MANIFEST
    if not manifest.is_file():
        return None, None
    try:
        data = json.loads(manifest.read_text())
        files = KernelFiles.load(manifest)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, f"cached manifest {MANIFEST} is unreadable"
    if not isinstance(data.get("format"), int) or data["format"] < UNSEALED_FORMAT:
        return None, "cached entry is of an older layout"
    legacy = data["format"] == UNSEALED_FORMAT and not integrity.is_sealed(data)
    if not legacy and not integrity.seal_holds(data):
        return None, f"cached manifest {MANIFEST} does not match its checksum (edited after the fetch?)"
    if files.modules is not None and not files.modules.is_dir():
        return None, "cached modules directory is missing"
    damage, _ = integrity.check_file(files.image, what="image", size=data.get("image_size"),
                                     sha256=data.get("image_sha256") if thorough else None)
    if damage:
        return None, damage
    if legacy and thorough:
        _seal_legacy(manifest, data, image=files.image)
    return files, None


def _seal_legacy(manifest: Path, data: dict, *, image: Path) -> None:
    """Record a format 2 entry's image checksum, once (see UNSEALED_FORMAT)."""
    try:
        integrity.write_manifest(manifest, {**data, "format": FORMAT, "image_sha256": integrity.sha256_of(image)})
    except OSError as error:  # A read-only cache is checked by size alone, as before.
        log.info("cannot record the checksum of %s: %s", image, error)


def local_kernel(spec: KernelSpec) -> KernelFiles:
    """A user's own kernel: a small tree of links in the cache, laid out as virtme-ng expects.

    ``boot/vmlinuz-<release>`` links to the image and ``lib/modules/<release>`` links to
    each entry of the user's modules directory, with ``build`` pointing at *headers* when
    given, so BCC in the guest finds them. Nothing is copied.
    """
    assert spec.image is not None
    if not spec.image.is_file():
        raise FetchError(f"kernel {spec.id}: image {spec.image} does not exist", hint=f"fix 'image' in {spec.path}")
    if spec.modules is not None and not spec.modules.is_dir():
        raise FetchError(f"kernel {spec.id}: modules directory {spec.modules} does not exist",
                         hint=f"fix 'modules' in {spec.path}")
    if spec.headers is not None and not (spec.headers / "Makefile").is_file():
        raise FetchError(f"kernel {spec.id}: {spec.headers} is not a kernel headers or build directory",
                         hint=f"fix 'headers' in {spec.path} (it needs a Makefile and include/)")
    release = spec.modules.name if spec.modules is not None else _image_release(spec.image)
    root = kernel_dir(spec)
    image_link = root / "boot" / f"vmlinuz-{release}"
    if image_link.is_symlink() and Path(os.readlink(image_link)) == spec.image:
        moddir = root / "lib" / "modules" / release
        return KernelFiles(id=spec.id, release=release, version="local", image=image_link, modules=moddir,
                           root=root, size=spec.image.stat().st_size)
    tmp = root.with_name(f".{spec.id}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "boot").mkdir(parents=True)
    (tmp / "boot" / f"vmlinuz-{release}").symlink_to(spec.image)
    moddir = tmp / "lib" / "modules" / release
    moddir.mkdir(parents=True)
    if spec.modules is not None:
        for entry in spec.modules.iterdir():
            # Debian-style trees split headers in two: build (arch) and source (common); keep both.
            if not (entry.name == "build" and spec.headers is not None):
                (moddir / entry.name).symlink_to(entry.resolve() if entry.is_symlink() else entry)
    build = spec.headers or (spec.modules / "build" if spec.modules is not None else None)
    if build is not None and build.exists() and not (moddir / "build").is_symlink():
        (moddir / "build").symlink_to(build.resolve())
    shutil.rmtree(root, ignore_errors=True)
    os.rename(tmp, root)
    return KernelFiles(id=spec.id, release=release, version="local", image=root / "boot" / f"vmlinuz-{release}",
                       modules=root / "lib" / "modules" / release, root=root, size=spec.image.stat().st_size)


def _image_release(image: Path) -> str:
    """``uname -r`` of a kernel image, read from its version string."""
    data = image.read_bytes()
    match = re.search(rb"Linux version (\S+)", data) or re.search(rb"(\d+\.\d+\.\d+\S*) \(\S+@\S+\)", data)
    if not match:
        # Bootable all the same, only without modules; 'modules' in the entry names the release.
        log.warning("cannot tell the release of %s; add 'modules' to its catalog entry", image)
        return "unknown"
    return match.group(1).decode(errors="replace")


def private_apt(*, suites: tuple[str, ...], arch: str) -> PrivateApt:
    root = cache_dir() / "apt" / f"{'+'.join(suites)}_{arch}"
    return PrivateApt(root=root, mirror=system_mirror(), suites=suites, arch=arch)


def resolve_packages(apt: PrivateApt, *, flavor: str) -> list[str]:
    """The concrete packages (image, modules, headers, kbuild) behind the flavor's meta packages."""
    wanted: list[str] = []

    def walk(name: str, prefixes: tuple[str, ...], depth: int) -> None:
        for dep in apt.depends(name):
            # Meta packages (linux-base-amd64, linux-modules-amd64) carry no version; real ones do.
            if dep.startswith(prefixes) and re.search(r"\d+\.\d+", dep) and dep not in wanted:
                # trixie's headers depend on the image (signed and unsigned): not ours to follow.
                if prefixes is HEADER_PARTS and dep.startswith("linux-image-"):
                    continue
                wanted.append(dep)
                if depth < 3:
                    walk(dep, prefixes, depth + 1)

    walk(f"linux-image-{flavor}", IMAGE_PARTS, 0)
    walk(f"linux-headers-{flavor}", HEADER_PARTS, 0)
    images = [p for p in wanted if p.startswith("linux-image-")]
    if not images:
        raise FetchError(f"no linux-image-{flavor} in {'/'.join(apt.suites)} for {apt.arch}",
                         hint="check the catalog entry's suite and flavor")
    # Prefer the unsigned image when it exists: same kernel, no Secure Boot wrapper.
    image = images[0]
    if not image.endswith("-unsigned") and apt.has(image + "-unsigned"):
        wanted[wanted.index(image)] = image + "-unsigned"
    return [f"{p}={apt.version(p)}" for p in wanted]


def fetch(spec: KernelSpec, *, progress: Progress = lambda _: None) -> KernelFiles:
    """Make *spec* available in the cache and return it; downloads only what is missing."""
    if spec.source == "local":
        return local_kernel(spec)
    found, damage = inspect(spec, thorough=True)
    if found:
        return found
    if damage:
        progress(f"kernel {spec.id}: {damage}; fetching it again")
    dest = kernel_dir(spec)
    with file_lock(dest.parent / f".{spec.id}.lock", what=f"fetching kernel {spec.id}", on_wait=progress):
        found, _ = inspect(spec, thorough=True)  # Another process may have finished it while we waited.
        if found:
            return found
        if dest.exists():
            # A directory without a valid manifest is debris of an interrupted older run.
            shutil.rmtree(dest)
        # So are the temporary trees of fetches that were killed (SIGKILL, power loss): we hold
        # the lock, so no live process is still filling one.
        for debris in dest.parent.glob(f".{spec.id}.tmp-*"):
            shutil.rmtree(debris, ignore_errors=True)
        return _fetch_locked(spec, dest=dest, progress=progress)


def _fetch_locked(spec: KernelSpec, *, dest: Path, progress: Progress) -> KernelFiles:
    started = time.monotonic()
    # Before any download: a missing tool found only after minutes of downloading wastes them.
    for tool in ("apt-get", "apt-cache", "dpkg-deb", "depmod"):
        tools.require(tool, needed_for=f"fetching kernel {spec.id}")
    apt = private_apt(suites=spec.suites, arch=spec.arch.debian)
    progress(f"{spec.id}: updating package lists for {' '.join(spec.suites)}/{spec.arch.debian}")
    apt.update()
    packages = resolve_packages(apt, flavor=spec.flavor)
    progress(f"{spec.id}: downloading {', '.join(p.split('=')[0] for p in packages)}")
    debs_dir = cache_dir() / "debs" / spec.id
    # apt-get download verifies what it downloads against the signed index, but keeps a file
    # already present when only its size matches: check those against the index's SHA256 first.
    _clear_stale_debs(debs_dir, packages, apt=apt)
    try:
        debs = apt.download([p for p in packages], dest=debs_dir)
    except FetchError:
        # Keep only complete, verified packages: apt leaves .FAILED files after a hash
        # mismatch, and partial ones under their final names after a cut connection.
        _clear_stale_debs(debs_dir, packages, apt=apt)
        raise
    tmp = dest.parent / f".{spec.id}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        for deb in debs:
            progress(f"{spec.id}: unpacking {deb.name}")
            # process.run reaps dpkg-deb on Ctrl-C before the tree is removed below.
            process.run(["dpkg-deb", "-x", str(deb), str(tmp)], what=f"unpacking {deb.name} for {spec.id}",
                        timeout=600, error=FetchError, hint=UNPACK_HINT)
        files = _finish_tree(spec, tmp=tmp, packages=packages)
        os.rename(tmp, dest)
    except BaseException:
        _remove_tree(tmp)
        raise
    progress(f"{spec.id}: ready ({files.release}, {files.size / 2**20:.0f} MiB) in {time.monotonic() - started:.0f}s")
    shutil.rmtree(debs_dir, ignore_errors=True)
    return KernelFiles.load(dest / "kernel.json")


def _remove_tree(path: Path) -> None:
    """Remove *path* even when Ctrl-C lands during the removal (it is raised again once the tree is gone).

    A terminal's Ctrl-C reaches dpkg-deb too: its failure brings us here while Python's own
    KeyboardInterrupt is still pending, and would otherwise cut the removal short.
    """
    interrupted: BaseException | None = None
    # Up to 10 s: dpkg-deb's tar may still be writing into the tree for a moment after the
    # interrupt, and a directory that gains a file during rmtree stays behind.
    deadline = time.monotonic() + 10.0
    while True:
        try:
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists() or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        except KeyboardInterrupt as exc:
            interrupted = exc
    if interrupted is not None:
        raise interrupted


def _clear_stale_debs(debs_dir: Path, packages: list[str], *, apt: PrivateApt) -> None:
    """Delete .deb files left by an earlier run that are not exactly what the index lists."""
    if not debs_dir.is_dir():
        return
    for partial in debs_dir.glob("*.deb.*"):
        partial.unlink()
    debs = list(debs_dir.glob("*.deb"))
    if not debs:
        return
    digests = apt.sha256s(packages)
    for deb in debs:
        expected = digests.get(deb.name.split("_")[0])
        if expected is None or sha256_of(deb) != expected:
            log.info("removing stale or corrupt %s", deb)
            deb.unlink()




def _finish_tree(spec: KernelSpec, *, tmp: Path, packages: list[str]) -> KernelFiles:
    image, release = find_image(tmp)
    modules = find_modules(tmp, release)
    relativize_links(tmp)
    if modules is not None:
        decompress_modules(modules)
    if modules is not None:
        build = modules / "build"
        if not build.exists():
            headers = tmp / "usr/src" / f"linux-headers-{release}"
            if headers.is_dir():
                if build.is_symlink():
                    build.unlink()
                build.symlink_to(os.path.relpath(headers, modules))
        if not (modules / "build").exists():
            raise FetchError(f"kernel {spec.id}: headers for {release} are missing after unpacking",
                             hint="report this: the catalog entry resolves to the wrong headers package")
        process.run(["depmod", "-a", "-b", str(modules.parent.parent.parent), release], what=f"depmod for {spec.id}",
                    timeout=600, error=FetchError, hint=UNPACK_HINT)
    size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file() and not f.is_symlink())
    version = next((p.split("=", 1)[1] for p in packages if p.startswith(("linux-image-", "linux-binary-"))), "")
    manifest = {
        "id": spec.id, "release": release, "version": version,
        "image": str(image.relative_to(tmp)), "image_size": image.stat().st_size, "image_sha256": sha256_of(image),
        "modules": str(modules.relative_to(tmp)) if modules else None,
        "format": FORMAT, "packages": packages, "size": size, "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    # Written last: its presence is what marks the tree complete.
    integrity.write_manifest(tmp / MANIFEST, manifest)
    return KernelFiles.load(tmp / MANIFEST)
