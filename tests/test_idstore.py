"""IdStore and the conversion of ids: bounds in count and time, whatever arrives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlwatcher_exporter.errors import BatchTypeError, BatchValueError
from mlwatcher_exporter.idstore import IdStore, copy_ids, to_keys


def record(store, keys, now, window=0, labeled=None):
    n = len(keys)
    store.record(list(keys), np.arange(n) % 3, window, np.full(n, -1), np.arange(n),
                 np.full(n, float(now)), np.zeros(n, bool) if labeled is None else labeled, now)


@pytest.mark.parametrize("ids, keys", [
    (["a", "b"], ["a", "b"]),
    (("a", 7), ["a", 7]),
    (np.array([3, 4], dtype=np.uint16), [3, 4]),
    (np.array(["x", "y"]), ["x", "y"]),
    (np.array(["x", np.int64(5)], dtype=object), ["x", 5]),
    (pd.Series(["p", "q"]), ["p", "q"]),
    (range(2), [0, 1]),
])
def test_accepted_ids(ids, keys):
    got = to_keys(ids, 2)
    assert got == keys and [type(k) for k in got] == [type(k) for k in keys]


@pytest.mark.parametrize("ids, error, message", [
    ("ab", BatchTypeError, "ids == 'ab', must be a sequence of str or int ids"),
    (b"ab", BatchTypeError, "must be a sequence"),
    ({"a": 1, "b": 2}, BatchTypeError, "must be a sequence"),
    ({"a", "b"}, BatchTypeError, "must be a sequence"),
    (5, BatchTypeError, "ids == 5, must be a sequence"),
    ([1.0, 2.0], BatchTypeError, "ids holds 1.0 \\(float\\)"),
    (np.array([1.0, 2.0]), BatchTypeError, "ids has dtype float64"),
    (np.array([True, False]), BatchTypeError, "ids has dtype bool"),
    (["a", None], BatchTypeError, "ids holds None"),
    ([("a",), ("b",)], BatchValueError, "ids has shape \\(2, 1\\), must be 1-D"),
    (np.zeros((2, 2), dtype=int), BatchValueError, "must be 1-D"),
    (["a"], BatchValueError, "ids has 1 ids, must have one per row \\(2\\)"),
])
def test_refused_ids_name_the_argument(ids, error, message):
    with pytest.raises(error, match=message):
        to_keys(ids, 2)


def test_copy_ids_is_a_copy_for_mutable_containers():
    array = np.array([1, 2])
    listed = ["a", "b"]
    copied_array, copied_list = copy_ids(array), copy_ids(listed)
    array[0], listed[0] = 9, "z"
    assert copied_array.tolist() == [1, 2] and copied_list == ["a", "b"]
    assert copy_ids(pd.Series(["s"])) == ["s"]
    assert copy_ids("abc") == "abc"  # refused later, in bulk, never split here


def test_find_and_mark_labeled():
    store = IdStore(100, 10.0)
    record(store, ["a", "b", 3], now=5.0, window=2,
           labeled=np.array([False, True, False]))
    entry = store.find(3)
    assert (entry.predicted, entry.window, entry.position, entry.time) == (2, 2, 2, 5.0)
    assert store.find("b").labeled and not store.find("a").labeled
    assert store.find("3") is None  # a string id is not the integer id
    store.mark_labeled(store.find("a").seq)
    assert store.find("a").labeled


def test_ttl_forgets_old_ids_and_counts_the_unlabeled():
    store = IdStore(100, 10.0)
    record(store, ["a", "b"], now=0.0, labeled=np.array([True, False]))
    record(store, ["c"], now=6.0)
    store.purge(10.0)
    assert len(store) == 3  # age 10 is not older than the ttl
    store.purge(10.5)
    assert len(store) == 1 and store.find("a") is None and store.find("c") is not None
    assert store.expired == {"ttl": 1, "max_ids": 0, "replaced": 0}
    record(store, ["d"], now=17.0)  # recording purges too
    assert store.find("c") is None and store.expired["ttl"] == 2


def test_count_bound_evicts_oldest_first_across_ring_wraps():
    store = IdStore(2500, 1e9)
    rng = np.random.default_rng(0)
    next_id = 0
    for step in range(40):
        n = int(rng.integers(1, 400))
        keys = list(range(next_id, next_id + n))
        record(store, keys, now=float(step))
        next_id += n
        assert len(store) == min(next_id, 2500)
        assert store._capacity <= 2500
        # The newest ids are held with their own fields, the older ones are gone.
        assert store.find(next_id - 1).position == n - 1
        assert store.find(next_id - min(next_id, 2500)) is not None
        if next_id > 2500:
            assert store.find(next_id - 2501) is None
    assert store.expired["max_ids"] == next_id - 2500


def test_replaced_ids_count_once_and_are_not_forgotten_twice():
    store = IdStore(5, 100.0)
    record(store, ["a", "b"], now=0.0)
    record(store, ["a", "a", "c"], now=1.0)
    assert store.expired == {"ttl": 0, "max_ids": 0, "replaced": 2} and len(store) == 3
    assert store.find("a").time == 1.0 and store.find("a").position == 1
    # Evicting the 3 oldest entries (old "a", "b", the first new "a") forgets only "b":
    # the two "a" entries were replaced, already counted, and "a" itself stays.
    record(store, ["d", "e", "f"], now=2.0)
    assert store.expired == {"ttl": 0, "max_ids": 1, "replaced": 2}
    assert store.find("a").time == 1.0 and store.find("b") is None
    assert len(store) == 5


def test_memory_stays_bounded_whatever_arrives():
    store = IdStore(1000, 50.0)
    rng = np.random.default_rng(1)
    for step in range(200):
        n = int(rng.integers(0, 300))
        keys = [f"id-{int(k)}" for k in rng.integers(0, 5000, n)]  # repeats, old and new
        record(store, keys, now=float(step))
        assert len(store) <= 1000 and store._capacity <= 1000
    held = sum(1 for key in store._keys.tolist() if key is not None)
    assert held <= 1000
    store.purge(1e6)
    assert len(store) == 0
    assert all(key is None for key in store._keys.tolist())  # no id object kept
