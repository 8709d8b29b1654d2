"""Hand-written, correct implementations of each protocol, in plain Python and NumPy.

They serve twice: ``test_correct_objects`` checks that every check passes on them (so the suite does
not cry wolf), and the mutants in ``mutants/`` subclass them and break exactly one thing each (so a
mutant's failure can only come from that one change).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

# ----------------------------------------------------------------------------------------------------
# map-style datasets


class Points:
    """A map-style dataset of ``(features: float32[3], label: int)`` samples.

    Small on purpose: with 10 samples every index is checked, not a sample of them.
    """

    def __init__(self, n: int = 10) -> None:
        self.features = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
        self.labels = [i % 3 for i in range(n)]

    def __len__(self) -> int:
        return len(self.features)

    def _check_index(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} samples")
        return index

    def __getitem__(self, index: int) -> tuple[np.ndarray[Any, Any], int]:
        index = self._check_index(index)
        return self.features[index].copy(), self.labels[index]


class BatchedPoints(Points):
    """Points with a ``__getitems__`` that fetches a whole batch with one fancy-indexing read."""

    def __getitems__(self, indices: list[int]) -> list[tuple[np.ndarray[Any, Any], int]]:
        rows = self.features[np.asarray(indices, dtype=np.intp)]  # a copy: fancy indexing
        return [(row, self.labels[i]) for row, i in zip(rows, indices, strict=True)]


class NoisyPoints(Points):
    """Randomised augmentation: must be declared ``deterministic=False``."""

    def __getitem__(self, index: int) -> tuple[np.ndarray[Any, Any], int]:
        features, label = super().__getitem__(index)
        return features + np.random.normal(0.0, 0.1, size=3).astype(np.float32), label


# ----------------------------------------------------------------------------------------------------
# iterable-style datasets


class PointStream:
    """An iterable-style dataset: ``__iter__`` is a generator function, so each call is a new pass."""

    def __init__(self, n: int = 10) -> None:
        self.n = n

    def _item(self, i: int) -> tuple[np.ndarray[Any, Any], int]:
        return np.full(3, i, dtype=np.float32), i % 3

    def __iter__(self) -> Iterator[tuple[np.ndarray[Any, Any], int]]:
        for i in range(self.n):
            yield self._item(i)


class SizedPointStream(PointStream):
    """An iterable-style dataset that also knows its length."""

    def __len__(self) -> int:
        return self.n


class EndlessCounter:
    """An endless stream of ints (declare ``infinite=True``)."""

    def __iter__(self) -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1


# ----------------------------------------------------------------------------------------------------
# collate functions


def numpy_collate(samples: list[Any]) -> Any:
    """Batch samples like ``default_collate``, with NumPy: arrays and numbers are stacked, mappings
    keep their keys, namedtuples their type, tuples and lists their arity."""
    first = samples[0]
    if isinstance(first, Mapping):
        return type(first)({key: numpy_collate([s[key] for s in samples]) for key in first})
    if isinstance(first, tuple) and hasattr(type(first), "_fields"):
        return type(first)(*(numpy_collate(list(field)) for field in zip(*samples, strict=True)))
    if isinstance(first, (tuple, list)):
        return type(first)(numpy_collate(list(field)) for field in zip(*samples, strict=True))
    return np.stack([np.asarray(s) for s in samples])


class LabelledImage(NamedTuple):
    image: np.ndarray[Any, Any]
    label: int


# ----------------------------------------------------------------------------------------------------
# loaders


class BatchLoader:
    """A loader over a map-style dataset, exposing what torch's DataLoader exposes (dataset,
    batch_size, drop_last, collate_fn) so that the batch-accounting checks apply to it."""

    def __init__(
        self,
        dataset: Sequence[Any],
        batch_size: int = 4,
        *,
        drop_last: bool = False,
        collate_fn: Callable[[list[Any]], Any] = numpy_collate,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.collate_fn = collate_fn
        self.shuffle = False

    def _starts(self) -> range:
        n = len(self.dataset)
        end = n - n % self.batch_size if self.drop_last else n
        return range(0, end, self.batch_size)

    def _batch(self, start: int) -> Any:
        stop = min(start + self.batch_size, len(self.dataset))
        return self.collate_fn([self.dataset[i] for i in range(start, stop)])

    def __iter__(self) -> Iterator[Any]:
        for start in self._starts():
            yield self._batch(start)

    def __len__(self) -> int:
        n, size = len(self.dataset), self.batch_size
        return n // size if self.drop_last else math.ceil(n / size)


# ----------------------------------------------------------------------------------------------------
# samplers


class SeededShuffleSampler:
    """A shuffling sampler: the order follows from ``seed`` and the epoch (``set_epoch``), as with
    torch's DistributedSampler."""

    def __init__(self, data_source: Sequence[Any], seed: int = 0) -> None:
        self.data_source = data_source
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        order = np.random.default_rng(self.seed + self.epoch).permutation(len(self.data_source))
        return iter(order.tolist())  # tolist(): Python ints

    def __len__(self) -> int:
        return len(self.data_source)


