"""Our comparison code on odd but legal values: it never raises, and never misjudges an object.

One section per class of value (mappings that iterate something other than their keys, identity
``==``, cycles, unusual tensors and object arrays, streams with a stub ``__getitem__``), each with
unit tests of ``_values`` and an end-to-end test through :func:`check`: a correct dataset of such
samples passes every required map_dataset clause, and a genuinely random one still fails
``map_dataset.getitem_is_deterministic``.
"""

from __future__ import annotations

import copy
import functools
import inspect
import random
import warnings
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from torchcontract import reference_impl as ref
from torchcontract.conformance import Report, _values, check
from torchcontract.conformance._values import (
    NotComparable,
    as_numpy,
    close_difference,
    compare,
    describe,
    describe_structure,
    difference,
    fingerprint,
    leaves,
    sample_count,
    snapshot_leaves,
    structure,
)
from torchcontract.protocols import Loader, MapDataset

from ..conftest import HAS_TORCH, NO_TORCH_REASON

DETERMINISTIC = "map_dataset.getitem_is_deterministic"
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON)


def violations(report: Report) -> list[str]:
    """Every result that is neither passed nor skipped (failed, or an internal error)."""
    return [
        f"{r.check_id}: {r.status}: {r.message}"
        for r in report.results
        if r.status not in ("passed", "skipped")
    ]


def status(report: Report, check_id: str) -> str:
    return next(r.status for r in report.results if r.check_id == check_id)


def all_functions_agree_equal(make: Callable[[], Any]) -> None:
    """Two equal values built alike: equal for every function, and none of them raises."""
    left, right = make(), make()
    assert difference(left, right) is None
    assert close_difference(left, right) is None
    assert compare(left, right).difference is None
    assert fingerprint(left) == fingerprint(right)
    hash(fingerprint(left))
    assert structure(left) == structure(right)
    hash(structure(left))
    assert isinstance(describe(left), str)
    assert isinstance(describe_structure(left), str)
    list(leaves(left))
    sample_count(left)
    snapshot_leaves(left)


class Samples:
    """A correct map-style dataset of ``make(index, 0.0)`` samples (``make`` a module-level function or
    a ``functools.partial`` of one, so that it pickles); ``noise`` passes a fresh random number
    instead (the non-deterministic mutant: two calls agree with probability 2**-53 per pair)."""

    def __init__(self, make: Callable[[int, float], Any], length: int = 5, noise: bool = False) -> None:
        self.make, self.length, self.noise = make, length, noise
        self.rng = random.Random(0)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return self.make(index, self.rng.random() if self.noise else 0.0)


def keep_list(samples: list[Any]) -> list[Any]:
    """The collate a dataset of such samples is loaded with (default_collate takes none of them)."""
    return samples


def assert_dataset_passes_and_mutant_fails(make: Callable[[int, float], Any]) -> None:
    report = check(Samples(make), MapDataset, collate_fn=keep_list)
    assert not violations(report), violations(report)
    assert report.passed
    mutant = check(Samples(make, noise=True), MapDataset)
    assert status(mutant, DETERMINISTIC) == "failed", mutant


# -- 1. mappings whose iteration is not their keys ------------------------------------------------


class Batch(MutableMapping[str, Any]):
    """A batch-of-arrays mapping (TensorDict-style): ``keys()`` are its fields, but iterating it walks
    the batch dimension, yielding one row (a ``Batch``) per sample."""

    def __init__(self, **fields: Any) -> None:
        self.fields = dict(fields)

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.fields[key] = value

    def __delitem__(self, key: str) -> None:
        del self.fields[key]

    def keys(self) -> Any:
        return self.fields.keys()

    def __len__(self) -> int:
        return len(next(iter(self.fields.values())))

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        for row in range(len(self)):
            yield Batch(**{key: value[row : row + 1] for key, value in self.fields.items()})


class RowKeys(Batch):
    """Even ``keys()`` gives rows: the mapping cannot be traversed as one (an opaque leaf)."""

    def keys(self) -> Any:
        return list(iter(self))


