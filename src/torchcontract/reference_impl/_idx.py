"""The IDX file format of MNIST: a strict reader (copying, or memory-mapping), and a writer for tests.

Layout: two zero bytes, a type code, the rank ``n``; ``n`` big-endian uint32 dimensions; then the
values, big-endian, row-major. Files may be gzip-compressed (recognised by their first two bytes,
``1f 8b``, whatever the file is called).
"""

from __future__ import annotations

import errno
import gzip
import io
import math
import mmap
import os
import stat
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO, Literal

import numpy as np
from numpy.typing import NDArray

from torchcontract._files import replacing

__all__ = ["IDXFormatError", "StrPath", "read_idx", "write_idx"]

StrPath = str | os.PathLike[str]

# Type code -> dtype as stored (big-endian); code 0x0A is unassigned in the format.
_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
# Deflate cannot compress better than about 1032:1, so a gzip file of S bytes holds at most
# 1032 * S bytes: dims that claim more are absurd, and rejected before decompressing anything.
_MAX_DEFLATE_RATIO = 1032
# Compressed bytes read at a time, and decompressed bytes made at a time: each bounds what a gzip
# file costs beyond its array (a step of 64 KiB of input cannot hold more than 66 MB of output).
_CHUNK = 1 << 16
_STEP = 1 << 20


def _numpy_max_dims() -> int:
    """The most dimensions an array may have: 64 in NumPy 2, 32 in NumPy 1."""
    for rank in (64, 32):
        try:
            np.empty((1,) * rank, np.uint8)
        except ValueError:
            continue
        return rank
    return 32  # pragma: no cover - every NumPy since 1.0 allows 32


_MAX_RANK = _numpy_max_dims()
# What each kind of file that is not a regular one is called in messages.
_NOT_REGULAR = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class IDXFormatError(ValueError):
    """A file is not a well-formed IDX file (or MNIST file); the message names the file and the problem."""


def read_idx(path: StrPath, *, mmap_mode: Literal["r"] | None = None) -> NDArray[Any]:
    """Read an IDX file, raw or gzip-compressed, into a read-only array with exactly its values.

    The array has the dtype as stored: ``uint8``/``int8``, or big-endian ``>i2``, ``>i4``, ``>f4``,
    ``>f8`` for the multi-byte types (NumPy computes with these transparently; use
    ``.astype(native_dtype)`` before handing one to a library that needs native byte order, such as
    ``torch.from_numpy``).

    ``mmap_mode`` is named after :func:`numpy.load`'s and defaults, like it, to ``None``: the values
    are copied into memory, so the array never changes and stays valid whatever later happens to the
    file. ``mmap_mode="r"`` memory-maps a raw file read-only instead: opening costs nothing and
    processes reading the same file share the page cache (what :class:`MNIST` does), but the array
    *is* the file: a change to the file shows through the array, and reading the array after the file
    was truncated kills the process with ``SIGBUS`` (no exception can be raised). The default is
    the copy because that is what a reader that does not know this expects, and it costs little (one
    read of the file: tens of milliseconds for MNIST's 47 MB of training images); ``MNIST`` keeps
    mapping, where sharing across DataLoader workers pays. A gzip file is always decompressed into
    memory, once, in bounded steps (``mmap_mode`` changes nothing there).

    Raises :class:`IDXFormatError` naming the file for every malformed file (bad header, unknown type
    code, rank 0, a rank above NumPy's limit of dimensions (64; 32 in NumPy 1), dimensions cut short,
    data shorter or longer than the dimensions say, absurd dimensions, corrupt or truncated gzip, a
    raw file that changed size while being read), and for a path that is not a regular file: a FIFO
    (never opened, so it cannot block), a socket or a device. A symbolic link is followed. A
    directory raises ``IsADirectoryError``; other ``OSError`` subclasses say that the file cannot
    be read: ``FileNotFoundError`` for a missing file (or a dangling link), ``PermissionError``.
    ``mmap_mode`` other than ``None`` and ``"r"`` raises ``ValueError``.
    """
    if mmap_mode not in (None, "r"):
        raise ValueError(f"mmap_mode must be None or 'r' (IDX arrays are read-only), got {mmap_mode!r}")
    # Check the kind of file before opening it: opening a FIFO for reading blocks until a writer
    # comes, and a FIFO, socket or device cannot be sought or memory-mapped anyway.
    _check_regular(path, os.stat(path).st_mode)
    # O_NONBLOCK: should the path become a FIFO between the stat and the open, the open returns at
    # once and the fstat below refuses it (on a regular file, O_NONBLOCK changes nothing).
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    descriptor = os.open(path, flags)
    try:
        _check_regular(path, os.fstat(descriptor).st_mode)
    except BaseException:
        os.close(descriptor)
        raise
    with open(descriptor, "rb") as file:
        if file.read(2) == _GZIP_MAGIC:
            file.seek(0)
            return _read_gzip(path, file)
        file.seek(0)
        return _read_raw(path, file, mmap_mode)


