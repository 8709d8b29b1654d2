"""Samplers, default_collate, DataLoader, StreamDataset, and parity with torch's DataLoader."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
import pytest

from torchcontract import protocols
from torchcontract.reference_impl import (
    MNIST,
    BatchSampler,
    DataLoader,
    RandomSampler,
    SampleBatch,
    SequentialSampler,
    StreamDataset,
    default_collate,
    is_iterable_style,
    sample_root,
)

from ..conftest import NO_TORCH_REASON

T = TypeVar("T")


class Point(NamedTuple):
    x: int
    y: float


class Squares:
    """A map-style dataset without __getitems__; counts calls."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.calls: list[int] = []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[int, float]:
        if not 0 <= index < self.n:
            raise IndexError(index)
        self.calls.append(index)
        return index, float(index * index)


class ListGetitems(Squares):
    """A map-style dataset whose __getitems__ insists on a list, as the protocol promises."""

    def __getitems__(self, indices: list[int]) -> list[tuple[int, float]]:
        assert type(indices) is list
        assert all(type(i) is int for i in indices)
        return [self[i] for i in indices]


class Stream:
    """An iterable-style dataset without a length."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.n))


class SizedStream(Stream):
    def __len__(self) -> int:
        return self.n


# -- samplers ---------------------------------------------------------------------------------------


def test_sequential_sampler() -> None:
    assert list(SequentialSampler(4)) == [0, 1, 2, 3]
    assert list(SequentialSampler([7, 8])) == [0, 1]
    assert len(SequentialSampler(range(5))) == 5
    assert all(type(i) is int for i in SequentialSampler(3))
    with pytest.raises(ValueError, match=">= 0"):
        SequentialSampler(-1)
    with pytest.raises(TypeError):
        SequentialSampler(Stream(3))  # type: ignore[arg-type]


def test_random_sampler_permutes_reproducibly_with_a_new_order_each_pass() -> None:
    a, b = RandomSampler(50, seed=3), RandomSampler(range(50), seed=3)
    passes_a = [list(a) for _ in range(3)]
    assert passes_a == [list(b) for _ in range(3)]
    assert all(sorted(p) == list(range(50)) for p in passes_a)
    assert passes_a[0] != passes_a[1] != passes_a[2]
    assert all(type(i) is int for i in passes_a[0])
    assert len(a) == 50
    assert list(RandomSampler(0)) == []


def test_random_sampler_does_not_use_global_state() -> None:
    np.random.seed(0)
    first = list(RandomSampler(20, seed=1))
    np.random.seed(123)
    np.random.random(10)
    assert list(RandomSampler(20, seed=1)) == first
    state = np.random.get_state()[1].copy()  # type: ignore[index]
    list(RandomSampler(20))
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # type: ignore[index]


def test_batch_sampler_like_torch() -> None:
    assert list(BatchSampler(SequentialSampler(10), 3, False)) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert list(BatchSampler(SequentialSampler(10), 3, True)) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert len(BatchSampler(SequentialSampler(10), 3, False)) == 4
    assert len(BatchSampler(SequentialSampler(10), 3, True)) == 3
    assert list(BatchSampler(range(5), 2, False)) == [[0, 1], [2, 3], [4]]  # any iterable of ints
    assert list(BatchSampler(iter([4, 2, 0]), 2, True)) == [[4, 2]]
    batches = list(BatchSampler(RandomSampler(7, seed=0), 3, False))
    assert all(type(i) is int for batch in batches for i in batch)
    for bad in (0, -1, True, 2.0, None):
        with pytest.raises(ValueError, match="batch_size"):
            BatchSampler(range(3), bad, False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="drop_last"):
        BatchSampler(range(3), 1, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        len(BatchSampler(iter([1]), 1, False))


def test_samplers_satisfy_the_sampler_protocol() -> None:
    for sampler in (SequentialSampler(2), RandomSampler(2), BatchSampler(range(2), 1, False)):
        assert isinstance(sampler, protocols.Sampler)


# -- default_collate --------------------------------------------------------------------------------


def test_collate_arrays_and_scalars() -> None:
    images = [np.full((2, 2), i, np.uint8) for i in range(3)]
    batch = default_collate([(image, i) for i, image in enumerate(images)])
    assert isinstance(batch, tuple)
    assert len(batch) == 2
    assert batch[0].shape == (3, 2, 2)
    assert batch[0].dtype == np.uint8
    np.testing.assert_array_equal(batch[1], [0, 1, 2])
    assert batch[1].dtype == np.int64
    assert default_collate([1.5, 2.0]).dtype == np.float64
    assert default_collate([True, False]).dtype == np.bool_
    assert default_collate([np.float32(1), np.float32(2)]).dtype == np.float32
    assert default_collate([np.int16(1), np.int16(2)]).dtype == np.int16
    assert default_collate(["a", "b"]) == ["a", "b"]
    assert default_collate([b"a", b"b"]) == [b"a", b"b"]


def test_collate_structures_keep_their_types() -> None:
    batch = default_collate([{"x": 1, "y": (2.0, "s")}, {"x": 3, "y": (4.0, "t")}])
    assert type(batch) is dict
    assert list(batch) == ["x", "y"]
    np.testing.assert_array_equal(batch["x"], [1, 3])
    assert isinstance(batch["y"], tuple)
    assert batch["y"][1] == ["s", "t"]
    ordered = default_collate([collections.OrderedDict(b=1, a=2)] * 2)
    assert type(ordered) is collections.OrderedDict
    assert list(ordered) == ["b", "a"]
    counted = default_collate([collections.defaultdict(int, a=1)] * 2)  # cannot be rebuilt: a dict
    assert type(counted) is dict
    points = default_collate([Point(1, 2.0), Point(3, 4.0)])
    assert type(points) is Point
    assert points.x.dtype == np.int64
    assert points.y.dtype == np.float64
    lists = default_collate([[1, 2], [3, 4]])
    assert type(lists) is list
    assert [c.tolist() for c in lists] == [[1, 3], [2, 4]]


def test_collate_sample_batch_returns_its_columns() -> None:
    images, labels = np.zeros((2, 28, 28), np.uint8), np.array([3, 4])
    columns = default_collate(SampleBatch(images, labels))
    assert columns[0] is images
    assert columns[1] is labels
    # ... and equals what collating the samples one by one gives.
    one_by_one = default_collate(list(SampleBatch(images, labels)))
    for a, b in zip(columns, one_by_one, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype


@pytest.mark.parametrize(
    ("samples", "error", "message"),
    [
        ([object()], TypeError, "sample of type object"),
        ([(1, {"k": None})], TypeError, r"sample\[1\]\['k'\] of type NoneType"),
        ([1, 2.0], TypeError, "int in sample 0, float in sample 1"),
        ([True, 1], TypeError, "bool in sample 0, int in sample 1"),
        ([(1, 2), Point(1, 2.0)], TypeError, "tuple in sample 0, Point in sample 1"),
        ([np.zeros(2), np.zeros(3)], ValueError, r"float64\[2\] in sample 0, float64\[3\] in sample 1"),
        ([np.zeros(2), np.zeros(2, np.float32)], ValueError, "float32"),
        ([(1, 2), (1, 2, 3)], ValueError, "length 2 in sample 0, 3 in sample 1"),
        ([{"a": 1}, {"b": 1}], ValueError, "keys"),
        ([], ValueError, "at least one"),
    ],
)
def test_collate_errors_name_type_and_position(samples: list[Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        default_collate(samples)


# -- telling map-style from iterable-style ----------------------------------------------------------


class FakeDataset(Generic[T]):
    """Mimics torch.utils.data.Dataset: a __getitem__ stub, no __len__."""

    def __getitem__(self, index: int) -> T:
        raise NotImplementedError


class FakeIterableDataset(FakeDataset[T], collections.abc.Iterable[T]):
    """Mimics torch.utils.data.IterableDataset."""


class FakeStream(FakeIterableDataset[int]):
    def __iter__(self) -> Iterator[int]:
        return iter(range(5))

    def __len__(self) -> int:
        return 5


class FakeMapDataset(FakeDataset[int]):
    def __getitem__(self, index: int) -> int:
        if index >= 3:
            raise IndexError(index)
        return index

    def __len__(self) -> int:
        return 3


class NoIteration(list[int]):
    __iter__ = None  # type: ignore[assignment]


def test_is_iterable_style_rule() -> None:
    for map_style in ([1], (1,), range(3), np.zeros(3), "abc", FakeMapDataset(), Squares(3), NoIteration()):
        assert not is_iterable_style(map_style), type(map_style)
    for iterable_style in (FakeStream(), Stream(2), SizedStream(2), StreamDataset([1, 2]), {1: 2}.keys()):
        assert is_iterable_style(iterable_style), type(iterable_style)


def test_is_iterable_style_on_real_torch_classes() -> None:
    torch = pytest.importorskip("torch", reason=NO_TORCH_REASON)
    data = torch.utils.data

    class TorchStream(data.IterableDataset):  # type: ignore[misc]
        def __iter__(self) -> Iterator[int]:
            return iter(range(4))

        def __len__(self) -> int:
            return 4

    class TorchMap(data.Dataset):  # type: ignore[misc]
        def __getitem__(self, index: int) -> int:
            return index

        def __len__(self) -> int:
            return 4

    assert is_iterable_style(TorchStream())
    assert is_iterable_style(data.ChainDataset([TorchStream()]))
    assert not is_iterable_style(TorchMap())
    assert not is_iterable_style(data.TensorDataset(torch.zeros(3)))
    assert [b.tolist() for b in DataLoader(TorchStream(), batch_size=3)] == [[0, 1, 2], [3]]


# -- DataLoader: map-style --------------------------------------------------------------------------


def test_loader_attributes_and_length() -> None:
    ds = Squares(10)
    loader = DataLoader(ds, batch_size=3)
    assert loader.dataset is ds
    assert loader.batch_size == 3
    assert not loader.shuffle
    assert not loader.drop_last
    assert isinstance(loader.sampler, SequentialSampler)
    assert loader.collate_fn is default_collate
    assert len(loader) == 4
    assert len(DataLoader(ds, batch_size=3, drop_last=True)) == 3
    assert len(DataLoader(ds, batch_size=None)) == 10
    assert len(DataLoader(ds)) == 10
    assert isinstance(DataLoader(ds, shuffle=True).sampler, RandomSampler)
    assert isinstance(loader, protocols.Loader)


def test_loader_batches_in_order_with_and_without_drop_last() -> None:
    batches = list(DataLoader(Squares(10), batch_size=4))
    assert [b[0].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert batches[0][1].dtype == np.float64
    assert [b[0].tolist() for b in DataLoader(Squares(10), batch_size=4, drop_last=True)] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
    ]
    assert list(DataLoader(Squares(0), batch_size=4)) == []


def test_loader_passes_lists_of_ints_to_foreign_getitems() -> None:
    for shuffle in (False, True):
        ds = ListGetitems(7)
        batches = list(DataLoader(ds, batch_size=3, shuffle=shuffle, seed=0))
        assert sorted(ds.calls) == list(range(7))
        assert len(batches) == 3


def test_loader_uses_getitems_only_when_present_and_not_none() -> None:
    class Disabled(ListGetitems):
        __getitems__ = None  # type: ignore[assignment]

    assert len(list(DataLoader(Disabled(5), batch_size=2))) == 3
    ds = ListGetitems(5)
    ds.calls.clear()
    list(DataLoader(ds, batch_size=5))
    assert ds.calls == [0, 1, 2, 3, 4]


def test_loader_without_batching_yields_samples() -> None:
    assert list(DataLoader(Squares(3), batch_size=None)) == [(0, 0.0), (1, 1.0), (2, 4.0)]
    assert list(DataLoader(Squares(3), batch_size=None, collate_fn=lambda s: s[0])) == [0, 1, 2]
    assert DataLoader(Squares(3), batch_size=None).collate_fn is None


def test_loader_with_custom_collate_and_sampler() -> None:
    loader = DataLoader(Squares(6), batch_size=2, sampler=[5, 4, 3, 2, 1, 0], collate_fn=list)
    assert [[i for i, _ in batch] for batch in loader] == [[5, 4], [3, 2], [1, 0]]
    assert len(loader) == 3
    unsized = DataLoader(Squares(6), batch_size=2, sampler=iter([1, 2]))
    with pytest.raises(TypeError):
        len(unsized)


def test_shuffle_reproducible_new_order_each_epoch_all_samples_once() -> None:
    def epochs(seed: int | None) -> list[list[int]]:
        loader = DataLoader(Squares(20), batch_size=6, shuffle=True, seed=seed)
        return [np.concatenate([b[0] for b in loader]).tolist() for _ in range(3)]

    first = epochs(1)
    assert first == epochs(1)
    assert first != epochs(2)
    assert first[0] != first[1] != first[2]
    assert all(sorted(epoch) == list(range(20)) for epoch in first)
    assert epochs(None) != epochs(None)  # fresh entropy (fails with probability ~1/20!**3)


def test_iter_returns_new_iterators_with_sticky_exhaustion() -> None:
    loader = DataLoader(Squares(5), batch_size=2)
    first, second = iter(loader), iter(loader)
    assert first is not second
    assert iter(first) is first
    assert next(first)[0].tolist() == [0, 1]
    assert [b[0].tolist() for b in second] == [[0, 1], [2, 3], [4]]
    assert [b[0].tolist() for b in first] == [[2, 3], [4]]
    for _ in range(3):
        with pytest.raises(StopIteration):
            next(first)
    assert len(list(loader)) == 3  # a new epoch after an abandoned one


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"shuffle": 1}, "shuffle"),
        ({"shuffle": None}, "shuffle"),
        ({"drop_last": "no"}, "drop_last"),
        ({"shuffle": True, "sampler": [0, 1]}, "mutually exclusive"),
    ],
)
def test_loader_rejects_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DataLoader(Squares(3), **kwargs)


def test_loader_over_unsized_map_dataset() -> None:
    class Unsized(FakeDataset[int]):
        def __getitem__(self, index: int) -> int:
            return index

    # torch fails later, at len() or iter(); failing at construction is clearer.
    with pytest.raises(TypeError, match="sized data source, got Unsized"):
        DataLoader(Unsized(), batch_size=2)
    with_sampler = DataLoader(Unsized(), batch_size=2, sampler=[4, 2, 0])
    assert [b.tolist() for b in with_sampler] == [[4, 2], [0]]
    assert len(with_sampler) == 2


# -- DataLoader: iterable-style ---------------------------------------------------------------------


def test_loader_batches_streams() -> None:
    assert [b.tolist() for b in DataLoader(Stream(7), batch_size=3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b.tolist() for b in DataLoader(Stream(7), batch_size=3, drop_last=True)] == [[0, 1, 2], [3, 4, 5]]
    assert list(DataLoader(Stream(3), batch_size=None)) == [0, 1, 2]
    assert DataLoader(Stream(3)).sampler is None
    loader = DataLoader(FakeStream(), batch_size=2)
    assert len(loader) == 3
    assert [b.tolist() for b in loader] == [[0, 1], [2, 3], [4]]
    assert len(DataLoader(FakeStream(), batch_size=2, drop_last=True)) == 2
    assert len(DataLoader(FakeStream(), batch_size=None)) == 5
    with pytest.raises(TypeError, match="unsized"):
        len(DataLoader(Stream(3), batch_size=2))
    iterator = iter(DataLoader(Stream(2), batch_size=5))
    assert next(iterator).tolist() == [0, 1]
    with pytest.raises(StopIteration):
        next(iterator)
    with pytest.raises(StopIteration):
        next(iterator)


def test_loader_rejects_shuffle_and_sampler_for_streams() -> None:
    with pytest.raises(ValueError, match="shuffle"):
        DataLoader(Stream(3), shuffle=True)
    with pytest.raises(ValueError, match="sampler"):
        DataLoader(FakeStream(), sampler=[0, 1])


def test_stream_dataset() -> None:
    stream = StreamDataset(Squares(3))
    assert len(stream) == 3
    assert list(stream) == [(0, 0.0), (1, 1.0), (2, 4.0)] == list(stream)
    assert isinstance(stream, protocols.IterableDataset)
    batches = list(DataLoader(stream, batch_size=2))
    assert [b[0].tolist() for b in batches] == [[0, 1], [2]]
    assert repr(stream).startswith("StreamDataset(<")
    with pytest.raises(TypeError):
        StreamDataset(Stream(3))  # type: ignore[arg-type]


# -- MNIST through the loader -----------------------------------------------------------------------


def test_mnist_loader_batches_are_columns(
    tiny_root: Path, tiny_images: np.ndarray, tiny_labels: np.ndarray
) -> None:
    loader = DataLoader(MNIST(tiny_root), batch_size=4, shuffle=True, seed=0)
    seen_images, seen_labels = [], []
    for images, labels in loader:
        assert images.dtype == np.uint8
        assert images.shape[1:] == (28, 28)
        assert labels.dtype == np.int64
        assert labels.shape == (len(images),)
        seen_images.append(images)
        seen_labels.append(labels)
    assert len(seen_images) == 3
    # Every sample once, each image with its own label.
    seen = sorted(
        zip(np.concatenate(seen_labels).tolist(), map(bytes, np.concatenate(seen_images)), strict=True)
    )
    assert seen == sorted(zip(tiny_labels.tolist(), map(bytes, tiny_images), strict=True))


def test_torch_dataloader_over_our_mnist_gives_our_batches() -> None:
    torch = pytest.importorskip("torch", reason=NO_TORCH_REASON)
    ds = MNIST(sample_root(), train=False)
    order = RandomSampler(len(ds), seed=5)
    indices = list(order)
    theirs = torch.utils.data.DataLoader(ds, batch_size=64, sampler=indices)
    ours = DataLoader(ds, batch_size=64, sampler=indices)
    count = 0
    for (their_images, their_labels), (images, labels) in zip(theirs, ours, strict=True):
        assert their_images.dtype == torch.uint8
        assert their_labels.dtype == torch.int64
        np.testing.assert_array_equal(their_images.numpy(), images)
        np.testing.assert_array_equal(their_labels.numpy(), labels)
        count += 1
    assert count == len(ours) == len(theirs) == 16
    # Without __getitems__ (per-sample fetch and torch's own stacking) the batches are the same.
    single = torch.utils.data.DataLoader(ds, batch_size=None, sampler=indices[:3])
    for (image, label), i in zip(single, indices[:3], strict=True):
        np.testing.assert_array_equal(image.numpy(), ds[i][0])
        assert label == ds[i][1]
