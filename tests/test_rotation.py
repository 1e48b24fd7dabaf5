"""WindowLedger: active, pending and published windows; flat memory."""

import numpy as np
import pytest

from mlwatcher_exporter.rotation import MAX_PAUSE_SECONDS, StatisticsPause, WindowLedger
from mlwatcher_exporter.schema import InputSchema


def fill(ledger, rows):
    proba = np.full((rows, 2), 0.5)
    predicted = np.zeros(rows, dtype=np.intp)
    ledger.active.add(proba, predicted, np.array([rows, 0]), None, None)


def ledger_and_schema():
    return WindowLedger(100, 2, np.random.default_rng(0), 0.0), InputSchema(range(2), None, ())


def wall(t):
    return 1_700_000_000.0 + t


def test_a_closed_window_is_published_when_computed():
    ledger, schema = ledger_and_schema()
    assert ledger.compute(schema, 10, wall) is None and not ledger.has_pending
    fill(ledger, 7)
    ledger.close(10.0, 10.0, 10.0)
    assert ledger.has_pending and ledger.published is None
    stats = ledger.compute(schema, 10, wall)
    assert stats is ledger.published and stats.rows == 7
    assert stats.duration == 10.0 and stats.end_time == wall(10.0)
    assert not ledger.has_pending and ledger.compute(schema, 10, wall) is None


def test_a_window_closed_before_the_last_was_computed_supersedes_it():
    ledger, schema = ledger_and_schema()
    fill(ledger, 3)
    ledger.close(10.0, 10.0, 10.0)
    fill(ledger, 5)
    ledger.close(20.0, 20.0, 10.0)
    stats = ledger.compute(schema, 10, wall)
    assert stats.rows == 5 and stats.duration == 10.0


def test_whole_windows_without_rows_hand_over_an_empty_last_one():
    ledger, schema = ledger_and_schema()
    fill(ledger, 4)
    ledger.close(10.0, 40.0, 10.0)
    stats = ledger.compute(schema, 10, wall)
    assert stats.rows == 0 and stats.duration == 10.0 and stats.end_time == wall(40.0)
    fill(ledger, 2)
    ledger.close(50.0, 50.0, 10.0)
    assert ledger.compute(schema, 10, wall).duration == 10.0


def test_memory_stays_flat_window_after_window():
    ledger, schema = ledger_and_schema()
    sizes = []
    for window in range(30):
        fill(ledger, 150)
        ledger.close(10.0 * (window + 1), 10.0 * (window + 1), 10.0)
        if window % 3:
            ledger.compute(schema, 10, wall)
        sizes.append(ledger.nbytes)
    assert max(sizes) <= 3 * sizes[0] and sizes[-1] == sizes[5]


def test_the_statistics_pause_sleeps_as_long_as_the_last_block_took():
    now = [10.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    pause = StatisticsPause(clock=lambda: now[0], sleep=sleep)
    now[0] += 0.002  # a block of 2 ms
    pause()
    now[0] += 0.5  # a long block: the pause is capped
    pause()
    pause()  # no work since the last pause: no sleep
    assert slept == [pytest.approx(0.002), MAX_PAUSE_SECONDS, 0.0]
