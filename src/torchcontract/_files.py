"""Writing the files torchcontract produces (JSON reports, Markdown summaries, baselines, the reference
implementation's IDX files): whole or not at all.

:func:`write_atomically` writes the complete new content to a temporary file beside the target,
flushes it to the disk (``fsync``) and renames it over the target in one step (``os.replace``): a
reader, or a crash, sees the old file or the new one, never a part of either. A full disk, a
file-size limit (``ulimit -f``) or an interrupt leaves the old file exactly as it was, removes the
temporary file, and raises :class:`OutputError` naming the path. Appending (the Markdown summary,
which ``$GITHUB_STEP_SUMMARY`` collects for a whole job) is the same: the old content and the new,
written together to the temporary file, replace the old file in one step. So two processes appending
to one file at the same moment may lose one's text (never cut it): give each its own file.

The file keeps what it was: an existing target keeps its permission bits (and owner, where this
process may set them); a new one gets the mode any new file gets (0666 less the umask); a symbolic
link keeps pointing where it did, at the replaced file. A target that is not a regular file (a
terminal, ``/dev/stdout``, a FIFO) cannot be replaced: it is written to directly.

A leaf of the package, shared by :mod:`torchcontract.conformance` and :mod:`torchcontract.reference_impl`
(neither imports the other for it). Light on purpose: the pytest plugin imports it at configuration.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["OutputError", "output_problem", "replacing", "write_atomically"]

# Tries at a free temporary name: names are random, so a clash is as good as impossible.
_NAME_TRIES = 100


class OutputError(OSError):
    """A file could not be written; the message names it, says why, and that the old one is intact."""


def _temporary_beside(target: Path) -> tuple[int, Path]:
    """A new file in ``target``'s directory, open for writing, created with the mode a new file gets
    (``0666`` less the umask, applied by the system), never one that existed."""
    for _ in range(_NAME_TRIES):
        candidate = target.with_name(f".{target.name}.{os.urandom(6).hex()}.tmp")
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            return os.open(candidate, flags, 0o666), candidate
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(target.parent))


def _keep_attributes(descriptor: int, old: os.stat_result) -> None:
    """Give the new file the old one's permission bits, and its owner where this process may."""
    os.fchmod(descriptor, stat.S_IMODE(old.st_mode))
    if hasattr(os, "fchown") and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
        with contextlib.suppress(OSError):  # only root (or the owner, for the group) may
            os.fchown(descriptor, old.st_uid, old.st_gid)


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable (where directories can be opened: not on Windows)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str], *, append: bool = False) -> Iterator[BinaryIO]:
    """A binary file to write the new content of ``path`` to (after a copy of what it holds, with
    ``append=True``), which replaces ``path`` in one step when the block ends; creates missing parent
    directories. When the block raises, ``path`` is left as it was and the temporary file removed;
    an ``OSError`` (a full disk) becomes :class:`OutputError` naming the path, anything else (an
    interrupt) propagates as it is."""
    shown = os.fspath(path)
    try:
        try:
            old: os.stat_result | None = os.stat(path)
        except FileNotFoundError:
            old = None
        if old is not None and stat.S_ISDIR(old.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", shown)
        target = Path(os.path.realpath(path))  # a symbolic link keeps pointing at the new file
        if old is None:
            target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot write {shown}: {_reason(error)}") from None
    if old is not None and not stat.S_ISREG(old.st_mode):
        # A terminal, /dev/stdout, a FIFO: nothing to replace, and nothing that could be cut.
        try:
            with open(path, "ab" if append else "wb") as stream:
                yield stream
        except OSError as error:
            raise OutputError(f"cannot write {shown}: {_reason(error)}") from None
        return
    temporary: Path | None = None
    try:
        descriptor, temporary = _temporary_beside(target)
        with open(descriptor, "wb") as stream:
            if old is not None:
                _keep_attributes(stream.fileno(), old)
                if append:
                    with open(target, "rb") as before:
                        shutil.copyfileobj(before, stream)
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
        temporary = None
    except OSError as error:
        kept = "the file is as it was" if old is not None else "no file was created"
        raise OutputError(f"cannot write {shown}: {_reason(error)} ({kept})") from None
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
    _sync_directory(target.parent)


def write_atomically(path: str | os.PathLike[str], content: str | bytes, *, append: bool = False) -> None:
    """Write ``content`` (text as UTF-8) to ``path`` through :func:`replacing`: the whole file in one
    step, or (``append=True``) what it holds and then ``content``. Raises :class:`OutputError` naming
    the path when it cannot; the old file is then as it was."""
    with replacing(path, append=append) as stream:
        stream.write(content.encode("utf-8") if isinstance(content, str) else content)


def output_problem(path: str | os.PathLike[str]) -> str | None:
    """Why :func:`write_atomically` could not write ``path``, found before a long run, or None:
    a directory, a missing parent under a regular file, or a directory in which no file can be
    created (tried: a temporary file is created there and removed, which is what tells, also for
    root, whom permission bits do not stop, on a read-only file system or in ``/proc``)."""
    text = os.fspath(path)
    if not text:
        return "expected a file path, got an empty string"
    given = Path(text)
    if given.is_dir():
        return f"{text!r} is a directory; name a file in it"
    if given.exists() and not given.is_file():
        # A terminal, /dev/stdout, a FIFO: written to directly, if this process may.
        return None if os.access(given, os.W_OK) else f"{text!r} is not writable"
    target = Path(os.path.realpath(text))
    for parent in target.parents:
        if not parent.exists():
            continue
        if not parent.is_dir():
            return f"{text!r} cannot be created: {str(parent)!r} is not a directory"
        if parent != target.parent:  # created later: only the permissions can tell now
            if not os.access(parent, os.W_OK | os.X_OK):
                return f"{text!r} cannot be created: {str(parent)!r} is not writable"
            return None
        try:
            descriptor, temporary = _temporary_beside(target)
        except OSError as error:
            return f"{text!r} cannot be written: no file can be created in {str(parent)!r} ({_reason(error)})"
        os.close(descriptor)
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        return None
    return None
