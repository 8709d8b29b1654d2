"""Properties of the one traversal of values (``_tree.flatten``) and of what is built on it.

Equality, differences, fingerprints, structure and leaves all read the same tree spec, so they must
agree on every value; these properties check that on generated nests of lists, tuples, namedtuples,
dicts, OrderedDicts, arrays, identity-``==`` objects and cycles. The examples are derandomized by the
suite's hypothesis profile (tests/conftest.py); HYPOTHESIS_PROFILE=explore searches afresh.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any, NamedTuple

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from torchcontract.conformance._values import (
    close_difference,
    compare,
    describe,
    describe_structure,
    difference,
    fingerprint,
    flatten,
    leaves,
    structure,
    unflatten,
)
from torchcontract.conformance._values.tree import CYCLE, LEAF, MAPPING, OBJECT, SEQUENCE

# Only what a property test needs: no deadline (the first example imports things), and generated
# nests may be slow to build. The number of examples and their randomness come from the profile.
PROPERTIES = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Pair(NamedTuple):
    first: Any
    second: Any


class Box:
    """An object whose == is identity (the default): compared and fingerprinted by its attributes."""

    def __init__(self, content: Any) -> None:
        self.content = content


# Few distinct atoms, so that two generated values are often equal, or differ in one place only.
atoms = st.one_of(
    st.sampled_from([0, 1, 2, True, None, 0.0, -0.0, 1.0, float("nan"), "a", "b", b"a"]),
    st.sampled_from([np.float32(1.0), np.int64(1), np.float64("nan")]),
)
arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.int64, np.bool_]),
    shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=2),
)
keys = st.sampled_from(["x", "y", "image", 0, 1])


def containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.builds(Pair, inner, inner),
        st.dictionaries(keys, inner, max_size=3),
        st.dictionaries(keys, inner, max_size=3).map(OrderedDict),
        st.builds(Box, inner),
    )


values = st.recursive(st.one_of(atoms, arrays), containers, max_leaves=8)


def all_agree_equal(left: Any, right: Any) -> None:
    assert difference(left, right) is None
    assert close_difference(left, right) is None
    assert compare(left, right).difference is None
    assert fingerprint(left) == fingerprint(right)
    assert repr(fingerprint(left)) == repr(fingerprint(right))
    assert flatten(left, objects=True)[0] == flatten(right, objects=True)[0]
    assert structure(left) == structure(right)
    assert describe_structure(left) == describe_structure(right)


@PROPERTIES
@given(values)
def test_a_value_equals_its_deep_copy_for_every_function(value: Any) -> None:
    all_agree_equal(value, copy.deepcopy(value))


@PROPERTIES
@given(values, values)
def test_difference_is_none_exactly_when_the_fingerprints_are_equal(left: Any, right: Any) -> None:
    found = difference(left, right)
    assert found is None or isinstance(found, str)
    assert (found is None) == (fingerprint(left) == fingerprint(right)), found
    if found is None:
        assert compare(left, right).difference is None
        assert close_difference(left, right) is None
        assert structure(left) == structure(right)
    hash(fingerprint(left))
    hash(structure(left))
    assert isinstance(describe(left), str)


@PROPERTIES
@given(values)
def test_unflatten_inverts_flatten(value: Any) -> None:
    for objects in (False, True):
        spec, found = flatten(value, objects=objects)
        assert spec.num_leaves == len(found)
        rebuilt = unflatten(spec, found)
        assert flatten(rebuilt, objects=objects)[0] == spec
        all_agree_equal(rebuilt, value)


def evaluate(value: Any, path: str) -> Any:
    """The value at a path of :func:`leaves` (``[0]['x']``), read as the Python expression it is."""
    return eval(f"value{path}", {}, {"value": value})


@PROPERTIES
@given(values)
def test_each_leaf_path_is_an_expression_for_that_leaf(value: Any) -> None:
    found = list(leaves(value))
    assert [leaf for _, leaf in found] == flatten(value)[1]
    for path, leaf in found:
        assert evaluate(value, path) is leaf


class Changed:
    """A leaf unequal to every generated one."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Changed)

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return "Changed()"


