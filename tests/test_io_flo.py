"""Middlebury .flo reading and writing: exact round trips, the byte layout, bad files."""
import os
import struct

import numpy as np
import pytest

from segnp.io import FLO_MAGIC, read_flo, write_flo


def _write_by_hand(path, flow, magic=FLO_MAGIC, size=None, extra=b""):
    """The format straight from its description: float magic, int W, int H, then rows of
    interleaved (u, v) floats, all little-endian."""
    H, W = flow.shape[:2]
    W, H = size or (W, H)
    with open(path, "wb") as f:
        f.write(struct.pack("<f", magic))
        f.write(struct.pack("<ii", W, H))
        for y in range(flow.shape[0]):
            for x in range(flow.shape[1]):
                f.write(struct.pack("<ff", *flow[y, x]))
        f.write(extra)


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (13, 4)])
def test_round_trip_is_exact(tmp_path, shape):
    rng = np.random.default_rng(0)
    flow = (rng.standard_normal(shape + (2,)) * 20).astype(np.float32)
    path = tmp_path / "a.flo"
    write_flo(path, flow)
    got = read_flo(path)
    assert got.dtype == np.float32 and got.shape == shape + (2,)
    np.testing.assert_array_equal(got, flow)


def test_layout_matches_the_format(tmp_path):
    rng = np.random.default_rng(1)
    flow = rng.uniform(-9, 9, (3, 5, 2)).astype(np.float32)
    ours, ref = tmp_path / "ours.flo", tmp_path / "ref.flo"
    write_flo(ours, flow)
    _write_by_hand(ref, flow)
    assert ours.read_bytes() == ref.read_bytes()
    assert ours.read_bytes()[:4] == b"PIEH"
    np.testing.assert_array_equal(read_flo(ref), flow)


def test_float64_input_is_stored_as_float32(tmp_path):
    flow = np.full((2, 3, 2), 0.1, np.float64)
    write_flo(tmp_path / "a.flo", flow)
    np.testing.assert_array_equal(read_flo(tmp_path / "a.flo"), flow.astype(np.float32))


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nothere.flo"
    with pytest.raises(FileNotFoundError, match="nothere.flo"):
        read_flo(path)


def test_wrong_magic_is_named(tmp_path):
    path = tmp_path / "bad_magic.flo"
    _write_by_hand(path, np.zeros((2, 2, 2), np.float32), magic=123.0)
    with pytest.raises(ValueError, match=r"bad_magic\.flo.*magic number.*202021\.25.*123"):
        read_flo(path)


@pytest.mark.parametrize("cut", [3, 12, 20, 43])
def test_truncated_file_is_named(tmp_path, cut):
    path = tmp_path / "short.flo"
    _write_by_hand(path, np.ones((2, 3, 2), np.float32))
    data = path.read_bytes()
    assert len(data) == 12 + 2 * 3 * 8
    path.write_bytes(data[:cut])
    with pytest.raises(ValueError, match=r"short\.flo.*truncated"):
        read_flo(path)


def test_trailing_bytes_are_an_error(tmp_path):
    path = tmp_path / "long.flo"
    _write_by_hand(path, np.ones((2, 3, 2), np.float32), extra=b"\0" * 8)
    with pytest.raises(ValueError, match=r"long\.flo.*longer than its header"):
        read_flo(path)


@pytest.mark.parametrize("size", [(0, 3), (3, -1), (1 << 20, 2)])
def test_invalid_header_size_is_named(tmp_path, size):
    path = tmp_path / "size.flo"
    _write_by_hand(path, np.ones((1, 1, 2), np.float32), size=size)
    with pytest.raises(ValueError, match=r"size\.flo.*invalid size"):
        read_flo(path)


def test_write_checks_its_input(tmp_path):
    with pytest.raises(ValueError, match=r"write_flo: flow must be \(H, W, 2\)"):
        write_flo(tmp_path / "a.flo", np.zeros((3, 3, 3), np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        write_flo(tmp_path / "a.flo", np.zeros((3, 3, 2), np.int32))
    assert not os.listdir(tmp_path)
