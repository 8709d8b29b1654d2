"""``read_idx`` never allocates much more than the array it returns: a gzip file is decompressed
straight into the array, in bounded steps (it joined the decompressed chunks, so the peak was twice
the array, and a small crafted file could make it allocate gigabytes)."""

from __future__ import annotations

import gzip
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

from torchcontract.reference_impl import IDXFormatError, read_idx

PAYLOAD = 24 << 20  # 24 MiB of values
# What reading may cost beyond the array: a decompression step, an input chunk, the header's reads.
SLACK = 4 << 20


def _idx_header(dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, 0x08, len(dims)]) + np.asarray(dims, dtype=">u4").tobytes()


def _peak_while(read: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        read()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_gzip_file_is_read_into_the_array_without_a_second_copy(tmp_path: Path) -> None:
    values = np.random.default_rng(0).integers(0, 256, PAYLOAD, dtype=np.uint8)
    path = tmp_path / "images-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_header((PAYLOAD,)) + values.tobytes(), compresslevel=1))
    read: list[np.ndarray] = []
    peak = _peak_while(lambda: read.append(read_idx(path)))
    np.testing.assert_array_equal(read[0], values)
    assert not read[0].flags.writeable
    assert peak <= PAYLOAD + SLACK, f"peak {peak / 2**20:.1f} MiB for {PAYLOAD / 2**20:.0f} MiB of values"


def test_a_crafted_gzip_file_costs_at_most_its_declared_size(tmp_path: Path) -> None:
    # A small file whose stream holds far more than its header declares: never read beyond it.
    declared = 8 << 20
    path = tmp_path / "crafted.gz"
    path.write_bytes(gzip.compress(_idx_header((declared,)) + bytes(64 << 20), compresslevel=9))
    raised: list[str] = []

    def read() -> None:
        try:
            read_idx(path)
        except IDXFormatError as error:
            raised.append(str(error))

    peak = _peak_while(read)
    assert len(raised) == 1
    assert "data continues after" in raised[0], raised
    assert peak <= declared + SLACK, f"peak {peak / 2**20:.1f} MiB for {declared / 2**20:.0f} MiB declared"
