"""Late labels: labels joined by prediction id, on a hand-driven clock.

The proof of issue 11: labels sent out of order, late, twice, some never, some for
unknown ids, across window boundaries; every count and every labeled metric checked
against an independent bookkeeping of the joined rows and scikit-learn.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from mlwatcher_exporter import ModelMonitor, naming
from mlwatcher_exporter import staging

CLASSES = ["cat", "dog", "eel"]


def make_monitor(registry, clock, **kwargs):
    options = dict(model="m", class_names=CLASSES, window_seconds=10.0, reservoir_size=50,
                   registry=registry, background=False, random_state=0, _clock=clock,
                   _wall_clock=lambda: 1_700_000_000.0 + clock(), id_ttl_seconds=25.0)
    options.update(kwargs)
    return ModelMonitor(**options)


def value(registry, name, **labels):
    return registry.get_sample_value(name, {"model": "m", **labels})


class Book:
    """The test's own record of predictions and joins: what the monitor must report."""

    def __init__(self) -> None:
        # id -> (predicted index, window name, position in window, time, label or None)
        self.rows: Dict[object, list] = {}
        self.matched: List[Tuple[int, int]] = []  # (predicted, true) of every labeled row
        self.window_labels: Dict[str, Dict[int, Tuple[int, int]]] = {}
        self.delays: List[float] = []
        self.outcomes = {"matched": 0, "duplicate": 0, "unknown": 0, "expired": 0}

    def predict(self, ids, predicted, window, first_position, now, labels=None):
        for i, key in enumerate(ids):
            label = None if labels is None else labels[i]
            self.rows[key] = [int(predicted[i]), window, first_position + i, now, label]
            if label is not None:
                self.matched.append((int(predicted[i]), label))
                self.window_labels.setdefault(window, {})[first_position + i] = (
                    int(predicted[i]), label)

    def join(self, ids, labels, now, open_window, ttl, forgotten=()):
        for key, label in zip(ids, labels):
            if label is None:
                continue
            row = self.rows.get(key)
            if row is None or key in forgotten:
                self.outcomes["unknown"] += 1
            elif now - row[3] > ttl:
                self.outcomes["expired"] += 1
            elif row[4] is not None:
                self.outcomes["duplicate"] += 1
            else:
                row[4] = label
                self.outcomes["matched"] += 1
                self.matched.append((row[0], label))
                self.delays.append(now - row[3])
                if row[1] == open_window:
                    self.window_labels.setdefault(row[1], {})[row[2]] = (row[0], label)


def check_window(stats, joined: Dict[int, Tuple[int, int]], sampled: set):
    """The window's label metrics against scikit-learn on its sampled joined rows."""
    pairs = [pair for position, pair in sorted(joined.items()) if position in sampled]
    y_pred = np.array([p for p, _ in pairs])
    y_true = np.array([t for _, t in pairs])
    scores = stats.scores
    assert scores.labeled_rows == len(pairs) > 10
    assert scores.accuracy == pytest.approx(accuracy_score(y_true, y_pred))
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=[0, 1, 2], zero_division=0)
    np.testing.assert_allclose(scores.precision, precision)
    np.testing.assert_allclose(scores.recall, recall)
    np.testing.assert_allclose(scores.f1, f1)
    assert scores.f1_macro == pytest.approx(f1.mean())
    one_vs_rest = [accuracy_score(y_true == c, y_pred == c) for c in range(3)]
    np.testing.assert_allclose(scores.class_accuracy, one_vs_rest)


def sample_positions(monitor) -> set:
    """Positions (among the open window's rows) of the rows in its sample."""
    monitor.flush()
    buffer = monitor._pipeline.ledger.active
    return set(buffer.positions[: buffer.reservoir.size].tolist())


