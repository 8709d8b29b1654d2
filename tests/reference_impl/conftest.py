"""Fixtures for the reference implementation's tests: small MNIST folders written on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from torchcontract.reference_impl import write_idx


def write_mnist(
    root: Path,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    train: bool = True,
    compress: bool = False,
) -> Path:
    """Write ``images`` and ``labels`` as one split of ``root/MNIST/raw/``; return ``raw``."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    prefix = "train" if train else "t10k"
    suffix = ".gz" if compress else ""
    write_idx(raw / f"{prefix}-images-idx3-ubyte{suffix}", images, compress=compress)
    write_idx(raw / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress=compress)
    return raw


@pytest.fixture
def tiny_images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(10, 28, 28), dtype=np.uint8)


@pytest.fixture
def tiny_labels() -> np.ndarray:
    return np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3], dtype=np.uint8)


@pytest.fixture
def tiny_root(tmp_path: Path, tiny_images: np.ndarray, tiny_labels: np.ndarray) -> Path:
    """A folder with a 10-image training split, uncompressed."""
    write_mnist(tmp_path, tiny_images, tiny_labels)
    return tmp_path
