"""MNIST: the bundled sample, torchvision parity, validation, indexing, batches, pickling."""

from __future__ import annotations

import copy
import gzip
import mmap
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from torchcontract import protocols
from torchcontract.reference_impl import MNIST, IDXFormatError, SampleBatch, sample_root, write_idx

from ..conftest import NO_TORCHVISION_REASON
from .conftest import write_mnist


def gunzipped_sample(root: Path) -> Path:
    """The bundled sample, uncompressed (what torchvision needs) under ``root/MNIST/raw``."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for path in (sample_root() / "MNIST" / "raw").glob("*.gz"):
        (raw / path.stem).write_bytes(gzip.decompress(path.read_bytes()))
    return root


# -- the bundled sample -----------------------------------------------------------------------------


def test_bundled_sample_loads_with_its_licence() -> None:
    root = sample_root()
    assert (root / "MNIST" / "README.md").is_file()
    train, test = MNIST(root, train=True), MNIST(root, train=False)
    assert len(train) == 4000
    assert len(test) == 1000
    assert train.data.shape == (4000, 28, 28)
    assert train.data.dtype == np.uint8
    assert train.targets.shape == (4000,)
    assert train.targets.dtype == np.int64
    assert np.bincount(train.targets).tolist() == [400] * 10
    assert np.bincount(test.targets).tolist() == [100] * 10
    image, label = train[0]
    assert image.shape == (28, 28)
    assert image.dtype == np.uint8
    assert type(label) is int
    assert 0 < image.mean() < 255  # a real digit, not a blank


def test_torchvision_reads_the_same_arrays(tmp_path: Path) -> None:
    pytest.importorskip("torchvision", reason=NO_TORCHVISION_REASON)
    import torchvision

    root = gunzipped_sample(tmp_path)
    for train in (True, False):
        ours = MNIST(root, train=train)
        theirs = torchvision.datasets.MNIST(str(root), train=train, download=False)
        np.testing.assert_array_equal(ours.data, theirs.data.numpy())
        np.testing.assert_array_equal(ours.targets, theirs.targets.numpy())
        assert ours.targets.dtype == theirs.targets.numpy().dtype
        for i in (0, 1, len(ours) - 1):
            image, label = theirs[i]
            np.testing.assert_array_equal(ours[i][0], np.asarray(image))
            assert ours[i][1] == label
    # The gzip files give the same arrays as the uncompressed ones.
    np.testing.assert_array_equal(MNIST(sample_root()).data, MNIST(root).data)


# -- files ------------------------------------------------------------------------------------------


def test_missing_files_name_the_path(tmp_path: Path, tiny_root: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"MNIST file not found: .*t10k-images-idx3-ubyte") as error:
        MNIST(tiny_root, train=False)
    assert error.value.filename == str(tiny_root / "MNIST" / "raw" / "t10k-images-idx3-ubyte")
    (tiny_root / "MNIST" / "raw" / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte"):
        MNIST(tiny_root)
    with pytest.raises(FileNotFoundError, match="train-images"):
        MNIST(tmp_path / "elsewhere")


def test_gzip_files_and_uncompressed_preferred(
    tmp_path: Path, tiny_images: np.ndarray, tiny_labels: np.ndarray
) -> None:
    raw = write_mnist(tmp_path, tiny_images, tiny_labels, compress=True)
    np.testing.assert_array_equal(MNIST(tmp_path).data, tiny_images)
    write_mnist(tmp_path, tiny_images[::-1].copy(), tiny_labels[::-1].copy())  # now both exist
    np.testing.assert_array_equal(MNIST(tmp_path).data, tiny_images[::-1])
    assert (raw / "train-images-idx3-ubyte.gz").exists()


def test_any_image_size_is_accepted(tmp_path: Path) -> None:
    write_mnist(tmp_path, np.zeros((3, 5, 7), np.uint8), np.zeros(3, np.uint8))
    assert MNIST(tmp_path)[2][0].shape == (5, 7)


@pytest.mark.parametrize(
    ("images", "labels", "problem", "culprit"),
    [
        (np.zeros((3, 28, 28), np.int8), np.zeros(3, np.uint8), "images must be uint8 of rank 3", "images"),
        (np.zeros((3, 784), np.uint8), np.zeros(3, np.uint8), "images must be uint8 of rank 3", "images"),
        (np.zeros((3, 28, 28), np.uint8), np.zeros(3, np.int32), "labels must be uint8 of rank 1", "labels"),
        (
            np.zeros((3, 28, 28), np.uint8),
            np.zeros((3, 1), np.uint8),
            "labels must be uint8 of rank 1",
            "labels",
        ),
        (np.zeros((3, 28, 28), np.uint8), np.zeros(4, np.uint8), "3 images but .* 4 labels", "images"),
        (np.zeros((3, 28, 28), np.uint8), np.array([0, 10, 3], np.uint8), "label 10 at index 1", "labels"),
    ],
)
def test_content_that_is_not_mnist_raises_idx_format_error(
    tmp_path: Path, images: np.ndarray, labels: np.ndarray, problem: str, culprit: str
) -> None:
    raw = write_mnist(tmp_path, images, labels)
    with pytest.raises(IDXFormatError, match=problem) as error:
        MNIST(tmp_path)
    assert str(raw / f"train-{culprit}-idx{3 if culprit == 'images' else 1}-ubyte") in str(error.value)


def test_malformed_file_raises_idx_format_error(tiny_root: Path) -> None:
    path = tiny_root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(IDXFormatError, match=str(path)):
        MNIST(tiny_root)


def test_train_must_be_bool(tiny_root: Path) -> None:
    with pytest.raises(TypeError, match="train"):
        MNIST(tiny_root, train="yes")  # type: ignore[arg-type]


# -- indexing ---------------------------------------------------------------------------------------


def test_getitem_returns_writable_copies_and_ints(tiny_root: Path, tiny_images: np.ndarray) -> None:
    ds = MNIST(tiny_root)
    image, label = ds[3]
    np.testing.assert_array_equal(image, tiny_images[3])
    assert label == 1
    assert type(label) is int
    assert image.flags.writeable
    assert not np.shares_memory(image, ds.data)
    image[...] = 0
    np.testing.assert_array_equal(ds[3][0], tiny_images[3])


def test_indices_follow_python_sequence_rules(tiny_root: Path, tiny_labels: np.ndarray) -> None:
    ds = MNIST(tiny_root)
    as_list = tiny_labels.tolist()
    for i in (*range(-10, 10), np.int64(4), np.uint8(2), True):
        assert ds[i][1] == as_list[i]  # type: ignore[index]
    for i in (10, -11, 2**70):
        with pytest.raises(IndexError):
            ds[i]
        with pytest.raises(IndexError):
            as_list[i]
    for bad in (1.0, "1", None, slice(0, 2), np.float64(1), [1]):
        with pytest.raises(TypeError):
            ds[bad]  # type: ignore[index]
    assert len(ds) == 10
    assert [label for _, label in ds] == as_list  # legacy iteration stops at IndexError


def test_transforms(tiny_root: Path, tiny_images: np.ndarray) -> None:
    ds = MNIST(tiny_root, transform=lambda image: image.astype(np.float32) / 255, target_transform=str)
    image, label = ds[0]
    assert image.dtype == np.float32
    assert label == "3"
    np.testing.assert_allclose(image * 255, tiny_images[0])
    batch = ds.__getitems__([0, 0, 9])
    assert [label for _, label in batch] == ["3", "3", "3"]
    np.testing.assert_array_equal(batch[2][0], ds[9][0])


def test_getitems_equals_getitem_elementwise(tiny_root: Path) -> None:
    ds = MNIST(tiny_root)
    for indices in ([0, 5, 5, 9, -1, 0], [], np.array([2, 2, 7]), [np.int64(1), 3], [True, False]):
        batch = ds.__getitems__(indices)  # type: ignore[arg-type]
        assert len(batch) == len(indices)
        for sample, i in zip(batch, indices, strict=True):
            image, label = sample
            np.testing.assert_array_equal(image, ds[i][0])
            assert label == ds[i][1]
            assert type(label) is int
            assert image.flags.writeable
        if isinstance(indices, list) and type(indices[0] if indices else 0) is bool:
            continue  # bools are indices for Python (ds[True] is ds[1]) but not for the fast path
        assert isinstance(batch, SampleBatch)
        images, labels = batch.columns
        assert images.shape == (len(indices), 28, 28)
        assert images.dtype == np.uint8
        assert labels.shape == (len(indices),)
        assert labels.dtype == np.int64


def test_getitems_rejects_what_getitem_rejects(tiny_root: Path) -> None:
    ds = MNIST(tiny_root)
    with pytest.raises(IndexError):
        ds.__getitems__([0, 10])
    with pytest.raises(IndexError):
        ds.__getitems__([-11])
    with pytest.raises(TypeError):
        ds.__getitems__([0.0, 1.0])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        ds.__getitems__([[0, 1]])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        ds.__getitems__([[0, 1], [2]])  # type: ignore[list-item]
    with pytest.raises(IndexError):
        ds.__getitems__([0, 2**70])


def test_sample_batch_is_a_sequence(tiny_root: Path) -> None:
    batch = MNIST(tiny_root).__getitems__([4, 5, 6])
    assert isinstance(batch, SampleBatch)
    assert batch[-1][1] == batch[2][1]
    with pytest.raises(IndexError):
        batch[3]
    tail = batch[1:]
    assert isinstance(tail, SampleBatch)
    assert len(tail) == 2
    assert tail[0][1] == batch[1][1]
    assert next(reversed(batch))[1] == batch[2][1]
    assert "uint8[3, 28, 28]" in repr(batch)
    with pytest.raises(ValueError, match="one length"):
        SampleBatch(np.zeros(2), np.zeros(3))


def test_pickle_and_deepcopy(tiny_root: Path) -> None:
    ds = MNIST(tiny_root)
    payload = pickle.dumps(ds)
    assert len(payload) < 2000  # the file paths, not the images
    for clone in (pickle.loads(payload), copy.deepcopy(ds)):
        assert isinstance(clone, MNIST)
        assert len(clone) == len(ds)
        np.testing.assert_array_equal(clone.data, ds.data)
        np.testing.assert_array_equal(clone.targets, ds.targets)
        assert clone[7][1] == ds[7][1]


def test_mnist_satisfies_the_map_dataset_protocol(tiny_root: Path) -> None:
    assert isinstance(MNIST(tiny_root), protocols.MapDataset)


def test_root_may_be_a_str(tiny_root: Path, tmp_path: Path) -> None:
    copied = tmp_path / "copy"
    shutil.copytree(tiny_root / "MNIST", copied / "MNIST")
    assert len(MNIST(str(copied))) == 10
    assert "10 images of (28, 28)" in repr(MNIST(str(copied)))


def test_write_mnist_helper_writes_idx(tmp_path: Path) -> None:
    # Guards the fixture the other tests rely on: files are where torchvision looks for them.
    write_idx(tmp_path / "x", np.zeros(1, np.uint8))
    raw = write_mnist(tmp_path, np.zeros((1, 2, 2), np.uint8), np.zeros(1, np.uint8), train=False)
    assert sorted(p.name for p in raw.iterdir()) == ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


# -- memory maps ------------------------------------------------------------------------------------


def is_mapped(array: np.ndarray) -> bool:
    base: object = array
    while isinstance(base, (np.ndarray, memoryview)):
        base = base.base if isinstance(base, np.ndarray) else base.obj
    return isinstance(base, mmap.mmap)


def test_mmap_mode_memory_maps_by_default_and_copies_with_none(
    tiny_root: Path, tiny_images: np.ndarray
) -> None:
    mapped, copied = MNIST(tiny_root), MNIST(tiny_root, mmap_mode=None)
    assert is_mapped(mapped.data)
    assert not is_mapped(copied.data)
    assert not mapped.data.flags.writeable
    assert not copied.data.flags.writeable
    for clone in (pickle.loads(pickle.dumps(copied)), copy.deepcopy(copied)):
        assert clone.mmap_mode is None
        assert not is_mapped(clone.data)
    assert is_mapped(pickle.loads(pickle.dumps(mapped)).data)
    images = tiny_root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(b"")  # truncated: reading mapped.data now would be SIGBUS; the copy is intact
    np.testing.assert_array_equal(copied.data, tiny_images)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_a_fifo_in_place_of_a_file_is_named_not_missing(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-labels-idx1-ubyte", np.zeros(1, np.uint8))
    os.mkfifo(raw / "train-images-idx3-ubyte")  # before: "MNIST file not found"
    with pytest.raises(IDXFormatError, match="train-images-idx3-ubyte: not a regular file: it is a FIFO"):
        MNIST(tmp_path)
