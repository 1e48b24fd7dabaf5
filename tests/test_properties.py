"""Properties of watch and wrap over generated inputs of every kind.

Whatever a model returns and whatever it is given, a monitored call returns the very
object the model returned and never raises; and after any sequence of calls the
monitor's numbers agree with each other: every row offered is either counted or
refused (never both, never lost), the lifetime counters, /metrics and the window agree,
and nothing is ever counted as an internal error.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, List, NamedTuple

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from prometheus_client import CollectorRegistry, generate_latest

from mlwatcher_exporter import ModelMonitor
from mlwatcher_exporter.errors import count_rows

from conftest import ManualClock

pytestmark = pytest.mark.filterwarnings(
    "ignore::PendingDeprecationWarning",  # np.matrix
    "ignore::RuntimeWarning",  # overflow in the generated arrays' own arithmetic
)

PROPERTY_SETTINGS = settings(
    # More on demand, to hunt: MLWATCHER_PROPERTY_EXAMPLES=5000 pytest tests/test_properties.py
    max_examples=int(os.environ.get("MLWATCHER_PROPERTY_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------------- values of any kind

DTYPES = st.one_of(
    hnp.floating_dtypes(),
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.complex_number_dtypes(),
    hnp.boolean_dtypes(),
    hnp.datetime64_dtypes(max_period="D"),
    hnp.timedelta64_dtypes(max_period="D"),
    hnp.unicode_string_dtypes(max_len=3),
)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),  # beyond int64 too
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.complex_numbers(max_magnitude=1e6),
)


def any_arrays(max_side: int = 5) -> st.SearchStrategy:
    """numpy arrays of many dtypes and shapes: empty, 0-D to 3-D, NaN, inf, extremes."""
    plain = hnp.arrays(
        DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=max_side)
    )
    objects = st.lists(SCALARS, max_size=8).map(lambda v: np.array(v + [None], dtype=object))
    return st.one_of(plain, objects)


def _frames(draw: Any, n_rows: int) -> pd.DataFrame:
    """A DataFrame with numeric, text, categorical, bool, datetime and object columns."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    makers = {
        "float": lambda: rng.normal(size=n_rows),
        "int": lambda: rng.integers(-5, 5, n_rows),
        "huge": lambda: np.full(n_rows, np.iinfo(np.uint64).max, dtype=np.uint64),
        "text": lambda: rng.choice(["red", "green", "blue"], n_rows).astype(object),
        "category": lambda: pd.Categorical(rng.choice(["a", "b"], n_rows)),
        "bool": lambda: rng.random(n_rows) < 0.5,
        "datetime": lambda: pd.to_datetime(rng.integers(0, 10**9, n_rows), unit="s"),
        "tz": lambda: pd.to_datetime(rng.integers(0, 10**9, n_rows), unit="s", utc=True),
        "object": lambda: np.array([1, "x", None, 2.5, (1,)] * n_rows, dtype=object)[:n_rows],
        "complex": lambda: rng.normal(size=n_rows) + 1j,
        "nan": lambda: np.full(n_rows, np.nan),
        "inf": lambda: np.where(rng.random(n_rows) < 0.5, np.inf, -np.inf),
    }
    kinds = draw(st.lists(st.sampled_from(sorted(makers)), min_size=1, max_size=5))
    return pd.DataFrame({f"{kind}{i}": makers[kind]() for i, kind in enumerate(kinds)})


def _odd_batch(kind: str, seed: int, n_rows: int, width: int) -> Any:
    """A batch of an odd type, usually with `n_rows` rows."""
    rng = np.random.default_rng(seed)
    values = rng.dirichlet(np.ones(width), n_rows)
    if kind == "matrix":
        return np.matrix(values)
    if kind == "masked":
        return np.ma.masked_array(values, mask=rng.random(values.shape) < 0.1)
    if kind == "sparse":
        return scipy.sparse.csr_matrix(values * (rng.random(values.shape) < 0.3))
    if kind == "coo":
        return scipy.sparse.coo_matrix(values)
    if kind == "object":
        return values.astype(object)
    if kind == "float16":
        return values.astype(np.float16)
    if kind == "int8":
        return (values * 100).astype(np.int8)
    if kind == "list":
        return values.tolist()
    if kind == "ragged":
        return [list(row[: 1 + i % width]) for i, row in enumerate(values)]
    if kind == "frame":
        return pd.DataFrame(values, columns=[f"c{i}" for i in range(width)])
    if kind == "fortran":
        return np.asfortranarray(values)
    if kind == "strided":
        return np.repeat(values, 2, axis=0)[::2]
    if kind == "3d":
        return values[:, :, None]
    if kind == "transposed":
        return values.T
    raise AssertionError(kind)


ODD_KINDS = ["matrix", "masked", "sparse", "coo", "object", "float16", "int8", "list",
             "ragged", "frame", "fortran", "strided", "3d", "transposed"]