def make_batch(index: int, noise: float = 0.0, kind: type[Batch] = Batch) -> Batch:
    return kind(x=np.arange(6.0).reshape(3, 2) + index + noise, y=np.array([index, 1, 2]))


@pytest.mark.parametrize("kind", [Batch, RowKeys])
def test_mappings_that_iterate_rows(kind: type[Batch]) -> None:
    all_functions_agree_equal(lambda: make_batch(0, kind=kind))
    found = difference(make_batch(0, kind=kind), make_batch(1, kind=kind))
    assert found is not None
    assert "differ" in found


def test_a_traversable_batch_is_traversed_by_keys() -> None:
    found = difference(make_batch(0), make_batch(1))
    assert found is not None
    assert "['x']" in found, found
    assert sorted(path for path, _ in leaves(make_batch(0))) == ["['x']", "['y']"]
    assert sample_count(make_batch(0)) == 3
    assert describe(make_batch(0)).startswith("Batch({'x': ndarray(float64, (3, 2))")


@pytest.mark.parametrize("kind", [Batch, RowKeys])
def test_dataset_of_oddly_iterating_mappings(kind: type[Batch]) -> None:
    assert_dataset_passes_and_mutant_fails(functools.partial(make_batch, kind=kind))


# -- 2. identity ==: compared by content ----------------------------------------------------------


class Graph:
    """A graph container whose == is identity (common for graph data)."""

    def __init__(self, nodes: np.ndarray[Any, Any], edges: list[tuple[int, int]], name: str) -> None:
        self.nodes, self.edges, self.name = nodes, edges, name

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"Graph({self.name})"


class SlotBase:
    __slots__ = ("features",)

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__


class SlotGraph(SlotBase):
    """Identity ==, attributes only in __slots__, one of them private and one inherited."""

    __slots__ = ("__edges", "unset")

    def __init__(self, features: np.ndarray[Any, Any], edges: tuple[int, ...]) -> None:
        self.features = features
        self.__edges = edges

    def edges(self) -> tuple[int, ...]:
        return self.__edges


def make_graph(index: int, noise: float = 0.0) -> Graph:
    return Graph(np.full(3, float(index) + noise), [(0, 1), (1, index % 3)], "g")


def make_slot_graph(index: int, noise: float = 0.0) -> SlotGraph:
    return SlotGraph(np.full(2, index + noise), (index,))


def test_identity_eq_objects_compare_by_attributes() -> None:
    all_functions_agree_equal(lambda: make_graph(1))
    found = difference(make_graph(1), make_graph(4))
    assert found is not None
    assert "at .nodes" in found, found
    all_functions_agree_equal(lambda: SlotGraph(np.zeros(2), (1, 2)))
    assert difference(SlotGraph(np.zeros(2), (1, 2)), SlotGraph(np.zeros(2), (1, 3))) is not None
    assert difference(SlotGraph(np.zeros(2), (1, 2)), SlotGraph(np.ones(2), (1, 2))) is not None


def test_objects_without_attributes_are_not_comparable_but_equal() -> None:
    outcome = compare(object(), object())
    assert outcome.difference is None
    assert outcome.not_compared
    assert "no attributes" in outcome.not_compared[0]
    assert fingerprint(object()) == fingerprint(object())


