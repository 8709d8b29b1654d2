"""``isinstance`` agrees with mypy on every ``ok_``/``bad_`` case, except the documented exceptions below.

The verdict table is the module-level ``ok_<what>: <Protocol> = <expr>`` (mypy accepts) and ``bad_<what>:
<Protocol> = <expr>  # type: ignore[assignment]`` (mypy rejects) assignments of the case files:
``test_cases.py`` proves each verdict with mypy and with pyright (whose verdict is the same but where the
line carries a ``# pyright only:`` or ``# mypy only:`` marker), and here the case module is imported and
each value checked with ``isinstance`` against the protocol. ``CollateFn`` is not runtime-checkable; its
run-time counterpart is ``callable()``.
"""

from __future__ import annotations

import ast
import importlib
import sys
import typing
from pathlib import Path

import pytest

from torchcontract.protocols import (
    CallableModule,
    CollateFn,
    IterableDataset,
    Loader,
    MapDataset,
    Module,
    Sampler,
)

from ._harness import case_files, missing_modules

RUNTIME_CHECKABLE: tuple[type, ...] = (CallableModule, Module, MapDataset, IterableDataset, Sampler, Loader)

# Why mypy and isinstance may disagree. Each is a documented limit of run-time checks (SPEC.md).
TYPE_ARGUMENTS = "isinstance ignores type arguments: a MapDataset[int] is a MapDataset[str] at run time"
SIGNATURE = "isinstance checks that a member exists, not its parameters, return type or attribute type"
CALLABLE = "CollateFn's run-time counterpart is callable(), which cannot see parameters or types"
GETATTR = (
    "mypy resolves every member through __getattr__ (pyright does not); isinstance does too before "
    "Python 3.12 (hasattr), but not from 3.12 on (inspect.getattr_static), and the target must have them"
)
GETATTR_SEEN = sys.version_info < (3, 12)

# (case file, variable) -> (what isinstance says, why it may differ from mypy). Listed one by one and
# pinned: a new disagreement fails until someone looks at it, and so does an entry that no longer holds.
EXCEPTIONS: dict[tuple[str, str], tuple[bool, str]] = {
    # module.py: every member is present, one has the wrong signature or type.
    ("module", "bad_train_takes_str"): (True, SIGNATURE),
    ("module", "bad_train_without_mode"): (True, SIGNATURE),
    ("module", "bad_train_returns_none"): (True, SIGNATURE),
    ("module", "bad_training_is_int"): (True, SIGNATURE),
    ("module", "bad_load_state_dict_without_strict"): (True, SIGNATURE),
    ("module", "bad_state_dict_returns_list"): (True, SIGNATURE),
    ("module", "bad_zero_grad_needs_argument"): (True, SIGNATURE),
    # map_dataset.py
    ("map_dataset", "bad_getitem_takes_str"): (True, SIGNATURE),
    ("map_dataset", "bad_getitem_takes_two_indices"): (True, SIGNATURE),
    ("map_dataset", "bad_len_returns_float"): (True, SIGNATURE),
    ("map_dataset", "bad_int_samples_as_str"): (True, TYPE_ARGUMENTS),
    ("map_dataset", "bad_str_samples_as_int"): (True, TYPE_ARGUMENTS),
    ("map_dataset", "bad_map_dataset_of_int_as_str"): (True, TYPE_ARGUMENTS),
    ("map_dataset", "bad_object_samples_as_int"): (True, TYPE_ARGUMENTS),
    # iterable_and_loader.py
    ("iterable_and_loader", "bad_iter_returns_list"): (True, SIGNATURE),
    ("iterable_and_loader", "bad_loader_iter_returns_list"): (True, SIGNATURE),
    ("iterable_and_loader", "bad_int_stream_as_str"): (True, TYPE_ARGUMENTS),
    ("iterable_and_loader", "bad_str_stream_as_int"): (True, TYPE_ARGUMENTS),
    ("iterable_and_loader", "bad_loader_wrong_batch_type"): (True, TYPE_ARGUMENTS),
    ("iterable_and_loader", "bad_loader_of_samples_as_batches"): (True, TYPE_ARGUMENTS),
    # sampler.py
    ("sampler", "bad_iter_returns_list"): (True, SIGNATURE),
    ("sampler", "bad_str_indices"): (True, TYPE_ARGUMENTS),
    ("sampler", "bad_batch_sampler_as_index_sampler"): (True, TYPE_ARGUMENTS),
    ("sampler", "bad_index_sampler_as_batch_sampler"): (True, TYPE_ARGUMENTS),
    # reference_impl.py
    ("reference_impl", "bad_stream_of_ints_as_str"): (True, TYPE_ARGUMENTS),
    ("reference_impl", "bad_batch_sampler_as_index_sampler"): (True, TYPE_ARGUMENTS),
    # collate_fn.py: everything callable passes callable().
    ("collate_fn", "bad_takes_one_sample"): (True, CALLABLE),
    ("collate_fn", "bad_needs_second_argument"): (True, CALLABLE),
    ("collate_fn", "bad_keyword_only"): (True, CALLABLE),
    ("collate_fn", "bad_wrong_batch_type"): (True, CALLABLE),
    ("collate_fn", "bad_wrong_sample_type"): (True, CALLABLE),
    ("collate_fn", "bad_invariant_narrower"): (True, CALLABLE),
    ("collate_fn", "bad_invariant_wider"): (True, CALLABLE),
    # builtin_types.py
    ("builtin_types", "bad_list_of_int_as_str"): (True, TYPE_ARGUMENTS),
    ("builtin_types", "bad_str_as_int"): (True, TYPE_ARGUMENTS),
    ("builtin_types", "bad_range_as_str"): (True, TYPE_ARGUMENTS),
    ("builtin_types", "bad_dict_keyed_by_str"): (True, SIGNATURE),
    ("builtin_types", "bad_str_as_index_sampler"): (True, TYPE_ARGUMENTS),
    ("builtin_types", "bad_list_of_ints_as_batch_sampler"): (True, TYPE_ARGUMENTS),
    ("builtin_types", "bad_list_of_int_as_loader_of_lists"): (True, TYPE_ARGUMENTS),
    ("builtin_types", "bad_len_as_collate_fn_to_list"): (True, CALLABLE),
    # limits.py: a forwarding proxy.
    ("limits", "ok_forwarding_as_map_dataset"): (GETATTR_SEEN, GETATTR),
    ("limits", "ok_forwarding_as_iterable_dataset"): (GETATTR_SEEN, GETATTR),
    ("limits", "ok_forwarding_as_sampler"): (GETATTR_SEEN, GETATTR),
    ("limits", "ok_forwarding_as_loader"): (GETATTR_SEEN, GETATTR),
    ("limits", "ok_forwarding_as_module"): (GETATTR_SEEN, GETATTR),
    ("limits", "ok_forwarding_anything_as_module"): (False, GETATTR),
    # torch_classes.py
    ("torch_classes", "bad_sized_dataset_wrong_sample"): (True, TYPE_ARGUMENTS),
    ("torch_classes", "bad_torch_iterable_wrong_item"): (True, TYPE_ARGUMENTS),
    ("torch_classes", "bad_batch_sampler_as_index_sampler"): (True, TYPE_ARGUMENTS),
    ("torch_classes", "bad_random_sampler_of_str"): (True, TYPE_ARGUMENTS),
}


