"""The host commands: the kernel catalog and cache, fetching, and checking and setting up the host."""

from __future__ import annotations

import argparse
import os

from lab.cli.common import say, with_userland
from lab.errors import LabError
from lab.guest import kernel as guest_kernel
from lab.host import process
from lab.host import setup as setup_host
from lab.kernels import catalog
from lab.kernels.fetch import cached
from lab.settings import cache_dir


def cmd_kernels(args: argparse.Namespace) -> int:
    entries = catalog.load_catalog()
    default = catalog.default_kernel_id()
    print(f"{'id':<14} {'arch':<8} {'source':<18} {'release':<24} {'cached':<7} {'size':>8}  description")
    for spec in entries.values():
        files = cached(spec)
        source = spec.suites[0] if spec.suites else spec.source
        size = f"{files.size / 2**20:.0f} MiB" if files else "-"
        mark = "*" if spec.id == default else " "
        print(f"{spec.id + mark:<14} {spec.arch.name:<8} {source:<18} {files.release if files else '-':<24} "
              f"{'yes' if files else 'no':<7} {size:>8}  {spec.description}")
    print(f"(* default kernel; cache: {cache_dir()})")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    specs = catalog.select(catalog.load_catalog(), kernels=",".join(args.kernels) or None, arches=args.arch,
                           userland=args.userland)
    for spec in specs:
        kernel = guest_kernel.with_rootfs(guest_kernel.prepare(spec, progress=say), progress=say)
        print(f"{kernel.id}: {kernel.release} ({kernel.files.version}) in {kernel.files.root}")
    return 0


def _check_line(ok: bool, name: str, detail: str, fix: str = "") -> str:
    return f"{'ok' if ok else 'MISSING':<7} {name}: {detail}" + ("" if ok or not fix else f" -> {fix}")


def cmd_doctor(args: argparse.Namespace) -> int:
    checks = setup_host.checks()
    for check in checks:
        print(_check_line(check.ok, check.name, check.detail, check.fix))
    failed = [check for check in checks if not check.ok]
    from lab.kernels.apt import system_mirror

    try:
        print(_check_line(True, "Debian mirror", system_mirror()))
    except LabError as exc:
        print(_check_line(False, "Debian mirror", str(exc)))
        failed.append(setup_host.Check("Debian mirror", False, str(exc)))
    spec = catalog.load_catalog().get(catalog.default_kernel_id())
    files = cached(spec) if spec else None
    from lab.boot import accel

    verdict = accel.detect(probe_image=files.image if files else None)
    print(_check_line(True, "accelerator", f"{verdict.name.upper()} ({verdict.reason})"))
    size = sum(f.stat().st_size for f in cache_dir().rglob("*") if f.is_file() and not f.is_symlink()) if cache_dir().exists() else 0
    print(_check_line(True, "cache", f"{cache_dir()} ({size / 2**20:.0f} MiB)"))
    for line in setup_host.fix_lines(failed):
        print(f"fix: {line}")
    return 1 if failed else 0


def cmd_setup(args: argparse.Namespace) -> int:
    missing = setup_host.missing_packages()
    if not missing:
        print("all Debian packages ebpf-lab needs are installed")
        return 0
    command = setup_host.install_command(missing)
    if os.geteuid() != 0:
        print("run as root:\n  sudo apt-get update && sudo " + " ".join(command))
        return 1
    # apt-get's own progress goes to the terminal: an install takes minutes.
    process.run(["apt-get", "update", "-q"], what="apt-get update", timeout=900, capture=False, check=False)
    process.run(command, what="installing Debian packages", timeout=3600, capture=False,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, hint="see apt-get's messages above")
    return 0



def register(sub) -> None:  # type: ignore[no-untyped-def]
    p = sub.add_parser("kernels", help="the kernel catalog and what is cached")
    p.set_defaults(func=cmd_kernels)
    p = sub.add_parser("fetch", help="download kernels into the cache")
    p.add_argument("kernels", nargs="*")
    p.add_argument("--arch")
    with_userland(p)
    p.set_defaults(func=cmd_fetch)
    p = sub.add_parser("doctor", help="check the host: tools, accelerator, cache")
    p.set_defaults(func=cmd_doctor)
    p = sub.add_parser("setup", help="install the Debian packages ebpf-lab needs (as root)")
    p.set_defaults(func=cmd_setup)
