"""Calling a (callable) module in a check: fresh copies of the example arguments, the reproducer of a
call, eval mode with every submodule's mode put back, the dry run of lazy modules, seeding under
deterministic=False, and m's output in eval mode computed once per run (the reference many clauses
compare with); shared by the CallableModule clauses and the Module clauses."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from torchcontract.conformance._core.context import (
    Context,
    SharedKey,
    global_rng_states,
    restore_global_rng_states,
)
from torchcontract.conformance._runtime.calls import object_call
from torchcontract.conformance._values import flatten, is_tensor, tensor_module, unflatten
from torchcontract.conformance._values.convert import copy_of_inputs

__all__ = [
    "args_text",
    "call_module",
    "clone_tensor",
    "eval_mode",
    "eval_output",
    "fresh_inputs",
    "fresh_kwargs",
    "frozen_output",
    "has_lazy_tensors",
    "initialise_lazy_modules",
    "mode_snapshot",
    "output_with",
    "restore_mode",
    "restore_modes",
    "seeded",
    "seeded_note",
]


def _with_submodules(module: Any) -> list[Any]:
    """The module and every descendant it exposes (``named_modules()``, else ``named_children()``)."""
    try:
        if hasattr(module, "named_modules"):
            return [sub for _, sub in module.named_modules()]
        found = [module]
        for _, child in module.named_children() if hasattr(module, "named_children") else ():
            found.extend(_with_submodules(child))
        return found
    except Exception:  # an odd container is reported by train_eval_set_mode, not here
        return [module]


def mode_snapshot(module: Any) -> list[tuple[Any, Any]]:
    """(module, training flag) for the module and every submodule with a ``training`` attribute."""
    return [(sub, sub.training) for sub in _with_submodules(module) if hasattr(sub, "training")]


def restore_modes(module: Any, snapshot: list[tuple[Any, Any]], name: str = "m") -> None:
    """Put every submodule back in its own mode, exactly: a model in train mode with a frozen
    BatchNorm in eval comes back with that BatchNorm still in eval (``train()`` alone would not).
    ``name``: the module's name in messages."""
    if snapshot and snapshot[0][0] is module:
        restore_mode(module, bool(snapshot[0][1]), name)
    with object_call(f"<setting the training flag of each of {name}'s submodules back>"):
        for sub, training in snapshot:
            if getattr(sub, "training", training) is not training:
                try:
                    sub.training = training
                except Exception:  # a read-only flag: the check's restorer reports it
                    continue


@contextmanager
def eval_mode(module: Any, name: str = "m") -> Iterator[None]:
    """Put ``module`` (called ``name`` in messages) in eval mode if it has one; restore every
    submodule's mode afterwards. Both are calls into the module: an exception or a hang in its
    ``eval()`` or ``train()`` is its own, naming the call."""
    if not (hasattr(module, "eval") and hasattr(module, "train") and hasattr(module, "training")):
        yield
        return
    snapshot = mode_snapshot(module)
    with object_call(f"{name}.eval()"):
        module.eval()
    try:
        yield
    finally:
        restore_modes(module, snapshot, name)


def restore_mode(module: Any, training: bool, name: str = "m") -> None:
    """Put ``module`` back in the mode it had, with the calls every implementation takes (a
    hand-written ``train()`` may take no ``mode``; that is train_eval_set_mode's to report). A call
    into the module: its exception or hang is the module's, naming the call."""
    call = "train" if training else "eval"
    with object_call(f"{name}.{call}() (putting {name} back in {call} mode)"):
        if training:
            module.train()
        else:
            module.eval()


def fresh_inputs(ctx: Context) -> tuple[Any, ...]:
    inputs: tuple[Any, ...] = copy_of_inputs(ctx.example_inputs)
    return inputs


def fresh_kwargs(ctx: Context) -> dict[str, Any]:
    kwargs: dict[str, Any] = copy_of_inputs(ctx.example_kwargs)
    return kwargs


def args_text(ctx: Context, inputs: str = "inputs") -> str:
    """The arguments of a call as reproduce strings show them: ``*inputs`` or ``*inputs, **kwargs``."""
    return f"*{inputs}, **kwargs" if ctx.example_kwargs else f"*{inputs}"


