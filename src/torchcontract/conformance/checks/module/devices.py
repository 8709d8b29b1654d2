"""The Module clauses on devices and memory layout (torch modules only): moving a module and its outputs,
parity of a CUDA device with the CPU, a round trip through a device, and parity of the channels-last
layout with the contiguous one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torchcontract.conformance._core.context import (
    Context,
)
from torchcontract.conformance._core.registry import register_check
from torchcontract.conformance._runtime.calls import global_change, ours
from torchcontract.conformance._values import (
    close_difference,
    describe,
    is_tensor,
    leaves,
    tensor_module,
)
from torchcontract.conformance._values.convert import map_tensors, on_device
from torchcontract.conformance.checks._calling import (
    args_text,
    call_module,
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
    torch_module,
)
from torchcontract.conformance.checks.module.protocol import deepcopy_is_independent
from torchcontract.protocols import Module


def _arguments_on(ctx: Context, device: Any, label: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Fresh example inputs and kwargs moved to ``device`` (shown as ``label``) by the one walker of
    values (:mod:`..._values.convert`): a container with its own ``.to()`` (a TensorDict, a
    BatchEncoding) is moved by it. A call into the object: the containers' own code runs."""
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
    touches="copies",
)
def to_device(ctx: Context) -> None:
    """m.to(device) returns m and moves every parameter and buffer; outputs land on that device. On the
    CPU, a copy moved to the meta device runs too, so that a tensor or submodule .to() does not move
    shows as it would on a GPU."""
    torch = torch_module(ctx)
    device = torch.device(ctx.device)
    clone = deep_copy(ctx)
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
    clone = deep_copy(ctx)
    moved = ctx.attempt("copy.deepcopy(m).to('meta')", clone.to, meta)
    if isinstance(moved, Exception):
        ctx.skip(
            f"m.to('cpu') passed; copy.deepcopy(m).to('meta') raised {type(moved).__name__}: "
            f"{first_line(moved)}, so tensors that .to() leaves behind cannot be found without a second "
            "device (run with device='cuda')"
        )
    _moved_tensors(ctx, clone, meta, "meta")
    moving = "<the example inputs and kwargs>.to('meta')"
    arguments = ctx.attempt(
        moving, lambda: (on_device(fresh_inputs(ctx), meta), on_device(fresh_kwargs(ctx), meta))
    )
    if isinstance(arguments, Exception):
        ctx.skip(
            f"m.to('cpu') passed; {moving} raised {type(arguments).__name__}: {first_line(arguments)}, so "
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
                f"{type(output).__name__}: {first_line(output)}: an op without a meta kernel or a "
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
            f"{what} raised {type(output).__name__}: {first_line(output)}; expected every tensor the "
            f"forward uses to move with the module ({cause}; on a GPU, model.to('cuda') fails the same "
            "way)",
            reproduce=(
                "meta = torch.device('meta'); copy.deepcopy(m).to(meta)(*[x.to(meta) for x in inputs])"
            ),
        )
    _outputs_on(ctx, output, meta, "meta", what)


def _compared_device(ctx: Context) -> tuple[Any, Any]:
    """torch and the accelerator device ``ctx.device`` whose outputs are compared with the CPU's; skips
    a module declared deterministic=False."""
    torch = torch_module(ctx)
    device = torch.device(ctx.device)
    if not ctx.options.deterministic:
        # Seeding does not help: the CPU and CUDA generators draw different numbers from one seed.
        ctx.skip("the target declares deterministic=False: CPU and CUDA outputs of a random module differ")
    return torch, device


