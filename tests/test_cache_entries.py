"""A kernel's cache entry is used only when whole: damaged, older or half-fetched entries are not.
No VM boots and nothing is downloaded here (the mirror is a dead address)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lab.host import integrity
from lab.kernels import catalog, fetch

#: Nothing listens on the discard port: "no network to the mirror" without waiting for a timeout.
DEAD_MIRROR = "http://127.0.0.1:9"


@pytest.fixture
def spec_in_tmp_cache(tmp_path, monkeypatch) -> catalog.KernelSpec:
    monkeypatch.setenv("EBPF_LAB_CACHE", str(tmp_path))
    monkeypatch.setenv("EBPF_LAB_MIRROR", DEAD_MIRROR)
    return catalog.load_catalog()["7.3-amd64"]


def _fake_tree(spec: catalog.KernelSpec, *, image_bytes: bytes = b"\0" * 4096, manifest: dict | None = None) -> Path:
    root = fetch.kernel_dir(spec)
    (root / "boot").mkdir(parents=True)
    (root / "boot" / "vmlinuz-7.3.0-1-amd64").write_bytes(image_bytes)
    (root / "lib/modules/7.3.0-1-amd64").mkdir(parents=True)
    data = {"id": spec.id, "release": "7.3.0-1-amd64", "version": "7.3-1", "image": "boot/vmlinuz-7.3.0-1-amd64",
            "image_size": 4096, "modules": "lib/modules/7.3.0-1-amd64", "size": 4096, "format": fetch.FORMAT,
            "image_sha256": hashlib.sha256(image_bytes).hexdigest()}
    (root / "kernel.json").write_text(json.dumps(manifest if manifest is not None else integrity.seal(data)))
    return root


def test_a_whole_cache_entry_is_used(spec_in_tmp_cache):
    _fake_tree(spec_in_tmp_cache)
    files = fetch.cached(spec_in_tmp_cache)
    assert files is not None and files.release == "7.3.0-1-amd64"


@pytest.mark.parametrize("damage", ["image missing", "image truncated", "modules missing", "manifest garbage",
                                    "manifest without image"])
def test_a_damaged_cache_entry_is_never_used(spec_in_tmp_cache, damage):
    root = _fake_tree(spec_in_tmp_cache)
    image = root / "boot" / "vmlinuz-7.3.0-1-amd64"
    if damage == "image missing":
        image.unlink()
    elif damage == "image truncated":
        image.write_bytes(b"\0" * 100)
    elif damage == "modules missing":
        (root / "lib/modules/7.3.0-1-amd64").rmdir()
    elif damage == "manifest garbage":
        (root / "kernel.json").write_bytes(b"\x00{not json")
    else:
        (root / "kernel.json").write_text('{"id": "7.3-amd64"}')
    assert fetch.cached(spec_in_tmp_cache) is None


def test_fetch_clears_a_damaged_entry_and_killed_fetches(spec_in_tmp_cache):
    root = _fake_tree(spec_in_tmp_cache, manifest={"id": "7.3-amd64"})
    # What a fetch killed with SIGKILL leaves: its temporary tree (the lock died with it).
    debris = root.parent / f".{spec_in_tmp_cache.id}.tmp-999999"
    (debris / "boot").mkdir(parents=True)
    with pytest.raises(fetch.FetchError, match="cannot download the package lists"):
        fetch.fetch(spec_in_tmp_cache)
    assert not root.exists() and not debris.exists()


def test_an_entry_of_an_older_layout_is_fetched_again(spec_in_tmp_cache):
    # Older entries kept .ko.xz modules, which virtme-ng's initramfs cannot load.
    root = _fake_tree(spec_in_tmp_cache)
    data = json.loads((root / "kernel.json").read_text())
    del data["format"], data[integrity.SEAL]
    (root / "kernel.json").write_text(json.dumps(data))
    assert fetch.cached(spec_in_tmp_cache) is None


