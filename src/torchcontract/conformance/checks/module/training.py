"""The Module clauses on training and dtypes: the module runs in train mode (any module), gradients reach
the parameters and are finite, and converting the module to another floating-point dtype keeps its
computation (torch modules)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torchcontract.conformance._core.context import Context, SharedKey
from torchcontract.conformance._core.registry import register_check
from torchcontract.conformance._values import (
    close_difference,
    describe,
    is_tensor,
    tensor_module,
)
from torchcontract.conformance._values.convert import in_dtype
from torchcontract.conformance.checks._calling import (
    args_text,
    eval_mode,
    eval_output,
    fresh_inputs,
    fresh_kwargs,
    output_with,
    seeded,
)
from torchcontract.conformance.checks.callable_module import eval_is_deterministic
from torchcontract.conformance.checks.module._shared import (
    BACKWARD_OF_SUM,
    arguments_in_float64,
    deep_copy,
    first_line,
    float_leaves,
    listed,
    non_leaf_gradients_unsaid,
    structure_difference,
    sum_of,
    torch_module,
)
from torchcontract.conformance.checks.module.protocol import deepcopy_is_independent
from torchcontract.protocols import Module

EVAL_ONLY = (
    "the target declares eval_only=True (its example inputs cannot drive train mode, or it is never "
    "trained): the train-mode clauses do not apply"
)


def _train_call(ctx: Context) -> str:
    return f"copy.deepcopy(m).train()({args_text(ctx)})"


@dataclass(frozen=True)
class _TrainingStep:
    """What the train-mode clauses read of one training step of a deep copy of m: the copy's gradients
    cleared (a Parameter's deep copy has none, but a plain tensor that requires grad carries its gradient
    into the copy), put in train mode, called with fresh example inputs
    under :func:`seeded`, then a backward pass from :data:`BACKWARD_OF_SUM` over the outputs that
    require grad. Facts, not tensors: the copy, its gradients and the outputs are dropped once read, so
    a large model is not held twice for the rest of the run."""

    what: str  # how the call in train mode is shown
    output: Exception | None  # what that call raised, if it did
    trainable: list[str]  # the parameters with requires_grad, by name
    # The rest is read from the output and the backward pass: left as below when the call raised.
    floats: bool = False  # whether the output holds a floating-point tensor
    tracked: bool = False  # whether one of those requires grad
    non_finite_output: tuple[str, tuple[int, int, str]] | None = None  # (path, _non_finite) of the first such
    loss: Exception | tuple[int, int, str] | None = None  # what summing raised, or _non_finite of the sum
    loss_value: str = ""  # the sum, shown (when it is not finite)
    backward: Exception | None = None  # what the backward pass raised, if it did
    unreached: list[str] = field(default_factory=list)  # trainable parameters left with .grad None
    # (name, _non_finite) per such gradient
    non_finite_gradients: list[tuple[str, tuple[int, int, str]]] = field(default_factory=list)


# One training step per run of the target's checks, shared by backward_reaches_parameters and
# gradients_are_finite (each a forward and backward pass of a copy before). train_forward_runs takes its
# own forward pass: a backward pass that raises or hangs is not that clause's.
_TRAINING_STEP: SharedKey[_TrainingStep] = SharedKey("one training step of copy.deepcopy(m)", per_run=True)


def _training_step(ctx: Context) -> _TrainingStep:
    return ctx.shared(_TRAINING_STEP, lambda: _take_training_step(ctx))


def _take_training_step(ctx: Context) -> _TrainingStep:
    torch = tensor_module()
    clone = deep_copy(ctx)
    named = list(ctx.call("clone.named_parameters()", lambda: list(clone.named_parameters())))
    trainable = [(name, p) for name, p in named if is_tensor(p) and p.requires_grad]
    for _, parameter in trainable:
        parameter.grad = None
    ctx.call("copy.deepcopy(m).train()", clone.train)
    what = _train_call(ctx)
    with seeded(ctx):
        output = ctx.attempt(what, clone, *fresh_inputs(ctx), **fresh_kwargs(ctx))
    if isinstance(output, Exception) or torch is None:
        return _TrainingStep(
            what=what,
            output=output if isinstance(output, Exception) else None,
            trainable=[name for name, _ in trainable],
        )
    floats = float_leaves(output)
    tracked = [(path, leaf) for path, leaf in floats if leaf.requires_grad]
    non_finite_output = next(
        ((path, found) for path, leaf in tracked if (found := _non_finite(torch, leaf)) is not None), None
    )
    loss: Exception | tuple[int, int, str] | None = None
    loss_value, backward = "", None
    if tracked:
        total = ctx.attempt(f"<the loss of {BACKWARD_OF_SUM}>", sum_of, torch, [leaf for _, leaf in tracked])
        if isinstance(total, Exception):
            loss = total
        else:
            loss = _non_finite(torch, total)
            if loss is not None:
                loss_value = f"{total.item()} in {total.dtype}"
            backward = ctx.attempt(f"{BACKWARD_OF_SUM} after {what}", total.backward)
    gradients = _gradients_of(trainable)
    return _TrainingStep(
        what=what,
        output=None,
        trainable=[name for name, _ in trainable],
        floats=bool(floats),
        tracked=bool(tracked),
        non_finite_output=non_finite_output,
        loss=loss,
        loss_value=loss_value,
        backward=backward if isinstance(backward, Exception) else None,
        unreached=[name for name, gradient in gradients if gradient is None],
        non_finite_gradients=[
            (name, found)
            for name, gradient in gradients
            if gradient is not None and (found := _non_finite(torch, gradient)) is not None
        ],
    )


def _gradients_of(trainable: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """(name, .grad) of each trainable parameter (one that is not a leaf has none, which
    backward_reaches_parameters reports)."""
    with non_leaf_gradients_unsaid():
        return [(name, parameter.grad) for name, parameter in trainable]


def _trainable(ctx: Context, step: _TrainingStep) -> list[str]:
    """The names of the copy's parameters with requires_grad; skips when there is none."""
    if not step.trainable:
        ctx.skip("the module has no parameter with requires_grad=True")
    return step.trainable


