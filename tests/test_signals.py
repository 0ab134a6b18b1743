"""SIGTERM as Ctrl-C (lab/host/signals.py): who may take the handler, and what it raises."""

from __future__ import annotations

import signal
import threading

import pytest

from lab.host.signals import interrupt_on_sigterm


@pytest.fixture
def sigterm():  # type: ignore[no-untyped-def]
    """SIGTERM at its default for the test, and whatever it was before afterwards."""
    before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGTERM, before)


def test_sigterm_raises_keyboard_interrupt(sigterm):
    assert interrupt_on_sigterm()
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="signal 15"):
        handler(signal.SIGTERM, None)


def test_someone_elses_handler_is_kept_unless_replacing_is_asked(sigterm):
    def theirs(signum, frame):  # type: ignore[no-untyped-def]
        pass

    signal.signal(signal.SIGTERM, theirs)
    assert not interrupt_on_sigterm()
    assert signal.getsignal(signal.SIGTERM) is theirs
    # The lab command owns its process and takes it.
    assert interrupt_on_sigterm(replace_others=True)
    assert signal.getsignal(signal.SIGTERM) is not theirs


def test_only_the_main_thread_sets_a_handler(sigterm):
    answers = []
    thread = threading.Thread(target=lambda: answers.append(interrupt_on_sigterm(replace_others=True)))
    thread.start()
    thread.join()
    assert answers == [False]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
