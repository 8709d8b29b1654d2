"""Modules, each with one bug (plain Python and NumPy stand-ins for torch.nn)."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from torchcontract.protocols import Module
from torchcontract.reference_impl import Linear, ReLU
from torchcontract.reference_impl import Module as ReferenceModule

from ..correct import MLP, NumpyModule, Parameter, TiedAutoencoder, mlp_inputs
from . import Mutant


class TrainReturnsNone(MLP):
    def train(self, mode: bool = True) -> Any:
        self.training = mode
        for _, child in self.named_children():
            child.train(mode)  # no "return self": m = m.train() gives None


class EvalDoesNotRecurse(MLP):
    """Without dropout (p=0) the outputs cannot show it: only the children's flags do."""

    def __init__(self) -> None:
        super().__init__(p=0.0)

    def eval(self) -> EvalDoesNotRecurse:
        self.training = False  # the children stay in training mode
        return self


class TrainIgnoresMode(MLP):
    """eval() is written on its own, and train() forgets its argument."""

    def train(self, mode: bool = True) -> TrainIgnoresMode:
        self.training = True  # model.train(False) leaves the model training
        for _, child in self.named_children():
            child.train()
        return self

    def eval(self) -> TrainIgnoresMode:
        self.training = False
        for _, child in self.named_children():
            child.eval()
        return self


class TrainDoesNotRecurse(MLP):
    """Without dropout (p=0), so that eval() (which calls train(False)) changes no output."""

    def __init__(self) -> None:
        super().__init__(p=0.0)

    def train(self, mode: bool = True) -> TrainDoesNotRecurse:
        self.training = mode  # the layers keep whatever mode they had: after eval(), dropout stays off
        return self


class ParametersYieldTiedWeightTwice(TiedAutoencoder):
    def parameters(self) -> Iterator[Parameter]:
        for _, child in self.named_children():  # per layer, so the shared weight comes twice
            yield child.weight
            yield child.bias


class NamedParametersWithoutPrefix(MLP):
    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        for _, child in self.named_children():
            yield from child.named_parameters()  # "weight", "bias", "weight", "bias"


class StateDictSkipsBiases(MLP):
    def _state_names(self) -> list[str]:
        return [name for name in super()._state_names() if name.endswith("weight")]  # biases not saved


class LoadStateDictIgnoresMissingKeys(MLP):
    def _check_keys(self, state: Any, strict: bool) -> tuple[list[str], list[str]]:
        return super()._check_keys(state, strict=False)  # "lenient loading", whatever strict says


class DeepcopySharesParameters(MLP):
    def __deepcopy__(self, memo: dict[int, Any]) -> DeepcopySharesParameters:
        return copy.copy(self)  # "weights are big": the copy shares them with the original


class HoldsThreadingLock(MLP):
    def __init__(self) -> None:
        super().__init__()
        self.stats_lock = threading.Lock()  # copy.deepcopy cannot copy a lock


class ZeroGradDoesNothing(MLP):
    def zero_grad(self) -> None:
        pass  # a stub that was never filled in


class ZeroGradSkipsChildren(MLP):
    def zero_grad(self) -> None:
        for parameter in vars(self).values():
            if isinstance(parameter, Parameter):  # only this module's own: its layers keep theirs
                parameter.grad = None


