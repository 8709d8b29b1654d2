"""The Module clauses on calling and building a module other ways (torch modules only):
``torch.func.functional_call`` and construction on the meta device (allocated with ``to_empty``, or
loaded with ``load_state_dict(assign=True)``)."""

from __future__ import annotations

import copy
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
    is_tensor,
    leaves,
)
from torchcontract.conformance._values.convert import on_device
from torchcontract.conformance.checks._calling import (
    args_text,
    clone_tensor,
    eval_mode,
    eval_output,
    fresh_inputs,
    fresh_kwargs,
    frozen_output,
    has_lazy_tensors,
    seeded,
    seeded_note,
)
from torchcontract.conformance.checks.callable_module import eval_is_deterministic
from torchcontract.conformance.checks.module._shared import (
    first_line,
    listed,
    perturb,
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

    refused = _refused_by_functional_call(torch, ctx.obj)
    if refused:
        ctx.skip(
            f"torch.func.functional_call refuses {refused} by design (torch/nn/utils/stateless.py, "
            '_functional_call: "The stateless API can\'t be used with" them)'
        )

    def attempt_functional_call(what: str, state: dict[str, Any]) -> Any:
        """functional_call(m, state, inputs) in eval mode, seeded as m's own calls are: its output, or
        the exception it raised."""
        with eval_mode(ctx.obj), seeded(ctx):
            return ctx.attempt(
                what, functional_call, ctx.obj, state, tuple(fresh_inputs(ctx)), fresh_kwargs(ctx)
            )

    own = ctx.call("m.named_parameters(), m.named_buffers()", _tensors_by_name, ctx.obj)
    if not any(_is_floating(tensor) for tensor in own.values()):
        ctx.skip("the module has no floating-point parameter or buffer to pass to functional_call")
    call = args_text(ctx)
    # Outputs are kept as values (frozen): m's tensors are changed in place below, and an output may
    # hold one of them (return self.weight, a distribution built from self.loc).
    expected = eval_output(ctx)
    what = f"{FUNCTIONAL_CALL}(m, dict(m.named_parameters()) | dict(m.named_buffers()), inputs)"
    swapped = attempt_functional_call(what, own)
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
    swapped = attempt_functional_call(what, changed)
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


def _refused_by_functional_call(torch: Any, module: Any) -> str | None:
    """What torch's functional_call refuses to call, as it decides it (stateless.py, _functional_call,
    by type): a TorchScript module (scripted or traced) and nn.DataParallel; None for any other."""
    jitted = (torch.jit.RecursiveScriptModule, torch.jit.ScriptModule, torch.jit.ScriptFunction)
    if isinstance(module, jitted):
        return "a TorchScript module (torch.jit.script or torch.jit.trace)"
    if isinstance(module, torch.nn.DataParallel):
        return "nn.DataParallel (call it on m.module)"
    return None


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


META_BUILD = "with torch.device('meta'): built = factory()"


def _built_on_meta(ctx: Context, torch: Any) -> Any:
    """``with torch.device('meta'): built = factory()``: the module built, every parameter and buffer on
    meta (a failure otherwise, naming the tensors allocated)."""
    factory = ctx.options.factory
    if factory is None:  # the engine skips the check first (it needs "factory"): this narrows the type
        ctx.skip(FACTORY_OFF)
    build = META_BUILD
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
    return built


@register_check(
    protocol=Module,
    severity="recommended",
    needs=("torch", "example_inputs", "factory"),
    requires=(state_dict_round_trip, eval_is_deterministic),
    since="0.1.0",
    touches="copies",
)
def builds_on_meta_device(ctx: Context) -> None:
    """The target's factory, under ``torch.device('meta')``, builds the module with every parameter and
    buffer on meta; after ``to_empty(device='cpu')`` (its values uninitialised), ``reset_parameters()``
    on every submodule that has one and ``load_state_dict(m.state_dict())``, it computes m's outputs."""
    torch = torch_module(ctx)
    build = META_BUILD
    built = _built_on_meta(ctx, torch)
    if isinstance(built, torch.jit.RecursiveScriptModule):
        ctx.skip(
            f"{build} gives a TorchScript module, whose to_empty torch refuses by design "
            "(torch/jit/_script.py: 'to_empty is not supported on ScriptModules'): meta-device "
            "initialisation does not apply to it"
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
    expected = eval_output(ctx)
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
        "(recompute them in reset_parameters() of their submodule; a buffer that holds learned or "
        "running state belongs in the state dict: register it with persistent=True)"
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


def _non_persistent_buffers(module: Any) -> list[str]:
    """The full names of the buffers a module leaves out of its state dict (registered with
    ``persistent=False``)."""
    return [
        f"{prefix}.{name}" if prefix else name
        for prefix, sub in module.named_modules()
        for name in sub._non_persistent_buffers_set
        if sub._buffers.get(name) is not None
    ]


def _set_buffer(module: Any, name: str, value: Any) -> None:
    owner, _, leaf = name.rpartition(".")
    setattr(module.get_submodule(owner), leaf, value)


def _first_warning(said: list[warnings.WarningMessage]) -> str:
    lines = str(said[0].message).strip().splitlines()
    return lines[0] if lines else said[0].category.__name__


def _meta_leaves(output: Any) -> list[str]:
    """The paths of the output's tensors that are on the meta device (no values)."""
    return [path or "<the output>" for path, leaf in leaves(output) if is_tensor(leaf) and leaf.is_meta]


ASSIGN_LOAD = "built.load_state_dict(copy.deepcopy(m.state_dict()), assign=True)"


@register_check(
    protocol=Module,
    severity="recommended",
    needs=("torch", "example_inputs", "factory"),
    requires=(state_dict_round_trip, eval_is_deterministic),
    since="0.1.0",
    touches="copies",
)
def loads_on_meta_device_with_assign(ctx: Context) -> None:
    """The target's factory, under ``torch.device('meta')``, builds a module that
    ``load_state_dict(state_dict, assign=True)`` materialises: every parameter and persistent buffer
    takes the loaded tensor, and (its non-persistent buffers set from m, as they are in no state dict)
    it computes m's outputs."""
    torch = torch_module(ctx)
    built = _built_on_meta(ctx, torch)
    # A copy, as a checkpoint's tensors are: assign=True makes the loaded tensors built's own, and m's
    # must not be shared with it.
    state = ctx.call("copy.deepcopy(m.state_dict())", lambda: copy.deepcopy(ctx.obj.state_dict()))
    # torch warns of each tensor copied into a meta one (a no-op): said in the failure, not printed.
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        loaded = ctx.attempt(ASSIGN_LOAD, built.load_state_dict, state, assign=True)
    reproduce = f"{META_BUILD}; {ASSIGN_LOAD}; built({args_text(ctx)}) == m({args_text(ctx)})"
    if isinstance(loaded, Exception):
        ctx.fail(
            f"after {META_BUILD}, {ASSIGN_LOAD} raised {type(loaded).__name__}: {first_line(loaded)}; "
            "expected the state dict to load (accelerate, torchtitan and transformers load checkpoints "
            "into a model built on meta this way: an override of load_state_dict must accept and pass "
            "on assign=)",
            reproduce=reproduce,
        )
    rebuilt = ctx.call("<built's non-persistent buffers>", _non_persistent_buffers, built)
    own_buffers = ctx.call("m.named_buffers()", lambda: dict(ctx.obj.named_buffers()))
    copied = [name for name in rebuilt if name in own_buffers]
    for name in copied:
        value = own_buffers[name].detach().clone()
        ctx.call(f"<built.{name} = m.{name}.clone()>", _set_buffer, built, name, value)
    if copied:
        ctx.note(
            f"non-persistent buffer(s) {listed(copied)} set from m: no state dict holds them, so loading "
            "code recomputes them (they stay on meta otherwise)"
        )
    tensors = ctx.call("built.named_parameters(), built.named_buffers()", _tensors_by_name, built)
    still = [name for name, tensor in tensors.items() if tensor.is_meta]
    if still:
        in_state = [name for name in still if name in state]
        cause = (
            f"{listed(in_state)} {'is' if len(in_state) == 1 else 'are'} in the state dict and were not "
            "assigned: a load_state_dict override that does not pass assign= on to "
            "super().load_state_dict, or a _load_from_state_dict override that copies into the existing "
            "tensors (param.copy_(...)) instead of assigning when local_metadata['assign_to_params_buffers']"
            if in_state
            else "they are in no state dict: a tensor that construction computes belongs in a buffer "
            "(persistent if loading is to restore it)"
        )
        warned = f" (torch warned: {_first_warning(said)})" if said else ""
        ctx.fail(
            f"after {META_BUILD}; {ASSIGN_LOAD}, {listed(still)} {'is' if len(still) == 1 else 'are'} "
            f"still on meta{warned}; expected every parameter and buffer to hold the loaded tensor ({cause})",
            reproduce=f"{META_BUILD}; {ASSIGN_LOAD}; [n for n, t in built.state_dict().items() if t.is_meta]",
        )
    call = args_text(ctx)
    expected = eval_output(ctx)
    with eval_mode(built, "built"), seeded(ctx):
        output = ctx.attempt(f"built({call})", built, *fresh_inputs(ctx), **fresh_kwargs(ctx))
    on_meta = [] if isinstance(output, Exception) else _meta_leaves(output)
    found: str | None
    if on_meta:
        found = f"output{on_meta[0]} is a tensor on meta, without values"
    elif isinstance(output, Exception):
        found = f"it raised {type(output).__name__}: {first_line(output)}"
    else:
        found = close_difference(output, expected)
    if found is None:
        return
    ctx.fail(
        f"after {META_BUILD}; {ASSIGN_LOAD}, built({call}) differs from m({call}) ({found})"
        f"{seeded_note(ctx)}; expected equal outputs (forward reads a tensor that loading does not "
        "replace: a reference to a parameter kept from __init__, such as a tuple of weights or a view "
        "self.weight_t = self.weight.t(), still points at the meta tensor that assign=True replaced; read "
        "parameters from the module in forward, or refresh such references in __setattr__ as "
        "nn.RNNBase does)",
        reproduce=reproduce,
    )
