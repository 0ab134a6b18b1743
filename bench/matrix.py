"""Benchmark a whole kernel matrix: the hello test under pytest -n 2 against the hand-run baselines.

    python bench/matrix.py [--kernel all] [--arch x86_64] [--workers 2] [--baselines FILE]

Times ``pytest tests/test_hello.py::test_hello_lab_traces_execve --kernel ... -n WORKERS``
(boots, labs, teardown: what a user waits for) and, in the same run, the hand-run
``vng --run <kernel> --exec ...`` baseline of bench/hello.py for each kernel one after the
other, and prints matrix / sum of baselines. ``--baselines`` reuses the ``baseline_total``
values of a ``bench/hello.py --json`` file instead of measuring them again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from hello import measure_baseline  # noqa: E402

from lab.errors import LabError  # noqa: E402
from lab.guest import kernel as guest_kernel
from lab.kernels import catalog  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel", default="all")
    parser.add_argument("--arch", default="x86_64")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baselines", type=Path, help="bench/hello.py --json output to take the baselines from")
    args = parser.parse_args()
    try:
        specs = catalog.select(catalog.load_catalog(), kernels=args.kernel, arches=args.arch)
        kernels = [guest_kernel.with_rootfs(guest_kernel.prepare(spec)) for spec in specs]
        known = {}
        if args.baselines:
            known = {row["kernel"]: row["baseline_total"] for row in json.loads(args.baselines.read_text())}
        baselines = {}
        for kernel in kernels:
            baselines[kernel.id] = known.get(kernel.id) or measure_baseline(kernel, guest_kernel.choose_accel(kernel))
            print(f"bench: {kernel.id}: baseline {baselines[kernel.id]:.1f}s", file=sys.stderr)
    except LabError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return error.exit_code
    argv = [sys.executable, "-m", "pytest", "tests/test_hello.py::test_hello_lab_traces_execve", "-q",
            "-p", "no:cacheprovider", "--kernel", ",".join(k.id for k in kernels), "-n", str(args.workers)]
    print("+ " + " ".join(argv), file=sys.stderr)
    started = time.monotonic()
    result = subprocess.run(argv, cwd=HERE.parent, timeout=3600, check=False, capture_output=True, text=True)
    matrix = time.monotonic() - started
    print(result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-500:])
    total = sum(baselines.values())
    print(f"matrix ({len(kernels)} kernels, -n {args.workers}): {matrix:.1f}s; sum of baselines {total:.1f}s; "
          f"ratio {matrix / total:.2f}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
