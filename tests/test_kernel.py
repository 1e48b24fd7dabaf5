"""The one-pass row summary: the compiled kernel against its numpy reference."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlwatcher_exporter import kernel
from mlwatcher_exporter.counts import PRED1_EDGES

compiled = pytest.mark.skipif(
    not kernel.COMPILED and os.environ.get("MLWATCHER_REQUIRE_KERNEL") != "1",
    reason="the compiled kernel is not built (a C compiler was missing at install)",
)


def test_compiled_when_required() -> None:
    """CI builds the extension: a silent fallback to numpy would hide a build failure."""
    if os.environ.get("MLWATCHER_REQUIRE_KERNEL") == "1":
        assert kernel.COMPILED, "mlwatcher_exporter._kernel did not build"


def _check_same(proba: np.ndarray, edges: np.ndarray, threshold: object) -> None:
    fast = kernel.summarize(proba, edges, threshold)  # type: ignore[arg-type]
    pure = kernel.summarize_pure(proba, edges, threshold)  # type: ignore[arg-type]
    assert fast.nan_seen == pure.nan_seen
    if fast.nan_seen:
        return  # only the flag is meaningful then
    for name in ("predicted", "pred1", "pred2", "buckets", "class_rows"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(pure, name), err_msg=name)
        assert getattr(fast, name).dtype == getattr(pure, name).dtype, name
    if proba.shape[0]:
        assert (fast.low, fast.high) == (pure.low, pure.high)


# Values on a coarse grid make ties and values equal to an edge frequent.
_GRID = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0])
# Up to 32 edges the kernel counts the edges below a value, beyond it bisects: both.
_EDGES = st.lists(_GRID, max_size=40).map(sorted)


@compiled
@settings(max_examples=300, deadline=None)
@given(
    proba=hnp.arrays(
        np.float64,
        st.tuples(st.integers(0, 40), st.integers(1, 12)),
        elements=st.one_of(_GRID, st.floats(-0.5, 1.5), st.just(float("nan"))),
    ),
    edges=_EDGES,
    threshold=st.one_of(st.none(), _GRID),
)
def test_compiled_equals_numpy(proba: np.ndarray, edges: list, threshold: object) -> None:
    _check_same(proba, np.asarray(edges, dtype=np.float64), threshold)


@compiled
@pytest.mark.parametrize("n_classes", [1, 2, 3, 10, 100])
def test_compiled_equals_numpy_on_model_like_rows(n_classes: int) -> None:
    rng = np.random.default_rng(n_classes)
    proba = rng.dirichlet(np.full(n_classes, 0.3), size=5000)
    _check_same(proba, PRED1_EDGES, None)
    _check_same(proba, PRED1_EDGES, 0.3)
    # A column slice is not contiguous: summarize copies it first.
    _check_same(np.hstack([proba, proba])[:, :n_classes], PRED1_EDGES, None)


def test_values_of_a_small_example() -> None:
    proba = np.array([[0.2, 0.7, 0.1], [0.4, 0.2, 0.4], [0.0, 0.0, 1.0]])
    for summarize in (kernel.summarize, kernel.summarize_pure):
        summary = summarize(proba, PRED1_EDGES)
        assert summary.predicted.tolist() == [1, 0, 2]  # ties: the first, as argmax
        assert summary.pred1.tolist() == [0.7, 0.4, 1.0]
        assert summary.pred2.tolist() == [0.2, 0.4, 0.0]
        assert summary.class_rows.tolist() == [1, 1, 1]
        expected = np.bincount(np.searchsorted(PRED1_EDGES, [0.7, 0.4, 1.0]),
                               minlength=PRED1_EDGES.size + 1)
        assert summary.buckets.tolist() == expected.tolist()
        assert (summary.low, summary.high, summary.nan_seen) == (0.0, 1.0, False)


def test_binary_threshold() -> None:
    proba = np.array([[0.6, 0.4], [0.3, 0.7]])
    for summarize in (kernel.summarize, kernel.summarize_pure):
        assert summarize(proba, PRED1_EDGES, 0.35).predicted.tolist() == [1, 1]
        assert summarize(proba, PRED1_EDGES, None).predicted.tolist() == [0, 1]
        assert summarize(proba, PRED1_EDGES, 0.35).class_rows.tolist() == [0, 2]


@compiled
def test_bad_buffers_raise_type_error() -> None:
    from mlwatcher_exporter import _kernel  # type: ignore[attr-defined]

    proba = np.zeros((3, 2), dtype=np.float32)
    outputs = (np.empty(3, np.int64), np.empty(3), np.empty(3), np.empty(2, np.int64),
               np.empty(2, np.int64))
    with pytest.raises(TypeError, match="proba has format f"):
        _kernel.summarize(proba, np.array([0.5]), 0.5, *outputs)
    with pytest.raises(ValueError, match="output lengths"):
        _kernel.summarize(np.zeros((4, 2)), np.array([0.5]), 0.5, *outputs)


_SCENARIO = textwrap.dedent(
    """
    import json, numpy as np
    from prometheus_client import CollectorRegistry
    from mlwatcher_exporter import ModelMonitor, kernel
    rng = np.random.default_rng(7)
    monitor = ModelMonitor(model="m", registry=CollectorRegistry(), background=False,
                           window_seconds=3600)
    for size in (1, 7, 300, 2000):
        proba = rng.dirichlet(np.full(4, 0.4), size=size)
        proba[0, 0] = np.nan if size == 7 else proba[0, 0]  # one rejected batch
        monitor.observe(proba, labels=rng.integers(0, 4, size)) if size != 7 else \\
            monitor.observe_quietly(proba, None, None)
    snapshot = monitor.snapshot()
    counts = snapshot.counts
    print(json.dumps({"compiled": kernel.COMPILED,
                      "predictions": counts.predictions.tolist(),
                      "correct": counts.correct.tolist(),
                      "pred1_buckets": counts.pred1_buckets.tolist(),
                      "pred1_sum": counts.pred1_sum}))
    """
)


def _run(pure: bool) -> dict:
    import json

    env = dict(os.environ, MLWATCHER_PURE="1" if pure else "0")
    out = subprocess.run([sys.executable, "-c", _SCENARIO], env=env, check=True,
                         capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout)


@compiled
def test_monitor_counts_the_same_with_and_without_the_kernel() -> None:
    """MLWATCHER_PURE=1 takes the numpy path through the whole monitor, with the same
    counters to the last bit."""
    fast, pure = _run(pure=False), _run(pure=True)
    assert fast.pop("compiled") is True and pure.pop("compiled") is False
    assert fast == pure
    assert sum(fast["predictions"]) == 1 + 300 + 2000


_DTYPES = st.sampled_from(["<f8", ">f8", "<f4", "<i8", "<i4", "<u8", "|b1"])


@compiled
@settings(max_examples=200, deadline=None)
@given(
    dtype=_DTYPES,
    n_rows=st.integers(1, 6),
    width=st.integers(1, 4),
    start=st.integers(0, 4),
    transposed=st.booleans(),
)
def test_stage_rows_copies_exactly_what_numpy_assigns(
    dtype: str, n_rows: int, width: int, start: int, transposed: bool
) -> None:
    """A pair is copied only when a memcpy is what numpy's assignment would do; the
    caller's fallback then makes the block the same either way."""
    rng = np.random.default_rng(n_rows * 7 + width)
    batch = (rng.random((width, n_rows)).T if transposed else rng.random((n_rows, width)))
    batch = (batch * 10).astype(dtype)
    labels = (rng.integers(0, 5, n_rows)).astype(dtype if dtype[1] in "iu" else "<i8")
    capacity = 12
    blocks = (np.zeros((capacity, width)), np.zeros((capacity, width)),
              np.full(capacity, -1, dtype=np.int64))
    expected = tuple(block.copy() for block in blocks)
    rows = slice(start, start + n_rows)
    expected[0][rows] = batch
    expected[1][rows] = batch
    expected[2][rows] = labels
    copied = kernel.stage_rows(start, blocks[0], batch, blocks[1], batch, blocks[2], labels)
    native = dtype == "<f8" and batch.flags.c_contiguous  # a 1-wide transpose is too
    assert copied == (3 if native else 0) | (4 if labels.dtype == np.int64 else 0)
    for bit, block, batch_part in ((1, blocks[0], batch), (2, blocks[1], batch),
                                   (4, blocks[2], labels)):
        if not copied & bit:
            block[rows] = batch_part
    for block, want in zip(blocks, expected):
        np.testing.assert_array_equal(block, want)


