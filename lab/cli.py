"""The ``lab`` command: the only place that parses arguments, prints for people and picks exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.errors import GuestError, HostError, LabError, LabFailure, UsageError
from lab.guest import kernel as guest_kernel
from lab.guest.timeouts import timeouts_for
from lab.host import process, tools
from lab.host import setup as setup_host
from lab.host.signals import interrupt_on_sigterm
from lab.kernels import catalog
from lab.kernels.fetch import cached
from lab.labs import feedback
from lab.labs import runner as labs
from lab.settings import cache_dir


def _say(text: str) -> None:
    print(f"lab: {text}", file=sys.stderr, flush=True)


def _select_one(args: argparse.Namespace) -> catalog.KernelSpec:
    specs = catalog.select(catalog.load_catalog(), kernels=args.kernel, arches=getattr(args, "arch", None),
                           userland=args.userland)
    if len(specs) != 1 and args.kernel not in (None, ""):
        return specs[0] if len(specs) == 1 else _too_many(specs)
    return specs[0]


def _too_many(specs: list[catalog.KernelSpec]) -> catalog.KernelSpec:
    raise UsageError(f"this command takes one kernel, the selection has {len(specs)}",
                     hint=f"name one of {', '.join(s.id for s in specs)}")


def _boot(spec: catalog.KernelSpec, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    kernel = guest_kernel.prepare(spec, progress=_say)
    # Before the accelerator probe: without QEMU the probe would only say "TCG".
    guest_kernel.check_host(kernel)
    kernel = guest_kernel.with_rootfs(kernel, progress=_say)
    accel = guest_kernel.choose_accel(kernel)
    timeouts = timeouts_for(kvm=accel.kvm, foreign=spec.foreign, boot=args.boot_timeout,
                            command=args.command_timeout)
    guest = guest_kernel.new_guest(kernel, accel=accel, timeouts=timeouts, append=_kernel_args(args), progress=_say)
    _say(f"booting {kernel.id} ({kernel.release}) under {accel.name.upper()}; console log: {guest.log_path}")
    return kernel, guest


def _kernel_args(args: argparse.Namespace) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(args.kernel_args or ""))
    except ValueError as error:
        raise UsageError(f"--kernel-args {args.kernel_args!r}: {error}", hint="quote words as a shell would") from None


def cmd_run(args: argparse.Namespace) -> int:
    lab = labs.get_lab(args.lab)
    return _run_or_check(args, lab=lab, program=None)


def cmd_check(args: argparse.Namespace) -> int:
    lab = labs.get_lab(args.lab)
    program = Path(args.file).resolve()
    if not program.is_file():
        raise UsageError(f"no such file: {args.file}", hint="give the path of your BCC Python program")
    return _run_or_check(args, lab=lab, program=program)


def _run_or_check(args: argparse.Namespace, *, lab: labs.Lab, program: Path | None) -> int:
    specs = catalog.select(catalog.load_catalog(), kernels=args.kernel, arches=args.arch, userland=args.userland)
    if program is None and len(specs) > 1:
        _too_many(specs)
    failures = 0
    for spec in specs:
        from lab.labs.constraints import kernel_matches

        if lab.kernel_constraint and not kernel_matches(spec.series, lab.kernel_constraint):
            print(f"{spec.id}: SKIP (lab {lab.name} needs kernel {lab.kernel_constraint})")
            continue
        kernel, guest = _boot(spec, args)
        started = time.monotonic()
        try:
            with guest:
                _say(f"{kernel.id}: booted in {guest.boot_seconds:.1f}s; running {program or lab.program.name}")
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


def cmd_load(args: argparse.Namespace) -> int:
    import json

    from lab.report import loads

    source = Path(args.file).resolve()
    if not source.is_file():
        raise UsageError(f"no such file: {args.file}", hint="give a compiled BPF object (.bpf.o) or its C source (.bpf.c)")
    specs = catalog.select(catalog.load_catalog(), kernels=args.kernel, arches=args.arch, userland=args.userland)
    results: dict[str, loads.Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="ebpf-lab-load-") as scratch:
        for spec in specs:
            obj = _bpf_object(source, machine=spec.arch.name, scratch=Path(scratch))
            _, guest = _boot(spec, args)
            try:
                with guest:
                    results[spec.id] = guest.load(obj, attach=not args.no_attach)
            except GuestError as error:
                results[spec.id] = error
    print(json.dumps(loads.as_json(results), indent=2) if args.json else loads.render(results), end="\n" if args.json else "")
    return 0 if loads.ok(results) else 1


def _bpf_object(source: Path, *, machine: str, scratch: Path) -> Path:
    """*source* itself, or its C compiled on the host for *machine* (into *scratch*)."""
    if source.suffix != ".c":
        return source
    from lab.host import clang

    out = scratch / machine / source.with_suffix(".o").name
    _say(f"compiling {source.name} for {machine} with clang")
    return clang.compile_bpf(source, out, machine=machine)


def cmd_shell(args: argparse.Namespace) -> int:
    from lab.boot.prepared import boot_command
    from lab.guest.guest import die_with_parent

    spec = _select_one(args)
    kernel = guest_kernel.with_rootfs(guest_kernel.prepare(spec, progress=_say), progress=_say)
    guest_kernel.check_host(kernel)
    accel = guest_kernel.choose_accel(kernel)
    # The guest the tests boot, prepared the same way; only its console shell is a person's.
    argv = boot_command(guest_kernel.vm_config(kernel, accel=accel, append=_kernel_args(args), interactive=True))
    _say(f"{kernel.id} under {accel.name.upper()}; labs are in {labs.LABS_DIR}; leave with 'exit' or Ctrl-D")
    # Not process.run: the session is the user's, on this terminal, for as long as they like.
    # QEMU puts the terminal in raw mode, so Ctrl-C reaches the guest; it goes when we go.
    try:
        return subprocess.call(argv, env=tools.virtme_environ(), preexec_fn=die_with_parent)
    except OSError as exc:
        raise HostError(f"cannot start {argv[0]} for a shell in {kernel.id}: {exc.strerror}",
                        hint=tools.install_hint(Path(argv[0]).name)) from None


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
        kernel = guest_kernel.with_rootfs(guest_kernel.prepare(spec, progress=_say), progress=_say)
        print(f"{kernel.id}: {kernel.release} ({kernel.files.version}) in {kernel.files.root}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from lab.labs.constraints import kernel_matches

    specs = list(catalog.load_catalog().values())
    for lab in labs.all_labs().values():
        need = f"kernel {lab.kernel_constraint}" if lab.kernel_constraint else "any kernel"
        # Name the catalog kernels a teacher cannot use for this lab.
        unfit = sorted({s.id for s in specs if lab.kernel_constraint and not kernel_matches(s.series, lab.kernel_constraint)})
        if unfit:
            need += f"; not {', '.join(unfit)}"
        print(f"{lab.name:<12} {lab.title} — {lab.summary} [{need}]")
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


def cmd_matrix(args: argparse.Namespace) -> int:
    import json

    from lab.pytest_plugin.shard import ci_matrix

    specs = catalog.select(catalog.load_catalog(), kernels=args.kernel, arches=args.arch)
    if args.shards is not None and args.shards < 1:
        raise UsageError(f"--shards {args.shards}: need at least 1", hint="e.g. --shards 4")
    entries = ci_matrix(specs, shards=args.shards)
    if args.shards and args.shards > len(entries):
        _say(f"only {len(entries)} kernels selected; using {len(entries)} shards instead of {args.shards}")
    if args.format == "json":
        print(json.dumps({"include": entries}, separators=(",", ":")))
    else:
        for entry in entries:
            print(f"{entry['shard']:<6} {entry['arch']:<16} {entry['kernel']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from lab.report import report

    paths = [Path(p) for p in args.results]
    matrix = report.load(paths, known_kernels=list(catalog.load_catalog()))
    print(report.render_table(matrix), end="")
    if args.html:
        out = Path(args.html)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report.render_html(matrix, title=args.title))
        _say(f"HTML report: {out}")
    return 0


def _with_userland(p: argparse.ArgumentParser) -> None:
    p.add_argument("--userland", default=None, metavar="WHICH",
                   help="the guest's programs: 'host' (default on the host's arch), 'debian' (the kernel's own "
                        "Debian suite, from a root disk) or 'debian:SUITE'")


def _with_kernel(p: argparse.ArgumentParser) -> None:
    """The options of a command that boots a guest."""
    p.add_argument("--kernel", "-k", help="kernel id, series, comma list, glob or 'all' (default: the 6.1 kernel)")
    p.add_argument("--arch", help="architecture(s): x86_64, arm64, comma list or 'all'")
    p.add_argument("--boot-timeout", type=float, help="seconds to wait for the guest's shell")
    p.add_argument("--command-timeout", type=float, help="seconds each guest command may take")
    p.add_argument("--kernel-args", metavar="WORDS",
                   help="words added to the guest kernel's command line, e.g. 'lsm=lockdown,capability,bpf'")
    _with_userland(p)


def _guest_commands(sub) -> None:  # type: ignore[no-untyped-def]
    p = sub.add_parser("run", help="run a lab's reference program live in a guest (default lab: hello)")
    p.add_argument("lab", nargs="?", default="hello")
    _with_kernel(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("check", help="check a student's program against a lab")
    p.add_argument("lab")
    p.add_argument("file")
    _with_kernel(p)
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("load", help="load (and attach) a BPF object's programs on each kernel; say why any is rejected")
    p.add_argument("file", help="a compiled BPF object (.bpf.o), or BPF C (.bpf.c) to compile on the host first")
    p.add_argument("--no-attach", action="store_true", help="only load, do not attach")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    _with_kernel(p)
    p.set_defaults(func=cmd_load)
    p = sub.add_parser("shell", help="an interactive shell in a guest")
    _with_kernel(p)
    p.set_defaults(func=cmd_shell)


def _host_commands(sub) -> None:  # type: ignore[no-untyped-def]
    p = sub.add_parser("kernels", help="the kernel catalog and what is cached")
    p.set_defaults(func=cmd_kernels)
    p = sub.add_parser("fetch", help="download kernels into the cache")
    p.add_argument("kernels", nargs="*")
    p.add_argument("--arch")
    _with_userland(p)
    p.set_defaults(func=cmd_fetch)
    p = sub.add_parser("list", help="the labs")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("doctor", help="check the host: tools, accelerator, cache")
    p.set_defaults(func=cmd_doctor)
    p = sub.add_parser("setup", help="install the Debian packages ebpf-lab needs (as root)")
    p.set_defaults(func=cmd_setup)


def _ci_commands(sub) -> None:  # type: ignore[no-untyped-def]
    p = sub.add_parser("matrix", help="the selected kernels as a GitHub Actions strategy.matrix (one entry per shard)")
    p.add_argument("--kernel", "-k", help="kernel id, series, comma list, glob or 'all' (default: the 6.1 kernel)")
    p.add_argument("--arch", help="architecture(s): x86_64, arm64, comma list or 'all'")
    p.add_argument("--shards", type=int, help="number of CI jobs (default: one per kernel); run each with --shard K/N")
    p.add_argument("--format", choices=("json", "text"), default="json")
    p.set_defaults(func=cmd_matrix)
    p = sub.add_parser("report", help="merge JUnit XML files (of several shards) into a kernel x test matrix")
    p.add_argument("results", nargs="+", metavar="RESULTS", help="JUnit XML files written by pytest --junitxml")
    p.add_argument("--html", metavar="OUT", help="also write a self-contained HTML report here")
    p.add_argument("--title", default="ebpf-lab test report")
    p.set_defaults(func=cmd_report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab", description="Run eBPF labs in throw-away VMs on real kernels.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every command run")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _guest_commands(sub)
    _host_commands(sub)
    _ci_commands(sub)
    return parser

def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    # SIGTERM behaves like Ctrl-C, so every guest is shut down on the way out.
    interrupt_on_sigterm(replace_others=True)
    try:
        return args.func(args)
    except LabError as error:
        print(f"lab: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("lab: interrupted; guests stopped", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `lab kernels | head`: the reader left, which is no error of ours. Python would
        # otherwise complain again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
