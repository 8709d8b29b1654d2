"""MNIST in torchvision's folder layout, memory-mapped, with a vectorised batch fetch."""

from __future__ import annotations

import errno
import importlib.resources
import operator
import pathlib
from collections.abc import Callable, Sequence
from typing import Any, Literal, SupportsIndex

import numpy as np
from numpy.typing import NDArray

from torchcontract.reference_impl._data import SampleBatch
from torchcontract.reference_impl._idx import IDXFormatError, StrPath, read_idx

__all__ = ["MNIST", "sample_root"]

_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def sample_root() -> pathlib.Path:
    """The root of the bundled MNIST sample (real digits): ``MNIST(sample_root(), train=...)``.

    4,000 training and 1,000 test images, gzip-compressed, under ``MNIST/raw/`` with their licence
    notice (``MNIST/README.md``). Needs the package installed as files on disk (not zipped).
    """
    root = importlib.resources.files("torchcontract.reference_impl") / "data"
    if not isinstance(root, pathlib.Path):
        raise RuntimeError(f"the bundled MNIST sample is not a folder on disk ({root!r})")
    return root


def _find(raw: pathlib.Path, name: str) -> pathlib.Path:
    # Uncompressed first: it is memory-mapped, and it is what torchvision reads. exists(), not
    # is_file(): a FIFO or a folder of that name is read_idx's typed error naming it, not "not found".
    for candidate in (raw / name, raw / f"{name}.gz"):
        if candidate.exists():
            return candidate
    path = raw / name
    raise FileNotFoundError(errno.ENOENT, f"MNIST file not found: {path} (nor {path.name}.gz)", str(path))


class MNIST:
    """The MNIST digits from ``root/MNIST/raw/`` (torchvision's layout), as a map-style dataset.

    Reads ``{train,t10k}-images-idx3-ubyte`` and ``{train,t10k}-labels-idx1-ubyte``, each raw or with
    ``.gz`` (the raw file wins when both exist), so one folder serves torchvision and this class.
    ``FileNotFoundError`` names a missing file; :class:`IDXFormatError` names a malformed one, and also
    a file whose content is not MNIST: images that are not uint8 of rank 3 (any height and width are
    accepted, like torchvision), labels that are not uint8 of rank 1, counts that differ, labels
    outside 0-9.

    - ``mmap_mode`` is passed to :func:`read_idx`. It defaults to ``"r"`` here: the raw files are
      memory-mapped, so opening costs nothing and DataLoader workers share the page cache (dataset
      files are not rewritten while training). The memory-map note: a change to a mapped file shows
      through ``data``, and reading ``data`` after the file was truncated kills the process with
      ``SIGBUS``; ``mmap_mode=None`` reads copies instead.
    - ``data``: the images, uint8 ``(N, H, W)``, read-only (memory-mapped when uncompressed);
      ``targets``: the labels as int64 ``(N,)`` (torchvision's attributes, as NumPy arrays).
    - ``ds[i]`` is ``(image, label)``: a writable uint8 copy ``(H, W)`` and an ``int``, then passed
      through ``transform`` and ``target_transform`` when given. ``i`` follows Python's sequence
      rules: any integer (NumPy integers too), negative ones from the end, ``IndexError`` out of
      range, ``TypeError`` for non-integers.
    - ``ds.__getitems__(indices)`` equals ``[ds[i] for i in indices]`` element-wise. Without
      transforms it is one fancy index per column, returned as a :class:`SampleBatch` that carries
      the stacked ``(images, labels)``; with transforms it is the per-sample list.
    - Pickling stores the file paths and ``mmap_mode``; unpickling reads the files again (with
      memory maps, cheap for worker processes, which then share the page cache); the files must
      still be there.
    """

    def __init__(
        self,
        root: StrPath,
        train: bool = True,
        transform: Callable[[NDArray[np.uint8]], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        *,
        mmap_mode: Literal["r"] | None = "r",
    ) -> None:
        if not isinstance(train, bool):
            raise TypeError(f"train must be a bool, got {type(train).__name__}")
        self.root = pathlib.Path(root)
        self.train = train
        self.transform = transform
        self.target_transform = target_transform
        self.mmap_mode = mmap_mode
        raw = self.root / "MNIST" / "raw"
        images_name, labels_name = _FILES[train]
        self._paths = (_find(raw, images_name), _find(raw, labels_name))
        self.data, self.targets = _load(*self._paths, mmap_mode)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: SupportsIndex) -> tuple[Any, Any]:
        try:
            position = operator.index(index)
        except TypeError:
            raise TypeError(f"MNIST indices must be integers, not {type(index).__name__}") from None
        count = len(self.targets)
        if not -count <= position < count:
            raise IndexError(f"MNIST index {position} is out of range for {count} samples")
        image: Any = self.data[position].copy()
        label: Any = int(self.targets[position])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label

    def __getitems__(self, indices: Sequence[int]) -> Sequence[tuple[Any, Any]]:
        positions = None
        if self.transform is None and self.target_transform is None:
            try:
                positions = np.asarray(indices)
            except ValueError:  # ragged nesting: not a sequence of integers
                positions = None
        if positions is None or positions.ndim != 1 or (positions.size and positions.dtype.kind not in "iu"):
            # Transforms, or indices that are not plain integers (bools, huge ints, floats, ...):
            # one sample at a time, which also gives Python's exact errors.
            return [self[i] for i in indices]
        # NumPy's fancy indexing follows Python's rules: negative indices, IndexError out of range.
        positions = positions.astype(np.intp, copy=False)
        return SampleBatch(self.data[positions], self.targets[positions])

    def __getstate__(self) -> dict[str, Any]:
        state = vars(self).copy()
        del state["data"], state["targets"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        # getattr: a pickle made before mmap_mode existed maps the files, as then.
        self.data, self.targets = _load(*self._paths, getattr(self, "mmap_mode", "r"))

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return f"MNIST(root={str(self.root)!r}, {split}, {len(self)} images of {self.data.shape[1:]})"


def _load(
    images_path: pathlib.Path, labels_path: pathlib.Path, mmap_mode: Literal["r"] | None
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    images = read_idx(images_path, mmap_mode=mmap_mode)
    labels = read_idx(labels_path, mmap_mode=mmap_mode)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise IDXFormatError(
            f"{images_path}: MNIST images must be uint8 of rank 3 (N, H, W), "
            f"got {images.dtype} of shape {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise IDXFormatError(
            f"{labels_path}: MNIST labels must be uint8 of rank 1 (N,), "
            f"got {labels.dtype} of shape {labels.shape}"
        )
    if len(images) != len(labels):
        raise IDXFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels"
        )
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise IDXFormatError(f"{labels_path}: label {labels[bad[0]]} at index {bad[0]} is outside 0-9")
    return images, labels.astype(np.int64)
