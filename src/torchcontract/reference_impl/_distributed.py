"""``DistributedSampler`` with exactly torch's indices, and ``torch.randperm`` reproduced in NumPy."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized

import numpy as np
from numpy.typing import NDArray

from torchcontract.reference_impl._arguments import boolean, positive_int, sampler_length

__all__ = ["DistributedSampler", "torch_randperm"]

# ATen's randperm_cpu (aten/src/ATen/native/TensorFactories.cpp) keeps its original algorithm for
# n < UINT32_MAX / 20 and switches to 64-bit draws above.
_LARGE_N = (2**32 - 1) // 20


def _mt19937_raw(seed: int, count: int) -> NDArray[np.uint64]:
    """The first ``count`` 32-bit outputs of ``torch.Generator().manual_seed(seed)``.

    torch's CPU generator is MT19937 seeded with the reference ``init_genrand`` on the seed's low
    32 bits (``at::mt19937``); NumPy's legacy ``RandomState(seed)`` seeds the same way, and its
    ``randint`` over the full uint32 range returns the raw outputs in order, one per value.
    """
    draws = np.random.RandomState(seed & 0xFFFFFFFF).randint(0, 2**32, size=count, dtype=np.uint32)
    return draws.astype(np.uint64)


def torch_randperm(n: int, seed: int) -> NDArray[np.int64]:
    """What ``torch.randperm(n, generator=torch.Generator().manual_seed(seed))`` returns (on the CPU).

    ``seed`` is any int torch accepts (``-2**63 <= seed < 2**64``; only its low 32 bits matter).
    Follows ATen's ``randperm_cpu``: for ``n < 214,748,364`` a forward Fisher-Yates where step ``i``
    swaps positions ``i`` and ``i + random() % (n - i)``; above, an inside-out shuffle with
    ``random64() % (i + 1)``, ``random64()`` being two 32-bit outputs, the first as the high half.
    The swaps run in a Python loop: about 0.25 s per million elements.
    """
    if not -(2**63) <= seed < 2**64:
        raise ValueError(f"torch accepts seeds in [-2**63, 2**64), got {seed}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n >= _LARGE_N:
        return _randperm_inside_out(n, seed)
    perm = list(range(n))
    if n > 1:
        steps = (_mt19937_raw(seed, n - 1) % np.arange(n, 1, -1, dtype=np.uint64)).tolist()
        for i, step in enumerate(steps):
            j = i + step
            perm[i], perm[j] = perm[j], perm[i]
    return np.array(perm, dtype=np.int64)


def _randperm_inside_out(n: int, seed: int) -> NDArray[np.int64]:
    raw = _mt19937_raw(seed, 2 * n)
    draws = ((raw[0::2] << np.uint64(32)) | raw[1::2]) % np.arange(1, n + 1, dtype=np.uint64)
    perm = np.empty(n, dtype=np.int64)
    for i, z in enumerate(draws.tolist()):
        perm[i] = perm[z]
        perm[z] = i
    return perm


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class DistributedSampler:
    """The indices of one replica (``rank``) of ``num_replicas``, exactly as
    ``torch.utils.data.DistributedSampler`` gives them for the same arguments.

    The order is ``range(n)``, or with ``shuffle`` torch's ``randperm(n)`` seeded with
    ``seed + epoch`` (:func:`torch_randperm`); without ``drop_last`` it is padded by repeating its
    start until every replica gets ``ceil(n / num_replicas)`` indices, with ``drop_last`` its tail
    is cut so that every replica gets ``n // num_replicas`` (torch's formula); replica ``rank``
    takes every ``num_replicas``-th index from position ``rank``. All replicas get the same count.
    Call ``set_epoch(epoch)`` before each epoch: without it every epoch has the same order.
    ``dataset_or_len`` is a sized dataset (its length read at each pass) or a length.
    """

    def __init__(
        self,
        dataset_or_len: Sized | int,
        num_replicas: int,
        rank: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        self.dataset = dataset_or_len
        self.num_replicas = positive_int("num_replicas", num_replicas)
        if not _is_int(rank) or not 0 <= rank < num_replicas:
            raise ValueError(f"Invalid rank {rank!r}, rank should be in the interval [0, {num_replicas - 1}]")
        self.rank = rank
        self.shuffle = boolean("shuffle", shuffle)
        if not _is_int(seed):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.seed = seed
        self.drop_last = boolean("drop_last", drop_last)
        self.epoch = 0
        sampler_length(dataset_or_len)

    @property
    def num_samples(self) -> int:
        """How many indices each replica gets per epoch."""
        n = sampler_length(self.dataset)
        if self.drop_last and n % self.num_replicas:
            return math.ceil((n - self.num_replicas) / self.num_replicas)
        return math.ceil(n / self.num_replicas)

    @property
    def total_size(self) -> int:
        return self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        return iter(self._index_array().tolist())

    def _index_array(self) -> NDArray[np.int64]:
        n = sampler_length(self.dataset)
        order = torch_randperm(n, self.seed + self.epoch) if self.shuffle else np.arange(n, dtype=np.int64)
        total = self.total_size
        if total > n:  # pad by wrapping round to the start, as often as needed
            order = np.resize(order, total)
        return order[self.rank : total : self.num_replicas]
