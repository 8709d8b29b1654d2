"""Leaving the checked object as it was: a snapshot of its state, restored after each check.

SPEC.md ("Side effects") promises that ``check()`` leaves the object as it found it. Calls change
objects that keep state: a call counter or a running mean updated in ``forward``, BatchNorm's running
statistics in train mode, a lazy module that becomes its final class on its first call, a dataset that
memoises samples or counts its passes, a collate function that counts batches, a generator stored on
the object. :class:`Restorer` snapshots an object so that everything reachable from it
through instance ``__dict__``s, containers, closures and ``functools.partial`` objects is put back
afterwards, in place (identities kept, so an optimizer holding a module's parameters still holds them):

- every object's class (``nn.LazyLinear`` becomes ``nn.Linear`` on its first call and goes back);
- attributes (``vars(obj)``): added ones removed, replaced ones put back, every submodule's
  ``training`` flag included;
- the contents of lists, dicts, sets and deques (a cache dict, a list of seen inputs);
- arrays and tensors (parameters, buffers, a cache tensor): a tensor's class and the memory it views
  (``UninitializedParameter.materialize`` replaces ``.data`` with a tensor of another shape and
  changes the class; ``p.data = other`` too), its ``requires_grad``, ``.grad`` and Python attributes,
  and its values, written back only where they changed, so memory that was never written (a
  read-only memory map) is never written either;
- the state of random generators (``random.Random``, NumPy's ``Generator``/``RandomState``,
  ``torch.Generator``).

Which checks are snapshotted, and when, is the engine's to decide from each check's declaration
(``touches=`` of :func:`~torchcontract.conformance._core.registry.register_check`, read by
:class:`~torchcontract.conformance._core.session.Session`): one snapshot per run of a target's
checks, restored after each check that may change the object.

What the object shares with other threads, processes or the operating system is *opaque*: restored by
identity where an attribute or container holds it, never taken apart. Threads, locks, conditions,
events, semaphores, barriers, queues (``queue``, ``multiprocessing``, ``asyncio``), executors, file
objects, sockets, C handles (sqlite3 connections, ``mmap``), loggers, weak containers and PIL images: a
dataset served by a background thread keeps the waiters of its condition and the requests in its queue
(putting back a condition's list of waiters loses the thread waiting on it for good).

Walking the object never calls its methods (only ``vars``, container reads and the generators' own
state getters); a part that cannot be read is left out, never an error. For datasets and collate
functions, arrays bigger than ``max_array_bytes`` (the data itself, which the checks only read) are
not copied, nor are lists, deques, dicts and sets of more than ``max_array_bytes / 8`` items (a list
of a million file names), so that a snapshot costs the same whatever the size of the dataset; a
module's arrays and containers are all copied (parameters and buffers are its state). Containers
holding only strings, numbers and None are saved without a visit per item.
"""

from __future__ import annotations

import collections
import functools
import io
import operator
import random
import threading
import types
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from torchcontract.conformance._runtime.calls import object_call
from torchcontract.conformance._values import is_tensor, tensor_module

__all__ = ["DATA_ARRAY_BYTES", "RESTORE", "SNAPSHOT", "Restorer", "is_opaque", "preserved"]

Restore = Callable[[], None]
# Above this, a dataset's or collate function's array is taken for data the checks only read.
DATA_ARRAY_BYTES = 1 << 20
DATA_TOTAL_BYTES = 64 << 20
_REFERENCE_BYTES = 8  # what one item of a list, dict or set costs a snapshot, at least
_MAX_NODES = 100_000  # objects visited per snapshot (a dataset may reference a large object graph)

_OPAQUE = (
    type,
    types.ModuleType,
    types.BuiltinFunctionType,
    types.MethodWrapperType,
    types.CodeType,
    io.IOBase,
    weakref.ref,
    type(threading.Lock()),
    type(threading.RLock()),
    threading.Thread,
    str,
    bytes,
    int,
    float,
    complex,
    bool,
    range,
    type(None),
)
# The packages whose classes hold what an object shares with other threads, processes or the operating
# system (a class of one of them anywhere in a type's MRO makes its instances opaque: a subclass of
# queue.Queue is a queue). Decided by the classes' module names, so nothing is imported to decide.
_OPAQUE_PACKAGES = frozenset(
    {"threading", "_thread", "queue", "_queue", "multiprocessing", "_multiprocessing", "asyncio",
     "concurrent", "socket", "_socket", "ssl", "_ssl", "select", "selectors", "subprocess", "signal",
     "io", "_io", "tempfile", "mmap", "sqlite3", "_sqlite3", "dbm", "ctypes", "_ctypes", "logging",
     "weakref", "_weakref", "_weakrefset", "zipfile", "tarfile", "contextvars", "_contextvars", "PIL"}
)  # fmt: skip
# Exact types of _OPAQUE whose instances hold nothing to capture: a container of only these (a list of
# a million floats or file names) is saved without a visit per item (what the visits would capture:
# nothing), so a snapshot's cost does not grow with the data it holds.
_ATOMIC = frozenset({str, bytes, int, float, complex, bool, range, type(None)})


