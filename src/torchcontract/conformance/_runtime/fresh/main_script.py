"""When the object's pickle refers to names of ``__main__``: whether the fresh interpreter may rebuild
them by running the main script as ``__mp_main__`` (as multiprocessing's spawn does), and how.

Only a script whose top level is safely re-importable qualifies (:func:`unsafe_statement`: imports,
definitions, docstrings, constant assignments, ``if __name__ == "__main__":`` blocks, ``if``/``try``
blocks of the same), and only when it defines those names at its top level; otherwise
:class:`~.wire.Unavailable` says what to do (:data:`ADVICE`).
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Iterator

from torchcontract.conformance._runtime.fresh.pickling import MAIN_NAMES
from torchcontract.conformance._runtime.fresh.wire import Unavailable

__all__ = ["ADVICE", "main_plan", "unsafe_statement"]

ADVICE = "move the dataset class to a module, or guard the script with if __name__ == '__main__':"


def main_plan(names: tuple[str, ...], what: str) -> list[str] | None:
    """How the child rebuilds the ``__main__`` that ``names`` live in: None when not needed,
    ``["path", file]`` or ``["name", module]`` as spawn does; :class:`Unavailable` when impossible."""
    if not names:
        return None
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    lead = f"{what} refers to {shown}, defined in the main script (__main__)"
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not isinstance(path, str) or not os.path.isfile(path):
        raise Unavailable(
            f"{lead}, which has no file to re-import (python -c, standard input, a notebook): a "
            f"spawn or forkserver worker could not unpickle it either. To check it, {ADVICE}"
        )
    try:
        with open(path, "rb") as source:
            tree = ast.parse(source.read(), filename=path)
    except (OSError, SyntaxError, ValueError) as error:
        raise Unavailable(f"{lead}, and {path} cannot be read back ({error}); {ADVICE}") from error
    unsafe = unsafe_statement(tree.body)
    if unsafe is not None:
        raise Unavailable(
            f"{lead}, and {os.path.basename(path)} runs code when imported (line {unsafe.lineno}: "
            f"{_snippet(unsafe)}): a spawn or forkserver worker would re-run it, so a fresh "
            f"interpreter cannot rebuild {what} without running the script again. To check it, {ADVICE}"
        )
    defined = _defined_names(tree.body)
    missing = [name for name in names if name.split(".")[0] not in defined]
    if missing:
        raise Unavailable(
            f"{lead}, but {os.path.basename(path)} does not define {', '.join(missing)} at its top "
            f"level (outside the __main__ guard), so a worker cannot rebuild it; {ADVICE}"
        )
    spec = getattr(main, "__spec__", None)
    spec_name = getattr(spec, "name", None)
    if isinstance(spec_name, str) and spec_name not in MAIN_NAMES and not spec_name.endswith(".__main__"):
        return ["name", spec_name]
    return ["path", path]


def _snippet(node: ast.stmt) -> str:
    try:
        text = ast.unparse(node).splitlines()[0]
    except Exception:
        return type(node).__name__
    return text if len(text) <= 60 else text[:57] + "..."


_ALLOWED_CALLS = frozenset(
    {"TypeVar", "ParamSpec", "TypeVarTuple", "NewType", "namedtuple", "NamedTuple", "TypedDict"}
    | {"getLogger", "field", "frozenset", "set", "dict", "list", "tuple", "object", "Path"}
    # Decorator factories that only wrap or describe what they decorate.
    | {"dataclass", "lru_cache", "wraps", "no_grad", "inference_mode", "enable_grad"}
)


def _evaluated(expr: ast.AST) -> Iterator[ast.AST]:
    """The nodes of ``expr`` that run when it is evaluated: a lambda's default values do, its body
    does not (it runs when the lambda is called); a comprehension's parts do."""
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.Lambda):
            stack.extend(node.args.defaults)
            stack.extend(default for default in node.args.kw_defaults if default is not None)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _plain(expr: ast.expr) -> bool:
    """An expression without effects at import: no calls (beyond typing helpers, containers and
    wrapping decorators) among the parts that run when it is evaluated."""
    for node in _evaluated(expr):
        if isinstance(node, (ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)):
            return False
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name not in _ALLOWED_CALLS:
                return False
    return True


def _definition_runs(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> list[ast.expr]:
    """What a ``def`` or ``class`` statement evaluates when it runs: its decorators, a function's
    default values, a class's bases and keywords (its body is a statement list of its own).
    Annotations are left out: deferred under ``from __future__ import annotations`` and from
    Python 3.14 on, and calls in them describe types."""
    parts: list[ast.expr] = list(node.decorator_list)
    if isinstance(node, ast.ClassDef):
        parts += node.bases
        parts += [keyword.value for keyword in node.keywords]
    else:
        parts += node.args.defaults
        parts += [default for default in node.args.kw_defaults if default is not None]
    return parts


def _is_main_guard(test: ast.expr) -> bool:
    if not isinstance(test, ast.Compare) or len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    has_name = any(isinstance(side, ast.Name) and side.id == "__name__" for side in sides)
    has_main = any(isinstance(side, ast.Constant) and side.value == "__main__" for side in sides)
    return has_name and has_main


def unsafe_statement(body: list[ast.stmt]) -> ast.stmt | None:
    """The first top-level statement that would run code when the script is imported, or None:
    what runs is judged as Python runs it (a function's body and a lambda's body do not run when
    they are defined; decorators, default values, class bodies and comprehensions do)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.Pass)):
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if not all(_plain(part) for part in _definition_runs(node)):
                return node
            if isinstance(node, ast.ClassDef):
                inner = unsafe_statement(node.body)  # a class body runs at its definition
                if inner is not None:
                    return inner
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            if node.value is None or _plain(node.value):
                continue
            return node
        if isinstance(node, ast.If):
            if _is_main_guard(node.test):
                inner = unsafe_statement(node.orelse)
            elif _plain(node.test):  # if TYPE_CHECKING:, if sys.version_info >= ...:
                inner = unsafe_statement(node.body) or unsafe_statement(node.orelse)
            else:
                return node
            if inner is not None:
                return inner
            continue
        if isinstance(node, ast.Try):  # try: import x / except ImportError: ...
            blocks = [node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)]
            inner = next((bad for block in blocks if (bad := unsafe_statement(block))), None)
            if inner is not None:
                return inner
            continue
        return node
    return None


def _defined_names(body: list[ast.stmt]) -> set[str]:
    """Names the top level binds when imported (not those bound only under the __main__ guard)."""
    names: set[str] = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Assign):
            names.update(n.id for target in node.targets for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.If):
            if not _is_main_guard(node.test):
                names |= _defined_names(node.body)
            names |= _defined_names(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                names |= _defined_names(block)
    return names