def _verdict_names(case: Path) -> list[str]:
    return [
        node.target.id
        for node in ast.parse(case.read_text(encoding="utf-8")).body
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and node.target.id.startswith(("ok_", "bad_"))
    ]


def _runtime_verdict(obj: object, protocol: object) -> bool | None:
    """What the run time says about ``obj`` as ``protocol``; None for a protocol that is not ours."""
    if protocol in RUNTIME_CHECKABLE:
        assert isinstance(protocol, type)
        return isinstance(obj, protocol)
    if protocol is CollateFn:
        return callable(obj)
    return None


CASES = [case for case in case_files() if not case.name.startswith("_")]


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_isinstance_agrees_with_mypy(case: Path) -> None:
    missing = missing_modules(case)
    if missing:
        pytest.skip(f"{case.name} needs {', '.join(missing)}, which is not installed")
    module = importlib.import_module(f"{__package__}.cases.{case.stem}")
    hints = typing.get_type_hints(module)
    names = _verdict_names(case)
    disagreements = []
    for name in names:
        annotation = hints[name]
        runtime = _runtime_verdict(getattr(module, name), typing.get_origin(annotation) or annotation)
        if runtime is None:
            continue
        static = name.startswith("ok_")
        if (case.stem, name) in EXCEPTIONS:
            expected, reason = EXCEPTIONS[case.stem, name]
            if runtime != expected:
                disagreements.append(f"{name}: isinstance says {runtime}, EXCEPTIONS {expected} ({reason})")
        elif runtime != static:
            disagreements.append(f"{name}: mypy says {static}, isinstance says {runtime} (not in EXCEPTIONS)")
    stale = sorted(n for (stem, n) in EXCEPTIONS if stem == case.stem and n not in names)
    assert not stale, f"EXCEPTIONS names cases that {case.name} no longer has: {stale}"
    assert not disagreements, "\n".join(disagreements)


def test_isinstance_takes_no_type_arguments() -> None:
    with pytest.raises(TypeError):
        isinstance([1], MapDataset[int])  # type: ignore[misc]


def test_every_exception_names_a_case_file() -> None:
    stems = {case.stem for case in CASES}
    assert {stem for stem, _ in EXCEPTIONS} <= stems


def test_the_table_is_not_empty() -> None:
    counts = {case.name: len(_verdict_names(case)) for case in CASES}
    assert sum(counts.values()) >= 100, counts
