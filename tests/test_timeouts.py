"""The one timeout policy (lab/guest/timeouts.py): what each kind of guest may take, as a pure function."""

from __future__ import annotations

import pytest

from lab.boot.config import VMConfig
from lab.guest import timeouts
from lab.guest.guest import Guest
from lab.guest.timeouts import Timeouts, timeouts_for
from lab.kernels.arches import ARCHES, host_arch

#: case -> (kvm, foreign, timeouts), as they were before the policy was one. attach: what the
#: tests gave BCC (three command timeouts; the CLI gave one, it now waits as long); expect: TCG doubled.
CASES = {
    "kvm": (True, False, Timeouts(boot=60, command=60, attach=180, expect_scale=1)),
    "tcg-native": (False, False, Timeouts(boot=180, command=180, attach=540, expect_scale=2)),
    "tcg-foreign": (False, True, Timeouts(boot=540, command=540, attach=1620, expect_scale=2)),
}


@pytest.mark.parametrize("case", CASES)
def test_each_kind_of_guest_keeps_its_timeouts(case):
    kvm, foreign, expected = CASES[case]
    assert timeouts_for(kvm=kvm, foreign=foreign, scale=1.0) == expected


def test_the_users_scale_multiplies_every_wait():
    single, double = timeouts_for(kvm=False, scale=1.0), timeouts_for(kvm=False, scale=2.0)
    assert double == Timeouts(boot=2 * single.boot, command=2 * single.command, attach=2 * single.attach,
                              expect_scale=2 * single.expect_scale)


def test_the_scale_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("EBPF_LAB_TIMEOUT_SCALE", "2")
    assert timeouts_for(kvm=False) == timeouts_for(kvm=False, scale=2.0)
    monkeypatch.delenv("EBPF_LAB_TIMEOUT_SCALE")
    assert timeouts_for(kvm=False) == timeouts_for(kvm=False, scale=1.0)


def test_explicit_values_are_taken_as_given_and_never_shorten_the_attach():
    # --boot-timeout/--command-timeout (or their ini values): the user's numbers, unscaled.
    default = timeouts_for(kvm=False, scale=2.0)
    short = timeouts_for(kvm=False, boot=7, command=9, scale=2.0)
    assert (short.boot, short.command) == (7, 9)
    assert short.attach == default.attach
    # A long command timeout lengthens the attach as it did for the tests (three commands).
    long = timeouts_for(kvm=False, command=1000, scale=1.0)
    assert long.attach == timeouts.ATTACH_COMMANDS * 1000


def test_a_guest_carries_the_policys_timeouts_unless_given_others(tmp_path):
    native = VMConfig(image=tmp_path / "vmlinuz", arch=host_arch(), kvm=False)
    assert Guest(config=native, log_path=tmp_path / "log").timeouts == timeouts_for(kvm=False)
    foreign = next(arch for arch in ARCHES.values() if arch.foreign)
    emulated = VMConfig(image=tmp_path / "vmlinuz", arch=foreign, kvm=False)
    assert Guest(config=emulated, log_path=tmp_path / "log").timeouts == timeouts_for(kvm=False, foreign=True)
    given = Timeouts(boot=3, command=10, attach=10)
    guest = Guest(config=native, log_path=tmp_path / "log", timeouts=given)
    assert guest.timeouts is given and (guest.boot_timeout, guest.command_timeout) == (3, 10)