class EndlessShuffles:
    """An endless stream of shuffled epochs, as detectron2's TrainingSampler (declare ``infinite=True``)."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed = n, seed

    def _epoch(self, rng: np.random.Generator) -> list[int]:
        order: list[int] = rng.permutation(self.n).tolist()
        return order

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng(self.seed)
        while True:
            yield from self._epoch(rng)


# ----------------------------------------------------------------------------------------------------
# callables and modules (NumPy stand-ins for torch.nn)


class Affine:
    """A CallableModule without modes: ``y = x @ weight.T + bias``."""

    def __init__(self, in_features: int = 3, out_features: int = 2) -> None:
        rng = np.random.default_rng(0)
        self.weight = rng.normal(size=(out_features, in_features))
        self.bias = rng.normal(size=out_features)

    def forward(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return x @ self.weight.T + self.bias

    def __call__(self, *args: Any) -> Any:
        return self.forward(*args)


class Parameter:
    """A parameter: values in ``data`` (kept in place when loaded) and a gradient in ``grad``."""

    def __init__(self, data: np.ndarray[Any, Any]) -> None:
        self.data = np.array(data, dtype=np.float64)
        self.grad: np.ndarray[Any, Any] | None = None


class NumpyModule:
    """A minimal nn.Module in NumPy: parameters and child modules are found among the attributes,
    in assignment order; names are dotted paths, as torch's."""

    def __init__(self) -> None:
        self.training = True

    def __call__(self, *args: Any) -> Any:
        return self.forward(*args)

    def forward(self, *args: Any) -> Any:
        raise NotImplementedError

    def named_children(self) -> Iterator[tuple[str, NumpyModule]]:
        for name, value in vars(self).items():
            if isinstance(value, NumpyModule):
                yield name, value

    def _walk(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Every parameter once (a shared one under its first name), with its dotted name."""
        seen: set[int] = set()
        for name, parameter in self._walk_all(prefix):
            if id(parameter) not in seen:
                seen.add(id(parameter))
                yield name, parameter

    def _walk_all(self, prefix: str) -> Iterator[tuple[str, Parameter]]:
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child._walk_all(f"{prefix}{name}.")

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        return self._walk()

    def parameters(self) -> Iterator[Parameter]:
        for _, parameter in self._walk():
            yield parameter

    def train(self, mode: bool = True) -> NumpyModule:
        self.training = mode
        for _, child in self.named_children():
            child.train(mode)
        return self

    def eval(self) -> NumpyModule:
        return self.train(False)

    def _state_names(self) -> list[str]:
        return [name for name, _ in self._walk()]

    def state_dict(self) -> dict[str, np.ndarray[Any, Any]]:
        parameters = dict(self._walk())
        return {name: parameters[name].data.copy() for name in self._state_names()}

    def _check_keys(self, state: Mapping[str, Any], strict: bool) -> tuple[list[str], list[str]]:
        own = set(self._state_names())
        missing, unexpected = sorted(own - set(state)), sorted(set(state) - own)
        if strict and (missing or unexpected):
            raise RuntimeError(f"missing keys {missing}, unexpected keys {unexpected}")
        return missing, unexpected

    def load_state_dict(
        self, state: Mapping[str, Any], /, strict: bool = True
    ) -> tuple[list[str], list[str]]:
        missing, unexpected = self._check_keys(state, strict)
        parameters = dict(self._walk())
        for name in self._state_names():
            if name in state:
                np.copyto(parameters[name].data, state[name])
        return missing, unexpected

    def zero_grad(self) -> None:
        for parameter in self.parameters():
            parameter.grad = None


class Linear(NumpyModule):
    def __init__(self, in_features: int, out_features: int, seed: int = 0) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)
        bound = 1 / math.sqrt(in_features)
        self.weight = Parameter(rng.uniform(-bound, bound, size=(out_features, in_features)))
        self.bias = Parameter(rng.uniform(-bound, bound, size=out_features))

    def forward(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return x @ self.weight.data.T + self.bias.data


class ReLU(NumpyModule):
    def forward(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.maximum(x, 0.0)


class Dropout(NumpyModule):
    """Zeroes a random fraction ``p`` of the values in training mode; the identity in eval mode."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = p
        self.rng = np.random.default_rng(0)

    def forward(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if not self.training or self.p == 0:
            return x
        keep = self.rng.random(x.shape) >= self.p
        return np.where(keep, x / (1 - self.p), 0.0)


class MLP(NumpyModule):
    """Linear -> ReLU -> Dropout -> Linear: children, nested parameters, and a mode that matters."""

    def __init__(self, in_features: int = 3, hidden: int = 16, out_features: int = 2, p: float = 0.5) -> None:
        super().__init__()
        self.fc1 = Linear(in_features, hidden, seed=1)
        self.act = ReLU()
        self.drop = Dropout(p)
        self.fc2 = Linear(hidden, out_features, seed=2)

    def forward(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return self.fc2(self.drop(self.act(self.fc1(x))))


class TiedAutoencoder(NumpyModule):
    """The decoder reuses the encoder's weight (weight tying): one parameter, reachable twice."""

    def __init__(self, features: int = 3, code: int = 2) -> None:
        super().__init__()
        self.encoder = Linear(features, code, seed=3)
        self.decoder = Linear(code, features, seed=4)
        self.decoder.weight = self.encoder.weight  # shared, used transposed below

    def forward(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        code = x @ self.encoder.weight.data.T + self.encoder.bias.data
        return code @ self.decoder.weight.data + self.decoder.bias.data


def mlp_inputs() -> tuple[np.ndarray[Any, Any]]:
    """example_inputs for the NumPy modules: one batch of 4 rows of 3 features."""
    return (np.linspace(-1.0, 1.0, 12).reshape(4, 3),)
