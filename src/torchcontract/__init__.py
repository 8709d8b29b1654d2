"""torchcontract: typed protocols, a specification and a conformance suite for the Python data model
PyTorch is built on.

- :mod:`torchcontract.protocols`: the protocols, for type checkers and ``isinstance``.
- :mod:`torchcontract.conformance`: ``check()``, the pytest plugin and the CLI.
- :mod:`torchcontract.reference_impl`: a small, strict NumPy implementation of the protocols.

Importing this package imports none of them, nor NumPy (the pytest plugin is loaded at every pytest
start). ``__version__`` is the installed distribution's version (``pyproject.toml``'s), read on first
use: ``importlib.metadata`` takes tens of milliseconds to import.
"""

import typing as _typing

if _typing.TYPE_CHECKING:
    __version__: str

# `__version__` where the package runs from a source tree that was never installed (there is no
# distribution metadata to read): a valid PEP 440 version that sorts before every release.
_UNKNOWN_VERSION = "0+unknown"


def _read_on_first_use(name: str) -> str:
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("torchcontract")
    except PackageNotFoundError:
        value = _UNKNOWN_VERSION
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    public = {name for name in globals() if not name.startswith("_") or name.endswith("__")}
    return sorted({*public, "__version__"})


if not _typing.TYPE_CHECKING:
    # Bound at run time only: a module __getattr__ that a type checker sees turns every name, a
    # misspelt one too, into a valid attribute (of its return type).
    __getattr__ = _read_on_first_use