def test_labels_out_of_order_late_twice_never_unknown_across_windows(registry, clock):
    monitor = make_monitor(registry, clock)
    rng = np.random.default_rng(7)
    book = Book()
    ttl = 25.0
    start = clock.now

    # Window A: 100 rows, 50 sampled. String ids, then integer ids with half the labels.
    proba_a1 = rng.dirichlet(np.ones(3), 60)
    ids_a1 = [f"a{i}" for i in range(60)]
    monitor.observe(proba_a1, ids=ids_a1)
    book.predict(ids_a1, proba_a1.argmax(1), "A", 0, clock.now)
    clock.advance(2)
    proba_a2 = rng.dirichlet(np.ones(3), 40)
    ids_a2 = np.arange(100, 140)
    labels_a2 = [int(rng.integers(3)) if i % 2 else None for i in range(40)]
    monitor.observe(proba_a2, labels=[None if y is None else CLASSES[y] for y in labels_a2],
                    ids=ids_a2)
    book.predict(ids_a2.tolist(), proba_a2.argmax(1), "A", 60, clock.now, labels_a2)

    # t+5, window A open: out of order, some twice (in one call), some already labeled
    # with their batch, unknown ids, and one id without a label (None).
    clock.advance(3)
    known = rng.permutation(ids_a1)[:30].tolist() + rng.permutation(ids_a2)[:14].tolist()
    send = known + ["zz", 999, "a60"] + known[:4]
    labels = [int(rng.integers(3)) for _ in send]
    labels[5] = None
    monitor.observe_labels(send, [None if y is None else CLASSES[y] for y in labels])
    book.join(send, labels, clock.now, "A", ttl)
    sampled_a = sample_positions(monitor)
    assert len(sampled_a) == 50

    # Window B: 30 rows, all sampled; its first batch closes window A.
    clock.advance(7)
    proba_b = rng.dirichlet(np.ones(3), 30)
    ids_b = [f"b{i}" for i in range(30)]
    monitor.observe(proba_b, ids=ids_b)
    book.predict(ids_b, proba_b.argmax(1), "B", 0, clock.now)
    monitor.tick()
    window_a = monitor.last_window
    assert window_a.rows == 100 and window_a.sampled_rows == 50
    check_window(window_a, book.window_labels["A"], sampled_a)

    # t+13: more labels of window A (closed: lifetime counters only), duplicates, and
    # labels of window B given as class indices, some twice.
    clock.advance(1)
    rest_a = [k for k in ids_a1 + ids_a2.tolist() if book.rows[k][4] is None]
    late_a = [rest_a[i] for i in rng.permutation(len(rest_a))[:15]]
    send = late_a + known[6:9] + rng.permutation(ids_b)[:20].tolist()
    send += send[-3:]
    labels = [int(rng.integers(3)) for _ in send]
    monitor.observe_labels(send, labels)
    book.join(send, labels, clock.now, "B", ttl)
    assert monitor.last_window is window_a  # a closed window keeps its labels
    sampled_b = sample_positions(monitor)
    assert sampled_b == set(range(30))
    clock.advance(8)
    monitor.tick()
    check_window(monitor.last_window, book.window_labels["B"], sampled_b)

    # t+31: window A's predictions are older than the ttl but still held: expired. The
    # join then forgets them; a label for one of them afterwards is unknown.
    clock.advance(10)
    never_labeled_a = [k for k in ids_a1 + ids_a2.tolist() if book.rows[k][4] is None]
    expired = never_labeled_a[:5]
    monitor.observe_labels(expired, [0] * 5)
    book.join(expired, [0] * 5, clock.now, None, ttl)
    forgotten_a = set(ids_a1 + ids_a2.tolist())
    monitor.observe_labels(expired[:3] + ["b29"], [1, 1, 1, 2])
    book.join(expired[:3] + ["b29"], [1, 1, 1, 2], clock.now, None, ttl, forgotten_a)
    assert clock.now - start == 31

    # Every count, from the scrape.
    outcomes = book.outcomes
    assert outcomes["matched"] > 50 and outcomes["duplicate"] >= 10
    assert outcomes["unknown"] >= 6 and outcomes["expired"] == 5
    assert value(registry, "mlwatcher_late_labels_matched_total") == outcomes["matched"]
    assert value(registry, "mlwatcher_late_labels_duplicate_total") == outcomes["duplicate"]
    for reason in naming.UNMATCHED_REASONS:
        assert value(registry, "mlwatcher_late_labels_unmatched_total",
                     reason=reason) == outcomes[reason]
    unlabeled_a = sum(1 for k in forgotten_a if book.rows[k][4] is None)
    assert value(registry, "mlwatcher_prediction_ids_expired_total", reason="ttl") == unlabeled_a
    assert value(registry, "mlwatcher_prediction_ids_expired_total", reason="max_ids") == 0
    assert value(registry, "mlwatcher_prediction_ids") == 30  # window B's, within the ttl

    # The lifetime label counters: every labeled row, by true class, as scikit-learn.
    y_pred = np.array([p for p, _ in book.matched])
    y_true = np.array([t for _, t in book.matched])
    confusion = confusion_matrix(y_true, y_pred, labels=[0, 1, 2])
    for index, name in enumerate(CLASSES):
        assert value(registry, "mlwatcher_labeled_predictions_total",
                     **{"class": name}) == confusion[index].sum()
        assert value(registry, "mlwatcher_correct_predictions_total",
                     **{"class": name}) == confusion[index, index]

    # The delay histogram: every matched label's seconds since its prediction.
    delays = np.array(book.delays)
    assert delays.size == outcomes["matched"]
    for edge in naming.LABEL_DELAY_BUCKETS:
        assert value(registry, "mlwatcher_late_label_delay_seconds_bucket",
                     le=f"{edge:g}") == np.count_nonzero(delays <= edge)
    assert value(registry, "mlwatcher_late_label_delay_seconds_count") == delays.size
    assert value(registry, "mlwatcher_late_label_delay_seconds_sum") == pytest.approx(
        delays.sum())


