"""Stateful mutants: resumable loaders that resume at the wrong place, or save a state that is not one.

Each is a small loader over ``range(n)`` in batches (lists of ints), written the way resume code is
written by hand; ``Resumable`` is the correct base they each break in one place.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from torchcontract.protocols import Stateful

from . import Mutant

__all__ = ["MUTANTS", "TORCH_MUTANTS", "Resumable"]


class Resumable:
    """Batches of a seeded permutation of ``range(n)`` per epoch, resumable mid-epoch (correct)."""

    def __init__(self, n: int = 11, batch_size: int = 3, seed: int = 0) -> None:
        self.n, self.batch_size = n, batch_size
        self.rng = np.random.default_rng(seed)
        self.state: dict[str, Any] = self._begin()
        self.resume: dict[str, Any] | None = None

    def _begin(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "taken": 0, "finished": False}

    def _order(self) -> list[int]:
        return [int(i) for i in self.rng.permutation(self.n)]

    def __iter__(self) -> Iterator[list[int]]:
        resume, self.resume = self.resume, None
        if resume is not None:
            self.rng.bit_generator.state = dict(resume["rng"])
            if resume["finished"]:
                self._order()
        self.state = self._begin()
        order = self._order()
        skip = 0 if resume is None or resume["finished"] else self._skip(resume)
        return self._batches(order, skip, self.state)

    def _skip(self, resume: Mapping[str, Any]) -> int:
        return int(resume["taken"])

    def _batches(self, order: list[int], skip: int, state: dict[str, Any]) -> Iterator[list[int]]:
        state["taken"] = skip
        starts = range(0, self.n, self.batch_size)
        for start in list(starts)[skip:]:
            state["taken"] += 1
            yield order[start : start + self.batch_size]
        state["finished"] = True

    def state_dict(self) -> Any:
        return {
            "rng": dict(self.state["rng"]),
            "taken": self.state["taken"],
            "finished": self.state["finished"],
        }

    def load_state_dict(self, state: Mapping[str, Any], /) -> None:
        if not state:
            self.resume = None
            return
        missing = [key for key in ("rng", "taken", "finished") if key not in state]
        if missing:
            raise KeyError(f"not a Resumable state: it lacks {missing}")
        self.resume = {key: state[key] for key in ("rng", "taken", "finished")}


class StateIsAList(Resumable):
    """state_dict() returns the values without their keys."""

    def state_dict(self) -> Any:
        return list(super().state_dict().values())


class ForgetsPosition(Resumable):
    """Saves the generator but not the position: a resume restarts the epoch."""

    def _skip(self, resume: Mapping[str, Any]) -> int:
        return 0


class ResumesOneTooFar(Resumable):
    """Counts the batch being handed out twice: a resume skips one batch."""

    def _skip(self, resume: Mapping[str, Any]) -> int:
        return int(resume["taken"]) + 1


class ForgetsGenerator(Resumable):
    """Saves the epoch's order and position, not the generator: the epoch after a resume is drawn
    from the generator as it was built."""

    def __iter__(self) -> Iterator[list[int]]:
        resume, self.resume = self.resume, None
        self.state = self._begin()
        if resume is not None and not resume["finished"]:
            saved = np.random.default_rng()
            saved.bit_generator.state = dict(resume["rng"])
            order = [int(i) for i in saved.permutation(self.n)]
            return self._batches(order, int(resume["taken"]), self.state)
        return self._batches(self._order(), 0, self.state)


class ReturnsLiveState(Resumable):
    """state_dict() returns the dict the iterator keeps counting in."""

    def state_dict(self) -> Any:
        return self.state


class SavesNumpyState(Resumable):
    """Saves the legacy NumPy generator state, a tuple holding an ndarray: torch.load(weights_only=True)
    refuses it."""

    def state_dict(self) -> Any:
        return {**super().state_dict(), "legacy": np.random.RandomState(0).get_state()}

    def load_state_dict(self, state: Mapping[str, Any], /) -> None:
        super().load_state_dict({key: value for key, value in state.items() if key != "legacy"})


class ReadsMissingAsEnd(Resumable):
    """Reads a missing position as -1, the last batch: an empty or foreign state resumes there."""

    def load_state_dict(self, state: Mapping[str, Any], /) -> None:
        self.resume = {
            "rng": state.get("rng", self.rng.bit_generator.state),
            "taken": state.get("taken", -1),
            "finished": state.get("finished", False),
        }


class PrefetchingLoader(Resumable):
    """With ``num_workers > 0`` it reads ``num_workers`` batches ahead, and its state counts the batches
    read, not those handed out: a resume loses the prefetched ones."""

    def __init__(self) -> None:
        super().__init__()
        self.num_workers = 0

    def state_dict(self) -> Any:
        state = super().state_dict()
        if self.num_workers and not state["finished"]:
            batches = -(-self.n // self.batch_size)
            state["taken"] = min(state["taken"] + self.num_workers, batches)
        return state


def _mutant(name: str, violates: str, bug: str, factory: Any, *fragments: str, torch: bool = False) -> Mutant:
    return Mutant(
        name=name,
        protocol=Stateful,
        violates=violates,
        bug=bug,
        factory=factory,
        message_contains=fragments,
        needs_torch=torch,
    )


MUTANTS = [
    _mutant(
        "state_is_a_list", "stateful.state_dict_is_mapping", StateIsAList.__doc__ or "", StateIsAList, "list"
    ),
    _mutant(
        "forgets_position",
        "stateful.resume_yields_rest_of_epoch",
        ForgetsPosition.__doc__ or "",
        ForgetsPosition,
        "after 2 items",
    ),
    _mutant(
        "resumes_one_too_far",
        "stateful.resume_yields_rest_of_epoch",
        ResumesOneTooFar.__doc__ or "",
        ResumesOneTooFar,
        "after 0 items",
    ),
    _mutant(
        "forgets_generator",
        "stateful.resume_then_same_next_epoch",
        ForgetsGenerator.__doc__ or "",
        ForgetsGenerator,
        "next epoch",
    ),
    _mutant(
        "returns_live_state",
        "stateful.state_is_snapshot",
        ReturnsLiveState.__doc__ or "",
        ReturnsLiveState,
        "snapshot",
    ),
    _mutant(
        "reads_missing_as_end",
        "stateful.foreign_state_is_not_silent",
        ReadsMissingAsEnd.__doc__ or "",
        ReadsMissingAsEnd,
        "load_state_dict({})",
    ),
]

# Their clauses need torch (torch.save; worker processes).
TORCH_MUTANTS = [
    _mutant(
        "saves_numpy_state",
        "stateful.state_is_portable",
        SavesNumpyState.__doc__ or "",
        SavesNumpyState,
        "state['legacy']",
        torch=True,
    ),
    _mutant(
        "loses_prefetched_batches",
        "stateful.resume_with_workers",
        PrefetchingLoader.__doc__ or "",
        PrefetchingLoader,
        "num_workers=2",
        torch=True,
    ),
]
