"""The server and its children, run in the fresh interpreter (``serve()`` is its main loop).

Per request, the server forks children (a fresh interpreter for the user's modules: none of them was
imported before the fork) that rebuild the object from its pickle and compute what was asked: the
items of a dataset (``ds[i]``, or the first items of ``iter(ds)``), set up as DataLoader's worker 0
would be, streaming progress frames so that a hang names the call in progress; or a function of
torchcontract's named in the request (the ranks of a process group). A child never outlives the
server, nor the server its parent.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.abc
import importlib.util
import operator
import os
import pickle
import select
import signal
import socket
import sys
import traceback
import types
from collections.abc import Callable
from typing import Any

from torchcontract.conformance._runtime import lifetime
from torchcontract.conformance._runtime.fresh.pickling import IMPORTABLE
from torchcontract.conformance._runtime.fresh.wire import Closed, recv, send
from torchcontract.conformance._runtime.origin import raised_at

__all__ = ["ENTRY_PACKAGE", "serve"]

# The package whose functions a request may name (see _call_entry).
ENTRY_PACKAGE = "torchcontract.conformance."


def _import_on_demand(names: list[str]) -> list[str]:
    """Import the packages of :data:`ON_DEMAND` (and :data:`FOR_MAIN_SCRIPTS`) among ``names`` (once,
    so that each child starts in milliseconds); the ones now loaded."""
    for name in names:
        if name in IMPORTABLE:
            with contextlib.suppress(Exception):
                importlib.import_module(name)
    return [name for name in IMPORTABLE if name in sys.modules]


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
    send(conn, ("ready", os.getpid(), loaded))
    forking = hasattr(os, "fork")
    if forking:
        lifetime.prepare()
        _Children.watch()
    while True:
        try:
            frame = recv(conn, None)
        except (Closed, OSError):
            return
        if frame[0] == "import":
            # Packages the next request's object needs (torch, torchvision), imported here once.
            send(conn, ("imported", _import_on_demand(list(frame[1]))))
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
        send(conn, ("started", pids))
        os.close(gate_write)  # the children may talk now: the "started" frame is whole
        send(conn, ("exit", _Children.wait(conn, pids)))


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
            _call_entry(header, payload, index)
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
        send(conn, ("progress", what))
        try:
            return True, fn()
        except Exception as error:
            where = raised_at(error) or ""
            send(conn, ("raised", what, type(error).__name__, str(error), where))
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
            send(conn, ("item", data))
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
                send(conn, ("end",))
                break
            if not pickle_back(what, value):
                return
    send(conn, ("done",))


def _call_entry(header: dict[str, Any], payload: bytes, index: int) -> None:
    """Task ``index`` of a request that names a function of torchcontract's (``module:name``, given
    by :func:`.client.run_tasks`): the main script rebuilt as spawn does, then
    ``function(index, payload, **arguments)``. Only torchcontract's own functions are run: the
    fresh interpreter knows none of the layers above it, which name their entry points instead."""
    module_name, _, name = header["entry"].partition(":")
    if not module_name.startswith(ENTRY_PACKAGE):
        raise ValueError(f"{header['entry']!r} is not a function of {ENTRY_PACKAGE}")
    function = getattr(importlib.import_module(module_name), name)
    _fixup_main(header["main"])
    function(index, payload, **header["arguments"])
