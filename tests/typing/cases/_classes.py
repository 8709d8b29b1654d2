"""Plain classes (no torch) that implement exactly the members of a protocol, or all but one.

Method bodies are trivial: these classes exist to be type-checked and ``isinstance``-checked.
"""

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, SupportsIndex, overload

from typing_extensions import Self

# --- CallableModule and Module: one mixin per member, so that a class can lack exactly one. ---------


class _Forward:
    def forward(self, x: int) -> int:
        return x + 1


class _Call:
    def __call__(self, x: int) -> int:
        return x + 1


class _Training:
    training: bool = True


class _Train:
    def train(self, mode: bool = True) -> Self:
        return self


class _Eval:
    def eval(self) -> Self:
        return self


class _Parameters:
    def parameters(self) -> list[float]:
        return []


class _NamedParameters:
    def named_parameters(self) -> list[tuple[str, float]]:
        return []


class _StateDict:
    def state_dict(self) -> dict[str, Any]:
        return {}


class _LoadStateDict:
    def load_state_dict(self, state: Mapping[str, Any], /, strict: bool = True) -> None:
        pass


class _ZeroGrad:
    def zero_grad(self) -> None:
        pass


class PlainCallable(_Forward, _Call):
    """``forward`` and ``__call__``, nothing else."""


class CallableWithoutCall(_Forward):
    """A class with ``forward`` but no ``__call__``."""


class CallableWithoutForward(_Call):
    """A callable without ``forward`` (like any plain function)."""


class PlainModule:
    """Every ``Module`` member, written out, with ``training`` an instance attribute (as in torch)."""

    def __init__(self) -> None:
        self.training = True

    def forward(self, x: float) -> float:
        return 2 * x

    def __call__(self, x: float) -> float:
        return self.forward(x)

    def train(self, mode: bool = True) -> Self:
        self.training = mode
        return self

    def eval(self) -> Self:
        return self.train(False)

    def parameters(self) -> Iterator[float]:
        yield 2.0

    def named_parameters(self) -> Iterator[tuple[str, float]]:
        yield "scale", 2.0

    def state_dict(self) -> dict[str, float]:
        return {"scale": 2.0}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> None:
        pass

    def zero_grad(self, set_to_none: bool = True) -> None:
        pass


class MixinModule(
    _Forward, _Call, _Training, _Train, _Eval, _Parameters, _NamedParameters, _StateDict, _LoadStateDict, _ZeroGrad
):
    """Every ``Module`` member, from the mixins."""


# fmt: off
class ModuleWithoutForward(_Call, _Training, _Train, _Eval, _Parameters, _NamedParameters, _StateDict, _LoadStateDict, _ZeroGrad): ...
class ModuleWithoutCall(_Forward, _Training, _Train, _Eval, _Parameters, _NamedParameters, _StateDict, _LoadStateDict, _ZeroGrad): ...
class ModuleWithoutTraining(_Forward, _Call, _Train, _Eval, _Parameters, _NamedParameters, _StateDict, _LoadStateDict, _ZeroGrad): ...
class ModuleWithoutTrain(_Forward, _Call, _Training, _Eval, _Parameters, _NamedParameters, _StateDict, _LoadStateDict, _ZeroGrad): ...
class ModuleWithoutEval(_Forward, _Call, _Training, _Train, _Parameters, _NamedParameters, _StateDict, _LoadStateDict, _ZeroGrad): ...
class ModuleWithoutParameters(_Forward, _Call, _Training, _Train, _Eval, _NamedParameters, _StateDict, _LoadStateDict, _ZeroGrad): ...
class ModuleWithoutNamedParameters(_Forward, _Call, _Training, _Train, _Eval, _Parameters, _StateDict, _LoadStateDict, _ZeroGrad): ...
class ModuleWithoutStateDict(_Forward, _Call, _Training, _Train, _Eval, _Parameters, _NamedParameters, _LoadStateDict, _ZeroGrad): ...
class ModuleWithoutLoadStateDict(_Forward, _Call, _Training, _Train, _Eval, _Parameters, _NamedParameters, _StateDict, _ZeroGrad): ...
class ModuleWithoutZeroGrad(_Forward, _Call, _Training, _Train, _Eval, _Parameters, _NamedParameters, _StateDict, _LoadStateDict): ...
# fmt: on


class _AllButTrain(_Forward, _Call, _Training, _Eval, _Parameters, _NamedParameters, _StateDict, _LoadStateDict, _ZeroGrad):
    pass


class ModuleTrainTakesStr(_AllButTrain):
    """``train`` does not accept a ``bool``."""

    def train(self, mode: str = "train") -> Self:
        return self


class ModuleTrainWithoutMode(_AllButTrain):
    """``train()`` cannot be called with a mode."""

    def train(self) -> Self:
        return self


class ModuleTrainReturnsNone(_AllButTrain):
    """``train`` must return the module (``model.train().to(device)`` is a common chain)."""

    def train(self, mode: bool = True) -> None:
        pass


