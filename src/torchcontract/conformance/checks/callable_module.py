"""Checks for :class:`~torchcontract.protocols.CallableModule` (SPEC.md, "CallableModule").

The target's ``example_inputs`` are the positional arguments of one call, its ``example_kwargs`` the
keyword arguments. Every call gets a fresh deep copy of them, and outputs are compared in eval mode
when the object has one (the mode of the module and of every submodule is restored afterwards). The
engine restores the module's state after every check that may change it (:mod:`~._preserve`): a module
that counts its calls or updates running statistics in ``forward`` is left as it was.

Under ``deterministic=False`` (dropout in train mode, noise sampled in ``forward``) outputs are compared
only where they stay deterministic; each clause says how.
"""

from __future__ import annotations

import sys
from typing import Any

from torchcontract.conformance._core.context import Context
from torchcontract.conformance._core.registry import register_check
from torchcontract.conformance._runtime.calls import object_call
from torchcontract.conformance._values import (
    close_difference,
    describe,
    describe_structure,
    difference,
    structure,
    tensor_module,
)
from torchcontract.conformance._values.convert import map_tensors
from torchcontract.conformance.checks._calling import (
    args_text,
    call_module,
    eval_mode,
    eval_output,
    fresh_inputs,
    fresh_kwargs,
    seeded,
)
from torchcontract.conformance.checks._common import try_deepcopy
from torchcontract.protocols import CallableModule


@register_check(
    protocol=CallableModule, severity="required", needs=("example_inputs",), per_dtype=True, since="0.1.0"
)
def call_returns(ctx: Context) -> None:
    """m(*inputs) returns, in eval mode where the module has one, without raising."""
    module = ctx.obj
    with eval_mode(module):
        call_module(ctx, module)


@register_check(
    protocol=CallableModule,
    severity="required",
    needs=("example_inputs",),
    requires=(call_returns,),
    per_dtype=True,
    since="0.1.0",
)
def eval_is_deterministic(ctx: Context) -> None:
    """In eval mode, the same inputs give equal outputs (unless the target declares deterministic=False)."""
    if not ctx.options.deterministic:
        # The clause is the declaration itself: a random module has nothing to compare.
        ctx.skip("the target declares deterministic=False")
    module = ctx.obj
    with eval_mode(module):
        first = call_module(ctx, module)
        second = call_module(ctx, module)
    found = close_difference(first, second)
    if found:
        ctx.fail(
            f"two calls m({args_text(ctx)}) in eval mode gave different outputs ({found}); expected equal "
            "outputs (randomness such as dropout must be off in eval mode), or declare "
            "deterministic=False",
            reproduce=f"m.eval(); m({args_text(ctx)}) == m({args_text(ctx)})",
        )


@register_check(
    protocol=CallableModule,
    severity="required",
    needs=("example_inputs",),
    requires=(eval_is_deterministic,),
    per_dtype=True,
    since="0.1.0",
)
def call_matches_forward(ctx: Context) -> None:
    """m(*inputs) returns what m.forward(*inputs) returns. A torch module with forward hooks or pre-hooks
    (its own or global ones) is compared the way torch's _call_impl runs them: forward, called with the
    inputs its pre-hooks passed on, returns what its first forward hook received, and m(*inputs) returns
    what its last forward hook gave (a hook may replace the output, by design)."""
    module = ctx.obj
    hooks = _forward_hooks(module)
    if hooks is not None:
        _call_matches_forward_around_hooks(ctx, module, hooks)
        return
    called = eval_output(ctx)
    with eval_mode(module), seeded(ctx):
        forwarded = call_module(ctx, module.forward, "m.forward(*inputs)")
    found = _output_difference(ctx, called, forwarded)
    if found:
        ctx.fail(
            f"m({args_text(ctx)}) and m.forward({args_text(ctx)}) differ ({found}); expected __call__ "
            f"to return forward's result (m({args_text(ctx)}) gave {describe(called)})",
            reproduce=f"m.eval(); m({args_text(ctx)}) == m.forward({args_text(ctx)})",
        )


