"""BPF features asked of the kernel (``bpftool feature probe`` in the guest), not guessed from its version.

Pure tests read probes recorded from the catalog's kernels (``tests/data/features/<kernel>.json``,
copied from the cache that ``lab features`` fills); the guest tests probe for real.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.errors import UsageError
from lab.guest import features
from lab.labs.runner import get_lab, missing_features

RECORDED = Path(__file__).parent / "data" / "features"
REPO = Path(__file__).resolve().parent.parent


def recorded(kernel: str) -> features.Features:
    data = json.loads((RECORDED / f"{kernel}.json").read_text())
    return features.flatten(data, kernel=kernel)


def test_probe_is_flattened_into_names_people_write():
    have = recorded("6.1-amd64")
    assert {"prog:kprobe", "prog:tracepoint", "map:ringbuf", "map:hash", "helper:bpf_loop",
            "helper:kprobe:bpf_loop", "misc:bounded_loops"} <= have.present
    # Every helper available to some program type is also a plain helper:NAME.
    assert all(f"helper:{name.split(':')[2]}" in have.present for name in have.present if name.count(":") == 2)


def test_what_differs_across_the_catalog_is_real_history():
    old, new = recorded("5.10-amd64"), recorded("6.1-amd64")
    # bpf_loop (5.17), bpf_get_current_task_btf (5.11) and user ring buffers (6.1) are newer than 5.10.
    for name in ("helper:bpf_loop", "helper:bpf_get_current_task_btf", "map:user_ringbuf"):
        assert not old.has(name) and new.has(name), name
    assert old.missing(["map:ringbuf", "helper:bpf_loop"]) == ["helper:bpf_loop"]
    rows = features.matrix_rows({"5.10-amd64": old, "6.1-amd64": new})
    assert "helper:bpf_loop" in rows and "map:hash" not in rows
    assert set(rows) < set(features.matrix_rows({"5.10-amd64": old, "6.1-amd64": new}, everything=True))


def test_the_userland_row_says_which_bcc_compiles_the_kernels_headers():
    # Measured: bookworm's BCC 0.26 (the host's, on x86_64) fails on 7.3's linux/fs.h.
    assert recorded("7.3-amd64").state("bcc:compiles") == "no"
    assert recorded("7.3-amd64").has("bcc:0.26.0")
    assert all(recorded(k).state("bcc:compiles") == "yes" for k in ("5.10-amd64", "6.1-amd64", "6.12-amd64", "6.12-arm64"))
    assert recorded("6.12-arm64").has("bcc:0.31.0")


def test_a_malformed_feature_name_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown BPF feature 'ringbuf'"):
        recorded("6.1-amd64").missing(["ringbuf"])
    # A name this kernel's probe does not know is missing, so a test needing it is skipped, not run.
    assert recorded("6.1-amd64").missing(["map:ringbuffer"]) == ["map:ringbuffer"]


def test_what_an_older_bpftool_does_not_probe_is_unknown_not_absent():
    # x86_64 guests use the host's bpftool (bookworm's 7.1), which predates arena maps; the
    # arm64 6.12 guest has trixie's 7.5.
    assert recorded("6.12-arm64").state("map:arena") == "yes"
    assert recorded("6.12-amd64").state("map:arena") == "?"
    assert recorded("5.10-amd64").state("helper:bpf_loop") == "no"
    assert recorded("5.10-amd64").state("map:user_ringbuf") == "no"


@pytest.mark.bpf("helper:bpf_get_current_task_btf")
def test_marked_test_runs_only_where_the_kernel_has_the_feature(vm, kernel, bpf_features):  # type: ignore[no-untyped-def]
    # Skipped on 5.10, which lacks the helper (named in the skip reason); here it runs.
    assert bpf_features.has("helper:bpf_get_current_task_btf")
    assert kernel.features is not None and kernel.features.present == bpf_features.present


def test_lab_features_answers_from_the_cache_without_a_guest(kernel, bpf_features):  # type: ignore[no-untyped-def]
    """After one probe, ``lab features`` reads the cache: no guest, one line per differing feature."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "lab.cli", "features", "--kernel", kernel.id, "--arch", kernel.arch,
                           "--all"], cwd=REPO, capture_output=True, text=True, timeout=60)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert "booting" not in done.stderr
    assert "map:ringbuf" in done.stdout
    print(f"lab features from the cache: {seconds:.2f}s")


def test_a_lab_needing_a_feature_names_what_the_kernel_lacks(vm, kernel, bpf_features):  # type: ignore[no-untyped-def]
    """What ``lab run``/``lab check`` print as SKIP: the feature, not a version (bpf_loop is 5.17+)."""
    lab = dataclasses.replace(get_lab("ringbuf"), features=("map:ringbuf", "helper:bpf_loop"))
    expected = [] if bpf_features.has("helper:bpf_loop") else ["helper:bpf_loop"]
    assert missing_features(vm, lab, kernel) == expected
    assert (kernel.spec.series_tuple >= (5, 17)) == (expected == [])


def test_an_architecture_shows_in_the_probe_not_only_a_version():
    # Same 7.2 kernel, same bpftool: s390x's guest refuses extension and struct_ops programs (and
    # their maps), which the other arches of that release have.
    s390x, ppc64el, riscv64 = recorded("7.2-s390x"), recorded("7.2-ppc64el"), recorded("7.2-riscv64")
    for name in ("prog:ext", "prog:struct_ops", "map:struct_ops"):
        assert s390x.state(name) == "no" and ppc64el.has(name) and riscv64.has(name), name
    assert s390x.bpftool == ppc64el.bpftool
