"""The Module clauses on calling a module other ways (torch modules only): ``torch.func.functional_call``,
construction on the meta device, ``torch.compile`` and ``torch.export``."""

from __future__ import annotations

import sys
import warnings
from typing import Any

from torchcontract.conformance._core.context import (
    FACTORY_OFF,
    Context,
)
from torchcontract.conformance._core.registry import register_check
from torchcontract.conformance._runtime.calls import object_call
from torchcontract.conformance._values import (
    close_difference,
    describe,
)
from torchcontract.conformance._values.convert import on_device
from torchcontract.conformance.checks._calling import (
    args_text,
    call_module,
    eval_mode,
    fresh_inputs,
    fresh_kwargs,
    has_lazy_tensors,
)
from torchcontract.conformance.checks.callable_module import eval_is_deterministic
from torchcontract.conformance.checks.module._shared import (
    clone_tensor,
    deep_copy,
    first_line,
    frozen_output,
    listed,
    perturb,
    seeded,
    seeded_note,
    structure_difference,
    torch_module,
)
from torchcontract.conformance.checks.module.protocol import deepcopy_is_independent, state_dict_round_trip
from torchcontract.protocols import Module


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
def functional_call_matches_call(ctx: Context) -> None:
    """torch.func.functional_call(m, state, inputs) computes what m computes holding ``state``: with m's
    own parameters and buffers it equals m(*inputs), and with changed ones it equals m with its own
    tensors changed the same way in place (then put back)."""
    torch = torch_module(ctx)
    from torch.func import functional_call

    own = ctx.call("m.named_parameters(), m.named_buffers()", _tensors_by_name, ctx.obj)
    if not any(_is_floating(tensor) for tensor in own.values()):
        ctx.skip("the module has no floating-point parameter or buffer to pass to functional_call")
    call = args_text(ctx)
    # Outputs are kept as values (frozen): m's tensors are changed in place below, and an output may
    # hold one of them (return self.weight, a distribution built from self.loc).
    with eval_mode(ctx.obj), seeded(ctx):
        expected = frozen_output(call_module(ctx, ctx.obj))
    what = f"{FUNCTIONAL_CALL}(m, dict(m.named_parameters()) | dict(m.named_buffers()), inputs)"
    with eval_mode(ctx.obj), seeded(ctx):
        swapped = ctx.attempt(
            what, functional_call, ctx.obj, own, tuple(fresh_inputs(ctx)), fresh_kwargs(ctx)
        )
    if isinstance(swapped, Exception):
        ctx.fail(
            f"{what} raised {type(swapped).__name__}: {first_line(swapped)}; expected the output of "
            f"m({call}) (torch.func's transforms call modules this way: model ensembles under vmap, "
            "per-sample gradients, meta-learning)",
            reproduce="torch.func.functional_call(m, {**dict(m.named_parameters()), "
            "**dict(m.named_buffers())}, tuple(inputs))",
        )
    found = close_difference(swapped, expected)
    if found:
        ctx.fail(
            f"{what} differs from m({call}) ({found}){seeded_note(ctx)}; expected equal outputs (the "
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
                before = None if shifted is None else clone_tensor(tensor)
                if before is None or not perturb(tensor):
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
        with eval_mode(ctx.obj), seeded(ctx):
            reference = ctx.attempt(
                f"m({call}) with its tensors + 0.5", ctx.obj, *fresh_inputs(ctx), **fresh_kwargs(ctx)
            )
        if not isinstance(reference, Exception):
            reference = frozen_output(reference)
    finally:
        with torch.no_grad(), object_call("<m's tensors put back after adding 0.5 to them in place>"):
            for tensor, before in changed_in_place:
                tensor.copy_(before)
    if kept:
        shown = ", ".join(kept[:3]) + (", ..." if len(kept) > 3 else "")
        ctx.note(f"left unchanged (their tensor type cannot add 0.5): {shown}")
    what = f"{FUNCTIONAL_CALL}(m, <m's tensors + 0.5>, inputs)"
    with eval_mode(ctx.obj), seeded(ctx):
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
            f"{what} raised {type(swapped).__name__}: {first_line(swapped)}, while m holding those "
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
def builds_on_meta_device(ctx: Context) -> None:
    """The target's factory, under ``torch.device('meta')``, builds the module with every parameter and
    buffer on meta; after ``to_empty(device='cpu')`` (its values uninitialised), ``reset_parameters()``
    on every submodule that has one and ``load_state_dict(m.state_dict())``, it computes m's outputs."""
    torch = torch_module(ctx)
    factory = ctx.options.factory
    if factory is None:  # the engine skips the check first (it needs "factory"): this narrows the type
        ctx.skip(FACTORY_OFF)
    build = "with torch.device('meta'): built = factory()"
    with torch.device("meta"):
        built = ctx.attempt(build, factory)
    if isinstance(built, Exception):
        ctx.fail(
            f"{build} raised {type(built).__name__}: {first_line(built)}; expected construction to "
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
            f"{build} put {listed(allocated)} on {tensors[allocated[0]].device}; expected every "
            f"parameter and buffer on meta (likely cause: the factory creates {it} with an explicit "
            "device, such as device='cpu', .to('cpu') or .cpu(), or captures a tensor that already exists: "
            "one made outside the factory, a pretrained weight passed in, a copy of a built module, or "
            f"one converted from NumPy with torch.from_numpy{also}; such a tensor allocates memory during "
            "the construction meant to allocate none)",
            reproduce=f"{build}; [n for n, t in built.state_dict().items() if not t.is_meta]",
        )
    if ctx.call("built.modules()", has_lazy_tensors, built):
        _dry_run_on_meta(ctx, torch, built, build)
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
    with eval_mode(ctx.obj), seeded(ctx):
        expected = call_module(ctx, ctx.obj)
    with eval_mode(built, "built"), seeded(ctx):
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
        f"it raised {type(output).__name__}: {first_line(output)}"
        if isinstance(output, Exception)
        else close_difference(output, expected)
    )
    if found is None:
        return
    cause = (
        f"{listed(unset)} still {'holds' if len(unset) == 1 else 'hold'} the uninitialised values "
        "to_empty left: the state dict does not hold them and no reset_parameters() recomputes them "
        "(recompute them in reset_parameters() of their submodule)"
        if unset
        else "a value that construction computed is lost by to_empty and not in the state dict, or "
        "reset_parameters() does not restore it"
    )
    ctx.fail(
        f"after {build}; built.to_empty(device='cpu'); reset_parameters() on "
        f"{len(reset)} submodule(s); built.load_state_dict(m.state_dict()), built({call}) differs from "
        f"m({call}) ({found}){seeded_note(ctx)}; expected equal outputs ({cause}: FSDP's and "
        "torchtitan's meta-device initialisation do exactly these steps)",
        reproduce=(
            f"{build}; built.to_empty(device='cpu'); [s.reset_parameters() for s in built.modules() if "
            "hasattr(s, 'reset_parameters')]; built.load_state_dict(m.state_dict()); "
            f"built({call}) == m({call})"
        ),
    )


