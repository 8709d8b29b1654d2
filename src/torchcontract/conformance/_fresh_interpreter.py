"""A fresh interpreter of torchcontract's own, to rebuild the checked object from its pickle as a
``spawn`` or ``forkserver`` worker would, without ever running the user's main script.

Why not multiprocessing's ``spawn``/``forkserver`` contexts: both re-run the main script in the child
when it has a file (``spawn.prepare()`` imports it as ``__mp_main__``; the forkserver preloads
``__main__``). An unguarded script (no ``if __name__ == "__main__":``) then runs its whole body
again, calls ``check()`` again, and fails in the "bootstrapping phase"; configuring the forkserver
(``set_forkserver_preload``) also changes process-wide state the user owns.

Design. Lazily, once per process, we start ``sys.executable -c "... serve()"`` in a new session,
with the parent's interpreter flags, ``sys.path`` (set before anything is imported: never the current
directory that ``-c`` would put first) and working directory, connected by a socket pair. The server imports
torch once when the object needs it (its class's modules use torch, or its pickle names torch: see
:func:`imports_for`; torchvision likewise, on demand), then, per request,
forks a child (a fresh interpreter for the user's modules: none of them was imported before the
fork, so state set at run time in this process is lost, exactly as in a spawn worker). The child
unpickles the object and computes what was asked (``ds[i]`` for some indices, the first items of
``iter(ds)``, or one rank of a process group), streaming progress frames, so that a hang names the
call in progress. Starting the server is torchcontract's fixed cost: it is bounded by
:data:`STARTUP_LIMIT_S`, not by the object's budget. A failure of the server (it did not start,
exited, was stopped or killed, stopped answering before the object's call began) is
:class:`HelperFailed`: an internal error of torchcontract, never the object's failure; a server found
dead before a request (killed since the last one) is replaced once. The engine starts it without waiting
(:func:`prestart`) when a run with a clause that uses it begins, so that its start overlaps the
checks before that clause.

``__main__``. While pickling in the parent, a ``Pickler.reducer_override`` records the classes and
functions that live in ``__main__``. With none, the child never touches the main script. With some,
the child can rebuild them only by running the script, as spawn does; it does so (as
``__mp_main__``, aliased as ``__main__``) only when the script is a file whose top level is safely
re-importable (an ``ast`` check: imports, definitions, docstrings, constant assignments, ``if
__name__ == "__main__":`` blocks, ``if``/``try`` blocks of the same) and defines those names;
otherwise :class:`Unavailable` says what to do. On platforms without ``os.fork`` the server serves
one request in-process and is replaced afterwards.

No process is left behind: a timed-out child is killed with its process group; a server in an
unknown state is killed with its session; a ``weakref.finalize`` (run at exit) ends the server.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib
import importlib.abc
import importlib.util
import io
import operator
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
import types
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torchcontract.conformance._runtime import lifetime

__all__ = [
    "STARTUP_LIMIT_S",
    "Fetched",
    "HelperFailed",
    "Pickled",
    "Raised",
    "TimedOut",
    "Unavailable",
    "fetch",
    "pickled",
    "prestart",
    "run_tasks",
    "serve",
    "uses",
    "uses_fresh_interpreter",
]

# A generous bound on starting the server and importing torch in it (a cold disk, a loaded CI host).
STARTUP_LIMIT_S = 120.0
# After killing a hung child, how long the server gets to report it before it is replaced.
_DRAIN_S = 5.0
_MAIN_NAMES = ("__main__", "__mp_main__")
ADVICE = "move the dataset class to a module, or guard the script with if __name__ == '__main__':"
# The server's first statement sets its import path to the parent's (given as arguments 3 and on):
# ``sys`` is built in, so nothing at all is imported before that, not even from the directory that
# ``-c`` puts first on the path (a ``json.py`` in the user's current directory is never run). Python
# 3.10 has no ``-P``, and ``-I`` would also drop the environment and user site that a spawn worker
# keeps: the interpreter gets exactly the flags a spawn worker of this process would
# (:func:`_interpreter_flags`), and this path.
_BOOT = (
    "import sys; sys.path[:] = sys.argv[3:]; "
    "from torchcontract.conformance._fresh_interpreter import serve; serve()"
)


class Unavailable(Exception):
    """The fresh interpreter cannot rebuild the object faithfully (a class in an unguarded main
    script, no ``os.fork``, no interpreter to start): a skip, saying why."""


class HelperFailed(Exception):
    """torchcontract's fresh interpreter failed: it did not start, exited, was stopped or killed, or
    stopped answering before the object's call began. Nothing is known about the object: an
    internal error of torchcontract (an ``error`` result), never the object's failure."""