class ModuleTrainingIsInt(_Forward, _Call, _Train, _Eval, _Parameters, _NamedParameters, _StateDict, _LoadStateDict, _ZeroGrad):
    training: int = 1


class ModuleLoadStateDictWithoutStrict(_Forward, _Call, _Training, _Train, _Eval, _Parameters, _NamedParameters, _StateDict, _ZeroGrad):
    def load_state_dict(self, state: Mapping[str, Any], /) -> None:
        pass


class ModuleStateDictReturnsList(_Forward, _Call, _Training, _Train, _Eval, _Parameters, _NamedParameters, _LoadStateDict, _ZeroGrad):
    def state_dict(self) -> list[float]:
        return []


class ModuleZeroGradNeedsArgument(_Forward, _Call, _Training, _Train, _Eval, _Parameters, _NamedParameters, _StateDict, _LoadStateDict):
    def zero_grad(self, set_to_none: bool) -> None:
        pass


# --- MapDataset ------------------------------------------------------------------------------------


class PlainMapDataset:
    """Three ``int`` samples; the index parameter need not be positional-only."""

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> int:
        if not 0 <= index < 3:
            raise IndexError(index)
        return index


class StrMapDataset:
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: SupportsIndex, /) -> str:
        return ["a", "b"][index]


class BatchedMapDataset(PlainMapDataset):
    """With the optional ``__getitems__`` (not a protocol member)."""

    def __getitems__(self, indices: list[int], /) -> list[int]:
        return [self[i] for i in indices]


class SequenceDataset(Sequence[int]):
    """A ``collections.abc.Sequence``: overloaded ``__getitem__`` (int and slice)."""

    def __len__(self) -> int:
        return 3

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> list[int]: ...
    def __getitem__(self, index: int | slice) -> int | list[int]:
        return list(range(3))[index]


class MapDatasetWithoutLen:
    def __getitem__(self, index: int) -> int:
        return index


class MapDatasetWithoutGetitem:
    def __len__(self) -> int:
        return 3


class GetitemTakesStr:
    """A lookup table keyed by name, not a map-style dataset."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, key: str) -> int:
        return 0


class GetitemTakesTwoIndices:
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int, other: int) -> int:
        return 0


class LenReturnsFloat:
    def __len__(self) -> float:
        return 3.0

    def __getitem__(self, index: int) -> int:
        return index


# --- IterableDataset, Sampler, Loader --------------------------------------------------------------


class PlainIterable:
    """Iterates over ``0, 1, 2`` afresh at each ``iter()``."""

    def __iter__(self) -> Iterator[int]:
        yield from range(3)


class StrIterable:
    def __iter__(self) -> Iterator[str]:
        return iter(["a", "b"])


class IterReturnsList:
    """``__iter__`` must return an iterator; a list is only an iterable."""

    def __iter__(self) -> list[int]:
        return [0, 1, 2]


class IteratorWithoutIter:
    """Has ``__next__`` but no ``__iter__``: neither a dataset nor a loader."""

    def __next__(self) -> int:
        raise StopIteration


class PlainSampler:
    """Yields the indices of a pass, in order; ``__len__`` (optional) is given."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.n))

    def __len__(self) -> int:
        return self.n


class PlainBatchSampler:
    """Yields lists of indices; no ``__len__`` (an unsized sampler)."""

    def __iter__(self) -> Iterator[list[int]]:
        yield [0, 1]
        yield [2]


class LenOnly:
    """``__len__`` without ``__iter__``."""

    def __len__(self) -> int:
        return 0


class PlainLoader:
    """Two batches of samples, each a list of ``int``, with ``__len__`` (optional)."""

    def __iter__(self) -> Iterator[list[int]]:
        return iter([[0, 1], [2]])

    def __len__(self) -> int:
        return 2


# --- CollateFn -------------------------------------------------------------------------------------


def collate_ints(samples: list[int]) -> list[int]:
    return list(samples)


def collate_sequence(batch: Sequence[int]) -> int:
    """Takes any sequence: a ``CollateFn[int, int]`` (a parameter type is contravariant)."""
    return sum(batch)


def collate_anything(samples: list[Any]) -> Any:
    return samples


def collate_one(sample: int) -> int:
    """Takes one sample, not a list of samples."""
    return sample


def collate_two(samples: list[int], device: str) -> list[int]:
    """Needs a second argument that ``DataLoader`` does not give."""
    return samples


def collate_keyword_only(*, samples: list[int]) -> list[int]:
    return samples


class PlainCollate:
    """A callable object as collate function."""

    def __call__(self, samples: list[int], /) -> tuple[int, ...]:
        return tuple(samples)


class NotCallable:
    pass


class Forwarding:
    """A proxy that forwards every attribute to its target through ``__getattr__``.

    mypy takes it for every protocol (a documented limit); at run time ``len(proxy)`` and ``proxy[0]``
    fail (special methods are looked up on the type), and ``isinstance`` says True on Python < 3.12
    (``hasattr`` goes through ``__getattr__``), False from 3.12 (``inspect.getattr_static``).
    """

    def __init__(self, target: object) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)
