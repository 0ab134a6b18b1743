"""What the commands share: printing progress, choosing kernels, booting a guest, the guest options."""

from __future__ import annotations

import argparse
import shlex
import sys

from lab.errors import UsageError
from lab.guest import kernel as guest_kernel
from lab.guest.timeouts import timeouts_for
from lab.kernels import catalog


def say(text: str) -> None:
    print(f"lab: {text}", file=sys.stderr, flush=True)


def select_one(args: argparse.Namespace) -> catalog.KernelSpec:
    specs = catalog.select(catalog.load_catalog(), kernels=args.kernel, arches=getattr(args, "arch", None),
                           userland=args.userland)
    if len(specs) != 1 and args.kernel not in (None, ""):
        return specs[0] if len(specs) == 1 else too_many(specs)
    return specs[0]


def too_many(specs: list[catalog.KernelSpec]) -> catalog.KernelSpec:
    raise UsageError(f"this command takes one kernel, the selection has {len(specs)}",
                     hint=f"name one of {', '.join(s.id for s in specs)}")


def boot(spec: catalog.KernelSpec, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    kernel = guest_kernel.prepare(spec, progress=say)
    # Before the accelerator probe: without QEMU the probe would only say "TCG".
    guest_kernel.check_host(kernel)
    kernel = guest_kernel.with_rootfs(kernel, progress=say)
    accel = guest_kernel.choose_accel(kernel)
    timeouts = timeouts_for(kvm=accel.kvm, foreign=spec.foreign, boot=args.boot_timeout,
                            command=args.command_timeout)
    guest = guest_kernel.new_guest(kernel, accel=accel, timeouts=timeouts, append=kernel_args(args), progress=say)
    say(f"booting {kernel.id} ({kernel.release}) under {accel.name.upper()}; console log: {guest.log_path}")
    return kernel, guest


def kernel_args(args: argparse.Namespace) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(args.kernel_args or ""))
    except ValueError as error:
        raise UsageError(f"--kernel-args {args.kernel_args!r}: {error}", hint="quote words as a shell would") from None


def with_userland(p: argparse.ArgumentParser) -> None:
    p.add_argument("--userland", default=None, metavar="WHICH",
                   help="the guest's programs: 'host' (default on the host's arch), 'debian' (the kernel's own "
                        "Debian suite, from a root disk) or 'debian:SUITE'")


def with_kernel(p: argparse.ArgumentParser) -> None:
    """The options of a command that boots a guest."""
    p.add_argument("--kernel", "-k", help="kernel id, series, comma list, glob or 'all' (default: the 6.1 kernel)")
    p.add_argument("--arch", help="architecture(s): x86_64, arm64, comma list or 'all'")
    p.add_argument("--boot-timeout", type=float, help="seconds to wait for the guest's shell")
    p.add_argument("--command-timeout", type=float, help="seconds each guest command may take")
    p.add_argument("--kernel-args", metavar="WORDS",
                   help="words added to the guest kernel's command line, e.g. 'lsm=lockdown,capability,bpf'")
    with_userland(p)