def test_the_decorator_takes_ids_from_the_block(registry, clock):
    monitor = make_monitor(registry, clock, class_names=None, n_classes=3)
    predict_proba = monitor.watch(lambda X: np.tile([0.1, 0.8, 0.1], (len(X), 1)))
    with monitor.ids(["r1", "r2", "r3"]):
        predict_proba(np.ones((3, 2)))
    with monitor.labels([1, 0], ids=[7, 8]):
        predict_proba(np.ones((2, 2)))
        assert monitor.current_labels() == [1, 0]
    predict_proba(np.ones((2, 2)))  # outside the blocks: no ids
    clock.advance(4)
    monitor.observe_labels(["r1", "r2", "r3", 7, "nope"], [1, 1, 0, 1, 1])
    stats = monitor.close_window()
    assert stats.rows == 7
    # r1, r2 right, r3 wrong (joined); 7 right and 8 wrong (with their batch).
    assert stats.scores.labeled_rows == 5 and stats.scores.accuracy == pytest.approx(3 / 5)
    assert value(registry, "mlwatcher_late_labels_matched_total") == 3
    assert value(registry, "mlwatcher_late_labels_duplicate_total") == 1
    assert value(registry, "mlwatcher_late_labels_unmatched_total", reason="unknown") == 1
    assert value(registry, "mlwatcher_late_label_delay_seconds_bucket", le="5") == 3


def test_wrap_with_ids_block(registry, clock, iris_model_data):
    model, X, y = iris_model_data
    monitor = make_monitor(registry, clock, class_names=None)
    monitored = monitor.wrap(model)
    ids = [f"q{i}" for i in range(len(X))]
    with monitor.ids(ids):
        monitored.predict_proba(X)
    clock.advance(1)
    monitor.observe_labels(ids, model.classes_[y])
    stats = monitor.close_window()
    assert stats.scores.labeled_rows == 50  # the sample
    assert value(registry, "mlwatcher_late_labels_matched_total") == len(X)
    correct = sum(value(registry, "mlwatcher_correct_predictions_total", **{"class": name})
                  for name in monitor.class_labels)
    assert correct == np.count_nonzero(model.predict(X) == model.classes_[y])


