"""Checks for :class:`~torchcontract.protocols.CallableModule` (SPEC.md, "CallableModule").

The target's ``example_inputs`` are the positional arguments of one call. Every call gets a fresh
deep copy of them, and outputs are compared in eval mode when the object has one (its mode is
restored afterwards).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torchcontract.conformance._engine import Context
from torchcontract.conformance._registry import register_check
from torchcontract.conformance._values import close_difference, describe, difference
from torchcontract.conformance.checks._common import try_deepcopy
from torchcontract.protocols import CallableModule

CALLS = "callable_module.call_returns"
DETERMINISTIC = "callable_module.eval_is_deterministic"

__all__ = ["call_module", "eval_mode", "fresh_inputs", "restore_mode"]


@contextmanager
def eval_mode(module: Any) -> Iterator[None]:
    """Put ``module`` in eval mode if it has one; restore its mode afterwards."""
    if not (hasattr(module, "eval") and hasattr(module, "train") and hasattr(module, "training")):
        yield
        return
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        restore_mode(module, was_training)


def restore_mode(module: Any, training: bool) -> None:
    """Put ``module`` back in the mode it had, with the calls every implementation takes (a
    hand-written ``train()`` may take no ``mode``; that is train_eval_set_mode's to report)."""
    if training:
        module.train()
    else:
        module.eval()


def fresh_inputs(ctx: Context) -> tuple[Any, ...]:
    inputs: tuple[Any, ...] = copy.deepcopy(ctx.example_inputs)
    return inputs


def call_module(ctx: Context, module: Any, what: str = "m(*inputs)", inputs: Any = None) -> Any:
    args = fresh_inputs(ctx) if inputs is None else inputs
    return ctx.call(what, module, *args)


@register_check(CALLS, protocol=CallableModule, severity="required", needs=("example_inputs",))
def call_returns(ctx: Context) -> None:
    """m(*inputs) returns, in eval mode where the module has one, without raising."""
    module = ctx.obj
    with eval_mode(module):
        call_module(ctx, module)


@register_check(
    DETERMINISTIC, protocol=CallableModule, severity="required", needs=("example_inputs",), requires=(CALLS,)
)
def eval_is_deterministic(ctx: Context) -> None:
    """In eval mode, the same inputs give equal outputs (unless the target declares deterministic=False)."""
    if not ctx.options.deterministic:
        ctx.skip("the target declares deterministic=False")
    module = ctx.obj
    with eval_mode(module):
        first = call_module(ctx, module)
        second = call_module(ctx, module)
    found = close_difference(first, second)
    if found:
        ctx.fail(
            f"two calls m(*inputs) in eval mode gave different outputs ({found}); expected equal "
            "outputs (randomness such as dropout must be off in eval mode), or declare "
            "deterministic=False",
            reproduce="m.eval(); m(*inputs) == m(*inputs)",
        )


@register_check(
    "callable_module.call_matches_forward",
    protocol=CallableModule,
    severity="required",
    needs=("example_inputs",),
    requires=(DETERMINISTIC,),
)
def call_matches_forward(ctx: Context) -> None:
    """m(*inputs) returns what m.forward(*inputs) returns."""
    module = ctx.obj
    with eval_mode(module):
        called = call_module(ctx, module)
        forwarded = call_module(ctx, module.forward, "m.forward(*inputs)")
    if not ctx.options.deterministic:
        return
    found = close_difference(called, forwarded)
    if found:
        ctx.fail(
            f"m(*inputs) and m.forward(*inputs) differ ({found}); expected __call__ to return "
            f"forward's result (m(*inputs) gave {describe(called)})",
            reproduce="m.eval(); m(*inputs) == m.forward(*inputs)",
        )


@register_check(
    "callable_module.call_runs_forward_once",
    protocol=CallableModule,
    severity="required",
    needs=("example_inputs",),
    requires=(CALLS,),
)
def call_runs_forward_once(ctx: Context) -> None:
    """m(*inputs) runs m.forward exactly once, looked up on the instance (so wrappers are honoured)."""
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
    try:
        with eval_mode(module):
            call_module(ctx, module)
    finally:
        if had_own:
            module.forward = previous
        else:
            delattr(module, "forward")
    if len(calls) != 1:
        ctx.fail(
            f"with m.forward replaced by a wrapper on the instance, m(*inputs) called it {len(calls)} "
            "times; expected exactly once (nn.Module.__call__ looks forward up on the instance, so "
            "wrappers such as activation checkpointing or profilers see every call)",
            reproduce="m.forward = wrapper; m(*inputs)  # count the wrapper's calls",
        )


@register_check(
    "callable_module.call_preserves_inputs",
    protocol=CallableModule,
    severity="required",
    needs=("example_inputs",),
    requires=(CALLS,),
)
def call_preserves_inputs(ctx: Context) -> None:
    """Calling m(*inputs) does not modify the inputs."""
    given, reference = fresh_inputs(ctx), fresh_inputs(ctx)
    # The call runs in the module's own mode (an in-place op may happen only in training), so it goes
    # to a deep copy: a call in training mode changes state, e.g. BatchNorm's running statistics.
    # A module that cannot be copied is called in eval mode instead, which leaves such state alone.
    copied, error = try_deepcopy(ctx.obj)
    if error is None:
        call_module(ctx, copied, inputs=given)
    else:
        with eval_mode(ctx.obj):
            call_module(ctx, ctx.obj, inputs=given)
    found = difference(given, reference, "inputs")
    if found:
        ctx.fail(
            f"m(*inputs) modified its inputs ({found}); expected the caller's inputs unchanged "
            "(in-place operations on inputs corrupt data that is used again, e.g. by a residual "
            "connection or the next epoch)",
            reproduce="before = copy.deepcopy(inputs); m(*inputs); inputs == before",
        )
