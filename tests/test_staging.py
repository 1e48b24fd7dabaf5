"""Staging: copies into a bounded pool of stages, the window clock and its closes."""

import numpy as np
import pytest

from mlwatcher_exporter import staging
from mlwatcher_exporter.staging import (
    LABELS_INDICES,
    LABELS_NONE,
    LABELS_RAW,
    MIN_STAGE_ROWS,
    POOL_SIZE,
    Stage,
    Staging,
    WindowClose,
)


class Bell:
    def __init__(self):
        self.rings = 0

    def __call__(self):
        self.rings += 1


def make(clock, n_classes=2, n_features=None, window=10.0):
    bell = Bell()
    stages = Staging(clock, window, bell)
    stages.configure(n_classes, n_features, 1 << 30)
    return stages, bell


def put(stages, n, features=None, labels=None, kind=LABELS_NONE):
    return stages.put(np.full((n, 2), 0.5), features, labels, kind, 0.5)


def test_stage_rows_follow_the_byte_budget_with_a_floor(clock, monkeypatch):
    stages, _ = make(clock, n_classes=3, n_features=5)
    assert stages.stage_rows == staging.STAGE_BYTES // (8 * 8)
    monkeypatch.setattr(staging, "STAGE_BYTES", 1)
    stages.configure(3, 5, 1 << 30)
    assert stages.stage_rows == MIN_STAGE_ROWS
    assert Staging(clock, 1.0, Bell()).stage_rows == 0  # before configure


def test_a_batch_is_copied_and_rows_of_batches_are_kept_in_order(clock):
    stages, bell = make(clock, n_features=1)
    proba = np.array([[0.2, 0.8], [0.6, 0.4]])
    features = np.array([[1.0], [2.0]])
    labels = np.array([1, 0])
    assert stages.put(proba, features, labels, LABELS_INDICES, 0.3)
    assert stages.put(proba[:1], None, ["x"], LABELS_RAW, 0.7)
    proba[:] = 0.0
    features[:] = 0.0
    labels[:] = 5
    assert bell.rings == 0  # copying into the current stage rings nobody
    assert stages.take(seal=False) == []  # the current stage is not queued
    (stage,) = stages.take(seal=True)
    np.testing.assert_array_equal(stage.proba[:3], [[0.2, 0.8], [0.6, 0.4], [0.2, 0.8]])
    np.testing.assert_array_equal(stage.features[:2, 0], [1.0, 2.0])
    np.testing.assert_array_equal(stage.labels[:3], [1, 0, -1])
    ends, thresholds, has_features, kinds = stage.columns()
    assert ends.tolist() == [2, 3] and thresholds.tolist() == [0.3, 0.7]
    assert has_features.tolist() == [True, False]
    assert kinds.tolist() == [LABELS_INDICES, LABELS_RAW]
    assert stage.raw_labels == {1: ["x"]}


def test_the_pool_is_bounded_and_a_full_pool_asks_the_caller_to_work(clock, monkeypatch):
    monkeypatch.setattr(staging, "STAGE_BYTES", 1)
    stages, bell = make(clock)
    for _ in range(POOL_SIZE):
        assert put(stages, MIN_STAGE_ROWS)
    assert bell.rings == POOL_SIZE - 1  # each full stage sealed rings the worker
    before = stages.nbytes
    assert put(stages, 1) is False  # every stage in use: nothing grows
    assert stages.nbytes == before
    items = stages.take(seal=False)
    assert len(items) == POOL_SIZE  # the current one was sealed for lack of room
    for item in items:
        stages.release(item)
    assert put(stages, 1) is True and stages.nbytes == before


def test_released_stages_are_empty_and_unlabeled(clock):
    stages, _ = make(clock)
    put(stages, 3, labels=np.array([1, 1, 1]), kind=LABELS_INDICES)
    (stage,) = stages.take(seal=True)
    stages.release(stage)
    put(stages, 2)
    (again,) = stages.take(seal=True)
    assert again is stage and again.n == 2 and again.columns()[0].tolist() == [2]
    np.testing.assert_array_equal(again.labels[:3], [-1, -1, -1])


def test_the_window_clock_closes_windows_on_the_grid(clock):
    stages, bell = make(clock, window=10.0)
    put(stages, 2)
    clock.advance(10.0)
    put(stages, 1)  # the first batch of the next window closes the last one
    assert bell.rings == 1
    first, close = stages.take(seal=False)
    assert isinstance(first, Stage) and first.n == 2
    assert close == WindowClose(1010.0, 1010.0)
    clock.advance(35.0)  # three whole windows without a batch
    assert stages.roll_if_due() is True
    stage, close = stages.take(seal=False)
    assert stage.n == 1 and close == WindowClose(1020.0, 1040.0)
    assert (stages.window_start, stages.window_end) == (1040.0, 1050.0)
    assert stages.roll_if_due() is False


def test_close_now_starts_the_next_window_now(clock):
    stages, _ = make(clock)
    put(stages, 4)
    clock.advance(3.5)
    stages.close_now()
    stage, close = stages.take(seal=False)
    assert stage.n == 4 and close == WindowClose(1003.5, 1003.5)
    assert stages.window_end == 1013.5


def test_another_feature_width_seals_the_stage(clock):
    stages, _ = make(clock)
    put(stages, 1, features=np.ones((1, 2)))
    put(stages, 1, features=np.ones((1, 3)))
    (first,) = stages.take(seal=False)
    assert first.features.shape[1] == 2 and first.n == 1
    (second,) = stages.take(seal=True)
    assert second.features.shape[1] == 3


def test_a_borrowed_stage_is_queued_after_what_is_staged_and_never_pooled(clock):
    stages, _ = make(clock)
    put(stages, 2)
    proba = np.full((5, 2), 0.5)
    labels = np.arange(5) % 2
    borrowed = Stage.borrow(proba, None, labels, LABELS_INDICES, 0.5)
    assert borrowed.proba is proba  # not copied...
    assert borrowed.labels is not labels  # ...but its labels are: processing edits them
    stages.put_borrowed(borrowed)
    staged, queued = stages.take(seal=False)
    assert staged.n == 2 and queued is borrowed
    before = stages.nbytes
    stages.release(borrowed)
    assert stages.nbytes == before


def test_a_closed_staging_ignores_batches(clock):
    stages, _ = make(clock)
    put(stages, 1)
    stages.close()
    assert put(stages, 3) is True
    stages.put_borrowed(Stage.borrow(np.full((2, 2), 0.5), None, None, LABELS_NONE, 0.5))
    stages.close_now()
    assert stages.roll_if_due() is False
    (stage,) = stages.take(seal=True)
    assert stage.n == 1


@pytest.mark.parametrize("n_rows", [1, 7])
def test_last_offer_is_the_clock_of_the_last_batch(clock, n_rows):
    stages, _ = make(clock)
    assert stages.last_offer is None
    clock.advance(2.0)
    put(stages, n_rows)
    assert stages.last_offer == 1002.0
