"""The plugin's session state: what the session asked for, kept in ``config.stash``, made on first need.

Installed is not asked for: every project in the environment loads this plugin, so until a
session names a lab option (``--kernel``…, a ``lab_*`` ini value) or collects a test that
takes ``kernel``, it reads no catalog, installs no signal handler and prints nothing.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import pytest

from lab.errors import LabError
from lab.host.signals import interrupt_on_sigterm
from lab.kernels import catalog
from lab.pytest_plugin import shard as shard_mod
from lab.pytest_plugin.pool import GuestPool

#: (option dest, ini name) of every setting through which a session asks for ebpf-lab.
SETTINGS = (("kernel", "lab_kernel"), ("lab_arch", "lab_arch"), ("boot_timeout", "lab_boot_timeout"),
            ("command_timeout", "lab_command_timeout"), ("lab_userland", "lab_userland"), ("lab_shard", "lab_shard"),
            ("lab_kernel_args", "lab_kernel_args"))


@dataclass
class State:
    """What one session runs on, and its guests."""

    #: The kernels selected (after ``--shard``).
    specs: list[catalog.KernelSpec]
    #: The guests booted so far, one per kernel.
    pool: GuestPool
    #: ``--shard K/N``: this job runs only its share of the kernels (see lab/pytest_plugin/shard.py).
    shard: shard_mod.Shard | None = None


STATE = pytest.StashKey[State]()


def option(config: pytest.Config, name: str, ini: str) -> str | None:
    """The command-line option *name*, else the ini value *ini*, else None."""
    value = config.getoption(name)
    if value in (None, ""):
        value = config.getini(ini) or None
    return value


def asked(config: pytest.Config) -> bool:
    """Whether the session asked for ebpf-lab by name: a lab option or a ``lab_*`` ini value."""
    return any(option(config, name, ini) is not None for name, ini in SETTINGS)


def state_of(config: pytest.Config) -> State:
    """The session's state, made on first need: the catalog is read, SIGTERM handled from then on."""
    state = config.stash.get(STATE, None)
    if state is None:
        state = config.stash[STATE] = _new_state(config)
    return state


def _new_state(config: pytest.Config) -> State:
    try:
        specs = catalog.select(catalog.load_catalog(), kernels=option(config, "kernel", "lab_kernel"),
                               arches=option(config, "lab_arch", "lab_arch"),
                               userland=option(config, "lab_userland", "lab_userland"))
    except LabError as error:
        raise pytest.UsageError(str(error)) from None
    # SIGTERM ends the session like Ctrl-C, so pytest_sessionfinish stops every guest.
    interrupt_on_sigterm()
    shard, specs = _apply_shard(config, specs)
    boot = option(config, "boot_timeout", "lab_boot_timeout")
    command = option(config, "command_timeout", "lab_command_timeout")
    pool = GuestPool(boot_timeout=float(boot) if boot else None, command_timeout=float(command) if command else None,
                     kernel_args=_kernel_args(option(config, "lab_kernel_args", "lab_kernel_args")))
    return State(specs=specs, pool=pool, shard=shard)


def _kernel_args(text: str | None) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(text or ""))
    except ValueError as error:
        raise pytest.UsageError(f"--kernel-args {text!r}: {error}; quote words as a shell would") from None


def _apply_shard(config: pytest.Config, specs: list[catalog.KernelSpec]) -> tuple[shard_mod.Shard | None, list[catalog.KernelSpec]]:
    text = option(config, "lab_shard", "lab_shard")
    if not text:
        return None, specs
    try:
        shard = shard_mod.parse_shard(text)
    except LabError as error:
        raise pytest.UsageError(str(error)) from None
    return shard, shard_mod.select(specs, shard=shard, key=lambda s: s.id, costs=shard_mod.kernel_costs(specs))
