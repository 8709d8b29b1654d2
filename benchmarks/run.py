"""Benchmarks of the reference implementation against torch, measured in the same run.

    python benchmarks/run.py [--repeats N] [--torchvision-epochs N]

1. One shuffled epoch of 60,000 MNIST-format images (synthetic IDX files written to a temporary
   folder), batch 64: the reference MNIST + DataLoader, torchvision's MNIST(transform=PILToTensor())
   + torch's DataLoader, and the NumPy floor (one permutation, then per batch ``images[idx]`` and
   ``labels[idx].astype(np.int64)``, nothing per sample). Goals: >= 100x faster than torchvision,
   within 1.5x of the floor.
2. Linear(784 -> 512) forward + backward on a (256, 784) float32 batch, against torch.nn.Linear
   with the same weights (and an input that requires grad, so both compute the input gradient).
   Goal: at most 1.1x torch's time.

Times are the best of ``--repeats`` runs (medians in brackets): the minimum is the least disturbed
by other processes. torch and torchvision are optional: without them their rows are skipped.
On a busy machine, multi-threaded BLAS timings swing wildly; compare single-threaded with
``OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/run.py`` (NumPy's OpenBLAS and torch
both read these).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from torchcontract.reference_impl import MNIST, DataLoader, Linear, write_idx

N_IMAGES = 60_000
BATCH = 64


def timings(run: Callable[[], object], repeats: int) -> list[float]:
    result = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        result.append(time.perf_counter() - start)
    return result


def show(name: str, times: list[float], unit: float = 1e3, suffix: str = "ms") -> float:
    best = min(times)
    print(f"  {name:<50} {best * unit:9.2f} {suffix}  [median {statistics.median(times) * unit:.2f}]")
    return best


def write_synthetic_mnist(root: Path) -> None:
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    # torchvision needs all four files, uncompressed; the test split is small.
    for prefix, count in (("train", N_IMAGES), ("t10k", 1_000)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, size=count, dtype=np.uint8))


def epoch_benchmark(root: Path, repeats: int, torchvision_epochs: int) -> None:
    print(f"One shuffled epoch, {N_IMAGES:,} images, batch {BATCH}:")
    dataset = MNIST(root, train=True)
    # The floor works on in-memory copies (uint8 labels, as in the file); the reference on the maps.
    images, labels = np.array(dataset.data), dataset.targets.astype(np.uint8)
    floor_rng = np.random.default_rng(0)

    def floor_epoch() -> None:
        order = floor_rng.permutation(N_IMAGES)
        for start in range(0, N_IMAGES, BATCH):
            index = order[start : start + BATCH]
            images[index], labels[index].astype(np.int64)

    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, seed=0)

    def reference_epoch() -> None:
        for _batch in loader:
            pass

    # Interleaved, so that a burst of load elsewhere hits both alike.
    floor_times: list[float] = []
    reference_times: list[float] = []
    for _ in range(repeats):
        floor_times += timings(floor_epoch, 1)
        reference_times += timings(reference_epoch, 1)
    floor = show("NumPy floor", floor_times)
    reference = show("reference MNIST + DataLoader", reference_times)

    vision = None
    try:
        import torch.utils.data
        import torchvision
        from torchvision.transforms import PILToTensor
    except ImportError:
        print("  torchvision MNIST + torch DataLoader                skipped: torchvision not installed")
    else:
        tv_dataset = torchvision.datasets.MNIST(str(root), train=True, transform=PILToTensor())
        tv_loader = torch.utils.data.DataLoader(tv_dataset, batch_size=BATCH, shuffle=True)

        def torchvision_epoch() -> None:
            for _batch in tv_loader:
                pass

        vision = show(
            "torchvision MNIST(PILToTensor) + torch DataLoader",
            timings(torchvision_epoch, torchvision_epochs),
        )

    print(f"  reference / floor: {reference / floor:.2f}x (goal <= 1.5x)")
    if vision is not None:
        print(
            f"  torchvision / reference: {vision / reference:.0f}x (the reference's speed-up; goal >= 100x)"
        )


def linear_benchmark(repeats: int) -> None:
    print("Linear(784 -> 512) forward + backward, (256, 784) float32:")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 784), dtype=np.float32)
    grad = rng.standard_normal((256, 512), dtype=np.float32)
    layer = Linear(784, 512, rng=rng)

    def reference_fwd_bwd() -> None:
        layer.zero_grad()
        layer(x)
        layer.backward(grad)

    try:
        import torch
    except ImportError:
        show("reference", timings(reference_fwd_bwd, repeats * 20))
        print("  torch.nn.Linear                                    skipped: torch not installed")
        return
    torch_layer = torch.nn.Linear(784, 512)
    with torch.no_grad():
        torch_layer.weight.copy_(torch.from_numpy(layer.weight.data))
        torch_layer.bias.copy_(torch.from_numpy(layer.bias.data))  # type: ignore[union-attr]
    tx = torch.from_numpy(x).requires_grad_(True)
    tgrad = torch.from_numpy(grad)

    def torch_fwd_bwd() -> None:
        torch_layer.zero_grad(set_to_none=True)
        tx.grad = None
        torch_layer(tx).backward(tgrad)

    for step in (reference_fwd_bwd, torch_fwd_bwd):  # warm-up
        timings(step, 5)
    reference_times: list[float] = []
    torch_times: list[float] = []
    for _ in range(repeats * 4):
        reference_times += timings(reference_fwd_bwd, 5)
        torch_times += timings(torch_fwd_bwd, 5)
    reference = show("reference Linear", reference_times, 1e6, "us")
    torch_time = show("torch.nn.Linear", torch_times, 1e6, "us")
    print(f"  reference / torch: {reference / torch_time:.2f}x (goal <= 1.1x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--torchvision-epochs", type=int, default=1)
    args = parser.parse_args()
    threads = {name: os.environ.get(name, "default") for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    print(f"CPU cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}, NumPy {np.__version__}")
    print(f"threads: {threads}")
    with tempfile.TemporaryDirectory() as folder:
        write_synthetic_mnist(Path(folder))
        epoch_benchmark(Path(folder), args.repeats, args.torchvision_epochs)
    linear_benchmark(args.repeats)


if __name__ == "__main__":
    main()