def _check_regular(path: StrPath, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "Is a directory, not an IDX file", os.fspath(path))
    kind = next((name for is_kind, name in _NOT_REGULAR if is_kind(mode)), f"of file mode 0o{mode:o}")
    raise _fail(path, f"not a regular file: it is {kind} (read_idx reads regular files only)")


def _fail(path: StrPath, problem: str) -> IDXFormatError:
    return IDXFormatError(f"{os.fspath(path)}: {problem}")


def _shown(dims: tuple[int, ...]) -> str:
    """``dims`` for a message: at most 8 of them (a corrupt header may declare up to 64)."""
    return str(dims) if len(dims) <= 8 else f"({', '.join(map(str, dims[:8]))}, ... {len(dims)} in all)"


def _bytes(count: int) -> str:
    """A byte count for a message; absurd dims make counts of hundreds of digits."""
    return str(count) if count < 1 << 64 else f"more than 2**{count.bit_length() - 1}"


def _parse_header(path: StrPath, read: Callable[[int], bytes]) -> tuple[np.dtype[Any], tuple[int, ...]]:
    """Read and check the header through ``read(n) -> bytes``; return the dtype and dimensions."""
    magic = read(4)
    if len(magic) < 4:
        raise _fail(path, f"header cut short: {len(magic)} of 4 bytes (empty or truncated file)")
    if magic[0] != 0 or magic[1] != 0:
        raise _fail(path, f"not an IDX file: the first two bytes are {magic[:2].hex(' ')}, not 00 00")
    dtype = _DTYPES.get(magic[2])
    if dtype is None:
        raise _fail(path, f"unknown type code 0x{magic[2]:02x} (expected one of 08 09 0b 0c 0d 0e)")
    rank = magic[3]
    if rank == 0:
        raise _fail(path, "rank 0: an IDX file needs at least one dimension")
    if rank > _MAX_RANK:
        raise _fail(path, f"rank {rank} exceeds NumPy's limit of {_MAX_RANK} dimensions")
    raw_dims = read(4 * rank)
    if len(raw_dims) < 4 * rank:
        raise _fail(path, f"dimensions cut short: the header declares {rank} but has {len(raw_dims) // 4}")
    dims = tuple(int(d) for d in np.frombuffer(raw_dims, dtype=">u4"))
    return dtype, dims


def _read_raw(path: StrPath, file: io.BufferedReader, mmap_mode: Literal["r"] | None) -> NDArray[Any]:
    dtype, dims = _parse_header(path, file.read)
    offset = 4 + 4 * len(dims)
    size = os.fstat(file.fileno()).st_size
    _check_data_size(path, dtype, dims, size - offset)
    count = math.prod(dims)
    if count == 0:
        return _empty(path, dtype, dims)
    if mmap_mode is None:
        array = np.empty(count, dtype)
        got = file.readinto(array.data.cast("B"))
        if got != array.nbytes or file.read(1):
            raise _fail(path, "the file changed size while being read")
        array.flags.writeable = False
        return _reshape(path, array, dims)
    try:
        # The array keeps the map alive (it is the array's base); the file descriptor can be closed.
        mapped = mmap.mmap(file.fileno(), offset + count * dtype.itemsize, access=mmap.ACCESS_READ)
    except ValueError:  # "mmap length is greater than file size"
        raise _fail(path, "the file shrank while being read") from None
    return _reshape(path, np.frombuffer(mapped, dtype, count=count, offset=offset), dims)


def _reshape(path: StrPath, flat: NDArray[Any], dims: tuple[int, ...]) -> NDArray[Any]:
    # The header checks leave NumPy nothing to refuse; should a NumPy version refuse a shape
    # nonetheless, the file is still what is wrong.
    try:
        return flat.reshape(dims)
    except ValueError as error:  # pragma: no cover - see above
        raise _fail(path, f"NumPy cannot make an array of shape {_shown(dims)}: {error}") from None


def _empty(path: StrPath, dtype: np.dtype[Any], dims: tuple[int, ...]) -> NDArray[Any]:
    """The read-only empty array of a file whose dims include a zero."""
    # NumPy refuses a shape whose non-zero dimensions multiply beyond its index type, even an empty
    # one: such dims come from a corrupt header.
    if math.prod(d for d in dims if d) * dtype.itemsize > np.iinfo(np.intp).max:
        raise _fail(path, f"absurd dimensions {_shown(dims)}: no array of {dtype} can have that shape")
    try:
        empty = np.empty(dims, dtype)
    except ValueError as error:  # pragma: no cover - a limit of some NumPy version checked nowhere above
        raise _fail(path, f"NumPy cannot make an array of shape {_shown(dims)}: {error}") from None
    empty.flags.writeable = False
    return empty


