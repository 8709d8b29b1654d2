"""Layers: ``Linear``, ``ReLU`` and ``Sequential``, each with a Lua-Torch-style ``backward``."""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator
from typing import Any, SupportsIndex, overload

import numpy as np
from numpy.typing import DTypeLike, NDArray
from typing_extensions import override

from torchcontract.reference_impl._module import Module, Parameter

__all__ = ["Linear", "ReLU", "Sequential"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _check_array(layer: str, name: str, value: object, dtype: np.dtype[Any] | None) -> NDArray[Any]:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{layer} expects {name} to be a NumPy array, got {type(value).__name__}")
    if dtype is not None and value.dtype != dtype:
        # Like torch, no silent promotion: mixing precisions is the caller's decision.
        raise TypeError(f"{layer} expects {name} of dtype {dtype}, got {value.dtype}")
    return value


def _size(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, SupportsIndex):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    size = operator.index(value)
    if size < 0:
        raise ValueError(f"{name} must be >= 0, got {size}")
    return size


class Linear(Module):
    """``y = x @ weight.T + bias`` on inputs of shape ``(*, in_features)`` (``torch.nn.Linear``).

    ``weight`` is ``(out_features, in_features)``, ``bias`` is ``(out_features,)`` or ``None``. Both
    are drawn like torch's: uniform on ``[-1/sqrt(in_features), 1/sqrt(in_features))``, weight first,
    from ``rng`` (a fresh ``np.random.default_rng()`` when ``None``); the bias is zero when
    ``in_features == 0``. ``dtype`` is float32 (default) or float64, and inputs must have exactly that
    dtype (``TypeError`` otherwise) and last dimension ``in_features`` (``ValueError`` otherwise).

    ``forward`` keeps a reference to its input for ``backward``: do not modify the input in place
    between the two. ``backward(grad_output)`` returns the gradient with respect to that input and
    adds the parameter gradients to ``weight.grad`` and ``bias.grad``.
    """

    weight: Parameter
    bias: Parameter | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        dtype: DTypeLike = np.float32,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_features = _size("in_features", in_features)
        self.out_features = _size("out_features", out_features)
        resolved = np.dtype(dtype)
        if resolved not in _FLOAT_DTYPES:
            raise TypeError(f"Linear supports float32 and float64, got {resolved}")
        if rng is None:
            rng = np.random.default_rng()
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
        shape = (self.out_features, self.in_features)
        self.weight = Parameter(rng.uniform(-bound, bound, shape).astype(resolved))
        self.bias = None
        if bias:
            self.bias = Parameter(rng.uniform(-bound, bound, self.out_features).astype(resolved))
        self._input: NDArray[Any] | None = None

    @override
    def forward(self, x: NDArray[Any]) -> NDArray[Any]:
        weight = self.weight.data
        _check_array("Linear", "its input", x, weight.dtype)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear expects input of shape (*, {self.in_features}), got {x.shape}")
        self._input = x
        # One 2-D product for any number of leading dimensions; x @ weight.T is a transposed BLAS
        # call on the contiguous weight, not a copy.
        rows = x.reshape(math.prod(x.shape[:-1]), self.in_features)
        y: NDArray[Any] = rows @ weight.T
        if self.bias is not None:
            np.add(y, self.bias.data, out=y)
        return y.reshape((*x.shape[:-1], self.out_features))

    @override
    def backward(self, grad_output: NDArray[Any]) -> NDArray[Any]:
        x = self._input
        if x is None:
            raise RuntimeError("Linear.backward() needs a preceding forward()")
        weight = self.weight.data
        _check_array("Linear.backward", "grad_output", grad_output, weight.dtype)
        expected = (*x.shape[:-1], self.out_features)
        if grad_output.shape != expected:
            raise ValueError(
                f"Linear.backward expects grad_output of shape {expected}, got {grad_output.shape}"
            )
        rows = math.prod(x.shape[:-1])
        grad = grad_output.reshape(rows, self.out_features)
        _accumulate(self.weight, grad.T @ x.reshape(rows, self.in_features))
        if self.bias is not None:
            _accumulate(self.bias, grad.sum(axis=0))
        grad_input: NDArray[Any] = grad @ weight
        return grad_input.reshape(x.shape)

    @override
    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )


def _accumulate(parameter: Parameter, grad: NDArray[Any]) -> None:
    if parameter.grad is None:
        parameter.grad = grad
    else:
        np.add(parameter.grad, grad, out=parameter.grad)


class ReLU(Module):
    """``max(x, 0)`` elementwise, any shape and dtype; ``backward`` passes the gradient where ``x > 0``."""

    def __init__(self) -> None:
        super().__init__()
        self._positive: NDArray[np.bool_] | None = None

    @override
    def forward(self, x: NDArray[Any]) -> NDArray[Any]:
        _check_array("ReLU", "its input", x, None)
        self._positive = x > 0
        result: NDArray[Any] = np.maximum(x, 0, dtype=x.dtype)
        return result

    @override
    def backward(self, grad_output: NDArray[Any]) -> NDArray[Any]:
        positive = self._positive
        if positive is None:
            raise RuntimeError("ReLU.backward() needs a preceding forward()")
        _check_array("ReLU.backward", "grad_output", grad_output, None)
        if grad_output.shape != positive.shape:
            raise ValueError(
                f"ReLU.backward expects grad_output of shape {positive.shape}, got {grad_output.shape}"
            )
        result: NDArray[Any] = grad_output * positive
        return result


class Sequential(Module):
    """Modules applied in order (``torch.nn.Sequential``): ``forward`` feeds each output to the next,
    ``backward`` runs the children's ``backward`` in reverse. The children are attributes named
    ``"0"``, ``"1"``, ..., so parameters are named ``"0.weight"`` like torch's. Indexing with an
    int (negative ones count from the end) gives a child; with a slice, a new Sequential of the same
    child objects. ``len`` and iteration cover the children in order.
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential takes Modules, got {type(module).__name__} at position {index}")
            setattr(self, str(index), module)

    def _layers(self) -> list[Module]:
        # Every entry, repeats included: Sequential(a, a) applies a twice.
        return [value for value in vars(self).values() if isinstance(value, Module)]

    @override
    def forward(self, x: Any) -> Any:
        for layer in self._layers():
            x = layer(x)
        return x

    @override
    def backward(self, grad_output: Any) -> Any:
        for layer in reversed(self._layers()):
            grad_output = layer.backward(grad_output)
        return grad_output

    def __len__(self) -> int:
        return len(self._layers())

    def __iter__(self) -> Iterator[Module]:
        return iter(self._layers())

    @overload
    def __getitem__(self, index: SupportsIndex) -> Module: ...

    @overload
    def __getitem__(self, index: slice) -> Sequential: ...

    def __getitem__(self, index: SupportsIndex | slice) -> Module | Sequential:
        layers = self._layers()
        if isinstance(index, slice):
            return Sequential(*layers[index])
        try:
            return layers[operator.index(index)]
        except IndexError:
            raise IndexError(f"index {index} is out of range for a Sequential of {len(layers)}") from None