class SameRepr:
    """== by value, but every instance prints alike."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SameRepr) and other.value == self.value

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "SameRepr()"


class Tag(int):
    """An int whose repr hides its value (and with no attributes to show it)."""

    def __repr__(self) -> str:
        return "Tag()"


def test_a_difference_between_identical_reprs_says_where_or_why() -> None:
    assert difference(SameRepr(1), SameRepr(2)) == "values differ at .value: 1 vs 2"
    assert difference(SameRepr(1), SameRepr(1)) is None
    assert fingerprint(SameRepr(1)) == fingerprint(SameRepr(1))
    found = difference([Tag(1)], [Tag(2)])
    assert found is not None
    assert "at [0]" in found, found
    assert "print the same" in found, found


def test_dataset_of_identity_eq_samples() -> None:
    assert_dataset_passes_and_mutant_fails(make_graph)
    assert_dataset_passes_and_mutant_fails(make_slot_graph)


# -- 3. cycles and parent pointers ----------------------------------------------------------------


class Node:
    """A tree node whose children point back to it (default ==: identity)."""

    def __init__(self, value: float, parent: Node | None = None) -> None:
        self.value, self.parent, self.children = value, parent, list[Node]()
        if parent is not None:
            parent.children.append(self)


class ValueNode(Node):
    """The same tree with a value == that follows the cycle (it raises RecursionError)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ValueNode) and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]


def make_tree(index: int, noise: float = 0.0, kind: type[Node] = Node) -> Node:
    root = kind(float(index))
    child = kind(1.0 + noise, root)
    kind(2.0, child)
    return root


def self_containing(value: int) -> list[Any]:
    items: list[Any] = [value, {"again": None}]
    items.append(items)
    items[1]["again"] = items
    return items


@pytest.mark.parametrize("kind", [Node, ValueNode])
def test_parent_pointers_end(kind: type[Node]) -> None:
    all_functions_agree_equal(lambda: make_tree(0, kind=kind))
    found = difference(make_tree(0, kind=kind), make_tree(0, 0.5, kind=kind))
    assert found is not None
    assert ".children[0].value" in found, found


def test_self_containing_containers_end() -> None:
    all_functions_agree_equal(lambda: self_containing(1))
    assert difference(self_containing(1), self_containing(2)) is not None
    assert [path for path, _ in leaves(self_containing(1))] == ["[0]"]


def test_depth_is_bounded() -> None:
    def deep() -> list[Any]:
        value: list[Any] = [0]
        for _ in range(5000):
            value = [value]
        return value

    all_functions_agree_equal(deep)
    outcome = compare(deep(), deep())
    assert outcome.difference is None
    assert "deeper" in outcome.not_compared[0]


@pytest.mark.parametrize("kind", [Node, ValueNode])
def test_dataset_of_trees(kind: type[Node]) -> None:
    assert_dataset_passes_and_mutant_fails(functools.partial(make_tree, kind=kind))


# -- 4. tensors and arrays that our comparison used to raise on ------------------------------------


def torch_values() -> dict[str, Callable[[], Any]]:
    import torch

    return {
        "nested": lambda: torch.nested.nested_tensor([torch.zeros(2), torch.ones(3)]),
        "nested_jagged": lambda: torch.nested.nested_tensor(
            [torch.zeros(2), torch.ones(3)], layout=torch.jagged
        ),
        "quantized": lambda: torch.quantize_per_tensor(torch.tensor([1.0, 2.0]), 0.1, 0, torch.quint8),
        "quantized_per_channel": lambda: torch.quantize_per_channel(
            torch.ones(2, 2), torch.tensor([0.1, 0.2]), torch.tensor([0, 0]), 0, torch.qint8
        ),
        "meta": lambda: torch.empty(3, device="meta"),
        "sparse_coo": lambda: torch.eye(3).to_sparse(),
        "sparse_csr": lambda: torch.eye(3).to_sparse_csr(),
        "requires_grad": lambda: torch.ones(2, requires_grad=True),
        "complex": lambda: torch.tensor([1 + 2j, float("nan")]),
        "conj": lambda: torch.tensor([1 + 2j]).conj(),
        "bool": lambda: torch.tensor([True, False]),
        "zero_size": lambda: torch.zeros(0, 3),
        "zero_dim": lambda: torch.tensor(3.0),
        "complex32": lambda: torch.zeros(2, dtype=torch.chalf),
        "float8": lambda: torch.zeros(2, dtype=torch.float8_e4m3fn),
    }