def _output_difference(ctx: Context, one: Any, two: Any) -> str | None:
    """How two outputs differ, or None. Under deterministic=False only their structure is compared:
    two calls of a random module draw different numbers, and one that keeps its own generator draws
    differently even from seeded global RNGs."""
    if ctx.options.deterministic:
        return close_difference(one, two)
    if structure(one) == structure(two):
        return None
    return (
        f"structure {describe_structure(one)} vs {describe_structure(two)}; deterministic=False: only the "
        "structure is compared"
    )


def _forward_hooks(module: Any) -> str | None:
    """The forward hooks and pre-hooks ``module(...)`` runs around ``forward`` (its own, and for a torch
    module torch's global ones), described (``"1 forward hook"``), or None when there are none. Reads
    the registries, calls nothing."""
    own = vars(module) if hasattr(module, "__dict__") else {}
    counts = {
        "forward pre-hook": len(own.get("_forward_pre_hooks") or ()),
        "forward hook": len(own.get("_forward_hooks") or ()),
    }
    registry = sys.modules.get("torch.nn.modules.module")
    torch = tensor_module()
    if registry is not None and torch is not None and isinstance(module, torch.nn.Module):
        counts["global forward pre-hook"] = len(getattr(registry, "_global_forward_pre_hooks", ()))
        counts["global forward hook"] = len(getattr(registry, "_global_forward_hooks", ()))
    found = [f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in counts.items() if n]
    return ", ".join(found) if found else None


def _frozen_values(value: Any) -> Any:
    """``value`` with a copy of each tensor in its place (a later in-place change does not reach it)."""
    return map_tensors(value, lambda tensor, _: tensor.detach().clone())


def _call_matches_forward_around_hooks(ctx: Context, module: Any, hooks: str) -> None:
    """call_matches_forward for a module with forward hooks (``hooks`` describes them)."""
    torch = tensor_module()
    registry = sys.modules.get("torch.nn.modules.module")
    call = args_text(ctx)
    if (
        torch is None
        or not isinstance(module, torch.nn.Module)
        or getattr(registry, "_global_forward_hooks", None)
    ):
        # No way to see forward's own output inside the call: a global forward hook runs before any
        # hook of the module's own, and another object's hooks take no options.
        with eval_mode(module):
            called = call_module(ctx, module)
            forwarded = ctx.attempt(
                f"m.forward({call})", module.forward, *fresh_inputs(ctx), **fresh_kwargs(ctx)
            )
        if isinstance(forwarded, Exception) or _output_difference(ctx, called, forwarded):
            ctx.skip(
                f"m has {hooks}, which may replace the inputs of forward and its output by design (torch's "
                "Module._call_impl), and m.forward(*inputs) does not give m(*inputs): the output forward "
                "gave inside the call cannot be seen to compare it"
            )
        return
    seen: dict[str, Any] = {}

    def last_pre_hook(_module: Any, args: Any, kwargs: Any) -> None:
        seen["args"], seen["kwargs"] = _frozen_values(args), _frozen_values(kwargs)

    def first_hook(_module: Any, _args: Any, output: Any) -> None:
        seen["forward"] = _frozen_values(output)

    def last_hook(_module: Any, _args: Any, output: Any) -> None:
        seen["hooks"] = output

    handles = []
    try:
        for what, register in (
            ("m.register_forward_pre_hook(hook, with_kwargs=True)",
             lambda: module.register_forward_pre_hook(last_pre_hook, with_kwargs=True)),
            ("m.register_forward_hook(hook, prepend=True)",
             lambda: module.register_forward_hook(first_hook, prepend=True)),
            ("m.register_forward_hook(hook)", lambda: module.register_forward_hook(last_hook)),
        ):  # fmt: skip
            handles.append(ctx.call(what, register))
        with eval_mode(module):
            called = call_module(ctx, module)
    finally:
        for handle in handles:
            ctx.attempt("handle.remove()", handle.remove)
    if "hooks" not in seen:
        ctx.fail(
            f"m has {hooks}, but m({call}) ran none of the hooks registered to watch it; expected "
            "__call__ to run forward through nn.Module._call_impl",
            reproduce=f"m.register_forward_hook(lambda *a: print('hook')); m({call})",
        )
    found = _output_difference(ctx, called, seen["hooks"])
    if found:
        ctx.fail(
            f"m({call}) differs from what m's last forward hook gave ({found}); expected __call__ to return "
            f"the output of forward as m's {hooks} leave it (a __call__ that post-processes it)",
            reproduce=f"m.register_forward_hook(lambda m, a, out: print(out)); m({call})",
        )
    with eval_mode(module):
        forwarded = ctx.call(
            "m.forward(*<the inputs m's forward pre-hooks passed on>)",
            module.forward,
            *seen["args"],
            **seen["kwargs"],
        )
    found = _output_difference(ctx, forwarded, seen["forward"])
    if found:
        ctx.fail(
            f"m.forward(*<the inputs m's forward pre-hooks passed on>) differs from the output forward gave "
            f"inside m({call}) ({found}); expected __call__ to return forward's result, which m's {hooks} "
            "then see",
            reproduce=f"m.register_forward_hook(lambda m, a, out: print(out), prepend=True); m({call})",
        )
    if _output_difference(ctx, called, seen["forward"]):
        ctx.note(f"m's {hooks} replace the output of forward (by design of hooks)")


