"""The Module clause on the values of gradients (torch modules only, with the declaration
``gradcheck=True``): the analytical gradients agree with finite differences in float64, first and
second order, as torch's own module tests ask of every ``nn`` module."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torchcontract.conformance._core.context import Context
from torchcontract.conformance._core.registry import register_check
from torchcontract.conformance.checks._calling import (
    args_text,
    eval_mode,
)
from torchcontract.conformance.checks.callable_module import eval_is_deterministic
from torchcontract.conformance.checks.module._shared import (
    arguments_in_float64,
    deep_copy,
    first_line,
    float_leaves,
    listed,
    torch_module,
)
from torchcontract.conformance.checks.module.functional import functional_call_matches_call
from torchcontract.conformance.checks.module.protocol import deepcopy_is_independent
from torchcontract.protocols import Module

# The parameters enter gradcheck as one flat tensor per dtype, through torch.func.functional_call: in
# fast mode gradcheck perturbs each of its inputs once along a random direction (two forward passes),
# so the cost is a few forward passes whatever the number of parameter tensors, and every element of
# every parameter takes part in the comparison (a subset of elements would leave a wrong gradient of
# the others unseen).
PARAMETERS = "<the trainable parameters, flattened>"

GRADCHECK = "torch.autograd.gradcheck"
GRADGRADCHECK = "torch.autograd.gradgradcheck"

# Errors of a double backward that the module's code declares, not a wrong value: a custom Function
# marked @once_differentiable, an op whose double backward torch does not implement.
_NO_SECOND_ORDER = (
    "once_differentiable",
    "not implemented",
    "does not require grad and does not have a grad_fn",
)


@contextmanager
def _rng_from(torch: Any, seed: int) -> Iterator[None]:
    """torch's CPU generator seeded with ``seed`` for the block, its state put back afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class _Problem:
    """What is differentiated: the copy in float64 as a function of its floating-point inputs and
    trainable parameters (flattened into one tensor per dtype), returning its floating-point outputs."""

    def __init__(
        self, torch: Any, module: Any, args: Any, kwargs: Any, seed: int, with_inputs: bool = True
    ) -> None:
        from torch.utils._pytree import tree_flatten

        self.torch = torch
        self.module = module
        self.seed = seed
        self.leaves, self.spec = tree_flatten((tuple(args), dict(kwargs)))
        self.input_positions = [
            i
            for i, leaf in enumerate(self.leaves)
            if with_inputs
            and isinstance(leaf, torch.Tensor)
            and (leaf.is_floating_point() or leaf.is_complex())
        ]
        self.inputs = [self.leaves[i].detach().clone().requires_grad_(True) for i in self.input_positions]
        # (name, shape) of the trainable parameters, by dtype (torch.cat needs one dtype).
        self.groups: dict[Any, list[tuple[str, Any]]] = {}
        values: dict[Any, list[Any]] = {}
        for name, parameter in module.named_parameters():
            if parameter.requires_grad and (parameter.is_floating_point() or parameter.is_complex()):
                self.groups.setdefault(parameter.dtype, []).append((name, parameter.shape))
                values.setdefault(parameter.dtype, []).append(parameter.detach().reshape(-1))
        self.flat = [torch.cat(values[dtype]).requires_grad_(True) for dtype in self.groups]

    @property
    def names(self) -> list[str]:
        return [name for group in self.groups.values() for name, _ in group]

    @property
    def gradcheck_inputs(self) -> tuple[Any, ...]:
        return (*self.inputs, *self.flat)

    @property
    def elements(self) -> int:
        return sum(int(tensor.numel()) for tensor in self.gradcheck_inputs)

    def describe_input(self, index: int) -> str:
        """gradcheck's input ``index`` in words: which argument of the call, or the parameters."""
        if index < len(self.inputs):
            return f"input {index} (floating-point tensor {index} of the call's arguments)"
        return f"input {index} ({PARAMETERS}: {listed(self.names, 3)})"

    def __call__(self, *given: Any) -> tuple[Any, ...]:
        from torch.func import functional_call
        from torch.utils._pytree import tree_unflatten

        leaves = list(self.leaves)
        for position, value in zip(self.input_positions, given, strict=False):
            leaves[position] = value
        args, kwargs = tree_unflatten(leaves, self.spec)
        state: dict[str, Any] = {}
        for flat, group in zip(given[len(self.inputs) :], self.groups.values(), strict=True):
            parts = flat.split([shape.numel() for _, shape in group])
            state.update({name: part.view(shape) for (name, shape), part in zip(group, parts, strict=True)})
        # Each evaluation draws the same random numbers (torch's freeze_rng_state in its module tests).
        with _rng_from(self.torch, self.seed):
            output = functional_call(self.module, state, tuple(args), kwargs)
        return tuple(leaf for _, leaf in float_leaves(output))


