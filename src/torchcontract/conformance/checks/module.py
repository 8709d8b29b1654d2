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

import io
import random
import sys
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from torchcontract.conformance._core.context import (
    FACTORY_OFF,
    Context,
    global_rng_states,
    restore_global_rng_states,
)
from torchcontract.conformance._core.registry import register_check
from torchcontract.conformance._runtime.calls import global_change, object_call
from torchcontract.conformance._values import (
    close_difference,
    describe,
    describe_structure,
    difference,
    flatten,
    is_tensor,
    leaves,
    structure,
    tensor_module,
    unflatten,
)
from torchcontract.conformance._values.convert import in_dtype, on_device
from torchcontract.conformance.checks._common import try_deepcopy
from torchcontract.conformance.checks.callable_module import (
    args_text,
    call_module,
    eval_is_deterministic,
    eval_mode,
    fresh_inputs,
    fresh_kwargs,
    mode_snapshot,
    preserving_module,
    restore_modes,
)
from torchcontract.protocols import Module


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
    """Change a parameter's values in place (its identity kept); False if it has no known values (or
    cannot be changed: an inference tensor, a tensor on the meta device)."""
    values = _values(parameter)
    if values is None:
        return False
    try:
        if is_tensor(values):
            with tensor_module().no_grad():
                if values.dtype == tensor_module().bool:
                    values.logical_not_()
                else:
                    values.add_(0.5 if values.is_floating_point() or values.is_complex() else 1)
            return True
        if values.dtype.kind in "fc":
            values += 0.5
        elif values.dtype.kind in "iu":
            values += 1
        elif values.dtype.kind == "b":
            np.logical_not(values, out=values)
        else:
            return False
    except Exception:  # a read-only array, an inference tensor: left as it is
        return False
    return True


def _reachable_tensors(module: Any) -> list[tuple[str, Any]]:
    """(name, tensor) for every tensor a torch module's output can depend on that a loaded state dict
    must restore: parameters, persistent buffers and plain tensor attributes of the module and its
    submodules, each once. Non-persistent buffers are left out: ``register_buffer(persistent=False)``
    declares a tensor rebuilt at construction (rotary frequencies, positional encodings), which a
    fresh instance has (pass ``factory=`` to check those too). Reading them never calls the module
    (``vars`` and torch's own registries)."""
    torch = tensor_module()
    found: list[tuple[str, Any]] = []
    seen: set[int] = set()
    try:
        named = list(module.named_modules()) if hasattr(module, "named_modules") else [("", module)]
    except Exception:
        named = [("", module)]
    for prefix, sub in named:
        dot = f"{prefix}." if prefix else ""
        own: list[tuple[str, Any]] = []
        rebuilt = getattr(sub, "__dict__", {}).get("_non_persistent_buffers_set", set())
        for registry in ("_parameters", "_buffers"):
            table = getattr(sub, "__dict__", {}).get(registry)
            if isinstance(table, dict):
                own.extend(
                    (str(key), value)
                    for key, value in table.items()
                    if not (registry == "_buffers" and key in rebuilt)
                )
        own.extend(
            (str(key), value)
            for key, value in getattr(sub, "__dict__", {}).items()
            if torch is not None and isinstance(value, torch.Tensor)
        )
        for key, value in own:
            if value is not None and is_tensor(value) and id(value) not in seen:
                seen.add(id(value))
                found.append((f"{dot}{key}", value))
    return found


@register_check(protocol=Module, severity="required", since="0.1.0")
@preserving_module
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


@register_check(protocol=Module, severity="required", since="0.1.0")
@preserving_module
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
    protocol=Module,
    severity="required",
    needs=("example_inputs",),
    requires=(eval_is_deterministic,),
    per_dtype=True,
    since="0.1.0",
)
@preserving_module
def deepcopy_is_independent(ctx: Context) -> None:
    """copy.deepcopy(m) gives equal outputs and parameters of its own."""
    module = ctx.obj
    # The copy is taken before m is called: a call may change state (a counter, a generator).
    clone = _copy(ctx)
    with eval_mode(module), _seeded(ctx):
        expected = call_module(ctx, module)
    with eval_mode(clone, "copy.deepcopy(m)"), _seeded(ctx):
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
        with object_call("<m's parameters put back after changing the copy's>"):
            for parameter, snapshot in saved:
                _restore(parameter, snapshot)


def _restore(parameter: Any, snapshot: Any) -> None:
    """Write ``snapshot`` (from :func:`_snapshot`) back into ``parameter`` in place, if it changed."""
    values = _values(parameter)
    if values is None or snapshot is None:
        return
    if is_tensor(values) and _unchanged_tensor(values, snapshot):
        return  # the common case, at torch's speed: the generic comparison below is much slower
    if difference(_snapshot(parameter), snapshot) is None:
        return
    if is_tensor(values):
        with tensor_module().no_grad():
            values.copy_(snapshot)
    else:
        np.copyto(values, snapshot)


def _unchanged_tensor(values: Any, snapshot: Any) -> bool:
    try:
        return bool(
            values.dtype == snapshot.dtype
            and values.shape == snapshot.shape
            and tensor_module().equal(values.detach(), snapshot)
        )
    except Exception:  # a tensor subclass without torch.equal: the generic comparison decides
        return False


def _snapshot(parameter: Any) -> Any:
    values = _values(parameter)
    if values is None:
        return None
    return values.detach().clone() if is_tensor(values) else np.array(values, copy=True)


def _is_torch_module(value: Any) -> bool:
    torch = tensor_module()
    return torch is not None and isinstance(value, torch.nn.Module)


def _through_torch_save(ctx: Context, state: Any) -> Any:
    """``torch.load(<torch.save(state)>, weights_only=True)`` in memory: what a checkpoint gives back
    (``weights_only=True`` is torch.load's default since torch 2.6)."""
    torch = tensor_module()
    save = "torch.save(m.state_dict(), buffer)"

    def saved(value: Any) -> bytes:
        buffer = io.BytesIO()
        torch.save(value, buffer)
        return buffer.getvalue()

    def loaded(data: bytes) -> Any:
        return torch.load(io.BytesIO(data), weights_only=True)

    data = ctx.call(save, saved, state)
    outcome = ctx.attempt("torch.load(buffer, weights_only=True)", loaded, data)
    if isinstance(outcome, Exception):
        _fail_weights_only(ctx, state, outcome, saved, loaded)
    return outcome


def _fail_weights_only(ctx: Context, state: Any, outcome: Exception, saved: Any, loaded: Any) -> None:
    culprit = ""
    for key in list(state) if isinstance(state, Mapping) else []:
        one = ctx.attempt(f"torch.save({{{key!r}: ...}})", saved, {key: state[key]})
        if not isinstance(one, Exception) and isinstance(
            ctx.attempt("torch.load(buffer, weights_only=True)", loaded, one), Exception
        ):
            culprit = f"; the value under {key!r} is {describe(state[key])}"
            break
    ctx.fail(
        f"torch.load(<torch.save(m.state_dict())>, weights_only=True) raised {type(outcome).__name__}: "
        f"{_first_line(outcome)}{culprit}; expected the state dict to hold tensors and plain Python "
        "values only (torch.load defaults to weights_only=True since torch 2.6, so such a checkpoint "
        "no longer loads; get_extra_state should return tensors or plain Python values)",
        reproduce=(
            "buffer = io.BytesIO(); torch.save(m.state_dict(), buffer); buffer.seek(0); "
            "torch.load(buffer, weights_only=True)"
        ),
    )