@register_check(
    protocol=CallableModule,
    severity="required",
    needs=("example_inputs",),
    requires=(call_returns,),
    since="0.1.0",
)
def call_runs_forward_once(ctx: Context) -> None:
    """m(*inputs) runs m.forward exactly once, looked up on the instance (so wrappers are honoured);
    on a module with hook registration (torch's, the reference implementation's), a forward pre-hook
    and a forward hook registered on it run once too. One call counts all three."""
    module = ctx.obj
    instance_dict = getattr(module, "__dict__", None)
    if instance_dict is None:
        ctx.skip("the object has no instance __dict__, so forward cannot be wrapped on the instance")
    had_own, previous = "forward" in instance_dict, instance_dict.get("forward")
    original = module.forward
    calls: list[int] = []

    def counting_forward(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    outcome = ctx.attempt("m.forward = wrapper", setattr, module, "forward", counting_forward)
    if isinstance(outcome, Exception):
        ctx.skip(f"cannot set m.forward on the instance ({type(outcome).__name__}: {outcome})")
    hooks: _CountingHooks | None = None
    try:
        if hasattr(module, "register_forward_pre_hook") and hasattr(module, "register_forward_hook"):
            hooks = _CountingHooks(ctx, module)
        with eval_mode(module):
            call_module(ctx, module)
    finally:
        if hooks is not None:
            hooks.remove()
        # Only where the wrapper landed: a class's own __setattr__ may put it elsewhere (a
        # torch.jit.trace module hands it to its script module and has no __delattr__ to match), and
        # the engine's restore of m after this clause puts that back.
        if instance_dict.get("forward") is counting_forward:
            with object_call("<m.forward put back as it was>"):
                if had_own:
                    module.forward = previous
                else:
                    delattr(module, "forward")
    if len(calls) != 1:
        ctx.fail(
            f"with m.forward replaced by a wrapper on the instance, m({args_text(ctx)}) called it "
            f"{len(calls)} times; expected exactly once (nn.Module.__call__ looks forward up on the "
            "instance, so wrappers such as Accelerate's hooks or a test spy see every call)",
            reproduce=f"m.forward = wrapper; m({args_text(ctx)})  # count the wrapper's calls",
        )
    if hooks is not None:
        hooks.judge()


class _CountingHooks:
    """A forward pre-hook and a forward hook registered on the module for the clause's one call, each
    counting its runs; the handles are removed after the call. A registration that raises is said once
    the wrapper's count is judged."""

    def __init__(self, ctx: Context, module: Any) -> None:
        self._ctx = ctx
        self._counts: dict[str, list[int]] = {"forward pre-hook": [], "forward hook": []}
        self._handles: list[Any] = []
        self._refused: str | None = None

        def pre_hook(_module: Any, _args: Any) -> None:
            self._counts["forward pre-hook"].append(1)

        def post_hook(_module: Any, _args: Any, _output: Any) -> None:
            self._counts["forward hook"].append(1)

        for what, register, hook in (
            ("m.register_forward_pre_hook(hook)", module.register_forward_pre_hook, pre_hook),
            ("m.register_forward_hook(hook)", module.register_forward_hook, post_hook),
        ):
            handle = ctx.attempt(what, register, hook)
            if isinstance(handle, Exception):
                self._refused = f"{what} raised {type(handle).__name__}: {handle}"
                return
            self._handles.append(handle)

    def remove(self) -> None:
        for handle in self._handles:
            if hasattr(handle, "remove"):
                self._ctx.attempt("handle.remove()", handle.remove)

    def judge(self) -> None:
        ctx = self._ctx
        if self._refused is not None:
            ctx.skip(f"the wrapper was called once; {self._refused}")
        for kind, counted in self._counts.items():
            if len(counted) != 1:
                ctx.fail(
                    f"with a {kind} registered on m, m({args_text(ctx)}) ran it {len(counted)} times; "
                    "expected exactly once (FSDP2, composable activation checkpointing and profilers "
                    "register module hooks, which nn.Module.__call__ runs through _call_impl; a __call__ "
                    "that calls self.forward directly skips them)",
                    reproduce=(
                        f"m.register_{kind.replace(' ', '_').replace('-', '_')}(lambda *a: print('hook')); "
                        f"m({args_text(ctx)})"
                    ),
                )


@register_check(
    protocol=CallableModule,
    severity="recommended",
    needs=("example_inputs",),
    requires=(call_returns,),
    per_dtype=True,
    since="0.1.0",
)
def call_preserves_inputs(ctx: Context) -> None:
    """Calling m(*inputs) does not modify the inputs (nor the keyword arguments)."""
    given, reference = fresh_inputs(ctx), fresh_inputs(ctx)
    given_kwargs, reference_kwargs = fresh_kwargs(ctx), fresh_kwargs(ctx)
    # The call runs in the module's own mode (an in-place op may happen only in training), so it goes
    # to a deep copy: a call in training mode changes state, e.g. BatchNorm's running statistics.
    # A module that cannot be copied is called in eval mode instead, which leaves such state alone.
    copied, error = try_deepcopy(ctx.obj)
    if error is None:
        callee, setup = "copy.deepcopy(m)", ""
        call_module(ctx, copied, f"{callee}(*inputs)", inputs=given, kwargs=given_kwargs)
    else:
        callee, setup = "m", "m.eval(); "
        with eval_mode(ctx.obj):
            call_module(ctx, ctx.obj, inputs=given, kwargs=given_kwargs)
    found = difference(given, reference, "inputs") or difference(given_kwargs, reference_kwargs, "kwargs")
    if found:
        call = f"{callee}({args_text(ctx)})"
        mode = "" if error is None else " in eval mode (m cannot be deep-copied)"
        ctx.fail(
            f"{call} modified its inputs{mode} ({found}); expected the caller's inputs unchanged "
            "(in-place operations on inputs corrupt data that is used again, e.g. by a residual "
            "connection or the next epoch)",
            reproduce=f"{setup}before = copy.deepcopy(inputs); {call}; inputs == before",
        )


def _non_contiguous(value: Any, made: list[str], path: str = "inputs") -> Any:
    """``value`` with every strided tensor of at least one dimension replaced by a non-contiguous
    tensor of equal values (the names of those made non-contiguous go to ``made``), through the one
    walker of values (:mod:`.._values.convert`): the last two dimensions laid out transposed
    (``x.mT.contiguous().mT``, what a transpose or a permute gives), or, for one dimension, every other
    element of a tensor twice as long (torch's own ``test_non_contiguous_tensors`` does
    ``repeat_interleave(x, 2, dim=-1)[..., ::2]``). A tensor that cannot be rearranged (a subclass, a
    nested tensor) is left as it is."""

    def rearranged(tensor: Any, where: str) -> Any:
        changed = _rearranged(tensor)
        if changed is not tensor:
            made.append(where)
        return changed

    return map_tensors(value, rearranged, path)


def _rearranged(value: Any) -> Any:
    """``value`` laid out non-contiguously (see :func:`_non_contiguous`), or ``value`` itself."""
    torch = tensor_module()
    if torch is None or not isinstance(value, torch.Tensor):
        return value
    try:
        if value.layout != torch.strided or value.is_nested or value.dim() == 0:
            return value
        with torch.no_grad():
            if value.dim() >= 2 and value.shape[-1] > 1 and value.shape[-2] > 1:
                changed = value.mT.contiguous().mT
            else:
                changed = torch.repeat_interleave(value, 2, dim=-1)[..., ::2]
        if changed.is_contiguous() or not torch.equal(changed, value):
            return value
        if value.requires_grad and value.is_leaf:
            changed.requires_grad_(True)
        return changed
    except Exception:  # an odd tensor (a subclass without these ops): left contiguous
        return value


@register_check(
    protocol=CallableModule,
    severity="recommended",
    needs=("torch", "example_inputs"),
    requires=(eval_is_deterministic,),
    per_dtype=True,
    since="0.1.0",
)
def accepts_non_contiguous_inputs(ctx: Context) -> None:
    """With its tensor inputs made non-contiguous (equal values, another memory layout), m returns
    what it returns for the contiguous inputs."""
    if not ctx.options.deterministic:
        ctx.skip("the target declares deterministic=False: two calls cannot be compared")
    made: list[str] = []
    inputs, kwargs = ctx.call(
        "<the example inputs and kwargs made non-contiguous>",
        lambda: (
            _non_contiguous(fresh_inputs(ctx), made),
            _non_contiguous(fresh_kwargs(ctx), made, "kwargs"),
        ),
    )
    if not made:
        ctx.skip("no input is a tensor that can be made non-contiguous (at least one dimension of size > 1)")
    module = ctx.obj
    what = f"m({args_text(ctx)}) with {', '.join(made[:3])} non-contiguous"
    reproduce = f"m({args_text(ctx)}) == m(*[x.mT.contiguous().mT for x in inputs])"
    expected = eval_output(ctx)
    with eval_mode(module):
        output = ctx.attempt(what, module, *inputs, **kwargs)
    if isinstance(output, Exception):
        first = str(output).strip().splitlines()[0] if str(output).strip() else ""
        ctx.fail(
            f"{what} raised {type(output).__name__}: {first}; expected the same output as for "
            "contiguous inputs (a transpose, a permute or a slice such as x[:, ::2] gives "
            "non-contiguous tensors: use .reshape() or .flatten() rather than .view(), or call "
            ".contiguous() first)",
            reproduce=reproduce,
        )
    found = close_difference(output, expected)
    if found:
        ctx.fail(
            f"{what} differs from m({args_text(ctx)}) ({found}); expected equal outputs (the values "
            "are equal, only their memory layout differs: code reading raw memory, data_ptr() or "
            "strides assumes contiguity)",
            reproduce=reproduce,
        )


@register_check(protocol=CallableModule, severity="recommended", since="0.1.0", touches="copies")
def repr_returns_str(ctx: Context) -> None:
    """repr(m) and str(m) return a str (for a torch module, through every submodule's extra_repr).
    Python itself raises TypeError for a __repr__ or __str__ that returns anything else."""
    for name, function in (("repr", repr), ("str", str)):
        text = ctx.attempt(f"{name}(m)", function, ctx.obj)
        if isinstance(text, Exception):
            ctx.fail(
                f"{name}(m) raised {type(text).__name__}: {text}; expected a str (print(model), logging, "
                "debuggers and error messages call it; torch's Module.__repr__ calls every submodule's "
                "extra_repr, which often reads an attribute that __init__ did not set)",
                reproduce=f"{name}(m)",
            )