def is_opaque(value: Any) -> bool:
    """Whether ``value`` is restored by identity only, never taken apart (see the module docstring)."""
    kind: Any = type(value)
    return _opaque_type(kind)


@functools.lru_cache(maxsize=4096)
def _opaque_type(kind: Any) -> bool:
    if issubclass(kind, _OPAQUE):
        return True
    for klass in kind.__mro__[:-1]:
        module = type.__dict__["__module__"].__get__(klass)  # not a metaclass's own __module__
        if isinstance(module, str) and module.partition(".")[0] in _OPAQUE_PACKAGES:
            return True
    return False


class Restorer:
    """A snapshot of ``obj``'s state; :meth:`restore` puts it back (see the module docstring)."""

    def __init__(self, obj: object, *, max_array_bytes: int | None = None) -> None:
        self._max_array_bytes = max_array_bytes
        self._total_left = None if max_array_bytes is None else DATA_TOTAL_BYTES
        self._seen: set[int] = set()
        self._steps: list[tuple[str, Restore]] = []
        self.problems: list[str] = []
        self._visit(obj, "obj")

    def restore(self) -> list[str]:
        """Put every captured part back; a part that cannot be restored is named in the list returned
        (and added to ``problems``). The snapshot stays as it was taken: it can be restored again,
        after each of several checks (the saved copies are never handed to the object)."""
        found = []
        steps = self._steps
        position = len(steps)
        while position:
            # One try around the loop, not one per step: a module's snapshot has thousands of steps.
            try:
                while position:
                    position -= 1
                    steps[position][1]()
            except Exception as error:  # noqa: PERF203  (the outer loop resumes after a failed step)
                found.append(f"{steps[position][0]} ({type(error).__name__}: {error})")
        self.problems.extend(found)
        return found

    # -- capturing ------------------------------------------------------------------------------

    def _visit(self, value: Any, where: str) -> None:
        if id(value) in self._seen or len(self._seen) >= _MAX_NODES or is_opaque(value):
            return
        self._seen.add(id(value))
        try:
            self._capture(value, where)
        except Exception:  # an odd object is left out of the snapshot, never an error
            return

    def _capture(self, value: Any, where: str) -> None:
        if isinstance(value, np.ndarray):
            self._capture_array(value, where)
            return
        if is_tensor(value):
            self._capture_tensor(value, where)
            return
        if self._capture_generator(value, where):
            return
        if isinstance(value, tuple):
            self._visit_items(value, where)
            return
        if isinstance(value, (list, collections.deque, dict, set)) and self._data_container(value):
            return
        if isinstance(value, (list, collections.deque)):
            self._capture_sequence(value, where)
            return
        if isinstance(value, dict):
            self._capture_dict(value, where)
            return
        if isinstance(value, set):
            saved_set = set(value)

            def restore_set() -> None:
                if set.__ne__(value, saved_set):
                    set.clear(value)
                    set.update(value, saved_set)

            self._steps.append((where, restore_set))
            return
        if isinstance(value, functools.partial):
            self._visit(value.args, f"{where}.args")
            self._visit(value.keywords, f"{where}.keywords")
            return
        if isinstance(value, types.MethodType):
            self._visit(value.__self__, f"{where}.__self__")
            return
        if isinstance(value, types.FunctionType):
            self._capture_closure(value, where)
        attributes = getattr(value, "__dict__", None)
        if isinstance(attributes, dict):
            self._capture_class(value, where)
            self._capture_dict(attributes, f"{where}.__dict__")

    def _capture_class(self, value: Any, where: str) -> None:
        """The object's class, put back without running its code: a lazy module becomes its final
        class (``nn.LazyLinear`` -> ``nn.Linear``) on its first call."""
        kind = type(value)

        def restore_class() -> None:
            if type(value) is not kind:
                object.__setattr__(value, "__class__", kind)

        self._steps.append((f"{where}.__class__", restore_class))

    def _capture_array(self, value: np.ndarray[Any, Any], where: str) -> None:
        if not value.flags.writeable or not value.size or not self._affordable(value.nbytes):
            return
        saved = value.copy()

        def restore() -> None:
            if not np.array_equal(value, saved, equal_nan=value.dtype.kind in "fc"):
                np.copyto(value, saved)

        self._steps.append((where, restore))

    def _capture_tensor(self, value: Any, where: str) -> None:
        """A tensor's class, the memory it views, its autograd attributes, its Python attributes and
        its values. Read and written with torch's functions of a subclass turned off: a subclass's
        ``__torch_function__`` is the object's code (an ``UninitializedParameter`` refuses most ops)."""
        torch = tensor_module()
        with torch._C.DisableTorchFunctionSubclass():
            # The steps run in reverse: the identity is put back first, then the values into it.
            self._capture_tensor_values(torch, value, where)
            attributes = getattr(value, "__dict__", None)
            if isinstance(attributes, dict):
                self._capture_dict(attributes, f"{where}.__dict__")
            self._capture_tensor_identity(torch, value, where)

    def _capture_tensor_values(self, torch: Any, value: Any, where: str) -> None:
        if value.is_inference() or value.is_meta or value.layout != torch.strided or not value.numel():
            return
        if not self._affordable(value.numel() * value.element_size()):
            return
        saved = value.detach().clone()

        def restore() -> None:
            # Written back only where it changed: a tensor over read-only memory (torch.from_numpy of
            # a memory map opened with mode 'r') would crash the process if written.
            with torch._C.DisableTorchFunctionSubclass():
                current = value.detach()
                if not torch.equal(current, saved) and not _nan_equal(torch, current, saved):
                    with torch.no_grad():
                        value.copy_(saved)

        self._steps.append((where, restore))

    def _capture_tensor_identity(self, torch: Any, value: Any, where: str) -> None:
        """What a tensor is besides its values: its class, the memory it views (``.data``), and for a
        leaf its ``requires_grad`` and ``.grad`` (whose values are captured as a tensor's)."""
        kind = type(value)
        data = value.data  # a tensor viewing the same memory, with the same shape and strides
        layout = _memory_layout(data)
        leaf = bool(value.is_leaf)
        requires_grad = bool(value.requires_grad)
        grad = value.grad if leaf else None

        def restore_identity() -> None:
            with torch._C.DisableTorchFunctionSubclass():
                if layout is not None and _memory_layout(value.data) != layout:
                    value.data = data
                if type(value) is not kind:
                    value.__class__ = kind
                if leaf and value.requires_grad is not requires_grad:
                    value.requires_grad_(requires_grad)
                if leaf and value.grad is not grad:
                    value.grad = grad

        self._steps.append((where, restore_identity))
        if grad is not None:
            self._visit(grad, f"{where}.grad")

    def _capture_generator(self, value: Any, where: str) -> bool:
        if isinstance(value, np.random.Generator):
            bit_generator = value.bit_generator
            state = bit_generator.state

            def restore_generator() -> None:
                bit_generator.state = state

            self._steps.append((where, restore_generator))
            return True
        if isinstance(value, np.random.RandomState):
            legacy = value.get_state()
            self._steps.append((where, lambda: value.set_state(legacy)))
            return True
        if isinstance(value, random.Random):
            python_state = value.getstate()
            self._steps.append((where, lambda: value.setstate(python_state)))
            return True
        torch = tensor_module()
        if torch is not None and isinstance(value, torch.Generator):
            torch_state = value.get_state()
            self._steps.append((where, lambda: value.set_state(torch_state)))
            return True
        return False

    def _capture_sequence(self, value: Any, where: str) -> None:
        items = list(value)

        def restore() -> None:
            # map(operator.is_not, ...): the identity comparisons at C speed (a list of a million items).
            if len(value) != len(items) or any(map(operator.is_not, value, items)):
                # The base type's methods: a subclass's own clear/extend is the object's code.
                kind = collections.deque if isinstance(value, collections.deque) else list
                kind.clear(value)
                kind.extend(value, items)

        self._steps.append((where, restore))
        self._visit_items(items, where)

    def _visit_items(self, items: Sequence[Any], where: str) -> None:
        """Visit the items of a tuple or list as ``where[index]`` (none when all are atomic)."""
        if _all_atomic(items):
            return
        for index, item in enumerate(items):
            if self._full():
                break  # every later visit would return at once
            self._visit(item, f"{where}[{index}]")

    def _full(self) -> bool:
        return len(self._seen) >= _MAX_NODES

    def _capture_dict(self, value: dict[Any, Any], where: str) -> None:
        items = list(value.items())
        if not items:  # most of a module's dicts (its hooks): the common case, without a list per restore
            kind = collections.OrderedDict if isinstance(value, collections.OrderedDict) else dict

            def restore_empty() -> None:
                if dict.__len__(value):
                    kind.clear(value)

            self._steps.append((where, restore_empty))
            return

        def restore() -> None:
            current = list(value.items())
            if len(current) == len(items) and _identical(current, items):
                return  # the same keys and values (identities, compared at C speed)
            same = len(current) == len(items) and all(
                k1 is k2 or k1 == k2 for (k1, _), (k2, _) in zip(current, items, strict=True)
            )
            if not same or any(v1 is not v2 for (_, v1), (_, v2) in zip(current, items, strict=True)):
                # The base type's methods (Counter.update adds counts); OrderedDict keeps its own
                # order links, so it needs its own.
                kind = collections.OrderedDict if isinstance(value, collections.OrderedDict) else dict
                kind.clear(value)
                kind.update(value, items)

        self._steps.append((where, restore))
        if _all_atomic(value for _, value in items):
            return
        for key, item in items:
            if self._full():
                break  # every later visit would return at once
            self._visit(item, f"{where}[{key!r}]")

    def _capture_closure(self, function: types.FunctionType, where: str) -> None:
        for index, cell in enumerate(function.__closure__ or ()):
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                continue

            def restore_cell(cell: Any = cell, contents: Any = contents) -> None:
                if cell.cell_contents is not contents:
                    cell.cell_contents = contents

            self._steps.append((f"{where}.__closure__[{index}]", restore_cell))
            self._visit(contents, f"{where}.__closure__[{index}]")

    def _data_container(self, value: Any) -> bool:
        """A dataset's or collate function's container whose references alone take more than
        ``max_array_bytes`` (a list of a million file names): data the checks only read, like a big
        array, so that a snapshot's cost does not grow with the size of the dataset."""
        if self._max_array_bytes is None:
            return False
        # The base type's __len__: a subclass's own is the object's code.
        kind = next(k for k in (collections.deque, list, dict, set) if isinstance(value, k))
        return int(kind.__len__(value)) * _REFERENCE_BYTES > self._max_array_bytes

    def _affordable(self, nbytes: int) -> bool:
        if self._max_array_bytes is None or self._total_left is None:
            return True
        if nbytes > self._max_array_bytes or nbytes > self._total_left:
            return False
        self._total_left -= nbytes
        return True