def _tolerance_text(tolerance: tuple[float, float] | None) -> str:
    """The tolerances an output comparison used (the target's parity_tolerance or assert_close's), for
    a message."""
    return (
        "torch.testing.assert_close's default tolerances for the dtype"
        if tolerance is None
        else f"the target's parity_tolerance (rtol={tolerance[0]}, atol={tolerance[1]})"
    )


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
def device_parity(ctx: Context) -> None:
    """On a CUDA device, outputs match CPU outputs within torch.testing.assert_close's tolerances (or
    the target's parity_tolerance), with TF32 off."""
    torch, device = _compared_device(ctx)
    with eval_mode(ctx.obj):
        expected = call_module(ctx, ctx.obj)
    clone = deep_copy(ctx).to(device)
    inputs, kwargs = _arguments_on(ctx, device, ctx.device)
    what = f"m.to({ctx.device!r})({args_text(ctx)} on {ctx.device})"
    with _tf32_off(torch), eval_mode(clone, "copy.deepcopy(m)"):
        output = ctx.call(what, clone, *inputs, **kwargs)
    tolerance = ctx.options.parity_tolerance
    on_cpu = ctx.call(f"<the output of {what}>.to('cpu')", on_device, output, torch.device("cpu"))
    found = close_difference(on_cpu, expected, tolerance=tolerance)
    if found:
        within = _tolerance_text(tolerance)
        ctx.fail(
            f"on {ctx.device} the output differs from the CPU output ({found}); expected agreement "
            f"within {within} (TF32 off; a deep model may need a looser parity_tolerance=(rtol, atol))",
            reproduce=f"m({args_text(ctx)}) vs {what}",
        )


def _gradients(ctx: Context, module: Any, inputs: Any, kwargs: Any, what: str) -> tuple[Any, dict[str, Any]]:
    """The output of ``module(*inputs, **kwargs)`` in eval mode and the gradients its parameters get
    from a backward pass of the sum of its floating-point outputs (``{name: grad}``, None ones left out)."""
    for _, parameter in module.named_parameters():
        parameter.grad = None  # a copy may carry the gradients m had
    with eval_mode(module, "copy.deepcopy(m)"):
        output = ctx.call(what, module, *inputs, **kwargs)
    tracked = [leaf for _, leaf in float_leaves(output) if leaf.requires_grad]
    ctx.call(f"{BACKWARD_OF_SUM} after {what}", backward_of_sum, tensor_module(), tracked)
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
def device_round_trip(ctx: Context) -> None:
    """On a CUDA device, the parameters' gradients from a backward pass agree with the CPU ones (within
    assert_close's tolerances or parity_tolerance, TF32 off), and a copy moved to the device and back
    gives the CPU outputs again."""
    torch, device = _compared_device(ctx)
    call = args_text(ctx)
    on_cpu = deep_copy(ctx)
    _, expected_grads = _gradients(
        ctx, on_cpu, fresh_inputs(ctx), fresh_kwargs(ctx), f"copy.deepcopy(m)({call})"
    )
    with eval_mode(ctx.obj):
        expected = call_module(ctx, ctx.obj)
    moved = deep_copy(ctx)
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


def _channels_last(ctx: Context, torch: Any, dims: int, made: list[str]) -> tuple[Any, Any]:
    """Fresh example inputs and kwargs with every floating-point tensor of ``dims`` dimensions laid out
    channels-last (``x.contiguous(memory_format=...)``: equal values), their places going to ``made``."""
    memory_format = torch.channels_last if dims == 4 else torch.channels_last_3d

    def convert(tensor: Any, where: str) -> Any:
        if tensor.dim() != dims or not tensor.is_floating_point() or tensor.layout != torch.strided:
            return tensor
        made.append(where)
        return tensor.contiguous(memory_format=memory_format)

    return map_tensors(fresh_inputs(ctx), convert, "inputs"), map_tensors(
        fresh_kwargs(ctx), convert, "kwargs"
    )


def _image_dims(torch: Any, ctx: Context) -> int | None:
    """5 when an example input is a 5-D floating-point tensor (a volume), else 4 when one is 4-D (an
    image batch), else None."""
    found = {
        leaf.dim()
        for _, leaf in leaves((ctx.example_inputs, ctx.example_kwargs))
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point() and leaf.dim() in (4, 5)
    }
    return max(found) if found else None


