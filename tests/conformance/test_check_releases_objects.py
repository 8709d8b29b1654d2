"""check() keeps no reference to the object it checked, nor to the iterators it made."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from torchcontract.conformance import check
from torchcontract.protocols import Loader

from .correct import BatchLoader, Points

# -- check() does not keep the iterators it made alive ------------------------------------------------


class _SharedList(list):  # type: ignore[type-arg]
    """Shared by a loader and its deep copies (check() iterates a deep copy of a loader)."""

    def __deepcopy__(self, memo: dict[int, Any]) -> _SharedList:
        return self


class _TrackedLoader(BatchLoader):
    """Keeps a weak reference to each iterator it (or a deep copy of it) hands out."""

    def __init__(self) -> None:
        super().__init__(Points(10), 4)
        self.handed_out: list[weakref.ref[Any]] = _SharedList()

    def __iter__(self) -> Any:
        iterator = super().__iter__()
        self.handed_out.append(weakref.ref(iterator))
        return iterator


def test_check_releases_the_iterators_it_made_without_waiting_for_the_garbage_collector() -> None:
    # A DataLoader iterator with persistent workers, freed by the cyclic collector instead of by its
    # last reference going, took 5 s to shut its workers down (and kept them alive until then).
    loader = _TrackedLoader()
    gc.disable()
    try:
        assert check(loader, Loader).passed
        alive = [ref for ref in loader.handed_out if ref() is not None]
    finally:
        gc.enable()
    assert loader.handed_out, "the checks should have iterated the loader"
    assert alive == [], f"{len(alive)} of {len(loader.handed_out)} iterators outlived check()"


def test_check_keeps_no_reference_to_the_object_it_checked() -> None:
    # A DataLoader with persistent workers keeps its iterator itself: the loader must be freed as soon
    # as its last reference goes, not at the next cyclic garbage collection.
    loader = _TrackedLoader()
    gc.disable()
    try:
        report = check(loader, Loader)
        gone = weakref.ref(loader)
        del loader
        assert gone() is None, "check() left the loader in a reference cycle"
    finally:
        gc.enable()
    assert report.passed
