"""Hostile and concurrent use (issue #21): many runs on one cache, kills at any moment,
guests that misbehave, a network that says no, guests sized to the host.

Real processes and real guests throughout. Each fault test records what the user saw
(``user_saw``) and how long it took to be reported (``seconds_to_report``) as test
properties, which ``--junitxml`` keeps. Tests that fill or damage a cache use one of
their own (``EBPF_LAB_CACHE``); those that use ``vm`` share the session's guest, whose
kernel is in the real cache, which must come out of every test unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from faultymirror import FaultyMirror
from procs import BOOT_WAIT, REPO, tagged, wait_for
from test_cli_errors import assert_one_line_error

from lab import settings
from lab.boot.config import LAB_PACKAGE
from lab.errors import CommandTimeout, GuestError
from lab.guest import console
from lab.guest import kernel as guest_kernel
from lab.guest.timeouts import timeouts_for
from lab.guest.transcript import OUTPUT_KEPT
from lab.host import integrity
from lab.kernels import apt, catalog, fetch, rootfs

LAB = [sys.executable, "-m", "lab.cli"]
DATA = Path(__file__).parent / "data"
#: The default kernel, and a second one for the tests that need two guests at once.
KERNEL = "6.1-amd64"
KERNELS = "6.1-amd64,6.12-amd64"
#: What a process says when another holds the cache lock it needs (after "lab: " or "ebpf-lab: ").
WAIT_KERNEL = f"waiting for another ebpf-lab process to finish fetching kernel {KERNEL}"
ROOTFS = f"bookworm-amd64-{KERNEL}"


def report(record_property, saw: str, seconds: float) -> None:  # type: ignore[no-untyped-def]
    """Keep what the user saw and how long it took, for the JUnit report and the closing note."""
    record_property("user_saw", saw)
    record_property("seconds_to_report", round(seconds, 1))
    print(f"\nuser saw ({seconds:.1f}s): {saw}")


def lab_in(cache: Path, *args: str, timeout: float = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LAB, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "EBPF_LAB_CACHE": str(cache), **(env or {})})


def mounts_under(path: Path) -> list[str]:
    return [line for line in Path("/proc/mounts").read_text().splitlines() if str(path) in line]


def seconds_until_nothing_left(tag: str, *, since: float, timeout: float = 30) -> float:
    """Seconds from *since* until no process of *tag* is left; fails after *timeout*."""
    deadline = time.monotonic() + timeout
    while (left := tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes left behind: {left}"
    return time.monotonic() - since


def line_with(text: str, words: str) -> str:
    return next((line for line in text.splitlines() if words in line), "")


def flip(path: Path, *, at: int | None = None, count: int = 4096) -> None:
    """Invert *count* bytes in the middle of *path*: same size, different content."""
    size = path.stat().st_size
    offset = size // 2 if at is None else at
    with open(path, "r+b") as file:
        file.seek(offset)
        data = file.read(count)
        file.seek(offset)
        file.write(bytes(b ^ 0xFF for b in data))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def own_cache(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """A cache of this module's own with the default kernel fetched: tests here damage it."""
    cache = tmp_path_factory.mktemp("cache")
    result = lab_in(cache, "fetch", KERNEL)
    assert result.returncode == 0, result.stderr
    return cache


# -- many runs on one cache ----------------------------------------------------------------------


@pytest.mark.guest
def test_fetches_a_run_and_a_pytest_session_at_once_download_an_uncached_kernel_once(started, tmp_path,
                                                                                   record_property):
    env = {"EBPF_LAB_CACHE": str(tmp_path / "cache")}
    (tmp_path / "test_boots.py").write_text("def test_boots(vm):\n    assert vm.run('true').ok\n")
    started_at = time.monotonic()
    runs = [started([*LAB, "fetch", KERNEL], env=env), started([*LAB, "fetch", KERNEL], env=env),
            started([*LAB, "run", "hello"], env=env),
            started([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tmp_path / "test_boots.py")],
                    env=env)]
    wait_for(lambda: any(WAIT_KERNEL in run.stderr() for run in runs), timeout=120, what="a process saying it waits")
    waited = time.monotonic() - started_at
    for run in runs:
        assert run.proc.wait(timeout=BOOT_WAIT) == 0, run.stdout()[-2000:] + run.stderr()
    errors = [run.stderr() for run in runs]
    # One download (its progress line), three processes that said they wait, and all of them done.
    assert sum(text.count(f"{KERNEL}: downloading ") for text in errors) == 1, errors
    assert sum(WAIT_KERNEL in text for text in errors) == 3, errors
    assert f"{KERNEL}: PASS hello" in runs[2].stdout()
    assert "1 passed" in runs[3].stdout()
    assert sorted(p.name for p in (tmp_path / "cache" / "kernels").iterdir()) == [f".{KERNEL}.lock", KERNEL]
    report(record_property, "lab: " + WAIT_KERNEL, waited)


