"""DistributedSampler and torch_randperm: exactly torch's indices."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from torchcontract import protocols
from torchcontract.reference_impl import DataLoader, DistributedSampler, torch_randperm
from torchcontract.reference_impl._distributed import _mt19937_raw, _randperm_inside_out

from ..conftest import NO_TORCH_REASON

SEEDS = [0, 1, 42, 2**31, 2**32 - 1, 2**32, 2**32 + 7, 2**40 + 3, 2**63 - 1, 2**64 - 1, -1, -(2**63)]


def test_unshuffled_indices_known_from_torch() -> None:
    # torch.utils.data.DistributedSampler(range(10), num_replicas=4, rank=r, shuffle=False)
    expected = [[0, 4, 8], [1, 5, 9], [2, 6, 0], [3, 7, 1]]
    assert [list(DistributedSampler(10, 4, rank, shuffle=False)) for rank in range(4)] == expected
    assert [list(DistributedSampler(range(10), 4, r, shuffle=False, drop_last=True)) for r in range(4)] == [
        [0, 4],
        [1, 5],
        [2, 6],
        [3, 7],
    ]
    assert len(DistributedSampler(10, 4, 0)) == 3
    assert len(DistributedSampler(10, 4, 0, drop_last=True)) == 2


def test_permutations_known_from_torch() -> None:
    # torch.randperm(n, generator=torch.Generator().manual_seed(seed)), torch 2.14.1
    assert torch_randperm(10, 0).tolist() == [4, 1, 7, 5, 3, 9, 0, 8, 6, 2]
    assert torch_randperm(7, 2**32 + 5).tolist() == [1, 0, 4, 2, 6, 5, 3]
    assert torch_randperm(0, 0).tolist() == []
    assert torch_randperm(1, 0).tolist() == [0]
    assert torch_randperm(5, 0).dtype == np.int64
    # torch.utils.data.DistributedSampler(range(10), num_replicas=4, rank=r, seed=0)
    expected = [[4, 3, 6], [1, 9, 2], [7, 0, 4], [5, 8, 1]]
    assert [list(DistributedSampler(10, 4, rank)) for rank in range(4)] == expected


def test_every_replica_gets_the_same_count_and_together_they_cover_the_data() -> None:
    for n, replicas, drop_last in itertools.product(range(12), range(1, 6), (False, True)):
        parts = [
            list(DistributedSampler(n, replicas, r, seed=3, drop_last=drop_last)) for r in range(replicas)
        ]
        assert len({len(part) for part in parts}) == 1
        assert all(
            len(part) == len(DistributedSampler(n, replicas, 0, drop_last=drop_last)) for part in parts
        )
        covered = set(itertools.chain.from_iterable(parts))
        assert covered == set(range(n)) if not drop_last else covered <= set(range(n))
        assert all(type(i) is int for part in parts for i in part)


def test_set_epoch_changes_the_order_and_is_reproducible() -> None:
    sampler = DistributedSampler(100, 2, 1, seed=5)
    first = list(sampler)
    assert list(sampler) == first  # without set_epoch, the same order every time
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first
    assert sampler.epoch == 1
    assert list(DistributedSampler(100, 2, 1, seed=4)) != first
    other = DistributedSampler(100, 2, 1, seed=5)
    other.set_epoch(1)
    assert list(other) == second


def test_the_loader_accepts_it_as_sampler() -> None:
    sampler = DistributedSampler(11, 3, 2, seed=1)
    loader = DataLoader(np.arange(100, 111), batch_size=2, sampler=sampler)
    expected = [100 + i for i in sampler]
    assert np.concatenate(list(loader)).tolist() == expected
    assert len(loader) == 2
    assert isinstance(sampler, protocols.Sampler)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((10, 0, 0), {}, "num_replicas"),
        ((10, 2, 2), {}, r"Invalid rank 2, rank should be in the interval \[0, 1\]"),
        ((10, 2, -1), {}, "Invalid rank"),
        ((10, 2, True), {}, "Invalid rank"),
        ((10, 2, 0), {"shuffle": 1}, "shuffle"),
        ((10, 2, 0), {"drop_last": None}, "drop_last"),
        ((10, 2, 0), {"seed": 1.5}, "seed"),
        ((-1, 2, 0), {}, "length"),
    ],
)
def test_rejects_bad_arguments(args: tuple[int, ...], kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DistributedSampler(*args, **kwargs)  # type: ignore[arg-type]


def test_seed_range_like_torch() -> None:
    with pytest.raises(ValueError, match="seeds"):
        torch_randperm(3, 2**64)
    with pytest.raises(ValueError, match="seeds"):
        torch_randperm(3, -(2**63) - 1)
    with pytest.raises(ValueError, match=">= 0"):
        torch_randperm(-1, 0)


def test_inside_out_path_gives_permutations() -> None:
    # The path for n >= 214,748,364 cannot be compared with torch here (see the parity test below
    # for its 64-bit draws); at least it permutes.
    for n in (1, 2, 10, 1000):
        assert sorted(_randperm_inside_out(n, 9).tolist()) == list(range(n))


# -- parity with torch ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_randperm_matches_torch(seed: int) -> None:
    torch = pytest.importorskip("torch", reason=NO_TORCH_REASON)
    for n in (0, 1, 2, 3, 5, 10, 64, 1000, 60_000):
        generator = torch.Generator().manual_seed(seed)
        assert torch_randperm(n, seed).tolist() == torch.randperm(n, generator=generator).tolist(), n


def test_raw_mt19937_and_random64_match_torch() -> None:
    torch = pytest.importorskip("torch", reason=NO_TORCH_REASON)
    for seed in (0, 7, 2**32 + 1):
        # torch draws random64() for ranges of 2**32 or more: first output high, second low.
        generator = torch.Generator().manual_seed(seed)
        drawn = torch.randint(0, 2**40, (50,), generator=generator).tolist()
        raw = _mt19937_raw(seed, 100)
        assert drawn == (((raw[0::2] << np.uint64(32)) | raw[1::2]) % np.uint64(2**40)).tolist()


def test_seed_out_of_range_is_rejected_by_torch_too() -> None:
    torch = pytest.importorskip("torch", reason=NO_TORCH_REASON)
    for seed in (2**64, -(2**63) - 1):
        with pytest.raises((ValueError, RuntimeError)):
            torch.Generator().manual_seed(seed)


def test_distributed_sampler_matches_torch() -> None:
    torch = pytest.importorskip("torch", reason=NO_TORCH_REASON)
    TorchSampler = torch.utils.data.DistributedSampler
    cases = itertools.product(
        (0, 1, 2, 3, 7, 10, 17, 64), (1, 2, 3, 4, 5), (False, True), (False, True), (0, 12)
    )
    for n, replicas, shuffle, drop_last, seed in cases:
        for rank in range(replicas):
            ours = DistributedSampler(n, replicas, rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
            theirs = TorchSampler(range(n), replicas, rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
            for epoch in (0, 1, 5):
                ours.set_epoch(epoch)
                theirs.set_epoch(epoch)
                case = (n, replicas, rank, shuffle, drop_last, seed, epoch)
                assert list(ours) == list(theirs), case
                assert len(ours) == len(theirs), case


def test_distributed_sampler_matches_torch_on_a_large_dataset() -> None:
    torch = pytest.importorskip("torch", reason=NO_TORCH_REASON)
    for rank in range(3):
        ours = DistributedSampler(60_000, 3, rank, seed=2024)
        theirs = torch.utils.data.DistributedSampler(range(60_000), 3, rank, seed=2024)
        ours.set_epoch(7)
        theirs.set_epoch(7)
        assert list(ours) == list(theirs)
