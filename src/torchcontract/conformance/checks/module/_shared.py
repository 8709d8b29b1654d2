"""What the Module clauses of several files share: copies, seeding, perturbation, backward passes and
how outputs are compared."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from torchcontract.conformance._core.context import (
    Context,
)
from torchcontract.conformance._values import (
    describe_structure,
    is_tensor,
    leaves,
    structure,
    tensor_module,
)
from torchcontract.conformance._values.convert import in_dtype
from torchcontract.conformance.checks._calling import fresh_inputs, fresh_kwargs
from torchcontract.conformance.checks._common import try_deepcopy

__all__ = [
    "BACKWARD_OF_SUM",
    "arguments_in_float64",
    "backward_of_sum",
    "deep_copy",
    "first_line",
    "float_leaves",
    "listed",
    "parameter_values",
    "perturb",
    "structure_difference",
    "sum_of",
    "torch_module",
]


def deep_copy(ctx: Context, what: str = "copy.deepcopy(m)") -> Any:
    copied, error = try_deepcopy(ctx.obj)
    if error is not None:
        ctx.fail(
            f"{what} raised {type(error).__name__}: {error}; expected modules to deep-copy (EMA "
            "weights, checkpoint averaging and these checks rely on it)",
            reproduce="copy.deepcopy(m)",
        )
    return copied


def arguments_in_float64(ctx: Context) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Fresh copies of the example inputs and kwargs with every floating-point tensor in float64: what a
    copy of m converted to float64 is called with (to_dtype, gradcheck, the float64 reference of
    channels_last)."""
    double = tensor_module().float64
    arguments: tuple[tuple[Any, ...], dict[str, Any]] = ctx.call(
        "<the example inputs and kwargs>.to(torch.float64)",
        lambda: (in_dtype(fresh_inputs(ctx), double), in_dtype(fresh_kwargs(ctx), double)),
    )
    return arguments


def parameter_values(parameter: Any) -> Any:
    """The array or tensor holding a parameter's values (torch Parameter, ``.data`` holder, array)."""
    if is_tensor(parameter) or isinstance(parameter, np.ndarray):
        return parameter
    data = getattr(parameter, "data", None)
    return data if is_tensor(data) or isinstance(data, np.ndarray) else None


def perturb(parameter: Any) -> bool:
    """Change a parameter's values in place (its identity kept); False if it has no known values (or
    cannot be changed: an inference tensor, a tensor on the meta device)."""
    values = parameter_values(parameter)
    if values is None:
        return False
    try:
        if is_tensor(values):
            with tensor_module().no_grad():
                if values.dtype == tensor_module().bool:
                    values.logical_not_()
                else:
                    values.add_(0.5 if values.is_floating_point() or values.is_complex() else 1)
            return True
        if values.dtype.kind in "fc":
            values += 0.5
        elif values.dtype.kind in "iu":
            values += 1
        elif values.dtype.kind == "b":
            np.logical_not(values, out=values)
        else:
            return False
    except Exception:  # a read-only array, an inference tensor: left as it is
        return False
    return True


def first_line(error: BaseException) -> str:
    """The line of an error message that names the problem (torch's weights-only error puts it under
    "WeightsUnpickler error:", after a paragraph about the 2.6 default), with the address of a line that
    ends in "See:"."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "WeightsUnpickler error:" in line:
            return line.split("WeightsUnpickler error:", 1)[1].split(". Please use", 1)[0].strip()
    if len(lines) > 1 and lines[0].endswith(("See:", "see:")):
        return f"{lines[0]} {lines[1]}"  # the address a "See:" points to is on the next line
    return lines[0] if lines else ""


def torch_module(ctx: Context) -> Any:
    # An nn.Module can only exist once torch is imported: importing it here (seconds) to find out
    # would spend the time budget of a NumPy module's check, and report a hang.
    torch = tensor_module()
    if torch is None or not isinstance(ctx.obj, torch.nn.Module):
        ctx.skip("the object is not a torch.nn.Module: device placement is checked on torch modules")
    return torch


BACKWARD_OF_SUM = "sum(t.sum() for t in <floating-point outputs>).backward()"


def float_leaves(output: Any) -> list[tuple[str, Any]]:
    """(path, tensor) for every floating-point or complex tensor leaf of an output."""
    return [
        (path, leaf)
        for path, leaf in leaves(output)
        if is_tensor(leaf) and (leaf.is_floating_point() or leaf.is_complex())
    ]


def sum_of(torch: Any, tensors: list[Any]) -> Any:
    """``sum(t.sum() for t in tensors)``, the loss of :data:`BACKWARD_OF_SUM` (None for no tensors); a
    complex leaf counts by its real and imaginary parts (a complex scalar has no backward of its own)."""
    total = None
    for tensor in tensors:
        part = torch.view_as_real(tensor).sum() if tensor.is_complex() else tensor.sum()
        total = part if total is None else total + part
    return total


def backward_of_sum(torch: Any, tensors: list[Any]) -> None:
    """``sum(t.sum() for t in tensors).backward()`` (:func:`sum_of`)."""
    total = sum_of(torch, tensors)
    if total is not None:
        total.backward()


def listed(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(name) for name in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def structure_difference(output: Any, expected: Any) -> str | None:
    """How two outputs of a random module differ in what stays deterministic: structure and dtypes."""
    if structure(output) == structure(expected):
        return None
    return f"structure {describe_structure(output)} vs {describe_structure(expected)}"


@contextmanager
def non_leaf_gradients_unsaid() -> Iterator[None]:
    """Within the block, torch does not warn that the ``.grad`` of a tensor that is not a leaf is read: a
    deep copy of a TorchScript module has such parameters (pytorch#44951), which the clauses report;
    the warning on reading them is not the user's to see."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The .grad attribute of a Tensor that is not a leaf")
        yield