@st.composite
def inputs(draw: Any, n_rows: int, width: int) -> Any:
    """Anything a model may be given or may return, often with `n_rows` rows."""
    choice = draw(st.integers(0, 7))
    if choice == 0:
        return draw(any_arrays())
    if choice == 1:
        return _frames(draw, n_rows)
    if choice == 2:
        return _odd_batch(draw(st.sampled_from(ODD_KINDS)), draw(st.integers(0, 99)),
                          n_rows, draw(st.sampled_from([width, width + 1])))
    if choice == 3:  # nested and ragged lists
        return draw(st.lists(st.lists(SCALARS, max_size=4), max_size=4))
    if choice == 4:
        return draw(SCALARS)
    if choice == 5:
        return draw(hnp.arrays(DTYPES, (n_rows, width)))
    if choice == 6:
        return pd.Series(draw(st.lists(SCALARS, min_size=n_rows, max_size=n_rows)),
                         dtype=object)
    return None


@st.composite
def good_proba(draw: Any, n_rows: int, width: int) -> Any:
    """Probabilities of `width` classes in any container the monitor must accept."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.dirichlet(np.ones(width), n_rows)
    container = draw(st.sampled_from(
        ["float64", "float32", "matrix", "list", "frame", "masked", "fortran"]
    ))
    if container == "float32":
        return values.astype(np.float32)
    if container == "matrix":
        return np.matrix(values)
    if container == "list":
        return values.tolist()
    if container == "frame":
        return pd.DataFrame(values)
    if container == "masked":
        return np.ma.masked_array(values, mask=False)
    if container == "fortran":
        return np.asfortranarray(values)
    return values


@st.composite
def labels_of_any_kind(draw: Any, n_rows: int, width: int, classes: List[Any]) -> Any:
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return None
    if choice == 1:  # class indices, sometimes out of range or the wrong length
        rows = draw(st.sampled_from([n_rows, n_rows, n_rows + 1, 0]))
        return draw(hnp.arrays(np.int64, rows, elements=st.integers(-1, width)))
    if choice == 2:  # class values, with missing ones
        pool = st.sampled_from(classes + [None, math.nan])
        return draw(st.lists(pool, min_size=n_rows, max_size=n_rows))
    if choice == 3:  # one-hot rows
        return np.eye(width)[np.arange(n_rows) % width]
    return draw(inputs(n_rows, width))


class Call(NamedTuple):
    output: Any
    features: Any
    labels: Any
    good: bool  # the output is `width`-class probabilities
    keyword: bool  # features passed as X=


@st.composite
def calls(draw: Any, width: int, classes: List[Any]) -> Call:
    n_rows = draw(st.sampled_from([0, 1, 1, 2, 3, 7, 1024]))
    good = draw(st.booleans())
    output = draw(good_proba(n_rows, width)) if good else draw(inputs(n_rows, width))
    features = draw(inputs(n_rows, draw(st.integers(1, 4))))
    labels = draw(labels_of_any_kind(n_rows, width, classes))
    return Call(output, features, labels, good, draw(st.booleans()))


CLASS_KINDS = ["none", "n_classes", "strings", "range", "offset"]


def class_values(kind: str, width: int) -> List[Any]:
    if kind == "strings":
        return [f"c{i}" for i in range(width)]
    if kind == "offset":
        return [10 + 3 * i for i in range(width)]
    return list(range(width))


@st.composite
def scenarios(draw: Any) -> "tuple[int, str, List[Call]]":
    width = draw(st.integers(2, 4))
    kind = draw(st.sampled_from(CLASS_KINDS))
    classes = class_values(kind, width)
    return width, kind, draw(st.lists(calls(width, classes), min_size=1, max_size=4))


# ---------------------------------------------------------------------- the checks


def new_monitor(width: int, kind: str, **kwargs: Any) -> "tuple[ModelMonitor, CollectorRegistry]":
    registry = CollectorRegistry()
    options: dict = dict(model="p", registry=registry, background=False, random_state=0,
                         reservoir_size=500, window_seconds=60.0, _clock=ManualClock(),
                         max_categories=3)
    if kind == "n_classes":
        options["n_classes"] = width
    elif kind != "none":
        options["class_names"] = class_values(kind, width)
    options.update(kwargs)
    return ModelMonitor(**options), registry


def accepted(monitor: ModelMonitor) -> int:
    counts = monitor.snapshot().counts  # drains everything staged first
    return 0 if counts is None else int(counts.predictions.sum())


def rejected(monitor: ModelMonitor) -> int:
    return sum(monitor.rejected_rows().values())


def fingerprint(value: Any) -> Any:
    """Something to tell whether the monitor changed a caller's array or frame."""
    if type(value) is np.ndarray and value.dtype.kind != "O":
        return value.tobytes()
    if isinstance(value, pd.DataFrame):
        return value.copy(deep=True)
    return None


def assert_unchanged(value: Any, before: Any) -> None:
    if isinstance(before, bytes):
        assert value.tobytes() == before
    elif isinstance(before, pd.DataFrame):
        pd.testing.assert_frame_equal(value, before)


