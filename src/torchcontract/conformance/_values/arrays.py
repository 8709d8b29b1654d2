"""Arrays and tensors as leaves: what kind, what shape, what values (never raises on odd tensors).

torch is never imported here: a value can only be a tensor if torch is already in ``sys.modules``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np

__all__ = [
    "NotComparable",
    "as_numpy",
    "components",
    "describe_tensor",
    "dtype_name",
    "is_array",
    "is_meta",
    "is_nested",
    "is_quantized",
    "is_tensor",
    "layout",
    "ndim",
    "quantization",
    "shape",
    "storage_numpy",
    "tensor_module",
]


def tensor_module() -> Any:
    """``torch`` if it has been imported (by the object under test or its caller), else None."""
    return sys.modules.get("torch")


def is_tensor(value: object) -> TypeGuard[Any]:
    torch = tensor_module()
    return torch is not None and isinstance(value, torch.Tensor)


def is_array(value: object) -> TypeGuard[Any]:
    """An ndarray or a tensor: a leaf with a dtype and a shape."""
    return isinstance(value, np.ndarray) or is_tensor(value)


def dtype_name(value: Any) -> str:
    try:
        return str(value.dtype).removeprefix("torch.")
    except Exception:
        return "?"


def is_nested(value: Any) -> bool:
    return is_tensor(value) and bool(getattr(value, "is_nested", False))


def is_quantized(value: Any) -> bool:
    return is_tensor(value) and bool(getattr(value, "is_quantized", False))


def is_meta(value: Any) -> bool:
    return is_tensor(value) and bool(getattr(value, "is_meta", False))


def layout(value: Any) -> str:
    """A tensor's layout (``strided``, ``sparse_coo``, ``sparse_csr``, ``jagged``, ...)."""
    if is_nested(value):
        return "nested"
    try:
        return str(value.layout).removeprefix("torch.")
    except Exception:
        return "?"


def components(value: Any) -> list[Any] | None:
    """The tensors a nested tensor is made of (None if it cannot be unbound)."""
    try:
        return list(value.unbind())
    except Exception:
        return None


def shape(value: Any) -> tuple[Any, ...] | None:
    """An array's shape; None for a nested tensor, whose components have their own."""
    if is_nested(value):
        return None
    try:
        return tuple(value.shape)
    except Exception:
        return None


def ndim(value: Any) -> int:
    try:
        return int(value.dim()) if is_tensor(value) else int(value.ndim)
    except Exception:
        return 0


def describe_tensor(value: Any) -> str:
    """``Tensor(float32, (2, 3))``, with its device, layout and quantization when unusual."""
    extras = []
    try:
        if value.device.type != "cpu":
            extras.append(str(value.device))
    except Exception:
        pass
    kind = layout(value)
    if kind not in ("strided", "nested"):
        extras.append(kind)
    if is_quantized(value):
        extras.append("quantized")
    if is_nested(value):
        parts = components(value)
        shapes = "?" if parts is None else ", ".join(str(shape(part)) for part in parts[:4])
        more = "" if parts is None or len(parts) <= 4 else f", ... ({len(parts)} components)"
        shape_text = f"nested [{shapes}{more}]"
    else:
        shape_text = str(shape(value))
    return f"Tensor({dtype_name(value)}, {shape_text}{''.join(', ' + extra for extra in extras)})"


@dataclass(frozen=True)
class NotComparable:
    """A value whose contents cannot be compared or converted (a meta tensor has no data).

    ``what`` says which value and why, in words fit for a message.
    """

    what: str

    def __str__(self) -> str:
        return self.what


def _shown(tensor: Any) -> str:
    text = describe_tensor(tensor)
    return text if len(text) <= 120 else text[:117] + "..."


def _dense_numpy(tensor: Any) -> np.ndarray[Any, Any] | NotComparable:
    """The values of a (non-nested) tensor as an ndarray, or why they cannot be had."""
    torch = tensor_module()
    if is_meta(tensor):
        return NotComparable(f"{_shown(tensor)} is a meta tensor (it has no data)")
    try:
        result = tensor.detach()
        if is_quantized(result):
            result = result.dequantize()
        if result.layout != torch.strided:
            result = result.to_dense()
        result = result.cpu().resolve_conj().resolve_neg()
        name = str(result.dtype)
        if name in ("torch.bfloat16", "torch.float16") or "float8" in name:
            result = result.float()
        elif name in ("torch.complex32", "torch.chalf"):
            result = result.to(torch.complex64)
        return np.asarray(result.numpy())
    except Exception as error:
        return NotComparable(
            f"the values of {_shown(tensor)} cannot be read ({type(error).__name__}: {error})"
        )


def as_numpy(value: Any) -> np.ndarray[Any, Any] | NotComparable:
    """An ndarray with the values of an array or tensor (tensors are copied to the CPU).

    Tensors that require grad are detached; sparse ones densified; quantized ones dequantized; a
    nested tensor gives a 1-D object array of its components' arrays. A tensor whose values cannot
    be read (a meta tensor) gives a :class:`NotComparable` saying so.
    """
    if isinstance(value, np.ndarray):
        return value
    if is_nested(value):
        parts = components(value)
        if parts is None:
            return NotComparable(f"{_shown(value)} cannot be unbound into its components")
        result = np.empty(len(parts), dtype=object)
        for index, part in enumerate(parts):
            converted = as_numpy(part)
            if isinstance(converted, NotComparable):
                return converted
            result[index] = converted
        return result
    return _dense_numpy(value)


def quantization(value: Any) -> tuple[Any, ...]:
    """A quantized tensor's scheme and parameters, as plain Python values."""
    try:
        scheme = str(value.qscheme()).removeprefix("torch.")
        if "per_channel" in scheme:
            return (
                scheme,
                int(value.q_per_channel_axis()),
                tuple(value.q_per_channel_scales().tolist()),
                tuple(value.q_per_channel_zero_points().tolist()),
            )
        return (scheme, float(value.q_scale()), int(value.q_zero_point()))
    except Exception:
        return ("?",)


def storage_numpy(value: Any) -> np.ndarray[Any, Any] | NotComparable:
    """What two equal arrays hold identically: the integers of a quantized tensor, else its values."""
    if is_quantized(value):
        try:
            return _dense_numpy(value.int_repr())
        except Exception as error:
            return NotComparable(f"{_shown(value)} has no integer representation ({error})")
    return as_numpy(value)
