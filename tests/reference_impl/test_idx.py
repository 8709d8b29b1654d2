"""read_idx and write_idx: exact round trips, copies and memory maps, gzip, IDXFormatError for bad files."""

from __future__ import annotations

import errno
import gzip
import math
import mmap
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import tracemalloc
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from torchcontract.reference_impl import IDXFormatError, _idx, read_idx, sample_root, write_idx

DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file, built independently of write_idx."""
    code = next(c for c, d in DTYPES.items() if d.newbyteorder("=") == array.dtype.newbyteorder("="))
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, code, array.ndim, *array.shape)
    return header + array.astype(DTYPES[code]).tobytes()


def reference_parse(data: bytes) -> np.ndarray | None:
    """The array a well-formed file holds, or None when it is malformed (a second, naive parser)."""
    if len(data) < 4 or data[0] or data[1] or data[2] not in DTYPES or data[3] == 0:
        return None
    rank, dtype = data[3], DTYPES[data[2]]
    if len(data) < 4 + 4 * rank:
        return None
    dims = struct.unpack(f">{rank}I", data[4 : 4 + 4 * rank])
    if len(data) != 4 + 4 * rank + int(np.prod(dims, dtype=object)) * dtype.itemsize:
        return None
    try:
        return np.frombuffer(data, dtype, offset=4 + 4 * rank).reshape(dims)
    except ValueError:  # a shape NumPy cannot represent, even empty: malformed
        return None


def same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Same shape and bit-identical values (NaNs included), whatever the byte order."""
    native_a, native_b = a.astype(a.dtype.newbyteorder("=")), b.astype(b.dtype.newbyteorder("="))
    return (
        a.shape == b.shape and native_a.dtype == native_b.dtype and native_a.tobytes() == native_b.tobytes()
    )


def find_base(array: np.ndarray) -> object:
    base: object = array
    while isinstance(base, (np.ndarray, memoryview)):
        base = base.base if isinstance(base, np.ndarray) else base.obj
    return base


# -- reading valid files ----------------------------------------------------------------------------


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    array=st.sampled_from(list(DTYPES.values())).flatmap(
        lambda dtype: hnp.arrays(
            dtype.newbyteorder("="), hnp.array_shapes(min_dims=1, max_dims=4, min_side=0)
        )
    ),
    compress=st.booleans(),
)
def test_round_trip_every_dtype_and_rank(tmp_path: Path, array: np.ndarray, compress: bool) -> None:
    path = tmp_path / "file.idx"
    write_idx(path, array, compress=compress)
    result = read_idx(path)
    assert same_values(result, array)
    assert not result.flags.writeable
    written = path.read_bytes()
    assert (gzip.decompress(written) if compress else written) == idx_bytes(array)


@pytest.mark.parametrize("code", list(DTYPES))
def test_reads_files_written_independently(tmp_path: Path, code: int) -> None:
    values = np.arange(-3, 9).reshape(2, 3, 2).astype(DTYPES[code].newbyteorder("="))
    if code == 0x08:
        values = np.arange(12, dtype=np.uint8).reshape(2, 3, 2)
    path = tmp_path / "x"
    path.write_bytes(idx_bytes(values))
    result = read_idx(path)
    assert result.dtype == DTYPES[code]  # the dtype as stored: big-endian for multi-byte types
    np.testing.assert_array_equal(result, values)


def test_raw_files_are_memory_mapped_read_only(tmp_path: Path) -> None:
    values = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    path = tmp_path / "ints-idx3"
    write_idx(path, values)
    result = read_idx(path, mmap_mode="r")
    assert isinstance(find_base(result), mmap.mmap)
    assert not result.flags.writeable
    assert not result.flags.owndata
    with pytest.raises(ValueError, match="read-only"):
        result[0, 0, 0] = 1


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux's shared file mappings")
def test_raw_read_copies_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bytes-idx1"
    write_idx(path, np.zeros(4096, np.uint8))
    result = read_idx(path, mmap_mode="r")
    with open(path, "r+b") as file:  # a change to the file shows through the array: it is the file
        file.seek(4 + 4 + 100)
        file.write(b"\x07")
    assert result[100] == 7