def call_module(
    ctx: Context, module: Any, what: str = "m(*inputs)", inputs: Any = None, kwargs: Any = None
) -> Any:
    """``module(*inputs, **kwargs)`` with fresh copies of the example arguments. ``what`` is written with
    ``*inputs``; with example_kwargs, ``**kwargs`` is added to it."""
    args = fresh_inputs(ctx) if inputs is None else inputs
    keywords = fresh_kwargs(ctx) if kwargs is None else kwargs
    return ctx.call(what.replace("*inputs)", f"{args_text(ctx)})"), module, *args, **keywords)


def has_lazy_tensors(module: Any) -> bool:
    """Whether a torch module or a submodule holds a parameter or buffer that a lazy module has not
    initialised yet (``torch.nn.parameter.is_lazy``). Reads torch's registries, calls nothing."""
    from torch.nn.parameter import is_lazy

    for sub in module.modules():
        for registry in ("_parameters", "_buffers"):
            table = vars(sub).get(registry)
            if isinstance(table, dict) and any(is_lazy(tensor) for tensor in table.values()):
                return True
    return False


def initialise_lazy_modules(ctx: Context) -> bool:
    """Run the dry run torch prescribes for a module with lazy submodules (``nn.LazyLinear`` and the
    other ``Lazy*`` classes, which infer their parameters' shapes from their first input): after it,
    "the network can be used as usual" (torch/nn/modules/lazy.py, LazyModuleMixin), which is what
    the clauses are about; a copy taken before it would draw other initial values. In eval mode, with
    the example arguments; the check's restorer puts the module back uninitialised afterwards. A dry
    run that raises leaves the check to run on the module as it is: callable_module.call_returns reports
    the call, and the clauses that call the module are skipped for it. Whether it ran the dry run
    (which changed the module: the engine puts it back after the check)."""
    torch = tensor_module()
    if torch is None or not isinstance(ctx.obj, torch.nn.Module) or ctx.example_inputs is None:
        return False
    if not ctx.call("m.modules()", has_lazy_tensors, ctx.obj):
        return False
    with eval_mode(ctx.obj):
        ctx.attempt(
            f"m({args_text(ctx)}) (the dry run that initialises m's lazy modules)",
            ctx.obj,
            *fresh_inputs(ctx),
            **fresh_kwargs(ctx),
        )
    return True


# m's output in eval mode, seeded as every clause's call of m is: the reference of the clauses that compare
# a copy, a conversion or a reload of m with m, and of call_matches_forward and
# accepts_non_contiguous_inputs. One per run of the target's checks: the engine puts m back
# after each check that may change it, so each clause would compute the same (eval_is_deterministic, a
# prerequisite of every clause that reads it, holds), at the cost of a forward pass each. It calls m, so
# the engine puts m back once it is computed, and a clause that reads it and works on copies otherwise
# declares touches="copies".
_EVAL_OUTPUT: SharedKey[Any] = SharedKey("m(*inputs) in eval mode", calls_object=True)


def eval_output(ctx: Context) -> Any:
    """``m(*inputs, **kwargs)`` in eval mode (:func:`seeded`), frozen (:func:`frozen_output`: its
    tensors' values, without the graph of the forward pass or a tie to m's own tensors), computed once
    per run of the target's checks (:class:`~torchcontract.conformance._core.context.SharedKey`)."""

    def compute() -> Any:
        with eval_mode(ctx.obj), seeded(ctx):
            return frozen_output(call_module(ctx, ctx.obj))

    return ctx.shared(_EVAL_OUTPUT, compute)


@contextmanager
def seeded(ctx: Context) -> Iterator[None]:
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


def seeded_note(ctx: Context) -> str:
    return (
        ""
        if ctx.options.deterministic
        else " (deterministic=False: both calls with the global RNGs seeded alike)"
    )


def output_with(value: Any, convert: Any) -> Any | None:
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


def frozen_output(output: Any) -> Any:
    """``output`` with a copy of each tensor's current values in its place (see :func:`output_with`):
    an output that holds one of the module's own tensors (``return self.weight``, a distribution built
    from ``self.loc``) does not follow a later in-place change of that tensor. A value that cannot be
    rebuilt so is kept as it is."""
    frozen = output_with(output, _copy_or_same)
    return output if frozen is None else frozen


def _copy_or_same(tensor: Any) -> Any:
    """A copy of ``tensor``'s values, or ``tensor`` itself when its type cannot be cloned."""
    copied = clone_tensor(tensor)
    return tensor if copied is None else copied


def clone_tensor(tensor: Any) -> Any:
    try:
        return tensor.detach().clone()
    except Exception:
        return None
