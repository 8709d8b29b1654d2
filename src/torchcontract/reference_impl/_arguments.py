"""Argument validation shared by the reference samplers, with the messages torch gives."""

from __future__ import annotations

from collections.abc import Sized

__all__ = ["boolean", "positive_int", "sampler_length"]


def sampler_length(data_source: Sized | int) -> int:
    if isinstance(data_source, int) and not isinstance(data_source, bool):
        if data_source < 0:
            raise ValueError(f"a sampler needs a length >= 0, got {data_source}")
        return data_source
    if isinstance(data_source, Sized):
        return len(data_source)
    raise TypeError(f"a sampler needs a length or a sized data source, got {type(data_source).__name__}")


def positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} should be a positive integer value, but got {name}={value!r}")
    return value


def boolean(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} should be a boolean value, but got {name}={value!r}")
    return value
