"""Kernel splats in a guest's kernel log: the reports a kernel prints when something went wrong
and it carried on. Pure functions, tested on recorded logs (``tests/data/consoles/``).

A panic is not a splat here: the guest is dead and ``console.find_panic`` reports it. An oops
the kernel survived (panic_on_oops is off in Debian's kernels) is one, and is recognised by
the same first lines (``console.OOPS``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from lab.guest import console

#: Lines kept of one splat: a warning with its registers and call trace is 40-50 lines.
MAX_LINES = 60

#: Each kind of splat by the start of its first line's message, most specific first (a soft
#: lockup and a KASAN report begin with "BUG:" too). Anchored, so a line that only mentions a
#: word is none: the kernel also logs "WARNING: Unprivileged eBPF is enabled..." when a test
#: lets unprivileged users load BPF, and "WARNING: BIOS bug: ..." at boot. The formats are the
#: kernels' own (``strings`` of the catalog's 5.10, 6.1, 6.12 and 7.3 images).
_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((kind, re.compile(pattern)) for kind, pattern in (
    ("soft lockup", r"^watchdog: BUG: soft lockup"),
    # "NMI watchdog: Watchdog detected hard LOCKUP on cpu 1" until 6.1; 7.3 says "watchdog: CPU1: ...".
    ("hard lockup", r"^(?:NMI )?watchdog: (?:CPU\d+: )?Watchdog detected hard LOCKUP"),
    # "rcu: INFO: rcu_preempt self-detected stall on CPU", "... detected (expedited) stalls on CPUs/tasks:",
    # and RCU-tasks' "INFO: rcu_tasks detected stalls on tasks:".
    ("rcu stall", r"^(?:rcu: )?INFO: rcu_\w+ (?:self-)?detected (?:expedited )?stalls?"),
    # 7.3: "INFO: task insmod:12 blocked in I/O wait for more than ..."; the task name may hold spaces.
    ("hung task", r"^INFO: task .+:\d+ blocked\b.* for more than \d+ seconds"),
    ("kasan", r"^BUG: KASAN: "),
    ("ubsan", r"^UBSAN: "),
    # The first lines of an oops (x86 prints "BUG: unable to handle page fault" before its "Oops:"
    # line, arm64 "Internal error: Oops:"); BUG() says "kernel BUG at mm/foo.c:12!".
    ("oops", r"^(?:Internal error: )?(?:" + console.OOPS.pattern + r")|^kernel BUG at |^BUG: unable to handle "),
    # Scheduling while atomic, bad page state, KFENCE, a workqueue that leaked a lock...
    ("bug", r"^BUG: "),
    # WARN(): "WARNING: CPU: 0 PID: 12 at kernel/foo.c:34 func+0x1/0x2" up to 6.12,
    # "WARNING: kernel/foo.c:34 at func+0x1/0x2, CPU#0: insmod/12" in 7.x.
    ("warning", r"^WARNING: (?:CPU: \d+ PID: \d+ at |(?:\S+:\d+ )?at .+, CPU#\d+: )"),
))

#: Lockdep's reports (kernels built with CONFIG_PROVE_LOCKING) are "WARNING: possible circular
#: locking dependency detected", "WARNING: suspicious RCU usage"...: told from other WARNING
#: lines by the ruler of '=' the kernel prints above them.
_LOCKDEP = re.compile(r"^WARNING: ")
_RULER = re.compile(r"^={20,}$")

#: printk's time stamp, ``[   12.345678] ``. Searched anywhere in a console line: the kernel
#: writes to the serial port whenever it likes, so shell output may come first on that line.
#: Lines without one are programs' output, which may say "BUG:" as it likes.
_STAMP = re.compile(r"\[\s*\d+\.\d+\] ")

#: What ends a splat: the end of a trace (warnings, oopses; UBSAN since 6.5), or the end of
#: x86's task stack (hung tasks, lockups, stalls, scheduling while atomic).
_END = re.compile(r"^---\[ end trace|^ *</TASK>")
#: KASAN's report (and UBSAN's before 6.5) goes on after its stack, with the stacks that
#: allocated and freed the memory, to a closing ruler. Other kinds do not end at a ruler: the
#: next splat may begin with one.
_RULED = frozenset({"kasan", "ubsan"})
_RULED_END = re.compile(r"^---\[ end trace|^={20,}$")
_END_TRACE = re.compile(r"^---\[ end trace")
#: Lines an oops prints between its stack and its "end trace" ("Modules linked in", CR2).
_TRACE_AFTER_STACK = 4
#: The line WARN(), BUG() and UBSAN print first, before their message.
_CUT_HERE = re.compile(r"^-+\[ cut here \]-+$")
#: A second start line of the same kind this close to the first belongs to it: an oops's
#: "BUG: kernel NULL pointer dereference" is followed by its "Oops:" line.
_SAME_SPLAT = 10


@dataclass(frozen=True)
class Splat:
    """One kernel splat: its kind, the line that says what happened, and its lines as logged."""

    #: "warning", "bug", "oops", "soft lockup", "hard lockup", "rcu stall", "hung task", "kasan",
    #: "ubsan" or "lockdep".
    kind: str
    #: The first line's message, without its time stamp ("WARNING: CPU: 0 PID: 230 at ...").
    title: str
    #: The splat's lines as logged (time stamps kept), at most MAX_LINES.
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def messages(self) -> str:
        """The splat's lines without time stamps: what allow patterns are searched in."""
        return "\n".join(_message(line) or line for line in self.lines)


