"""The protocol of objects whose progress can be saved and restored: resumable loading."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["Stateful"]


@runtime_checkable
class Stateful(Protocol):
    """An object whose progress is saved by ``state_dict()`` and restored by ``load_state_dict(state)``
    (SPEC.md, "Stateful"): a loader, a sampler or an iterable dataset that resumes mid-epoch.

    After ``k`` batches of an epoch, a fresh instance loaded with ``state_dict()`` yields exactly the
    remaining batches of that epoch, also with worker processes; the state is a snapshot (advancing
    afterwards does not change it), survives ``torch.save`` / ``torch.load(weights_only=True)`` and
    holds no tensor off the CPU. The shape of ``torch.distributed.checkpoint.stateful.Stateful`` and
    ``torchdata.stateful_dataloader.Stateful``; the return type of ``load_state_dict`` is ``object``
    so that one returning a value (``nn.Module``'s ``_IncompatibleKeys``) also conforms.

    >>> from torchcontract.reference_impl import RandomSampler
    >>> sampler = RandomSampler(6, seed=0)
    >>> it = iter(sampler)
    >>> taken = [next(it), next(it)]
    >>> resumed = RandomSampler(6, seed=1)
    >>> _ = resumed.load_state_dict(sampler.state_dict())
    >>> isinstance(sampler, Stateful), taken + list(resumed) == list(RandomSampler(6, seed=0))
    (True, True)
    """

    def state_dict(self) -> Mapping[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any], /) -> object: ...
