"""Documented limits of the static protocols that need no torch (SPEC.md, "Honest limits")."""

from typing import Any

from typing_extensions import assert_type

from torchcontract.protocols import CallableModule, IterableDataset, Loader, MapDataset, Module, Sampler

from ._classes import Forwarding, PlainCallable, PlainIterable, PlainMapDataset, PlainModule

# --- CallableModule checks that forward and __call__ exist, not their signatures -----------------------
module: CallableModule = PlainCallable()  # its __call__ takes an int


def _calls() -> None:
    assert_type(module(1), Any)
    module("not an int", extra=True)  # accepted: the protocol's __call__ takes (*args: Any, **kwargs: Any)


# --- MapDataset cannot say "indices 0..len-1": a dict keyed by int passes ----------------------------------
by_index: dict[int, str] = {0: "a", 1: "b"}
ok_dict_keyed_by_int: MapDataset[str] = by_index

# --- __getattr__: mypy takes an object that forwards attributes for anything -------------------------------
# At run time len(proxy), proxy[0] and iter(proxy) fail: Python looks special methods up on the type.
# mypy cannot see the target: Forwarding(None) passes too. isinstance says True on Python < 3.12 where the
# target has the members (hasattr goes through __getattr__), and False from 3.12 on (it looks members up
# with inspect.getattr_static). pyright, like isinstance from 3.12 on, does not look protocol members up
# through __getattr__.
ok_forwarding_as_map_dataset: MapDataset[int] = Forwarding(PlainMapDataset())  # pyright: ignore[reportAssignmentType]  # pyright only: it finds no protocol member through __getattr__
ok_forwarding_as_iterable_dataset: IterableDataset[int] = Forwarding(PlainIterable())  # pyright: ignore[reportAssignmentType]  # pyright only: it finds no protocol member through __getattr__
ok_forwarding_as_sampler: Sampler[int] = Forwarding(PlainIterable())  # pyright: ignore[reportAssignmentType]  # pyright only: it finds no protocol member through __getattr__
ok_forwarding_as_loader: Loader[int] = Forwarding(PlainIterable())  # pyright: ignore[reportAssignmentType]  # pyright only: it finds no protocol member through __getattr__
ok_forwarding_as_module: Module = Forwarding(PlainModule())  # pyright: ignore[reportAssignmentType]  # pyright only: it finds no protocol member through __getattr__
ok_forwarding_anything_as_module: Module = Forwarding(None)  # pyright: ignore[reportAssignmentType]  # pyright only: it finds no protocol member through __getattr__