def test_gzip_detected_by_magic_not_suffix(tmp_path: Path) -> None:
    values = np.arange(10, dtype=np.uint8)
    gzipped_without_suffix = tmp_path / "labels-idx1-ubyte"
    gzipped_without_suffix.write_bytes(gzip.compress(idx_bytes(values)))
    raw_with_gz_suffix = tmp_path / "labels-idx1-ubyte.gz"
    raw_with_gz_suffix.write_bytes(idx_bytes(values))
    np.testing.assert_array_equal(read_idx(gzipped_without_suffix), values)
    np.testing.assert_array_equal(read_idx(raw_with_gz_suffix), values)
    assert isinstance(find_base(read_idx(raw_with_gz_suffix, mmap_mode="r")), mmap.mmap)


def test_concatenated_gzip_members_are_one_stream(tmp_path: Path) -> None:
    data = idx_bytes(np.arange(100, dtype=np.int16))
    path = tmp_path / "two-members"
    path.write_bytes(gzip.compress(data[:7]) + gzip.compress(data[7:]))
    np.testing.assert_array_equal(read_idx(path), np.arange(100))


def test_zero_size_arrays(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    write_idx(path, np.zeros((0, 28, 28), np.uint8))
    assert read_idx(path).shape == (0, 28, 28)
    path.write_bytes(idx_bytes(np.zeros((3, 0), np.float64)))
    assert read_idx(path).shape == (3, 0)


def test_accepts_str_paths_and_reports_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "a"
    write_idx(path, np.ones(2, np.uint8))
    np.testing.assert_array_equal(read_idx(str(path)), [1, 1])
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing")


def test_write_idx_rejects_what_idx_cannot_store(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="uint16"):
        write_idx(tmp_path / "x", np.zeros(2, np.uint16))
    with pytest.raises(TypeError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="rank"):
        write_idx(tmp_path / "x", np.zeros((), np.uint8))


def test_write_idx_stores_big_endian_whatever_the_input_order(tmp_path: Path) -> None:
    values = np.array([1, 256], dtype="<i4")
    write_idx(tmp_path / "a", values)
    write_idx(tmp_path / "b", values.astype(">i4"))
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes() == idx_bytes(values)


# -- malformed files --------------------------------------------------------------------------------

VALID = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))
MALFORMED = {
    "empty": (b"", "header cut short"),
    "short header": (b"\x00\x00\x08", "header cut short"),
    "first bytes not zero": (b"\x01\x00" + VALID[2:], "first two bytes are 01 00"),
    "second byte not zero": (b"\x00\x07" + VALID[2:], "first two bytes are 00 07"),
    "unknown type code": (b"\x00\x00\x0a" + VALID[3:], "unknown type code 0x0a"),
    "type code 0xff": (b"\x00\x00\xff" + VALID[3:], "unknown type code 0xff"),
    "rank 0": (b"\x00\x00\x08\x00", "rank 0"),
    "dims cut short": (b"\x00\x00\x08\x03" + struct.pack(">2I", 3, 4), "dimensions cut short"),
    "data shorter": (VALID[:-1], "data cut short"),
    "no data": (VALID[:12], "data cut short"),
    "data longer": (VALID + b"\x00", "data continues after the 12 bytes"),
    "absurd dims": (b"\x00\x00\x0e\x04" + struct.pack(">4I", *[2**32 - 1] * 4), "data cut short"),
    # Rank 32: within NumPy's limit in NumPy 1 (32) and 2 (64).
    "huge dims": (b"\x00\x00\x08\x20" + b"\xff" * 128, "data cut short"),
    # Ranks above NumPy's limit (64; 32 in NumPy 1) leaked NumPy's ValueError before.
    "huge rank": (b"\x00\x00\x08\xff" + b"\xff" * 1020, "rank 255 exceeds NumPy's limit of (64|32) dim"),
    "rank 65": (b"\x00\x00\x08\x41" + b"\x00\x00\x00\x01" * 65 + b"\x07", "rank 65 exceeds NumPy's limit"),
    "rank 70, empty": (b"\x00\x00\x0d\x46" + b"\x00" * 280, "rank 70 exceeds NumPy's limit"),
}


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_files_raise_idx_format_error_naming_the_file(
    tmp_path: Path, kind: str, compress: bool
) -> None:
    content, problem = MALFORMED[kind]
    if compress and kind in ("absurd dims", "huge dims"):
        problem = "absurd dims"
    path = tmp_path / f"malformed-{kind.replace(' ', '-')}"
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(IDXFormatError, match=problem) as error:
        read_idx(path)
    assert str(path) in str(error.value)
    assert isinstance(error.value, ValueError)


