"""The ``lab`` command: the only place that parses arguments, prints for people and picks exit codes.

One module per group of commands, each with a ``register(sub)`` for its subcommands:
``labs`` (run, check, shell, list), ``bpf`` (load, features), ``host`` (kernels, fetch,
doctor, setup), ``ci`` (matrix, report); ``common`` holds what they share.

May import: every other layer (``lab.pytest_plugin.shard`` for the CI matrix).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from lab.cli import bpf, ci, host, labs
from lab.errors import LabError
from lab.host.signals import interrupt_on_sigterm


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab", description="Run eBPF labs in throw-away VMs on real kernels.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every command run")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (labs, bpf, host, ci):
        group.register(sub)
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

