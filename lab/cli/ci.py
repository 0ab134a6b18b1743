"""The CI commands: a GitHub Actions matrix of the selected kernels, and merged reports."""

from __future__ import annotations

import argparse
from pathlib import Path

from lab.cli.common import say
from lab.errors import UsageError
from lab.kernels import catalog


def cmd_matrix(args: argparse.Namespace) -> int:
    import json

    from lab.pytest_plugin.shard import ci_matrix

    specs = catalog.select(catalog.load_catalog(), kernels=args.kernel, arches=args.arch)
    if args.shards is not None and args.shards < 1:
        raise UsageError(f"--shards {args.shards}: need at least 1", hint="e.g. --shards 4")
    entries = ci_matrix(specs, shards=args.shards)
    if args.shards and args.shards > len(entries):
        say(f"only {len(entries)} kernels selected; using {len(entries)} shards instead of {args.shards}")
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
        out.write_text(report.render_html(matrix, title=args.title, features=_probed(matrix.kernels)))
        say(f"HTML report: {out}")
    return 0



def _probed(kernel_ids: list[str]) -> dict:  # type: ignore[type-arg]
    """The cached BPF feature probes of these kernels (those ``lab features`` or a test probed)."""
    from lab.guest import features
    from lab.kernels.fetch import cached

    entries = catalog.load_catalog()
    found = {}
    for kernel_id in kernel_ids:
        files = cached(entries[kernel_id]) if kernel_id in entries else None
        probe = features.load(kernel_id, files.version) if files else None
        if probe is not None:
            found[kernel_id] = probe
    return found


def register(sub) -> None:  # type: ignore[no-untyped-def]
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
