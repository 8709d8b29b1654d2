"""map_dataset checks: reproducers that are expressions, a time budget that ends a check early without
failing it, samples_collate naming only leaves that default_collate refuses, and none for a
declared collate_fn."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from torchcontract.conformance import check
from torchcontract.conformance.checks.map_dataset import _default_collate_takes
from torchcontract.protocols import MapDataset

from ...conftest import HAS_TORCH, NO_TORCH_REASON
from ..correct import NoisyPoints, Points
from ..reports import status as _status

if HAS_TORCH:
    import torch

# -- the reproducer of a NumPy index is an expression, not a quoted string ------------------------------


@pytest.mark.clause("map_dataset.accepts_numpy_integer_index")
def test_numpy_index_failure_shows_the_expression() -> None:
    class IntOnly(NoisyPoints):
        def __getitem__(self, index: Any) -> Any:
            if type(index) is not int:
                raise TypeError(f"index must be int, not {type(index).__name__}")
            return super().__getitem__(index)

    status, message = _status(
        check(IntOnly(), MapDataset, deterministic=False), "map_dataset.accepts_numpy_integer_index"
    )
    assert status == "failed"
    assert "reproduce: ds[np.int64(9)]" in message
    assert "'np.int64" not in message


# -- a slow map-style dataset is not a broken one -----------------------------------------------------


class SlowPoints(Points):
    def __getitem__(self, index: int) -> Any:
        time.sleep(0.001)  # a decoder of compressed images, say
        return super().__getitem__(index)


@pytest.mark.clause("map_dataset.iteration_matches_indexing")
def test_iteration_of_a_slow_dataset_compares_what_the_budget_allows() -> None:
    # 1,000 items to compare at 2 ms each outlast a 0.5 s budget: before the fix, a failure.
    report = check(SlowPoints(2000), MapDataset, time_budget_s=0.5)
    status, message = _status(report, "map_dataset.iteration_matches_indexing")
    assert status == "passed", message
    assert "the time budget (0.5 s) ran out after" in message


# -- what default_collate takes is decided as torch decides it ------------------------------------------

needs_torch = pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON)

# Leaves on both sides of torch's line: NumPy scalars go to torch.as_tensor (np.str_ and np.bytes_ are
# str and bytes), NumPy arrays too unless of strings, bytes or objects, and torch has no dtype for
# datetimes, records, longdouble or ulonglong; nested and sparse tensors are refused.
_LEAVES: dict[str, Callable[[], Any]] = {
    "int": lambda: 3,
    "bool": lambda: True,
    "float": lambda: 1.5,
    "complex": lambda: 1j,
    "str": lambda: "a",
    "bytes": lambda: b"a",
    "None": lambda: None,
    "object": object,
    "np.int64": lambda: np.int64(2),
    "np.uint16": lambda: np.uint16(2),
    "np.float16": lambda: np.float16(1.0),
    "np.bool_": lambda: np.bool_(True),
    "np.complex64": lambda: np.complex64(1j),
    "np.str_": lambda: np.str_("a"),
    "np.bytes_": lambda: np.bytes_(b"a"),
    "np.datetime64": lambda: np.datetime64("2020-01-01"),
    "np.timedelta64": lambda: np.timedelta64(1, "D"),
    "np.longdouble": lambda: np.longdouble(1.0),
    "np.ulonglong": lambda: np.ulonglong(1),
    "np.void": lambda: np.zeros(1, dtype=[("a", "i4")])[0],
    "float32 array": lambda: np.zeros(2, dtype=np.float32),
    "0-d array": lambda: np.array(3),
    "str array": lambda: np.array(["a", "b"]),
    "bytes array": lambda: np.array([b"a", b"b"]),
    "object array": lambda: np.array([1, None], dtype=object),
    "datetime array": lambda: np.zeros(2, dtype="M8[D]"),
    "record array": lambda: np.zeros(2, dtype=[("a", "i4")]),
    "longdouble array": lambda: np.zeros(2, dtype=np.longdouble),
    "tensor": lambda: torch.zeros(2),
    "sparse tensor": lambda: torch.zeros(2).to_sparse(),
    "nested tensor": lambda: torch.nested.nested_tensor([torch.zeros(2), torch.zeros(3)]),
}


@needs_torch
@pytest.mark.clause("map_dataset.samples_collate")
@pytest.mark.filterwarnings("ignore::UserWarning")  # torch warns that nested tensors are a prototype
@pytest.mark.parametrize("kind", list(_LEAVES))
def test_the_leaves_named_are_those_default_collate_refuses(kind: str) -> None:
    from torch.utils.data import default_collate

    leaf = _LEAVES[kind]()
    try:
        default_collate([leaf, leaf])
        collates = True
    except (TypeError, RuntimeError):
        collates = False
    assert _default_collate_takes(leaf) is collates


# -- with a declared collate_fn, default_collate's rules diagnose nothing --------------------------------


class _RaggedWithNames:
    """Ragged token tensors beside a name: default_collate would refuse the shapes, not the names."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < 6:
            raise IndexError(index)
        return {"tokens": torch.arange(index + 1), "name": f"s{index}"}


def _pads_tokens_only(batch: list[Any]) -> Any:
    # Pads the ragged field, as it should, and refuses strings, which default_collate would take.
    for sample in batch:
        if isinstance(sample["name"], str):
            raise TypeError("names must be token ids")
    return {"tokens": torch.nn.utils.rnn.pad_sequence([s["tokens"] for s in batch], batch_first=True)}


@needs_torch
@pytest.mark.clause("map_dataset.samples_collate")
def test_a_declared_collate_fn_is_not_judged_by_default_collate_rules() -> None:
    status, message = _status(
        check(_RaggedWithNames(), MapDataset, collate_fn=_pads_tokens_only), "map_dataset.samples_collate"
    )
    assert status == "failed", message
    assert message.startswith("collate_fn([ds[i] for i in"), message
    assert "TypeError: names must be token ids" in message
    # Neither the ragged shapes (the collate_fn pads them) nor "default_collate does not take", nor the
    # advice to declare the collate_fn that is declared.
    assert "has shape" not in message, message
    assert "default_collate" not in message, message
    assert "declare it with collate_fn=" not in message, message
    assert "make the declared collate_fn take these samples" in message


@needs_torch
@pytest.mark.clause("map_dataset.samples_collate")
def test_without_a_collate_fn_the_ragged_field_is_named() -> None:
    status, message = _status(check(_RaggedWithNames(), MapDataset), "map_dataset.samples_collate")
    assert status == "failed", message
    assert "['tokens'] has shape" in message, message
