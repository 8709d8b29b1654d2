"""The Module clauses on compiling a module (torch modules only, with the declarations ``compile=True``
and ``export=True``): ``torch.compile``, forward and backward, and ``torch.export``."""

from __future__ import annotations

import sys
import warnings
from typing import Any

from torchcontract.conformance._core.context import Context
from torchcontract.conformance._core.registry import register_check
from torchcontract.conformance._values import close_difference
from torchcontract.conformance.checks._calling import (
    args_text,
    eval_mode,
    eval_output,
    fresh_inputs,
    fresh_kwargs,
    seeded,
    seeded_note,
)
from torchcontract.conformance.checks.callable_module import eval_is_deterministic
from torchcontract.conformance.checks.module._shared import (
    BACKWARD_OF_SUM,
    arguments_in_float64,
    backward_of_sum,
    deep_copy,
    first_line,
    float_leaves,
    structure_difference,
    torch_module,
)
from torchcontract.conformance.checks.module.devices import ROUNDING_FACTOR, ROUNDING_SHARE
from torchcontract.conformance.checks.module.protocol import deepcopy_is_independent
from torchcontract.protocols import Module

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
def compile_matches_eager(ctx: Context) -> None:
    """With the declaration compile=True: torch.compile of a deep copy with the "aot_eager" backend
    returns the eager outputs in eval mode (within assert_close's tolerances); on a difference, the
    "eager" backend says whether TorchDynamo's capture or AOTAutograd makes it."""
    torch = torch_module(ctx)
    call = args_text(ctx)
    expected = eval_output(ctx)
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
            f"{what} raised {type(found).__name__}: {first_line(found)}{where}; expected the eager "
            "output (TorchDynamo falls back to Python where it cannot capture a graph, so an error "
            "here is one the compiled module raises in training too)",
            reproduce=reproduce,
        )
    ctx.fail(
        f"{what} differs from m({call}) ({found}){where}{seeded_note(ctx)}; expected the eager output "
        "(a code path taken only under compilation, torch.compiler.is_compiling(), or Python "
        "state read in forward that the compiled graph captured as a constant)",
        reproduce=reproduce,
    )


def _compiled_call(backend: str, call: str) -> str:
    return f"torch.compile(copy.deepcopy(m), backend={backend!r})({call})"


def _compiled_difference(ctx: Context, torch: Any, backend: str, expected: Any) -> str | Exception | None:
    """How ``torch.compile(copy.deepcopy(m), backend=backend)`` in eval mode differs from ``expected``
    (the eager outputs): a description, the exception it raised, or None."""
    clone = deep_copy(ctx)
    what = _compiled_call(backend, args_text(ctx))
    _reset_compiler()
    try:
        compiled = ctx.call(
            f"torch.compile(copy.deepcopy(m), backend={backend!r})", torch.compile, clone, backend=backend
        )
        with eval_mode(clone, "copy.deepcopy(m)"), seeded(ctx):
            output = ctx.attempt(what, compiled, *fresh_inputs(ctx), **fresh_kwargs(ctx))
    finally:
        _reset_compiler()
    if isinstance(output, Exception):
        return output
    if ctx.options.deterministic:
        return close_difference(output, expected)
    return structure_difference(output, expected)


Gradients = dict[str, Any]


def _gradients(
    ctx: Context, torch: Any, backend: str | None, train: bool, *, in_float64: bool = False
) -> Gradients | Exception:
    """``{name: gradient or None}`` of every parameter of a deep copy (compiled with ``backend``, or
    eager for None; converted to float64 and called with the inputs in float64 when ``in_float64``)
    after one call in train or eval mode and a backward pass from the sum of its floating-point
    outputs; the exception the conversion, the call or the backward raised."""
    clone = deep_copy(ctx)
    name = "copy.deepcopy(m)"
    arguments: tuple[tuple[Any, ...], dict[str, Any]] | None = None
    if in_float64:
        converted = ctx.attempt(f"{name}.to(torch.float64)", clone.to, torch.float64)
        if isinstance(converted, Exception):
            return converted
        arguments = arguments_in_float64(ctx)
    ctx.call(f"{name}.{'train' if train else 'eval'}()", clone.train, train)
    named = ctx.call(f"{name}.named_parameters()", lambda: list(clone.named_parameters()))
    what = f"{name}({args_text(ctx)})" if backend is None else _compiled_call(backend, args_text(ctx))
    _reset_compiler()
    try:
        module = clone
        if backend is not None:
            compiling = f"torch.compile({name}, backend={backend!r})"
            module = ctx.call(compiling, torch.compile, clone, backend=backend)
        inputs, kwargs = arguments if arguments is not None else (fresh_inputs(ctx), fresh_kwargs(ctx))
        with seeded(ctx):
            output = ctx.attempt(what, module, *inputs, **kwargs)
        if isinstance(output, Exception):
            return output
        tracked = [leaf for _, leaf in float_leaves(output) if leaf.requires_grad]
        done = ctx.attempt(f"{BACKWARD_OF_SUM} of {what}", backward_of_sum, torch, tracked)
        if isinstance(done, Exception):
            return done
    finally:
        _reset_compiler()
    return {
        key: None if parameter.grad is None else parameter.grad.detach().clone()
        for key, parameter in named
        if parameter.requires_grad
    }


