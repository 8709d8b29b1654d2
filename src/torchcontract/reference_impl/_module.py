"""``Module`` and ``Parameter``: the bookkeeping half of ``torch.nn.Module``, over NumPy arrays.

Gradients are computed in the style of Lua Torch's ``nn``: ``forward`` keeps what it needs and
``backward(grad_output)`` returns the gradient with respect to the input while *accumulating* the
gradients of the parameters into their ``.grad``.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from typing_extensions import Self

__all__ = ["IncompatibleKeys", "Module", "Parameter", "RemovableHandle", "StateDictError"]

ForwardPreHook = Callable[["Module", tuple[Any, ...]], Any]
ForwardHook = Callable[["Module", tuple[Any, ...], Any], Any]

_hook_ids = itertools.count()


class Parameter:
    """A trainable array: ``data`` holds the values, ``grad`` their gradient (same shape) or ``None``.

    ``Parameter(data)`` keeps ``data`` itself when it is an ndarray (like ``torch.nn.Parameter``, it
    shares memory with its argument). Optimisers update ``data`` in place, so arrays handed out
    by ``state_dict()`` are copies and ``load_state_dict`` copies values in.
    """

    __slots__ = ("data", "grad")

    def __init__(self, data: ArrayLike) -> None:
        self.data: NDArray[Any] = np.asarray(data)
        self.grad: NDArray[Any] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.data.dtype

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class RemovableHandle:
    """Returned by the ``register_*_hook`` methods: ``remove()`` unregisters the hook (idempotent)."""

    __slots__ = ("_hooks", "id")

    def __init__(self, hooks: dict[int, Any]) -> None:
        self._hooks = hooks
        self.id = next(_hook_ids)

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()


class IncompatibleKeys(NamedTuple):
    """What ``Module.load_state_dict`` returns, as ``torch.nn.Module.load_state_dict`` does."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class StateDictError(RuntimeError):
    """``load_state_dict`` was given a state that does not fit the module (torch raises RuntimeError)."""