def _first_line(error: BaseException) -> str:
    """The line of an error message that names the problem (torch's weights-only error puts it under
    "WeightsUnpickler error:", after a paragraph about the 2.6 default)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "WeightsUnpickler error:" in line:
            return line.split("WeightsUnpickler error:", 1)[1].split(". Please use", 1)[0].strip()
    return lines[0] if lines else ""


@register_check(
    protocol=Module,
    severity="required",
    needs=("example_inputs",),
    requires=(eval_is_deterministic, deepcopy_is_independent),
    per_dtype=True,
    since="0.1.0",
)
@preserving_module
def state_dict_round_trip(ctx: Context) -> None:
    """Loading m.state_dict() (through torch.save and torch.load(weights_only=True) for a torch module)
    into a fresh instance (the factory option) or a deep copy whose every tensor was changed restores
    m's outputs."""
    module = ctx.obj
    factory = ctx.options.factory
    clone: Any = None if factory is not None else _copy(ctx)  # before m is called (deepcopy_is_independent)
    with eval_mode(module), _seeded(ctx):
        expected = call_module(ctx, module)
    state = ctx.call("m.state_dict()", module.state_dict)
    if _is_torch_module(module):
        state = _through_torch_save(ctx, state)
    if factory is not None:
        target, name = ctx.call("factory()", factory), "fresh"
        built = "fresh = factory(); <change fresh's parameters>"
        if ctx.dtype is not None and _is_torch_module(target):
            # In a dtype of the matrix m is copy.deepcopy(m).to(dtype): the fresh instance is converted
            # alike (load_state_dict copies into its own tensors, in the factory's dtype).
            dtype = getattr(sys.modules["torch"], ctx.dtype)
            ctx.call(f"fresh.to(torch.{ctx.dtype})", target.to, dtype)
            built = f"fresh = factory().to(torch.{ctx.dtype}); <change fresh's parameters>"
        changed = list(ctx.call("fresh.named_parameters()", lambda: list(target.named_parameters())))
    else:
        target, name = clone, "clone"
        built = "clone = copy.deepcopy(m); <change every tensor of clone>"
        if _is_torch_module(target):
            changed = _reachable_tensors(target)
        else:
            changed = list(ctx.call("clone.named_parameters()", lambda: list(target.named_parameters())))
    for _, tensor in changed:
        _perturb(tensor)
    ctx.call(f"{name}.load_state_dict(m.state_dict())", target.load_state_dict, state)
    with eval_mode(target, name), _seeded(ctx):
        restored = call_module(ctx, target, f"{name}(*inputs)")
    found = close_difference(restored, expected)
    if found:
        call = args_text(ctx)
        if factory is not None:
            how = "a fresh instance built by the factory option"
            hint = "non-persistent buffers and plain tensor attributes are not saved"
        else:
            how = "a deep copy whose parameters, persistent buffers and tensor attributes were changed"
            hint = (
                "non-persistent buffers and plain tensor attributes are not saved; if such a tensor is "
                "rebuilt at construction, pass factory= so that a fresh instance is loaded instead"
            )
        ctx.fail(
            f"after {name}.load_state_dict(m.state_dict()) on {how}, {name}({call}) differs from "
            f"m({call}) ({found}){_seeded_note(ctx)}; expected the state dict to hold everything the "
            f"output depends on ({hint})",
            reproduce=f"{built}; {name}.load_state_dict(m.state_dict()); {name}({call}) == m({call})",
        )


@register_check(protocol=Module, severity="required", requires=(deepcopy_is_independent,), since="0.1.0")
@preserving_module
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


@register_check(protocol=Module, severity="recommended", requires=(deepcopy_is_independent,), since="0.1.0")
@preserving_module
def zero_grad_clears_gradients(ctx: Context) -> None:
    """After zero_grad(), every parameter's gradient is None or zero."""
    clone = _copy(ctx)
    named = list(ctx.call("clone.named_parameters()", lambda: list(clone.named_parameters())))
    # A parameter that cannot be given a gradient (an integer one, or a tensor subclass such as a
    # quantized weight whose class implements no ones_like or refuses a plain .grad) is left out.
    given = [
        name
        for name, parameter in named
        if ctx.attempt(f"<give {name} a gradient of ones>", _set_ones_gradient, parameter) is True
    ]
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


