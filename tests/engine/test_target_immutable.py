"""A Target is immutable: replace() makes a changed copy, and check() never changes the user's."""

from __future__ import annotations

import dataclasses

import pytest

from torchcontract.conformance import Options, Target, check
from torchcontract.protocols import MapDataset, Sampler


class Squares:
    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> int:
        if not -8 <= index < 8:
            raise IndexError(index)
        return (index % 8) ** 2


def test_a_target_cannot_be_changed_in_place() -> None:
    target = Target(Squares(), MapDataset, name="squares")
    with pytest.raises(dataclasses.FrozenInstanceError):
        target.options = Options(seed=3)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        target.name = "other"  # type: ignore[misc]
    assert target.options == Options()
    assert target.name == "squares"


def test_replace_returns_a_new_target_and_leaves_this_one_alone() -> None:
    target = Target(Squares(), MapDataset, name="squares", expected_failures={"x.y": "why"}, seed=3)
    changed = target.replace(world_size=2, isolate=True)
    assert changed is not target
    assert (changed.options.world_size, changed.options.isolate, changed.options.seed) == (2, True, 3)
    assert (target.options.world_size, target.options.isolate) == (None, False)
    assert changed.obj is target.obj
    assert changed.name == "squares"
    assert changed.expected_failures == {"x.y": "why"}
    renamed = target.replace(name="other", options=Options(thorough=True))
    assert renamed.name == "other"
    assert renamed.options == Options(thorough=True)
    assert target.replace(protocol=Sampler).protocol is Sampler


def test_replace_validates_like_the_constructor() -> None:
    target = Target(Squares(), MapDataset)
    with pytest.raises(TypeError, match="unknown argument"):
        target.replace(wrld_size=2)
    with pytest.raises(TypeError, match="world_size must be at least 2"):
        target.replace(world_size=1)
    with pytest.raises(TypeError, match="not both"):
        target.replace(options=Options(), seed=1)
    with pytest.raises(TypeError, match="non-empty str"):
        target.replace(name="")


def test_options_may_be_given_as_one_options_object() -> None:
    target = Target(Squares(), MapDataset, options=Options(seed=5))
    assert target.options.seed == 5
    with pytest.raises(TypeError, match="not both"):
        Target(Squares(), MapDataset, options=Options(), seed=5)
    with pytest.raises(TypeError, match="options must be an Options"):
        Target(Squares(), MapDataset, options={"seed": 5})  # type: ignore[arg-type]


def test_targets_compare_by_identity() -> None:
    # Comparing targets must not compare the checked objects (that would call them outside a check).
    class NoEquality(Squares):
        def __eq__(self, other: object) -> bool:
            raise AssertionError("compared")

        __hash__ = object.__hash__

    obj = NoEquality()
    first, second = Target(obj, MapDataset), Target(obj, MapDataset)
    assert first != second
    assert first == first
    assert len({first, second}) == 2


def test_check_leaves_the_users_target_unchanged() -> None:
    target = Target(Squares(), MapDataset, name="squares", seed=2)
    options = target.options
    report = check(target)
    assert report.passed
    assert target.options is options
    assert target.name == "squares"


def test_check_of_an_object_takes_options_named_like_target_arguments_as_unknown() -> None:
    with pytest.raises(TypeError, match="unknown option"):
        check(Squares(), MapDataset, name="squares")
