"""The commands about BPF objects and kernels' BPF: load an object everywhere, probe features."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from lab.cli.common import boot, say, with_kernel
from lab.errors import GuestError, UsageError
from lab.kernels import catalog


def cmd_load(args: argparse.Namespace) -> int:
    from lab.report import loads

    source = Path(args.file).resolve()
    if not source.is_file():
        raise UsageError(f"no such file: {args.file}", hint="give a compiled BPF object (.bpf.o) or its C source (.bpf.c)")
    specs = catalog.select(catalog.load_catalog(), kernels=args.kernel, arches=args.arch, userland=args.userland)
    results: dict[str, loads.Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="ebpf-lab-load-") as scratch:
        for spec in specs:
            obj = _bpf_object(source, machine=spec.arch.name, big_endian=spec.arch.big_endian, scratch=Path(scratch))
            _, guest = boot(spec, args)
            try:
                with guest:
                    results[spec.id] = guest.load(obj, attach=not args.no_attach)
            except GuestError as error:
                results[spec.id] = error
    print(json.dumps(loads.as_json(results), indent=2) if args.json else loads.render(results), end="\n" if args.json else "")
    return 0 if loads.ok(results) else 1


def _bpf_object(source: Path, *, machine: str, big_endian: bool, scratch: Path) -> Path:
    """*source* itself, or its C compiled on the host for *machine* and its byte order (into *scratch*)."""
    if source.suffix != ".c":
        return source
    from lab.host import clang

    out = scratch / machine / source.with_suffix(".o").name
    say(f"compiling {source.name} for {machine} with clang")
    return clang.compile_bpf(source, out, machine=machine, big_endian=big_endian)



def cmd_features(args: argparse.Namespace) -> int:
    from lab.guest import features
    from lab.report import grid

    specs = catalog.select(catalog.load_catalog(), kernels=args.kernel or "all", arches=args.arch or "all",
                           userland=args.userland)
    if args.diff:
        specs = [s for s in specs if s.id in args.diff]
        if len(specs) != 2:
            raise UsageError(f"--diff {' '.join(args.diff)}: name two catalog kernels", hint="see 'lab kernels'")
    table = {spec.id: _features(spec, args) for spec in specs}
    rows = features.matrix_rows(table, everything=args.all)
    if args.json:
        print(json.dumps({k: {"present": sorted(f.present), "absent": sorted(f.absent)} for k, f in table.items()},
                         indent=2))
        return 0
    if not rows:
        print(f"no BPF feature differs between {', '.join(table)} ({len(features.matrix_rows(table, everything=True))}"
              " probed; --all lists them)")
        return 0
    print("\n".join(grid.render_grid("feature", rows, list(table), lambda r, k: table[k].state(r))))
    if not args.all:
        print(f"({len(rows)} features differ; --all for every one, --json for helpers per program type; "
              "?: not probed by that guest's bpftool)")
    return 0


def _features(spec: catalog.KernelSpec, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The kernel's features from the cache, or probed in a guest booted for it (then cached)."""
    from lab.guest import features
    from lab.guest import kernel as guest_kernel

    found = features.cached(guest_kernel.prepare(spec, progress=say))
    if found is not None:
        return found
    kernel, guest = boot(spec, args)
    with guest:
        return features.probe(guest, kernel)


def register(sub) -> None:  # type: ignore[no-untyped-def]
    p = sub.add_parser("load", help="load (and attach) a BPF object's programs on each kernel; say why any is rejected")
    p.add_argument("file", help="a compiled BPF object (.bpf.o), or BPF C (.bpf.c) to compile on the host first")
    p.add_argument("--no-attach", action="store_true", help="only load, do not attach")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    with_kernel(p)
    p.set_defaults(func=cmd_load)
    p = sub.add_parser("features", help="which BPF program/map types, helpers and features each kernel has (bpftool probe)")
    p.add_argument("--all", action="store_true", help="every feature, not only those that differ")
    p.add_argument("--diff", nargs=2, metavar="KERNEL", help="only these two kernels")
    p.add_argument("--json", action="store_true", help="everything as JSON, helpers per program type too")
    with_kernel(p)
    p.set_defaults(func=cmd_features)