def _message(line: str) -> str | None:
    """A kernel line's message (after its time stamp), or None for a line that is no kernel's."""
    match = _STAMP.search(line)
    return line[match.end():] if match else None


def _kind(lines: list[str], index: int) -> str | None:
    """The kind of splat whose first line is ``lines[index]``, or None when it starts none."""
    message = _message(lines[index])
    if message is None:
        return None
    kind = next((kind for kind, pattern in _KINDS if pattern.search(message)), None)
    if kind is None and _LOCKDEP.search(message) and index > 0 and _RULER.search(_message(lines[index - 1]) or ""):
        return "lockdep"
    return kind


def find_splats(text: str) -> list[Splat]:
    """Every splat in the kernel log or console *text*, in order."""
    # Without blank lines: the console ends the kernel's lines with "\r\r\n", which clean() makes two.
    lines = [line for line in console.clean(text).split("\n") if line.strip()]
    found: list[Splat] = []
    index = floor = 0
    while index < len(lines):
        kind = _kind(lines, index)
        if kind is None:
            index += 1
            continue
        start = _start(lines, index, floor=floor)
        end = _end(lines, index, kind=kind, limit=start + MAX_LINES)
        found.append(Splat(kind=kind, title=(_message(lines[index]) or "").strip(), lines=tuple(lines[start:end])))
        index = floor = end
    return found


def _start(lines: list[str], index: int, *, floor: int) -> int:
    """Where the splat whose first line is at *index* begins: at its "cut here" line a few lines
    up (WARN()'s message is between), or at the ruler right above it (KASAN, lockdep); not
    before *floor*, where the previous splat ended."""
    for back in range(index - 1, max(floor, index - 6) - 1, -1):
        if _CUT_HERE.match(_message(lines[back]) or ""):
            return back
    if index - 1 >= floor and _RULER.search(_message(lines[index - 1]) or ""):
        return index - 1
    return index


def _end(lines: list[str], index: int, *, kind: str, limit: int) -> int:
    """Where the splat whose first line is at *index* ends (exclusive)."""
    for later in range(index + 1, min(limit, len(lines))):
        message = _message(lines[later]) or ""
        if (_RULED_END if kind in _RULED else _END).search(message):
            if message.strip() == "</TASK>":
                # An oops or a warning ends its x86 stack with </TASK>, then a few lines and
                # its "end trace": up to that, if it comes.
                for after in range(later + 1, min(later + 1 + _TRACE_AFTER_STACK, limit, len(lines))):
                    if _END_TRACE.search(_message(lines[after]) or ""):
                        return after + 1
            return later + 1
        other = _kind(lines, later)
        if other is not None and not (other == kind and later - index < _SAME_SPLAT):
            # The next splat, from its own first line ("cut here", a ruler).
            return _start(lines, later, floor=index + 1)
    return min(limit, len(lines))


def allowed(splat: Splat, *, patterns: Sequence[str]) -> bool:
    """Whether one of the regexes *patterns* is found in *splat*'s lines (without time stamps; ``^``
    and ``$`` match at each line); no patterns at all allow every splat."""
    return not patterns or any(re.search(pattern, splat.messages, re.MULTILINE) for pattern in patterns)