def _counted(problem: _Problem) -> str:
    return (
        f"{problem.elements:,} element(s) perturbed ({len(problem.inputs)} floating-point "
        f"input(s), {len(problem.names)} trainable parameter(s) flattened into {len(problem.flat)} "
        f"tensor(s)), each of the {len(problem.gradcheck_inputs)} gradcheck input(s) along one seeded "
        "random direction, two float64 forward passes each"
    )


def _non_finite(torch: Any, output: tuple[Any, ...]) -> str:
    """Which output tensor holds NaN or infinity ("" when none does)."""
    for index, leaf in enumerate(output):
        if not bool(torch.isfinite(leaf.detach()).all()):
            return f"floating-point output {index}"
    return ""


def _out_of_domain(error: BaseException) -> bool:
    """Whether a gradcheck error is the module refusing a perturbed input (an exception of its own, or
    NaN where the finite difference was taken), not a wrong gradient."""
    return type(error).__name__ != "GradcheckError" or "numerical:nan" in str(error).replace(" ", "")


def _gradchecks(ctx: Context, torch: Any, problem: _Problem, what: str) -> tuple[str, Exception] | None:
    """gradcheck, then gradgradcheck (fast mode, seeded): the order that failed and its error, or None.
    A second order that torch refuses (@once_differentiable, a double backward not implemented) is a
    note."""
    for checker, order in ((GRADCHECK, "first"), (GRADGRADCHECK, "second")):
        function = torch.autograd.gradcheck if order == "first" else torch.autograd.gradgradcheck
        with _rng_from(torch, ctx.options.seed):
            verdict = ctx.attempt(
                f"{checker}(<{what} of its inputs and parameters>, fast_mode=True)",
                function,
                problem,
                problem.gradcheck_inputs,
                fast_mode=True,
            )
        if not isinstance(verdict, Exception):
            continue
        if order == "second" and (
            any(marker in str(verdict) for marker in _NO_SECOND_ORDER) or _zero_second_order(verdict)
        ):
            ctx.note(
                f"second-order gradients not checked: {checker} raised {type(verdict).__name__}: "
                f"{first_line(verdict)} (a backward without a backward of its own)"
            )
            return None
        return order, verdict
    return None


# gradgradcheck's finding where the backward is not itself differentiable: a custom Function's backward
# marked @once_differentiable (or computed outside autograd) gives second-order gradients of exactly
# zero, which torch reports as a mismatch, not as an error. That backward has no second order to check.
_ZERO_ANALYTICAL = re.compile(r"analytical:\s*-?0(?:\.0*)?(?:e[+-]?\d+)?(?![\d.])")


def _zero_second_order(error: BaseException) -> bool:
    return type(error).__name__ == "GradcheckError" and _ZERO_ANALYTICAL.search(str(error)) is not None


def _mismatch(problem: _Problem, error: BaseException) -> str:
    """gradcheck's finding in one line, naming the input it concerns."""
    import re

    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = " ".join(lines[:3]) if lines else type(error).__name__
    found = re.search(r"with respect to input (\d+)", text)
    if found:
        index = int(found.group(1))
        text = text.replace(found.group(0), f"with respect to {problem.describe_input(index)}", 1)
    return text


