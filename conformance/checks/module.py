"""Checks for :class:`~torchcontract.protocols.Module` (SPEC.md, "Module").

Checks that change a module (perturbing parameters, loading state, setting gradients, moving it to
a device) work on deep copies; checks that switch modes restore every submodule's mode exactly, and
every check restores the module's state afterwards (:func:`~._preserve.preserving`).

Under ``deterministic=False``, the clauses that compare two modules' outputs (the module and its copy,
a copy after a state-dict round trip) seed the global random generators alike before each call: the
copy was taken before either call, so a module drawing from the global RNGs or from a generator of
its own draws the same numbers in both.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from torchcontract.conformance._engine import Context, global_rng_states, restore_global_rng_states
from torchcontract.conformance._registry import register_check
from torchcontract.conformance._values import (
    close_difference,
    describe,
    difference,
    is_tensor,
    leaves,
    tensor_module,
)
from torchcontract.conformance.checks._common import try_deepcopy
from torchcontract.conformance.checks._preserve import preserving
from torchcontract.conformance.checks.callable_module import (
    args_text,
    call_module,
    eval_mode,
    fresh_inputs,
    fresh_kwargs,
    mode_snapshot,
    restore_modes,
)
from torchcontract.protocols import Module

MODE = "module.train_eval_set_mode"
DEEPCOPY = "module.deepcopy_is_independent"


def _submodules(module: Any) -> list[tuple[str, Any]]:
    """(name, submodule) for every descendant the module exposes, itself excluded."""
    if hasattr(module, "named_modules"):
        return [(name, sub) for name, sub in module.named_modules() if sub is not module]
    found: list[tuple[str, Any]] = []
    if hasattr(module, "named_children"):
        for name, child in module.named_children():
            found.append((name, child))
            found.extend((f"{name}.{sub_name}", sub) for sub_name, sub in _submodules(child))
    return found


def _copy(ctx: Context, what: str = "copy.deepcopy(m)") -> Any:
    copied, error = try_deepcopy(ctx.obj)
    if error is not None:
        ctx.fail(
            f"{what} raised {type(error).__name__}: {error}; expected modules to deep-copy (EMA "
            "weights, checkpoint averaging and these checks rely on it)",
            reproduce="copy.deepcopy(m)",
        )
    return copied


@contextmanager
def _seeded(ctx: Context) -> Iterator[None]:
    """Under deterministic=False, seed Python's, NumPy's and torch's global generators with the
    target's seed for the block (their states are put back afterwards); a no-op otherwise."""
    if ctx.options.deterministic:
        yield
        return
    states = global_rng_states()
    random.seed(ctx.options.seed)
    np.random.seed(ctx.options.seed)
    torch = tensor_module()
    if torch is not None:
        torch.manual_seed(ctx.options.seed)
    try:
        yield
    finally:
        restore_global_rng_states(states)


def _seeded_note(ctx: Context) -> str:
    return (
        ""
        if ctx.options.deterministic
        else " (deterministic=False: both calls with the global RNGs seeded alike)"
    )


def _values(parameter: Any) -> Any:
    """The array or tensor holding a parameter's values (torch Parameter, ``.data`` holder, array)."""
    if is_tensor(parameter) or isinstance(parameter, np.ndarray):
        return parameter
    data = getattr(parameter, "data", None)
    return data if is_tensor(data) or isinstance(data, np.ndarray) else None


def _perturb(parameter: Any) -> bool:
    """Change a parameter's values in place (its identity kept); False if it has no known values."""
    values = _values(parameter)
    if values is None:
        return False
    if is_tensor(values):
        with tensor_module().no_grad():
            values.add_(0.5 if values.is_floating_point() or values.is_complex() else 1)
        return True
    if values.dtype.kind in "fc":
        values += 0.5
    elif values.dtype.kind in "iu":
        values += 1
    else:
        return False
    return True


@register_check(MODE, protocol=Module, severity="required")
@preserving(data=False)
def train_eval_set_mode(ctx: Context) -> None:
    """train() and eval() return the module itself and set training on it and every submodule;
    train(False) is eval()."""
    module = ctx.obj
    modes = mode_snapshot(module)
    # train(False) last: code such as model.train(is_training) relies on it as much as on eval().
    steps: list[tuple[str, str, tuple[bool, ...]]] = [
        ("m.train()", "train", ()),
        ("m.eval()", "eval", ()),
        ("m.train(True)", "train", (True,)),
        ("m.train(False)", "train", (False,)),
    ]
    try:
        for call, method, args in steps:
            expected = method == "train" and args != (False,)
            returned = ctx.call(call, getattr(module, method), *args)
            if returned is not module:
                ctx.fail(
                    f"{call} returned {describe(returned)}; expected the module itself (so that "
                    "m = m.eval() and chained calls keep working)",
                    reproduce=f"{call} is m",
                )
            if module.training is not expected:
                ctx.fail(
                    f"after {call}, m.training is {module.training!r}; expected {expected}",
                    reproduce=f"{call}; m.training",
                )
            _check_submodule_modes(ctx, module, call, expected)
    finally:
        restore_modes(module, modes)