@pytest.fixture
def iris_model_data():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    names = np.array(CLASSES)
    model = LogisticRegression(max_iter=500).fit(X, names[y])
    return model, X, np.searchsorted(model.classes_, names[y])


def test_max_ids_evicts_the_oldest_and_counts_them(registry, clock):
    monitor = make_monitor(registry, clock, max_ids=10)
    proba = np.tile([0.2, 0.7, 0.1], (8, 1))
    monitor.observe(proba, ids=list(range(8)))
    clock.advance(1)
    monitor.observe(proba, ids=list(range(8, 16)), labels=["dog"] * 8)
    assert value(registry, "mlwatcher_prediction_ids") == 10
    # ids 0..5 were evicted (unlabeled); 6, 7 and the labeled 8..15 remain.
    assert value(registry, "mlwatcher_prediction_ids_expired_total", reason="max_ids") == 6
    monitor.observe_labels([0, 5, 6, 7, 9], ["dog"] * 5)
    assert value(registry, "mlwatcher_late_labels_unmatched_total", reason="unknown") == 2
    assert value(registry, "mlwatcher_late_labels_matched_total") == 2
    assert value(registry, "mlwatcher_late_labels_duplicate_total") == 1
    # A batch larger than the bound keeps only its last max_ids ids.
    monitor.observe(np.tile([0.2, 0.7, 0.1], (25, 1)), ids=[f"x{i}" for i in range(25)])
    assert value(registry, "mlwatcher_prediction_ids") == 10
    assert value(registry, "mlwatcher_prediction_ids_expired_total", reason="max_ids") == 6 + 15
    assert monitor._pipeline.late.store.nbytes <= 10 * 64


def test_an_id_predicted_again_replaces_its_prediction(registry, clock):
    monitor = make_monitor(registry, clock)
    monitor.observe([[0.8, 0.1, 0.1]], ids=["same"])
    monitor.observe([[0.1, 0.1, 0.8], [0.1, 0.8, 0.1]], ids=["same", "other"])
    monitor.observe([[0.1, 0.8, 0.1], [0.1, 0.8, 0.1]], ids=["twice", "twice"])
    monitor.observe_labels(["same"], ["eel"])
    assert value(registry, "mlwatcher_prediction_ids_expired_total", reason="replaced") == 2
    assert value(registry, "mlwatcher_correct_predictions_total", **{"class": "eel"}) == 1
    assert value(registry, "mlwatcher_prediction_ids") == 3


def test_quiet_path_drops_bad_ids_and_keeps_predictions(registry, clock):
    monitor = make_monitor(registry, clock)
    proba = np.tile([0.2, 0.7, 0.1], (3, 1))
    assert monitor.observe_quietly(proba, ids=[1.5, 2.5, 3.5]) is True
    assert monitor.observe_quietly(proba, ids=["a", "b"]) is True
    assert monitor.observe_quietly(proba, ids="abc") is True
    assert monitor.observe_quietly(proba, ids=np.zeros((3, 2), dtype=int)) is True
    dropped = monitor.dropped_rows()
    assert dropped[("ids", "type")] == 6
    assert dropped[("ids", "row_mismatch")] == 3
    assert dropped[("ids", "shape")] == 3
    assert value(registry, "mlwatcher_predictions_total", **{"class": "dog"}) == 12
    assert value(registry, "mlwatcher_prediction_ids") == 0