def _dry_run_on_meta(ctx: Context, torch: Any, built: Any, build: str) -> None:
    """The dry run torch prescribes for a module with lazy submodules (torch/nn/modules/lazy.py,
    LazyModuleMixin: their parameters' shapes come from the first input), run on meta with the inputs
    moved there: it materialises built's lazy parameters and buffers on meta, with their shapes, as
    m's dry run did on the CPU (``initialise_lazy_modules``), so that ``to_empty`` can allocate them.
    A module that cannot run on meta (an op without a meta kernel, a data-dependent shape) cannot be
    initialised there: the clause is skipped, saying so."""
    meta = torch.device("meta")
    moving = "<the example inputs and kwargs>.to('meta')"
    arguments = ctx.attempt(
        moving, lambda: (on_device(fresh_inputs(ctx), meta), on_device(fresh_kwargs(ctx), meta))
    )
    if isinstance(arguments, Exception):
        ctx.skip(
            f"{build} holds lazy parameters, which need their dry run on meta, and {moving} raised "
            f"{type(arguments).__name__}: {first_line(arguments)}"
        )
    inputs, kwargs = arguments
    what = f"built({args_text(ctx)} on meta) (the dry run that initialises built's lazy modules)"
    with eval_mode(built, "built"):
        output = ctx.attempt(what, built, *inputs, **kwargs)
    if isinstance(output, Exception):
        ctx.skip(
            f"{build} holds lazy parameters, and their dry run on meta, {what}, raised "
            f"{type(output).__name__}: {first_line(output)} (an op without a meta kernel or a "
            "data-dependent shape): the module cannot be initialised on the meta device"
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
def compile_matches_eager(ctx: Context) -> None:
    """With the declaration compile=True: torch.compile of a deep copy with the "aot_eager" backend
    returns the eager outputs in eval mode (within assert_close's tolerances); on a difference, the
    "eager" backend says whether TorchDynamo's capture or AOTAutograd makes it."""
    torch = torch_module(ctx)
    call = args_text(ctx)
    with eval_mode(ctx.obj), seeded(ctx):
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
    with eval_mode(ctx.obj), seeded(ctx):
        expected = call_module(ctx, ctx.obj)
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