@register_check(
    protocol=Module,
    severity="recommended",
    needs=("torch", "example_inputs"),
    requires=(deepcopy_is_independent, eval_is_deterministic),
    per_dtype=True,
    since="0.1.0",
    touches="copies",
)
def channels_last_matches_contiguous(ctx: Context) -> None:
    """For 4-D (5-D) floating-point inputs, a copy converted with .to(memory_format=torch.channels_last)
    (channels_last_3d) and called with its inputs laid out so returns m's outputs in eval mode, within
    assert_close's tolerances (or the target's parity_tolerance)."""
    torch = torch_module(ctx)
    dims = _image_dims(torch, ctx)
    if dims is None:
        ctx.skip(
            "no example input is a 4-D or 5-D floating-point tensor (channels_last lays out image batches "
            "(N, C, H, W), channels_last_3d volumes (N, C, D, H, W))"
        )
    layout = "channels_last" if dims == 4 else "channels_last_3d"
    memory_format = getattr(torch, layout)
    clone = deep_copy(ctx)
    converting = f"copy.deepcopy(m).to(memory_format=torch.{layout})"
    converted = ctx.attempt(converting, clone.to, memory_format=memory_format)
    if isinstance(converted, Exception):
        ctx.skip(
            f"{converting} raised {type(converted).__name__}: {first_line(converted)} (Module.to converts "
            f"every 4-D and 5-D parameter and buffer to one layout, which {layout} does not give them all)"
        )
    made: list[str] = []
    inputs, kwargs = ctx.call(
        f"<the example inputs and kwargs>.contiguous(memory_format=torch.{layout})",
        _channels_last,
        ctx,
        torch,
        dims,
        made,
    )
    expected = eval_output(ctx)
    call = args_text(ctx)
    what = f"{converting}({call} with {', '.join(made[:3])} in {layout})"
    reproduce = (
        f"m.to(memory_format=torch.{layout})(*[x.contiguous(memory_format=torch.{layout}) for x in inputs]) "
        f"vs m({call})"
    )
    with eval_mode(clone, "copy.deepcopy(m)"), seeded(ctx):
        output = ctx.attempt(what, clone, *inputs, **kwargs)
    if isinstance(output, Exception):
        ctx.fail(
            f"{what} raised {type(output).__name__}: {first_line(output)}; expected the module to run in "
            f"{layout} (a convolution's output follows its input's and weight's layout, so a .view() of a "
            "feature map, such as x.view(x.size(0), -1) before a classifier, raises: use .reshape() or "
            "torch.flatten(x, 1))",
            reproduce=reproduce,
        )
    tolerance = ctx.options.parity_tolerance
    found = close_difference(output, expected, tolerance=tolerance)
    if found and tolerance is None:
        errors = _errors_from_float64(ctx, torch, output, expected)
        if errors is not None and errors[0] <= ROUNDING_FACTOR * errors[1]:
            ctx.note(
                f"{layout} differs from m beyond assert_close's tolerances ({found}), but its output is as "
                f"close to the module's float64 result ({errors[0]:.3g}) as m's own ({errors[1]:.3g}), "
                f"within {ROUNDING_FACTOR:g} times: rounding in another order of summation, not the layout"
            )
            return
        if errors is not None:
            found += (
                f"; from the module's float64 result, {layout}'s output is off by {errors[0]:.3g}, m's own "
                f"by {errors[1]:.3g}"
            )
        elif (sizes := _difference_and_size(output, expected)) and sizes[0] <= ROUNDING_SHARE * sizes[1]:
            ctx.undecided(
                f"{what} differs from m({call}) beyond assert_close's tolerances ({found}), by at most "
                f"{sizes[0]:.3g} where the outputs reach {sizes[1]:.3g}: the size of float32 rounding in "
                "another order of summation, and the module gives no float64 result to tell rounding from "
                "the layout by (copy.deepcopy(m).to(torch.float64) does not convert or run on the inputs in "
                "float64, or its result cannot be compared); give parity_tolerance=(rtol, atol) to decide"
            )
    if found:
        within = _tolerance_text(tolerance)
        ctx.fail(
            f"{what} differs from m({call}) ({found}){seeded_note(ctx)}; expected agreement within {within} "
            f"(the values are the same, only their memory layout differs: code that reads raw memory, "
            "strides or data_ptr(), or a custom kernel that assumes contiguity, computes something else; a "
            "deep model may need a looser parity_tolerance=(rtol, atol))",
            reproduce=reproduce,
        )