NUMPY_VALUES: dict[str, Callable[[], Any]] = {
    "object_arrays": lambda: np.array([np.zeros(2), np.ones(3)], dtype=object),
    "object_dicts": lambda: np.array([{"a": np.zeros(2)}, {"a": 1}], dtype=object),
    "object_nan": lambda: np.array([float("nan"), None], dtype=object),
    "structured": lambda: np.zeros(2, dtype=[("a", "f4"), ("b", "i8")]),
    "zero_size": lambda: np.zeros((0, 2)),
}


@pytest.mark.parametrize("name", sorted(NUMPY_VALUES))
def test_odd_numpy_values(name: str) -> None:
    all_functions_agree_equal(NUMPY_VALUES[name])


def test_object_arrays_differ_where_their_elements_do() -> None:
    left = np.array([{"a": np.zeros(2)}, {"a": 1}], dtype=object)
    right = np.array([{"a": np.zeros(2)}, {"a": 2}], dtype=object)
    found = difference(left, right)
    assert found is not None
    assert "[1]['a']" in found, found
    assert fingerprint(left) != fingerprint(right)


@needs_torch
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", sorted(torch_values()) if HAS_TORCH else [])
def test_odd_tensors(name: str) -> None:
    make = torch_values()[name]
    all_functions_agree_equal(make)
    converted = as_numpy(make())
    if name == "meta":
        assert isinstance(converted, NotComparable)
        assert "meta" in str(converted)
        assert "meta" in compare(make(), make()).not_compared[0]
    else:
        assert isinstance(converted, np.ndarray)
        assert compare(make(), make()).not_compared == ()


@needs_torch
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_odd_tensors_differ_by_value() -> None:
    import torch

    nested = torch.nested.nested_tensor
    found = difference(nested([torch.zeros(2), torch.ones(3)]), nested([torch.zeros(2), torch.zeros(3)]))
    assert found is not None
    assert ".unbind()[1]" in found, found
    assert difference(nested([torch.zeros(2)]), nested([torch.zeros(2), torch.zeros(1)])) is not None
    quantize = torch.quantize_per_tensor
    values = torch.tensor([1.0, 2.0])
    assert difference(quantize(values, 0.1, 0, torch.quint8), quantize(values, 0.2, 0, torch.quint8))
    assert difference(quantize(values, 0.1, 0, torch.quint8), quantize(values + 1, 0.1, 0, torch.quint8))
    assert difference(torch.eye(3).to_sparse(), (2 * torch.eye(3)).to_sparse())
    assert difference(torch.eye(3).to_sparse(), torch.eye(3)) is not None  # layouts differ
    assert difference(torch.ones(2, requires_grad=True), torch.zeros(2, requires_grad=True))
    assert close_difference(torch.tensor([1 + 2j]), torch.tensor([1 + 3j]))
    assert close_difference(torch.tensor([1.0]), torch.tensor([1.0 + 1e-7])) is None


def make_odd_tensors(index: int, noise: float = 0.0) -> dict[str, Any]:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nested = torch.nested.nested_tensor([torch.zeros(2) + noise, torch.ones(index + 1)])
    # No quantized tensor here: torch loses its quantizer on the way back from a worker process
    # (q_scale() then fails), which the workers clause rightly reports.
    return {
        "nested": nested,
        "sparse": (torch.eye(2) * index).to_sparse(),
        "meta": torch.empty(2, device="meta"),
        "objects": np.array([np.zeros(index + 1), {"k": index}], dtype=object),
    }


@needs_torch
def test_dataset_of_odd_tensors() -> None:
    assert_dataset_passes_and_mutant_fails(make_odd_tensors)
    report = check(Samples(make_odd_tensors), MapDataset)
    result = next(r for r in report.results if r.check_id == DETERMINISTIC)
    assert "could not compare ds[0]: ['meta']" in result.message, result.message


