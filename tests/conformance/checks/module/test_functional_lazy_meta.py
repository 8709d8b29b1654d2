"""``module.builds_on_meta_device`` on a module with lazy parameters (torch's ``LazyModuleMixin``: their
shapes come from the first input). Built on meta, such a module holds ``UninitializedParameter``s, which
``to_empty`` cannot allocate: torch prescribes the dry run first (torch/nn/modules/lazy.py), which on
meta, with the inputs moved there, materialises them on meta. The clause then judges the module as it
judges any other, and a lazy module that loses a value still fails it.
"""

from __future__ import annotations

from typing import Any

import pytest

from torchcontract.conformance import Target

from ....conftest import HAS_TORCH, NO_TORCH_REASON

pytestmark = [
    pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON),
    pytest.mark.clause("module.builds_on_meta_device"),
]

META = "module.builds_on_meta_device"

if HAS_TORCH:
    import torch
    from torch import nn
    from torch.nn.modules.lazy import LazyModuleMixin
    from torch.nn.parameter import UninitializedBuffer, UninitializedParameter, is_lazy

    from torchcontract.protocols import Module

    class LazyScale(LazyModuleMixin, nn.Module):
        """``x * weight + offset`` over the last dimension, whose size the first input decides: a
        parameter and a buffer, both lazy, initialised by ``reset_parameters``."""

        weight: Any
        offset: Any

        def __init__(self) -> None:
            super().__init__()
            self.weight = UninitializedParameter()
            self.register_buffer("offset", UninitializedBuffer())

        def reset_parameters(self) -> None:
            if not self.has_uninitialized_params():
                with torch.no_grad():
                    self.weight.fill_(0.5)
                    self.offset.fill_(1.0)

        def initialize_parameters(self, x: torch.Tensor) -> None:
            if is_lazy(self.weight):  # not after load_state_dict, which materialises it
                with torch.no_grad():
                    self.weight.materialize((x.shape[-1],))
                    self.offset.materialize((x.shape[-1],))
                    self.reset_parameters()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.weight + self.offset

    class TableOutsideReset(LazyScale):
        """A lazy module that fills a non-persistent buffer when it materialises its parameters, and
        not in ``reset_parameters``: on meta the dry run computes no values, so after ``to_empty`` the
        buffer holds none (the clause's failure, lazy or not)."""

        table: Any

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("table", UninitializedBuffer(), persistent=False)

        def initialize_parameters(self, x: torch.Tensor) -> None:
            if is_lazy(self.table):
                with torch.no_grad():
                    self.table.materialize((x.shape[-1],))
                    self.table.copy_(torch.arange(x.shape[-1], dtype=self.table.dtype, device=x.device))
            super().initialize_parameters(x)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) + self.table


def _meta_result(module: Any, factory: Any) -> Any:
    """The clause's result on ``module`` (and its prerequisites: nothing else runs)."""
    target = Target(module, Module, example_inputs=(torch.ones(2, 3),), factory=factory)
    return target.session().result(META)


def test_a_lazy_module_builds_on_meta_after_its_dry_run() -> None:
    result = _meta_result(LazyScale(), LazyScale)
    assert result.status == "passed", result


def test_a_lazy_submodule_builds_on_meta_after_its_dry_run() -> None:
    def build() -> nn.Module:
        return nn.Sequential(LazyScale(), nn.ReLU(), LazyScale())

    result = _meta_result(build(), build)
    assert result.status == "passed", result


def test_a_lazy_module_that_loses_a_value_still_fails() -> None:
    built = TableOutsideReset
    result = _meta_result(built(), built)
    assert result.status == "failed", result
    assert "'table' still holds the uninitialised values" in result.message, result.message


def test_a_lazy_module_whose_dry_run_cannot_run_on_meta_is_skipped_saying_why() -> None:
    class NeedsData(LazyScale):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum().item() > 0:  # data-dependent: meta tensors hold no data
                return x * self.weight + self.offset
            return x

    result = _meta_result(NeedsData(), NeedsData)
    assert result.status == "skipped", result
    assert "their dry run on meta" in result.message, result.message
