"""Checks for :class:`~torchcontract.protocols.Module` (SPEC.md, "Module").

Checks that change a module (perturbing parameters, loading state, setting gradients, moving it to
a device) work on deep copies; checks that switch modes restore every submodule's mode exactly, and
every check restores the module's state afterwards (the engine's snapshot, :mod:`~._preserve`).

Under ``deterministic=False``, the clauses that compare two modules' outputs (the module and its copy,
a copy after a state-dict round trip) seed the global random generators alike before each call: the
copy was taken before either call, so a module drawing from the global RNGs or from a generator of
its own draws the same numbers in both.


The clauses are in eight files, in SPEC.md's order: :mod:`.protocol` (any module), :mod:`.submodules`
(their hooks run), :mod:`.pickling` (the whole module pickles), :mod:`.devices` (with the channels-last
layout), :mod:`.training` (train mode, gradients and dtypes), :mod:`.functional` (``functional_call``,
the meta device), :mod:`.compiled` (``torch.compile``, forward and backward, and ``torch.export``) and
:mod:`.gradcheck` (gradients against finite differences), with what they share in :mod:`._shared`;
importing this package registers them in that order.
"""

# isort: off
from torchcontract.conformance.checks.module import protocol
from torchcontract.conformance.checks.module import submodules
from torchcontract.conformance.checks.module import pickling
from torchcontract.conformance.checks.module import devices
from torchcontract.conformance.checks.module import training
from torchcontract.conformance.checks.module import functional
from torchcontract.conformance.checks.module import compiled
from torchcontract.conformance.checks.module import gradcheck

# isort: on

__all__ = ["compiled", "devices", "functional", "gradcheck", "pickling", "protocol", "submodules", "training"]