def check_call(monitor: ModelMonitor, monitored: Any, call: Call, width: int) -> None:
    """One call returns the model's own object, and its rows are counted or refused."""
    before_accepted, before_rejected = accepted(monitor), rejected(monitor)
    features_before = fingerprint(call.features)
    with monitor.labels(call.labels):
        if call.keyword:
            result = monitored(X=call.features)
        else:
            result = monitored(call.features)
    assert result is call.output
    assert_unchanged(call.features, features_before)
    new_accepted = accepted(monitor) - before_accepted
    new_rejected = rejected(monitor) - before_rejected
    offered = count_rows(call.output)
    if offered:
        # Each row of the batch is counted or refused: never both, never lost.
        assert new_accepted + new_rejected == offered
    else:
        assert new_accepted == 0 and new_rejected <= 1
    if call.good and monitor.n_classes == width and offered:
        # Usable probabilities are counted whatever the features and labels were.
        assert new_accepted == offered


def check_consistency(monitor: ModelMonitor, registry: CollectorRegistry, offered: int) -> None:
    """The counters, /metrics and the window agree."""
    assert monitor.rejected_rows()["internal"] == 0, "an internal error was counted"
    snapshot = monitor.snapshot()
    counts = snapshot.counts
    total = 0 if counts is None else int(counts.predictions.sum())
    exposition = generate_latest(registry).decode()  # every collector path runs
    published = sum(
        registry.get_sample_value("mlwatcher_predictions_total",
                                  {"model": "p", "class": label}) or 0.0
        for label in monitor.class_labels
    )
    assert published == total <= offered
    if counts is not None:
        assert (counts.correct <= counts.labeled).all()
        assert counts.labeled.sum() <= total
        assert counts.pred1_buckets.sum() == total
    stats = monitor.close_window()
    if stats is not None:
        assert stats.rows == total  # one window since the start
        assert int(stats.class_rows.sum()) == stats.rows
        assert stats.sampled_rows <= min(stats.rows, monitor.reservoir_size)
        if stats.scores is not None:
            assert 0.0 <= stats.scores.accuracy <= 1.0
    for line in exposition.splitlines():
        if line.startswith("#") or "_bucket" in line:
            continue
        value = line.rsplit(" ", 1)[1]
        assert value not in ("NaN", "+Inf", "-Inf"), line


def _model_output(call_box: List[Call]) -> Any:
    return call_box[0].output


@PROPERTY_SETTINGS
@given(scenarios())
def test_watch_returns_the_models_own_object_and_counts_consistently(scenario):
    width, kind, sequence = scenario
    monitor, registry = new_monitor(width, kind)
    box: List[Call] = []

    @monitor.watch
    def predict_proba(X):
        return _model_output(box)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for call in sequence:
            box[:] = [call]
            check_call(monitor, predict_proba, call, width)
    check_consistency(monitor, registry, sum(count_rows(c.output) for c in sequence))


class Estimator:
    """A fitted classifier whose predict_proba returns whatever the test says."""

    def __init__(self, classes: Any) -> None:
        if classes is not None:
            self.classes_ = np.asarray(classes)
        self.box: List[Call] = []

    def predict_proba(self, X: Any) -> Any:
        return self.box[0].output

    def predict(self, X: Any) -> Any:
        return "predicted"


@PROPERTY_SETTINGS
@given(scenarios(), st.booleans())
def test_wrap_returns_the_models_own_object_and_counts_consistently(scenario, has_classes):
    width, kind, sequence = scenario
    monitor, registry = new_monitor(width, "none" if has_classes else kind)
    estimator = Estimator(class_values(kind, width) if has_classes else None)
    wrapped = monitor.wrap(estimator)
    if has_classes:
        assert monitor.n_classes == width
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for call in sequence:
            estimator.box[:] = [call]
            check_call(monitor, wrapped.predict_proba, call, width)
    assert wrapped.predict(None) == "predicted"
    check_consistency(monitor, registry, sum(count_rows(c.output) for c in sequence))


@PROPERTY_SETTINGS
@given(scenarios())
def test_staged_calls_are_counted_like_calls_read_one_by_one(scenario):
    """Without a read between the calls, batches share stages; the totals are the same
    as when every call is drained on its own."""
    width, kind, sequence = scenario
    staged, staged_registry = new_monitor(width, kind)
    drained, _ = new_monitor(width, kind)
    box: List[Call] = []
    staged_call = staged.watch(lambda X: _model_output(box))
    drained_call = drained.watch(lambda X: _model_output(box))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for call in sequence:
            box[:] = [call]
            with staged.labels(call.labels):
                assert staged_call(call.features) is call.output
            check_call(drained, drained_call, call, width)
    staged_counts, drained_counts = staged.snapshot().counts, drained.snapshot().counts
    assert (staged_counts is None) == (drained_counts is None)
    if staged_counts is not None and drained_counts is not None:
        np.testing.assert_array_equal(staged_counts.predictions, drained_counts.predictions)
        np.testing.assert_array_equal(staged_counts.labeled, drained_counts.labeled)
        np.testing.assert_array_equal(staged_counts.correct, drained_counts.correct)
    assert staged.rejected_rows() == drained.rejected_rows()
    assert staged.dropped_rows() == drained.dropped_rows()
    check_consistency(staged, staged_registry, sum(count_rows(c.output) for c in sequence))