def _check_submodule_modes(ctx: Context, module: Any, call: str, expected: bool) -> None:
    """eval() reaches every submodule. train() may leave some in eval mode on purpose (a frozen
    backbone, BatchNorm kept in eval: mmdetection's norm_eval), but not all of them."""
    flagged = [(name, sub) for name, sub in _submodules(module) if hasattr(sub, "training")]
    wrong = [(name, sub) for name, sub in flagged if sub.training is not expected]
    if not wrong:
        return
    name, sub = wrong[0]
    if not expected or len(wrong) == len(flagged):
        ctx.fail(
            f"after {call}, submodule {name!r} has training={sub.training!r}; expected {expected} "
            f"({len(wrong)} of {len(flagged)} submodules; {call.split('(')[0]}() must recurse into "
            "submodules)",
            reproduce=f"{call}; m.get_submodule({name!r}).training",
        )
    note = f"after {call}, {len(wrong)} of {len(flagged)} submodules stay in eval mode (frozen on purpose?)"
    if note not in ctx.notes:
        ctx.note(note)


@register_check("module.parameters_match_named_parameters", protocol=Module, severity="required")
@preserving(data=False)
def parameters_match_named_parameters(ctx: Context) -> None:
    """parameters() yields the values of named_parameters(), each once, under unique names."""
    module = ctx.obj
    parameters = list(ctx.call("list(m.parameters())", lambda: list(module.parameters())))
    named = list(ctx.call("list(m.named_parameters())", lambda: list(module.named_parameters())))
    names = Counter(name for name, _ in named)
    repeated_names = [name for name, n in names.items() if n > 1]
    if repeated_names:
        ctx.fail(
            f"named_parameters() yields the name {repeated_names[0]!r} more than once; expected "
            "unique names (state_dict keys come from them)",
            reproduce="[name for name, _ in m.named_parameters()]",
        )
    counts = Counter(id(parameter) for parameter in parameters)
    if any(n > 1 for n in counts.values()):
        ctx.fail(
            "parameters() yields the same parameter more than once; expected each once (an "
            "optimizer would update it twice per step)",
            reproduce="len(list(m.parameters())) == len({id(p) for p in m.parameters()})",
        )
    named_ids = {id(parameter): name for name, parameter in named}
    if set(counts) != set(named_ids):
        only_named = sorted(named_ids[i] for i in set(named_ids) - set(counts))
        ctx.fail(
            f"parameters() and named_parameters() yield different objects ({len(parameters)} vs "
            f"{len(named)} parameters; only in named_parameters(): {only_named[:5]}); expected the "
            "same parameters",
            reproduce="{id(p) for p in m.parameters()} == {id(p) for _, p in m.named_parameters()}",
        )


@register_check(
    DEEPCOPY, protocol=Module, severity="required", needs=("example_inputs",),
    requires=("callable_module.eval_is_deterministic",),
)  # fmt: skip
@preserving(data=False)
def deepcopy_is_independent(ctx: Context) -> None:
    """copy.deepcopy(m) gives equal outputs and parameters of its own."""
    module = ctx.obj
    # The copy is taken before m is called: a call may change state (a counter, a generator).
    clone = _copy(ctx)
    with eval_mode(module), _seeded(ctx):
        expected = call_module(ctx, module)
    with eval_mode(clone), _seeded(ctx):
        copied = call_module(ctx, clone, "copy.deepcopy(m)(*inputs)")
    found = close_difference(copied, expected)
    if found:
        call = args_text(ctx)
        ctx.fail(
            f"copy.deepcopy(m)({call}) differs from m({call}) ({found}){_seeded_note(ctx)}; expected "
            "equal outputs",
            reproduce=f"copy.deepcopy(m)({call}) == m({call})",
        )
    before = {name: _snapshot(p) for name, p in module.named_parameters()}
    saved = [(p, _snapshot(p)) for _, p in module.named_parameters()]  # by identity: names may repeat
    try:
        for name, parameter in clone.named_parameters():
            if not _perturb(parameter):
                continue
            original = before.get(name)
            current = dict(module.named_parameters()).get(name)
            if original is not None and difference(_snapshot(current), original) is not None:
                ctx.fail(
                    f"changing parameter {name!r} of copy.deepcopy(m) changed m's parameter too; "
                    "expected the copy to own its parameters",
                    reproduce=f"c = copy.deepcopy(m); <change c's {name}>; <compare with m's {name}>",
                )
    finally:
        # A copy that shares parameters was changed through m's own: put m's values back.
        for parameter, snapshot in saved:
            _restore(parameter, snapshot)


