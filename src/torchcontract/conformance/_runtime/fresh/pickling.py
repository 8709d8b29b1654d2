"""Pickling the object in the parent, as DataLoader sends it to a worker, and what the fresh
interpreter must import before it rebuilds it: the packages its classes use (:data:`ON_DEMAND`), and
the names its pickle refers to in ``__main__`` (which :mod:`.main_script` decides how to rebuild).
"""

from __future__ import annotations

import io
import pickle
import sys
import types
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FOR_MAIN_SCRIPTS",
    "IMPORTABLE",
    "MAIN_NAMES",
    "ON_DEMAND",
    "Pickled",
    "imports_for",
    "modules_use",
    "pickled",
]

MAIN_NAMES = ("__main__", "__mp_main__")


class _MainRecorder(pickle.Pickler):
    """Records the classes and functions of ``__main__`` that the pickle references by name, and the
    modules of all the classes and functions it references."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.main_names: list[str] = []
        self.modules: set[str] = set()

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
            try:
                module, name = obj.__module__, obj.__qualname__
            except Exception:
                return NotImplemented
            if isinstance(module, str):
                self.modules.add(module)
            if module in MAIN_NAMES and name not in self.main_names:
                self.main_names.append(str(name))
        return NotImplemented


@dataclass(frozen=True)
class Pickled:
    """An object pickled in this process, the ``__main__`` names its pickle refers to, and the
    packages of :data:`ON_DEMAND` the fresh interpreter imports before rebuilding it."""

    data: bytes
    main_names: tuple[str, ...]
    imports: tuple[str, ...] = ()


def pickled(obj: object) -> Pickled:
    """Pickle ``obj`` as DataLoader would send it to a worker (calls the object's own reduce methods:
    call it through ``ctx.call``)."""
    buffer = io.BytesIO()
    recorder = _MainRecorder(buffer)
    recorder.dump(obj)
    data = buffer.getvalue()
    imports = tuple(
        name for name in ON_DEMAND if _names_package(data, name) or modules_use(recorder.modules, name)
    )
    return Pickled(data, tuple(recorder.main_names), imports)


# Packages the fresh interpreter imports only for an object that needs them, once, before the first
# request that does (outside the object's time budget): each child of that request would import them
# again (torch: a second or more; torchvision: another second). A NumPy dataset waits for neither.
ON_DEMAND = ("torch", "torchvision")
# A main script re-run as __mp_main__ usually imports torchcontract itself (check() at its top level,
# under a guard): imported before a request that re-runs one, that import is not charged to the
# object's time budget either (a fifth of a second, which a dataset in a module never waits for).
FOR_MAIN_SCRIPTS = "torchcontract.conformance.checks"
IMPORTABLE = (*ON_DEMAND, FOR_MAIN_SCRIPTS)


def _names_package(data: bytes, name: str) -> bool:
    """Whether the pickle ``data`` names module ``name`` or a module in it (a bytes search: a false
    positive costs an import). Protocols 4 and 5 write a module name as a string of its length, at
    most 255 bytes; older protocols as a line: ``torch._utils``, ``torch`` exactly, ``ctorch\n``."""
    encoded = name.encode()
    return encoded + b"." in data or bytes([len(encoded)]) + encoded in data or b"c" + encoded + b"\n" in data


def _in_package(name: object, package: str) -> bool:
    return isinstance(name, str) and (name == package or name.startswith(package + "."))


def modules_use(names: set[str], package: str) -> bool:
    """Whether any of the modules ``names`` (or a package above one) uses ``package``: is in it,
    imports it, or holds a class or function of it in its namespace. A heuristic, for speed only: a
    module that imports torch lazily gets it imported in the child, set up as a worker's
    (:class:`.server._WorkerOnTorchImport`)."""
    if package not in sys.modules:
        return False  # nothing this process loaded uses it
    try:
        return _namespaces_use(names, package)
    except Exception:  # an odd module or class (a property for __name__ that raises): import it
        return True


def _namespaces_use(names: set[str], package: str) -> bool:
    seen: set[str] = set()
    for name in names:
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            module_name = ".".join(parts[:end])
            if module_name in seen or module_name in MAIN_NAMES[1:]:
                continue
            seen.add(module_name)
            if _in_package(module_name, package):
                return True
            module = sys.modules.get(module_name)
            if module is None:
                continue
            for value in list(getattr(module, "__dict__", {}).values()):
                if isinstance(value, types.ModuleType):
                    if _in_package(value.__name__, package):
                        return True
                elif isinstance(value, (type, types.FunctionType)) and _in_package(
                    getattr(value, "__module__", None), package
                ):
                    return True
    return False


def imports_for(obj: object) -> tuple[str, ...]:
    """The packages of :data:`ON_DEMAND` the fresh interpreter should import at its start to rebuild
    ``obj``: those that the modules of ``obj``'s classes use (its pickle may name more: they are
    imported before the request, just not overlapped with other checks)."""
    try:
        modules = {getattr(kind, "__module__", "") for kind in type(obj).__mro__}
    except Exception:
        return ()
    names = {module for module in modules if isinstance(module, str)}
    return tuple(package for package in ON_DEMAND if modules_use(names, package))