def gzip_file(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "data.gz"
    path.write_bytes(content)
    return path


def test_corrupt_gzip(tmp_path: Path) -> None:
    compressed = bytearray(gzip.compress(VALID, mtime=0))
    compressed[12] ^= 0xFF  # inside the deflate stream
    path = gzip_file(tmp_path, bytes(compressed))
    with pytest.raises(IDXFormatError, match=f"{path}: corrupt gzip"):
        read_idx(path)


def test_gzip_checksum_mismatch(tmp_path: Path) -> None:
    compressed = bytearray(gzip.compress(VALID, mtime=0))
    compressed[-6] ^= 0x01  # CRC-32 in the trailer
    with pytest.raises(IDXFormatError, match="corrupt gzip"):
        read_idx(gzip_file(tmp_path, bytes(compressed)))


@pytest.mark.parametrize("cut", [2, 5, 10, 20, -8, -1])
def test_truncated_gzip(tmp_path: Path, cut: int) -> None:
    compressed = gzip.compress(VALID, mtime=0)
    path = gzip_file(tmp_path, compressed[:cut])
    with pytest.raises(IDXFormatError, match=str(path)):
        read_idx(path)


def test_gzip_holding_garbage(tmp_path: Path) -> None:
    garbage = np.random.default_rng(0).integers(1, 256, 1000, dtype=np.uint8).tobytes()
    with pytest.raises(IDXFormatError, match="first two bytes"):
        read_idx(gzip_file(tmp_path, gzip.compress(garbage)))


def test_gzip_magic_followed_by_garbage(tmp_path: Path) -> None:
    with pytest.raises(IDXFormatError, match="corrupt gzip"):
        read_idx(gzip_file(tmp_path, b"\x1f\x8b" + b"\x00" * 50))
    with pytest.raises(IDXFormatError, match="truncated gzip"):
        read_idx(gzip_file(tmp_path, b"\x1f\x8b"))


def test_gzip_with_trailing_garbage(tmp_path: Path) -> None:
    with pytest.raises(IDXFormatError, match="corrupt gzip"):
        read_idx(gzip_file(tmp_path, gzip.compress(VALID) + b"garbage after the member"))


def test_gzip_bomb_is_not_decompressed_beyond_what_the_header_says(tmp_path: Path) -> None:
    # A 12-byte IDX header followed by 200 MB of zeros compresses to about 200 kB.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [compressor.compress(VALID)]
    zeros = bytes(1 << 20)
    parts += [compressor.compress(zeros) for _ in range(200)]
    path = gzip_file(tmp_path, b"".join([*parts, compressor.flush()]))
    tracemalloc.start()
    try:
        with pytest.raises(IDXFormatError, match="data continues after the 12 bytes"):
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak} bytes"


def test_gzip_absurd_dims_rejected_before_decompressing(tmp_path: Path) -> None:
    header = b"\x00\x00\x08\x01" + struct.pack(">I", 2**32 - 1)  # 4 GiB of data in a tiny file
    path = gzip_file(tmp_path, gzip.compress(header + b"\x00" * 1000))
    with pytest.raises(IDXFormatError, match="absurd dims"):
        read_idx(path)