@register_check(
    protocol=Module,
    severity="required",
    needs=("torch", "example_inputs", "gradcheck"),
    requires=(deepcopy_is_independent, eval_is_deterministic, functional_call_matches_call),
    since="0.1.0",
)
def gradients_match_finite_differences(ctx: Context) -> None:
    """With the declaration gradcheck=True: on a deep copy converted to float64, in eval mode,
    torch.autograd.gradcheck and gradgradcheck (fast mode) pass over the floating-point inputs and the
    trainable parameters: the gradients autograd computes agree with finite differences."""
    torch = torch_module(ctx)
    double = torch.float64
    call = args_text(ctx)
    clone = deep_copy(ctx)
    converted = ctx.attempt("copy.deepcopy(m).to(torch.float64)", clone.to, double)
    if isinstance(converted, Exception):
        ctx.skip(
            f"the module has no float64 path: copy.deepcopy(m).to(torch.float64) raised "
            f"{type(converted).__name__}: {first_line(converted)} (module.to_dtype reports it); "
            "finite differences need float64"
        )
    args, kwargs = arguments_in_float64(ctx)

    def problem_of(with_inputs: bool = True) -> _Problem:
        """The :class:`_Problem` of the float64 copy and inputs (with ``with_inputs=False``, of its
        trainable parameters alone)."""
        return ctx.call(
            "copy.deepcopy(m).to(torch.float64).named_parameters()",
            _Problem,
            torch,
            clone,
            args,
            kwargs,
            ctx.options.seed,
            with_inputs=with_inputs,
        )

    problem = problem_of()
    if not problem.gradcheck_inputs:
        ctx.skip(
            "neither the example inputs nor the module's trainable parameters hold a floating-point tensor"
        )
    name = "copy.deepcopy(m).to(torch.float64).eval()"
    what = f"{name}({call} in float64)"
    with eval_mode(clone, name):
        output = ctx.attempt(what, problem, *problem.gradcheck_inputs)
        if isinstance(output, Exception) and problem.inputs:
            # torch refuses a gradient with respect to some argument (a loss's target): the
            # parameters alone, when the call works without the inputs asking for gradients.
            alone = problem_of(with_inputs=False)
            retried = ctx.attempt(what, alone, *alone.gradcheck_inputs)
            if not isinstance(retried, Exception):
                if not alone.flat:
                    ctx.skip(
                        f"{what} with inputs that require gradients raised {type(output).__name__}: "
                        f"{first_line(output)}, and the module has no trainable parameter to check instead"
                    )
                ctx.note(
                    f"the inputs were left out: with inputs that require gradients the call raised "
                    f"{type(output).__name__}: {first_line(output)}; the parameters were checked"
                )
                problem, output = alone, retried
        if isinstance(output, Exception):
            ctx.skip(
                f"the module has no float64 path: {what} raised {type(output).__name__}: "
                f"{first_line(output)} (module.to_dtype reports it); finite differences need float64"
            )
        if not output:
            ctx.skip(f"{what} returns no floating-point tensor to differentiate")
        found = _non_finite(torch, output)
        if found:
            ctx.skip(
                f"{what} returns NaN or infinity ({found}) at the example inputs: finite differences "
                "cannot be compared there (give inputs inside the module's domain)"
            )
        verdict = _gradchecks(ctx, torch, problem, what)
        if verdict is not None and problem.inputs and _out_of_domain(verdict[1]):
            # gradcheck's perturbation took an input out of the module's domain (a target of BCELoss
            # past 1, a log of a value near 0): the parameters are checked without perturbing inputs.
            order, error = verdict
            problem = problem_of(with_inputs=False)
            if not problem.flat:
                ctx.skip(
                    f"perturbing the inputs by gradcheck's eps=1e-6 takes them out of the module's domain "
                    f"({type(error).__name__}: {first_line(error)}), and the module has no trainable "
                    "parameter to check instead"
                )
            ctx.note(
                f"the inputs were left out: perturbing them takes them out of the module's domain "
                f"({type(error).__name__}: {first_line(error)}); the parameters were checked"
            )
            verdict = _gradchecks(ctx, torch, problem, what)
    counted = _counted(problem)
    if verdict is not None:
        order, error = verdict
        checker = GRADCHECK if order == "first" else GRADGRADCHECK
        mismatch = type(error).__name__ == "GradcheckError"
        kind = "disagree with finite differences" if mismatch else "raised"
        ctx.fail(
            f"{checker} on {what}: the {order}-order gradients {kind} "
            f"({type(error).__name__}: {_mismatch(problem, error)}); "
            f"{counted}; expected autograd's gradients to match the finite differences in float64 (a "
            "custom autograd.Function whose backward is not the derivative of its forward trains on "
            "wrong gradients, which a loss curve hides: torch tests every nn module so)",
            reproduce=(
                f"{checker}(lambda *t: torch.func.functional_call(c, <t as parameters>, <t as inputs>), "
                "[x.double().requires_grad_() for x in inputs] + [cat of the trainable parameters], "
                "fast_mode=True) with c = copy.deepcopy(m).double().eval()"
            ),
        )
    ctx.note(f"{counted}")
