"""The shell programs the host sends to a guest's console: pure builders, each path quoted once here.

The guest runs them in its console bash (guest_files/shell.sh); the tests run them in the host's bash.
"""

from __future__ import annotations

import re
import shlex


def spawn(command: str, *, out: str) -> str:
    """Start *command* in the background: output to *out*, its pid to ``OUT.pid``, its exit
    status to ``OUT.rc`` when it ends. Prints the pid.

    The interactive shell puts a background job in its own process group, so setsid
    forks and ``$!`` would name the short-lived parent: the script writes its own pid
    (the new session's and process group's id, which :func:`stop` signals). The subshell
    keeps the job out of the shell's job table, whose "Done" notices would otherwise
    land in the next command's output. A shell without job control starts background
    jobs with SIGINT ignored, and Python then never raises KeyboardInterrupt, so a
    tracer could not clean up when stopped: env (coreutils 8.31+) restores the default.
    """
    output, pid, rc = (shlex.quote(out + suffix) for suffix in ("", ".pid", ".rc"))
    script = f"echo $$ > {pid}\n{command}\necho $? > {rc}"
    return (f"( setsid env --default-signal=INT bash -c {shlex.quote(script)} > {output} 2>&1 < /dev/null & );"
            f" for i in $(seq 300); do [ -s {pid} ] && break; sleep 0.1; done; cat {pid}")


def poll(*, out: str, size: int, nonce: str, chunk: int = 256 * 1024) -> str:
    """Print what a :func:`spawn`-ed process wrote to *out* after its first *size* bytes, at most
    *chunk* of them, then a line ``NONCE:END:STATUS:BACKLOG`` (see ``console.parse_poll`` and
    ``console.poll_backlog``): where this answer ends, the exit status (empty while it runs, and
    until its last bytes came over), and how many bytes are still waiting.

    The status is read first: once it exists the process has written all its output, so the
    size read after it is final (read the other way round, the last lines could be lost).
    """
    output, rc = shlex.quote(out), shlex.quote(out + ".rc")
    end = size + chunk
    return (f"r=$(cat {rc} 2>/dev/null); s=$(stat -c %s {output}); e=$((s > {end} ? {end} : s));"
            f" [ $e -lt $s ] && r=; tail -c +{size + 1} {output} | head -c $((e-{size}));"
            f" printf '\\n%s:%s:%s:%s\\n' {shlex.quote(nonce)} \"$e\" \"$r\" $((s-e))")


def stop(pid: int) -> str:
    """Interrupt the process group *pid* (SIGINT, so a tracer cleans up), then SIGKILL it after 3 s."""
    group = f"-{int(pid)}"
    return (f"kill -INT -- {group} 2>/dev/null; for i in 1 2 3 4 5 6 7 8 9 10; do"
            f" kill -0 -- {group} 2>/dev/null || break; sleep 0.3; done;"
            f" kill -KILL -- {group} 2>/dev/null; true")


def ready_loop(ready: str, *, status_file: str, timeout: float, interval: float = 0.5) -> str:
    """A loop that prints ``ready`` once the shell command *ready* succeeds, ``ended`` if the
    program's *status_file* appears first, ``late`` after *timeout* seconds.

    It shares an emulated guest's one vCPU with the compile it waits for, so it forks
    nothing it can avoid: a ``grep`` cost 80-100 ms there and a ``sleep`` 40-70 ms, some 30%
    of the CPU at two checks a second. It waits with ``read -t`` on a FIFO nobody writes
    (``sleep`` only if that fails), and a ``grep -q WORD FILE`` check is done by bash itself.
    """
    check = builtin_grep(ready) or f"{{ {ready}; }} >/dev/null 2>&1"
    fifo, status = shlex.quote(f"{status_file}.wait"), shlex.quote(status_file)
    return (f"mkfifo {fifo} 2>/dev/null; exec 8<>{fifo}; ebpflab_end=$((SECONDS+{int(timeout + 0.999)})); while :; do"
            f" if {check}; then echo ready; break; fi;"
            f" if [ -e {status} ]; then echo ended; break; fi;"
            f" if [ $SECONDS -ge $ebpflab_end ]; then echo late; break; fi;"
            f" read -t {interval} -u 8 2>/dev/null; [ $? -gt 128 ] || sleep {interval}; done; exec 8<&-; rm -f {fifo}")


def builtin_grep(ready: str) -> str | None:
    """``grep -q 'WORD' FILE`` (a literal word) as a bash loop that forks nothing; else None."""
    match = re.fullmatch(r"grep -q '?([A-Za-z0-9_]+)'? (/[A-Za-z0-9_./-]+)", ready.strip())
    if not match:
        return None
    word, path = match.groups()
    return ("{ ebpflab_hit=; while IFS= read -r ebpflab_line; do"
            f" [[ $ebpflab_line == *{word}* ]] && {{ ebpflab_hit=1; break; }}; done < {path}; [ -n \"$ebpflab_hit\" ]; }} 2>/dev/null")
