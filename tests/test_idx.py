import gzip
import struct

import numpy as np
import pytest
import torch

from robustkit.data.idx import read_idx
from robustkit.errors import DataError


def idx_bytes(type_code: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return bytes([0, 0, type_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


def test_reads_uint8_images_raw_and_gzipped(tmp_path):
    pixels = bytes(range(24))
    raw = idx_bytes(0x08, (2, 3, 4), pixels)
    (tmp_path / "a-idx3-ubyte").write_bytes(raw)
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(raw))
    expected = torch.arange(24, dtype=torch.uint8).reshape(2, 3, 4)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        got = read_idx(tmp_path / name)
        assert got.dtype == torch.uint8 and torch.equal(got, expected)


def test_reads_big_endian_int32(tmp_path):
    values = [1, -2, 70000]
    (tmp_path / "b").write_bytes(idx_bytes(0x0C, (3,), struct.pack(">3i", *values)))
    assert read_idx(tmp_path / "b").tolist() == values


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x01\x00\x08\x01", "bad magic"),
        (bytes([0, 0, 0x08, 2, 0, 0]), "header cut short"),
        (idx_bytes(0x08, (4,), b"\x00\x01\x02"), "header says 4"),
    ],
)
def test_malformed_files_get_one_line_errors(tmp_path, content, message):
    (tmp_path / "bad").write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_idx(tmp_path / "bad")


def test_truncated_gzip_is_a_data_error(tmp_path):
    data = gzip.compress(idx_bytes(0x08, (100,), np.arange(100, dtype=np.uint8).tobytes()))
    (tmp_path / "c.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "c.gz")