class TrainOnlyNoiseOfWrongShape(MLP):
    """Adds training noise drawn in the shape of the hidden layer to the output: train-mode forward raises."""

    def __init__(self) -> None:
        super().__init__(p=0.0)
        self.noise_rng = np.random.default_rng(0)

    def forward(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        y = super().forward(x)
        if self.training:
            y = y + 0.01 * self.noise_rng.standard_normal((x.shape[0], 16))  # meant y.shape
        return y


class ActivationAsLambda(MLP):
    """Keeps a scaling as a lambda attribute: the whole module cannot be pickled."""

    def __init__(self) -> None:
        super().__init__(p=0.0)
        self.scale = lambda y: 2.0 * y

    def forward(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return self.scale(super().forward(x))


class CallsLayerForward(ReferenceModule):
    """A reference-implementation module (it takes hooks) that calls a layer's forward directly."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        self.fc1, self.act = Linear(3, 8, rng=rng, dtype=np.float64), ReLU()
        self.fc2 = Linear(8, 2, rng=rng, dtype=np.float64)

    def forward(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return self.fc2(self.act(self.fc1.forward(x)))  # fc1's hooks never run


def _mutant(name: str, violates: str, bug: str, factory: Any, **fields: Any) -> Mutant:
    kwargs = {"example_inputs": mlp_inputs()}
    return Mutant(name, Module, f"module.{violates}", bug, factory, kwargs, **fields)


MUTANTS = [
    _mutant("train_returns_none", "train_eval_set_mode", "train() forgets to return self",
            TrainReturnsNone, message_contains=("m.train() returned None",)),
    _mutant("eval_does_not_recurse", "train_eval_set_mode", "eval() does not reach the children",
            EvalDoesNotRecurse, message_contains=("submodule 'fc1' has training=True",)),
    _mutant("train_does_not_recurse", "train_eval_set_mode", "train() sets only its own flag",
            TrainDoesNotRecurse, message_contains=("after m.eval(), submodule 'fc1' has training=True",)),
    _mutant("train_ignores_mode", "train_eval_set_mode", "train(False) trains",
            TrainIgnoresMode, message_contains=("after m.train(False), m.training is True",)),
    _mutant("parameters_yield_tied_weight_twice", "parameters_match_named_parameters",
            "parameters() yields a shared weight twice", ParametersYieldTiedWeightTwice,
            message_contains=("more than once",)),
    _mutant("named_parameters_without_prefix", "parameters_match_named_parameters",
            "named_parameters() drops the child's prefix", NamedParametersWithoutPrefix,
            message_contains=("name 'weight' more than once",)),
    _mutant("state_dict_skips_biases", "state_dict_round_trip", "state_dict() leaves out the biases",
            StateDictSkipsBiases, message_contains=("clone.load_state_dict(m.state_dict())",)),
    _mutant("load_state_dict_ignores_missing_keys", "load_state_dict_strict_rejects_bad_keys",
            "strict=True is ignored", LoadStateDictIgnoresMissingKeys,
            message_contains=("without key 'fc1.weight'", "strict=True")),
    _mutant("deepcopy_shares_parameters", "deepcopy_is_independent", "__deepcopy__ returns copy.copy",
            DeepcopySharesParameters, message_contains=("changed m's parameter too",)),
    _mutant("cannot_be_deep_copied", "deepcopy_is_independent", "holds a threading.Lock",
            HoldsThreadingLock, message_contains=("copy.deepcopy(m) raised TypeError",)),
    _mutant("zero_grad_does_nothing", "zero_grad_clears_gradients", "zero_grad() is a stub",
            ZeroGradDoesNothing, message_contains=("after zero_grad(), parameter 'fc1.weight'",)),
    _mutant("zero_grad_skips_children", "zero_grad_clears_gradients", "zero_grad() skips the layers",
            ZeroGradSkipsChildren, message_contains=("m.zero_grad()",)),
    _mutant("train_only_noise_of_wrong_shape", "train_forward_runs", "a train-only branch raises",
            TrainOnlyNoiseOfWrongShape,
            message_contains=("copy.deepcopy(m).train()(*inputs) raised ValueError", "eval_only=True")),
    _mutant("scale_as_lambda", "pickle_round_trip", "a lambda kept as an attribute", ActivationAsLambda,
            message_contains=("m.scale, the function", "pickle.dumps(m) raised")),
    _mutant("reference_layer_forward_called_directly", "submodule_hooks_run", "self.fc1.forward(x)",
            CallsLayerForward, message_contains=("submodule 'fc1' ran forward 1 time(s), but",)),
]  # fmt: skip


assert all(isinstance(m.factory(), NumpyModule) for m in MUTANTS if "reference" not in m.name)