def _draws_in_train_mode(ctx: Context, torch: Any) -> bool:
    """Whether a deep copy in train mode returns other outputs when torch's global generator is seeded
    otherwise (dropout, stochastic depth): random numbers that compiled code does not draw as eager does."""
    clone = deep_copy(ctx)
    ctx.call("copy.deepcopy(m).train()", clone.train)
    outputs = []
    for seed in (0, 1):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            outputs.append(
                ctx.attempt(
                    f"copy.deepcopy(m).train()({args_text(ctx)}) with torch.manual_seed({seed})",
                    clone,
                    *fresh_inputs(ctx),
                    **fresh_kwargs(ctx),
                )
            )
    first, second = outputs
    if isinstance(first, Exception) or isinstance(second, Exception):
        return True  # train mode cannot be run: compared in eval mode
    return close_difference(first, second) is not None


def _gradient_difference(ctx: Context, compiled: Gradients, eager: Gradients) -> str | None:
    """How the compiled copy's parameter gradients differ from the eager copy's: a parameter with a
    gradient on one side only, or values beyond assert_close's tolerance (under deterministic=False, the
    shapes and dtypes only)."""
    for name, expected in eager.items():
        found = compiled.get(name)
        if (found is None) != (expected is None):
            side = "the compiled copy" if found is None else "the eager copy"
            return f"{name!r} has no gradient in {side}"
        if found is None:
            continue
        difference = (
            close_difference(found, expected, path=f".grad of {name!r}")
            if ctx.options.deterministic
            else structure_difference(found, expected)
        )
        if difference:
            return difference
    return None


@register_check(
    protocol=Module,
    severity="required",
    needs=("torch", "example_inputs", "compile"),
    requires=(deepcopy_is_independent, eval_is_deterministic, compile_matches_eager),
    per_dtype=True,
    since="0.1.0",
)
def compile_gradients_match_eager(ctx: Context) -> None:
    """With the declaration compile=True: after a backward pass from the sum of the floating-point
    outputs, each parameter of torch.compile(copy.deepcopy(m), backend="aot_eager") holds the gradient
    an eager deep copy gets (in train mode; in eval mode when train mode draws random numbers)."""
    torch = torch_module(ctx)
    named = ctx.call("m.named_parameters()", lambda: list(ctx.obj.named_parameters()))
    if not any(parameter.requires_grad for _, parameter in named):
        ctx.skip("the module has no parameter with requires_grad=True")
    train = not _draws_in_train_mode(ctx, torch)
    mode = "train" if train else "eval"
    if not train:
        ctx.note(
            "compared in eval mode: in train mode the module draws random numbers (dropout), which "
            "compiled code does not draw as eager code does"
        )
    eager = _gradients(ctx, torch, None, train)
    if isinstance(eager, Exception):
        ctx.skip(
            f"in {mode} mode, the eager copy's call or backward pass raised {type(eager).__name__}: "
            f"{first_line(eager)}, so there is no gradient to compare"
        )
    compiled = _gradients(ctx, torch, COMPILE_BACKEND, train)
    found = compiled if isinstance(compiled, Exception) else _gradient_difference(ctx, compiled, eager)
    if found is None:
        return
    if (
        isinstance(found, str)
        and not isinstance(compiled, Exception)
        and ctx.options.deterministic
        and _rounding_only(ctx, torch, train, compiled, eager, found)
    ):
        return
    dynamo_only = _compiled_gradient_difference(ctx, torch, DYNAMO_ONLY_BACKEND, train, eager)
    if dynamo_only is None:
        where = (
            f"; with backend={DYNAMO_ONLY_BACKEND!r} (TorchDynamo's graphs run as captured) they match, "
            "so the difference comes from AOTAutograd's tracing of the backward"
        )
        backend = COMPILE_BACKEND
    else:
        where = f" (with backend={COMPILE_BACKEND!r} too)"
        backend, found = DYNAMO_ONLY_BACKEND, dynamo_only
    call = args_text(ctx)
    what = f"{_compiled_call(backend, call)} in {mode} mode, then {BACKWARD_OF_SUM}"
    reproduce = (
        f"c = torch.compile(copy.deepcopy(m).{mode}(), backend={backend!r}); e = copy.deepcopy(m).{mode}(); "
        f"<sum of c({call})>.backward(); <sum of e({call})>.backward(); compare p.grad of c and e"
    )
    if isinstance(found, Exception):
        ctx.fail(
            f"{what} raised {type(found).__name__}: {first_line(found)}{where}; expected the eager "
            "gradients (the forward compiles, the backward pass does not)",
            reproduce=reproduce,
        )
    ctx.fail(
        f"{what}: {found}{where}{seeded_note(ctx)}; expected each parameter's eager gradient, within "
        "assert_close's tolerance (the compiled forward matches: a custom autograd.Function whose "
        "backward takes another path under torch.compiler.is_compiling(), or a branch detached only "
        "when compiling, trains on other gradients)",
        reproduce=reproduce,
    )