@register_check(
    protocol=Module,
    severity="required",
    needs=("example_inputs",),
    requires=(deepcopy_is_independent,),
    per_dtype=True,
    since="0.1.0",
    touches="copies",
)
def train_forward_runs(ctx: Context) -> None:
    """In train mode, a deep copy called with the example inputs returns without raising (unless the
    target declares eval_only=True)."""
    if ctx.options.eval_only:
        ctx.skip(EVAL_ONLY)
    clone = deep_copy(ctx)
    ctx.call("copy.deepcopy(m).train()", clone.train)
    what = _train_call(ctx)
    with seeded(ctx):
        output = ctx.attempt(what, clone, *fresh_inputs(ctx), **fresh_kwargs(ctx))
    if isinstance(output, Exception):
        ctx.fail(
            f"{what} raised {type(output).__name__}: {first_line(output)}; expected the module to run in "
            "train mode with the example inputs (a training step calls it so; the eval-mode clauses cannot "
            "see a train-only path such as dropout, batch statistics or an auxiliary head). If these inputs "
            "cannot drive train mode (a batch of one sample into BatchNorm), give a batch that can, or "
            "declare eval_only=True",
            reproduce=f"copy.deepcopy(m).train()({args_text(ctx)})",
        )


@register_check(
    protocol=Module,
    severity="required",
    needs=("torch", "example_inputs"),
    requires=(deepcopy_is_independent, train_forward_runs),
    per_dtype=True,
    since="0.1.0",
    touches="copies",
)
def backward_reaches_parameters(ctx: Context) -> None:
    """In train mode, a backward pass from the sum of the floating-point outputs gives every parameter
    with requires_grad a gradient (unless the target declares unused_parameters=True)."""
    torch_module(ctx)
    if ctx.options.eval_only:
        ctx.skip(EVAL_ONLY)
    step = _training_step(ctx)
    trainable = _trainable(ctx, step)
    if step.output is not None:
        ctx.skip(
            f"{step.what} raised {type(step.output).__name__}: {first_line(step.output)}, so the example "
            "inputs cannot drive a training step (give inputs that work in train mode, e.g. a batch of more "
            "than one sample for BatchNorm)"
        )
    if not step.floats:
        ctx.skip("the output has no floating-point tensor to take a backward pass from")
    _raise_from_backward(ctx, step)
    if not step.unreached:
        return
    unreached = step.unreached
    summary = f"{listed(unreached)} ({len(unreached)} of {len(trainable)} trainable parameters)"
    if ctx.options.unused_parameters:
        ctx.note(f"no gradient for {summary}: declared unused_parameters=True")
        return
    ctx.fail(
        f"after {step.what} and {BACKWARD_OF_SUM}, parameter(s) {summary} have .grad None; expected every "
        "parameter with requires_grad to receive a gradient (DistributedDataParallel waits for each one: "
        "the next iteration raises 'Expected to have finished reduction in the prior iteration' unless "
        "it is built with find_unused_parameters=True; freeze such parameters with "
        "requires_grad_(False), or declare unused_parameters=True for a branch unused by design)",
        reproduce=(
            f"c = copy.deepcopy(m).train(); out = c({args_text(ctx)}); <sum of out's floating-point "
            "tensors>.backward(); [n for n, p in c.named_parameters() if p.requires_grad and p.grad is None]"
        ),
    )