@compiled
def test_stage_rows_skips_none_and_refuses_what_does_not_fit() -> None:
    block = np.zeros((4, 2))
    assert kernel.stage_rows(0, block, None, None, None, None, None) == 0
    assert kernel.stage_rows(3, block, np.ones((2, 2)), None, None, None, None) == 0
    assert kernel.stage_rows(0, block, np.ones((2, 3)), None, None, None, None) == 0
    assert kernel.stage_rows(0, block, np.ones(2), None, None, None, None) == 0
    assert not block.any()
    assert kernel.stage_rows(2, block, np.ones((2, 2)), None, None, None, None) == 1
    assert block.sum() == 4 and block[2:].all()


_VALUES = st.one_of(st.floats(-1e6, 1e6), st.sampled_from(
    [0.0, -0.0, 1.0, -1.0, float("nan"), float("inf"), float("-inf"), 1e150, -1e150,
     1e151, -1e300, 1.7e308]))


@compiled
@settings(max_examples=200, deadline=None)
@given(
    table=hnp.arrays(np.float64, st.tuples(st.integers(0, 30), st.integers(1, 8)),
                     elements=_VALUES),
    pick=st.booleans(),
    masked=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_feature_sums_compiled_equal_numpy(
    table: np.ndarray, pick: bool, masked: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    width = table.shape[1]
    columns = np.flatnonzero(rng.random(width) < 0.6) if pick else None
    mask = rng.random(table.shape[0]) < 0.7 if masked else None
    size = width if columns is None else columns.size

    def counters() -> list:
        start = rng.integers(0, 5, size=5)  # counters that already hold something
        return [np.full(size, start[0], np.int64), np.full(size, start[1], np.int64),
                np.full(size, float(start[2])), np.full(size, float(start[3])),
                np.full(size, float(start[4]))]

    fast = counters()
    pure = [c.copy() for c in fast]
    kernel.add_feature_sums(table, columns, mask, *fast)
    kernel.add_feature_sums_pure(table, columns, mask, *pure)
    for name, a, b in zip(("values", "missing", "positive", "negative", "squares"),
                          fast, pure):
        if a.dtype == np.int64:  # counts: exact
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:  # sums: the order of additions may differ (numpy's pairwise summation)
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, err_msg=name)


@compiled
@settings(max_examples=200, deadline=None)
@given(
    values=hnp.arrays(np.float64, st.integers(0, 40),
                      elements=st.one_of(_GRID, st.floats(-0.5, 1.5), st.just(float("nan")))),
    edges=_EDGES,
)
def test_buckets_compiled_equal_numpy(values: np.ndarray, edges: list) -> None:
    edges_array = np.asarray(edges, dtype=np.float64)
    fast = np.arange(edges_array.size + 1, dtype=np.int64)
    pure = fast.copy()
    kernel.add_buckets(edges_array, values, fast)
    kernel.add_buckets_pure(edges_array, values, pure)
    np.testing.assert_array_equal(fast, pure)


@compiled
@settings(max_examples=200, deadline=None)
@given(
    rows=st.integers(0, 1200),  # across the kernel's 512-row chunks
    edges=_EDGES,
    seed=st.integers(0, 2**32 - 1),
    nan=st.booleans(),
)
def test_spread_buckets_compiled_equal_numpy(rows: int, edges: list, seed: int,
                                             nan: bool) -> None:
    rng = np.random.default_rng(seed)
    top = rng.choice([0.0, 0.25, 0.5, 0.9, 1.0, rng.random()], size=rows)
    second = top * rng.choice([0.0, 0.5, 1.0, rng.random()], size=rows)
    if nan and rows:
        top[rng.integers(0, rows)] = np.nan
    edges_array = np.asarray(edges, dtype=np.float64)
    fast = np.arange(edges_array.size + 1, dtype=np.int64)
    pure = fast.copy()
    total = kernel.add_spread_buckets(edges_array, top, second, fast)
    expected = kernel.add_spread_buckets_pure(edges_array, top, second, pure)
    np.testing.assert_array_equal(fast, pure)
    # The sum runs in four lanes, numpy's pairwise: equal to rounding.
    np.testing.assert_allclose(total, expected, rtol=1e-12, atol=1e-12)


@compiled
def test_spread_buckets_refuse_what_does_not_fit() -> None:
    from mlwatcher_exporter import _kernel  # type: ignore[attr-defined]

    with pytest.raises(ValueError, match="len\\(edges\\) \\+ 1"):
        _kernel.add_spread_buckets(np.zeros(2), np.zeros(3), np.zeros(3),
                                   np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="top's length"):
        _kernel.add_spread_buckets(np.zeros(2), np.zeros(3), np.zeros(4),
                                   np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="out has format"):
        _kernel.add_spread_buckets(np.zeros(2), np.zeros(3), np.zeros(3), np.zeros(3))


@compiled
def test_feature_sums_refuse_what_does_not_fit() -> None:
    from mlwatcher_exporter import _kernel  # type: ignore[attr-defined]

    table = np.zeros((3, 2))
    good = [np.zeros(2, np.int64), np.zeros(2, np.int64), np.zeros(2), np.zeros(2),
            np.zeros(2)]
    with pytest.raises(ValueError, match="do not fit"):
        _kernel.add_feature_sums(table, np.array([0, 5]), None, *good)
    with pytest.raises(ValueError, match="do not fit"):
        _kernel.add_feature_sums(table, None, np.ones(2, bool), *good)
    with pytest.raises(TypeError, match="values has format"):
        _kernel.add_feature_sums(table, None, None, np.zeros(2), *good[1:])
    with pytest.raises(ValueError, match="len"):
        _kernel.add_buckets(np.array([0.5]), np.zeros(3), np.zeros(3, np.int64))


@compiled
@settings(max_examples=200, deadline=None)
@given(
    n_classes=st.integers(1, 6),
    rows=st.integers(0, 40),
    seed=st.integers(0, 1000),
    confusion=st.booleans(),
)
def test_label_counts_compiled_equal_numpy(
    n_classes: int, rows: int, seed: int, confusion: bool
) -> None:
    rng = np.random.default_rng(seed)
    predicted = rng.integers(0, n_classes, rows)
    labels = rng.integers(-1, n_classes, rows)
    start = rng.integers(0, 5, size=(3, n_classes))
    cells = rng.integers(0, 5, n_classes * n_classes) if confusion else None
    fast = [c.copy() for c in start] + [None if cells is None else cells.copy()]
    pure = [c.copy() for c in start] + [None if cells is None else cells.copy()]
    kernel.add_label_counts(predicted, labels, *fast)
    kernel.add_label_counts_pure(predicted, labels, *pure)
    for a, b in zip(fast, pure):
        if a is not None:
            np.testing.assert_array_equal(a, b)


@compiled
def test_label_counts_refuse_what_is_not_a_class_index() -> None:
    counters = [np.zeros(2, np.int64) for _ in range(3)]
    with pytest.raises(ValueError, match="not a class index"):
        kernel.add_label_counts(np.array([0, 1]), np.array([0, 2]), *counters, None)
    with pytest.raises(ValueError, match="differ"):
        kernel.add_label_counts(np.array([0]), np.array([0, 1]), *counters, None)
    assert not any(c.any() for c in counters)


def test_huge_feature_values_count_as_missing() -> None:
    """Beyond +-FEATURE_LIMIT a square (or a sum of a few) would overflow a counter to
    +Inf for good: such values count as missing, in both paths."""
    table = np.array([[1e200, 2.0], [-1.7e308, 1e150], [3.0, np.inf]])
    for add in (kernel.add_feature_sums, kernel.add_feature_sums_pure):
        out = [np.zeros(2, np.int64), np.zeros(2, np.int64), np.zeros(2), np.zeros(2),
               np.zeros(2)]
        add(table, None, None, *out)
        assert out[0].tolist() == [1, 2] and out[1].tolist() == [2, 1]
        assert out[2].tolist() == [3.0, 2.0 + 1e150] and out[3].tolist() == [0.0, 0.0]
        assert np.isfinite(out[4]).all()
