"""The console parsers on whole recorded console logs (``tests/data/consoles/``), one per kind
of session: what each log must and must not be read as. The logs are real, written by
``Guest`` to ``~/.cache/ebpf-lab/logs``, first line the QEMU command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.guest import console

CONSOLES = Path(__file__).parent / "data" / "consoles"


def _log(name: str) -> str:
    return (CONSOLES / name).read_text()


def _nonce(text: str) -> str:
    return re.search(r"\b(L[0-9a-f]{16}):\d+> ", text).group(1)


def test_every_recorded_log_is_read_by_a_test():
    tested = {"6.1-amd64-panic.log", "6.1-arm64-hello.log"}
    # Kernel splats, read by tests/test_splats.py.
    tested |= {f"6.1-amd64-splat-{kind}.log" for kind in ("warning", "bug", "hung-task", "soft-lockup", "rcu-stall", "oops")}
    assert {p.name for p in CONSOLES.glob("*.log")} == tested


def test_a_sysrq_panic_is_found_from_its_first_line():
    text = _log("6.1-amd64-panic.log")
    panic = console.find_panic(text)
    assert panic is not None
    assert panic.splitlines()[0].endswith("Kernel panic - not syncing: sysrq triggered crash")
    # The report is kept whole (call trace included) but bounded.
    assert "Call Trace:" in panic and len(panic.splitlines()) <= 60
    assert console.READY_MARKER in text


@pytest.mark.parametrize("name", ["6.1-arm64-hello.log"])
def test_a_healthy_session_has_no_panic_and_answers_at_its_prompt(name):
    text = _log(name)
    assert console.find_panic(text) is None
    assert console.READY_MARKER in text
    statuses = re.findall(console.prompt_pattern(_nonce(text)), text)
    assert statuses and set(statuses) == {"0"}


def test_the_arm64_hello_lab_traced_execve():
    tail = console.tail(_log("6.1-arm64-hello.log"), lines=8)
    assert tail.count("bpf_trace_printk: Hello World!") == 4