# -- fuzzing ----------------------------------------------------------------------------------------

small_arrays = st.sampled_from(list(DTYPES.values())).flatmap(
    lambda dtype: hnp.arrays(dtype.newbyteorder("="), hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))
)


@FUZZ
@given(array=small_arrays, data=st.data())
def test_raw_truncations_and_bit_flips(tmp_path: Path, array: np.ndarray, data: st.DataObject) -> None:
    content = bytearray(idx_bytes(array))
    if data.draw(st.booleans(), "truncate"):
        content = content[: data.draw(st.integers(0, len(content) - 1), "length")]
    else:
        for position in data.draw(
            st.lists(st.integers(0, len(content) - 1), min_size=1, max_size=3), "flips"
        ):
            content[position] ^= 1 << data.draw(st.integers(0, 7), "bit")
    path = tmp_path / "fuzz"
    path.write_bytes(bytes(content))
    expected = reference_parse(bytes(content))
    if expected is None:
        with pytest.raises(IDXFormatError, match=str(path)):
            read_idx(path)
    else:
        assert same_values(read_idx(path), expected)


@FUZZ
@given(array=small_arrays, data=st.data())
def test_gzip_truncations_and_bit_flips(tmp_path: Path, array: np.ndarray, data: st.DataObject) -> None:
    content = bytearray(gzip.compress(idx_bytes(array), mtime=0))
    if data.draw(st.booleans(), "truncate"):
        content = content[: data.draw(st.integers(0, len(content) - 1), "length")]
    else:
        for position in data.draw(
            st.lists(st.integers(0, len(content) - 1), min_size=1, max_size=3), "flips"
        ):
            content[position] ^= 1 << data.draw(st.integers(0, 7), "bit")
    path = tmp_path / "fuzz.gz"
    path.write_bytes(bytes(content))
    message = None
    try:
        result = read_idx(path)
    except IDXFormatError as error:
        message = str(error)
    if message is not None:
        assert str(path) in message
    else:  # a flip in a field gzip does not check (timestamp, OS) changes nothing
        assert same_values(result, array)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_an_empty_shape_with_absurd_dimensions_is_a_format_error(tmp_path: Path, compress: bool) -> None:
    # A zero dimension makes the data empty, but NumPy still refuses the shape: found by hypothesis
    # (a bit flip that turns rank 1 into rank 9 reads float bytes as dimensions).
    data = struct.pack(">BBBB3I", 0, 0, 0x0E, 3, 0x3FF00000, 0x7FFFFFFF, 0)
    path = tmp_path / "absurd.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(IDXFormatError, match="absurd dimensions"):
        read_idx(path)


# -- the promise, fuzzed over real files and random bytes -----------------------------------------
# Every input: read_idx returns exactly the array a naive parser finds (so its shape is the header's
# dims), or raises IDXFormatError naming the file; never another exception. Both mmap modes agree.

SAMPLE_RAW = sample_root() / "MNIST" / "raw"
_T10K_IMAGES = gzip.decompress((SAMPLE_RAW / "t10k-images-idx3-ubyte.gz").read_bytes())
# Three real digits: the bundled file's header with its count patched to 3, and the first 3 images.
REAL_IMAGES = _T10K_IMAGES[:4] + struct.pack(">I", 3) + _T10K_IMAGES[8 : 16 + 3 * 28 * 28]
REAL_LABELS_GZ = (SAMPLE_RAW / "t10k-labels-idx1-ubyte.gz").read_bytes()  # 553 bytes
REAL_LABELS = gzip.decompress(REAL_LABELS_GZ)  # 1,008 bytes
INTERESTING_DIMS = [0, 1, 2, 3, 28, 784, 2**16, 2**31 - 1, 2**31, 2**32 - 1]
# A fuzz test of 300 examples takes about a second; the profile in tests/conftest.py derandomizes.
PROMISE = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def outcome(path: Path, mmap_mode: Literal["r"] | None) -> np.ndarray | str:
    """The array read, or the message of the IDXFormatError; any other exception fails the test."""
    try:
        return read_idx(path, mmap_mode=mmap_mode)
    except IDXFormatError as error:
        message = str(error)
    assert message.startswith(f"{path}: ")
    return message


