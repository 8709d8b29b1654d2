"""torch-based mutants, each with one bug. Imported only when torch is installed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from torchcontract import protocols

from ...workers import fixtures
from . import Mutant


def _seeded(build: Callable[[], object]) -> Callable[[], object]:
    """Builds the object from a fixed seed, without touching the caller's global RNG."""

    def factory() -> object:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return build()

    return factory


def _inputs() -> tuple[torch.Tensor]:
    return (torch.linspace(-1.0, 1.0, 12).reshape(4, 3),)


# -- modules ------------------------------------------------------------------------------------------


class FunctionalDropoutAlwaysOn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.out = nn.Linear(3, 16), nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.dropout(F.relu(self.hidden(x)), p=0.5))  # training=self.training forgotten


class CallCastsToDouble(nn.Linear):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return super().__call__(*args, **kwargs).double()  # "for a stable loss": forward disagrees


def _in_place_relu_first() -> nn.Module:
    return nn.Sequential(nn.ReLU(inplace=True), nn.Linear(3, 2))  # overwrites the caller's tensor


class TrainOverrideForgetsReturn(nn.Sequential):
    def train(self, mode: bool = True) -> Any:
        super().train(mode)  # no "return": m.eval() is None


def _train_override() -> nn.Module:
    return TrainOverrideForgetsReturn(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


class FreezesBackboneButDropsMode(nn.Module):
    """Overrides train() to keep a frozen backbone in eval mode, and forgets to pass ``mode`` on."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone, self.head = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def train(self, mode: bool = True) -> FreezesBackboneButDropsMode:
        super().train()  # mode not passed on: m.eval() puts the head in training mode
        self.backbone.eval()
        return self


class LenientLoadStateDict(nn.Linear):
    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        return super().load_state_dict(state_dict, strict=False, assign=assign)  # "partial checkpoints"


class ToForgetsReturn(nn.Linear):
    def to(self, *args: Any, **kwargs: Any) -> Any:
        super().to(*args, **kwargs)  # no "return self": m = m.to(device) gives None


class FusedCudaNormEpsilon(nn.Module):
    """A normalisation whose fused CUDA path uses eps=1e-2 where the CPU path uses 1e-5."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = 1e-2 if x.is_cuda else 1e-5
        return self.scale * (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps)


class LayersInPlainList(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = [nn.Linear(3, 4), nn.Linear(4, 2)]  # a plain list: .to(), parameters() miss them

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[1](F.relu(self.layers[0](x)))


class ScaleAsPlainAttribute(nn.Module):
    """A constant per-output scale kept as a plain tensor attribute instead of a buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.scale = torch.tensor([2.0, 0.5])  # not register_buffer: m.to(device) leaves it behind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * self.scale


class NumpyExtraState(nn.Linear):
    """Keeps a label map in the checkpoint as a NumPy array (torch.load(weights_only=True) rejects it)."""

    def __init__(self) -> None:
        super().__init__(3, 2)
        self.classes = np.array([3, 7])

    def get_extra_state(self) -> Any:
        return self.classes

    def set_extra_state(self, state: Any) -> None:
        self.classes = np.array(state)


class FittedNonPersistentMean(nn.Module):
    """Centres its inputs by a mean fitted on data, kept in a non-persistent buffer (never saved)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.register_buffer("mean", torch.zeros(3), persistent=False)

    def fit(self, x: torch.Tensor) -> FittedNonPersistentMean:
        self.mean.copy_(x.mean(0))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x - self.mean)


def _fitted_mean() -> nn.Module:
    return FittedNonPersistentMean().fit(torch.linspace(0.0, 3.0, 12).reshape(4, 3))


class FittedAttributeMean(nn.Module):
    """Centres its inputs by a mean fitted on data, kept in a plain 0-dim tensor attribute: never saved
    (a 0-dim CPU tensor works on every device, so only the state dict misses it)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.mean = torch.tensor(0.0)

    def fit(self, x: torch.Tensor) -> FittedAttributeMean:
        self.mean = x.mean()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x - self.mean)


def _fitted_attribute_mean() -> nn.Module:
    return FittedAttributeMean().fit(torch.linspace(0.0, 3.0, 12).reshape(4, 3))


class CallSkipsHooks(nn.Linear):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)  # "faster": skips _call_impl, so no hook ever runs


class AuxiliaryHeadNeverUsed(nn.Module):
    """An auxiliary head registered in __init__ and never called: DDP's next iteration raises."""

    def __init__(self) -> None:
        super().__init__()
        self.body, self.aux_head = nn.Linear(3, 4), nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # the auxiliary loss was removed, the head was not


class CastsInputToFloat(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float())  # "safe under AMP": breaks m.double()


def _flattening_head() -> nn.Module:
    return FlattenWithView(6, 2)


class FlattenWithView(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.view(x.shape[0], -1))  # .view, not .reshape: needs contiguous input


# -- data ---------------------------------------------------------------------------------------------


class StackingGetitems(TensorDataset):
    def __getitems__(self, indices: list[int]) -> Any:
        return torch.stack([self.tensors[0][i] for i in indices])  # a tensor, not a list of samples


def _stacking_getitems() -> Dataset[Any]:
    return StackingGetitems(torch.arange(30.0).reshape(10, 3))


class SharedReaderStream(IterableDataset[torch.Tensor]):
    def __init__(self) -> None:
        self.reader = (torch.full((3,), float(i)) for i in range(10))  # opened once, in __init__

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self.reader


class SamplesRequireGrad:
    """Samples computed through a learnable scale (the scale's autograd graph goes with them)."""

    def __init__(self) -> None:
        self.features = torch.arange(24.0).reshape(8, 3)
        self.scale = torch.ones(3, requires_grad=True)

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -8 <= index < 8:
            raise IndexError(index)
        return self.features[index] * self.scale  # not under torch.no_grad()


class StreamItemsCarryLambda(IterableDataset[dict[str, Any]]):
    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(6):
            yield {"x": torch.full((2,), float(i)), "decode": lambda raw: raw}


class RaggedCrops:
    """Crops keep the image's own size: most are 32 wide, one in seven is 28."""

    def __len__(self) -> int:
        return 20

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -20 <= index < 20:
            raise IndexError(index)
        width = 28 if index % 7 == 0 else 32
        return {"image": np.full((3, width), float(index), dtype=np.float32), "label": index % 3}


class NumpyLengthsAndNoWeight:
    """Samples as pytorch_forecasting's TimeSeriesDataSet gives them: NumPy scalars (which
    default_collate takes) beside a None for the weight it was not given (which it does not)."""

    def __len__(self) -> int:
        return 20

    def __getitem__(self, index: int) -> tuple[dict[str, Any], tuple[np.ndarray, None]]:
        if not -20 <= index < 20:
            raise IndexError(index)
        index %= 20
        lengths = {"decoder_length": np.int64(2), "time": np.float32(index)}
        return lengths, (np.full(2, float(index), dtype=np.float32), None)


class BucketBatchSampler:
    """Batches indices of similar length; its __len__ forgot the last partial bucket."""

    def __init__(self, n: int, batch_size: int) -> None:
        self.n, self.batch_size = n, batch_size

    def __iter__(self) -> Iterator[list[int]]:
        for start in range(0, self.n, self.batch_size):
            yield list(range(start, min(start + self.batch_size, self.n)))

    def __len__(self) -> int:
        return self.n // self.batch_size


def _bucketing_loader() -> DataLoader[Any]:
    dataset = TensorDataset(torch.arange(10.0))
    return DataLoader(dataset, batch_sampler=BucketBatchSampler(10, 4))


class RandpermSampler:
    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed = n, seed

    def __iter__(self) -> Iterator[Any]:
        generator = torch.Generator().manual_seed(self.seed)
        return iter(torch.randperm(self.n, generator=generator))  # 0-d tensors, not ints

    def __len__(self) -> int:
        return self.n


def concatenating_collate(samples: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(samples)  # cat, not stack: 4 samples of shape (3,) become one row of 12


class SizedShardedStream(IterableDataset[torch.Tensor]):
    """A sized stream sharded item by item across workers: with 10 items, batch_size=4 and 2 workers each
    worker ends its 5 items on a partial batch, so the loader yields 4 batches where len(loader) says 3."""

    def __init__(self, n: int = 10) -> None:
        self.n = n

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for i in range(worker, self.n, workers):
            yield torch.full((3,), float(i))

    def __len__(self) -> int:
        return self.n


@dataclass
class ForgetfulBatch:
    """A custom batch whose pin_memory() pins in place and forgets `return self`."""

    features: torch.Tensor
    labels: torch.Tensor

    def pin_memory(self) -> None:
        self.features = self.features.pin_memory()
        self.labels = self.labels.pin_memory()


def forgetful_batch(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> ForgetfulBatch:
    return ForgetfulBatch(torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples]))


def _pairs(n: int = 10) -> TensorDataset:
    return TensorDataset(torch.arange(n * 3.0).reshape(n, 3), torch.arange(n) % 3)


class FlatWeightsRefreshedInApply(nn.Module):
    """Keeps its weights in a tuple for a fused call, refreshed after .to() (as nn.RNNBase once did):
    torch.func.functional_call swaps the registered tensors, which the tuple does not see."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self._refresh()

    def _refresh(self) -> None:
        self._flat = (self.linear.weight, self.linear.bias)

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        result = super()._apply(fn, recurse)
        self._refresh()
        return result

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, *self._flat)


class PositionalScaleWithoutReset(nn.Module):
    """A table computed in __init__ into a non-persistent buffer, with no reset_parameters(): built on
    the meta device and allocated with to_empty, nothing ever fills it in."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.register_buffer("frequencies", torch.arange(1.0, 3.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * self.frequencies


class CompileOnlyPathDropsBias(nn.Linear):
    """A simplified path taken only under compilation, which forgets the bias."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return x @ self.weight.T
        return super().forward(x)


class LoadStateDictDropsAssign(nn.Linear):
    """Renames a legacy checkpoint's keys, then calls super().load_state_dict without passing assign on:
    loaded into a module built on meta, its tensors stay on meta."""

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        upgraded = {key.replace("w.", "weight."): value for key, value in state_dict.items()}
        return super().load_state_dict(upgraded, strict)


def gradient_scaled_when_compiling(factor: float) -> Any:
    """An autograd Function: the identity, whose gradient is multiplied by ``factor`` under
    torch.compiler.is_compiling() (a "compile-friendly" backward, wrong)."""

    class ScaledWhenCompiling(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            return x.clone()

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            return grad * factor if torch.compiler.is_compiling() else grad

    return ScaledWhenCompiling


_GradientDoubledWhenCompiling = gradient_scaled_when_compiling(2.0)


class CompiledBackwardDiffers(nn.Linear):
    """The same forward compiled or not; a custom backward that takes another path under compilation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GradientDoubledWhenCompiling.apply(super().forward(x))


class _SiLUWithWrongBackward(torch.autograd.Function):
    """x * sigmoid(x), with a hand-written backward that forgets the product rule's second term."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.sigmoid(x)  # missing + x * sigmoid(x) * (1 - sigmoid(x))


class FusedSiLUWrongBackward(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SiLUWithWrongBackward.apply(super().forward(x))


class BranchesOnTensorValue(nn.Linear):
    """A Python branch on a tensor's value: torch.export cannot trace it (torch.cond can)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum().item() > 0:
            return super().forward(x)
        return super().forward(-x)


class _DeviceDependentBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad * 2 if grad.is_cuda else grad  # "a faster kernel" with a wrong gradient


class CudaBackwardDiffers(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _DeviceDependentBackward.apply(super().forward(x))


class ExtraReprReadsMissingAttribute(nn.Linear):
    """extra_repr names an attribute that __init__ never sets: print(model) raises."""

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale}"


class DecodesIntoOneTensor(Dataset[torch.Tensor]):
    """Decodes every sample into one preallocated tensor and returns it."""

    def __init__(self, n: int = 10) -> None:
        self.data = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
        self._buf = torch.empty(3)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self.data):
            raise IndexError(index)
        return self._buf.copy_(self.data[index])


