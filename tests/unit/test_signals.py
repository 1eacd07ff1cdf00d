"""raypipe.runtime.signals with real signals sent to this process (no Ray)."""

from __future__ import annotations

import os
import signal

import pytest

from raypipe.runtime.signals import ignore_stop_signals, stop_on_signals, stop_requested, stop_signal


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stop_on_signals_raises_and_records_which_signal(sig):
    before = signal.getsignal(sig)
    with pytest.raises(KeyboardInterrupt) as info, stop_on_signals():
        os.kill(os.getpid(), sig)
        signal.sigtimedwait([], 0)  # give the interpreter a point to run the handler
    assert (str(info.value), stop_signal()) == (sig.name, sig.name)
    assert signal.getsignal(sig) is before


def test_a_new_block_forgets_the_last_signal():
    with pytest.raises(KeyboardInterrupt), stop_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0)
    with stop_on_signals():
        assert stop_signal() is None


def test_ignore_stop_signals_swallows_both_and_restores():
    before = signal.getsignal(signal.SIGTERM)
    with ignore_stop_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        signal.sigtimedwait([], 0)
    assert signal.getsignal(signal.SIGTERM) is before


def test_stop_requested_records_the_first_signal_without_raising():
    with stop_requested() as stop:
        assert not stop
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0)
        os.kill(os.getpid(), signal.SIGINT)
        signal.sigtimedwait([], 0)
        assert stop and stop.signal == "SIGTERM"
