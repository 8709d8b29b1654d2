"""The IDX file format of MNIST: a strict reader that memory-maps, and a writer for tests and benchmarks.

Layout: two zero bytes, a type code, the rank ``n``; ``n`` big-endian uint32 dimensions; then the
values, big-endian, row-major. Files may be gzip-compressed (recognised by their first two bytes,
``1f 8b``, whatever the file is called).
"""

from __future__ import annotations

import gzip
import math
import mmap
import os
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

__all__ = ["IDXFormatError", "read_idx", "write_idx"]

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
_CHUNK = 1 << 20


class IDXFormatError(ValueError):
    """A file is not a well-formed IDX file (or MNIST file); the message names the file and the problem."""


def read_idx(path: StrPath) -> NDArray[Any]:
    """Read an IDX file, raw or gzip-compressed, into a read-only array with exactly its values.

    The array has the dtype as stored: ``uint8``/``int8``, or big-endian ``>i2``, ``>i4``, ``>f4``,
    ``>f8`` for the multi-byte types (NumPy computes with these transparently; use
    ``.astype(native_dtype)`` before handing one to a library that needs native byte order, such as
    ``torch.from_numpy``). A raw file is memory-mapped, so reading copies nothing; a gzip file is
    decompressed once, in bounded steps, and the array is a view of the result.

    Raises :class:`IDXFormatError` naming the file for every malformed file (bad header, unknown type
    code, rank 0, dimensions cut short, data shorter or longer than the dimensions say, absurd
    dimensions, corrupt or truncated gzip), and ``OSError`` (e.g. ``FileNotFoundError``) when the file
    cannot be read.
    """
    with open(path, "rb") as file:
        if file.read(2) == _GZIP_MAGIC:
            file.seek(0)
            return _read_gzip(path, file)
        file.seek(0)
        return _read_raw(path, file)


def _fail(path: StrPath, problem: str) -> IDXFormatError:
    return IDXFormatError(f"{os.fspath(path)}: {problem}")


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
    raw_dims = read(4 * rank)
    if len(raw_dims) < 4 * rank:
        raise _fail(path, f"dimensions cut short: the header declares {rank} but has {len(raw_dims) // 4}")
    dims = tuple(int(d) for d in np.frombuffer(raw_dims, dtype=">u4"))
    return dtype, dims


def _read_raw(path: StrPath, file: BinaryIO) -> NDArray[Any]:
    dtype, dims = _parse_header(path, file.read)
    offset = 4 + 4 * len(dims)
    size = os.fstat(file.fileno()).st_size
    _check_data_size(path, dtype, dims, size - offset)
    nbytes = math.prod(dims) * dtype.itemsize
    if nbytes == 0:
        return _empty(path, dtype, dims)
    # The array keeps the map alive (it is the array's base); the file descriptor can be closed.
    mapped = mmap.mmap(file.fileno(), offset + nbytes, access=mmap.ACCESS_READ)
    return np.frombuffer(mapped, dtype, count=math.prod(dims), offset=offset).reshape(dims)


def _empty(path: StrPath, dtype: np.dtype[Any], dims: tuple[int, ...]) -> NDArray[Any]:
    """The read-only empty array of a file whose dims include a zero."""
    # NumPy refuses a shape whose non-zero dimensions multiply beyond its index type, even an empty
    # one: such dims come from a corrupt header.
    if math.prod(d for d in dims if d) * dtype.itemsize > np.iinfo(np.intp).max:
        shown = dims if len(dims) <= 8 else (*dims[:8], "...")
        raise _fail(path, f"absurd dimensions {shown}: no array of {dtype} can have that shape")
    empty = np.empty(dims, dtype)
    empty.flags.writeable = False
    return empty


def _check_data_size(path: StrPath, dtype: np.dtype[Any], dims: tuple[int, ...], available: int) -> None:
    # Python integers cannot overflow, so absurd dimensions just fail the comparison.
    needed = math.prod(dims) * dtype.itemsize
    if needed > available:
        raise _fail(
            path, f"data cut short: dims {dims} of {dtype} need {needed} bytes, the file has {available}"
        )
    if needed < available:
        raise _fail(
            path, f"data continues after the {needed} bytes that dims {dims} describe ({available} bytes)"
        )


class _BoundedGunzip:
    """Decompresses a gzip file on demand, never producing more than asked for."""

    def __init__(self, path: StrPath, file: BinaryIO) -> None:
        self.path = path
        self.file = file
        self.stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes of decompressed data; fewer only where the data ends."""
        chunks: list[bytes] = []
        wanted = n
        try:
            while wanted > 0:
                stream = self.stream
                # eof first: at the end of a member, zlib may leave the rest of the input in both
                # unused_data and unconsumed_tail.
                if stream.eof:
                    # Whatever follows a complete member must be another member (concatenated
                    # gzip files are valid gzip).
                    pending = stream.unused_data or self.file.read(_CHUNK)
                    if not pending:
                        break
                    self.stream = stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                elif stream.unconsumed_tail:
                    pending = stream.unconsumed_tail
                else:
                    pending = self.file.read(_CHUNK)
                    if not pending:
                        raise _fail(self.path, "truncated gzip: the compressed stream ends early")
                # max_length bounds the output: a gzip bomb cannot make us allocate more than n.
                chunk = stream.decompress(pending, wanted)
                chunks.append(chunk)
                wanted -= len(chunk)
        except zlib.error as error:
            raise _fail(self.path, f"corrupt gzip data ({error})") from None
        return b"".join(chunks)


def _read_gzip(path: StrPath, file: BinaryIO) -> NDArray[Any]:
    gunzip = _BoundedGunzip(path, file)
    dtype, dims = _parse_header(path, gunzip.read)
    needed = math.prod(dims) * dtype.itemsize
    limit = _MAX_DEFLATE_RATIO * os.fstat(file.fileno()).st_size
    if needed > limit:
        raise _fail(path, f"absurd dims {dims}: {needed} bytes of data cannot come out of this gzip file")
    data = gunzip.read(needed)
    if len(data) < needed:
        raise _fail(
            path, f"data cut short: dims {dims} of {dtype} need {needed} bytes, the file has {len(data)}"
        )
    # Reading on to the end of the stream also verifies gzip's checksum and length fields.
    if gunzip.read(1):
        raise _fail(path, f"data continues after the {needed} bytes that dims {dims} describe")
    if needed == 0:
        return _empty(path, dtype, dims)
    return np.frombuffer(data, dtype).reshape(dims)


def write_idx(path: StrPath, array: NDArray[Any], *, compress: bool = False) -> None:
    """Write ``array`` (dtype uint8, int8, int16, int32, float32 or float64; rank 1 to 255) as IDX.

    Values are stored big-endian whatever the array's byte order; ``compress=True`` writes gzip
    (with a zero timestamp, so equal arrays give equal files).
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
    if compress:
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
            out.write(header)
            out.write(data)
    else:
        with open(path, "wb") as out:
            out.write(header)
            out.write(data)
