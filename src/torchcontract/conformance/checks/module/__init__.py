"""Checks for :class:`~torchcontract.protocols.Module` (SPEC.md, "Module").

Checks that change a module (perturbing parameters, loading state, setting gradients, moving it to
a device) work on deep copies; checks that switch modes restore every submodule's mode exactly, and
every check restores the module's state afterwards (:func:`~._preserve.preserving`).

Under ``deterministic=False``, the clauses that compare two modules' outputs (the module and its copy,
a copy after a state-dict round trip) seed the global random generators alike before each call: the
copy was taken before either call, so a module drawing from the global RNGs or from a generator of
its own draws the same numbers in both.


The clauses are in six files, in SPEC.md's order: :mod:`.protocol` (any module), :mod:`.submodules`
(their hooks run), :mod:`.pickling` (the whole module pickles), :mod:`.devices` (with the channels-last
layout), :mod:`.training` (train mode, gradients and dtypes) and :mod:`.functional` (``functional_call``,
the meta device, ``torch.compile`` and ``torch.export``), with what they share in :mod:`._shared`;
importing this package registers them in that order.
"""

# isort: off
from torchcontract.conformance.checks.module import protocol
from torchcontract.conformance.checks.module import submodules
from torchcontract.conformance.checks.module import pickling
from torchcontract.conformance.checks.module import devices
from torchcontract.conformance.checks.module import training
from torchcontract.conformance.checks.module import functional

# isort: on

__all__ = ["devices", "functional", "pickling", "protocol", "submodules", "training"]
