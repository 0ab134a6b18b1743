"""The lab commands: run a lab, check a student's program, an interactive guest shell, the list of labs."""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

from lab.cli.common import boot, kernel_args, say, select_one, too_many, with_kernel
from lab.errors import GuestError, HostError, LabFailure, UsageError
from lab.guest import kernel as guest_kernel
from lab.host import tools
from lab.kernels import catalog
from lab.labs import feedback
from lab.labs import runner as labs


def cmd_run(args: argparse.Namespace) -> int:
    lab = labs.get_lab(args.lab)
    return _run_or_check(args, lab=lab, program=None)


def cmd_check(args: argparse.Namespace) -> int:
    lab = labs.get_lab(args.lab)
    program = Path(args.file).resolve()
    if not program.is_file():
        raise UsageError(f"no such file: {args.file}", hint=f"give the path of your program ({labs.KINDS[lab.kind][0]})")
    return _run_or_check(args, lab=lab, program=program)


def _run_or_check(args: argparse.Namespace, *, lab: labs.Lab, program: Path | None) -> int:
    specs = catalog.select(catalog.load_catalog(), kernels=args.kernel, arches=args.arch, userland=args.userland)
    if program is None and len(specs) > 1:
        too_many(specs)
    failures = 0
    for spec in specs:
        from lab.labs.constraints import kernel_matches

        if lab.kernel_constraint and not kernel_matches(spec.series, lab.kernel_constraint):
            print(f"{spec.id}: SKIP (lab {lab.name} needs kernel {lab.kernel_constraint})")
            continue
        reason = labs.unsupported(lab, spec)
        if reason:
            print(f"{spec.id}: SKIP ({reason})")
            continue
        kernel, guest = boot(spec, args)
        started = time.monotonic()
        try:
            with guest:
                missing = labs.missing_features(guest, lab, kernel)
                if missing:
                    print(f"{spec.id}: SKIP (lab {lab.name} needs BPF feature(s) {', '.join(missing)}, "
                          "which this kernel lacks)")
                    continue
                say(f"{kernel.id}: booted in {guest.boot_seconds:.1f}s; running {program or lab.program.name}")
                live = (lambda text: print(text, end="", flush=True)) if program is None else None
                result = labs.run_lab(guest, lab, program=program, on_output=live, keep_guest=False)
        except LabFailure as failure:
            failures += 1
            print("\n".join(feedback.failure_lines(failure, kernel_id=spec.id, show_output=program is not None)),
                  flush=True)
            continue
        except GuestError as error:
            # One kernel's guest failing (boot timeout, panic) must not hide the others' verdicts.
            failures += 1
            print(f"{spec.id}: ERROR {error}" + (f"\n--- last console lines ---\n{error.tail}" if error.tail else ""),
                  flush=True)
            continue
        if program is None:
            print()
        print(f"{spec.id}: PASS {lab.name} (attached in {result.attach_seconds:.1f}s, trace after "
              f"{result.trace_seconds:.1f}s, {time.monotonic() - started:.1f}s with boot)")
    return 1 if failures else 0


def cmd_shell(args: argparse.Namespace) -> int:
    from lab.boot.prepared import boot_command
    from lab.host.process import die_with_parent

    spec = select_one(args)
    kernel = guest_kernel.with_rootfs(guest_kernel.prepare(spec, progress=say), progress=say)
    guest_kernel.check_host(kernel)
    accel = guest_kernel.choose_accel(kernel)
    # The guest the tests boot, prepared the same way; only its console shell is a person's.
    argv = boot_command(guest_kernel.vm_config(kernel, accel=accel, append=kernel_args(args), interactive=True))
    say(f"{kernel.id} under {accel.name.upper()}; labs are in {labs.LABS_DIR}; leave with 'exit' or Ctrl-D")
    # Not process.run: the session is the user's, on this terminal, for as long as they like.
    # QEMU puts the terminal in raw mode, so Ctrl-C reaches the guest; it goes when we go.
    try:
        return subprocess.call(argv, env=tools.virtme_environ(), preexec_fn=die_with_parent)
    except OSError as exc:
        raise HostError(f"cannot start {argv[0]} for a shell in {kernel.id}: {exc.strerror}",
                        hint=tools.install_hint(Path(argv[0]).name)) from None


def cmd_list(args: argparse.Namespace) -> int:
    from lab.labs.constraints import kernel_matches

    specs = list(catalog.load_catalog().values())
    for lab in labs.all_labs().values():
        need = f"kernel {lab.kernel_constraint}" if lab.kernel_constraint else "any kernel"
        if lab.features:
            need = f"BPF {', '.join(lab.features)}" + (f", {need}" if lab.kernel_constraint else "")
        # Name the catalog kernels a teacher cannot use for this lab.
        unfit = sorted({s.id for s in specs if lab.kernel_constraint and not kernel_matches(s.series, lab.kernel_constraint)})
        if unfit:
            need += f"; not {', '.join(unfit)}"
        print(f"{lab.name:<12} {lab.title} — {lab.summary} [{need}]")
    return 0



def register(sub) -> None:  # type: ignore[no-untyped-def]
    p = sub.add_parser("run", help="run a lab's reference program live in a guest (default lab: hello)")
    p.add_argument("lab", nargs="?", default="hello")
    with_kernel(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("check", help="check a student's program against a lab")
    p.add_argument("lab")
    p.add_argument("file")
    with_kernel(p)
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("shell", help="an interactive shell in a guest")
    with_kernel(p)
    p.set_defaults(func=cmd_shell)
    p = sub.add_parser("list", help="the labs")
    p.set_defaults(func=cmd_list)
