"""Worker: one daemon thread per target, driven through its Waiter, held weakly."""

import gc
import threading

from mlwatcher_exporter.worker import EventWaiter, Worker

from fake_waiter import SteppedWaiter


class Target:
    def __init__(self):
        self.rounds = 0


def counting_step(delays):
    def step(target):
        target.rounds += 1
        return delays.pop(0) if delays else 0.5
    return step


def test_each_round_sleeps_as_long_as_the_step_says_within_bounds():
    waiter = SteppedWaiter()
    target = Target()
    worker = Worker(target, counting_step([5.0, 0.25, -3.0, 0.0]), "mlwatcher-w1", waiter,
                    lambda error: None)
    worker.start()
    waiter.wait_for_waits(1)
    for _ in range(3):
        waiter.step()
    assert waiter.timeouts == [1.0, 0.25, 0.001, 0.001]  # at most 1 s, at least 1 ms
    assert target.rounds == 4
    waiter.open()
    worker.stop()
    assert not worker.alive


def test_a_failing_step_is_reported_and_the_worker_goes_on():
    waiter = SteppedWaiter()
    errors = []
    calls = []

    def step(target):
        calls.append(1)
        if len(calls) == 1:
            raise ZeroDivisionError("bug")
        return 0.5

    target = Target()
    worker = Worker(target, step, "mlwatcher-w2", waiter, errors.append)
    worker.start()
    waiter.wait_for_waits(1)
    assert isinstance(errors[0], ZeroDivisionError) and waiter.timeouts == [1.0]
    waiter.step()
    assert len(calls) == 2 and waiter.timeouts[-1] == 0.5
    waiter.open()
    worker.stop()
    del target


def test_start_is_once_and_never_after_stop():
    waiter = SteppedWaiter()
    target = Target()
    worker = Worker(target, counting_step([]), "mlwatcher-w3", waiter, lambda error: None)
    worker.start()
    worker.start()
    waiter.wait_for_waits(1)
    assert [t.name for t in threading.enumerate()].count("mlwatcher-w3") == 1
    waiter.open()
    worker.stop()
    worker.start()
    assert not worker.alive and target.rounds >= 1


def test_the_thread_ends_when_its_target_is_collected():
    waiter = SteppedWaiter()
    target = Target()
    worker = Worker(target, counting_step([]), "mlwatcher-w4", waiter, lambda error: None)
    worker.start()
    waiter.wait_for_waits(1)
    thread = worker._thread
    del target
    gc.collect()  # the finalizer stops the worker
    waiter.open()
    thread.join(30)
    assert not thread.is_alive()


def test_event_waiter_returns_once_notified():
    waiter = EventWaiter()
    waiter.notify()
    done = threading.Event()
    thread = threading.Thread(target=lambda: (waiter.wait(60.0), done.set()))
    thread.start()
    thread.join(30)  # a bound for a broken build, not a timing
    assert done.is_set()
    waiter.wait(0.0)  # the notification was consumed: this returns after its timeout
