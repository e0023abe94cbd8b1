"""Middlebury ``.flo`` optical-flow files (the format of FlyingChairs and Sintel).

Layout, little-endian: the float32 magic number 202021.25 (the bytes spell "PIEH"), int32
width W, int32 height H, then H*W*2 float32 values, row by row, (u, v) interleaved.  u is
the horizontal and v the vertical displacement in pixels: image1(y, x) matches
image2(y + v, x + u).  A component larger than 1e9 in magnitude (the format writes 1e10)
marks a pixel whose flow is unknown; :func:`read_flo` returns NaN there, which the flow
metrics leave out and the colour coding draws black.
"""
import os

import numpy as np

from ..atomic import atomic_path
from .flow_color import UNKNOWN_FLOW

__all__ = ["FLO_MAGIC", "read_flo", "write_flo"]

FLO_MAGIC = 202021.25
_HEADER = 12
# No real flow field is this large; a bigger size means a corrupt header, and refusing it
# keeps a bad file from requesting gigabytes.
_MAX_SIDE = 1 << 15


def read_flo(path):
    """Read a ``.flo`` file into a float32 array (H, W, 2) of (u, v), NaN at pixels of
    unknown flow (a component above 1e9 in magnitude, as the format marks them).

    Raises FileNotFoundError for a missing file and ValueError naming the file for a wrong
    magic number, an implausible size, or a file whose length does not match its header
    (truncated or with trailing bytes).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"read_flo: no such file {path!r}")
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < _HEADER:
        raise ValueError(f"read_flo: {path!r} is truncated: {len(data)} bytes, shorter than "
                         f"the {_HEADER}-byte header")
    magic = np.frombuffer(data, "<f4", 1, 0)[0]
    if magic != np.float32(FLO_MAGIC):
        raise ValueError(f"read_flo: {path!r} is not a .flo file: magic number must be "
                         f"{FLO_MAGIC}; got {float(magic)!r}")
    W, H = (int(s) for s in np.frombuffer(data, "<i4", 2, 4))
    if not (0 < W <= _MAX_SIDE and 0 < H <= _MAX_SIDE):
        raise ValueError(f"read_flo: {path!r} has an invalid size: width and height must be "
                         f"in [1, {_MAX_SIDE}]; got W={W}, H={H}")
    expected = _HEADER + 8 * W * H
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise ValueError(f"read_flo: {path!r} is {what}: a {W}x{H} flow needs {expected} "
                         f"bytes; got {len(data)}")
    flow = np.frombuffer(data, "<f4", 2 * W * H, _HEADER).reshape(H, W, 2).astype(np.float32)
    flow[(np.abs(flow) > UNKNOWN_FLOW).any(axis=2)] = np.nan
    return flow


def write_flo(path, flow):
    """Write a flow field (H, W, 2) of (u, v) to a ``.flo`` file, atomically; pixels
    with a non-finite component are written as unknown (1e10, as the format says)."""
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"write_flo: flow must be (H, W, 2); got shape {flow.shape}")
    if flow.dtype.kind != "f":
        raise TypeError(f"write_flo: flow must be a floating-point array; got dtype "
                        f"{flow.dtype}")
    H, W = flow.shape[:2]
    if not (0 < W <= _MAX_SIDE and 0 < H <= _MAX_SIDE):
        raise ValueError(f"write_flo: width and height must be in [1, {_MAX_SIDE}]; "
                         f"got W={W}, H={H}")
    header = np.array([FLO_MAGIC], "<f4").tobytes() + np.array([W, H], "<i4").tobytes()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(header)
            out = np.array(flow, dtype="<f4")
            out[~np.isfinite(out).all(axis=2)] = 1e10
            f.write(out.tobytes())