@PROPERTIES
@given(values, st.data())
def test_a_changed_leaf_is_reported_at_its_path(value: Any, data: st.DataObject) -> None:
    spec, found = flatten(value)
    if not found:
        return
    index = data.draw(st.integers(0, len(found) - 1))
    path = [where for where, _ in leaves(value)][index]
    changed = unflatten(spec, [Changed() if i == index else leaf for i, leaf in enumerate(found)])
    message = difference(value, changed)
    assert message is not None
    assert message.startswith("type differs"), message
    assert (f" at {path}:" in message) if path else (":" in message), (path, message)
    assert fingerprint(value) != fingerprint(changed)


@PROPERTIES
@given(st.dictionaries(keys, values, min_size=1, max_size=3))
def test_a_dict_and_an_ordered_dict_differ_for_every_function(items: dict[Any, Any]) -> None:
    # The mapping's type counts (_tree.py's docstring says why), its key order does not.
    ordered = OrderedDict(items)
    found = difference(items, ordered)
    assert found is not None
    assert found.startswith("type differs"), found
    assert close_difference(items, ordered) is not None
    assert fingerprint(items) != fingerprint(ordered)
    assert structure(items) != structure(ordered)
    assert describe_structure(items) != describe_structure(ordered)
    assert flatten(items)[0] != flatten(ordered)[0]
    all_agree_equal(ordered, OrderedDict(reversed(list(ordered.items()))))
    all_agree_equal(items, dict(reversed(list(items.items()))))


@PROPERTIES
@given(values)
def test_a_value_that_contains_itself_equals_its_deep_copy(value: Any) -> None:
    outer: list[Any] = [value, {"again": None}]
    outer.append(outer)
    outer[1]["again"] = outer
    twin = copy.deepcopy(outer)
    all_agree_equal(outer, twin)
    spec = flatten(outer)[0]
    assert [child.kind for child in spec.children][2] == CYCLE
    assert spec.children[2].up == 1
    assert spec.children[1].children[0].up == 2
    # A cycle is part of the structure: the same value with one turn unrolled is another structure.
    unrolled = difference(outer, [value, {"again": twin}, twin])
    assert unrolled is not None
    assert unrolled.startswith("structure differs at [1]['again']"), unrolled


def test_node_kinds() -> None:
    spec, found = flatten([(1, 2), {"x": Box(3)}, Pair(4, 5)], objects=True)
    assert spec.kind == SEQUENCE
    assert [child.kind for child in spec.children] == [SEQUENCE, MAPPING, SEQUENCE]
    assert spec.children[1].children[0].kind == OBJECT
    assert spec.children[1].children[0].keys == ("content",)
    assert spec.children[2].type is Pair
    assert found == [1, 2, 3, 4, 5]
    assert flatten(Box(3))[0].kind == LEAF  # objects are leaves unless asked for
    paths = [path for path, _ in leaves({"image": [0, 1, np.zeros(2)]}, "sample")]
    assert paths == ["sample['image'][0]", "sample['image'][1]", "sample['image'][2]"]
    assert difference({"image": [0, 1, np.zeros(2)]}, {"image": [0, 1, np.ones(2)]}, "sample") == (
        "values differ at sample['image'][2]: ndarray(float64, (2,)) (first at [0]: 0.0 vs 1.0)"
    )


def test_numbers_of_different_types_differ_for_every_function() -> None:
    for left, right in [(1, 1.0), (True, 1), (np.float32(1.0), np.float64(1.0)), (1, np.int64(1))]:
        assert difference(left, right) is not None
        assert fingerprint(left) != fingerprint(right)
    assert repr(fingerprint(-0.0)) == repr(fingerprint(0.0))
    assert repr(fingerprint(np.array([-0.0]))) == repr(fingerprint(np.array([0.0])))