def _rounding_only(
    ctx: Context, torch: Any, train: bool, compiled: Gradients, eager: Gradients, found: str
) -> bool:
    """Whether the compiled gradients differ from the eager ones by rounding alone (noted):
    AOTAutograd's decomposed backward adds in another order, and a deep network (BatchNorm backbones,
    gradients in the thousands) grows that float32 rounding past assert_close's tolerances. Passes,
    noting it, when every differing gradient is as close to the module's float64 gradient as the
    eager one, within ROUNDING_FACTOR times; without a float64 gradient, undecided when every
    difference is within ROUNDING_SHARE of the gradient's largest magnitude. A gradient on one side
    only, or a difference the size of the gradient, is False: the failure stands."""
    differing = []
    for name, expected in eager.items():
        value = compiled.get(name)
        if (value is None) != (expected is None):
            return False
        if value is not None and expected is not None and close_difference(value, expected) is not None:
            differing.append((name, value, expected))
    if not differing:
        return False
    reference = _gradients(ctx, torch, None, train, in_float64=True)
    if isinstance(reference, Exception):
        sizes = [
            _largest(value - expected) / max(_largest(expected), 1e-30) for _, value, expected in differing
        ]
        if max(sizes) <= ROUNDING_SHARE:
            ctx.undecided(
                f"the compiled copy's gradients differ from the eager copy's beyond assert_close's "
                f"tolerances ({found}), by at most {max(sizes):.3g} of each gradient's largest magnitude: "
                "the size of float32 rounding in another order of summation, and the module gives no "
                f"float64 gradient to tell rounding from a wrong backward by ({type(reference).__name__}: "
                f"{first_line(reference)})"
            )
        return False
    worst = (0.0, 0.0)
    for name, value, expected in differing:
        truth = reference.get(name)
        if truth is None:
            return False
        errors = (_largest(value.double() - truth), _largest(expected.double() - truth))
        if not errors[0] <= ROUNDING_FACTOR * errors[1]:
            return False
        worst = max(worst, errors)
    ctx.note(
        f"the compiled copy's gradients differ from the eager copy's beyond assert_close's tolerances "
        f"({found}), but each is as close to the module's float64 gradient ({worst[0]:.3g}) as the eager "
        f"one ({worst[1]:.3g}), within {ROUNDING_FACTOR:g} times: rounding in another order of summation"
    )
    return True


def _largest(tensor: Any) -> float:
    """The largest absolute value of ``tensor`` in float64 (NaN when it holds one)."""
    return float(tensor.detach().double().abs().max()) if tensor.numel() else 0.0


def _compiled_gradient_difference(
    ctx: Context, torch: Any, backend: str, train: bool, eager: Gradients
) -> str | Exception | None:
    compiled = _gradients(ctx, torch, backend, train)
    if isinstance(compiled, Exception):
        return compiled
    return _gradient_difference(ctx, compiled, eager)


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
def export_matches_eager(ctx: Context) -> None:
    """With the declaration export=True: torch.export.export of a deep copy in eval mode, with the
    example inputs, succeeds, and the exported program's module returns the eager outputs."""
    torch = torch_module(ctx)
    call = args_text(ctx)
    expected = eval_output(ctx)
    clone = deep_copy(ctx)
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
            f"{what} raised {type(program).__name__}: {first_line(program)}; expected the module to "
            f"export (ExecuTorch, AOTInductor and ONNX's dynamo exporter start from torch.export: {cause})",
            reproduce=what,
        )
    exported = f"{what}.module()({call})"
    with seeded(ctx):
        output = ctx.attempt(exported, lambda: program.module()(*fresh_inputs(ctx), **fresh_kwargs(ctx)))
    reproduce = f"{exported} vs m.eval()({call})"
    if isinstance(output, Exception):
        ctx.fail(
            f"{exported} raised {type(output).__name__}: {first_line(output)}; expected the eager output",
            reproduce=reproduce,
        )
    found = (
        close_difference(output, expected)
        if ctx.options.deterministic
        else structure_difference(output, expected)
    )
    if found:
        ctx.fail(
            f"{exported} differs from m({call}) ({found}); expected the eager output (export traces one "
            "path for the example inputs: Python state or a branch read in forward is fixed in the program)",
            reproduce=reproduce,
        )
