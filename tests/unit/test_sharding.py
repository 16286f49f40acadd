"""Data-parallel sharding: every rank runs the same steps over disjoint rows that cover the split."""

from __future__ import annotations

import numpy as np
import pytest

from sentiray.training import global_batches, rank_share, steps_per_epoch

COMBOS = [
    # (rows, world_size, batch_size)
    (10, 1, 3),
    (12, 2, 3),  # divides evenly
    (10, 2, 3),  # last global batch short
    (11, 3, 2),
    (13, 4, 2),  # last global batch smaller than the world: some ranks get nothing
    (5, 4, 4),  # fewer rows than one global batch
    (1, 2, 1),
    (97, 3, 8),
    (1000, 7, 16),
]


def _rank_epoch(n: int, world: int, batch: int, rank: int, epoch: int, seed: int = 42) -> list[np.ndarray]:
    return [rank_share(gb, rank, world) for gb in global_batches(n, epoch, seed, batch * world)]


@pytest.mark.parametrize(("n", "world", "batch"), COMBOS)
@pytest.mark.parametrize("epoch", [0, 3])
def test_ranks_are_disjoint_and_cover_the_split(n: int, world: int, batch: int, epoch: int) -> None:
    per_rank = [np.concatenate(_rank_epoch(n, world, batch, r, epoch)) for r in range(world)]
    seen = np.concatenate(per_rank)
    assert len(seen) == n  # no row twice ...
    assert sorted(seen.tolist()) == list(range(n))  # ... and every row once
    for a in range(world):
        for b in range(a + 1, world):
            assert not set(per_rank[a].tolist()) & set(per_rank[b].tolist())


@pytest.mark.parametrize(("n", "world", "batch"), COMBOS)
def test_every_rank_runs_the_same_number_of_steps(n: int, world: int, batch: int) -> None:
    expected = steps_per_epoch(n, batch, world)
    assert expected == -(-n // (batch * world))  # ceil, computed independently
    for rank in range(world):
        steps = _rank_epoch(n, world, batch, rank, epoch=0)
        assert len(steps) == expected
        assert all(len(s) <= batch for s in steps)
    # Within each step the ranks' shares differ by at most one row.
    for gb in global_batches(n, 0, 42, batch * world):
        sizes = [len(rank_share(gb, r, world)) for r in range(world)]
        assert max(sizes) - min(sizes) <= 1
        assert sum(sizes) == len(gb)


def test_all_but_the_last_global_batch_are_full() -> None:
    batches = global_batches(100, 0, 1, 16)
    assert [len(b) for b in batches] == [16] * 6 + [4]


def test_epochs_reshuffle_deterministically_from_the_seed() -> None:
    n, gbs = 200, 32
    epoch0 = np.concatenate(global_batches(n, 0, 42, gbs))
    assert np.array_equal(epoch0, np.concatenate(global_batches(n, 0, 42, gbs)))  # same seed, same epoch
    epoch1 = np.concatenate(global_batches(n, 1, 42, gbs))
    assert not np.array_equal(epoch0, epoch1)  # a new order each epoch
    assert sorted(epoch1.tolist()) == list(range(n))
    other_seed = np.concatenate(global_batches(n, 0, 43, gbs))
    assert not np.array_equal(epoch0, other_seed)
    assert not np.array_equal(epoch0, np.arange(n))  # shuffled at all


def test_the_order_does_not_depend_on_the_world_size() -> None:
    # The same seed and epoch visit the rows in the same global order with 1 or 4 workers, so a run
    # resumed on a different number of workers sees the same data order.
    one = np.concatenate(global_batches(50, 2, 7, 8))
    four = np.concatenate(global_batches(50, 2, 7, 8 * 4))
    assert np.array_equal(one, four)
