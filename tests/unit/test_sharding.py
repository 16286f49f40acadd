"""Data-parallel sharding: every rank runs the same steps over disjoint rows that cover the split."""

from __future__ import annotations

import numpy as np
import pytest

from sentiray.training import GROUP_CHUNK_ROWS, global_batches, rank_share, steps_per_epoch

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


# --- grouping by length (group_by_length) --------------------------------------------------------------


def _lengths(n: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(5, 257, size=n).astype(np.int32)


def _padded_tokens(batches: list[np.ndarray], lengths: np.ndarray) -> int:
    return sum(int(lengths[b].max()) * len(b) for b in batches)


@pytest.mark.parametrize(("n", "world", "batch"), COMBOS + [(5000, 2, 16)])
def test_grouped_batches_still_cover_the_split_once_with_equal_steps(n: int, world: int, batch: int) -> None:
    lengths = _lengths(n)
    batches = global_batches(n, 1, 42, batch * world, lengths)
    assert len(batches) == steps_per_epoch(n, batch, world)
    assert all(len(b) == batch * world for b in batches[:-1])
    assert sorted(np.concatenate(batches).tolist()) == list(range(n))


def test_grouped_batches_pad_less_and_keep_the_order_seeded() -> None:
    n, gbs = 5000, 32
    lengths = _lengths(n)
    grouped = global_batches(n, 0, 42, gbs, lengths)
    plain = global_batches(n, 0, 42, gbs)
    # Uniform lengths in 5..256: random batches of 32 pad nearly every row to ~250 tokens.
    assert _padded_tokens(grouped, lengths) < 0.6 * _padded_tokens(plain, lengths)
    # Within a chunk the rows run longest first, and each chunk holds the same rows as the shuffled order.
    order, shuffled = np.concatenate(grouped), np.concatenate(plain)
    for start in range(0, n, GROUP_CHUNK_ROWS):
        chunk = order[start : start + GROUP_CHUNK_ROWS]
        assert np.all(np.diff(lengths[chunk]) <= 0)
        assert set(chunk.tolist()) == set(shuffled[start : start + GROUP_CHUNK_ROWS].tolist())
    # Deterministic per seed and epoch (a resumed run sees the same batches), different across epochs.
    assert np.array_equal(order, np.concatenate(global_batches(n, 0, 42, gbs, lengths)))
    assert not np.array_equal(order, np.concatenate(global_batches(n, 1, 42, gbs, lengths)))


def test_grouped_order_does_not_depend_on_the_world_size() -> None:
    lengths = _lengths(3000)
    one = np.concatenate(global_batches(3000, 2, 7, 16, lengths))
    four = np.concatenate(global_batches(3000, 2, 7, 16 * 4, lengths))
    assert np.array_equal(one, four)


@pytest.mark.parametrize("world", [2, 4])
def test_grouped_ranks_get_similar_lengths(world: int) -> None:
    # The global batch is dealt round-robin from rows sorted by length, so DDP ranks pad alike and
    # none waits long for the others: each rank's widest row is one of the batch's `world` widest.
    # (Dealt in contiguous blocks instead, the last rank's widest would sit a block further down.)
    lengths = _lengths(4096)
    for gb in global_batches(4096, 0, 1, 16 * world, lengths):
        widths = sorted((int(lengths[rank_share(gb, r, world)].max()) for r in range(world)), reverse=True)
        assert widths == sorted(lengths[gb].tolist(), reverse=True)[:world]


def test_lengths_must_match_the_rows() -> None:
    with pytest.raises(ValueError, match="lengths has 9 entries for 10 rows"):
        global_batches(10, 0, 1, 4, _lengths(9))
