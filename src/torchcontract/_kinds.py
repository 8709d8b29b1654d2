"""Which kind of dataset an object is, by one rule that the reference implementation and the
conformance suite share: a neutral leaf, so that neither imports the other for it (the suite never
imports the reference implementation) and :mod:`torchcontract.protocols` holds only the protocols.

Light: nothing here is imported but ``sys`` and ``types``, and torch is only looked up in
``sys.modules``.
"""

from __future__ import annotations

import sys
import types

__all__ = ["is_iterable_style"]


def _defined_at(cls: type, name: str) -> int | None:
    """The MRO position of the class that defines ``name`` (``None`` if absent or set to None)."""
    for position, klass in enumerate(cls.__mro__):
        if name in vars(klass):
            return None if vars(klass)[name] is None else position
    return None


def is_iterable_style(dataset: object) -> bool:
    """Whether a loader treats ``dataset`` as a stream (iterable-style) rather than by index (SPEC.md,
    "Conventions"). One rule, for the reference ``DataLoader`` and the conformance checks alike
    (:mod:`torchcontract.reference_impl` re-exports it).

    1. A ``torch.utils.data.IterableDataset`` is iterable-style and any other
       ``torch.utils.data.Dataset`` is map-style: torch's own rule, whatever methods the class has
       (checked only when torch is already imported, since nothing else can be one).
    2. Any other object is iterable-style when its type has ``__iter__`` and lacks ``__len__`` or
       ``__getitem__`` (or sets one to None), or when its ``__getitem__`` is inherited from further up
       the MRO than its ``__iter__``: the shape of a stream that inherits a stub ``__getitem__`` from
       a base class, as torch's ``IterableDataset`` subclasses inherit ``Dataset.__getitem__``.

    So ``list``, ``str``, ``range``, ndarrays, ``MNIST`` and ``Sequence`` subclasses are map-style;
    the reference ``StreamDataset`` and generators are iterable-style. Nothing is called: a
    ``__getitem__`` stub defined by the stream class itself cannot be told from a real one.
    A ``__getitem__`` implemented in C (``torch.Tensor``'s, under a Python ``__iter__``) is never a
    stub. Limitation: a subclass that overrides only ``__iter__`` of a map-style pure-Python base
    counts as iterable-style.
    """
    torch_data = sys.modules.get("torch.utils.data")
    if torch_data is not None:
        if isinstance(dataset, torch_data.IterableDataset):
            return True
        if isinstance(dataset, torch_data.Dataset):
            return False
    cls = type(dataset)
    iter_at = _defined_at(cls, "__iter__")
    if iter_at is None:
        return False
    getitem_at = _defined_at(cls, "__getitem__")
    if getitem_at is None or _defined_at(cls, "__len__") is None:
        return True
    # Only a Python function can be a stub: a C type's __getitem__ (a tensor's, an ndarray's) is real
    # indexing, whatever Python subclass adds __iter__ on top.
    inherited_stub = isinstance(vars(cls.__mro__[getitem_at])["__getitem__"], types.FunctionType)
    return getitem_at > iter_at and inherited_stub
