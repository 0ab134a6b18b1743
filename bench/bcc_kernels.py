"""Which BCC release compiles against which kernel: a BCC program including linux/fs.h on each
(kernel, userland).

    python bench/bcc_kernels.py [--kernel all] [--arch all] [--userland host,debian:trixie]

tests/data/bpf/bcc_fs.py is the tutorial's program with ``#include <linux/fs.h>`` (as
execsnoop-bpfcc has): the header an older BCC's clang fails on when the kernel is newer than
the BCC release. Each cell runs it in a real guest, triggers /bin/true and checks its line
came; a failure shows the first compile error. Prints a Markdown table (the one in the README)
with the BCC version each userland brought.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.errors import LabError  # noqa: E402
from lab.guest import console  # noqa: E402
from lab.guest import kernel as guest_kernel  # noqa: E402
from lab.guest.timeouts import timeouts_for  # noqa: E402
from lab.kernels import catalog  # noqa: E402

PROGRAM = Path(__file__).resolve().parent.parent / "tests" / "data" / "bpf" / "bcc_fs.py"


def measure(spec: catalog.KernelSpec) -> tuple[str, str]:
    """(BCC version, verdict) for execsnoop-bpfcc in a guest of *spec*."""
    kernel = guest_kernel.with_rootfs(guest_kernel.prepare(spec))
    accel = guest_kernel.choose_accel(kernel)
    guest = guest_kernel.new_guest(kernel, accel=accel, timeouts=timeouts_for(kvm=accel.kvm, foreign=spec.foreign))
    with guest:
        version = guest.run("python3 -c 'import bcc; print(bcc.__version__)'").output.strip().splitlines()[-1]
        tracer = guest.spawn(f"python3 {guest.copy_in(PROGRAM)}")
        try:
            # Attached once the kernel lists the kprobe; given up on once the program ended (a compile error).
            guest.run(f"(for i in $(seq {int(guest.timeouts.attach)}); do grep -q _sys_execve "
                      f"/sys/kernel/debug/kprobes/list && exit 0; [ -e {tracer.status_file} ] && exit 1; sleep 1; done)",
                      timeout=guest.timeouts.attach + 60)
            guest.run("/bin/true")
            tracer.expect(r"Hello World! \(fs.h\)", timeout=30 * guest.timeouts.expect_scale)
            return version, "works"
        except LabError:
            error = console.compile_error(tracer.output) or console.tail(tracer.output, lines=1)
            return version, f"fails: `{error.split('error: ', 1)[-1][:90]}`"
        finally:
            tracer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel", default="all")
    parser.add_argument("--arch", default="all")
    parser.add_argument("--userland", default="host,debian:trixie", help="comma list; foreign arches use their own suite")
    args = parser.parse_args()
    rows = []
    for spec in catalog.select(catalog.load_catalog(), kernels=args.kernel, arches=args.arch):
        userlands = args.userland.split(",") if not spec.foreign else [None]
        for userland in userlands:
            [target] = catalog.select(catalog.load_catalog(), kernels=spec.id, userland=userland)
            label = userland or f"debian:{target.userland}"
            print(f"bench: {spec.id} with {label} ...", file=sys.stderr, flush=True)
            try:
                version, verdict = measure(target)
            except LabError as error:
                version, verdict = "?", f"guest failed: {error.message[:80]}"
            rows.append((spec.id, label, version, verdict))
            print(f"bench: {spec.id} {label} BCC {version}: {verdict}", file=sys.stderr, flush=True)
    print("| kernel | userland | BCC | a BCC program including linux/fs.h |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
