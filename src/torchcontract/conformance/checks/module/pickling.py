"""The Module clause on pickling the whole module (any module; a torch module through ``torch.save`` and
``torch.load`` too): what ``torch.save(model)``, ``mp.spawn``'s arguments and launchers that start
processes with spawn rely on."""

from __future__ import annotations

import contextlib
import functools
import io
import pickle
import tempfile
import types
from collections.abc import Callable
from typing import IO, Any

from torchcontract.conformance._core.context import Context
from torchcontract.conformance._core.registry import register_check
from torchcontract.conformance._values import close_difference, tensor_module
from torchcontract.conformance.checks._calling import (
    args_text,
    call_module,
    eval_mode,
    eval_output,
    seeded,
    seeded_note,
)
from torchcontract.conformance.checks.callable_module import eval_is_deterministic
from torchcontract.conformance.checks.module._shared import (
    first_line,
)
from torchcontract.conformance.checks.module.protocol import deepcopy_is_independent
from torchcontract.protocols import Module

_WHY = (
    "torch.save(model), the arguments of torch.multiprocessing.spawn and launchers that start processes "
    "with spawn pickle the whole module"
)


# When no single part fails on its own: what usually does, and what pickles instead.
_UNKNOWN_CULPRIT = (
    "a lambda, a local function or class, a lock, an open file or a generator kept as an attribute cannot "
    "be pickled: use a module-level function, a method defined on the class or an nn.Module, or leave it "
    "out in __getstate__"
)


# When the whole pickles but does not unpickle and no single part fails on its own.
_UNKNOWN_LOAD_CULPRIT = (
    "what fails only at the load is a __setstate__ or __reduce__ that cannot rebuild what was pickled, or "
    "a bound method whose function the class does not define (it pickles as getattr(its object, its "
    "name)): make each part rebuild from what it pickles"
)


