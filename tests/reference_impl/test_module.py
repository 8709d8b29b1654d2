"""Module and Parameter: calling, hooks, the module tree, modes, state dicts, copying."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import numpy as np
import pytest

from torchcontract import protocols
from torchcontract.reference_impl import (
    IncompatibleKeys,
    Linear,
    Module,
    Parameter,
    ReLU,
    Sequential,
    StateDictError,
)

from ..conftest import HAS_TORCH, NO_TORCH_REASON


class Affine(Module):
    """A module with a parameter and a child, used to test the bookkeeping."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = Parameter(np.array([2.0], dtype=np.float32))
        self.inner = Linear(2, 2, rng=np.random.default_rng(0))
        self.calls = 0

    def forward(self, x: Any, shift: float = 0.0) -> Any:
        self.calls += 1
        return x * self.scale.data + shift


def picklable_hook(module: Module, args: tuple[Any, ...], output: Any) -> Any:
    return output + 1


def test_call_runs_forward_once_and_passes_kwargs() -> None:
    m = Affine()
    assert m(np.float32(3.0), shift=1.0) == pytest.approx(7.0)
    assert m.calls == 1


def test_instance_level_forward_wrapper_is_honoured() -> None:
    m = Affine()
    original = m.forward
    m.forward = lambda x: original(x) * 10  # type: ignore[method-assign]
    assert m(np.float32(1.0)) == pytest.approx(20.0)
    assert m.calls == 1


def test_forward_pre_hook_replaces_args_with_tuple_or_single_value() -> None:
    m = Affine()
    seen: list[tuple[Any, ...]] = []
    handle = m.register_forward_pre_hook(lambda mod, args: (args[0] + 1,))
    assert m(np.float32(1.0)) == pytest.approx(4.0)
    handle.remove()
    handle = m.register_forward_pre_hook(lambda mod, args: args[0] * 3)  # single value -> 1-tuple
    m.register_forward_hook(lambda mod, args, out: seen.append(args))
    assert m(np.float32(1.0)) == pytest.approx(6.0)
    assert seen == [(3.0,)]  # forward hooks see the replaced arguments, as in torch
    handle.remove()
    assert m(np.float32(1.0)) == pytest.approx(2.0)


def test_pre_hook_returning_none_keeps_args() -> None:
    m = Affine()
    calls: list[Module] = []
    m.register_forward_pre_hook(lambda mod, args: calls.append(mod))
    assert m(np.float32(1.0)) == pytest.approx(2.0)
    assert calls == [m]


def test_forward_hook_replaces_output_and_handle_removes_it() -> None:
    m = Affine()
    handle = m.register_forward_hook(lambda mod, args, out: out * 100)
    assert m(np.float32(1.0)) == pytest.approx(200.0)
    handle.remove()
    handle.remove()  # idempotent
    assert m(np.float32(1.0)) == pytest.approx(2.0)


def test_hooks_run_in_registration_order_and_handles_work_as_context_managers() -> None:
    m = Affine()
    order: list[str] = []
    m.register_forward_hook(lambda mod, args, out: order.append("a"))
    with m.register_forward_hook(lambda mod, args, out: order.append("b")):
        m(np.float32(1.0))
    m(np.float32(1.0))
    assert order == ["a", "b", "a"]


def test_calling_forward_directly_skips_hooks() -> None:
    m = Affine()
    m.register_forward_hook(lambda mod, args, out: out * 100)
    assert m.forward(np.float32(1.0)) == pytest.approx(2.0)


def test_train_eval_recursive_and_return_self() -> None:
    model = Sequential(Linear(2, 3), ReLU(), Sequential(Linear(3, 1)))
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    assert model.train() is model
    assert all(m.training for m in model.modules())
    assert len(list(model.modules())) == 5


@pytest.mark.parametrize("mode", [1, 0, "yes", None])
def test_train_rejects_non_bool(mode: object) -> None:
    with pytest.raises(ValueError, match="bool"):
        Linear(1, 1).train(mode)  # type: ignore[arg-type]


def test_named_parameters_dotted_and_deduplicated() -> None:
    shared = Linear(2, 2)
    model = Sequential(Linear(4, 2), ReLU(), shared, shared)
    names = [name for name, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert [id(p) for p in model.parameters()] == [id(p) for _, p in model.named_parameters()]
    nested = Affine()
    assert [name for name, _ in nested.named_parameters()] == ["scale", "inner.weight", "inner.bias"]


def test_shared_parameter_reported_once_but_in_state_dict_under_each_name() -> None:
    a, b = Linear(2, 2), Linear(2, 2)
    b.weight = a.weight
    model = Sequential(a, b)
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "1.bias"]
    assert list(model.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]


def test_children_in_assignment_order() -> None:
    class Tree(Module):
        def __init__(self) -> None:
            super().__init__()
            self.z = ReLU()
            self.a = Linear(1, 1)
            self.z = Linear(1, 1)  # reassignment keeps the first position, like torch's _modules

    assert [name for name, _ in Tree().named_children()] == ["z", "a"]