class Module:
    """Base class of the reference modules: the contract of ``torch.nn.Module`` (SPEC.md, "Module").

    - ``m(*args, **kwargs)`` runs the forward pre-hooks (each may return replacement arguments: a
      tuple, or a single value that becomes a 1-tuple), then ``m.forward`` looked up on the instance
      at every call (so ``m.forward = wrapper`` is honoured) exactly once, then the forward hooks
      (each may return a replacement output). Calling ``m.forward`` directly skips every hook.
    - Children and parameters are the attributes that are :class:`Module` and :class:`Parameter`
      instances, in the order they were first assigned (torch's ``_modules``/``_parameters``).
      Subclasses must call ``super().__init__()`` before assigning attributes.
    - ``named_parameters()`` uses dotted names (``"0.weight"``) and reports a shared parameter once;
      ``state_dict()`` has one entry per name (a shared parameter under each of its names), each a
      copy; ``load_state_dict`` checks everything before copying anything in.
    - ``train(mode)`` sets ``training`` on the module and every descendant and returns the module.
    - ``zero_grad()`` sets every gradient to ``None`` (torch's default, ``set_to_none=True``).
    - Modules deep-copy and pickle (hooks must then be picklable too, as in torch).
    """

    training: bool

    def __init__(self) -> None:
        self.training = True
        self._forward_pre_hooks: dict[int, ForwardPreHook] = {}
        self._forward_hooks: dict[int, ForwardHook] = {}

    # -- calling ------------------------------------------------------------------------------------

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def backward(self, grad_output: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define backward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        for pre_hook in tuple(self._forward_pre_hooks.values()):
            replaced = pre_hook(self, args)
            if replaced is not None:
                args = replaced if isinstance(replaced, tuple) else (replaced,)
        output = self.forward(*args, **kwargs)
        for hook in tuple(self._forward_hooks.values()):
            replaced = hook(self, args, output)
            if replaced is not None:
                output = replaced
        return output

    def register_forward_pre_hook(self, hook: ForwardPreHook) -> RemovableHandle:
        """``hook(module, args)`` runs before ``forward``; a non-``None`` result replaces ``args``."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def register_forward_hook(self, hook: ForwardHook) -> RemovableHandle:
        """``hook(module, args, output)`` runs after ``forward``; a non-``None`` result replaces it."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    # -- the module tree ----------------------------------------------------------------------------

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """``(attribute name, child)`` for each attribute that is a Module, each child once."""
        seen: set[int] = set()
        for name, value in vars(self).items():
            if isinstance(value, Module) and id(value) not in seen:
                seen.add(id(value))
                yield name, value

    def children(self) -> Iterator[Module]:
        for _, child in self.named_children():
            yield child

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and its descendants, pre-order, each once, with dotted names."""
        seen: set[int] = set()

        def walk(module: Module, name: str) -> Iterator[tuple[str, Module]]:
            if id(module) in seen:
                return
            seen.add(id(module))
            yield name, module
            for child_name, child in module.named_children():
                yield from walk(child, f"{name}.{child_name}" if name else child_name)

        return walk(self, prefix)

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """``(dotted name, parameter)`` pairs: a module's own parameters, then its children's."""
        seen: set[int] = set()
        for module_name, module in self.named_modules(prefix):
            for name, value in vars(module).items():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{module_name}.{name}" if module_name else name), value

    def parameters(self) -> Iterator[Parameter]:
        for _, parameter in self.named_parameters():
            yield parameter

    def _state_items(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        # Like torch's state_dict: every name, so a shared parameter appears under each of them.
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
            elif isinstance(value, Module):
                yield from value._state_items(f"{prefix}{name}.")

    # -- modes and gradients ------------------------------------------------------------------------

    def train(self, mode: bool = True) -> Self:
        """Set ``training`` to ``mode`` on this module and all its descendants; return ``self``."""
        if not isinstance(mode, bool):
            raise ValueError(f"training mode is expected to be a bool, got {type(mode).__name__}")
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> Self:
        return self.train(False)

    def zero_grad(self) -> None:
        for parameter in self.parameters():
            parameter.grad = None

    # -- state --------------------------------------------------------------------------------------

    def state_dict(self) -> OrderedDict[str, NDArray[Any]]:
        """A copy of every parameter's values, keyed like torch (``"0.weight"``, ``"0.bias"``, ...)."""
        return OrderedDict((name, parameter.data.copy()) for name, parameter in self._state_items())

    def load_state_dict(self, state_dict: Mapping[str, Any], /, strict: bool = True) -> IncompatibleKeys:
        """Copy the values of ``state_dict`` into the parameters (which keep their identity).

        Raises :class:`StateDictError` (a ``RuntimeError``) listing every problem: with ``strict``,
        missing keys, unexpected keys and dtype mismatches; always, shape mismatches and values that
        are not numeric arrays. Nothing is copied when an error is raised. Without ``strict``,
        values are cast to the parameter's dtype. Returns ``(missing_keys, unexpected_keys)``.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict expects a mapping, got {type(state_dict).__name__}")
        targets = dict(self._state_items())
        missing = [name for name in targets if name not in state_dict]
        unexpected = [name for name in state_dict if name not in targets]
        problems: list[str] = []
        if strict and missing:
            problems.append(f"missing keys: {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {unexpected}")
        updates: list[tuple[Parameter, NDArray[Any]]] = []
        for name, parameter in targets.items():
            if name not in state_dict:
                continue
            value = np.asarray(state_dict[name])
            if value.dtype.kind not in "biuf":
                problems.append(f"{name}: expected a numeric array, got {value.dtype}")
            elif value.shape != parameter.data.shape:
                problems.append(f"{name}: shape {value.shape} does not match {parameter.data.shape}")
            elif strict and value.dtype != parameter.data.dtype:
                problems.append(f"{name}: dtype {value.dtype} does not match {parameter.data.dtype}")
            else:
                updates.append((parameter, value))
        if problems:
            raise StateDictError(f"cannot load the state into {type(self).__name__}: " + "; ".join(problems))
        for parameter, value in updates:
            np.copyto(parameter.data, value, casting="unsafe")
        return IncompatibleKeys(missing, unexpected)

    # -- display ------------------------------------------------------------------------------------

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        children = [
            f"  ({name}): " + repr(child).replace("\n", "\n  ") for name, child in self.named_children()
        ]
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        return f"{type(self).__name__}(\n" + "\n".join(children) + "\n)"
