"""stop_on_signals: SIGINT/SIGTERM set the event inside the block, handlers come back after."""

import os
import signal
import threading

from mlwatcher_exporter.signals import stop_on_signals


def test_signal_sets_the_event_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals(threading.Event()) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5)
    assert signal.getsignal(signal.SIGTERM) is before


def test_outside_the_main_thread_it_does_nothing():
    seen = []

    def run():
        with stop_on_signals(threading.Event()) as stop:
            seen.append(stop.is_set())

    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [False] and signal.getsignal(signal.SIGINT) is before