PYTEST_TWO_KERNELS = """
def test_guest_runs_its_kernel(vm, kernel):
    assert vm.run("uname -r").output.strip() == kernel.release

def test_guest_writes_stay_in_the_guest(vm, kernel):
    vm.run(f"echo {kernel.id} > /tmp/whose")
    assert vm.run("cat /tmp/whose").output.strip() == kernel.id
"""


@pytest.mark.guest
def test_two_pytest_sessions_with_two_workers_each_on_the_same_kernels(started, tmp_path):
    test_file = tmp_path / "test_two_kernels.py"
    test_file.write_text(PYTEST_TWO_KERNELS)
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "2", "--kernel", KERNELS, str(test_file)]
    sessions = [started(argv), started(argv)]
    for run in sessions:
        assert run.proc.wait(timeout=2 * BOOT_WAIT) == 0, run.stdout()[-3000:]
        assert "4 passed" in run.stdout(), run.stdout()[-3000:]


# -- killed at any moment ------------------------------------------------------------------------


@pytest.mark.guest
def test_sigkill_of_fetch_mid_download_and_mid_unpack_leaves_nothing_in_the_way(started, tmp_path, record_property):
    cache = tmp_path / "cache"
    env = {"EBPF_LAB_CACHE": str(cache)}
    for moment in (f"lab: {KERNEL}: downloading ", f"lab: {KERNEL}: unpacking linux-image"):
        run = started([*LAB, "fetch", KERNEL], env=env)
        wait_for(lambda: moment in run.stderr() or run.proc.poll() is not None, timeout=600, what=moment)
        assert run.proc.poll() is None, run.stderr()
        run.proc.kill()
        killed = time.monotonic()
        run.proc.wait(timeout=30)
        # apt-get and dpkg-deb end on their own once they find their output pipe closed.
        gone = seconds_until_nothing_left(run.tag, since=killed)
        assert not (cache / "kernels" / KERNEL).exists(), "a partial cache entry"
        assert mounts_under(cache) == []
        record_property(f"children_gone_after_sigkill_at_{moment.split()[2]}", round(gone, 1))
    # The next run: no stale lock (it never says it waits), the debris of both kills cleared.
    started_at = time.monotonic()
    result = lab_in(cache, "fetch", KERNEL)
    assert result.returncode == 0, result.stderr
    assert "waiting" not in result.stderr
    assert sorted(p.name for p in (cache / "kernels").iterdir()) == [f".{KERNEL}.lock", KERNEL]
    assert not (cache / "debs" / KERNEL).exists()
    report(record_property, "nothing: the next fetch ran as on an empty cache", time.monotonic() - started_at)


PYTEST_GUESTS_UP = """
import os
from pathlib import Path

def test_guest_up(vm, kernel):
    (Path(os.environ["EBPF_LAB_TEST_UP"]) / kernel.id).write_text("up")
    vm.run("sleep 600", timeout=900)
"""


@pytest.mark.guest
def test_sigkill_of_pytest_with_two_workers_and_guests_up_leaves_no_qemu(started, tmp_path, record_property):
    test_file = tmp_path / "test_guests_up.py"
    test_file.write_text(PYTEST_GUESTS_UP)
    up = tmp_path / "up"
    up.mkdir()
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "2", "--kernel", KERNELS, str(test_file)]
    run = started(argv, env={"EBPF_LAB_TEST_UP": str(up)})
    wait_for(lambda: len(list(up.iterdir())) == 2 or run.proc.poll() is not None, timeout=BOOT_WAIT,
             what="both guests up")
    assert run.proc.poll() is None, run.stdout()
    assert sum(" qemu-system" in p for p in tagged(run.tag)) == 2, tagged(run.tag)
    run.proc.kill()  # The controller only: its workers and their guests must follow.
    killed = time.monotonic()
    run.proc.wait(timeout=30)
    wait_for(lambda: not any(" qemu-system" in p for p in tagged(run.tag)), timeout=30, what="QEMU gone")
    qemu_gone = time.monotonic() - killed
    everything_gone = seconds_until_nothing_left(run.tag, since=killed)
    record_property("workers_gone_seconds", round(everything_gone, 1))
    report(record_property, "no QEMU, no worker left", qemu_gone)