def drops_last_row(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """default_collate, then an off-by-one slice: every batch loses its last sample."""
    features, labels = torch.utils.data.default_collate(samples)
    return [features[:-1], labels[:-1]]


class PairwiseDistancesBySqrt(nn.Module):
    """Pairwise distances of the embeddings as sqrt(sum(d ** 2)): the diagonal is sqrt(0) = 0, finite,
    but sqrt's derivative there is infinite, and times d = 0 it is NaN (torch.cdist handles 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embeddings = self.fc(x)
        differences = embeddings[:, None, :] - embeddings[None, :, :]
        return (differences**2).sum(-1).sqrt()


class CallsSubmoduleForward(nn.Module):
    """Calls a submodule's forward directly: hooks registered on it (FSDP2's, checkpointing's) never run."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.out = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc.forward(x)))


class AuxiliaryHeadOnWrongFeatures(nn.Module):
    """A train-only auxiliary output computed from the wrong features: train-mode forward raises."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.out, self.aux = nn.Linear(3, 8), nn.Linear(8, 2), nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.out(torch.relu(self.hidden(x)))
        if self.training:
            y = y + self.aux(x).mean()  # meant self.aux(hidden features)
        return y


class ActivationAsLambda(nn.Module):
    """Keeps its activation as a lambda attribute: torch.save(model) and spawn cannot pickle it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.activation = lambda t: t * torch.sigmoid(t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.fc(x))


class ConvThenViewHead(nn.Module):
    """Flattens a feature map with .view(): channels-last feature maps cannot be viewed so."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(2, 3, 3), nn.Linear(3 * 3 * 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.conv(x))
        return self.head(features.view(features.size(0), -1))


def _mutant(protocol: type[Any], name: str, violates: str, bug: str, factory: Any, **fields: Any) -> Mutant:
    return Mutant(name, protocol, violates, bug, factory, needs_torch=True, **fields)


_MODULE_INPUTS = {"example_inputs": _inputs()}
MUTANTS = [
    _mutant(protocols.Module, "torch_functional_dropout_always_on", "callable_module.eval_is_deterministic",
            "F.dropout without training=self.training", _seeded(FunctionalDropoutAlwaysOn),
            kwargs=_MODULE_INPUTS, message_contains=("two calls m(*inputs) in eval mode",)),
    _mutant(protocols.CallableModule, "torch_call_casts_to_double", "callable_module.call_matches_forward",
            "__call__ casts forward's output", _seeded(lambda: CallCastsToDouble(3, 2)),
            kwargs=_MODULE_INPUTS, message_contains=("float64",)),
    _mutant(protocols.CallableModule, "torch_in_place_relu_first", "callable_module.call_preserves_inputs",
            "nn.ReLU(inplace=True) as the first layer", _seeded(_in_place_relu_first),
            kwargs=_MODULE_INPUTS, message_contains=("modified its inputs",)),
    _mutant(protocols.Module, "torch_train_override_forgets_return", "module.train_eval_set_mode",
            "an overridden train() without return", _seeded(_train_override),
            kwargs=_MODULE_INPUTS, message_contains=("returned None",)),
    _mutant(protocols.Module, "torch_train_override_drops_mode", "module.train_eval_set_mode",
            "an overridden train() calls super().train() without mode", _seeded(FreezesBackboneButDropsMode),
            kwargs=_MODULE_INPUTS, message_contains=("after m.eval(), m.training is True",)),
    _mutant(protocols.Module, "torch_lenient_load_state_dict",
            "module.load_state_dict_strict_rejects_bad_keys",
            "load_state_dict() always passes strict=False", _seeded(lambda: LenientLoadStateDict(3, 2)),
            kwargs=_MODULE_INPUTS, message_contains=("missing_keys=['weight']",)),
    _mutant(protocols.Module, "torch_to_forgets_return", "module.to_device",
            "an overridden to() without return",
            _seeded(lambda: ToForgetsReturn(3, 2)), kwargs=_MODULE_INPUTS,
            message_contains=("m.to('cpu') returned None",)),
    _mutant(protocols.Module, "torch_cuda_path_differs", "module.device_parity",
            "the CUDA path uses another epsilon", _seeded(FusedCudaNormEpsilon),
            kwargs=_MODULE_INPUTS, needs_cuda=True, message_contains=("differs from the CPU output",)),
    _mutant(protocols.MapDataset, "torch_getitems_stacks", "map_dataset.getitems_matches_getitem",
            "__getitems__ returns torch.stack(...)", _stacking_getitems,
            message_contains=("returned Tensor(float32, (9, 3)); expected a list of 9 samples",)),
    _mutant(protocols.IterableDataset, "torch_shared_reader", "iterable_dataset.new_iter_starts_new_pass",
            "__iter__ returns a reader opened in __init__", SharedReaderStream,
            message_contains=("yielded 0 items but the first yielded 10",)),
    _mutant(protocols.Loader, "torch_batch_sampler_len_too_short", "loader.len_matches_batch_count",
            "a batch_sampler's __len__ floors", _bucketing_loader,
            message_contains=("len(loader) == 2 but an epoch yielded 3 batches",)),
    _mutant(protocols.Sampler, "torch_randperm_yields_tensors", "sampler.yields_python_ints",
            "iterates torch.randperm() directly", lambda: RandpermSampler(10),
            message_contains=("of type Tensor",)),
    # -- worker processes and process groups (tests/workers/fixtures.py: workers unpickle them by name)
    _mutant(protocols.IterableDataset, "torch_unsharded_stream",
            "iterable_dataset.workers_yield_each_item_once",
            "never calls get_worker_info(): every worker yields everything", fixtures.NaiveRange,
            message_contains=("yielded 24 items (2 times as many)",)),
    _mutant(protocols.IterableDataset, "torch_stream_generator_in_init",
            "iterable_dataset.workers_draw_independent_randomness", "np.random.default_rng() in __init__",
            fixtures.NoisyStreamWithGenerator, kwargs={"deterministic": False},
            message_contains=("workers 0 and 1", "identical samples")),
    _mutant(protocols.IterableDataset, "torch_stream_run_time_state",
            "iterable_dataset.spawn_workers_yield_same_items",
            "reads a module-level registry filled at run time", fixtures.scaled_stream_by_registry,
            message_contains=("differs from item",)),
    _mutant(protocols.MapDataset, "torch_generator_in_init",
            "map_dataset.workers_draw_independent_randomness", "np.random.default_rng() in __init__",
            fixtures.NoisyWithGenerator, kwargs={"deterministic": False},
            message_contains=("workers 0 and 1", "identical samples")),
    _mutant(protocols.MapDataset, "torch_unrebuildable_error", "map_dataset.worker_errors_keep_their_type",
            "an IndexError subclass whose __init__ takes two arguments", fixtures.RaisesRichError,
            message_contains=("the caller got RuntimeError",)),
    _mutant(protocols.MapDataset, "torch_corrupt_sample_error", "map_dataset.worker_errors_keep_their_type",
            "a corrupt sample's error class takes (path, index)", fixtures.CorruptAtThree,
            kwargs={"error_index": 3}, message_contains=("ds[3] raises CorruptSampleError", "RuntimeError")),
    _mutant(protocols.MapDataset, "torch_lambda_in_sample", "map_dataset.samples_cross_process_boundary",
            "each sample carries a lambda", fixtures.LambdaInSample,
            message_contains=("ds[0]['transform'] could not be pickled",)),
    _mutant(protocols.MapDataset, "torch_ragged_crops", "map_dataset.samples_collate",
            "crops of two sizes under default_collate", RaggedCrops,
            message_contains=("stack expects each tensor to be equal size",
                              "ds[0]['image'] has shape (3, 28)")),
    _mutant(protocols.MapDataset, "torch_numpy_scalars_beside_none", "map_dataset.samples_collate",
            "a None in each sample, beside NumPy scalars that default_collate takes",
            NumpyLengthsAndNoWeight,
            message_contains=("ds[0][1][1] is None, which default_collate does not take",
                              "leave out a field that has no value")),
    _mutant(protocols.MapDataset, "torch_samples_require_grad", "map_dataset.samples_cross_process_boundary",
            "samples keep the autograd graph of a learnable scale", SamplesRequireGrad,
            message_contains=("ds[0] is a tensor that requires grad", "torch.no_grad()")),
    _mutant(protocols.IterableDataset, "torch_stream_items_carry_lambda",
            "iterable_dataset.items_cross_process_boundary", "each item carries a lambda",
            StreamItemsCarryLambda, message_contains=("list(ds)[0]['decode'] could not be pickled",)),

    _mutant(protocols.MapDataset, "torch_run_time_state", "map_dataset.spawn_workers_yield_same_samples",
            "reads a module-level registry filled at run time", fixtures.scaled_by_registry,
            message_contains=("re-imports its module",)),
    _mutant(protocols.MapDataset, "torch_epoch_in_attribute",
            "map_dataset.set_epoch_reaches_persistent_workers",
            "set_epoch stores the epoch in a plain attribute", fixtures.EpochInAttribute,
            message_contains=("yielded the items of epoch 0 again", "share_memory_")),
    _mutant(protocols.IterableDataset, "torch_stream_epoch_in_attribute",
            "iterable_dataset.set_epoch_reaches_persistent_workers",
            "set_epoch stores the epoch in a plain attribute", fixtures.StreamEpochInAttribute,
            message_contains=("yielded the items of epoch 0 again",)),
    _mutant(protocols.MapDataset, "torch_record_file_opened_in_init",
            "map_dataset.fork_workers_yield_same_samples",
            "a file opened in __init__, read sequentially without a seek: forked workers share its offset",
            fixtures.record_file, message_contains=("ds.reader (RecordReader)", "differs from ds[")),
    _mutant(protocols.Loader, "torch_loader_over_one_buffer", "loader.samples_survive_later_fetches",
            "its dataset returns one preallocated tensor for every index",
            lambda: DataLoader(DecodesIntoOneTensor(), batch_size=4),
            message_contains=("loader.dataset[0] changed after loader.dataset[1]", "sample 1 twice")),
    _mutant(protocols.Loader, "torch_loader_over_unsharded_stream", "loader.workers_yield_each_item_once",
            "an unsized stream that never calls get_worker_info(), with num_workers=2",
            lambda: DataLoader(fixtures.UnsizedNaiveRange(), batch_size=4, num_workers=2),
            message_contains=("held 24 samples (2 times as many)", "get_worker_info()")),
    _mutant(protocols.Loader, "torch_persistent_workers_miss_set_epoch",
            "loader.set_epoch_reaches_persistent_workers",
            "persistent workers over a dataset whose set_epoch sets a plain attribute",
            lambda: DataLoader(fixtures.EpochInAttribute(), batch_size=2, num_workers=2,
                               persistent_workers=True),
            message_contains=("persistent_workers=True", "loader.dataset.set_epoch(1)", "epoch 0 again")),
    _mutant(protocols.Loader, "torch_collate_drops_last_row", "loader.batches_cover_dataset",
            "a collate_fn that drops each batch's last row, under a sampler of indices",
            lambda: DataLoader(_pairs(), batch_size=4, collate_fn=drops_last_row),
            message_contains=("batch 0 of 3 holds 3 rows", "gave it 4 indices")),
    _mutant(protocols.Loader, "torch_extra_batch_on_rank_zero", "loader.ranks_yield_equal_batch_counts",
            "rank 0 yields one more batch", lambda: fixtures.extra_batch_on_rank_zero(0, 1),
            kwargs={"shards": fixtures.extra_batch_on_rank_zero, "world_size": 2},
            message_contains=("yielded [4, 3] batches",)),
    _mutant(protocols.Loader, "torch_loader_ignores_rank", "loader.ranks_cover_dataset",
            "every rank loads the whole dataset", lambda: fixtures.ignores_rank(0, 1),
            kwargs={"shards": fixtures.ignores_rank, "world_size": 2},
            message_contains=("11 beyond one copy of the dataset",)),
    _mutant(protocols.CollateFn, "torch_cat_instead_of_stack", "collate_fn.batch_has_one_row_per_sample",
            "torch.cat instead of torch.stack", lambda: concatenating_collate,
            kwargs={"example_inputs": [torch.full((3,), float(i)) for i in range(4)]},
            message_contains=("holds 12 samples", "given 4")),
    _mutant(protocols.Loader, "torch_lambda_collate_with_workers", "loader.worker_functions_pickle",
            "a lambda collate_fn with num_workers=2 (breaks under spawn and forkserver)",
            lambda: DataLoader(_pairs(), batch_size=4, num_workers=2,
                               collate_fn=lambda batch: torch.utils.data.default_collate(batch)),
            message_contains=("pickle.dumps(loader.collate_fn) raised", "forkserver")),
    _mutant(protocols.Loader, "torch_lambda_worker_init_fn", "loader.worker_functions_pickle",
            "a lambda worker_init_fn with num_workers=2",
            lambda: DataLoader(_pairs(), batch_size=4, num_workers=2, worker_init_fn=lambda worker: None),
            message_contains=("pickle.dumps(loader.worker_init_fn) raised",)),
    _mutant(protocols.Loader, "torch_sized_sharded_stream_two_workers", "loader.len_matches_batch_count",
            "a sized stream sharded item by item over 2 workers: each ends on a partial batch",
            lambda: DataLoader(SizedShardedStream(10), batch_size=4, num_workers=2),
            message_contains=("len(loader) == 3 but an epoch yielded 4 batches", "pytorch#30599")),
    _mutant(protocols.CollateFn, "torch_pin_memory_returns_none", "collate_fn.pin_memory_returns_batch",
            "a dataclass batch whose pin_memory() forgets to return", lambda: forgetful_batch,
            kwargs={"example_inputs": [(torch.zeros(3), torch.tensor(i)) for i in range(4)],
                    "transforms_samples": True},
            message_contains=("collate(samples).pin_memory() returned None", "ForgetfulBatch")),
    _mutant(protocols.Loader, "torch_pin_memory_returns_none", "loader.pin_memory_returns_batch",
            "a dataclass batch whose pin_memory() forgets to return, with pin_memory=True",
            lambda: DataLoader(_pairs(), batch_size=4, pin_memory=True, collate_fn=forgetful_batch),
            message_contains=(".pin_memory() returned None", "ForgetfulBatch")),
    # -- "True to torch" (SPEC.md, Module and CallableModule)
    _mutant(protocols.Module, "torch_layers_in_plain_list", "module.to_device",
            "nn.Linear layers kept in a plain Python list", _seeded(LayersInPlainList),
            kwargs=_MODULE_INPUTS, message_contains=("m.layers[0] (a Linear in a plain list", "meta")),
    _mutant(protocols.Module, "torch_scale_as_plain_attribute", "module.to_device",
            "a tensor the output depends on kept as a plain attribute", _seeded(ScaleAsPlainAttribute),
            kwargs={**_MODULE_INPUTS, "factory": ScaleAsPlainAttribute},
            message_contains=("m.scale (a plain tensor attribute: use register_buffer)",)),
    _mutant(protocols.Module, "torch_numpy_extra_state", "module.state_dict_round_trip",
            "get_extra_state returns a NumPy array", _seeded(NumpyExtraState), kwargs=_MODULE_INPUTS,
            message_contains=("weights_only=True", "'_extra_state' is ndarray(int64, (2,))")),
    _mutant(protocols.Module, "torch_fitted_mean_not_saved", "module.state_dict_round_trip",
            "a fitted statistic in a non-persistent buffer", _seeded(_fitted_mean),
            kwargs={**_MODULE_INPUTS, "factory": FittedNonPersistentMean},
            message_contains=("fresh.load_state_dict(m.state_dict())", "factory")),
    _mutant(protocols.Module, "torch_fitted_mean_not_saved_without_factory", "module.state_dict_round_trip",
            "a fitted statistic in a plain tensor attribute", _seeded(_fitted_attribute_mean),
            kwargs=_MODULE_INPUTS, message_contains=("clone.load_state_dict(m.state_dict())", "attributes")),
    _mutant(protocols.CallableModule, "torch_call_skips_hooks", "callable_module.call_runs_forward_once",
            "__call__ runs self.forward directly", _seeded(lambda: CallSkipsHooks(3, 2)),
            kwargs=_MODULE_INPUTS, message_contains=("forward pre-hook", "0 times")),
    # -- "Module contracts in depth" (SPEC.md, Module and CallableModule)
    _mutant(protocols.Module, "torch_parameter_never_used", "module.backward_reaches_parameters",
            "an auxiliary head registered but never called in forward", _seeded(AuxiliaryHeadNeverUsed),
            kwargs=_MODULE_INPUTS,
            message_contains=("'aux_head.weight', 'aux_head.bias' (2 of 4", "find_unused_parameters")),
    _mutant(protocols.Module, "torch_forward_casts_to_float", "module.to_dtype",
            "forward casts its input with x.float()", _seeded(lambda: CastsInputToFloat(3, 2)),
            kwargs=_MODULE_INPUTS, message_contains=("in float64) raised RuntimeError", "x.float()")),
    _mutant(protocols.CallableModule, "torch_view_needs_contiguous_input",
            "callable_module.accepts_non_contiguous_inputs", "forward flattens with .view()",
            _seeded(_flattening_head),
            kwargs={"example_inputs": (torch.linspace(-1.0, 1.0, 24).reshape(4, 3, 2),)},
            message_contains=("inputs[0] non-contiguous raised RuntimeError", ".reshape()")),
    _mutant(protocols.Module, "torch_weights_in_refreshed_tuple", "module.functional_call_matches_call",
            "weights read through a tuple refreshed in _apply", _seeded(FlatWeightsRefreshedInApply),
            kwargs=_MODULE_INPUTS,
            message_contains=("it returned m's own output", "references that functional_call does not swap")),
    _mutant(protocols.Module, "torch_table_lost_on_meta", "module.builds_on_meta_device",
            "a non-persistent buffer computed in __init__, no reset_parameters()",
            _seeded(PositionalScaleWithoutReset),
            kwargs={**_MODULE_INPUTS, "factory": PositionalScaleWithoutReset},
            message_contains=("'frequencies' still holds the uninitialised values", "reset_parameters()")),
    _mutant(protocols.Module, "torch_load_state_dict_drops_assign", "module.loads_on_meta_device_with_assign",
            "a load_state_dict override that does not pass assign= on",
            _seeded(lambda: LoadStateDictDropsAssign(3, 2)),
            kwargs={**_MODULE_INPUTS, "factory": lambda: LoadStateDictDropsAssign(3, 2)},
            message_contains=("'weight', 'bias' are still on meta", "does not pass assign=")),
    _mutant(protocols.Module, "torch_compile_only_path", "module.compile_matches_eager",
            "a path taken only under torch.compiler.is_compiling() forgets the bias",
            _seeded(lambda: CompileOnlyPathDropsBias(3, 2)), kwargs={**_MODULE_INPUTS, "compile": True},
            message_contains=("backend='eager'", "torch.compiler.is_compiling()")),
    _mutant(protocols.Module, "torch_backward_differs_when_compiling", "module.compile_gradients_match_eager",
            "a custom backward that doubles the gradient under torch.compiler.is_compiling()",
            _seeded(lambda: CompiledBackwardDiffers(3, 2)), kwargs={**_MODULE_INPUTS, "compile": True},
            message_contains=(".grad of 'weight'", "in train mode", "backend='eager'")),
    _mutant(protocols.Module, "torch_custom_backward_wrong", "module.gradients_match_finite_differences",
            "a fused SiLU whose hand-written backward forgets a term",
            _seeded(lambda: FusedSiLUWrongBackward(3, 2)),
            kwargs={**_MODULE_INPUTS, "gradcheck": True},
            message_contains=("disagree with finite differences", "numerical:", "element(s) perturbed")),
    _mutant(protocols.Module, "torch_branch_on_tensor_value", "module.export_matches_eager",
            "a Python branch on x.sum().item()", _seeded(lambda: BranchesOnTensorValue(3, 2)),
            kwargs={**_MODULE_INPUTS, "export": True},
            message_contains=("torch.export.export", "torch.cond")),
    _mutant(protocols.Module, "torch_cuda_backward_differs", "module.device_round_trip",
            "a custom backward that doubles the gradient on CUDA", _seeded(lambda: CudaBackwardDiffers(3, 2)),
            kwargs=_MODULE_INPUTS, needs_cuda=True, message_contains=("differs from the CPU one",)),
    _mutant(protocols.CallableModule, "torch_extra_repr_reads_missing_attribute",
            "callable_module.repr_returns_str", "extra_repr reads an attribute __init__ never sets",
            _seeded(lambda: ExtraReprReadsMissingAttribute(3, 2)), kwargs=_MODULE_INPUTS,
            message_contains=("repr(m) raised AttributeError", "extra_repr")),
    _mutant(protocols.Module, "torch_nan_gradient_of_sqrt_at_zero", "module.gradients_are_finite",
            "pairwise distances by sqrt: NaN gradients from the zero diagonal",
            _seeded(PairwiseDistancesBySqrt), kwargs=_MODULE_INPUTS,
            message_contains=("'fc.weight', 'fc.bias'", "values NaN", "sqrt")),
    _mutant(protocols.Module, "torch_submodule_forward_called_directly", "module.submodule_hooks_run",
            "self.fc.forward(x) instead of self.fc(x)", _seeded(CallsSubmoduleForward), kwargs=_MODULE_INPUTS,
            message_contains=("'fc' ran forward 1 time(s), but its forward pre-hook ran 0", "FSDP2")),
    _mutant(protocols.Module, "torch_train_only_branch_raises", "module.train_forward_runs",
            "a train-only auxiliary head fed the wrong features", _seeded(AuxiliaryHeadOnWrongFeatures),
            kwargs=_MODULE_INPUTS,
            message_contains=("copy.deepcopy(m).train()(*inputs) raised", "eval_only=True")),
    _mutant(protocols.Module, "torch_lambda_attribute", "module.pickle_round_trip",
            "an activation kept as a lambda attribute", _seeded(ActivationAsLambda), kwargs=_MODULE_INPUTS,
            message_contains=("m.activation, the function", "torch.save(model)")),
    _mutant(protocols.Module, "torch_view_of_feature_map", "module.channels_last_matches_contiguous",
            "x.view(n, -1) of a convolution's output", _seeded(ConvThenViewHead),
            kwargs={"example_inputs": (torch.linspace(-1.0, 1.0, 100).reshape(2, 2, 5, 5),)},
            message_contains=("to(memory_format=torch.channels_last)", "raised RuntimeError", ".reshape()")),
]  # fmt: skip