def _restore(parameter: Any, snapshot: Any) -> None:
    """Write ``snapshot`` (from :func:`_snapshot`) back into ``parameter`` in place, if it changed."""
    values = _values(parameter)
    if values is None or snapshot is None or difference(_snapshot(parameter), snapshot) is None:
        return
    if is_tensor(values):
        with tensor_module().no_grad():
            values.copy_(snapshot)
    else:
        np.copyto(values, snapshot)


def _snapshot(parameter: Any) -> Any:
    values = _values(parameter)
    if values is None:
        return None
    return values.detach().clone() if is_tensor(values) else np.array(values, copy=True)


@register_check(
    "module.state_dict_round_trip",
    protocol=Module,
    severity="required",
    needs=("example_inputs",),
    requires=("callable_module.eval_is_deterministic", DEEPCOPY),
)
@preserving(data=False)
def state_dict_round_trip(ctx: Context) -> None:
    """Loading m.state_dict() into a perturbed copy of m restores m's outputs."""
    module = ctx.obj
    clone = _copy(ctx)  # before m is called (see deepcopy_is_independent)
    with eval_mode(module), _seeded(ctx):
        expected = call_module(ctx, module)
    state = ctx.call("m.state_dict()", module.state_dict)
    for _, parameter in ctx.call("clone.named_parameters()", lambda: list(clone.named_parameters())):
        _perturb(parameter)
    ctx.call("clone.load_state_dict(m.state_dict())", clone.load_state_dict, state)
    with eval_mode(clone), _seeded(ctx):
        restored = call_module(ctx, clone, "clone(*inputs)")
    found = close_difference(restored, expected)
    if found:
        call = args_text(ctx)
        ctx.fail(
            f"after clone.load_state_dict(m.state_dict()) on a copy whose parameters were changed, "
            f"clone({call}) differs from m({call}) ({found}){_seeded_note(ctx)}; expected the state "
            "dict to hold everything the output depends on",
            reproduce=(
                "clone = copy.deepcopy(m); <change clone's parameters>; "
                f"clone.load_state_dict(m.state_dict()); clone({call}) == m({call})"
            ),
        )


@register_check(
    "module.load_state_dict_strict_rejects_bad_keys",
    protocol=Module,
    severity="required",
    requires=(DEEPCOPY,),
)
@preserving(data=False)
def load_state_dict_strict_rejects_bad_keys(ctx: Context) -> None:
    """load_state_dict(state, strict=True) raises on a missing key and on an unexpected key."""
    state = dict(ctx.call("m.state_dict()", ctx.obj.state_dict))
    if not state:
        ctx.skip("the module has no state")
    first_key = next(iter(state))
    missing = {key: value for key, value in state.items() if key != first_key}
    unexpected = {**state, "torchcontract_unexpected_key": next(iter(state.values()))}
    for label, bad_state in ((f"without key {first_key!r}", missing), ("with an extra key", unexpected)):
        clone = _copy(ctx)
        what = f"clone.load_state_dict(<m.state_dict() {label}>, strict=True)"
        outcome = ctx.attempt(what, clone.load_state_dict, bad_state, strict=True)
        if not isinstance(outcome, Exception):
            ctx.fail(
                f"{what} returned {describe(outcome)}; expected an error (torch raises "
                "RuntimeError), or a checkpoint that does not match the model loads silently",
                reproduce=what.replace("clone", "copy.deepcopy(m)"),
            )


def _set_ones_gradient(parameter: Any) -> bool:
    values = _values(parameter)
    if values is None or not hasattr(parameter, "grad"):
        return False
    if is_tensor(values):
        if not (values.is_floating_point() or values.is_complex()):
            return False
        parameter.grad = tensor_module().ones_like(values)
    else:
        parameter.grad = np.ones_like(values)
    return True


def _is_cleared(gradient: Any) -> bool:
    if gradient is None:
        return True
    if is_tensor(gradient):
        return bool((gradient == 0).all())
    return not bool(np.any(gradient))


@register_check(
    "module.zero_grad_clears_gradients", protocol=Module, severity="required", requires=(DEEPCOPY,)
)
@preserving(data=False)
def zero_grad_clears_gradients(ctx: Context) -> None:
    """After zero_grad(), every parameter's gradient is None or zero."""
    clone = _copy(ctx)
    named = list(ctx.call("clone.named_parameters()", lambda: list(clone.named_parameters())))
    given = [name for name, parameter in named if _set_ones_gradient(parameter)]
    if named and not given:
        ctx.skip("cannot give the parameters a gradient (they have no .grad the check recognises)")
    ctx.call("clone.zero_grad()", clone.zero_grad)
    for name, parameter in named:
        if name in given and not _is_cleared(parameter.grad):
            ctx.fail(
                f"after zero_grad(), parameter {name!r} still has gradient {describe(parameter.grad)} "
                "with non-zero values; expected None or zeros (otherwise gradients accumulate "
                "across steps)",
                reproduce=f"<give {name} a gradient>; m.zero_grad(); m.get_parameter({name!r}).grad",
            )


