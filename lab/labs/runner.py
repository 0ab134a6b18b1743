"""Labs: a directory of data plus a BPF program, and the runner that checks one in a guest.

A lab directory (``lab/labs/<name>/``) holds ``lab.toml`` (title, kind, readiness check,
trigger commands, expected output, kernel requirement, hints), ``README.md`` (what it
teaches) and the reference program. Adding a lab is adding a directory.

A lab's ``kind`` says what its program is and how it runs in the guest (see KINDS): a BCC
Python program, a libbpf CO-RE ``.bpf.c`` (compiled on the host with clang, loaded and
attached in the guest by its libbpf), or a bpftrace script.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import re
import shlex
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab.errors import (
    CatalogError,
    CommandTimeout,
    CompileError,
    LabFailure,
    UsageError,
)
from lab.guest import bpf_objects, console, features, verifier
from lab.guest import shell as guest_shell
from lab.guest.background import POLL_CHUNK, OutputSink, ProcessEnded
from lab.guest.guest import Guest
from lab.guest.kernel import Kernel
from lab.host import clang
from lab.host.locks import fill_once
from lab.host.resources import package_dir
from lab.kernels.catalog import KernelSpec
from lab.settings import cache_dir

LABS_DIR = package_dir("lab.labs")

#: Default readiness check: some process holds a perf event, i.e. a kprobe or tracepoint is attached.
DEFAULT_READY = "ls -l /proc/[0-9]*/fd 2>/dev/null | grep -q 'perf_event'"

#: Kinds of failure a lab can have a hint for, in the order a run can meet them.
FAILURE_KINDS = {
    "compile": "the BPF C code does not compile",
    "attach": "the BPF program could not be loaded or attached",
    "exited": "the program exited early",
    "not_ready": "the probes were never attached",
    "no_output": "the program printed nothing after the trigger",
    "wrong_output": "the program's output lacks what the lab expects",
    "check": "the lab's check.py rejected the output",
}

#: Kinds of lab program: what it is, and the guest program it needs.
KINDS = {
    "bcc": ("a BCC Python program", "python3"),
    "libbpf": ("a libbpf CO-RE program in C (.bpf.c), compiled on the host", "python3"),
    "bpftrace": ("a bpftrace script", "bpftrace"),
}


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
    kernel_constraint: str = ""
    #: Shown to a student whose program fails, whatever the failure.
    hints: tuple[str, ...] = ()
    #: Seconds the expectation may take to appear after the trigger.
    expect_timeout: float = 30.0
    #: Commands run before the program starts (e.g. set up an interface).
    setup: tuple[str, ...] = ()
    #: Optional ``check(output) -> str | None`` from ``check.py``: an error message, or None if fine.
    checker: Callable[[str], str | None] | None = field(default=None, compare=False)
    #: Position in ``lab list`` (the tutorial's order); ties go by name.
    order: int = 100
    #: Hints for one kind of failure (see FAILURE_KINDS), from a ``[hints]`` table in lab.toml.
    kind_hints: Mapping[str, str] = field(default_factory=dict)
    #: What the program is (a key of KINDS).
    kind: str = "bcc"
    #: BPF features the kernel must have (lab.guest.features names, e.g. ``map:ringbuf``).
    features: tuple[str, ...] = ()
    #: What else the guest must do, in the names of a catalog entry's ``lacks`` (``entry-kprobes``).
    needs: tuple[str, ...] = ()

    @property
    def requirements(self) -> tuple[str, ...]:
        """``needs``, and the program's runner when it is not BCC's python3 (a bpftrace lab needs bpftrace)."""
        return (*self.needs, *(("bpftrace",) if self.kind == "bpftrace" else ()))

    def hint_for(self, kind: str) -> str:
        """The hint for a failure of *kind*: the specific one if the lab has it, else the general ones."""
        return self.kind_hints.get(kind) or " ".join(self.hints)


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
        general, kinds = _parse_hints(data.get("hints", []), meta)
        return Lab(
            name=directory.name, title=data["title"], summary=data.get("summary", ""), directory=directory,
            program=directory / data.get("program", "program.py"), ready=data.get("ready", DEFAULT_READY),
            trigger=tuple(data.get("trigger", [])), expect=data["expect"], kernel_constraint=data.get("kernel", ""),
            hints=general, kind_hints=kinds, expect_timeout=float(data.get("expect_timeout", 30)),
            setup=tuple(data.get("setup", [])), checker=checker, order=int(data.get("order", 100)),
            kind=_kind(data.get("kind", "bcc"), meta), features=tuple(data.get("features", [])),
            needs=tuple(data.get("needs", [])),
        )
    except KeyError as exc:
        raise CatalogError(f"{meta}: missing {exc}", hint="every lab needs 'title' and 'expect'") from None


def _kind(value: object, meta: Path) -> str:
    if value not in KINDS:
        raise CatalogError(f"{meta}: unknown kind {value!r}", hint=f"known kinds: {', '.join(KINDS)}")
    return str(value)


def _parse_hints(value: object, meta: Path) -> tuple[tuple[str, ...], dict[str, str]]:
    """``hints = [...]`` (shown for any failure) or a ``[hints]`` table keyed by failure kind.

    In the table, ``general`` (a string or list) is shown when no specific hint fits.
    """
    if isinstance(value, list):
        return tuple(str(h) for h in value), {}
    if not isinstance(value, dict):
        raise CatalogError(f"{meta}: 'hints' must be a list or a table", hint="see the count lab's lab.toml")
    table = dict(value)
    general = table.pop("general", [])
    unknown = sorted(set(table) - set(FAILURE_KINDS))
    if unknown:
        raise CatalogError(f"{meta}: unknown hint kind(s) {', '.join(unknown)}",
                           hint=f"known kinds: general, {', '.join(FAILURE_KINDS)}")
    return (general,) if isinstance(general, str) else tuple(general), {k: str(v) for k, v in table.items()}


def all_labs() -> dict[str, Lab]:
    found = [load_lab(d) for d in LABS_DIR.iterdir() if (d / "lab.toml").is_file()]
    return {lab.name: lab for lab in sorted(found, key=lambda lab: (lab.order, lab.name))}


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
            attach_timeout: float | None = None, on_output: OutputSink | None = None,
            keep_guest: bool = True) -> LabResult:
    """Run *program* (default: the lab's reference) in *guest*, trigger, and check the output.

    The waits are the guest's: *attach_timeout* defaults to ``guest.timeouts.attach``, and the
    lab's ``expect_timeout`` is multiplied by ``guest.timeouts.expect_scale``.

    Raises LabFailure with the program's own error and the lab's hint when it fails. With
    *keep_guest* false the caller stops the guest next, so a passing program is left
    running: stopping it (BCC detaching its probes) took 1.3 s of an emulated arm64 guest.
    """
    program = (program or lab.program).resolve()
    started = time.monotonic()
    for command in lab.setup:
        guest.run(command, check=True)
    # A root-disk guest sees the lab directory through a share, and gets a copy of a program it cannot see.
    guest.run(f"cd {shlex.quote(guest.guest_path(lab.directory) or '/tmp')}")
    # No `exec`: the spawn script's `echo $? > rc` after the command must run, or a program
    # that dies (a compile error) is only noticed when the attach timeout runs out.
    mark = guest.transcript_mark()
    process = guest.spawn(shlex.join(program_command(guest, lab, program, python=python)), on_output=on_output)
    try:
        _wait_ready(guest, lab, process, timeout=attach_timeout or guest.timeouts.attach, mark=mark)
        attached = time.monotonic()
        for command in lab.trigger:
            guest.run(command, timeout=60)
        match = _expect(guest, lab, process, mark=mark)
        traced = time.monotonic()
        if lab.checker is not None:
            time.sleep(1.0)
            process.poll()
            problem = lab.checker(process.output)
            if problem:
                raise _failure(lab, "check", problem, process.output)
    except KeyboardInterrupt:
        # Ctrl-C/SIGTERM: the guest is about to be stopped, and a console interrupted
        # mid-command would only turn the interrupt into a confusing parse error.
        raise
    except BaseException:
        with contextlib.suppress(Exception):  # the failure at hand says more than the cleanup's
            process.close()
        raise
    if keep_guest:
        process.close()
    result = LabResult(lab=lab.name, passed=True, attach_seconds=attached - started, trace_seconds=traced - attached,
                       total_seconds=time.monotonic() - started, output=process.output, matched=match.group(0))
    guest.lab_results.append(result)
    return result


def unsupported(lab: Lab, spec: KernelSpec) -> str | None:
    """Why *lab* cannot run on *spec* (what it needs that the catalog says the guest lacks), or None. Pure."""
    lacking = spec.lacking
    reasons = [f"{need}: {lacking[need]}" for need in lab.requirements if need in lacking]
    return f"lab {lab.name} needs what {spec.id} lacks: {'; '.join(reasons)}" if reasons else None


def missing_features(guest: Guest, lab: Lab, kernel: Kernel) -> list[str]:
    """The BPF features *lab* needs that *kernel* lacks (probed in *guest* unless cached)."""
    if not lab.features:
        return []
    have = features.cached(kernel) or features.probe(guest, kernel)
    return have.missing(lab.features)


def program_command(guest: Guest, lab: Lab, program: Path, *, python: str = "/usr/bin/python3") -> list[str]:
    """The guest command that runs *program* as a program of *lab*'s kind (a libbpf one is compiled first)."""
    tool = KINDS[lab.kind][1]
    if tool != "python3" and not guest.run(f"command -v {tool}", timeout=60).ok:
        raise LabFailure(f"lab {lab.name}: {tool} is not installed in this guest", kind="exited",
                         hint=f"install {tool} on the host (lab setup), or rebuild the guest's root filesystem")
    if lab.kind == "bpftrace":
        return ["bpftrace", guest.copy_in(program)]
    if lab.kind == "libbpf":
        obj = _compile(lab, program, machine=guest.config.arch.name, big_endian=guest.config.arch.big_endian)
        return [python, guest.copy_in(bpf_objects.LOADER), "run", guest.copy_in(obj), "--trace-pipe"]
    return [python, guest.copy_in(program)]


def _compile(lab: Lab, program: Path, *, machine: str, big_endian: bool) -> Path:
    """A libbpf lab's program compiled on the host, into the cache: one object per source text and arch."""
    digest = hashlib.sha256(program.read_bytes()).hexdigest()[:16]
    entry = cache_dir() / "objects" / machine / digest
    obj = entry / f"{lab.name}.bpf.o"

    def fill(tmp: Path) -> None:
        clang.compile_bpf(program, tmp / obj.name, machine=machine, big_endian=big_endian)

    try:
        fill_once(entry, what=f"compiling {program.name}", ready=obj.is_file, fill=fill)
    except CompileError as error:
        raise _failure(lab, "compile", "the BPF program does not compile", error.output) from None
    return obj


def _expect(guest: Guest, lab: Lab, process, *, mark: int) -> re.Match[str]:  # type: ignore[no-untyped-def]
    """The lab's expected output from the triggered *process*, or LabFailure saying why not."""
    try:
        return process.expect(lab.expect, timeout=lab.expect_timeout * guest.timeouts.expect_scale)
    except ProcessEnded as exc:
        output = exc.process.output
        kind, what = _exit_kind(output, returncode=exc.process.returncode, oom=guest.out_of_memory(since=mark))
        raise _failure(lab, kind, f"{what} before printing what the lab expects", output) from None
    except CommandTimeout:
        kind = "wrong_output" if process.output.strip() else "no_output"
        what = f"no output matching {lab.expect!r} after the trigger"
        if process.backlog > POLL_CHUNK:
            what += (f"; it printed faster than the console carries ({process.backlog / 2**20:.1f} MiB"
                     " not read yet; below are the last lines read)")
        raise _failure(lab, kind, what, process.output) from None


def _wait_ready(guest: Guest, lab: Lab, process, *, timeout: float, mark: int = 0) -> None:  # type: ignore[no-untyped-def]
    # The guest waits for itself, in one console command: polling from the host cost two
    # console round trips and a few processes per check, and under TCG that slowed the very
    # compile it was waiting for (a hello lab spent 4 s more with 1 s polls).
    answer = guest.run(guest_shell.ready_loop(lab.ready, status_file=process.status_file, timeout=timeout),
                       timeout=timeout + 60).output.strip().splitlines()
    verdict = answer[-1] if answer else ""
    if verdict == "ready":
        return
    if process.poll() is not None:
        output = process.output
        kind, what = _exit_kind(output, returncode=process.returncode, oom=guest.out_of_memory(since=mark))
        raise _failure(lab, kind, what if kind != "exited" else f"{what} before attaching its probes", output)
    raise _failure(lab, "not_ready", f"probes not attached within {timeout:.0f}s (readiness check: {lab.ready})",
                   process.output)


def _exit_kind(output: str, *, returncode: int | None, oom: Sequence[str] = ()) -> tuple[str, str]:
    """Why a program ended on its own: (failure kind, what to tell the student).

    *oom* names the processes the guest's OOM killer ended meanwhile: a program it killed
    (status 137, SIGKILL) printed nothing about it, and the kernel's line says why.
    """
    if oom and returncode == 137:
        return "exited", f"the program was killed by the guest kernel's OOM killer ({', '.join(oom)}): it ran out of memory"
    header = console.kernel_header_error(output)
    if header:
        # Measured (bench/bcc_kernels.py): on 7.3, bookworm's 0.26 and trixie's 0.31 fail, sid's 0.37 compiles.
        return "compile", (f"BCC cannot compile this kernel's own header {header}: the guest's BCC is older than the "
                           "kernel; run it with a newer BCC, e.g. --userland debian:sid (see the README's BCC x kernel table)")
    if console.compile_error(output):
        return "compile", "the BPF program does not compile"
    # BCC's and libbpf's words when the verifier or the kernel refuses the program, or the probe's target is wrong.
    if re.search(r"[Ff]ailed to attach|cannot attach|[Ff]ailed to load|[Ff]ailed to open|bpf: .*(Invalid argument|Permission denied)", output):
        reason = verifier.classify(output)
        why = f": {verifier.explain(reason)}" if reason != "other" else ""
        return "attach", f"the BPF program could not be loaded or attached{why}"
    return "exited", f"the program exited with status {returncode}"


def _failure(lab: Lab, kind: str, what: str, output: str) -> LabFailure:
    error = console.last_error_line(output) if kind not in ("no_output", "wrong_output", "not_ready") else ""
    message = f"lab {lab.name}: {what}" + (f": {error}" if error else "")
    return LabFailure(message, hint=lab.hint_for(kind), output=output, kind=kind)