def test_state_dict_holds_copies_keyed_like_torch() -> None:
    model = Sequential(Linear(3, 2), ReLU(), Linear(2, 1, bias=False))
    state = model.state_dict()
    assert list(state) == ["0.weight", "0.bias", "2.weight"]
    assert all(isinstance(v, np.ndarray) for v in state.values())
    state["0.weight"][...] = 42
    assert not np.any(model[0].weight.data == 42)  # type: ignore[union-attr]


def test_load_state_dict_round_trip_keeps_parameter_identity() -> None:
    source = Sequential(Linear(3, 2), ReLU(), Linear(2, 1))
    target = Sequential(Linear(3, 2), ReLU(), Linear(2, 1))
    before = [id(p) for p in target.parameters()]
    arrays = [id(p.data) for p in target.parameters()]
    result = target.load_state_dict(source.state_dict())
    assert result == IncompatibleKeys([], [])
    assert result.missing_keys == []
    assert result.unexpected_keys == []
    assert [id(p) for p in target.parameters()] == before
    assert [id(p.data) for p in target.parameters()] == arrays
    for (_, a), (_, b) in zip(source.named_parameters(), target.named_parameters(), strict=True):
        np.testing.assert_array_equal(a.data, b.data)


def test_load_state_dict_strict_lists_missing_and_unexpected_keys() -> None:
    model = Sequential(Linear(3, 2))
    state = model.state_dict()
    original = model[0].weight.data.copy()  # type: ignore[union-attr]
    del state["0.bias"]
    state["0.weight"] = np.zeros((2, 3), np.float32)
    state["extra"] = np.zeros(1)
    with pytest.raises(StateDictError, match=r"missing keys: \['0.bias'\].*unexpected keys: \['extra'\]"):
        model.load_state_dict(state)
    np.testing.assert_array_equal(model[0].weight.data, original)  # type: ignore[union-attr]
    assert issubclass(StateDictError, RuntimeError)
    result = model.load_state_dict(state, strict=False)
    assert result == (["0.bias"], ["extra"])
    np.testing.assert_array_equal(model[0].weight.data, 0)  # type: ignore[union-attr]


def test_load_state_dict_shape_mismatch_always_raises() -> None:
    model = Linear(3, 2)
    state = model.state_dict()
    state["weight"] = np.zeros((3, 2), np.float32)
    for strict in (True, False):
        with pytest.raises(StateDictError, match=r"weight: shape \(3, 2\) does not match \(2, 3\)"):
            model.load_state_dict(state, strict=strict)


def test_load_state_dict_dtype_mismatch_strict_only() -> None:
    model = Linear(3, 2)
    state = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    with pytest.raises(StateDictError, match="dtype float64 does not match float32"):
        model.load_state_dict(state)
    model.load_state_dict(state, strict=False)
    assert model.weight.data.dtype == np.float32


def test_load_state_dict_rejects_non_mapping_and_non_numeric() -> None:
    model = Linear(1, 1)
    with pytest.raises(TypeError, match="mapping"):
        model.load_state_dict([("weight", np.zeros((1, 1)))])  # type: ignore[arg-type]
    with pytest.raises(StateDictError, match="numeric"):
        model.load_state_dict({"weight": "abc", "bias": np.zeros(1, np.float32)})


def test_zero_grad_sets_none() -> None:
    model = Sequential(Linear(3, 2), ReLU(), Linear(2, 1))
    x = np.ones((4, 3), np.float32)
    model.backward(np.ones_like(model(x)))
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_deepcopy_and_pickle_give_independent_equal_modules() -> None:
    model = Sequential(Linear(3, 2), ReLU(), Linear(2, 1))
    model.register_forward_hook(picklable_hook)
    x = np.ones((1, 3), np.float32)
    expected = model(x)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert isinstance(clone, Sequential)
        np.testing.assert_array_equal(clone(x), expected)
        clone[0].weight.data[...] = 0  # type: ignore[union-attr]
        assert not np.all(model[0].weight.data == 0)  # type: ignore[union-attr]
        assert [n for n, _ in clone.named_parameters()] == [n for n, _ in model.named_parameters()]


def test_base_module_forward_and_backward_not_implemented() -> None:
    with pytest.raises(NotImplementedError, match="Module does not define forward"):
        Module()(1)
    with pytest.raises(NotImplementedError):
        Module().backward(1)


def test_repr_like_torch() -> None:
    model = Sequential(Linear(2, 3), ReLU())
    assert repr(model) == (
        "Sequential(\n  (0): Linear(in_features=2, out_features=3, bias=True)\n  (1): ReLU()\n)"
    )


def test_modules_satisfy_the_module_protocol() -> None:
    for module in (Linear(1, 1), ReLU(), Sequential(), Affine()):
        assert isinstance(module, protocols.Module)


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON)
def test_state_dict_loads_into_torch_and_back() -> None:
    import torch

    ours = Sequential(Linear(4, 3), ReLU(), Linear(3, 2))
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    back = Sequential(Linear(4, 3), ReLU(), Linear(3, 2))
    back.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    for (name, a), (_, b) in zip(ours.named_parameters(), back.named_parameters(), strict=True):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)