# ----------------------------------------------------------------------------------------------------
# devices (torch modules only)


def _torch_module(ctx: Context) -> Any:
    # An nn.Module can only exist once torch is imported: importing it here (seconds) to find out
    # would spend the time budget of a NumPy module's check, and report a hang.
    torch = tensor_module()
    if torch is None or not isinstance(ctx.obj, torch.nn.Module):
        ctx.skip("the object is not a torch.nn.Module: device placement is checked on torch modules")
    return torch


def _to_device(value: Any, device: Any) -> Any:
    if is_tensor(value):
        return value.to(device)
    if isinstance(value, tuple) and hasattr(type(value), "_fields"):
        return type(value)(*(_to_device(item, device) for item in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_to_device(item, device) for item in value)
    if isinstance(value, dict):
        return {key: _to_device(item, device) for key, item in value.items()}
    return value


def _on(tensor: Any, device: Any) -> bool:
    return bool(tensor.device.type == device.type and device.index in (None, tensor.device.index))


@register_check(
    "module.to_device",
    protocol=Module,
    severity="required",
    needs=("torch", "example_inputs"),
    requires=(DEEPCOPY,),
    per_device=True,
)
@preserving(data=False)
def to_device(ctx: Context) -> None:
    """m.to(device) returns m and moves every parameter and buffer; outputs land on that device."""
    torch = _torch_module(ctx)
    device = torch.device(ctx.device)
    clone = _copy(ctx)
    returned = ctx.call(f"m.to({ctx.device!r})", clone.to, device)
    if returned is not clone:
        ctx.fail(
            f"m.to({ctx.device!r}) returned {describe(returned)}; expected the module itself",
            reproduce=f"m.to({ctx.device!r}) is m",
        )
    tensors = [*clone.named_parameters(), *clone.named_buffers()]
    for name, tensor in tensors:
        if not _on(tensor, device):
            ctx.fail(
                f"after m.to({ctx.device!r}), {name!r} is on {tensor.device}; expected every "
                "parameter and buffer on the target device",
                reproduce=f"m.to({ctx.device!r}); m.state_dict()[{name!r}].device",
            )
    inputs = _to_device(fresh_inputs(ctx), device)
    kwargs = _to_device(fresh_kwargs(ctx), device)
    what = f"m.to({ctx.device!r})({args_text(ctx)} on {ctx.device})"
    with eval_mode(clone):
        output = ctx.call(what, clone, *inputs, **kwargs)
    for path, leaf in leaves(output):
        if is_tensor(leaf) and not _on(leaf, device):
            ctx.fail(
                f"with the module and inputs on {ctx.device}, output{path} is on {leaf.device}; "
                "expected outputs on the same device",
                reproduce=what,
            )


@register_check(
    "module.device_parity",
    protocol=Module,
    severity="required",
    needs=("torch", "example_inputs"),
    requires=(DEEPCOPY, "callable_module.eval_is_deterministic"),
    per_device=True,
)
@preserving(data=False)
def device_parity(ctx: Context) -> None:
    """On a CUDA device, outputs match CPU outputs within torch.testing.assert_close's tolerances."""
    torch = _torch_module(ctx)
    device = torch.device(ctx.device)
    if device.type == "cpu":
        ctx.skip("compares a CUDA device with the CPU; runs with device='cuda'")
    if not ctx.options.deterministic:
        # Seeding does not help: the CPU and CUDA generators draw different numbers from one seed.
        ctx.skip("the target declares deterministic=False: CPU and CUDA outputs of a random module differ")
    with eval_mode(ctx.obj):
        expected = call_module(ctx, ctx.obj)
    clone = _copy(ctx).to(device)
    inputs = _to_device(fresh_inputs(ctx), device)
    kwargs = _to_device(fresh_kwargs(ctx), device)
    what = f"m.to({ctx.device!r})({args_text(ctx)} on {ctx.device})"
    # TF32 is on for convolutions by default; compare full float32 precision.
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with eval_mode(clone):
            output = ctx.call(what, clone, *inputs, **kwargs)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
    found = close_difference(_to_device(output, torch.device("cpu")), expected)
    if found:
        ctx.fail(
            f"on {ctx.device} the output differs from the CPU output ({found}); expected agreement "
            "within torch.testing.assert_close's default tolerances for the dtype (TF32 off)",
            reproduce=f"m({args_text(ctx)}) vs {what}",
        )