class TimedOut(Exception):
    """The object's time budget ran out; ``waiting_for`` is the call in progress in the child."""

    def __init__(self, waiting_for: str) -> None:
        super().__init__(waiting_for)
        self.waiting_for = waiting_for


@dataclass(frozen=True)
class Raised:
    """The object raised in the child: ``what`` raised ``type_name: message`` at ``where``."""

    what: str
    type_name: str
    message: str
    where: str


@dataclass
class Fetched:
    """What the child computed: the pickled items, whether ``iter(ds)`` ended, what raised."""

    items: list[bytes] = field(default_factory=list)
    ended: bool = False
    raised: Raised | None = None


# ----------------------------------------------------------------------------------------------------
# pickling in the parent, and what __main__ references mean


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
            if module in _MAIN_NAMES and name not in self.main_names:
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
        name for name in ON_DEMAND if _names_package(data, name) or _modules_use(recorder.modules, name)
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
_IMPORTABLE = (*ON_DEMAND, FOR_MAIN_SCRIPTS)


def _names_package(data: bytes, name: str) -> bool:
    """Whether the pickle ``data`` names module ``name`` or a module in it (a bytes search: a false
    positive costs an import). Protocols 4 and 5 write a module name as a string of its length, at
    most 255 bytes; older protocols as a line: ``torch._utils``, ``torch`` exactly, ``ctorch\n``."""
    encoded = name.encode()
    return encoded + b"." in data or bytes([len(encoded)]) + encoded in data or b"c" + encoded + b"\n" in data


def _in_package(name: object, package: str) -> bool:
    return isinstance(name, str) and (name == package or name.startswith(package + "."))


def _modules_use(names: set[str], package: str) -> bool:
    """Whether any of the modules ``names`` (or a package above one) uses ``package``: is in it,
    imports it, or holds a class or function of it in its namespace. A heuristic, for speed only: a
    module that imports torch lazily gets it imported in the child, set up as a worker's
    (:class:`_WorkerOnTorchImport`)."""
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
            if module_name in seen or module_name in _MAIN_NAMES[1:]:
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
    return tuple(package for package in ON_DEMAND if _modules_use(names, package))


def _main_plan(names: tuple[str, ...], what: str) -> list[str] | None:
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
    unsafe = _unsafe_statement(tree.body)
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
    if isinstance(spec_name, str) and spec_name not in _MAIN_NAMES and not spec_name.endswith(".__main__"):
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


def _unsafe_statement(body: list[ast.stmt]) -> ast.stmt | None:
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
                inner = _unsafe_statement(node.body)  # a class body runs at its definition
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
                inner = _unsafe_statement(node.orelse)
            elif _plain(node.test):  # if TYPE_CHECKING:, if sys.version_info >= ...:
                inner = _unsafe_statement(node.body) or _unsafe_statement(node.orelse)
            else:
                return node
            if inner is not None:
                return inner
            continue
        if isinstance(node, ast.Try):  # try: import x / except ImportError: ...
            blocks = [node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)]
            inner = next((bad for block in blocks if (bad := _unsafe_statement(block))), None)
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


# ----------------------------------------------------------------------------------------------------
# frames: an 8-byte length, then a pickle of a tuple of plain values


def _send(conn: socket.socket, frame: tuple[Any, ...]) -> None:
    data = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
    conn.sendall(struct.pack(">Q", len(data)) + data)


