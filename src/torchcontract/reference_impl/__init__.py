"""A small, strict NumPy reference implementation of every protocol in :mod:`torchcontract.protocols`.

It shows what conforming looks like, and it is what the conformance suite is validated on besides
PyTorch. NumPy only: nothing here imports torch.

- modules: :class:`Module`, :class:`Parameter`, :class:`Linear`, :class:`ReLU`, :class:`Sequential`,
  trained with :func:`softmax_cross_entropy` and :class:`SGD`;
- data: :func:`read_idx` / :func:`write_idx` (IDX files, :class:`IDXFormatError`), :class:`MNIST`
  (the bundled sample is at :func:`sample_root`), :class:`DataLoader`, the samplers
  :class:`SequentialSampler`, :class:`RandomSampler`, :class:`BatchSampler`,
  :class:`DistributedSampler`, :func:`default_collate` and :class:`StreamDataset`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchcontract.reference_impl._data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    SampleBatch,
    SequentialSampler,
    StreamDataset,
    default_collate,
    is_iterable_style,
)
from torchcontract.reference_impl._distributed import DistributedSampler, torch_randperm
from torchcontract.reference_impl._idx import IDXFormatError, read_idx, write_idx
from torchcontract.reference_impl._layers import Linear, ReLU, Sequential
from torchcontract.reference_impl._mnist import MNIST, sample_root
from torchcontract.reference_impl._module import (
    IncompatibleKeys,
    Module,
    Parameter,
    RemovableHandle,
    StateDictError,
)
from torchcontract.reference_impl._train import SGD, softmax_cross_entropy

__all__ = [
    "MNIST",
    "SGD",
    "BatchSampler",
    "DataLoader",
    "DistributedSampler",
    "IDXFormatError",
    "IncompatibleKeys",
    "Linear",
    "Module",
    "Parameter",
    "RandomSampler",
    "ReLU",
    "RemovableHandle",
    "SampleBatch",
    "Sequential",
    "SequentialSampler",
    "StateDictError",
    "StreamDataset",
    "default_collate",
    "is_iterable_style",
    "read_idx",
    "sample_root",
    "softmax_cross_entropy",
    "torch_randperm",
    "write_idx",
]

if TYPE_CHECKING:
    # mypy checks here that the reference classes satisfy the protocols they implement.
    from torchcontract import protocols

    def _conforms(mnist: MNIST, loader: DataLoader, stream: StreamDataset[int]) -> None:
        _module: protocols.Module = Linear(1, 1)
        _sequential: protocols.Module = Sequential()
        _dataset: protocols.MapDataset[tuple[object, object]] = mnist
        _stream: protocols.IterableDataset[int] = stream
        _loader: protocols.Loader[object] = loader
        _samplers: list[protocols.Sampler[object]] = [
            SequentialSampler(1),
            RandomSampler(1),
            BatchSampler(SequentialSampler(1), 1, False),
            DistributedSampler(1, 1, 0),
        ]
        _collate: protocols.CollateFn[object, object] = default_collate