def test_observe_checks_ids_and_keeps_nothing_of_a_bad_batch(registry, clock):
    monitor = make_monitor(registry, clock)
    proba = np.tile([0.2, 0.7, 0.1], (2, 1))
    with pytest.raises(TypeError, match=r"ids == 'ab', must be a sequence of str or int"):
        monitor.observe(proba, ids="ab")
    with pytest.raises(TypeError, match=r"ids holds True \(bool\), must hold only str or int"):
        monitor.observe(proba, ids=[True, 3])
    with pytest.raises(ValueError, match=r"ids has 3 ids, must have one per row \(2\)"):
        monitor.observe(proba, ids=[1, 2, 3])
    assert monitor.rejected_rows()["type"] == 4 and monitor.rejected_rows()["row_mismatch"] == 2
    assert value(registry, "mlwatcher_predictions_total", **{"class": "dog"}) == 0


def test_observe_labels_refuses_bad_input_by_name(registry, clock):
    monitor = make_monitor(registry, clock)
    monitor.observe([[0.2, 0.7, 0.1]], ids=["a"])
    with pytest.raises(TypeError, match=r"ids == 'a', must be a sequence"):
        monitor.observe_labels("a", ["dog"])
    with pytest.raises(TypeError, match=r"ids has dtype float64, must hold str or int ids"):
        monitor.observe_labels(np.array([1.0]), ["dog"])
    with pytest.raises(ValueError, match=r"labels has 2 rows, must have one label per id \(1\)"):
        monitor.observe_labels(["a"], ["dog", "cat"])
    with pytest.raises(ValueError, match=r"labels has values \['fox'\] that are not classes"):
        monitor.observe_labels(["a"], ["fox"])
    rejected = {reason: value(registry, "mlwatcher_late_labels_rejected_total", reason=reason)
                for reason in naming.LATE_LABEL_REJECT_REASONS}
    assert rejected == {"type": 2, "shape": 0, "row_mismatch": 1, "unknown_label": 1}
    assert value(registry, "mlwatcher_late_labels_matched_total") == 0
    monitor.observe_labels(["a"], ["dog"])
    assert value(registry, "mlwatcher_late_labels_matched_total") == 1


def test_labels_before_any_prediction_are_unknown(registry, clock):
    monitor = ModelMonitor(model="m", registry=registry, background=False, _clock=clock)
    monitor.observe_labels(["a", "b"], [0, 1])
    assert value(registry, "mlwatcher_late_labels_unmatched_total", reason="unknown") == 2


def test_ids_of_a_batch_larger_than_a_stage(registry, clock, monkeypatch):
    monkeypatch.setattr(staging, "STAGE_BYTES", 256 * 8 * 3)
    monitor = make_monitor(registry, clock, reservoir_size=5000)
    rng = np.random.default_rng(3)
    proba = rng.dirichlet(np.ones(3), 1000)
    monitor.observe_quietly(proba[:100], ids=np.arange(100))  # staged
    monitor.observe_quietly(proba[100:], ids=np.arange(100, 1000))  # borrowed
    clock.advance(2)
    labels = rng.integers(0, 3, 1000)
    monitor.observe_labels(np.arange(1000)[::-1], labels[::-1])
    stats = monitor.close_window()
    assert stats.scores.labeled_rows == 1000
    assert stats.scores.accuracy == pytest.approx(accuracy_score(labels, proba.argmax(1)))
    assert value(registry, "mlwatcher_late_label_delay_seconds_bucket", le="1") == 0
    assert value(registry, "mlwatcher_late_label_delay_seconds_sum") == pytest.approx(2000)


def test_rejected_batches_keep_no_ids(registry, clock):
    monitor = make_monitor(registry, clock)
    monitor.observe_quietly(np.array([[1.5, -0.5, 0.0]]), ids=["bad"])  # not probabilities
    monitor.observe_labels(["bad"], ["dog"])
    assert monitor.rejected_rows()["out_of_range"] == 1
    assert value(registry, "mlwatcher_late_labels_unmatched_total", reason="unknown") == 1
