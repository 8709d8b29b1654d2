"""CollateFn[T, B_co]: ``__call__(samples: list[T], /) -> B_co``; ``T`` is invariant, like ``list``."""

from typing import Any

from typing_extensions import assert_type

from torchcontract.protocols import CollateFn

from ._classes import (
    NotCallable,
    PlainCollate,
    collate_anything,
    collate_ints,
    collate_keyword_only,
    collate_one,
    collate_sequence,
    collate_two,
)

# --- accepted --------------------------------------------------------------------------------------------
ok_function: CollateFn[int, list[int]] = collate_ints
ok_function_wider_batch_type: CollateFn[int, object] = collate_ints  # B_co is covariant
ok_sequence_parameter: CollateFn[int, int] = collate_sequence  # takes more than a list: fine
ok_any_function: CollateFn[tuple[str, float], dict[str, int]] = collate_anything
ok_callable_object: CollateFn[int, tuple[int, ...]] = PlainCollate()
ok_lambda: CollateFn[int, int] = lambda samples: samples[0]

# --- rejected --------------------------------------------------------------------------------------------
bad_not_callable: CollateFn[int, int] = NotCallable()  # type: ignore[assignment]
bad_int: CollateFn[int, int] = 3  # type: ignore[assignment]
bad_takes_one_sample: CollateFn[int, int] = collate_one  # type: ignore[assignment]
bad_needs_second_argument: CollateFn[int, list[int]] = collate_two  # type: ignore[assignment]
bad_keyword_only: CollateFn[int, list[int]] = collate_keyword_only  # type: ignore[assignment]
bad_wrong_batch_type: CollateFn[int, str] = collate_ints  # type: ignore[assignment]
bad_wrong_sample_type: CollateFn[str, list[int]] = collate_ints  # type: ignore[assignment]
# Invariance: a function of list[int] is not a CollateFn[object, ...] (it could be given a list of str)...
bad_invariant_narrower: CollateFn[object, object] = collate_ints  # type: ignore[assignment]
# ...nor is a CollateFn[object, ...] a CollateFn[int, ...]: list[int] is not a list[object]. (The value
# comes from a function: pyright narrows a variable's declared type to the type of the value assigned.)


def object_collate() -> CollateFn[object, object]:
    return collate_anything


bad_invariant_wider: CollateFn[int, object] = object_collate()  # type: ignore[assignment]


# --- using the protocol in annotations -------------------------------------------------------------------
def collate_all(samples: list[int], collate_fn: CollateFn[int, list[int]]) -> list[int]:
    batch = collate_fn(samples)
    assert_type(batch, list[int])
    collate_fn(samples[0])  # type: ignore[arg-type]
    collate_fn(samples=samples)  # type: ignore[call-arg]  # positional-only
    return batch


def _callers() -> None:
    collate_all([1, 2], collate_ints)
    collate_all([1, 2], collate_anything)
    collate_all([1, 2], collate_one)  # type: ignore[arg-type]
    collate_all([1, 2], PlainCollate())  # type: ignore[arg-type]  # returns tuple[int, ...]
    assert_type(ok_any_function([("a", 1.0)]), dict[str, int])
    assert_type(collate_anything([1]), Any)