def _check_data_size(path: StrPath, dtype: np.dtype[Any], dims: tuple[int, ...], available: int) -> None:
    # Python integers cannot overflow, so absurd dimensions just fail the comparison.
    needed = math.prod(dims) * dtype.itemsize
    if needed > available:
        raise _fail(
            path,
            f"data cut short: dims {_shown(dims)} of {dtype} need {_bytes(needed)} bytes, "
            f"the file has {available}",
        )
    if needed < available:
        raise _fail(
            path,
            f"data continues after the {needed} bytes that dims {_shown(dims)} describe ({available} bytes)",
        )


class _BoundedGunzip:
    """Decompresses a gzip file on demand, never producing more than asked for, in steps of at most
    :data:`_STEP` bytes (so that reading into an array costs the array and one step, not twice it)."""

    def __init__(self, path: StrPath, file: BinaryIO) -> None:
        self.path = path
        self.file = file
        self.stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    def _next_step(self, wanted: int) -> bytes | None:
        """Up to ``min(wanted, _STEP)`` more bytes of decompressed data (maybe none, while zlib reads
        a header); None where the data ends."""
        stream = self.stream
        try:
            # eof first: at the end of a member, zlib may leave the rest of the input in both
            # unused_data and unconsumed_tail.
            if stream.eof:
                # Whatever follows a complete member must be another member (concatenated gzip
                # files are valid gzip).
                pending = stream.unused_data or self.file.read(_CHUNK)
                if not pending:
                    return None
                self.stream = stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            elif stream.unconsumed_tail:
                pending = stream.unconsumed_tail
            else:
                pending = self.file.read(_CHUNK)
                if not pending:
                    raise _fail(self.path, "truncated gzip: the compressed stream ends early")
            # max_length bounds the output: a gzip bomb cannot make us allocate more than asked.
            return stream.decompress(pending, min(wanted, _STEP))
        except zlib.error as error:
            raise _fail(self.path, f"corrupt gzip data ({error})") from None

    def readinto(self, buffer: memoryview) -> int:
        """Fill ``buffer`` (bytes) with decompressed data; the count filled, less only where the data
        ends."""
        filled = 0
        while filled < len(buffer):
            step = self._next_step(len(buffer) - filled)
            if step is None:
                break
            buffer[filled : filled + len(step)] = step
            filled += len(step)
        return filled

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes of decompressed data; fewer only where the data ends."""
        buffer = bytearray(n)
        return bytes(buffer[: self.readinto(memoryview(buffer))])


def _read_gzip(path: StrPath, file: BinaryIO) -> NDArray[Any]:
    gunzip = _BoundedGunzip(path, file)
    dtype, dims = _parse_header(path, gunzip.read)
    needed = math.prod(dims) * dtype.itemsize
    limit = _MAX_DEFLATE_RATIO * os.fstat(file.fileno()).st_size
    if needed > limit:
        raise _fail(
            path,
            f"absurd dims {_shown(dims)}: {_bytes(needed)} bytes of data cannot come out of this gzip file",
        )
    if needed == 0:
        got, array = 0, None
    else:
        # Decompressed straight into the array: the memory used is the declared size and one step.
        array = np.empty(math.prod(dims), dtype)
        got = gunzip.readinto(array.data.cast("B"))
    if got < needed:
        raise _fail(
            path,
            f"data cut short: dims {_shown(dims)} of {dtype} need {needed} bytes, the file has {got}",
        )
    # Reading on to the end of the stream also verifies gzip's checksum and length fields.
    if gunzip.read(1):
        raise _fail(path, f"data continues after the {needed} bytes that dims {_shown(dims)} describe")
    if array is None:
        return _empty(path, dtype, dims)
    array.flags.writeable = False
    return _reshape(path, array, dims)


def write_idx(path: StrPath, array: NDArray[Any], *, compress: bool = False) -> None:
    """Write ``array`` (dtype uint8, int8, int16, int32, float32 or float64; rank 1 to 255) as IDX.

    Values are stored big-endian whatever the array's byte order; ``compress=True`` writes gzip
    (with a zero timestamp, so equal arrays give equal files). The file is replaced in one step: a
    failure to write it (a full disk) raises ``OSError`` naming it and leaves the old file as it was.
    """
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in _DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise TypeError(f"IDX cannot store dtype {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX needs a rank from 1 to 255, got {array.ndim}")
    if any(d >= 1 << 32 for d in array.shape):
        raise ValueError(f"IDX dimensions must be < 2**32, got {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = array.astype(_DTYPES[code]).tobytes()
    # Whole or not at all: the file is replaced in one step, and a failure (a full disk) leaves the
    # old one as it was, raising an OSError naming the path.
    with replacing(path) as raw:
        if compress:
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
                out.write(header)
                out.write(data)
        else:
            raw.write(header)
            raw.write(data)
