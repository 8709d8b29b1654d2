"""Protocols for modules: a callable that dispatches to ``forward``, and a trainable, stateful module."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from typing_extensions import Self

__all__ = ["CallableModule", "Module"]


@runtime_checkable
class CallableModule(Protocol):
    """A callable whose call runs ``forward`` (SPEC.md, "CallableModule").

    ``m(*args, **kwargs)`` must return what ``m.forward(*args, **kwargs)`` returns, running ``forward``
    exactly once and looking it up on the instance (so an instance attribute wrapping ``forward`` is
    honoured, as ``torch.nn.Module.__call__`` does). Calling must not modify its inputs.

    Both members take ``*args: Any, **kwargs: Any`` because ``torch.nn.Module`` declares them as
    ``Callable[..., Any]``: type checkers therefore cannot check call signatures through this protocol.

    >>> from torchcontract.reference_impl import ReLU
    >>> isinstance(ReLU(), CallableModule), isinstance(max, CallableModule)  # no forward
    (True, False)
    """

    def forward(self, *args: Any, **kwargs: Any) -> Any: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


@runtime_checkable
class Module(CallableModule, Protocol):
    """A trainable, stateful :class:`CallableModule` (SPEC.md, "Module").

    ``train(mode)``/``eval()`` set ``training`` (recursively) and return the module itself;
    ``parameters()`` yields the values of ``named_parameters()``, each once; ``state_dict()`` returns
    the state that ``load_state_dict`` restores, and a strict load rejects missing or unexpected keys;
    ``zero_grad()`` leaves every gradient ``None`` or zero.

    >>> from torchcontract.reference_impl import Linear, ReLU
    >>> isinstance(Linear(2, 3), Module), isinstance(ReLU(), Module)
    (True, True)
    """

    @property
    def training(self) -> bool: ...

    def train(self, mode: bool = True) -> Self: ...

    def eval(self) -> Self: ...

    def parameters(self) -> Iterable[Any]: ...

    def named_parameters(self) -> Iterable[tuple[str, Any]]: ...

    def state_dict(self) -> Mapping[str, Any]: ...

    # torch returns a named tuple (missing_keys, unexpected_keys); callers may not rely on more.
    def load_state_dict(self, state_dict: Mapping[str, Any], /, strict: bool = True) -> object: ...

    def zero_grad(self) -> None: ...
