"""Train a small MLP on the bundled MNIST sample with the NumPy reference implementation.

    python examples/train_mnist.py [--epochs N] [--root ROOT]

Sequential(Linear(784, 128), ReLU(), Linear(128, 10)), plain SGD on softmax cross-entropy, over
the 4,000 bundled training digits; then the accuracy on the 1,000 test digits, on the last line.
``--root`` takes any folder in torchvision's layout (``ROOT/MNIST/raw/``), e.g. the full MNIST.
"""

from __future__ import annotations

import argparse
import os
import time

# These matrices are small: one BLAS thread is fastest, and a second one only waits for a free core
# when the machine is busy. Set before NumPy loads OpenBLAS; an explicit setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from numpy.typing import NDArray

from torchcontract.reference_impl import (
    MNIST,
    SGD,
    DataLoader,
    Linear,
    ReLU,
    Sequential,
    sample_root,
    softmax_cross_entropy,
)


def as_inputs(images: NDArray[np.uint8]) -> NDArray[np.float32]:
    """uint8 images (B, 28, 28) -> float32 rows (B, 784) in [0, 1]."""
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(255)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--root", default=None, help="dataset root (default: the bundled sample)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = sample_root() if args.root is None else args.root

    rng = np.random.default_rng(args.seed)
    model = Sequential(Linear(784, 128, rng=rng), ReLU(), Linear(128, 10, rng=rng))
    optimizer = SGD(model.parameters(), lr=0.1)
    train = DataLoader(MNIST(root, train=True), batch_size=32, shuffle=True, seed=args.seed)

    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        total = 0.0
        for images, labels in train:
            logits = model(as_inputs(images))
            loss, grad = softmax_cross_entropy(logits, labels)
            optimizer.zero_grad()
            model.backward(grad)
            optimizer.step()
            total += loss * len(labels)
        print(f"epoch {epoch:2d}  loss {total / len(train.dataset):.4f}")

    model.eval()
    test = MNIST(root, train=False)
    predictions = model(as_inputs(test.data)).argmax(axis=1)
    accuracy = float(np.mean(predictions == test.targets))
    print(f"trained in {time.perf_counter() - start:.1f} s")
    print(f"test accuracy: {accuracy:.3f}")


if __name__ == "__main__":
    main()