def test_ragged_dict_of_lists_and_numpy_index_batches() -> None:
    sample = {"tokens": [1, 2, 3], "label": 0}
    batch = {"tokens": [[1, 2, 3], [4, 5], [6]], "label": np.array([0, 1, 0])}
    assert sample_count(batch, like=sample) == 3
    assert sample_count(batch) == 3
    hash(structure(batch))
    assert sample_count(np.array([4, 5, 6])) == 3
    assert sample_count([np.array([0, 1]), np.array([2, 3])], like=np.int64(0)) == 2
    hash(structure([np.array([0, 1])]))


@needs_torch
def test_loader_with_a_batch_sampler_of_numpy_arrays_and_ragged_collate() -> None:
    import torch

    class Tokens:
        def __len__(self) -> int:
            return 10

        def __getitem__(self, index: int) -> dict[str, Any]:
            if not 0 <= index < 10:
                raise IndexError(index)
            return {"tokens": list(range(index % 3 + 1)), "label": index}

    def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "tokens": [s["tokens"] for s in samples],
            "label": torch.tensor([s["label"] for s in samples]),
        }

    batches = [np.arange(start, min(start + 4, 10)) for start in range(0, 10, 4)]
    loader = torch.utils.data.DataLoader(Tokens(), batch_sampler=batches, collate_fn=collate)
    report = check(loader, Loader)
    assert not violations(report), report
    assert report.passed


# -- 5. one rule for "is this a stream" ------------------------------------------------------------


class StubBase:
    """A base class with a stub __getitem__, as torch's Dataset has."""

    def __getitem__(self, index: int) -> int:
        raise NotImplementedError("a stream has no __getitem__")


class Stream(StubBase):
    def __iter__(self) -> Iterator[int]:
        return iter(range(10))

    def __len__(self) -> int:
        return 10


def test_one_stream_rule() -> None:
    assert _values.is_iterable_style is ref.is_iterable_style
    assert ref.is_iterable_style(Stream())
    assert ref.DataLoader(Stream(), batch_size=4).iterable_style


def test_loader_over_a_stream_with_a_stub_getitem() -> None:
    report = check(ref.DataLoader(Stream(), batch_size=4), Loader)
    assert not violations(report), report
    assert report.passed


@needs_torch
def test_torch_decides_for_torch_datasets() -> None:
    import torch

    class IterOnly(torch.utils.data.Dataset):  # type: ignore[misc]
        """Not an IterableDataset: torch's DataLoader indexes it, whatever it defines."""

        def __iter__(self) -> Iterator[int]:
            return iter(range(3))

        def __len__(self) -> int:
            return 3

    class TorchStream(torch.utils.data.IterableDataset):  # type: ignore[misc]
        def __iter__(self) -> Iterator[int]:
            return iter(range(3))

    assert not ref.is_iterable_style(IterOnly())
    assert ref.is_iterable_style(TorchStream())


# -- 6. dead code -----------------------------------------------------------------------------------


def test_dead_code_is_gone() -> None:
    assert not hasattr(_values, "deep_copy")
    assert "tf32" not in inspect.signature(close_difference).parameters


# -- properties -------------------------------------------------------------------------------------

PROPERTIES = settings(
    derandomize=True,
    database=None,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.int64, np.bool_, np.complex128]),
    shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3),
)
scalars = st.one_of(st.integers(), st.floats(allow_nan=True), st.text(max_size=3), st.none(), arrays)
nested_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=2), inner, max_size=3),
    ),
    max_leaves=10,
)


@PROPERTIES
@given(nested_values)
def test_a_deep_copy_is_equal_and_has_the_same_fingerprint(value: Any) -> None:
    twin = copy.deepcopy(value)
    assert difference(value, twin) is None
    assert close_difference(value, twin) is None
    assert fingerprint(value) == fingerprint(twin)
    assert repr(fingerprint(value)) == repr(fingerprint(twin))
    assert structure(value) == structure(twin)


@PROPERTIES
@given(nested_values, nested_values)
def test_unequal_values_never_raise(left: Any, right: Any) -> None:
    found = difference(left, right)
    assert found is None or isinstance(found, str)
    if found is None:
        assert fingerprint(left) == fingerprint(right)