def _raise_from_backward(ctx: Context, step: _TrainingStep) -> None:
    """Fail, as the call itself would have, where summing the outputs or the backward pass raised."""
    if isinstance(step.loss, Exception):
        ctx.raised(f"<the loss of {BACKWARD_OF_SUM}>", step.loss)
    if step.backward is not None:
        ctx.raised(f"{BACKWARD_OF_SUM} after {step.what}", step.backward)


def _non_finite(torch: Any, tensor: Any) -> tuple[int, int, str] | None:
    """(how many values of ``tensor`` are not finite, how many it has, which kinds: "NaN", "inf"), or
    None when they are all finite or cannot be read (a layout without ``isfinite``); a sparse tensor by
    its stored values."""
    try:
        values = tensor.detach()
        if values.is_sparse:
            values = values.coalesce().values()
        if (
            type(values) is torch.Tensor
            and (values.is_floating_point() or values.is_complex())
            and bool(torch.isfinite(values.sum()).all())
        ):
            # A NaN or an infinity among the values makes their sum NaN or infinite, so a finite sum
            # means every value is finite: one reduction in place of a mask as large as the tensor. (A
            # sum that overflows is not finite either; the count below then finds no value.)
            return None
        finite = torch.isfinite(values)
        bad = int(finite.numel() - finite.sum())
        if not bad:
            return None
        kinds = [
            kind
            for kind, found in (("NaN", torch.isnan(values).any()), ("inf", torch.isinf(values).any()))
            if found
        ]
        return bad, int(finite.numel()), " and ".join(kinds)
    except Exception:  # a tensor subclass or layout torch.isfinite does not take: not judged
        return None


