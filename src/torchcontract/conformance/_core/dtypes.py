"""The dtype matrix (``dtypes=`` of a Module or CallableModule target): the per-dtype clauses
(``register_check(..., per_dtype=True)``) run once per dtype, on a deep copy of the module converted
with ``.to(dtype)`` and example arguments whose floating-point tensors are converted alike.

Here: the names of the dtypes a module can be checked in, and the validation of ``dtypes=``. The
conversion is made once per (target, dtype), by the engine's session for that dtype
(:mod:`.session`), never inside a check. torch is never imported here: ``dtypes=`` holds torch dtypes,
so torch is loaded whenever the matrix is in use.
"""

from __future__ import annotations

from typing import Any

from torchcontract.conformance._values import describe, tensor_module

__all__ = ["DTYPE_NAMES", "dtype_names", "split_key", "validate_dtypes"]

# The floating-point dtypes a module can be checked in (torch.testing.assert_close has defaults for each).
DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64")


def _name(dtype: object) -> str | None:
    """``torch.float64`` -> ``"float64"``; None for anything that is not one of :data:`DTYPE_NAMES`."""
    torch = tensor_module()
    if torch is None or not isinstance(dtype, torch.dtype):
        return None
    for name in DTYPE_NAMES:
        if dtype == getattr(torch, name):
            return name
    return None


def validate_dtypes(value: object) -> None:
    """TypeError naming the bad value unless ``value`` is None or a non-empty tuple of distinct
    floating-point torch dtypes."""
    choices = ", ".join(f"torch.{name}" for name in DTYPE_NAMES)
    if value is None:
        return
    if not isinstance(value, tuple) or not value:
        raise TypeError(
            f"option dtypes must be None or a non-empty tuple of torch dtypes ({choices}), not "
            f"{describe(value)}, e.g. dtypes=(torch.float32, torch.float64)"
        )
    for item in value:
        if _name(item) is None:
            raise TypeError(
                f"option dtypes: {item!r} is not a floating-point torch dtype; expected one of {choices} "
                "(a torch.dtype object, not a string)"
            )
    names = [_name(item) for item in value]
    repeated = sorted({name for name in names if name is not None and names.count(name) > 1})
    if repeated:
        raise TypeError(f"option dtypes names {', '.join(repeated)} more than once")


def dtype_names(dtypes: tuple[Any, ...] | None) -> tuple[str, ...]:
    """The names of validated ``dtypes`` (``("float32", "float64")``); () for None."""
    return tuple(name for name in map(_name, dtypes or ()) if name is not None)


def split_key(key: str) -> tuple[str, str | None]:
    """An expected-failure key: ``"module.x[float64]"`` -> ``("module.x", "float64")``; a plain
    check id -> ``(id, None)``."""
    if key.endswith("]") and "[" in key:
        check_id, _, rest = key.partition("[")
        name = rest[:-1]
        if name in DTYPE_NAMES:
            return check_id, name
    return key, None