def assert_promise(path: Path, content: bytes) -> None:
    """``path`` holds ``content``, or a gzip stream of it: read_idx keeps its promise on it."""
    copied, mapped = outcome(path, None), outcome(path, "r")
    expected = reference_parse(content)
    if expected is None:
        assert isinstance(copied, str), f"read a malformed file as {copied!r}"
        assert copied == mapped
    else:
        assert isinstance(copied, np.ndarray), copied
        assert isinstance(mapped, np.ndarray), mapped
        assert same_values(copied, expected)
        assert same_values(mapped, expected)
        rank = content[3]
        assert copied.shape == struct.unpack(f">{rank}I", content[4 : 4 + 4 * rank])


def mutate(data: st.DataObject, content: bytes) -> bytes:
    """``content`` with up to four mutations: header fields set, bits flipped, bytes cut or added."""
    mutated = bytearray(content)
    for _ in range(data.draw(st.integers(0, 4), "mutations")):
        kind = data.draw(
            st.sampled_from(["rank", "dim", "type", "flip", "set", "cut", "insert", "append"]), "kind"
        )
        end = max(len(mutated) - 1, 0)
        if kind == "rank" and len(mutated) >= 4:
            mutated[3] = data.draw(st.sampled_from([0, 1, 3, 32, 33, 64, 65, 70, 255]) | st.integers(0, 255))
        elif kind == "dim" and len(mutated) >= 8:
            which = data.draw(st.integers(0, max(min(mutated[3], (len(mutated) - 4) // 4) - 1, 0)))
            value = data.draw(st.sampled_from(INTERESTING_DIMS) | st.integers(0, 2**32 - 1))
            mutated[4 + 4 * which : 8 + 4 * which] = struct.pack(">I", value)
        elif kind == "type" and len(mutated) >= 3:
            mutated[2] = data.draw(st.sampled_from([*DTYPES, 0x00, 0x0A, 0x0F, 0xFF]))
        elif kind == "flip" and mutated:
            mutated[data.draw(st.integers(0, end))] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set" and mutated:
            mutated[data.draw(st.integers(0, end))] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del mutated[data.draw(st.integers(0, len(mutated))) :]
        elif kind == "insert":
            at = data.draw(st.integers(0, len(mutated)))
            mutated[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif kind == "append":
            mutated += data.draw(st.binary(min_size=1, max_size=8))
    return bytes(mutated)


@st.composite
def well_formed(draw: st.DrawFn) -> bytes:
    """A well-formed file of any rank the format allows (1 to 255), mostly with small dims."""
    code = draw(st.sampled_from(list(DTYPES)))
    rank = draw(st.sampled_from([1, 2, 3, 32, 33, 64, 65, 70, 255]) | st.integers(1, 255))
    dims = draw(st.lists(st.sampled_from([0, 1, 1, 1, 1, 2, 3]), min_size=rank, max_size=rank))
    nbytes = math.prod(dims) * DTYPES[code].itemsize
    data = draw(st.binary(min_size=nbytes, max_size=nbytes)) if nbytes <= 256 else b""
    return struct.pack(f">BBBB{len(dims)}I", 0, 0, code, len(dims), *dims) + data


sources = st.one_of(
    st.sampled_from([REAL_IMAGES, REAL_LABELS, VALID]),
    well_formed(),
    st.binary(max_size=64),
    st.binary(max_size=64).map(lambda tail: b"\x00\x00" + tail),  # past the first check
)


@PROMISE
@given(source=sources, data=st.data(), wrap=st.sampled_from(["raw", "gzip", "two gzip members"]))
def test_promise_on_mutated_real_files_and_random_bytes(
    tmp_path: Path, source: bytes, data: st.DataObject, wrap: str
) -> None:
    content = mutate(data, source)
    if wrap == "gzip":
        stored = gzip.compress(content, mtime=0)
    elif wrap == "two gzip members":
        cut = data.draw(st.integers(0, len(content)), "member boundary")
        stored = gzip.compress(content[:cut], mtime=0) + gzip.compress(content[cut:], mtime=0)
    else:
        stored = content
        if stored[:2] == b"\x1f\x8b":  # random bytes that look like gzip: judged below
            return
    path = tmp_path / "fuzz-idx"
    path.write_bytes(stored)
    assert_promise(path, content)


@PROMISE
@given(data=st.data())
def test_promise_on_the_real_gzip_file_mutated(tmp_path: Path, data: st.DataObject) -> None:
    stored = mutate(data, REAL_LABELS_GZ)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(stored)
    copied, mapped = outcome(path, None), outcome(path, "r")
    if isinstance(copied, str):
        assert mapped == copied
    else:  # then the stream is valid gzip: compare with what gzip reads from it
        assert_promise(path, gzip.decompress(stored))


# -- paths that are not regular files ---------------------------------------------------------------

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")


def read_in_thread(path: Path) -> BaseException | np.ndarray:
    """read_idx(path) in a thread; a hang guard (not a timing check) unblocks a reader stuck on a FIFO."""
    result: list[BaseException | np.ndarray] = []

    def target() -> None:
        try:
            result.append(read_idx(path))
        except BaseException as error:  # handed to the test
            result.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(60)
    if thread.is_alive():  # blocked opening the FIFO: a writer's open and close release it
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(60)
        pytest.fail(f"read_idx blocked on the FIFO {path}")
    return result[0]


@needs_fifo
def test_fifo_without_writer_is_refused_not_opened(tmp_path: Path) -> None:
    path = tmp_path / "pipe-idx1-ubyte"
    os.mkfifo(path)
    error = read_in_thread(path)
    assert isinstance(error, IDXFormatError), error
    assert (
        str(error)
        == f"{path}: not a regular file: it is a FIFO (named pipe) (read_idx reads regular files only)"
    )


@needs_fifo
@pytest.mark.skipif(sys.platform != "linux", reason="opening a FIFO read-write without blocking is Linux's")
def test_fifo_with_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pipe-idx1-ubyte"
    os.mkfifo(path)
    writer = os.open(path, os.O_RDWR)  # a writer (and reader) that never blocks on Linux
    try:
        os.write(writer, VALID)
        error = read_in_thread(path)  # io.UnsupportedOperation (seek) before
        assert isinstance(error, IDXFormatError), error
        assert "not a regular file: it is a FIFO" in str(error)
        assert os.read(writer, len(VALID)) == VALID  # nothing was consumed
    finally:
        os.close(writer)


@needs_fifo
def test_symlink_to_fifo_is_refused_and_to_a_file_followed(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "to-pipe").symlink_to(tmp_path / "pipe")
    error = read_in_thread(tmp_path / "to-pipe")
    assert isinstance(error, IDXFormatError), error
    assert "FIFO" in str(error)
    (tmp_path / "file").write_bytes(VALID)
    (tmp_path / "to-file").symlink_to(tmp_path / "file")
    for mmap_mode in (None, "r"):
        np.testing.assert_array_equal(
            read_idx(tmp_path / "to-file", mmap_mode=mmap_mode), np.arange(12).reshape(3, 4)
        )
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "dangling")


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets on this platform")
def test_socket_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a short relative name: socket paths are limited to about 100 bytes
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("sock")
        with pytest.raises(IDXFormatError, match=r"^sock: not a regular file: it is a socket"):
            read_idx("sock")  # OSError (ENXIO) from open before


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null")
def test_device_is_refused() -> None:
    # Before: "header cut short", as if /dev/null were an empty IDX file.
    with pytest.raises(IDXFormatError, match=r"^/dev/null: not a regular file: it is a character device"):
        read_idx("/dev/null")


def test_directory_is_is_a_directory_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError) as error:
        read_idx(tmp_path)
    assert error.value.filename == str(tmp_path)
    assert error.value.errno == errno.EISDIR


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_permission_error(tmp_path: Path) -> None:
    path = tmp_path / "locked"
    path.write_bytes(VALID)
    path.chmod(0)
    with pytest.raises(PermissionError):
        read_idx(path)


# -- copies and memory maps -------------------------------------------------------------------------


@pytest.mark.parametrize("mmap_mode", ["default", None])
def test_a_copying_read_is_unaffected_by_later_changes_to_the_file(
    tmp_path: Path, mmap_mode: str | None
) -> None:
    path = tmp_path / "bytes-idx1"
    write_idx(path, (np.arange(4096) % 251).astype(np.uint8))
    result = read_idx(path) if mmap_mode == "default" else read_idx(path, mmap_mode=None)
    assert not isinstance(find_base(result), mmap.mmap)
    assert not result.flags.writeable
    with open(path, "r+b") as file:  # rewritten in place: a memory map would show the change
        file.seek(8 + 100)
        file.write(b"\xff")
    assert result[100] == 100
    with open(path, "r+b") as file:  # truncated: reading a memory map now would be SIGBUS
        file.truncate(0)
    assert int(result.sum(dtype=np.int64)) == int((np.arange(4096) % 251).sum())


@pytest.mark.skipif(sys.platform != "linux", reason="SIGBUS on a truncated shared mapping is Linux's")
def test_memory_map_of_a_truncated_file_is_sigbus_as_documented(tmp_path: Path) -> None:
    path = tmp_path / "bytes-idx1"
    write_idx(path, np.ones(1 << 16, np.uint8))
    script = (
        "import os, sys; from torchcontract.reference_impl import read_idx; "
        f"a = read_idx({str(path)!r}, mmap_mode='r'); os.truncate({str(path)!r}, 0); print(int(a.sum()))"
    )
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, check=False)
    assert process.returncode == -signal.SIGBUS, process


@pytest.mark.parametrize("bad", ["r+", "c", "w+", "", True])
def test_mmap_mode_other_than_none_or_r_is_value_error(tmp_path: Path, bad: object) -> None:
    path = tmp_path / "a"
    path.write_bytes(VALID)
    with pytest.raises(ValueError, match="mmap_mode must be None or 'r'"):
        read_idx(path, mmap_mode=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("mmap_mode", [None, "r"])
def test_a_file_that_shrinks_while_being_read_is_a_format_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mmap_mode: Literal["r"] | None
) -> None:
    # The header and the size (fstat) agree, then the data is shorter: as when another process
    # truncates the file between the two. Before: mmap's ValueError ("mmap length is greater").
    path = tmp_path / "shrinking"
    path.write_bytes(VALID[:-5])
    real_fstat = os.fstat

    def fstat(fd: int) -> os.stat_result:
        result = list(real_fstat(fd))
        result[stat.ST_SIZE] += 5
        return os.stat_result(result)

    monkeypatch.setattr(_idx.os, "fstat", fstat)
    with pytest.raises(IDXFormatError, match=f"^{path}: the file (changed size|shrank) while being read"):
        read_idx(path, mmap_mode=mmap_mode)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_messages_about_absurd_dims_stay_short(tmp_path: Path, compress: bool) -> None:
    # 32 dims of 2**32 - 1 (within NumPy 1's limit of 32): before, the message listed all 32 and a byte
    # count of over 300 digits.
    content = b"\x00\x00\x0e\x20" + b"\xff" * 128
    path = tmp_path / "absurd"
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(IDXFormatError, match=r"\.\.\. 32 in all\)\W.*more than 2\*\*1026 bytes") as error:
        read_idx(path)
    assert len(str(error.value)) < 200 + len(str(path))
