"""read_idx and write_idx: exact round trips, memory maps, gzip, and IDXFormatError for every bad file."""

from __future__ import annotations

import gzip
import mmap
import struct
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from torchcontract.reference_impl import IDXFormatError, read_idx, write_idx

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
    result = read_idx(path)
    assert isinstance(find_base(result), mmap.mmap)
    assert not result.flags.writeable
    assert not result.flags.owndata
    with pytest.raises(ValueError, match="read-only"):
        result[0, 0, 0] = 1


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux's shared file mappings")
def test_raw_read_copies_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bytes-idx1"
    write_idx(path, np.zeros(4096, np.uint8))
    result = read_idx(path)
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
    assert isinstance(find_base(read_idx(raw_with_gz_suffix)), mmap.mmap)


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
    "huge rank": (b"\x00\x00\x08\xff" + b"\xff" * 1020, "data cut short"),
}


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_files_raise_idx_format_error_naming_the_file(
    tmp_path: Path, kind: str, compress: bool
) -> None:
    content, problem = MALFORMED[kind]
    if compress and kind in ("absurd dims", "huge rank"):
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
