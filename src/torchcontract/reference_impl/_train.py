"""Enough to train: softmax cross-entropy with its gradient, and plain stochastic gradient descent."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from torchcontract.reference_impl._module import Parameter

__all__ = ["SGD", "softmax_cross_entropy"]


def softmax_cross_entropy(logits: NDArray[Any], targets: NDArray[Any]) -> tuple[float, NDArray[Any]]:
    """The mean cross-entropy of ``softmax(logits)`` against class indices, and its gradient.

    ``logits`` is a float array ``(B, C)`` with ``B >= 1``, ``targets`` an integer array ``(B,)`` with
    values in ``[0, C)``. Returns ``(loss, grad)`` where ``loss`` equals
    ``torch.nn.functional.cross_entropy(logits, targets)`` (mean reduction) and ``grad`` is its
    gradient with respect to ``logits``, ``(softmax - one_hot) / B``, in the dtype of ``logits``.
    """
    _require(logits, "f", 2, "logits must be a float array of shape (B, C)")
    _require(targets, "iu", 1, "targets must be an integer array of shape (B,)")
    batch, classes = logits.shape
    if targets.shape[0] != batch or batch == 0:
        raise ValueError(f"need B >= 1 rows of logits and B targets, got {logits.shape} and {targets.shape}")
    if targets.min() < 0 or targets.max() >= classes:
        raise ValueError(f"targets must lie in [0, {classes}), got [{targets.min()}, {targets.max()}]")
    # Subtracting the row maximum keeps exp() from overflowing without changing the softmax.
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sums = exp.sum(axis=1, keepdims=True)
    rows = np.arange(batch)
    loss = float(np.mean(np.log(sums[:, 0]) - shifted[rows, targets]))
    grad = exp / sums
    grad[rows, targets] -= 1
    grad /= batch
    return loss, grad


def _require(value: object, kinds: str, ndim: int, requirement: str) -> None:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{requirement}, got {type(value).__name__}")
    if value.dtype.kind not in kinds or value.ndim != ndim:
        raise TypeError(f"{requirement}, got {value.dtype} of shape {value.shape}")


def _learning_rate(lr: object) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0:
        raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
    return float(lr)


class SGD:
    """Plain stochastic gradient descent: ``step()`` does ``p.data -= lr * p.grad`` in place for every
    parameter whose ``grad`` is not ``None`` (like ``torch.optim.SGD`` without momentum);
    ``zero_grad()`` sets the gradients to ``None``.
    """

    def __init__(self, parameters: Iterable[Parameter], lr: float) -> None:
        self.parameters = list(parameters)
        if not all(isinstance(p, Parameter) for p in self.parameters):
            raise TypeError("SGD takes an iterable of Parameters")
        self.lr = _learning_rate(lr)

    def step(self) -> None:
        for parameter in self.parameters:
            if parameter.grad is not None:
                parameter.data -= self.lr * parameter.grad

    def zero_grad(self) -> None:
        for parameter in self.parameters:
            parameter.grad = None
