"""The Module clauses that hold for any module, torch's or not (SPEC.md, "Module"): modes, parameters,
copies, state dicts and gradients."""

from __future__ import annotations

import io
import sys
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from torchcontract.conformance._core.context import (
    Context,
)
from torchcontract.conformance._core.registry import register_check
from torchcontract.conformance._runtime.calls import object_call
from torchcontract.conformance._values import (
    close_difference,
    describe,
    difference,
    is_tensor,
    tensor_module,
)
from torchcontract.conformance.checks._calling import (
    args_text,
    call_module,
    eval_mode,
    eval_output,
    mode_snapshot,
    restore_modes,
    seeded,
    seeded_note,
)
from torchcontract.conformance.checks.callable_module import eval_is_deterministic
from torchcontract.conformance.checks.module._shared import (
    deep_copy,
    first_line,
    non_leaf_gradients_unsaid,
    parameter_values,
    perturb,
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


@register_check(protocol=Module, severity="required", since="0.1.0", touches="copies")
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
def deepcopy_is_independent(ctx: Context) -> None:
    """copy.deepcopy(m) gives equal outputs and parameters of its own."""
    module = ctx.obj
    # The copy is taken before m is called: a call may change state (a counter, a generator).
    clone = deep_copy(ctx)
    expected = eval_output(ctx)
    with eval_mode(clone, "copy.deepcopy(m)"), seeded(ctx):
        copied = call_module(ctx, clone, "copy.deepcopy(m)(*inputs)")
    found = close_difference(copied, expected)
    if found:
        call = args_text(ctx)
        ctx.fail(
            f"copy.deepcopy(m)({call}) differs from m({call}) ({found}){seeded_note(ctx)}; expected "
            "equal outputs",
            reproduce=f"copy.deepcopy(m)({call}) == m({call})",
        )
    # One snapshot of m's parameters (by identity: names may repeat), looked up by name: the work grows
    # with the size of m, once (a model of a thousand parameter tensors is checked in seconds, and holds
    # one copy of its parameters here, not one per comparison).
    saved = [(name, p, _snapshot(p)) for name, p in module.named_parameters()]
    by_name = {name: (p, snapshot) for name, p, snapshot in saved}
    try:
        for name, parameter in clone.named_parameters():
            if not perturb(parameter):
                continue
            original = by_name.get(name)
            if original is not None and _changed(*original):
                ctx.fail(
                    f"changing parameter {name!r} of copy.deepcopy(m) changed m's parameter too; "
                    "expected the copy to own its parameters",
                    reproduce=f"c = copy.deepcopy(m); <change c's {name}>; <compare with m's {name}>",
                )
    finally:
        # A copy that shares parameters was changed through m's own: put m's values back.
        with object_call("<m's parameters put back after changing the copy's>"):
            for _, parameter, snapshot in saved:
                _restore(parameter, snapshot)


def _changed(parameter: Any, snapshot: Any) -> bool:
    """Whether ``parameter``'s values differ from ``snapshot`` (from :func:`_snapshot`)."""
    values = parameter_values(parameter)
    if values is None or snapshot is None:
        return False
    if is_tensor(values) and _unchanged_tensor(values, snapshot):
        return False  # the common case, at torch's speed: the generic comparison below is much slower
    return difference(_snapshot(parameter), snapshot) is not None


def _restore(parameter: Any, snapshot: Any) -> None:
    """Write ``snapshot`` (from :func:`_snapshot`) back into ``parameter`` in place, if it changed."""
    if not _changed(parameter, snapshot):
        return
    values = parameter_values(parameter)
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
    values = parameter_values(parameter)
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
        f"{first_line(outcome)}{culprit}; expected the state dict to hold tensors and plain Python "
        "values only (torch.load defaults to weights_only=True since torch 2.6, so such a checkpoint "
        "no longer loads; get_extra_state should return tensors or plain Python values)",
        reproduce=(
            "buffer = io.BytesIO(); torch.save(m.state_dict(), buffer); buffer.seek(0); "
            "torch.load(buffer, weights_only=True)"
        ),
    )


