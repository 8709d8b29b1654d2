"""Callables with a forward (CallableModule), each with one bug (plain Python and NumPy)."""

from __future__ import annotations

from typing import Any

import numpy as np

from torchcontract.protocols import CallableModule, Module

from ..correct import MLP, Affine, Dropout, mlp_inputs
from . import Mutant


class CallAppliesSoftmax(Affine):
    def __call__(self, *args: Any) -> Any:
        logits = self.forward(*args)
        exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return exp / exp.sum(axis=-1, keepdims=True)  # __call__ and forward disagree


class CallUsesClassForward(Affine):
    def __call__(self, *args: Any) -> Any:
        return type(self).forward(self, *args)  # an instance-level forward wrapper is bypassed


class CallRunsForwardTwice(Affine):
    def __call__(self, *args: Any) -> Any:
        if self.forward(*args).ndim != 2:  # a "shape check" that runs the whole forward pass
            raise ValueError("expected a 2-d output")
        return self.forward(*args)


class NormalisesInputInPlace(Affine):
    def forward(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        x -= x.mean(axis=0)  # in place: the caller's batch is changed
        return super().forward(x)


class ReprReadsRemovedAttribute(Affine):
    def __repr__(self) -> str:
        return f"Affine(units={self.units})"  # an attribute a refactoring removed: print(m) raises


class DropoutIgnoringMode(Dropout):
    def forward(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        keep = self.rng.random(x.shape) >= self.p  # self.training is never consulted
        return np.where(keep, x / (1 - self.p), 0.0)


class MLPWithDropoutActiveInEval(MLP):
    def __init__(self) -> None:
        super().__init__()
        self.drop = DropoutIgnoringMode(0.5)


class ForwardRejectsBatches(Affine):
    def forward(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if x.ndim != 1:  # written for one sample: a batch is an error
            raise ValueError(f"expected a vector, got shape {x.shape}")
        return super().forward(x)


def _mutant(name: str, violates: str, bug: str, factory: Any, **fields: Any) -> Mutant:
    protocol = fields.pop("protocol", CallableModule)
    kwargs = {"example_inputs": mlp_inputs()}
    return Mutant(name, protocol, f"callable_module.{violates}", bug, factory, kwargs, **fields)


MUTANTS = [
    _mutant("forward_rejects_batches", "call_returns", "forward raises on the example batch",
            ForwardRejectsBatches, message_contains=("m(*inputs) raised ValueError",)),
    _mutant("dropout_active_in_eval", "eval_is_deterministic", "dropout ignores eval mode",
            MLPWithDropoutActiveInEval, protocol=Module,
            message_contains=("m.eval(); m(*inputs) == m(*inputs)",)),
    _mutant("call_applies_softmax", "call_matches_forward", "__call__ post-processes forward's output",
            CallAppliesSoftmax, message_contains=("m(*inputs) and m.forward(*inputs) differ",)),
    _mutant("call_uses_class_forward", "call_runs_forward_once", "__call__ calls type(self).forward",
            CallUsesClassForward, message_contains=("called it 0 times",)),
    _mutant("call_runs_forward_twice", "call_runs_forward_once", "__call__ runs forward twice",
            CallRunsForwardTwice, message_contains=("called it 2 times",)),
    _mutant("normalises_input_in_place", "call_preserves_inputs", "forward does x -= mean",
            NormalisesInputInPlace, message_contains=("modified its inputs", "inputs[0]")),
    _mutant("repr_reads_removed_attribute", "repr_returns_str", "__repr__ formats a removed attribute",
            ReprReadsRemovedAttribute, message_contains=("repr(m) raised AttributeError",)),
]  # fmt: skip
