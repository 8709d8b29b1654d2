"""The Module clause on submodules (any module with hook registration): every submodule that forward
runs is called through its ``__call__``, so that the hooks registered on it run."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from torchcontract.conformance._core.context import Context
from torchcontract.conformance._core.registry import register_check
from torchcontract.conformance.checks._calling import (
    args_text,
    call_module,
    eval_mode,
)
from torchcontract.conformance.checks.callable_module import call_runs_forward_once
from torchcontract.conformance.checks.module._shared import deep_copy
from torchcontract.conformance.checks.module.protocol import deepcopy_is_independent
from torchcontract.protocols import Module


@dataclass
class _Counts:
    """How often a submodule's forward, forward pre-hook and forward hook ran during one call of m."""

    forward: int = 0
    pre_hook: int = 0
    hook: int = 0
    handles: list[Any] = field(default_factory=list)

    def agree(self) -> bool:
        return self.forward == self.pre_hook == self.hook


def _watch(ctx: Context, name: str, sub: Any) -> _Counts | None:
    """Count ``sub``'s forward runs (a wrapper set on the instance: ``__call__`` and ``sub.forward(...)``
    both look forward up there) and its hooks' runs; None when it cannot be watched (no hook
    registration, no instance ``__dict__``, a registration that raises)."""
    if not (hasattr(sub, "register_forward_pre_hook") and hasattr(sub, "register_forward_hook")):
        return None
    if getattr(sub, "__dict__", None) is None:
        return None
    counts = _Counts()
    original = sub.forward

    @functools.wraps(original)  # keeps the signature inspect.signature and kwargs checks read
    def counting_forward(*args: Any, **kwargs: Any) -> Any:
        counts.forward += 1
        return original(*args, **kwargs)

    def pre_hook(_module: Any, _args: Any) -> None:
        counts.pre_hook += 1

    def hook(_module: Any, _args: Any, _output: Any) -> None:
        counts.hook += 1

    path = f"clone.get_submodule({name!r})"
    for what, register, function in (
        (f"{path}.register_forward_pre_hook(hook)", sub.register_forward_pre_hook, pre_hook),
        (f"{path}.register_forward_hook(hook)", sub.register_forward_hook, hook),
        (f"{path}.forward = wrapper", functools.partial(setattr, sub, "forward"), counting_forward),
    ):
        if isinstance(ctx.attempt(what, register, function), Exception):
            return None
    return counts


@register_check(
    protocol=Module,
    severity="required",
    needs=("example_inputs",),
    requires=(call_runs_forward_once, deepcopy_is_independent),
    since="0.1.0",
    touches="copies",
)
def submodule_hooks_run(ctx: Context) -> None:
    """In eval mode, every submodule whose forward runs during m(*inputs) is called through its
    __call__: a forward pre-hook and a forward hook registered on it run as often as its forward."""
    clone = deep_copy(ctx)
    if not hasattr(clone, "named_modules"):
        ctx.skip("the module has no named_modules() to find its submodules by")
    submodules = [
        (name, sub)
        for name, sub in ctx.call("clone.named_modules()", lambda: list(clone.named_modules()))
        if sub is not clone
    ]
    if not submodules:
        ctx.skip("the module has no submodules")
    watched = [(name, counts) for name, sub in submodules if (counts := _watch(ctx, name, sub)) is not None]
    if not watched:
        ctx.skip("no submodule takes forward hooks and a forward set on the instance")
    call = args_text(ctx)
    with eval_mode(clone, "copy.deepcopy(m)"):
        call_module(ctx, clone, f"copy.deepcopy(m)({call})")
    wrong = [(name, counts) for name, counts in watched if not counts.agree()]
    if not wrong:
        return
    name, counts = wrong[0]
    leaf = name.rsplit(".", 1)[-1]
    others = (
        f" ({len(wrong)} submodules: {', '.join(repr(n) for n, _ in wrong[:5])})" if len(wrong) > 1 else ""
    )
    if counts.forward > counts.pre_hook:
        cause = (
            f"a forward called directly (self.{leaf}.forward(x)) or a __call__ that skips the hooks "
            f"bypasses them: call the submodule, self.{leaf}(x)"
        )
    else:
        cause = (
            "a __call__ that runs the class's forward instead of the one looked up on the instance "
            "bypasses Accelerate's offloading, which wraps the instance's forward"
        )
    ctx.fail(
        f"during m({call}), submodule {name!r} ran forward {counts.forward} time(s), but its forward "
        f"pre-hook ran {counts.pre_hook} and its forward hook {counts.hook} time(s){others}; expected every "
        "run of a submodule's forward to go through its __call__, with its hooks around it (FSDP2's "
        "fully_shard, activation checkpointing, DeepSpeed ZeRO-3 and hook-based feature extraction act "
        f"through a submodule's hooks; {cause})",
        reproduce=(
            f"s = m.get_submodule({name!r}); s.register_forward_pre_hook(lambda *a: print('pre-hook')); "
            f"m({call})  # compare with the runs of s.forward"
        ),
    )