# -- damaged cache files, found by checksum before boot --------------------------------------------


def _truncate(root: Path, manifest: dict) -> None:
    image = root / manifest["image"]
    with open(image, "r+b") as file:
        file.truncate(image.stat().st_size // 2)


def _corrupt(root: Path, manifest: dict) -> None:
    flip(root / manifest["image"])


def _edit(root: Path, manifest: dict) -> None:
    (root / "kernel.json").write_text(json.dumps({**manifest, "release": "6.1.0-99-amd64"}, indent=2))


def _garble(root: Path, manifest: dict) -> None:
    (root / "kernel.json").write_bytes(b"\x00{not json")


@pytest.mark.guest
@pytest.mark.parametrize("damage, command, says", [
    (_corrupt, "run", "cached image fails its checksum"),
    (_edit, "fetch", "cached manifest kernel.json does not match its checksum (edited after the fetch?)"),
], ids=["corrupt image", "edited manifest"])
def test_a_damaged_kernel_is_found_before_boot_and_fetched_again(started, own_cache, damage, command, says,
                                                                 record_property):
    root = own_cache / "kernels" / KERNEL
    manifest = json.loads((root / "kernel.json").read_text())
    damage(root, manifest)
    line = f"lab: kernel {KERNEL}: {says.format(half=manifest['image_size'] // 2, size=manifest['image_size'])}; fetching it again"
    run = started([*LAB, *(["run", "hello"] if command == "run" else ["fetch", KERNEL])],
                  env={"EBPF_LAB_CACHE": str(own_cache)})
    started_at = time.monotonic()
    wait_for(lambda: line in run.stderr() or run.proc.poll() is not None, timeout=120, what="the damage reported")
    reported = time.monotonic() - started_at
    assert run.proc.wait(timeout=BOOT_WAIT) == 0, run.stderr()
    stderr = run.stderr()
    assert stderr.splitlines()[0] == line, stderr
    assert stderr.count("fetching it again") == 1
    if command == "run":  # Found before the guest booted, which then ran the lab.
        assert stderr.index(line) < stderr.index("lab: booting")
        assert f"{KERNEL}: PASS hello" in run.stdout()
    fresh = json.loads((root / "kernel.json").read_text())
    assert integrity.seal_holds(fresh) and sha(root / fresh["image"]) == fresh["image_sha256"] == manifest["image_sha256"]
    report(record_property, line, reported)


def test_each_kind_of_kernel_damage_is_named(own_cache, monkeypatch):
    """What the line says for the damage the test above does not fetch again for (each refetch is half a minute)."""
    monkeypatch.setenv("EBPF_LAB_CACHE", str(own_cache))
    spec = catalog.load_catalog()[KERNEL]
    root = own_cache / "kernels" / KERNEL
    manifest = json.loads((root / "kernel.json").read_text())
    image = root / manifest["image"]
    good = image.read_bytes()
    size = len(good)
    try:
        _truncate(root, manifest)
        assert fetch.inspect(spec, thorough=False) == (None, f"cached image has {size // 2} bytes, not the {size} it was made with")
        image.write_bytes(good)
        _corrupt(root, manifest)
        assert fetch.inspect(spec, thorough=False)[1] is None  # The cheap check of listings lets it pass ...
        assert fetch.inspect(spec, thorough=True) == (None, "cached image fails its checksum")  # ... the one before boot does not.
        image.write_bytes(good)
        _garble(root, manifest)
        assert fetch.inspect(spec, thorough=True) == (None, "cached manifest kernel.json is unreadable")
        (root / "kernel.json").write_text(json.dumps({**manifest, "format": 1}))
        assert fetch.inspect(spec, thorough=True) == (None, "cached entry is of an older layout")
    finally:
        image.write_bytes(good)
        (root / "kernel.json").write_text(json.dumps(manifest, indent=2))
    assert fetch.inspect(spec, thorough=True)[0] is not None


def test_an_entry_from_before_checksums_is_hashed_once_not_fetched_again(own_cache):
    root = own_cache / "kernels" / KERNEL
    sealed = json.loads((root / "kernel.json").read_text())
    older = {k: v for k, v in sealed.items() if k not in ("image_sha256", integrity.SEAL)}
    (root / "kernel.json").write_text(json.dumps({**older, "format": 2}))
    result = lab_in(own_cache, "fetch", KERNEL, timeout=120)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert json.loads((root / "kernel.json").read_text()) == sealed | {"format": 3}


@pytest.mark.guest
@pytest.mark.slow
@pytest.mark.parametrize("target, name", [
    ((KERNEL, "--userland", "debian"), ROOTFS),
    (("6.1-arm64",), "bookworm-arm64-6.1-arm64"),  # minutes: the arm64 kernel, then its whole userland
], ids=["amd64-userland", "arm64"])
def test_a_rootfs_build_killed_mid_mmdebstrap_then_built_once_by_two_at_once(started, own_cache, tmp_path, target, name,
                                                                             record_property):
    cache = own_cache if target[0] == KERNEL else tmp_path / "cache"
    env = {"EBPF_LAB_CACHE": str(cache)}
    fetch = [*LAB, "fetch", *target]
    waits = f"lab: waiting for another ebpf-lab process to finish building root filesystem {name}"
    shutil.rmtree(cache / "rootfs", ignore_errors=True)
    first = started(fetch, env=env)
    wait_for(lambda: "with mmdebstrap" in first.stderr() or first.proc.poll() is not None, timeout=900,
             what="mmdebstrap starting")
    time.sleep(5)  # mmdebstrap is downloading and unpacking now
    assert first.proc.poll() is None, first.stderr()
    first.proc.kill()
    killed = time.monotonic()
    first.proc.wait(timeout=30)
    record_property("children_gone_after_sigkill", round(seconds_until_nothing_left(first.tag, since=killed), 1))
    assert mounts_under(cache) == []
    assert not (cache / "rootfs" / name).exists()

    started_at = time.monotonic()
    pair = [started(fetch, env=env), started(fetch, env=env)]
    wait_for(lambda: any(waits in run.stderr() for run in pair) or any(run.proc.poll() is not None for run in pair),
             timeout=600, what="one build waiting for the other")
    waited = time.monotonic() - started_at
    for run in pair:
        assert run.proc.wait(timeout=3600) == 0, run.stderr()
    errors = [run.stderr() for run in pair]
    assert sum(text.count("with mmdebstrap") for text in errors) == 1, errors
    assert sum(waits in text for text in errors) == 1, errors
    # The killed build's temporary tree (hundreds of MiB) went with the next build.
    assert sorted(p.name for p in (cache / "rootfs").iterdir()) == [f".{name}.lock", name]
    assert mounts_under(cache) == []
    report(record_property, waits, waited)


@pytest.mark.guest
@pytest.mark.slow
def test_a_corrupt_root_disk_is_found_and_built_again(own_cache, monkeypatch, record_property):
    assert lab_in(own_cache, "fetch", KERNEL, "--userland", "debian", timeout=1800).returncode == 0
    entry = own_cache / "rootfs" / ROOTFS
    manifest = json.loads((entry / "rootfs.json").read_text())
    # An edited manifest is damage too (checked in-process: no rebuild needed to see it).
    monkeypatch.setenv("EBPF_LAB_CACHE", str(own_cache))
    (entry / "rootfs.json").write_text(json.dumps({**manifest, "release": "6.1.0-99-amd64"}))
    assert rootfs.inspect(ROOTFS) == (None, "cached manifest rootfs.json does not match its checksum (edited after the build?)")
    (entry / "rootfs.json").write_text(json.dumps(manifest))
    # While the disk's size, mtime and inode are those of its last check, it is not hashed again.
    hashed: list[Path] = []
    real_sha256_of = integrity.sha256_of
    monkeypatch.setattr(integrity, "sha256_of", lambda path: hashed.append(path) or real_sha256_of(path))
    assert rootfs.inspect(ROOTFS)[0] is not None and entry / "root.ext4" not in hashed

    flip(entry / "root.ext4", at=300 * 2**20)
    started_at = time.monotonic()
    result = lab_in(own_cache, "fetch", KERNEL, "--userland", "debian", timeout=1800)
    assert result.returncode == 0, result.stderr
    line = f"lab: root filesystem {ROOTFS}: cached disk image fails its checksum; building it again"
    assert line in result.stderr.splitlines(), result.stderr
    fresh = json.loads((entry / "rootfs.json").read_text())
    assert sha(entry / "root.ext4") == fresh["disk_sha256"]
    report(record_property, line, time.monotonic() - started_at)


# -- guests that misbehave -----------------------------------------------------------------------


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _qemu_pid(vm) -> int:  # type: ignore[no-untyped-def]
    """QEMU of *vm*: the process pexpect started (a prepared boot), or the one in its session (vng)."""
    leader = vm._child.pid
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if stat.split("(", 1)[1].startswith("qemu-system") and int(fields[3]) == leader:
                return int(entry.name)
    raise AssertionError("no QEMU for this guest")


def test_a_console_flood_times_out_naming_the_command_and_host_memory_stays_bounded(vm, record_property):
    qemu = _qemu_pid(vm)
    ours, theirs = _rss_mib(os.getpid()), _rss_mib(qemu)
    logged = vm.log_path.stat().st_size
    started_at = time.monotonic()
    with pytest.raises(CommandTimeout) as timeout:
        vm.run("yes | head -c 50M", timeout=45)
    reported = time.monotonic() - started_at
    assert "command 'yes | head -c 50M' did not finish within 45s (last console line: y)" in str(timeout.value)
    flooded = vm.log_path.stat().st_size - logged
    assert flooded > 4 * 2**20, "the flood never reached the host"
    assert len(vm.transcript()) <= OUTPUT_KEPT
    grew, qemu_grew = _rss_mib(os.getpid()) - ours, _rss_mib(qemu) - theirs
    record_property("flood_mib", round(flooded / 2**20, 1))
    record_property("pytest_rss_growth_mib", round(grew, 1))
    record_property("qemu_rss_growth_mib", round(qemu_grew, 1))
    # A transcript kept whole grew the process by more than twice the flood (pexpect's buffers too).
    assert grew < 96, f"pytest grew by {grew:.0f} MiB for a {flooded / 2**20:.0f} MiB flood"
    assert qemu_grew < 128, f"QEMU grew by {qemu_grew:.0f} MiB"
    assert vm.run("echo still-here").output.strip() == "still-here"
    report(record_property, str(timeout.value).split(": raise")[0], reported)


def test_a_timed_out_command_leaves_no_background_job_behind(vm, record_property):
    started_at = time.monotonic()
    with pytest.raises(CommandTimeout) as timeout:
        vm.run("sleep 1000 & sleep 1001", timeout=5)
    message = str(timeout.value)
    # The background sleep at least (the foreground one too, when Ctrl-C has not ended it yet).
    assert "did not finish within 5s" in message and re.search(r"; \d+ process(es)? it left running (was|were) killed", message), message
    assert vm.run("pgrep -x sleep").output.strip() == ""
    report(record_property, message.split(": raise")[0], time.monotonic() - started_at)


@pytest.mark.slow
def test_a_fork_bomb_costs_its_guest(vm, record_property):
    started_at = time.monotonic()
    with pytest.raises(CommandTimeout) as timeout:
        vm.run("bomb() { bomb | bomb & }; bomb; sleep 600", timeout=20)
    message = str(timeout.value)
    assert "command 'bomb() { bomb | bomb & }; bomb; sleep 600' did not finish within 20s" in message
    # Its leftovers are killed, or (what happens on one emulated vCPU) they starve the shell
    # or keep coming back, and the guest is stopped: the next test gets a fresh one.
    assert any(words in message for words in ("left running w", "a fork bomb?",
                                              "the guest did not answer after Ctrl-C and was stopped")), message
    report(record_property, message.split(": raise")[0], time.monotonic() - started_at)


@pytest.mark.slow
def test_after_a_fork_bomb_the_next_test_gets_a_working_guest(vm):
    assert vm.run("echo fine").output.strip() == "fine"
    assert int(vm.run("ls -d /proc/[0-9]* | wc -l").output) < 200, "bomb processes are still running"


def test_memory_exhaustion_is_named_by_the_guests_oom_killer(vm, record_property):
    started_at = time.monotonic()
    result = vm.run("python3 -c 'hog = []\nwhile True: hog.append(bytearray(64 * 2**20))'", timeout=300)
    assert result.returncode == 137
    killed = vm.out_of_memory()
    assert killed and killed[0].startswith("python3 (pid "), vm.transcript()[-2000:]
    assert vm.run("echo still-here").output.strip() == "still-here"
    oom_line = line_with(vm.transcript(), "Out of memory: Killed process")
    report(record_property, f"exit status 137; {oom_line[oom_line.index('Out of memory'):]}",
           time.monotonic() - started_at)


def test_filling_the_guests_writable_places_says_no_space_and_the_host_is_untouched(vm, kernel, record_property):
    watched = [kernel.files.image, kernel.files.root / "kernel.json", LAB_PACKAGE / "boot" / "guest_files" / "shell.sh"]
    before = {path: sha(path) for path in watched}
    # /tmp and every other overlay (/etc, /var, /usr, /home, /opt, /srv) keep their writes in
    # the one tmpfs on /run; the host's root is shared read-only.
    overlays = ("/tmp", "/run", "/etc", "/var", "/usr", "/home", "/opt", "/srv")
    started_at = time.monotonic()
    try:
        filled = vm.run("dd if=/dev/zero of=/tmp/ebpf-lab-fill bs=1M 2>&1 | grep -o 'No space left on device'",
                        timeout=300)
        reported = time.monotonic() - started_at
        assert filled.output.strip() == "No space left on device"
        each = vm.run("for d in " + " ".join(overlays) + " / /root; do printf '%s: ' $d;"
                      " (head -c 65536 /dev/zero > $d/ebpf-lab-more) 2>&1 | grep -o 'No space left on device\\|Read-only file system'"
                      " || echo written; done", timeout=120).output
        says = dict(line.split(": ", 1) for line in each.strip().splitlines())
        assert {d: says[d] for d in overlays} == dict.fromkeys(overlays, "No space left on device"), each
        assert says["/"] == says["/root"] == "Read-only file system", each
    finally:
        vm.run("rm -f " + " ".join(f"{d}/ebpf-lab-fill {d}/ebpf-lab-more" for d in overlays), timeout=60)
    assert vm.run("echo still-here > /tmp/ebpf-lab-check && cat /tmp/ebpf-lab-check").output.strip() == "still-here"
    with vm.spawn("echo spawned") as process:
        process.expect("spawned", timeout=60)
    assert {path: sha(path) for path in watched} == before
    report(record_property, "dd: error writing '/tmp/ebpf-lab-fill': No space left on device", reported)


#: Host directories a host-root guest sees through a writable tmpfs overlay of its own (virtme-ng's).
GUEST_OVERLAYS = ("/etc/", "/lib/", "/home/", "/opt/", "/srv/", "/usr/", "/var/", "/tmp/")


def test_writes_aimed_through_to_the_host_and_the_kernel_cache_are_refused(vm, kernel, record_property):
    name = f"ebpf-lab-through-{uuid.uuid4().hex[:8]}"
    cache_entry = kernel.files.root
    watched = [kernel.files.image, cache_entry / "kernel.json", LAB_PACKAGE / "boot" / "guest_files" / "shell.sh"]
    before = {path: sha(path) for path in watched}
    targets = [Path("/") / name, cache_entry / name, cache_entry / "kernel.json", Path.home() / name,
               LAB_PACKAGE / name]
    # As root in the guest: remount the shares read-write first, then write.
    script = (f"mount -o remount,rw / 2>/dev/null; mount -o remount,rw {cache_entry} 2>/dev/null; "
              + "; ".join(f"(echo pwned >> {t}) 2>&1 | grep -o 'Read-only file system' || echo 'written {t}'" for t in targets)
              + "; mount -o remount,ro / 2>/dev/null; true")
    output = vm.run(script, timeout=60).output.strip().splitlines()
    assert len(output) == len(targets), output
    for target, said in zip(targets, output):
        # Where virtme-ng lays a tmpfs overlay on the host's directory (a checkout under /tmp, as
        # CI's is), the write lands in the guest's overlay; everywhere else the share refuses it.
        # Either way nothing reaches the host, which is checked below.
        overlaid = str(target).startswith(GUEST_OVERLAYS)
        assert said == "Read-only file system" or (overlaid and said == f"written {target}"), output
    for target in targets:
        if target.name == name:
            assert not target.exists(), f"the guest wrote {target} on the host"
    assert {path: sha(path) for path in watched} == before
    report(record_property, "Read-only file system (every target, after remounting read-write)", 0.0)


@pytest.mark.slow
def test_filling_every_writable_place_at_once_is_named_as_out_of_memory(vm, record_property):
    # Every tmpfs of the guest may take half its memory: all of them together take more than all of it.
    fill = ("for d in $(awk '$4 ~ /^rw/ && ($3 == \"tmpfs\" || $3 == \"overlay\") {print $2}' /proc/mounts); do"
            " dd if=/dev/zero of=$d/ebpf-lab-fill bs=1M 2>/dev/null; done; echo filled")
    started_at = time.monotonic()
    try:
        result = vm.run(fill, timeout=600)
    except GuestError as error:
        message = str(error)
        assert "the guest ran out of memory (its OOM killer ended" in message, message
        report(record_property, message.split(": see")[0].split(": raise")[0], time.monotonic() - started_at)
        return
    # The guest may also survive, its console shell spared: then the kernel still says what it killed.
    assert result.output.strip().endswith("filled") and vm.out_of_memory(), result.output[-2000:]
    report(record_property, f"OOM killer ended {', '.join(vm.out_of_memory())}", time.monotonic() - started_at)


@pytest.mark.slow
def test_after_filling_everything_the_next_test_gets_a_working_guest(vm):
    assert vm.run("echo fine > /tmp/ebpf-lab-check && cat /tmp/ebpf-lab-check").output.strip() == "fine"


# -- a student's program that misbehaves, through `lab check` ------------------------------------


STUDENT_PROGRAMS = {
    "exhausts memory": "hog = []\nwhile True:\n    hog.append(bytearray(64 * 2**20))\n",
    "never returns": "import time\n\ntime.sleep(10**6)\n",
    "floods its output": ("from bcc import BPF\n\nb = BPF(text='int hello(void *ctx) { return 0; }')\n"
                          "b.attach_kprobe(event=b.get_syscall_fnname('execve'), fn_name='hello')\n"
                          "while True:\n    print('flood ' * 30)\n"),
}


@pytest.mark.guest
@pytest.mark.parametrize("behaviour, verdict", [
    ("exhausts memory", "the program was killed by the guest kernel's OOM killer (python3 (pid "),
    ("never returns", "probes not attached within {attach:.0f}s"),
    pytest.param("floods its output", "it printed faster than the console carries", marks=pytest.mark.slow),
])
def test_lab_check_names_what_a_misbehaving_program_did(tmp_path, behaviour, verdict, record_property):
    program = tmp_path / "student.py"
    program.write_text(STUDENT_PROGRAMS[behaviour])
    # Every timeout scaled down (lab/guest/timeouts.py, times 0.2): a program that never
    # attaches is given up on sooner.
    scale = 0.2
    started_at = time.monotonic()
    result = subprocess.run([*LAB, "check", "hello", str(program), "--kernel", KERNEL], cwd=REPO, capture_output=True,
                            text=True, timeout=BOOT_WAIT, env={**os.environ, "EBPF_LAB_TIMEOUT_SCALE": str(scale)})
    reported = time.monotonic() - started_at
    assert result.returncode == 1, result.stdout + result.stderr
    line = line_with(result.stdout, f"{KERNEL}: FAIL lab hello:")
    verdict = verdict.format(attach=timeouts_for(kvm="under KVM" in result.stderr, scale=scale).attach)
    assert verdict in line, result.stdout[-3000:]
    assert "Traceback" not in result.stderr
    report(record_property, line, reported)


# -- the network says no -------------------------------------------------------------------------


@pytest.mark.guest  # fetches through apt from a mirror of its own: seconds to minutes
@pytest.mark.parametrize("fault, says, within", [
    ("tamper-release", "bookworm InRelease: The following signatures were invalid: BADSIG", 60),
    ("tamper-index", "bookworm/main amd64 Packages: Hash Sum mismatch", 60),
    ("flip-deb", "Hash Sum mismatch", 120),
    ("cut-deb", "Undetermined Error", 120),
    pytest.param("stall", "Connection failed", 150, marks=pytest.mark.slow),
])
def test_a_mirror_that_fails_verification_or_the_connection_gives_one_line_and_caches_nothing(
        tmp_path, fault, says, within, record_property):
    cache = tmp_path / "cache"
    with FaultyMirror(upstream=apt.system_mirror(), fault=fault) as mirror:
        started_at = time.monotonic()
        result = lab_in(cache, "fetch", KERNEL, env={"EBPF_LAB_MIRROR": mirror.url}, timeout=600)
        reported = time.monotonic() - started_at
        assert mirror.faulted(), mirror.served
    line = assert_one_line_error(result, code=4, says=(says, mirror.url))
    if fault != "stall" and fault != "cut-deb":
        assert "fail apt's verification" in line
    assert reported < within
    # Nothing of it is kept: no kernel, no temporary tree, no package file.
    assert not (cache / "kernels" / KERNEL).exists()
    assert not list((cache / "kernels").glob(f".{KERNEL}.tmp-*"))
    assert not [p for p in cache.glob("debs/**/*") if p.is_file()]
    report(record_property, line, reported)


@pytest.mark.parametrize("recording, reason, verification", [
    ("update-badsig.txt", "http://127.0.0.1:40119 bookworm InRelease: The following signatures were invalid: "
                          "BADSIG 6ED0E7B82643E131 Debian Archive Automatic Signing Key (12/bookworm)", True),
    ("download-hash-mismatch.txt", "http://127.0.0.1:41089 bookworm/main amd64 linux-kbuild-6.1 amd64 6.1.176-1: "
                                   "Hash Sum mismatch", True),
    ("download-cut.txt", "http://127.0.0.1:35375 bookworm/main amd64 linux-kbuild-6.1 amd64 6.1.176-1: "
                         "Undetermined Error [IP: 127.0.0.1 35375]", False),
])
def test_apt_failures_are_described_in_one_line(recording, reason, verification):
    assert apt.describe_failure((DATA / "apt" / recording).read_text()) == (reason, verification)


def test_oom_kills_are_read_from_a_recorded_console():
    text = (DATA / "oom-fill-6.1.log").read_text()
    assert console.oom_kills(text) == ["python3 (pid 115)", "dd (pid 123)", "su (pid 109)"]
    assert console.oom_kills("no kills here\n") == []


# -- guests sized to the host --------------------------------------------------------------------


@pytest.mark.parametrize("available, guests, mib, note", [
    (23 * 1024, 2, 2048, ""),  # this 2-core, 24 GiB machine with -n 2
    (23 * 1024, 1, 2048, ""),
    (6 * 1024, 2, 1792, "guests get 1792 MiB each instead of 2048: 6.0 GiB of memory available for 2 guests at once"),
    (3584, 2, 512, "guests get 512 MiB each instead of 2048: 3.5 GiB of memory available for 2 guests at once"),
    (3000, 2, 512, "guests get 512 MiB each, and 2 of them may not fit: 2.9 GiB of memory available for 2 guests "
                   "at once; run at most 1 at once (pytest -n 1)"),
    (23 * 1024, 24, 512, "guests get 512 MiB each, and 24 of them may not fit: 23.0 GiB of memory available for 24 "
                         "guests at once; run at most 17 at once (pytest -n 17)"),
])
def test_guest_memory_is_sized_from_the_host(available, guests, mib, note):
    assert settings.guest_memory(available_mib=available, guests=guests) == settings.GuestMemory(mib, note)


def test_the_sized_guest_is_the_one_that_boots(vm):
    memory, _ = settings.sized_guest_memory()
    if os.environ.get(settings.MEMORY_ENV) is None:
        assert vm.config.memory == memory
    total_kib = int(vm.run("grep MemTotal /proc/meminfo").output.split()[1])
    wanted_mib = int(memory[:-1]) * (1024 if memory.endswith("G") else 1)
    assert 0.85 * wanted_mib < total_kib / 1024 <= wanted_mib


def test_a_host_short_of_memory_gets_smaller_guests_and_is_told(kernel, monkeypatch, tmp_path, record_property):
    # This machine has room: its MemAvailable is what stands in for a smaller one's.
    monkeypatch.setattr(settings, "available_memory_mib", lambda: 3584)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    monkeypatch.delenv(settings.MEMORY_ENV, raising=False)
    said: list[str] = []
    accel = guest_kernel.choose_accel(kernel)
    guest = guest_kernel.new_guest(kernel, accel=accel, timeouts=timeouts_for(kvm=accel.kvm), progress=said.append,
                              log_path=tmp_path / "console.log")
    assert guest.config.memory == "512M"
    assert said == ["guests get 512 MiB each instead of 2048: 3.5 GiB of memory available for 2 guests at once"]
    with guest:
        assert guest.run("python3 -c 'import bcc; print(bcc.__name__)'", timeout=300).output.strip() == "bcc"
    report(record_property, f"lab: {said[0]}", 0.0)