# Kernels of the two layouts add in another order, and a deep network (random weights, activations in
# the millions) grows that float32 rounding past assert_close's tolerances (torchvision's resnet152,
# inception_v3). Against the module in float64 both outputs are off by rounding alone, channels-last's
# within twice the contiguous call's in torchvision's deepest classifiers; a layout bug is off by the
# size of the values themselves, many orders of magnitude further.
ROUNDING_FACTOR = 10.0
# Without a float64 result, a difference within this share of the outputs' largest magnitude is the size
# of rounding (float32's epsilon, 1.2e-7, grown by a deep network's sums), not of a layout bug, which is off
# by the size of the values it reads wrongly: the clause is then undecided, never failed.
ROUNDING_SHARE = 1e-4


def _errors_from_float64(ctx: Context, torch: Any, output: Any, expected: Any) -> tuple[float, float] | None:
    """How far ``output`` (channels-last) and ``expected`` (m's) are from the module's float64 result on
    the same inputs (the largest absolute difference over their floating-point leaves); None where
    there is no float64 result to compare with (the module does not convert or run in float64, or the
    outputs differ in structure or hold NaN)."""
    double = torch.float64
    clone = deep_copy(ctx)
    name = "copy.deepcopy(m).to(torch.float64)"
    if isinstance(ctx.attempt(name, clone.to, double), Exception):
        return None
    inputs, kwargs = arguments_in_float64(ctx)
    with eval_mode(clone, name), seeded(ctx):
        reference = ctx.attempt(f"{name}(<the inputs in float64>)", clone, *inputs, **kwargs)
    if isinstance(reference, Exception):
        return None
    return _largest_errors(output, expected, reference)


@ours
def _difference_and_size(output: Any, expected: Any) -> tuple[float, float] | None:
    """The largest absolute difference between the floating-point leaves of ``output`` and ``expected``,
    and the largest magnitude of ``expected``'s; None when they differ in structure or hold NaN or
    infinities (nothing to size rounding by)."""
    found, wanted = float_leaves(output), float_leaves(expected)
    if not found or len(found) != len(wanted):
        return None
    worst, size = 0.0, 0.0
    for (_, left), (_, right) in zip(found, wanted, strict=True):
        if left.shape != right.shape or left.is_complex():
            return None
        if right.numel() == 0:
            continue
        left, right = left.detach().double().cpu(), right.detach().double().cpu()
        if not (bool(left.isfinite().all()) and bool(right.isfinite().all())):
            return None
        worst = max(worst, float((left - right).abs().max()))
        size = max(size, float(right.abs().max()))
    return worst, size


@ours
def _largest_errors(output: Any, expected: Any, reference: Any) -> tuple[float, float] | None:
    found, wanted, exact = float_leaves(output), float_leaves(expected), float_leaves(reference)
    if not found or not len(found) == len(wanted) == len(exact):
        return None
    worst = [0.0, 0.0]
    for (_, left), (_, right), (_, truth) in zip(found, wanted, exact, strict=True):
        if not left.shape == right.shape == truth.shape or left.is_complex():
            return None
        if left.numel() == 0:
            continue
        for index, value in enumerate((left, right)):
            error = float((value.detach().double().cpu() - truth.detach().double().cpu()).abs().max())
            if error != error:  # NaN: nothing to judge by
                return None
            worst[index] = max(worst[index], error)
    return worst[0], worst[1]