def _arguments_on(ctx: Context, device: Any, label: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Fresh example inputs and kwargs moved to ``device`` (shown as ``label``) by the one walker of
    values (:mod:`.._values.convert`): a container with its own ``.to()`` (a TensorDict, a BatchEncoding) is
    moved by it. A call into the object: the containers' own code runs."""
    return ctx.call(
        f"<the example inputs and kwargs>.to({label!r})",
        lambda: (on_device(fresh_inputs(ctx), device), on_device(fresh_kwargs(ctx), device)),
    )


def _on(tensor: Any, device: Any) -> bool:
    return bool(tensor.device.type == device.type and device.index in (None, tensor.device.index))


# torch's device-mismatch messages (aten's TensorIterator and the common-device check, generators).
_DEVICE_MISMATCH = (
    "is not on the expected device",
    "on the same device",
    "at least two devices",
    "expected a 'meta' device type",
)


def _is_device_mismatch(error: BaseException) -> bool:
    """Whether an error from a call on the meta device says that tensors are on different devices
    ("Tensor on device cpu is not on the expected device meta!", "Expected all tensors to be on the
    same device, but found at least two devices, meta and cpu!")."""
    text = str(error).lower()
    return "meta" in text and any(phrase in text for phrase in _DEVICE_MISMATCH)


def _unregistered(module: Any) -> list[str]:
    """Where a torch module keeps tensors or submodules that ``.to()`` does not move: plain tensor
    attributes (0-dim ones excepted: torch lets them mix with any device), and modules, parameters or
    tensors inside plain lists, tuples and dicts. Never calls the module."""
    torch = tensor_module()
    found: list[str] = []
    if torch is None:
        return found

    def kind(value: Any) -> str | None:
        if isinstance(value, torch.nn.Module):
            return type(value).__name__
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return "Parameter" if isinstance(value, torch.nn.Parameter) else "tensor"
        return None

    try:
        named = list(module.named_modules())
    except Exception:
        return found
    for prefix, sub in named:
        dot = f"{prefix}." if prefix else ""
        for key, value in getattr(sub, "__dict__", {}).items():
            if key.startswith("_") and key in _TORCH_INTERNALS:
                continue
            if isinstance(value, torch.Tensor) and kind(value):
                found.append(f"m.{dot}{key} (a plain {kind(value)} attribute: use register_buffer)")
            elif isinstance(value, (list, tuple)):
                items = [(f"[{i}]", item) for i, item in enumerate(value)]
            elif isinstance(value, dict):
                items = [(f"[{item_key!r}]", item) for item_key, item in value.items()]
            else:
                continue
            if isinstance(value, (list, tuple, dict)):
                for where, item in items[:100]:
                    what = kind(item)
                    if what is not None:
                        fix = (
                            "nn.ModuleList/nn.ModuleDict"
                            if what not in ("tensor", "Parameter")
                            else ("nn.ParameterList or register_buffer")
                        )
                        found.append(
                            f"m.{dot}{key}{where} (a {what} in a plain {type(value).__name__}: use {fix})"
                        )
    return found


_TORCH_INTERNALS = frozenset(
    {"_parameters", "_buffers", "_non_persistent_buffers_set", "_modules", "_forward_hooks",
     "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks", "_state_dict_hooks",
     "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks", "_state_dict_pre_hooks",
     "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs",
     "_flat_weights"}
)  # fmt: skip


def _moved_tensors(ctx: Context, module: Any, device: Any, label: str) -> None:
    """Every parameter and buffer of ``module`` (after ``module.to(device)``) is on ``device``."""
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if not _on(tensor, device):
            ctx.fail(
                f"after m.to({label!r}), {name!r} is on {tensor.device}; expected every "
                "parameter and buffer on the target device",
                reproduce=f"m.to({label!r}); m.state_dict()[{name!r}].device",
            )


def _outputs_on(ctx: Context, output: Any, device: Any, label: str, what: str) -> None:
    for path, leaf in leaves(output):
        if is_tensor(leaf) and not _on(leaf, device):
            ctx.fail(
                f"with the module and inputs on {label}, output{path} is on {leaf.device}; "
                "expected outputs on the same device",
                reproduce=what,
            )


@register_check(
    protocol=Module,
    severity="required",
    needs=("torch", "example_inputs"),
    requires=(deepcopy_is_independent,),
    per_device=True,
    since="0.1.0",
)
@preserving_module
def to_device(ctx: Context) -> None:
    """m.to(device) returns m and moves every parameter and buffer; outputs land on that device. On the
    CPU, a copy moved to the meta device runs too, so that a tensor or submodule .to() does not move
    shows as it would on a GPU."""
    torch = _torch_module(ctx)
    device = torch.device(ctx.device)
    clone = _copy(ctx)
    returned = ctx.call(f"m.to({ctx.device!r})", clone.to, device)
    if returned is not clone:
        ctx.fail(
            f"m.to({ctx.device!r}) returned {describe(returned)}; expected the module itself",
            reproduce=f"m.to({ctx.device!r}) is m",
        )
    _moved_tensors(ctx, clone, device, ctx.device)
    inputs, kwargs = _arguments_on(ctx, device, ctx.device)
    what = f"m.to({ctx.device!r})({args_text(ctx)} on {ctx.device})"
    with eval_mode(clone, "copy.deepcopy(m)"):
        output = ctx.call(what, clone, *inputs, **kwargs)
    _outputs_on(ctx, output, device, ctx.device, what)
    if device.type == "cpu":
        _meta_probe(ctx, torch)


def _meta_probe(ctx: Context, torch: Any) -> None:
    """m.to("cpu") cannot leave anything behind on a CPU-only machine; the meta device can: a copy of
    m moved there must run with the inputs moved there (meta tensors have shapes and dtypes but no
    data, so the call is cheap)."""
    meta = torch.device("meta")
    clone = _copy(ctx)
    moved = ctx.attempt("copy.deepcopy(m).to('meta')", clone.to, meta)
    if isinstance(moved, Exception):
        ctx.skip(
            f"m.to('cpu') passed; copy.deepcopy(m).to('meta') raised {type(moved).__name__}: "
            f"{_first_line(moved)}, so tensors that .to() leaves behind cannot be found without a second "
            "device (run with device='cuda')"
        )
    _moved_tensors(ctx, clone, meta, "meta")
    moving = "<the example inputs and kwargs>.to('meta')"
    arguments = ctx.attempt(
        moving, lambda: (on_device(fresh_inputs(ctx), meta), on_device(fresh_kwargs(ctx), meta))
    )
    if isinstance(arguments, Exception):
        ctx.skip(
            f"m.to('cpu') passed; {moving} raised {type(arguments).__name__}: {_first_line(arguments)}, so "
            "tensors that .to() leaves behind cannot be found without a second device (run with "
            "device='cuda')"
        )
    inputs, kwargs = arguments
    what = f"copy.deepcopy(m).to('meta')({args_text(ctx)} on meta)"
    with eval_mode(clone, "copy.deepcopy(m)"):
        output = ctx.attempt(what, clone, *inputs, **kwargs)
    if isinstance(output, Exception):
        if not _is_device_mismatch(output):
            ctx.skip(
                f"m.to('cpu') passed; the module cannot run on the meta device ({what} raised "
                f"{type(output).__name__}: {_first_line(output)}: an op without a meta kernel or a "
                "data-dependent shape), so tensors that .to() leaves behind cannot be found without a "
                "second device (run with device='cuda')"
            )
        causes = _unregistered(ctx.obj)
        cause = (
            f"likely cause: {'; '.join(causes[:3])}"
            if causes
            else "likely cause: a submodule or tensor that is not registered (use nn.ModuleList/"
            "nn.ModuleDict and register_buffer), or a tensor created in forward without device="
        )
        ctx.fail(
            f"{what} raised {type(output).__name__}: {_first_line(output)}; expected every tensor the "
            f"forward uses to move with the module ({cause}; on a GPU, model.to('cuda') fails the same "
            "way)",
            reproduce=(
                "meta = torch.device('meta'); copy.deepcopy(m).to(meta)(*[x.to(meta) for x in inputs])"
            ),
        )
    _outputs_on(ctx, output, meta, "meta", what)


@contextmanager
def _tf32_off(torch: Any) -> Iterator[None]:
    """TF32 off for the block (on by default for convolutions): CUDA is compared with the CPU at full
    float32 precision."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32

    def undo() -> None:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    with global_change(undo):  # undone at once should the check be given up on (a hung call)
        yield


@register_check(
    protocol=Module,
    severity="recommended",
    needs=("torch", "example_inputs", "accelerator"),
    requires=(deepcopy_is_independent, eval_is_deterministic),
    per_device=True,
    per_dtype=True,
    since="0.1.0",
)
@preserving_module
def device_parity(ctx: Context) -> None:
    """On a CUDA device, outputs match CPU outputs within torch.testing.assert_close's tolerances (or
    the target's parity_tolerance), with TF32 off."""
    torch = _torch_module(ctx)
    device = torch.device(ctx.device)
    if not ctx.options.deterministic:
        # Seeding does not help: the CPU and CUDA generators draw different numbers from one seed.
        ctx.skip("the target declares deterministic=False: CPU and CUDA outputs of a random module differ")
    with eval_mode(ctx.obj):
        expected = call_module(ctx, ctx.obj)
    clone = _copy(ctx).to(device)
    inputs, kwargs = _arguments_on(ctx, device, ctx.device)
    what = f"m.to({ctx.device!r})({args_text(ctx)} on {ctx.device})"
    with _tf32_off(torch), eval_mode(clone, "copy.deepcopy(m)"):
        output = ctx.call(what, clone, *inputs, **kwargs)
    tolerance = ctx.options.parity_tolerance
    on_cpu = ctx.call(f"<the output of {what}>.to('cpu')", on_device, output, torch.device("cpu"))
    found = close_difference(on_cpu, expected, tolerance=tolerance)
    if found:
        within = (
            "torch.testing.assert_close's default tolerances for the dtype"
            if tolerance is None
            else f"the target's parity_tolerance (rtol={tolerance[0]}, atol={tolerance[1]})"
        )
        ctx.fail(
            f"on {ctx.device} the output differs from the CPU output ({found}); expected agreement "
            f"within {within} (TF32 off; a deep model may need a looser parity_tolerance=(rtol, atol))",
            reproduce=f"m({args_text(ctx)}) vs {what}",
        )


BACKWARD_OF_SUM = "sum(t.sum() for t in <floating-point outputs>).backward()"


def _gradients(ctx: Context, module: Any, inputs: Any, kwargs: Any, what: str) -> tuple[Any, dict[str, Any]]:
    """The output of ``module(*inputs, **kwargs)`` in eval mode and the gradients its parameters get
    from a backward pass of the sum of its floating-point outputs (``{name: grad}``, None ones left out)."""
    for _, parameter in module.named_parameters():
        parameter.grad = None  # a copy may carry the gradients m had
    with eval_mode(module, "copy.deepcopy(m)"):
        output = ctx.call(what, module, *inputs, **kwargs)
    tracked = [leaf for _, leaf in _float_leaves(output) if leaf.requires_grad]
    ctx.call(f"{BACKWARD_OF_SUM} after {what}", _backward_of_sum, tensor_module(), tracked)
    grads = {
        name: parameter.grad.detach().clone()
        for name, parameter in module.named_parameters()
        if parameter.grad is not None
    }
    return output, grads


@register_check(
    protocol=Module,
    severity="recommended",
    needs=("torch", "example_inputs", "accelerator"),
    requires=(deepcopy_is_independent, eval_is_deterministic),
    per_device=True,
    per_dtype=True,
    since="0.1.0",
)
@preserving_module
def device_round_trip(ctx: Context) -> None:
    """On a CUDA device, the parameters' gradients from a backward pass agree with the CPU ones (within
    assert_close's tolerances or parity_tolerance, TF32 off), and a copy moved to the device and back
    gives the CPU outputs again."""
    torch = _torch_module(ctx)
    device = torch.device(ctx.device)
    if not ctx.options.deterministic:
        ctx.skip("the target declares deterministic=False: CPU and CUDA outputs of a random module differ")
    call = args_text(ctx)
    on_cpu = _copy(ctx)
    _, expected_grads = _gradients(
        ctx, on_cpu, fresh_inputs(ctx), fresh_kwargs(ctx), f"copy.deepcopy(m)({call})"
    )
    with eval_mode(ctx.obj):
        expected = call_module(ctx, ctx.obj)
    moved = _copy(ctx)
    ctx.call(f"copy.deepcopy(m).to({ctx.device!r})", moved.to, device)
    inputs, kwargs = _arguments_on(ctx, device, ctx.device)
    what = f"m.to({ctx.device!r})({call} on {ctx.device})"
    with _tf32_off(torch):
        _, grads = _gradients(ctx, moved, inputs, kwargs, what)
    tolerance = ctx.options.parity_tolerance
    cpu = torch.device("cpu")
    for name, expected_grad in expected_grads.items():
        grad = grads.get(name)
        found = (
            "no gradient on the device"
            if grad is None
            else close_difference(grad.to(cpu), expected_grad, tolerance=tolerance)
        )
        if found:
            ctx.fail(
                f"after {BACKWARD_OF_SUM}, the gradient of {name!r} on {ctx.device} differs from the CPU "
                f"one ({found}); expected agreement within assert_close's tolerances or the target's "
                "parity_tolerance (TF32 off; a custom backward with a device-dependent path shows here)",
                reproduce=f"<grads of {what}> vs <grads of m({call})>",
            )
    ctx.call(f"copy.deepcopy(m).to({ctx.device!r}).to('cpu')", moved.to, cpu)
    back = f"copy.deepcopy(m).to({ctx.device!r}).to('cpu')({call})"
    with eval_mode(moved, "copy.deepcopy(m)"):
        output = ctx.call(back, moved, *fresh_inputs(ctx), **fresh_kwargs(ctx))
    found = close_difference(output, expected)
    if found:
        ctx.fail(
            f"{back} differs from m({call}) ({found}); expected the CPU outputs again (the round trip "
            "copies every parameter and buffer exactly: state lost or recomputed by a device move, in an "
            "_apply override say, shows here)",
            reproduce=f"{back} == m({call})",
        )


# ----------------------------------------------------------------------------------------------------
# training and dtypes (torch modules only)


def _float_leaves(output: Any) -> list[tuple[str, Any]]:
    """(path, tensor) for every floating-point or complex tensor leaf of an output."""
    return [
        (path, leaf)
        for path, leaf in leaves(output)
        if is_tensor(leaf) and (leaf.is_floating_point() or leaf.is_complex())
    ]


def _backward_of_sum(torch: Any, tensors: list[Any]) -> None:
    """``sum(t.sum() for t in tensors).backward()``; a complex leaf counts by its real and imaginary
    parts (a complex scalar has no backward of its own)."""
    total = None
    for tensor in tensors:
        part = torch.view_as_real(tensor).sum() if tensor.is_complex() else tensor.sum()
        total = part if total is None else total + part
    if total is not None:
        total.backward()


def _listed(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(name) for name in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


@register_check(
    protocol=Module,
    severity="required",
    needs=("torch", "example_inputs"),
    requires=(deepcopy_is_independent,),
    per_dtype=True,
    since="0.1.0",
)
@preserving_module
def backward_reaches_parameters(ctx: Context) -> None:
    """In train mode, a backward pass from the sum of the floating-point outputs gives every parameter
    with requires_grad a gradient (unless the target declares unused_parameters=True)."""
    torch = _torch_module(ctx)
    clone = _copy(ctx)
    named = list(ctx.call("clone.named_parameters()", lambda: list(clone.named_parameters())))
    trainable = [(name, p) for name, p in named if is_tensor(p) and p.requires_grad]
    if not trainable:
        ctx.skip("the module has no parameter with requires_grad=True")
    ctx.call("clone.train()", clone.train)
    what = f"copy.deepcopy(m).train()({args_text(ctx)})"
    with _seeded(ctx):
        output = ctx.attempt(what, clone, *fresh_inputs(ctx), **fresh_kwargs(ctx))
    if isinstance(output, Exception):
        ctx.skip(
            f"{what} raised {type(output).__name__}: {_first_line(output)}, so the example inputs "
            "cannot drive a training step (give inputs that work in train mode, e.g. a batch of more "
            "than one sample for BatchNorm)"
        )
    floats = _float_leaves(output)
    if not floats:
        ctx.skip("the output has no floating-point tensor to take a backward pass from")
    tracked = [leaf for _, leaf in floats if leaf.requires_grad]
    loss = BACKWARD_OF_SUM
    ctx.call(loss, _backward_of_sum, torch, tracked)
    unreached = [name for name, parameter in trainable if parameter.grad is None]
    if not unreached:
        return
    summary = f"{_listed(unreached)} ({len(unreached)} of {len(trainable)} trainable parameters)"
    if ctx.options.unused_parameters:
        ctx.note(f"no gradient for {summary}: declared unused_parameters=True")
        return
    ctx.fail(
        f"after {what} and {loss}, parameter(s) {summary} have .grad None; expected every parameter "
        "with requires_grad to receive a gradient (DistributedDataParallel waits for each one: the "
        "next iteration raises 'Expected to have finished reduction in the prior iteration' unless "
        "it is built with find_unused_parameters=True; freeze such parameters with "
        "requires_grad_(False), or declare unused_parameters=True for a branch unused by design)",
        reproduce=(
            f"c = copy.deepcopy(m).train(); out = c({args_text(ctx)}); <sum of out's floating-point "
            "tensors>.backward(); [n for n, p in c.named_parameters() if p.requires_grad and p.grad is None]"
        ),
    )


def _output_with(value: Any, convert: Any) -> Any | None:
    """``value`` with ``convert(t)`` in place of every tensor ``t``, also inside objects compared by their
    attributes (a ``torch.distributions.Normal`` output's ``loc``): rebuilt through the one traversal of
    values, whose mapping order does not count in a comparison. None when it cannot be rebuilt so (a
    cycle, an object that cannot be rebuilt from its attributes)."""
    spec, found = flatten(value, objects=True)
    converted = [convert(leaf) if is_tensor(leaf) else leaf for leaf in found]
    try:
        return unflatten(spec, converted)
    except (TypeError, ValueError):
        return None


def _compared_in(value: Any, dtype: Any) -> Any:
    """``value`` with every floating-point tensor converted to ``dtype`` for a comparison (see
    :func:`_output_with`); a value that cannot be rebuilt so is converted in its containers only."""
    converted = _output_with(value, lambda leaf: leaf.to(dtype) if leaf.is_floating_point() else leaf)
    return in_dtype(value, dtype) if converted is None else converted


def _frozen(output: Any) -> Any:
    """``output`` with a copy of each tensor's current values in its place (see :func:`_output_with`):
    an output that holds one of the module's own tensors (``return self.weight``, a distribution built
    from ``self.loc``) does not follow a later in-place change of that tensor. A value that cannot be
    rebuilt so is kept as it is."""
    frozen = _output_with(output, _copy_or_same)
    return output if frozen is None else frozen


def _copy_or_same(tensor: Any) -> Any:
    """A copy of ``tensor``'s values, or ``tensor`` itself when its type cannot be cloned."""
    copied = _clone(tensor)
    return tensor if copied is None else copied


# float32 against float64 (the rounding of float32 through a few layers, not a bug): looser than
# assert_close's float32 defaults (rtol=1.3e-6, atol=1e-5), as torch's own test_cpu_gpu_parity is.
DTYPE_TOLERANCE = (1e-3, 1e-4)


@register_check(
    protocol=Module,
    severity="recommended",
    needs=("torch", "example_inputs"),
    requires=(deepcopy_is_independent, eval_is_deterministic),
    since="0.1.0",
)
@preserving_module
def to_dtype(ctx: Context) -> None:
    """m.to(torch.float64) returns m, converts every floating-point parameter and buffer to float64
    (integer ones keep their dtype), and with float64 inputs the outputs are float64 and close to the
    float32 outputs."""
    torch = _torch_module(ctx)
    double = torch.float64
    named = ctx.call(
        "m.named_parameters(), m.named_buffers()",
        lambda: [*ctx.obj.named_parameters(), *ctx.obj.named_buffers()],
    )
    if not any(tensor.dtype == torch.float32 for _, tensor in named):
        ctx.skip("the module has no float32 parameter or buffer to convert")
    before = {name: tensor.dtype for name, tensor in named}
    clone = _copy(ctx)
    returned = ctx.call("copy.deepcopy(m).to(torch.float64)", clone.to, double)
    if returned is not clone:
        ctx.fail(
            f"m.to(torch.float64) returned {describe(returned)}; expected the module itself",
            reproduce="m.to(torch.float64) is m",
        )
    converted = ctx.call(
        "clone.named_parameters(), clone.named_buffers()",
        lambda: [*clone.named_parameters(), *clone.named_buffers()],
    )
    for name, tensor in converted:
        old = before.get(name)
        if old is None or old.is_complex:  # complex ones lose their imaginary part (torch warns)
            continue
        expected = double if old.is_floating_point else old
        if tensor.dtype != expected:
            ctx.fail(
                f"after m.to(torch.float64), {name!r} is {tensor.dtype} (it was {old}); expected "
                f"{expected} (Module.to converts floating-point parameters and buffers, and keeps "
                "integer ones)",
                reproduce=f"m.to(torch.float64); m.state_dict()[{name!r}].dtype",
            )
    with eval_mode(ctx.obj), _seeded(ctx):
        expected_output = call_module(ctx, ctx.obj)
    inputs, kwargs = ctx.call(
        "<the example inputs and kwargs>.to(torch.float64)",
        lambda: (in_dtype(fresh_inputs(ctx), double), in_dtype(fresh_kwargs(ctx), double)),
    )
    what = f"copy.deepcopy(m).to(torch.float64)({args_text(ctx)} in float64)"
    with eval_mode(clone, "copy.deepcopy(m)"), _seeded(ctx):
        output = ctx.attempt(what, clone, *inputs, **kwargs)
    reproduce = f"m.to(torch.float64)(*[x.double() for x in inputs]) vs m({args_text(ctx)})"
    if isinstance(output, Exception):
        ctx.fail(
            f"{what} raised {type(output).__name__}: {_first_line(output)}; expected the module to "
            "run in float64 once converted (a cast to a fixed dtype in forward, such as x.float(), or a "
            "float32 tensor that .to() does not convert breaks .double() and .half() alike)",
            reproduce=reproduce,
        )
    kept = [  # leaf by leaf in order: a structure that differs is compared below
        (path, leaf.dtype)
        for (path, leaf), (_, was) in zip(_float_leaves(output), _float_leaves(expected_output), strict=False)
        if was.dtype == torch.float32 and leaf.dtype != double
    ]
    if kept:
        path, dtype = kept[0]
        ctx.fail(
            f"{what}: output{path} is {dtype}; expected float64 (a float32 output of the float32 "
            "module is float64 once module and inputs are float64: a tensor created in forward "
            "without dtype= stays float32)",
            reproduce=reproduce,
        )
    if not ctx.options.deterministic:
        ctx.note("deterministic=False: only the dtypes of the float64 outputs were compared")
        return
    found = close_difference(
        _compared_in(output, double), _compared_in(expected_output, double), tolerance=DTYPE_TOLERANCE
    )
    if not found:
        return
    decision = _diverging_decision(ctx, torch, clone)
    if decision is None:
        ctx.fail(
            f"{what} differs from m({args_text(ctx)}) ({found}); expected "
            f"agreement within rtol={DTYPE_TOLERANCE[0]}, atol={DTYPE_TOLERANCE[1]} (float64 computes "
            "the same function, more precisely, and both runs took the same discrete decisions)",
            reproduce=reproduce,
        )
    shape = _structure_difference(_compared_in(output, double), _compared_in(expected_output, double))
    if shape:
        ctx.fail(
            f"{what} differs from m({args_text(ctx)}) in {shape}; expected outputs of the same structure",
            reproduce=reproduce,
        )
    ctx.note(
        f"the float64 outputs differ from the float32 ones ({found}), but the two runs took different "
        f"discrete decisions first ({decision}: a sort, top-k, argmax or threshold over values that tie or "
        "nearly tie in float32), so only their structure and dtypes were compared"
    )


# The ops that compute a step function of floating-point values with a floating-point result (integer
# valued): decisions, like every op that makes an integer or bool tensor from floating-point ones.
_STEP_OPS = frozenset({"floor", "ceil", "round", "trunc", "sign", "floor_divide", "histc"})
# How much of a run's decisions is recorded (a comparison mask per layer of a big model adds up).
_MAX_DECISIONS = 100_000
_MAX_DECISION_BYTES = 256 << 20

Decision = tuple[str, tuple[Any, ...]]


def _decisions(torch: Any, module: Any, inputs: Any, kwargs: Any) -> list[Decision]:
    """The discrete decisions of ``module(*inputs, **kwargs)``, in the order torch's dispatcher runs
    them: (op, its integer or bool outputs) for every op with a floating-point tensor input and such an
    output (a comparison, ``argmax``, ``sort``/``topk`` indices, a cast to an integer dtype, torchvision's
    ``nms``), and (op, its output) for the step functions of :data:`_STEP_OPS`."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    found: list[Decision] = []
    left = [_MAX_DECISION_BYTES]

    def floating(tensor: Any) -> bool:
        return bool(tensor.is_floating_point() or tensor.is_complex())

    class Recorder(TorchDispatchMode):  # type: ignore[no-untyped-call]  # torch's mode is untyped
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            if left[0] <= 0 or len(found) >= _MAX_DECISIONS:
                return out
            given = [leaf for leaf in tree_leaves((args, kwargs)) if isinstance(leaf, torch.Tensor)]
            if not any(floating(tensor) for tensor in given):
                return out
            made = [leaf for leaf in tree_leaves(out) if isinstance(leaf, torch.Tensor)]
            decided = [tensor for tensor in made if not floating(tensor)]
            if not decided and func.overloadpacket.__name__.rstrip("_") in _STEP_OPS:
                decided = made
            if decided:
                # "aten.topk", "torchvision.nms": the op's namespace and name
                found.append((str(func.overloadpacket), tuple(tensor.detach().clone() for tensor in decided)))
                left[0] -= sum(tensor.numel() * tensor.element_size() for tensor in decided)
            return out

    with Recorder():  # type: ignore[no-untyped-call]
        module(*inputs, **kwargs)
    return found


def _diverging_decision(ctx: Context, torch: Any, clone: Any) -> str | None:
    """Where m (in float32) and ``clone`` (in float64) first take different discrete decisions on the
    example inputs: the op, numbered by its place among the decisions, whose integer outputs differ
    (the two runs then compute on different branches, and their outputs differ by design); None when
    they take the same decisions, or their paths part some other way (another op), or the runs cannot
    be recorded."""
    double = torch.float64
    recorded = []
    for name, module, convert in (("m", ctx.obj, False), ("copy.deepcopy(m)", clone, True)):
        inputs, kwargs = fresh_inputs(ctx), fresh_kwargs(ctx)
        if convert:
            inputs, kwargs = in_dtype(inputs, double), in_dtype(kwargs, double)
        with eval_mode(module, name), _seeded(ctx):
            run = ctx.attempt(
                f"{name}({args_text(ctx)}) (its discrete decisions recorded)",
                _decisions,
                torch,
                module,
                inputs,
                kwargs,
            )
        if isinstance(run, Exception):
            return None
        recorded.append(run)
    for number, ((op, made), (other_op, other)) in enumerate(zip(*recorded, strict=False), start=1):
        if op != other_op:
            return None
        if len(made) != len(other) or not all(
            _same_decision(one, two) for one, two in zip(made, other, strict=True)
        ):
            return f"decision {number}, {op}"
    return None


def _same_decision(one: Any, two: Any) -> bool:
    if one.shape != two.shape:
        return False
    if one.is_floating_point():  # a step function's integer values
        return bool((one.double() == two.double()).all())
    return bool((one == two.to(one.dtype)).all())


# ----------------------------------------------------------------------------------------------------
# functional calls, construction on the meta device, compilation (torch modules only)


def _tensors_by_name(module: Any) -> dict[str, Any]:
    """``{name: tensor}`` for every parameter and buffer of a torch module (each name once, as
    ``named_parameters``/``named_buffers`` give them: a tied tensor under its first name)."""
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


def _is_floating(tensor: Any) -> bool:
    return bool(tensor.is_floating_point() or tensor.is_complex())


FUNCTIONAL_CALL = "torch.func.functional_call"


@register_check(
    protocol=Module,
    severity="recommended",
    needs=("torch", "example_inputs"),
    requires=(deepcopy_is_independent, eval_is_deterministic),
    per_dtype=True,
    since="0.1.0",
)
@preserving_module
def functional_call_matches_call(ctx: Context) -> None:
    """torch.func.functional_call(m, state, inputs) computes what m computes holding ``state``: with m's
    own parameters and buffers it equals m(*inputs), and with changed ones it equals m with its own
    tensors changed the same way in place (then put back)."""
    torch = _torch_module(ctx)
    from torch.func import functional_call

    own = ctx.call("m.named_parameters(), m.named_buffers()", _tensors_by_name, ctx.obj)
    if not any(_is_floating(tensor) for tensor in own.values()):
        ctx.skip("the module has no floating-point parameter or buffer to pass to functional_call")
    call = args_text(ctx)
    # Outputs are kept as values (_frozen): m's tensors are changed in place below, and an output may
    # hold one of them (return self.weight, a distribution built from self.loc).
    with eval_mode(ctx.obj), _seeded(ctx):
        expected = _frozen(call_module(ctx, ctx.obj))
    what = f"{FUNCTIONAL_CALL}(m, dict(m.named_parameters()) | dict(m.named_buffers()), inputs)"
    with eval_mode(ctx.obj), _seeded(ctx):
        swapped = ctx.attempt(
            what, functional_call, ctx.obj, own, tuple(fresh_inputs(ctx)), fresh_kwargs(ctx)
        )
    if isinstance(swapped, Exception):
        ctx.fail(
            f"{what} raised {type(swapped).__name__}: {_first_line(swapped)}; expected the output of "
            f"m({call}) (torch.func's transforms call modules this way: model ensembles under vmap, "
            "per-sample gradients, meta-learning)",
            reproduce="torch.func.functional_call(m, {**dict(m.named_parameters()), "
            "**dict(m.named_buffers())}, tuple(inputs))",
        )
    found = close_difference(swapped, expected)
    if found:
        ctx.fail(
            f"{what} differs from m({call}) ({found}){_seeded_note(ctx)}; expected equal outputs (the "
            "same tensors, passed explicitly)",
            reproduce=(
                f"torch.func.functional_call(m, dict(m.named_parameters()), tuple(inputs)) == m({call})"
            ),
        )
    # The same change twice: passed to functional_call on m, and made in place on m itself (then
    # undone) for the output m computes holding the changed tensors. A tensor the forward reads
    # through a reference of its own (a tuple of weights kept for a fused kernel, a view of a weight
    # kept from __init__) follows the second and ignores the first. m itself, not a deep copy: a
    # deep copy does not keep a view a view of its base.
    # Each changed tensor asks for gradients as its original does: torch takes other code paths for
    # tensors that do not (nn.TransformerEncoderLayer's fused fast path), whose numerics differ.
    # A tensor subclass without the ops of the change (a quantized weight: no aten.add, no clone) is
    # left as it is on both sides.
    changed = dict(own)
    kept: list[str] = []
    changed_in_place: list[tuple[Any, Any]] = []  # (tensor, its values before), to be put back
    try:
        with torch.no_grad():
            for name, tensor in own.items():
                if not _is_floating(tensor):
                    continue
                shifted = _shifted(tensor)
                before = None if shifted is None else _clone(tensor)
                if before is None or not _perturb(tensor):
                    kept.append(name)
                    continue
                changed_in_place.append((tensor, before))
                changed[name] = shifted
        if not changed_in_place:
            ctx.note(
                f"no floating-point tensor of m could be raised by 0.5 ({', '.join(kept[:3])}): only "
                "m's own state was passed to functional_call"
            )
            return
        with eval_mode(ctx.obj), _seeded(ctx):
            reference = ctx.attempt(
                f"m({call}) with its tensors + 0.5", ctx.obj, *fresh_inputs(ctx), **fresh_kwargs(ctx)
            )
        if not isinstance(reference, Exception):
            reference = _frozen(reference)
    finally:
        with torch.no_grad(), object_call("<m's tensors put back after adding 0.5 to them in place>"):
            for tensor, before in changed_in_place:
                tensor.copy_(before)
    if kept:
        shown = ", ".join(kept[:3]) + (", ..." if len(kept) > 3 else "")
        ctx.note(f"left unchanged (their tensor type cannot add 0.5): {shown}")
    what = f"{FUNCTIONAL_CALL}(m, <m's tensors + 0.5>, inputs)"
    with eval_mode(ctx.obj), _seeded(ctx):
        swapped = ctx.attempt(
            what, functional_call, ctx.obj, changed, tuple(fresh_inputs(ctx)), fresh_kwargs(ctx)
        )
    if isinstance(reference, Exception):
        ctx.note(
            f"with its floating-point tensors raised by 0.5, m({call}) raised "
            f"{type(reference).__name__}: only m's own state was passed to functional_call"
        )
        return
    if isinstance(swapped, Exception):
        ctx.fail(
            f"{what} raised {type(swapped).__name__}: {_first_line(swapped)}, while m holding those "
            "tensors returns; expected the output of m holding them",
            reproduce="changed = {n: t.detach() + 0.5 for n, t in {**dict(m.named_parameters()), "
            "**dict(m.named_buffers())}.items()}; torch.func.functional_call(m, changed, tuple(inputs))",
        )
    found = close_difference(swapped, reference)
    if found:
        ignored = close_difference(swapped, expected) is None
        cause = (
            "it returned m's own output: the forward reads the tensors through references that "
            "functional_call does not swap (a tuple or list of parameters kept for a fused call, "
            "refreshed only in _apply or __init__; read them from the module in forward, or refresh "
            "them in __setattr__ as nn.RNNBase does)"
            if ignored
            else "the forward reads part of its state through references functional_call does not swap "
            "(a view of a weight kept from __init__, such as self.weight_t = self.weight.detach().t(), or "
            "a tuple of some parameters: read them from the module in forward)"
        )
        ctx.fail(
            f"{what} differs from m({call}) with the same tensors changed in place ({found}); expected "
            f"equal outputs: {cause}",
            reproduce="changed = {n: t.detach() + 0.5 for n, t in {**dict(m.named_parameters()), "
            "**dict(m.named_buffers())}.items()}; torch.func.functional_call(m, changed, tuple(inputs)) "
            f"== <m({call}) after adding 0.5 to those tensors in place>",
        )


def _shifted(tensor: Any) -> Any:
    """``tensor + 0.5``, detached, asking for gradients as ``tensor`` does; None when its type has no
    such op (a quantized tensor subclass)."""
    try:
        return (tensor.detach() + 0.5).requires_grad_(tensor.requires_grad)
    except Exception:
        return None


def _clone(tensor: Any) -> Any:
    try:
        return tensor.detach().clone()
    except Exception:
        return None


def _shared_with(built: dict[str, Any], names: list[str], own: dict[str, Any]) -> str:
    """Which of ``names`` (tensors of the built module) share memory with a tensor of m: the factory
    captured it; "" when none does."""
    memory: dict[int, str] = {}
    for name, tensor in own.items():
        memory.setdefault(_memory_address(tensor), name)
    memory.pop(0, None)  # no memory (a meta tensor), or none that can be read
    shared = [
        f"built's {name!r} shares memory with m's {memory[address]!r}"
        for name in names
        if (address := _memory_address(built[name])) in memory
    ]
    return ", ".join(shared[:3])


def _memory_address(tensor: Any) -> int:
    """Where a tensor's storage starts; 0 when it has none that can be read (a tensor subclass)."""
    try:
        return int(tensor.untyped_storage().data_ptr())
    except Exception:
        return 0


def _uninitialised(torch: Any, tensor: Any) -> None:
    """Stand-in for the values ``to_empty`` leaves (whatever the allocator gives): NaN in floating-point
    tensors, so that a tensor nothing initialises afterwards shows, the same way on every run."""
    if _is_floating(tensor):
        with torch.no_grad():
            tensor.fill_(float("nan"))


@register_check(
    protocol=Module,
    severity="recommended",
    needs=("torch", "example_inputs", "factory"),
    requires=(state_dict_round_trip, eval_is_deterministic),
    since="0.1.0",
)
@preserving_module
def builds_on_meta_device(ctx: Context) -> None:
    """The target's factory, under ``torch.device('meta')``, builds the module with every parameter and
    buffer on meta; after ``to_empty(device='cpu')`` (its values uninitialised), ``reset_parameters()``
    on every submodule that has one and ``load_state_dict(m.state_dict())``, it computes m's outputs."""
    torch = _torch_module(ctx)
    factory = ctx.options.factory
    if factory is None:  # the engine skips the check first (it needs "factory"): this narrows the type
        ctx.skip(FACTORY_OFF)
    build = "with torch.device('meta'): built = factory()"
    with torch.device("meta"):
        built = ctx.attempt(build, factory)
    if isinstance(built, Exception):
        ctx.fail(
            f"{build} raised {type(built).__name__}: {_first_line(built)}; expected construction to "
            "need no tensor data (FSDP, torchtitan and large-model loading build the module on meta, "
            "then allocate and initialise it: .item(), .tolist() or a NumPy conversion of a tensor in "
            "__init__ fails there)",
            reproduce=build,
        )
    if not isinstance(built, torch.nn.Module):
        ctx.fail(f"{build} gave {describe(built)}; expected a torch.nn.Module", reproduce=f"type({build})")
    tensors = ctx.call("built.named_parameters(), built.named_buffers()", _tensors_by_name, built)
    allocated = [name for name, tensor in tensors.items() if tensor.device.type != "meta"]
    if allocated:
        own = ctx.call("m.named_parameters(), m.named_buffers()", _tensors_by_name, ctx.obj)
        shared = _shared_with(tensors, allocated, own)
        also = f"; {shared}" if shared else ""
        it = "it" if len(allocated) == 1 else "them"
        ctx.fail(
            f"{build} put {_listed(allocated)} on {tensors[allocated[0]].device}; expected every "
            f"parameter and buffer on meta (likely cause: the factory creates {it} with an explicit "
            "device, such as device='cpu', .to('cpu') or .cpu(), or captures a tensor that already exists: "
            "one made outside the factory, a pretrained weight passed in, a copy of a built module, or "
            f"one converted from NumPy with torch.from_numpy{also}; such a tensor allocates memory during "
            "the construction meant to allocate none)",
            reproduce=f"{build}; [n for n, t in built.state_dict().items() if not t.is_meta]",
        )
    ctx.call("built.to_empty(device='cpu')", built.to_empty, device="cpu")
    for tensor in ctx.call(
        "built.named_parameters(), built.named_buffers()", _tensors_by_name, built
    ).values():
        _uninitialised(torch, tensor)
    reset: list[str] = []
    for name, sub in ctx.call("built.named_modules()", lambda: list(built.named_modules())):
        method = getattr(sub, "reset_parameters", None)
        if callable(method):
            ctx.call(f"built.get_submodule({name!r}).reset_parameters()", method)
            reset.append(name)
    state = ctx.call("m.state_dict()", ctx.obj.state_dict)
    ctx.call("built.load_state_dict(m.state_dict())", built.load_state_dict, state)
    call = args_text(ctx)
    with eval_mode(ctx.obj), _seeded(ctx):
        expected = call_module(ctx, ctx.obj)
    with eval_mode(built, "built"), _seeded(ctx):
        output = ctx.attempt(f"built({call})", built, *fresh_inputs(ctx), **fresh_kwargs(ctx))
    loaded = set(state)
    unset = [
        name
        for name, tensor in ctx.call(
            "built.named_parameters(), built.named_buffers()", _tensors_by_name, built
        ).items()
        if name not in loaded and _is_floating(tensor) and bool(torch.isnan(tensor).any())
    ]
    found = (
        f"it raised {type(output).__name__}: {_first_line(output)}"
        if isinstance(output, Exception)
        else close_difference(output, expected)
    )
    if found is None:
        return
    cause = (
        f"{_listed(unset)} still {'holds' if len(unset) == 1 else 'hold'} the uninitialised values "
        "to_empty left: the state dict does not hold them and no reset_parameters() recomputes them "
        "(recompute them in reset_parameters() of their submodule)"
        if unset
        else "a value that construction computed is lost by to_empty and not in the state dict, or "
        "reset_parameters() does not restore it"
    )
    ctx.fail(
        f"after {build}; built.to_empty(device='cpu'); reset_parameters() on "
        f"{len(reset)} submodule(s); built.load_state_dict(m.state_dict()), built({call}) differs from "
        f"m({call}) ({found}){_seeded_note(ctx)}; expected equal outputs ({cause}: FSDP's and "
        "torchtitan's meta-device initialisation do exactly these steps)",
        reproduce=(
            f"{build}; built.to_empty(device='cpu'); [s.reset_parameters() for s in built.modules() if "
            "hasattr(s, 'reset_parameters')]; built.load_state_dict(m.state_dict()); "
            f"built({call}) == m({call})"
        ),
    )


# The backends of module.compile_matches_eager: "aot_eager" runs the graphs TorchDynamo captures
# through AOTAutograd's tracing and decompositions (what torch.compile's default backend sees, without
# inductor's generated code and its compiler); "eager" runs them as captured, and is compiled only
# after a difference, to say which stage makes it (one compile instead of two when the module passes).
COMPILE_BACKEND = "aot_eager"
DYNAMO_ONLY_BACKEND = "eager"


def _reset_compiler() -> None:
    """Drop TorchDynamo's caches (if it was ever imported): each compile starts afresh, and the
    compiled code does not outlive the check (nor count towards the recompilation limit of the next)."""
    dynamo = sys.modules.get("torch._dynamo")
    if dynamo is not None:
        dynamo.reset()


@register_check(
    protocol=Module,
    severity="required",
    needs=("torch", "example_inputs", "compile"),
    requires=(deepcopy_is_independent, eval_is_deterministic),
    per_dtype=True,
    since="0.1.0",
)
@preserving_module
def compile_matches_eager(ctx: Context) -> None:
    """With the declaration compile=True: torch.compile of a deep copy with the "aot_eager" backend
    returns the eager outputs in eval mode (within assert_close's tolerances); on a difference, the
    "eager" backend says whether TorchDynamo's capture or AOTAutograd makes it."""
    torch = _torch_module(ctx)
    call = args_text(ctx)
    with eval_mode(ctx.obj), _seeded(ctx):
        expected = call_module(ctx, ctx.obj)
    found = _compiled_difference(ctx, torch, COMPILE_BACKEND, expected)
    if found is None:
        return
    dynamo_only = _compiled_difference(ctx, torch, DYNAMO_ONLY_BACKEND, expected)
    if dynamo_only is None:
        where = (
            f"; with backend={DYNAMO_ONLY_BACKEND!r} (TorchDynamo's graphs run as captured) it matches, "
            "so the difference comes from AOTAutograd's tracing"
        )
        backend = COMPILE_BACKEND
    else:  # TorchDynamo's capture: the cause, named as such
        where = f" (with backend={COMPILE_BACKEND!r} too)"
        backend, found = DYNAMO_ONLY_BACKEND, dynamo_only
    what = _compiled_call(backend, call)
    reproduce = f"torch.compile(copy.deepcopy(m).eval(), backend={backend!r})({call}) vs m.eval()({call})"
    if isinstance(found, Exception):
        ctx.fail(
            f"{what} raised {type(found).__name__}: {_first_line(found)}{where}; expected the eager "
            "output (TorchDynamo falls back to Python where it cannot capture a graph, so an error "
            "here is one the compiled module raises in training too)",
            reproduce=reproduce,
        )
    ctx.fail(
        f"{what} differs from m({call}) ({found}){where}{_seeded_note(ctx)}; expected the eager output "
        "(a code path taken only under compilation, torch.compiler.is_compiling(), or Python "
        "state read in forward that the compiled graph captured as a constant)",
        reproduce=reproduce,
    )


def _compiled_call(backend: str, call: str) -> str:
    return f"torch.compile(copy.deepcopy(m), backend={backend!r})({call})"


def _compiled_difference(ctx: Context, torch: Any, backend: str, expected: Any) -> str | Exception | None:
    """How ``torch.compile(copy.deepcopy(m), backend=backend)`` in eval mode differs from ``expected``
    (the eager outputs): a description, the exception it raised, or None."""
    clone = _copy(ctx)
    what = _compiled_call(backend, args_text(ctx))
    _reset_compiler()
    try:
        compiled = ctx.call(
            f"torch.compile(copy.deepcopy(m), backend={backend!r})", torch.compile, clone, backend=backend
        )
        with eval_mode(clone, "copy.deepcopy(m)"), _seeded(ctx):
            output = ctx.attempt(what, compiled, *fresh_inputs(ctx), **fresh_kwargs(ctx))
    finally:
        _reset_compiler()
    if isinstance(output, Exception):
        return output
    if ctx.options.deterministic:
        return close_difference(output, expected)
    return _structure_difference(output, expected)


def _structure_difference(output: Any, expected: Any) -> str | None:
    """How two outputs of a random module differ in what stays deterministic: structure and dtypes."""
    if structure(output) == structure(expected):
        return None
    return f"structure {describe_structure(output)} vs {describe_structure(expected)}"


def _opaque_output(torch: Any, output: Any) -> str | None:
    """The type of the first leaf of ``output`` that torch.export cannot return (an object that is not a
    tensor, a Python scalar or None, nor a registered pytree node: a distribution), or None."""
    try:
        found = torch.utils._pytree.tree_leaves(output)
    except Exception:
        return None
    for leaf in found:
        if not isinstance(leaf, (torch.Tensor, bool, int, float, complex, str, type(None))):
            kind = type(leaf)
            return f"a {kind.__module__}.{kind.__qualname__}"
    return None


@register_check(
    protocol=Module,
    severity="required",
    needs=("torch", "example_inputs", "export"),
    requires=(deepcopy_is_independent, eval_is_deterministic),
    per_dtype=True,
    since="0.1.0",
)
@preserving_module
def export_matches_eager(ctx: Context) -> None:
    """With the declaration export=True: torch.export.export of a deep copy in eval mode, with the
    example inputs, succeeds, and the exported program's module returns the eager outputs."""
    torch = _torch_module(ctx)
    call = args_text(ctx)
    with eval_mode(ctx.obj), _seeded(ctx):
        expected = call_module(ctx, ctx.obj)
    clone = _copy(ctx)
    ctx.call("clone.eval()", clone.eval)
    keywords = ", kwargs" if ctx.example_kwargs else ""
    what = f"torch.export.export(copy.deepcopy(m).eval(), tuple(inputs){keywords})"
    # torch's own modules warn while they export (nn.GRU: "tensor attributes ... were assigned during
    # export"): what the tracer says is kept as a note, not printed into the user's run.
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        try:
            program = ctx.attempt(
                what, torch.export.export, clone, tuple(fresh_inputs(ctx)), fresh_kwargs(ctx)
            )
        finally:
            _reset_compiler()
    if said:
        first = str(said[0].message).strip().splitlines()
        more = f" (and {len(said) - 1} more)" if len(said) > 1 else ""
        ctx.note(f"torch.export warned: {first[0] if first else said[0].category.__name__}{more}")
    if isinstance(program, Exception):
        opaque = _opaque_output(torch, expected)
        cause = (
            f"m({call}) returns {opaque}, which is not a pytree of tensors: torch.export's outputs must "
            "be (register the type with torch.utils._pytree.register_pytree_node, or return its tensors)"
            if opaque is not None
            else "a Python branch on a tensor's value, .item() or .tolist() in forward needs torch.cond "
            "or torch._check"
        )
        ctx.fail(
            f"{what} raised {type(program).__name__}: {_first_line(program)}; expected the module to "
            f"export (ExecuTorch, AOTInductor and ONNX's dynamo exporter start from torch.export: {cause})",
            reproduce=what,
        )
    exported = f"{what}.module()({call})"
    with _seeded(ctx):
        output = ctx.attempt(exported, lambda: program.module()(*fresh_inputs(ctx), **fresh_kwargs(ctx)))
    reproduce = f"{exported} vs m.eval()({call})"
    if isinstance(output, Exception):
        ctx.fail(
            f"{exported} raised {type(output).__name__}: {_first_line(output)}; expected the eager output",
            reproduce=reproduce,
        )
    found = (
        close_difference(output, expected)
        if ctx.options.deterministic
        else _structure_difference(output, expected)
    )
    if found:
        ctx.fail(
            f"{exported} differs from m({call}) ({found}); expected the eager output (export traces one "
            "path for the example inputs: Python state or a branch read in forward is fixed in the program)",
            reproduce=reproduce,
        )
