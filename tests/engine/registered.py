"""A check of the CallableModule protocol registered for the length of one test, and a callable module
that each call changes: how the engine tests hold a check to its declaration (``touches=``) without
adding one to the suite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from unittest import mock

from torchcontract.conformance._core import registry
from torchcontract.conformance._core.context import Context
from torchcontract.protocols import CallableModule


@contextmanager
def registered_check(
    check_id: str, func: Callable[[Context], None], *, rule: str, touches: registry.Touches
) -> Iterator[str]:
    """``func`` registered as the recommended CallableModule check ``check_id`` (no needs, no
    prerequisites) for the block; its id is yielded."""
    spec = registry.Check(
        check_id=check_id,
        protocol=CallableModule,
        severity="recommended",
        rule=rule,
        needs=frozenset(),
        requires=(),
        per_device=False,
        func=func,
        since="0.1.0",
        touches=touches,
    )
    with mock.patch.dict(registry._REGISTRY, {check_id: spec}):
        yield check_id


class CallCounter:
    """A callable module that counts its calls: each call changes it."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: float) -> float:
        self.calls += 1
        return x
