"""Reservoir: Algorithm R's distribution, bounded memory, reproducibility."""

import numpy as np
import pytest
from scipy import stats

from mlwatcher_exporter.reservoir import Reservoir, check_random_state


def _apply(reservoir, sample, batch):
    for slots, rows in reservoir.offer(len(batch)):
        sample[slots] = batch[rows]


def test_fills_in_order_until_capacity():
    reservoir = Reservoir(5, random_state=0)
    sample = np.full(5, -1)
    _apply(reservoir, sample, np.arange(3))
    assert reservoir.size == 3 and reservoir.seen == 3
    np.testing.assert_array_equal(sample[:3], [0, 1, 2])
    _apply(reservoir, sample, np.arange(3, 5))
    np.testing.assert_array_equal(sample, [0, 1, 2, 3, 4])


def test_size_is_bounded_and_seen_counts_every_row():
    reservoir = Reservoir(100, random_state=1)
    sample = np.full(100, -1)
    total = 0
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(0, 5000))
        _apply(reservoir, sample, np.arange(total, total + n))
        total += n
    assert reservoir.seen == total
    assert reservoir.size == 100
    # Every kept row is a distinct row that was offered.
    assert len(set(sample.tolist())) == 100
    assert sample.min() >= 0 and sample.max() < total


@pytest.mark.parametrize("batch_sizes", [[1] * 60, [7, 13, 40], [60], [3, 1, 50, 6]])
def test_inclusion_is_uniform(batch_sizes):
    """Each of N rows ends in the sample with probability k/N, whatever the batching."""
    capacity, trials = 10, 4000
    n_rows = sum(batch_sizes)
    hits = np.zeros(n_rows)
    rng = np.random.default_rng(42)
    for _ in range(trials):
        reservoir = Reservoir(capacity, random_state=rng)
        sample = np.full(capacity, -1)
        start = 0
        for size in batch_sizes:
            _apply(reservoir, sample, np.arange(start, start + size))
            start += size
        hits[sample] += 1
    expected = np.full(n_rows, trials * capacity / n_rows)
    _, p_value = stats.chisquare(hits, expected)
    assert p_value > 1e-4, f"inclusion counts are not uniform (p={p_value:.2e})"


def test_slots_are_uniform_after_fill():
    """Which slot a late row replaces is uniform too (no slot is favoured)."""
    capacity, trials = 8, 3000
    replaced = np.zeros(capacity)
    rng = np.random.default_rng(7)
    for _ in range(trials):
        reservoir = Reservoir(capacity, random_state=rng)
        reservoir.offer(capacity)
        for slots, _rows in reservoir.offer(200):
            replaced[slots] += 1
    _, p_value = stats.chisquare(replaced)
    assert p_value > 1e-4


def test_same_seed_same_sample():
    def run(seed):
        reservoir = Reservoir(20, random_state=seed)
        sample = np.full(20, -1)
        for start in range(0, 1000, 37):
            _apply(reservoir, sample, np.arange(start, start + 37))
        return sample

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_large_batch_into_full_reservoir_keeps_the_expected_share():
    """Rows n+1..2n replace about k*ln(2) of k slots (the Algorithm R expectation)."""
    capacity = 10_000
    reservoir = Reservoir(capacity, random_state=0)
    reservoir.offer(capacity)
    kept = sum(
        len(range(*rows.indices(capacity))) if isinstance(rows, slice) else len(rows)
        for _, rows in reservoir.offer(capacity)
    )
    # Distinct slots written: k * (1 - exp(-ln 2)) = k / 2 in expectation.
    assert abs(kept - capacity / 2) < 4 * np.sqrt(capacity)


def test_reset_starts_a_new_sample():
    reservoir = Reservoir(4, random_state=0)
    reservoir.offer(100)
    reservoir.reset()
    assert reservoir.seen == 0 and reservoir.size == 0
    assert reservoir.offer(2)[0][0] == slice(0, 2)


@pytest.mark.parametrize("capacity, error", [(0, ValueError), (-3, ValueError), (2.5, TypeError),
                                             (True, TypeError)])
def test_bad_capacity_is_named(capacity, error):
    with pytest.raises(error, match="capacity"):
        Reservoir(capacity)


def test_check_random_state():
    generator = np.random.default_rng(0)
    assert check_random_state(generator) is generator
    assert isinstance(check_random_state(None), np.random.Generator)
    with pytest.raises(TypeError, match="random_state == 'x'"):
        check_random_state("x")
