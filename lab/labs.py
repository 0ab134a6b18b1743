"""Labs: a directory of data plus a BCC program, and the runner that checks one in a guest.

A lab directory (``lab/labs/<name>/``) holds ``lab.toml`` (title, readiness check,
trigger commands, expected output, kernel requirement, hints), ``README.md`` (what it
teaches) and the reference program. Adding a lab is adding a directory.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import console
from .errors import CatalogError, LabFailure, UsageError
from .guest import Guest, OutputSink, ProcessEnded
from .errors import CommandTimeout

LABS_DIR = Path(__file__).resolve().parent / "labs"

#: Default readiness check: some process holds a perf event, i.e. a kprobe or tracepoint is attached.
DEFAULT_READY = "ls -l /proc/[0-9]*/fd 2>/dev/null | grep -q 'perf_event'"


@dataclass(frozen=True)
class Lab:
    """One lab, as its directory describes it."""

    name: str
    title: str
    summary: str
    directory: Path
    #: The reference solution.
    program: Path
    #: Shell command that succeeds once the program's probes are attached.
    ready: str
    #: Commands run through the console to make the probed event happen.
    trigger: tuple[str, ...]
    #: Regex the program's output must match.
    expect: str
    #: Kernel series requirement, as for ``@pytest.mark.kernel`` (e.g. ``>=5.8``), or empty.
    kernel: str = ""
    #: Shown to a student whose program fails.
    hints: tuple[str, ...] = ()
    #: Seconds the expectation may take to appear after the trigger.
    expect_timeout: float = 30.0
    #: Commands run before the program starts (e.g. set up an interface).
    setup: tuple[str, ...] = ()
    #: Optional ``check(output) -> str | None`` from ``check.py``: an error message, or None if fine.
    checker: Callable[[str], str | None] | None = field(default=None, compare=False)


def load_lab(directory: Path) -> Lab:
    meta = directory / "lab.toml"
    try:
        data = tomllib.loads(meta.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogError(f"malformed lab file {meta}: {exc}", hint="fix the lab's lab.toml") from None
    try:
        checker = None
        check_py = directory / "check.py"
        if check_py.is_file():
            spec = importlib.util.spec_from_file_location(f"ebpf_lab_check_{directory.name}", check_py)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            checker = module.check
        return Lab(
            name=directory.name, title=data["title"], summary=data.get("summary", ""), directory=directory,
            program=directory / data.get("program", "program.py"), ready=data.get("ready", DEFAULT_READY),
            trigger=tuple(data.get("trigger", [])), expect=data["expect"], kernel=data.get("kernel", ""),
            hints=tuple(data.get("hints", [])), expect_timeout=float(data.get("expect_timeout", 30)),
            setup=tuple(data.get("setup", [])), checker=checker,
        )
    except KeyError as exc:
        raise CatalogError(f"{meta}: missing {exc}", hint="every lab needs 'title' and 'expect'") from None


def all_labs() -> dict[str, Lab]:
    return {d.name: load_lab(d) for d in sorted(LABS_DIR.iterdir()) if (d / "lab.toml").is_file()}


def get_lab(name: str) -> Lab:
    labs = all_labs()
    if name not in labs:
        raise UsageError(f"unknown lab {name!r}", hint=f"known labs: {', '.join(labs)} (see 'lab list')")
    return labs[name]


@dataclass
class LabResult:
    """How a lab run went, with the times the benchmark and the report show."""

    lab: str
    passed: bool
    #: Program start until its probes were attached (BCC import + compile + load + attach).
    attach_seconds: float = 0.0
    #: Trigger until the expected output appeared.
    trace_seconds: float = 0.0
    #: The whole lab (not counting boot).
    total_seconds: float = 0.0
    output: str = ""
    matched: str = ""


def run_lab(guest: Guest, lab: Lab, *, program: Path | None = None, python: str = "/usr/bin/python3",
            attach_timeout: float = 180.0, on_output: OutputSink | None = None) -> LabResult:
    """Run *program* (default: the lab's reference) in *guest*, trigger, and check the output.

    Raises LabFailure with the program's own error and the lab's hint when it fails.
    """
    program = (program or lab.program).resolve()
    started = time.monotonic()
    for command in lab.setup:
        guest.run(command, check=True)
    # A root-disk guest sees the lab directory through a share, and gets a copy of a program it cannot see.
    guest.run(f"cd {guest.guest_path(lab.directory) or '/tmp'}")
    # Not exec: the wrapper shell must outlive Python to record its exit status (spawn() writes
    # it after the command), or a program that fails at once looks like one still attaching.
    process = guest.spawn(f"{python} {guest.visible_path(program)}", on_output=on_output)
    try:
        _wait_ready(guest, lab, process, timeout=attach_timeout)
        attached = time.monotonic()
        for command in lab.trigger:
            guest.run(command, timeout=60)
        try:
            match = process.expect(lab.expect, timeout=lab.expect_timeout * guest_scale(guest))
        except ProcessEnded as exc:
            raise _failure(lab, "the program exited before printing what the lab expects", exc.process.output) from None
        except CommandTimeout:
            raise _failure(lab, f"no output matching {lab.expect!r} after the trigger", process.output) from None
        traced = time.monotonic()
        if lab.checker is not None:
            time.sleep(1.0)
            process.poll()
            problem = lab.checker(process.output)
            if problem:
                raise _failure(lab, problem, process.output)
    except KeyboardInterrupt:
        # Ctrl-C/SIGTERM: the guest is about to be stopped, and a console interrupted
        # mid-command would only turn the interrupt into a confusing parse error.
        raise
    except BaseException:
        with contextlib.suppress(Exception):  # the failure at hand says more than the cleanup's
            process.close()
        raise
    process.close()
    result = LabResult(lab=lab.name, passed=True, attach_seconds=attached - started, trace_seconds=traced - attached,
                       total_seconds=time.monotonic() - started, output=process.output, matched=match.group(0))
    guest.lab_results.append(result)
    return result


def guest_scale(guest: Guest) -> float:
    return 1.0 if guest.config.kvm else 2.0


def _wait_ready(guest: Guest, lab: Lab, process, *, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        if guest.run(lab.ready, timeout=30).ok:
            return
        if process.poll() is not None:
            output = process.output
            if re.search(r":\d+:\d+: (fatal )?error:", output):
                what = "the BPF program does not compile"
            elif re.search(r"[Ff]ailed to attach|cannot attach|Failed to load", output):
                what = "the BPF program could not be loaded or attached"
            else:
                what = f"the program exited with status {process.returncode} before attaching its probes"
            raise _failure(lab, what, output)
        if time.monotonic() > deadline:
            raise _failure(lab, f"probes not attached within {timeout:.0f}s (readiness check: {lab.ready})",
                           process.output)
        time.sleep(0.3)


def _failure(lab: Lab, what: str, output: str) -> LabFailure:
    error = console.last_error_line(output)
    hint = lab.hints[0] if lab.hints else ""
    message = f"lab {lab.name}: {what}" + (f": {error}" if error else "")
    return LabFailure(message, hint=hint, output=output)