@register_check(
    protocol=Module,
    severity="required",
    needs=("torch", "example_inputs"),
    requires=(deepcopy_is_independent, train_forward_runs),
    since="0.1.0",
    touches="copies",
)
def gradients_are_finite(ctx: Context) -> None:
    """In train mode, where the floating-point outputs and their sum are finite, a backward pass from
    that sum gives every parameter that gets a gradient a finite one."""
    torch_module(ctx)
    if ctx.options.eval_only:
        ctx.skip(EVAL_ONLY)
    step = _training_step(ctx)
    trainable = _trainable(ctx, step)
    if step.output is not None:
        ctx.raised(step.what, step.output)
    if not step.tracked:
        ctx.skip("the output has no floating-point tensor that requires grad to take a backward pass from")
    if step.non_finite_output is not None:
        path, found = step.non_finite_output
        ctx.skip(
            f"output{path} holds {found[0]} non-finite ({found[2]}) of {found[1]} values, so the "
            "gradients may rightly be non-finite too (give inputs on which the module computes finite "
            "outputs to check them)"
        )
    if isinstance(step.loss, Exception):
        _raise_from_backward(ctx, step)
    if step.loss is not None:
        ctx.skip(f"the finite outputs sum to {step.loss_value}, so the gradients are not judged")
    _raise_from_backward(ctx, step)
    bad = step.non_finite_gradients
    if not bad:
        return
    name, (count, total, kinds) = bad[0]
    summary = f"{listed([name for name, _ in bad])} ({len(bad)} of {len(trainable)} trainable parameters)"
    ctx.fail(
        f"after {step.what} and {BACKWARD_OF_SUM}, whose outputs and loss are finite, parameter(s) {summary} "
        f"have non-finite gradients ({name!r}: {count} of {total} values {kinds}); expected finite "
        "gradients where the loss is finite (one optimizer step writes them into the weights, and every "
        "later output is NaN: an op whose derivative is infinite where forward is finite, such as sqrt "
        "or pow(x, 0.5) at 0, log or division near 0, or torch.where over a branch that is inf or NaN "
        "where it is not taken; add an eps, or clamp or mask the input of that op)",
        reproduce=(
            f"c = copy.deepcopy(m).train(); out = c({args_text(ctx)}); <sum of out's floating-point "
            "tensors>.backward(); [n for n, p in c.named_parameters() if p.grad is not None and not "
            "p.grad.isfinite().all()]"
        ),
    )


def _compared_in(value: Any, dtype: Any) -> Any:
    """``value`` with every floating-point tensor converted to ``dtype`` for a comparison (see
    :func:`output_with`); a value that cannot be rebuilt so is converted in its containers only."""
    converted = output_with(value, lambda leaf: leaf.to(dtype) if leaf.is_floating_point() else leaf)
    return in_dtype(value, dtype) if converted is None else converted


# float32 against float64 (the rounding of float32 through a few layers, not a bug): looser than
# assert_close's float32 defaults (rtol=1.3e-6, atol=1e-5), as torch's own test_cpu_gpu_parity is.
DTYPE_TOLERANCE = (1e-3, 1e-4)


@register_check(
    protocol=Module,
    severity="recommended",
    needs=("torch", "example_inputs"),
    requires=(deepcopy_is_independent, eval_is_deterministic),
    since="0.1.0",
    touches="copies",
)
def to_dtype(ctx: Context) -> None:
    """m.to(torch.float64) returns m, converts every floating-point parameter and buffer to float64
    (integer ones keep their dtype), and with float64 inputs the outputs are float64 and close to the
    float32 outputs."""
    torch = torch_module(ctx)
    double = torch.float64
    named = ctx.call(
        "m.named_parameters(), m.named_buffers()",
        lambda: [*ctx.obj.named_parameters(), *ctx.obj.named_buffers()],
    )
    if not any(tensor.dtype == torch.float32 for _, tensor in named):
        ctx.skip("the module has no float32 parameter or buffer to convert")
    before = {name: tensor.dtype for name, tensor in named}
    clone = deep_copy(ctx)
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
    expected_output = eval_output(ctx)
    inputs, kwargs = arguments_in_float64(ctx)
    what = f"copy.deepcopy(m).to(torch.float64)({args_text(ctx)} in float64)"
    with eval_mode(clone, "copy.deepcopy(m)"), seeded(ctx):
        output = ctx.attempt(what, clone, *inputs, **kwargs)
    reproduce = f"m.to(torch.float64)(*[x.double() for x in inputs]) vs m({args_text(ctx)})"
    if isinstance(output, Exception):
        ctx.fail(
            f"{what} raised {type(output).__name__}: {first_line(output)}; expected the module to "
            "run in float64 once converted (a cast to a fixed dtype in forward, such as x.float(), or a "
            "float32 tensor that .to() does not convert breaks .double() and .half() alike)",
            reproduce=reproduce,
        )
    kept = [  # leaf by leaf in order: a structure that differs is compared below
        (path, leaf.dtype)
        for (path, leaf), (_, was) in zip(float_leaves(output), float_leaves(expected_output), strict=False)
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
    shape = structure_difference(_compared_in(output, double), _compared_in(expected_output, double))
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
        with eval_mode(module, name), seeded(ctx):
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