def _all_atomic(values: Iterable[Any]) -> bool:
    """Whether every value's exact type is in :data:`_ATOMIC` (their visits capture nothing)."""
    return set(map(type, values)) <= _ATOMIC


def _identical(one: list[tuple[Any, Any]], two: list[tuple[Any, Any]]) -> bool:
    """Two equally long lists of (key, value) pairs hold the same objects, pair by pair."""
    return all(map(operator.is_, map(operator.itemgetter(0), one), map(operator.itemgetter(0), two))) and all(
        map(operator.is_, map(operator.itemgetter(1), one), map(operator.itemgetter(1), two))
    )


def _memory_layout(tensor: Any) -> tuple[Any, ...] | None:
    """Which memory a tensor views, and how: equal for two tensors that view the same elements of one
    storage the same way; None when it cannot be read (a sparse or nested tensor)."""
    try:
        return (
            tensor.dtype,
            tensor.device,
            tuple(tensor.shape),
            tensor.stride(),
            tensor.storage_offset(),
            tensor.untyped_storage().data_ptr(),
        )
    except Exception:
        return None


def _nan_equal(torch: Any, one: Any, two: Any) -> bool:
    if not (one.is_floating_point() or one.is_complex()) or one.shape != two.shape:
        return False
    return bool(torch.equal(torch.nan_to_num(one), torch.nan_to_num(two))) and bool(
        torch.equal(one.isnan(), two.isnan())
    )


@contextmanager
def preserved(obj: object, *, max_array_bytes: int | None = None) -> Iterator[Restorer]:
    """Snapshot ``obj``, run the block, restore ``obj`` (also when the block fails or skips).

    Both run the object's own code in places (a key's ``__eq__``, a tensor subclass's ops, an
    attribute the object computes): they are object calls, so that a hang there names them."""
    with object_call(SNAPSHOT):
        restorer = Restorer(obj, max_array_bytes=max_array_bytes)
    try:
        yield restorer
    finally:
        with object_call(RESTORE):
            restorer.restore()


# How the snapshot and the restore are named when the object hangs in them.
SNAPSHOT = "<the snapshot of the object's state before the check>"
RESTORE = "<putting the object's state back after the check>"