@register_check(
    protocol=Module,
    severity="required",
    needs=("example_inputs",),
    requires=(eval_is_deterministic, deepcopy_is_independent),
    per_dtype=True,
    since="0.1.0",
    touches="copies",
)
def state_dict_round_trip(ctx: Context) -> None:
    """Loading m.state_dict() (through torch.save and torch.load(weights_only=True) for a torch module)
    into a fresh instance (the factory option) or a deep copy whose every tensor was changed restores
    m's outputs."""
    module = ctx.obj
    factory = ctx.options.factory
    # Without a factory, a deep copy of m is loaded: taken before m is called for its eval output (a call
    # may change m, and outside a run of check() nothing puts it back before this check ends).
    clone: Any = None if factory is not None else deep_copy(ctx)
    expected = eval_output(ctx)
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
        perturb(tensor)
    ctx.call(f"{name}.load_state_dict(m.state_dict())", target.load_state_dict, state)
    with eval_mode(target, name), seeded(ctx):
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
            f"m({call}) ({found}){seeded_note(ctx)}; expected the state dict to hold everything the "
            f"output depends on ({hint})",
            reproduce=f"{built}; {name}.load_state_dict(m.state_dict()); {name}({call}) == m({call})",
        )


@register_check(
    protocol=Module, severity="required", requires=(deepcopy_is_independent,), since="0.1.0", touches="copies"
)
def load_state_dict_strict_rejects_bad_keys(ctx: Context) -> None:
    """load_state_dict(state, strict=True) raises on a missing key and on an unexpected key."""
    state = dict(ctx.call("m.state_dict()", ctx.obj.state_dict))
    if not state:
        ctx.skip("the module has no state")
    first_key = next(iter(state))
    missing = {key: value for key, value in state.items() if key != first_key}
    unexpected = {**state, "torchcontract_unexpected_key": next(iter(state.values()))}
    # One copy for both loads: each loads m's own values into it (torch copies the matching keys before
    # it raises), so the second finds the copy as the first did.
    clone = deep_copy(ctx)
    for label, bad_state in ((f"without key {first_key!r}", missing), ("with an extra key", unexpected)):
        what = f"clone.load_state_dict(<m.state_dict() {label}>, strict=True)"
        outcome = ctx.attempt(what, clone.load_state_dict, bad_state, strict=True)
        if not isinstance(outcome, Exception):
            ctx.fail(
                f"{what} returned {describe(outcome)}; expected an error (torch raises "
                "RuntimeError), or a checkpoint that does not match the model loads silently",
                reproduce=what.replace("clone", "copy.deepcopy(m)"),
            )


def _set_ones_gradient(parameter: Any) -> bool:
    values = parameter_values(parameter)
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
    protocol=Module,
    severity="recommended",
    requires=(deepcopy_is_independent,),
    since="0.1.0",
    touches="copies",
)
def zero_grad_clears_gradients(ctx: Context) -> None:
    """After zero_grad(), every parameter's gradient is None or zero."""
    clone = deep_copy(ctx)
    named = list(ctx.call("clone.named_parameters()", lambda: list(clone.named_parameters())))
    # A parameter that cannot be given a gradient (an integer one, or a tensor subclass such as a
    # quantized weight whose class implements no ones_like or refuses a plain .grad) is left out.
    with non_leaf_gradients_unsaid():
        given = [
            name
            for name, parameter in named
            if ctx.attempt(f"<give {name} a gradient of ones>", _set_ones_gradient, parameter) is True
        ]
        if named and not given:
            ctx.skip("cannot give the parameters a gradient (they have no .grad the check recognises)")
        ctx.call("clone.zero_grad()", clone.zero_grad)
        left = [(name, parameter.grad) for name, parameter in named if name in given]
    for name, gradient in left:
        if not _is_cleared(gradient):
            ctx.fail(
                f"after zero_grad(), parameter {name!r} still has gradient {describe(gradient)} "
                "with non-zero values; expected None or zeros (otherwise gradients accumulate "
                "across steps)",
                reproduce=f"<give {name} a gradient>; m.zero_grad(); m.get_parameter({name!r}).grad",
            )
