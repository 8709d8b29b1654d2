"""check() of a module compiled with torch.compile leaves it running compiled code: its calls in the
check (deep copies, train and eval mode, float64, meta) add entries to TorchDynamo's cache of its code,
and past ``recompile_limit`` (8) torch runs that code eagerly from then on, silently. After check() the
code compiled during it is compiled again at its next call, as at its first."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from torchcontract.conformance import check

from ..conftest import HAS_TORCH, NO_TORCH_REASON

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON)

if HAS_TORCH:
    import torch
    from torch import nn

    from torchcontract.protocols import Module


class _CountingBackend:
    """A torch.compile backend that runs the captured graph as is, counting compilations and runs."""

    def __init__(self) -> None:
        self.compiles = 0
        self.runs = 0

    def __call__(self, graph: Any, example_inputs: Any) -> Any:
        self.compiles += 1

        def run(*args: Any) -> Any:
            self.runs += 1
            return graph.forward(*args)

        return run


@pytest.fixture
def dynamo() -> Iterator[Any]:
    import torch._dynamo

    torch._dynamo.reset()
    yield torch._dynamo
    torch._dynamo.reset()


@pytest.mark.slow
def test_a_compiled_module_with_a_lazy_submodule_runs_compiled_after_check(dynamo: Any) -> None:
    # The lazy submodule is put back uninitialised after each check, so each check compiles anew: before,
    # check() left 8 entries, and the user's next calls in train mode and at another batch size ran eagerly.
    backend = _CountingBackend()

    def build() -> Any:
        torch.manual_seed(0)
        return torch.compile(nn.Sequential(nn.LazyLinear(3), nn.ReLU()), backend=backend)

    module = build()
    module(torch.randn(5, 4))
    assert check(module, Module, example_inputs=(torch.randn(5, 4),), factory=build).passed
    code = module._orig_mod.forward.__code__
    assert len(dynamo.eval_frame._debug_get_cache_entry_list(code)) == 0
    backend.runs = 0
    module.train()
    for batch in (5, 5, 7, 7, 9):
        module(torch.randn(batch, 4))
    assert backend.runs == 5


def test_code_the_check_did_not_compile_keeps_its_entries(dynamo: Any) -> None:
    backend = _CountingBackend()
    other = torch.compile(lambda x: x * 2, backend=backend)
    other(torch.ones(3))
    code = other._torchdynamo_orig_callable.__code__
    assert len(dynamo.eval_frame._debug_get_cache_entry_list(code)) == 1
    assert check(nn.Linear(3, 2), Module, example_inputs=(torch.randn(4, 3),)).passed
    assert len(dynamo.eval_frame._debug_get_cache_entry_list(code)) == 1
