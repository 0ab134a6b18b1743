"""The plugin's options and ini settings, markers, and how it asks pytest-xdist to schedule."""

from __future__ import annotations

import pytest

from lab.pytest_plugin.reporting import Table
from lab.pytest_plugin.state import asked, state_of


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ebpf-lab", "eBPF labs in throw-away VMs")
    group.addoption("--kernel", action="store", default=None,
                    help="kernel(s) under test: id, series, comma list, glob (6.*) or 'all' (default: 6.1)")
    group.addoption("--arch", action="store", default=None, dest="lab_arch",
                    help="guest architecture(s): x86_64, arm64, comma list or 'all' (default: the host's)")
    group.addoption("--boot-timeout", action="store", type=float, default=None,
                    help="seconds a guest may take to boot (default: scaled for KVM/TCG)")
    group.addoption("--command-timeout", action="store", type=float, default=None,
                    help="seconds a guest command may take (default: scaled for KVM/TCG)")
    group.addoption("--userland", action="store", default=None, dest="lab_userland", metavar="WHICH",
                    help="the guest's programs: 'host' (default), 'debian' (each kernel's own Debian suite, "
                         "from a root disk) or 'debian:SUITE'")
    group.addoption("--shard", action="store", default=None, dest="lab_shard", metavar="K/N",
                    help="run shard K of N: whole kernels split deterministically across N CI jobs")
    group.addoption("--kernel-args", action="store", default=None, dest="lab_kernel_args", metavar="WORDS",
                    help="words added to each guest's kernel command line, e.g. 'lsm=lockdown,capability,bpf'")
    parser.addini("lab_kernel", "default for --kernel", default="")
    parser.addini("lab_arch", "default for --arch", default="")
    parser.addini("lab_boot_timeout", "default for --boot-timeout", default="")
    parser.addini("lab_command_timeout", "default for --command-timeout", default="")
    parser.addini("lab_shard", "default for --shard", default="")
    parser.addini("lab_userland", "default for --userland", default="")
    parser.addini("lab_kernel_args", "default for --kernel-args", default="")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    # pytest-xdist: keep all tests of one kernel in one worker (they are xdist_group'ed by kernel
    # id), so each kernel boots exactly once and two workers never run the same kernel. Only
    # when asked: whether a test takes ``kernel`` is known after collection, too late to choose
    # how xdist schedules, and a project that never asked keeps its own scheduling.
    if not asked(config):
        return
    if getattr(config.option, "numprocesses", None) and getattr(config.option, "dist", "no") in ("no", "load"):
        config.option.dist = "loadgroup"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # type: ignore[no-untyped-def]
    # Workers parse the original command line, not our choice above: tell them.
    node.workerinput["ebpf_lab_loadgroup"] = node.config.getvalue("dist") == "loadgroup"


def _worker_loadgroup(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput and workerinput.get("ebpf_lab_loadgroup"):
        # xdist's worker adds the '@group' suffix that loadgroup schedules by only when this is set.
        config.option.loadgroup = True


def pytest_configure(config: pytest.Config) -> None:
    _worker_loadgroup(config)
    config.addinivalue_line("markers", "kernel(constraint): run only on kernels whose series satisfies it, e.g. kernel('>=5.8')")
    config.addinivalue_line("markers", "arch(*names): run only on these guest architectures, e.g. arch('x86_64')")
    config.addinivalue_line("markers", "bpf(*features): run only on kernels that have these BPF features (bpftool "
                                       "feature probe), e.g. bpf('map:ringbuf', 'helper:bpf_loop'); 'lab features --all' names them")
    config.addinivalue_line("markers", "allow_splat(*patterns): kernel splats (WARNING, BUG, lockups...) the test expects: "
                                       "those a regex is found in do not fail it; with no pattern, no splat fails it")
    if not config.pluginmanager.hasplugin("xdist"):
        # The kernel parameters carry xdist_group marks (see fixtures.py); without xdist
        # nobody declares that marker, and --strict-markers would reject every test.
        config.addinivalue_line("markers", "xdist_group(name): pytest-xdist's --dist loadgroup runs a group in one worker")
    Table.register(config)
    if asked(config):
        # Now rather than at the first test that takes ``kernel``: a bad --kernel is a usage
        # error before anything runs, and the header can name the kernels.
        state_of(config)