class _Closed(Exception):
    """The other end closed the connection."""


def _recv_exact(conn: socket.socket, size: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    while size:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            conn.settimeout(left)
        else:
            conn.settimeout(None)
        try:
            chunk = conn.recv(min(size, 1 << 20))
        except TimeoutError as error:
            raise TimeoutError from error
        if not chunk:
            raise _Closed
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _recv(conn: socket.socket, deadline: float | None) -> tuple[Any, ...]:
    (size,) = struct.unpack(">Q", _recv_exact(conn, 8, deadline))
    frame: tuple[Any, ...] = pickle.loads(_recv_exact(conn, size, deadline))
    return frame


# ----------------------------------------------------------------------------------------------------
# the server and its children (run in the fresh interpreter)


def _import_on_demand(names: list[str]) -> list[str]:
    """Import the packages of :data:`ON_DEMAND` (and :data:`FOR_MAIN_SCRIPTS`) among ``names`` (once,
    so that each child starts in milliseconds); the ones now loaded."""
    for name in names:
        if name in _IMPORTABLE:
            with contextlib.suppress(Exception):
                importlib.import_module(name)
    return [name for name in _IMPORTABLE if name in sys.modules]


def serve() -> None:
    """The server's main loop: ``sys.argv[1]`` is the socket's descriptor, ``sys.argv[2]`` names the
    packages to import first (``torch``, ``torchvision``; ``-`` for none); the import path follows.
    It ends when the parent closes the connection or ends, however (its children with it)."""
    conn = socket.socket(fileno=int(sys.argv[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; it ends us when it exits
    with contextlib.suppress(OSError):  # the parent is gone: nothing to serve
        _serve(conn)


def _serve(conn: socket.socket) -> None:
    loaded = _import_on_demand(sys.argv[2].split(","))
    _send(conn, ("ready", os.getpid(), loaded))
    forking = hasattr(os, "fork")
    if forking:
        lifetime.prepare()
        _Children.watch()
    while True:
        try:
            frame = _recv(conn, None)
        except (_Closed, OSError):
            return
        if frame[0] == "import":
            # Packages the next request's object needs (torch, torchvision), imported here once.
            _send(conn, ("imported", _import_on_demand(list(frame[1]))))
            continue
        header, payload = frame[1:]
        if not forking:
            _child(conn, header, payload, 0, None)
            return
        gate_read, gate_write = os.pipe()
        pids = []
        for index in range(header["tasks"]):
            pid = os.fork()
            if pid == 0:
                os.close(gate_write)
                _child(conn, header, payload, index, gate_read)
            pids.append(pid)
        os.close(gate_read)
        _send(conn, ("started", pids))
        os.close(gate_write)  # the children may talk now: the "started" frame is whole
        _send(conn, ("exit", _Children.wait(conn, pids)))


class _Children:
    """The server waits for its children while watching its parent: a child's exit (SIGCHLD) or the
    connection's end wakes it. Should the parent end while children run (killed by SIGTERM or
    SIGKILL, without closing anything), the children are killed with their process groups and the
    server exits: nothing started for a check outlives the process that asked for it."""

    wake_read = -1
    server_pid = -1

    @classmethod
    def watch(cls) -> None:
        cls.server_pid = os.getpid()
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        signal.signal(signal.SIGCHLD, lambda number, frame: None)  # so that it wakes select()
        signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)  # a byte per signal is plenty
        cls.wake_read = wake_read

    @classmethod
    def forget(cls) -> None:
        """In a child: its own signals are its own."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)

    @classmethod
    def wait(cls, conn: socket.socket, pids: list[int]) -> list[int]:
        codes: dict[int, int] = {}
        while True:
            for pid in pids:
                if pid not in codes:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        codes[pid] = os.waitstatus_to_exitcode(status)
            if len(codes) == len(pids):
                return [codes[pid] for pid in pids]
            readable, _, _ = select.select([conn.fileno(), cls.wake_read], [], [], 1.0)
            if cls.wake_read in readable:
                with contextlib.suppress(OSError):
                    os.read(cls.wake_read, 4096)
            if conn.fileno() in readable and not _parent_alive(conn):
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.killpg(pid, signal.SIGKILL)
                os._exit(0)


def _parent_alive(conn: socket.socket) -> bool:
    """Whether the parent's end of the connection is open (it sends nothing while a request runs)."""
    try:
        return bool(conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return True
    except OSError:
        return False


def _child(conn: socket.socket, header: dict[str, Any], payload: bytes, index: int, gate: int | None) -> None:
    """Run task ``index`` of a request; never returns when forked."""
    code = 0
    try:
        if gate is not None:
            os.setpgid(0, 0)  # our own group: the parent kills it (and what we start) on a hang
            _Children.forget()
            lifetime.end_with_parent(_Children.server_pid)  # a server killed takes its children along
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.read(gate, 1)
            os.close(gate)
        sys.path[:] = header["sys_path"]
        os.chdir(header["cwd"])
        if header["task"] == "samples":
            _samples(conn, header, payload)
        else:
            _rank(header, payload, index)
    except BaseException:
        code = 1
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        if gate is not None:
            os._exit(code)


def _fixup_main(plan: list[str] | None) -> None:
    """Run the main script as ``__mp_main__``, aliased as ``__main__``, as multiprocessing's spawn
    does (``spawn._fixup_main_from_path`` / ``_fixup_main_from_name``)."""
    import runpy

    if plan is None:
        return
    how, where = plan
    if how == "name":
        content = runpy.run_module(where, run_name="__mp_main__", alter_sys=True)
    else:
        content = runpy.run_path(where, run_name="__mp_main__")
    module = types.ModuleType("__mp_main__")
    module.__dict__.update(content)
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module


def _act_as_worker(dataset: Any, base_seed: int) -> None:
    """What torch's ``_worker_loop`` sets up in worker 0 of 1: seeds and ``get_worker_info()``; for
    an object that imports torch only later (lazily), as soon as it does."""
    import random

    random.seed(base_seed)
    if "torch" in sys.modules:
        _act_as_torch_worker(dataset, base_seed, seed_numpy=True)
    else:
        # NumPy's global generator is left as a fresh interpreter seeds it (from the OS, as
        # independent of the main process's as torch's reseeding makes it): the object may have
        # drawn from it before it imports torch.
        sys.meta_path.insert(0, _WorkerOnTorchImport(dataset, base_seed))


def _act_as_torch_worker(dataset: Any, base_seed: int, *, seed_numpy: bool) -> None:
    try:
        import torch
        from torch.utils.data._utils import worker

        torch.set_num_threads(1)
        torch.manual_seed(base_seed)
        if seed_numpy:
            try:
                import numpy as np

                np.random.seed(worker._generate_state(base_seed, 0))  # type: ignore[no-untyped-call]
            except ImportError:
                pass
        worker._worker_info = worker.WorkerInfo(id=0, num_workers=1, seed=base_seed, dataset=dataset)
    except Exception:  # a private API that moved: the items are still computed, as by worker 0
        pass


class _WorkerOnTorchImport(importlib.abc.MetaPathFinder):
    """Sets up worker 0 (torch's seed, ``get_worker_info()``) right after the object's own first
    ``import torch`` in the child, before its code uses torch: what a worker had before the dataset
    ran. Finds nothing itself: it wraps the loader that finds torch."""

    def __init__(self, dataset: Any, base_seed: int) -> None:
        self.dataset, self.base_seed = dataset, base_seed

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "torch":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        loader = getattr(spec, "loader", None)
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return spec

        def exec_then_act(module: types.ModuleType) -> None:
            exec_module(module)
            _act_as_torch_worker(self.dataset, self.base_seed, seed_numpy=False)

        setattr(loader, "exec_module", exec_then_act)  # noqa: B010  (this spec's own loader)
        return spec


def _samples(conn: socket.socket, header: dict[str, Any], payload: bytes) -> None:
    def attempt(what: str, fn: Callable[[], Any]) -> tuple[bool, Any]:
        _send(conn, ("progress", what))
        try:
            return True, fn()
        except Exception as error:
            frames = traceback.extract_tb(error.__traceback__)
            where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""
            _send(conn, ("raised", what, type(error).__name__, str(error), where))
            return False, None

    plan = header["main"]
    if plan is not None:
        ok, _ = attempt(f"running {plan[1]} as __mp_main__ (as spawn does)", lambda: _fixup_main(plan))
        if not ok:
            return
    ok, dataset = attempt(
        "pickle.loads(pickle.dumps(ds)) (rebuilding ds from its pickle)", lambda: pickle.loads(payload)
    )
    if not ok:
        return
    _act_as_worker(dataset, header["seed"])

    def pickle_back(what: str, value: Any) -> bool:
        ok, data = attempt(
            f"pickling {what} back to the main process", lambda: pickle.dumps(value, protocol=4)
        )
        if ok:
            _send(conn, ("item", data))
        return bool(ok)

    if header["indices"] is not None:
        for position in header["indices"]:
            ok, value = attempt(f"ds[{position}]", functools.partial(operator.getitem, dataset, position))
            if not ok or not pickle_back(f"ds[{position}]", value):
                return
    else:
        ok, iterator = attempt("iter(ds)", lambda: iter(dataset))
        if not ok:
            return
        end = object()
        for count in range(header["limit"]):
            what = f"next(iter(ds)) (item {count})"
            ok, value = attempt(what, lambda: next(iterator, end))
            if not ok:
                return
            if value is end:
                _send(conn, ("end",))
                break
            if not pickle_back(what, value):
                return
    _send(conn, ("done",))


def _rank(header: dict[str, Any], payload: bytes, rank: int) -> None:
    from torchcontract.conformance._core.process_group import rank_from_pickle

    _fixup_main(header["main"])
    rank_from_pickle(rank, payload, **header["rank_args"])


# ----------------------------------------------------------------------------------------------------
# the parent's side


class _Server:
    """The server process, started at construction; :meth:`wait_ready` waits for it to be ready (so
    that :func:`prestart` can overlap its start with other work)."""

    def __init__(self, *, preload: tuple[str, ...] = ()) -> None:
        parent_end, child_end = socket.socketpair()
        self.children: list[int] = []
        self.ready = False
        self._started = time.monotonic()
        # The packages of ON_DEMAND it has imported: at its start (``preload``, what the run is known
        # to need), or before the first request that needs one (_imports).
        flag = ",".join(name for name in preload if name in ON_DEMAND) or "-"
        self.imported: set[str] = set()
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    *_interpreter_flags(),
                    "-c",
                    _BOOT,
                    str(child_end.fileno()),
                    flag,
                    *_import_path(),
                ],
                pass_fds=(child_end.fileno(),),
                cwd=os.getcwd(),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except (OSError, ValueError) as error:
            parent_end.close()
            raise Unavailable(
                f"torchcontract could not start its fresh interpreter ({sys.executable!r}: {error})"
            ) from error
        finally:
            child_end.close()
        self.conn = parent_end
        self._finalizer = weakref.finalize(self, _end_server, self.process, self.conn, self.children)

    def wait_ready(self) -> None:
        """Wait (within :data:`STARTUP_LIMIT_S` of the start) for the server's "ready" frame; on a
        failure it is closed and :class:`Unavailable` raised."""
        if self.ready:
            return
        try:
            # A frame that came long ago (a prestarted server) is still read.
            frame = _recv(self.conn, max(self._started + STARTUP_LIMIT_S, time.monotonic() + 1.0))
        except (TimeoutError, _Closed, OSError, pickle.PickleError, EOFError) as error:
            self.close()
            why = "did not start" if isinstance(error, TimeoutError) else "exited"
            raise HelperFailed(
                f"torchcontract's fresh interpreter ({sys.executable} -c ...) {why} within "
                f"{STARTUP_LIMIT_S:g} s (see its standard error); this is not the object's failure"
            ) from error
        if frame[0] != "ready":
            self.close()
            raise HelperFailed(
                f"torchcontract's fresh interpreter answered {frame[0]!r}; this is not the object's failure"
            )
        self.imported.update(frame[2])
        self.ready = True

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        self._finalizer()

    def kill_children(self, sig: int = signal.SIGKILL) -> None:
        for pid in self.children:
            with contextlib.suppress(OSError):
                os.killpg(pid, sig)


def _interpreter_flags() -> list[str]:
    """The command-line flags of this interpreter that a spawn worker gets too (``-O``, ``-B``,
    ``-E``, ``-s``, ``-I``, ``-P``, ``-W``, ``-X``: multiprocessing's ``spawn.get_command_line`` passes
    ``subprocess._args_from_interpreter_flags()``), so that the fresh interpreter runs the object as
    a spawn worker would (``-O`` turns its asserts off, ``-X utf8`` changes its text encoding)."""
    try:
        flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    except Exception:  # a private helper that moved: the default flags, as before
        return []
    return [flag for flag in flags if isinstance(flag, str)]


def _import_path() -> list[str]:
    """This process's ``sys.path``, as the fresh interpreter's arguments (an entry that is no string,
    or that no argument can hold, is one the import system skips anyway)."""
    entries: list[object] = list(sys.path)  # typed list[str], but anything can be put in it
    return [entry for entry in entries if isinstance(entry, str) and "\0" not in entry]


def _end_server(process: subprocess.Popen[bytes], conn: socket.socket, children: list[int]) -> None:
    for pid in children:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
    conn.close()
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:
            process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


_lock = threading.Lock()
_current: list[_Server] = []


def _forget_after_fork() -> None:
    """In a forked child (isolation mode, a DataLoader worker): the parent's server is the parent's.
    Forget it without ending it, and start afresh with a lock no other thread can hold."""
    global _lock
    _lock = threading.Lock()
    while _current:
        _current.pop()._finalizer.detach()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _server() -> _Server:
    """The running server, started when there is none (the fixed cost: not the object's budget)."""
    if _current:
        server = _current[0]
        if not server.ready:  # started by prestart(): its failure to start is reported once, here
            try:
                server.wait_ready()
            except Unavailable:
                _current.pop()
                raise
        if server.alive():
            return server
        _current.pop().close()
    server = _start()
    try:
        server.wait_ready()
    except Unavailable:
        _current.pop()
        raise
    return server


def _start(preload: tuple[str, ...] = ()) -> _Server:
    if not sys.executable:
        raise Unavailable("torchcontract cannot start a fresh interpreter: sys.executable is empty")
    server = _Server(preload=preload)
    _current.append(server)
    return server


_USES = "_torchcontract_uses_fresh_interpreter"


_F = TypeVar("_F", bound=Callable[..., Any])


def uses_fresh_interpreter(func: _F) -> _F:
    """Mark a check function that sends requests here (apply it below ``preserving``, whose
    ``functools.wraps`` carries the mark): :func:`uses` then says so, and the engine prestarts."""
    setattr(func, _USES, True)
    return func


def uses(func: object) -> bool:
    return getattr(func, _USES, False) is True


def prestart(preload: tuple[str, ...] = ()) -> None:
    """Start the server now, without waiting for it, when none runs: a run that will need it (a
    spawn clause) overlaps its start (importing ``preload``, packages of :data:`ON_DEMAND`: what the
    object needs, :func:`imports_for`) with the checks before. No thread is started (the worker
    clauses fork); the first request waits for it to be ready. Never raises: a failure to start is
    reported by the first request."""
    if not hasattr(os, "fork") or not _lock.acquire(blocking=False):
        return  # without fork each request starts its own; a request in flight has one
    try:
        if not _current:
            with contextlib.suppress(Unavailable):
                _start(preload)
    except Exception:  # an odd sys.path or executable: the first request reports it
        pass
    finally:
        _lock.release()


def _discard(server: _Server) -> None:
    server.close()
    if _current and _current[0] is server:
        _current.pop()


def _imports(server: _Server, wanted: tuple[str, ...]) -> None:
    """Have the server import the packages of ``wanted`` it has not, before the request's deadline
    starts: torchcontract's fixed cost, not the object's."""
    needed = [name for name in wanted if name in _IMPORTABLE and name not in server.imported]
    if not needed:
        return
    try:
        _send(server.conn, ("import", needed))
        frame = _recv(server.conn, time.monotonic() + STARTUP_LIMIT_S)
    except (TimeoutError, _Closed, OSError, pickle.PickleError, EOFError) as error:
        _discard(server)
        raise HelperFailed(
            f"torchcontract's fresh interpreter did not import {', '.join(needed)} "
            f"({type(error).__name__}); this is not the object's failure"
        ) from error
    if frame[0] != "imported":
        _discard(server)
        raise HelperFailed(
            f"torchcontract's fresh interpreter answered {frame[0]!r} to an import; this is not the "
            "object's failure"
        )
    server.imported.update(frame[1])


@dataclass
class _Answer:
    """What a request came to: the children's exit codes (none when the server did not report them),
    whether the deadline came first, and whether the server had started the children."""

    codes: list[int]
    timed_out: bool
    started: bool


def _request(
    header: dict[str, Any],
    what: Pickled,
    time_left: float,
    on_frame: Callable[[tuple[Any, ...]], None],
    *,
    imports: tuple[str, ...] = (),
) -> _Answer:
    """Send one request; feed the children's frames to ``on_frame`` until they exit, within
    ``time_left`` seconds counted from when the server is ready. A server found dead before it
    started the children (killed since the last request) is replaced once; :class:`HelperFailed`
    when it fails again, or stops answering once it had."""
    with _lock:
        try:
            return _request_once(header, what, time_left, on_frame, imports)
        except _DeadBeforeStart:
            pass  # killed since the last request: a new server, once
        try:
            return _request_once(header, what, time_left, on_frame, imports)
        except _DeadBeforeStart as dead:
            raise HelperFailed(
                f"torchcontract's fresh interpreter stopped answering ({dead.args[0]}) before it started "
                "the request's child; this is not the object's failure"
            ) from None


class _DeadBeforeStart(Exception):
    """The server's connection failed before it had started a child: nothing of the object ran."""


def _request_once(
    header: dict[str, Any],
    what: Pickled,
    time_left: float,
    on_frame: Callable[[tuple[Any, ...]], None],
    imports: tuple[str, ...],
) -> _Answer:
    server = _server()
    main = (FOR_MAIN_SCRIPTS,) if header["main"] is not None else ()
    _imports(server, (*imports, *what.imports, *main))
    deadline = time.monotonic() + max(time_left, 0.0)
    full = {"sys_path": list(sys.path), "cwd": os.getcwd(), **header}
    if not hasattr(os, "fork"):
        full["tasks"] = 1
    started = False
    try:
        _send(server.conn, ("request", full, what.data))
        while True:
            try:
                frame = _recv(server.conn, deadline)
            except TimeoutError:
                break
            if frame[0] == "started":
                server.children[:] = frame[1]
                started = True
            elif frame[0] == "exit":
                server.children.clear()
                if not hasattr(os, "fork"):
                    _discard(server)
                return _Answer(list(frame[1]), timed_out=False, started=True)
            else:
                on_frame(frame)
    except (TimeoutError, _Closed, OSError, pickle.PickleError, EOFError) as error:
        _discard(server)
        if not started:
            raise _DeadBeforeStart(type(error).__name__) from error
        raise HelperFailed(
            f"torchcontract's fresh interpreter stopped answering ({type(error).__name__}) while it ran "
            "the request; this is not the object's failure"
        ) from error
    except BaseException:
        _discard(server)  # an interrupt: end whatever still runs, at once
        raise
    # Out of time: stop the children, and let the server report them (else replace it).
    server.kill_children()
    codes: list[int] = []
    try:
        drain = time.monotonic() + _DRAIN_S
        while True:
            frame = _recv(server.conn, drain)
            if frame[0] == "started":
                started = True
            elif frame[0] == "exit":
                server.children.clear()
                codes = list(frame[1])
                break
    except Exception:  # the server is in an unknown state (stopped, say): replace it next time
        _discard(server)
    except BaseException:
        _discard(server)
        raise
    if not hasattr(os, "fork") and _current and _current[0] is server:
        _discard(server)
    return _Answer(codes, timed_out=True, started=started)


_NOT_ANSWERING = (
    "torchcontract's fresh interpreter did not answer within {budget} (it was stopped, or is starved "
    "of CPU) before {what}; this is not the object's failure"
)


def fetch(what: Pickled, *, indices: list[int] | None, limit: int, time_left: float) -> Fetched:
    """Rebuild the dataset pickled in ``what`` in a fresh interpreter and compute ``ds[i]`` for
    ``indices``, or (``indices=None``) the first ``limit`` items of ``iter(ds)``.

    Raises :class:`Unavailable` (skip), :class:`TimedOut` (the object's call in progress after
    ``time_left`` seconds, not counting the server's start) or :class:`HelperFailed` (the server, not
    the object, did not answer)."""
    header = {
        "task": "samples",
        "tasks": 1,
        "main": _main_plan(what.main_names, "ds"),
        "indices": indices,
        "limit": limit,
        "seed": int.from_bytes(os.urandom(7), "big"),
    }
    fetched = Fetched()
    progress = ["starting a child of the fresh interpreter"]
    # Whether the object's code began (a progress frame: the child is rebuilding or calling it), and
    # whether the child had finished (so that only the server's exit report was missing).
    began, done = [False], [False]

    def on_frame(frame: tuple[Any, ...]) -> None:
        kind = frame[0]
        if kind == "progress":
            progress[0] = frame[1]
            began[0] = True
        elif kind == "done":
            done[0] = True
        elif kind == "item":
            fetched.items.append(frame[1])
        elif kind == "end":
            fetched.ended = True
        elif kind == "raised":
            fetched.raised = Raised(*frame[1:])

    answer = _request(header, what, time_left, on_frame)
    if answer.timed_out:
        budget = f"{time_left:.3g} s"
        if not began[0]:
            raise HelperFailed(_NOT_ANSWERING.format(budget=budget, what="the object's first call began"))
        if done[0] or fetched.raised is not None:
            raise HelperFailed(
                _NOT_ANSWERING.format(budget=budget, what="reporting that its child had ended")
            )
        raise TimedOut(progress[0])
    codes = answer.codes
    if fetched.raised is None and codes and codes[0] != 0 and not fetched.ended:
        fetched.raised = Raised(progress[0], "the worker process died", f"exit status {codes[0]}", "")
    return fetched


def run_tasks(what: Pickled, *, tasks: int, rank_args: dict[str, Any], timeout_s: float) -> list[int | None]:
    """Run ``tasks`` ranks (``_process_group.rank_from_pickle``) as children of the fresh interpreter;
    their exit codes (negative: a signal ended it; None: still running at ``timeout_s``, stopped)."""
    if not hasattr(os, "fork"):
        raise Unavailable(
            "torchcontract runs the ranks of a process group as forks of its fresh interpreter, and "
            "this platform has no os.fork"
        )
    header = {
        "task": "rank",
        "tasks": tasks,
        "main": _main_plan(what.main_names, "shards"),
        "rank_args": rank_args,
    }
    # The ranks run torch.distributed: torch is imported before, outside their deadline.
    answer = _request(header, what, timeout_s, lambda frame: None, imports=("torch",))
    if not answer.started:
        raise HelperFailed(
            _NOT_ANSWERING.format(budget=f"{timeout_s:.3g} s", what="it started the ranks' processes")
        )
    if len(answer.codes) != tasks:
        return [None] * tasks
    killed = -int(signal.SIGKILL)
    return [None if answer.timed_out and code == killed else code for code in answer.codes]
