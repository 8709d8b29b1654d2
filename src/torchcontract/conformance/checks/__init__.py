"""The built-in checks, one module per protocol. Importing this package registers them."""

from torchcontract.conformance.checks import (
    callable_module,
    collate_fn,
    distributed,
    iterable_dataset,
    loader,
    map_dataset,
    module,
    sampler,
    stateful,
    workers,
)

__all__ = [
    "callable_module",
    "collate_fn",
    "distributed",
    "iterable_dataset",
    "loader",
    "map_dataset",
    "module",
    "sampler",
    "stateful",
    "workers",
]
