"""The built-in checks, one module per protocol. Importing this package registers them.

The modules are imported in SPEC.md's order of protocols, and each registers its clauses in SPEC.md's
order, so that the registry (and every report) lists the clauses as the specification does
(``tests/engine/test_spec_sync.py`` holds both to it).
"""

# isort: off
from torchcontract.conformance.checks import callable_module
from torchcontract.conformance.checks import module
from torchcontract.conformance.checks import map_dataset
from torchcontract.conformance.checks import iterable_dataset
from torchcontract.conformance.checks import sampler
from torchcontract.conformance.checks import loader
from torchcontract.conformance.checks import collate_fn
from torchcontract.conformance.checks import stateful

# isort: on

__all__ = [
    "callable_module",
    "collate_fn",
    "iterable_dataset",
    "loader",
    "map_dataset",
    "module",
    "sampler",
    "stateful",
]
