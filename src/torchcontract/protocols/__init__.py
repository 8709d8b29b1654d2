"""Typed protocols for the Python data model PyTorch is built on.

Each protocol names the members an object needs and documents, in its docstring and in SPEC.md, the
behaviour those members must have. A static type checker can only check the members; the behaviour is
checked by :mod:`torchcontract.conformance`.
"""

from torchcontract.protocols._data import CollateFn, IterableDataset, Loader, MapDataset, Sampler
from torchcontract.protocols._module import CallableModule, Module
from torchcontract.protocols._stateful import Stateful

__all__ = [
    "CallableModule",
    "CollateFn",
    "IterableDataset",
    "Loader",
    "MapDataset",
    "Module",
    "Sampler",
    "Stateful",
]