def _pickled(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _pickle_to(file: IO[bytes], value: Any) -> None:
    pickle.dump(value, file, protocol=pickle.HIGHEST_PROTOCOL)


class _StoragesApart(pickle.Pickler):
    """pickle.dumps with a torch module's tensor storages kept apart, each in ``storages``: every other
    part of the module (its classes, attributes, ``__getstate__``/``__reduce__``, each tensor's own
    ``__reduce_ex__``) is pickled as pickle.dumps pickles it. A storage is torch's to serialise (its
    bytes go through ``torch.save``'s legacy format, one storage at a time, several copies of the
    model's bytes: most of pickle.dumps(m)'s time); the torch.save way of this clause writes them."""

    def __init__(self, file: IO[bytes], storages: list[Any]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._storages = storages
        torch = tensor_module()
        self._kinds = (torch.storage.TypedStorage, torch.UntypedStorage)

    def persistent_id(self, obj: Any) -> int | None:
        # One entry per storage object pickled, as pickle.dumps gives each its own bytes (a tensor's
        # storage is a new TypedStorage each time it is asked for, so views do not share one either).
        if isinstance(obj, self._kinds):
            self._storages.append(obj)
            return len(self._storages) - 1
        return None


class _StoragesCopied(pickle.Unpickler):
    """pickle.loads of what :class:`_StoragesApart` wrote, each storage given back as ``torch.load``
    gives it back (``serialization.py``, ``_load``'s ``persistent_load``): a TypedStorage of its dtype
    (uint8 for an UntypedStorage) over a copy of its bytes, so that the unpickled module shares no
    memory with m, as one unpickled from bytes does not."""

    def __init__(self, file: IO[bytes], storages: list[Any]) -> None:
        super().__init__(file)
        self._storages = storages

    def persistent_load(self, pid: Any) -> Any:
        torch = tensor_module()
        storage = self._storages[pid]
        typed = isinstance(storage, torch.storage.TypedStorage)
        untyped = storage._untyped_storage if typed else storage
        return torch.storage.TypedStorage(
            wrap_storage=untyped.clone(), dtype=storage.dtype if typed else torch.uint8, _internal=True
        )


def _pickle_storages_apart(file: IO[bytes], value: Any, *, storages: list[Any]) -> None:
    _StoragesApart(file, storages).dump(value)


def _unpickle_storages_copied(file: IO[bytes], *, storages: list[Any]) -> Any:
    return _StoragesCopied(file, storages).load()


def _torch_save_to(file: IO[bytes], value: Any) -> None:
    tensor_module().save(value, file)


def _torch_load(file: IO[bytes]) -> Any:
    # weights_only=False: a whole module is not weights; torch.load's own documentation asks for it.
    return tensor_module().load(file, weights_only=False)


class _Trial:
    """How each part of the module is tried on its own: pickled (when pickling the whole failed), or
    pickled and unpickled (when unpickling it failed), with what failing is called in a message."""

    def __init__(self, call: str, fails: str, attempt: Callable[[Any], Any]) -> None:
        self.call, self.fails, self.attempt = call, fails, attempt


# Plain pickle.dumps on purpose: a tensor of a dtype pickle cannot write (uint1 to uint7, int1 to int7) is
# named as the culprit.
_DUMPS = _Trial("pickle.dumps({})", "cannot be pickled", _pickled)


def _round_trip(value: Any) -> Any:
    return pickle.loads(_pickled(value))


def _round_trip_storages_apart(value: Any) -> Any:
    # As the pickle way of the clause pickles a torch module: a tensor's storage is torch's to write, so
    # a tensor is never the culprit of a failed load (torch 2.14.1's plain pickle of a uint16 tensor does
    # not load; thirdparty/FINDINGS.md).
    storages: list[Any] = []
    file = io.BytesIO()
    _pickle_storages_apart(file, value, storages=storages)
    file.seek(0)
    return _unpickle_storages_copied(file, storages=storages)


def _culprit(ctx: Context, module: Any, whole: str, trial: _Trial = _DUMPS) -> tuple[str, str] | None:
    """The first part of ``module`` (a submodule's class, or an attribute of the module or of a
    submodule, in named_modules() order) that fails ``trial`` on its own: a clause that says so, and
    what does pickle in its place; None if none is found (the whole fails only together, or the module
    has no named_modules()). ``whole`` is the first line of the whole module's error, not repeated."""
    try:
        named = list(module.named_modules()) if hasattr(module, "named_modules") else [("", module)]
    except Exception:
        named = [("", module)]
    for prefix, sub in named:
        where = f"m.{prefix}" if prefix else "m"
        refused = _refused_by_torch(sub, where)
        if refused is not None:
            return refused
        cls = type(sub)
        error = ctx.attempt(trial.call.format(f"type({where})"), trial.attempt, cls)
        if isinstance(error, Exception):
            said = f"the class of {where}, {cls.__qualname__}, {trial.fails} by reference"
            return said + _unless_said(error, whole), _advice(cls)
        for key, value in list(getattr(sub, "__dict__", {}).items()):
            if key == "_modules":  # its submodules come next in named_modules()
                continue
            error = ctx.attempt(trial.call.format(f"{where}.{key}"), trial.attempt, value)
            if isinstance(error, Exception):
                said = f"{where}.{key}, {_kind(value)}, {trial.fails}"
                return said + _unless_said(error, whole), _advice(_failing_item(ctx, value, trial))
    return None


_SCRIPTED = (
    "save it with torch.jit.save (torch.jit.load gives it back), and declare this clause an expected failure"
)
_PARAMETRIZED = (
    "torch saves a parametrized module only through its state_dict(): save and load m.state_dict() into "
    "a module built and parametrized alike, and declare this clause an expected failure"
)


def _refused_by_torch(module: Any, where: str) -> tuple[str, str] | None:
    """A clause and its advice when torch refuses to pickle ``module`` by design: a module parametrized
    with torch.nn.utils.parametrize (parametrize.py, ``_inject_new_class``: the generated class's
    ``getstate`` raises), a TorchScript module (saved with torch.jit.save); None otherwise."""
    torch = tensor_module()
    if torch is None or not isinstance(module, torch.nn.Module):
        return None
    try:
        if isinstance(module, torch.jit.ScriptModule):
            said = f"{where} is a TorchScript module, which torch saves with torch.jit.save, not by pickling"
            return said, _SCRIPTED
        if torch.nn.utils.parametrize.is_parametrized(module):
            said = (
                f"{where} is parametrized (torch.nn.utils.parametrize), and torch refuses to pickle a "
                "parametrized module by design (its __getstate__ raises)"
            )
            return said, _PARAMETRIZED
    except Exception:  # an odd module: its parts are tried one by one instead
        return None
    return None


def _unless_said(error: Exception, whole: str) -> str:
    # The part's own error, when it says more than the whole module's (which the message leads with).
    own = first_line(error)
    return "" if own == whole else f" ({own})"


def _failing_item(ctx: Context, value: Any, trial: _Trial, depth: int = 4) -> Any:
    """The innermost part of ``value`` that fails ``trial`` on its own, or ``value`` itself: the advice is
    about what failed. Looked for in the values of a dict (torch's hook registries: {handle id: hook}),
    the items of a tuple or list (a QConfig holds its observers' constructors), and the attributes of an
    instance (torch.ao's _PartialWrapper holds a local function in its callable_args)."""
    if depth:
        for part in _parts(value):
            if isinstance(ctx.attempt(trial.call.format("<a part of it>"), trial.attempt, part), Exception):
                return _failing_item(ctx, part, trial, depth - 1)
    return value


def _parts(value: Any) -> list[Any]:
    """What ``value`` holds that pickle pickles with it (see :func:`_failing_item`); none for a partial, a
    class, a function or a bound method (the advice is for that kind) or an object without a __dict__."""
    if isinstance(value, dict):
        return list(value.values())[:64]
    if isinstance(value, (tuple, list)):
        return list(value)[:64]
    if isinstance(value, (functools.partial, type, types.FunctionType, types.MethodType)):
        return []  # each has advice of its own
    attributes = getattr(value, "__dict__", None)
    return list(attributes.values())[:64] if isinstance(attributes, dict) else []


def _article(noun: str) -> str:
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"


def _kind(value: Any) -> str:
    """``value`` as a noun phrase: "the function f", "a bound method (types.MethodType) of a
    functools.partial of the function g", "an OrderedDict of the function <lambda>", "a lock"."""
    if isinstance(value, types.MethodType):
        name = getattr(value.__func__, "__qualname__", None)
        if isinstance(name, str):
            return f"the bound method {name}"
        return f"a bound method (types.MethodType) of {_kind(value.__func__)}"
    if isinstance(value, functools.partial):
        return f"a functools.partial of {_kind(value.func)}"
    if isinstance(value, type):
        return f"the class {value.__qualname__}"
    name = getattr(value, "__qualname__", None)
    if callable(value) and isinstance(name, str):
        return f"the {type(value).__name__} {name}"
    if isinstance(value, dict) and value:  # torch's hook registries: {handle id: hook}
        items = ", ".join(_kind(item) for item in list(value.values())[:3])
        return f"{_article(type(value).__name__)} of {items}"
    return _article(type(value).__name__)


def _advice(value: Any) -> str:
    """What pickles in place of ``value``, which did not: never the kind of thing that failed."""
    if isinstance(value, type):
        return "pickle stores a class by its module and name: define the class at module level"
    if isinstance(value, types.MethodType):
        # pickle stores a bound method as getattr(its object, its function's __name__): only a method
        # that the object's class defines is found again (a partial has no __name__ at all). One that
        # is found again fails by its object.
        name = getattr(value.__func__, "__name__", None)
        if isinstance(name, str) and getattr(type(value.__self__), name, None) is value.__func__:
            return _advice(value.__self__)
        return (
            "a bound method pickles as getattr(its object, its name), so only a method defined on the "
            "class pickles: define it on the class (a subclass), or leave it out in __getstate__ and bind "
            "it again in __setstate__"
        )
    if isinstance(value, functools.partial):
        return (
            "a functools.partial pickles only when its function and arguments do: bind a module-level "
            "function to picklable arguments, or leave it out in __getstate__"
        )
    if isinstance(value, types.FunctionType):
        return (
            "pickle stores a function by its module and name, which a lambda or a local function has not: "
            "use a module-level function, a method defined on the class or an nn.Module, or leave it out "
            "in __getstate__"
        )
    return (
        "a lock, an open file, a generator or another live resource cannot be pickled: leave it out in "
        "__getstate__ and rebuild it in __setstate__"
    )


@register_check(
    protocol=Module,
    severity="recommended",
    needs=("example_inputs",),
    requires=(eval_is_deterministic, deepcopy_is_independent),
    since="0.1.0",
)
def pickle_round_trip(ctx: Context) -> None:
    """The whole module survives pickle.dumps/pickle.loads (and, for a torch module, torch.save/torch.load;
    both through a temporary file): the copy gives m's outputs in eval mode."""
    module = ctx.obj
    torch = tensor_module()
    is_torch_module = torch is not None and isinstance(module, torch.nn.Module)
    save_pickle: Callable[[IO[bytes], Any], None] = _pickle_to
    load_pickle: Callable[[IO[bytes]], Any] = pickle.load
    if is_torch_module:
        storages: list[Any] = []
        save_pickle = functools.partial(_pickle_storages_apart, storages=storages)
        load_pickle = functools.partial(_unpickle_storages_copied, storages=storages)
    ways: list[tuple[str, str, Callable[[IO[bytes], Any], None], Callable[[IO[bytes]], Any]]] = [
        ("pickle.loads(pickle.dumps(m))", "pickle.dumps(m)", save_pickle, load_pickle)
    ]
    if is_torch_module:
        ways.append(
            (
                "torch.load(<torch.save(m)>, weights_only=False)",
                "torch.save(m, io.BytesIO())",
                _torch_save_to,
                _torch_load,
            )
        )
    call = args_text(ctx)
    with contextlib.ExitStack() as files:
        # m itself is pickled, each way into an unnamed temporary file, before m is called here (a call
        # may change state). Files, not bytes: torch.save's bytes are the whole model beside m, which
        # for a model of billions of parameters (a RegNet-Y 128GF, a ViT-H/14) does not fit where it
        # trains; m and one unpickled module at a time are all it holds (the pickle way keeps m's own
        # storages apart and copies each as it is unpickled).
        saved: list[tuple[str, IO[bytes], Callable[[IO[bytes]], Any]]] = []
        for name, saving, save, load in ways:
            file = files.enter_context(tempfile.TemporaryFile())
            error = ctx.attempt(saving, save, file, module)
            if isinstance(error, Exception):
                whole = first_line(error)
                said, advice = _culprit(ctx, module, whole) or ("", _UNKNOWN_CULPRIT)
                ctx.fail(
                    f"{saving} raised {type(error).__name__}: {whole}{'; ' + said if said else ''}; "
                    f"expected the whole module to pickle ({_WHY}; {advice})",
                    reproduce=saving,
                )
            saved.append((name, file, load))
        expected = eval_output(ctx)
        for name, pickled, load in saved:
            pickled.seek(0)
            copied = ctx.attempt(name, load, pickled)
            pickled.close()
            if isinstance(copied, Exception):
                _fail_to_unpickle(ctx, module, name, copied, is_torch_module)
            with eval_mode(copied, name), seeded(ctx):
                output = call_module(ctx, copied, f"{name}(*inputs)")
            del copied
            found = close_difference(output, expected)
            if found:
                ctx.fail(
                    f"{name}({call}) differs from m({call}) ({found}){seeded_note(ctx)}; expected equal "
                    f"outputs ({_WHY}: a process that unpickles it must compute what m computes; state "
                    "rebuilt or lost in __getstate__/__setstate__ or __reduce__ shows here)",
                    reproduce=f"{name}({call}) == m({call})",
                )


def _fail_to_unpickle(ctx: Context, module: Any, name: str, error: Exception, is_torch_module: bool) -> None:
    """Fails the clause for a module that pickles but does not unpickle, naming the first part of it
    that does not unpickle on its own (a bound method of a function the class does not define pickles
    as getattr(its object, its name), which fails only at the load)."""
    whole = first_line(error)
    trial = _Trial(
        "pickle.loads(pickle.dumps({}))",
        "pickles but does not unpickle",
        _round_trip_storages_apart if is_torch_module else _round_trip,
    )
    said, advice = _culprit(ctx, module, whole, trial) or ("", _UNKNOWN_LOAD_CULPRIT)
    ctx.fail(
        f"{name} raised {type(error).__name__}: {whole}{'; ' + said if said else ''}; expected the "
        f"whole module to unpickle as it pickled ({_WHY}, and the process that receives it unpickles it; "
        f"{advice})",
        reproduce=name,
    )
