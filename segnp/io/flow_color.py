"""The Middlebury colour coding of optical flow (Baker et al., "A Database and Evaluation
Methodology for Optical Flow", 2011), used for the flow figures of the paper (Fig. 8).

Direction is hue, read off a wheel of 55 colours (red -> yellow -> green -> cyan -> blue ->
magenta -> red, with 15, 6, 4, 11, 13 and 6 steps: more steps where the eye tells hues
apart better); magnitude is saturation, from white at zero flow to the full hue at
``max_flow``.  Larger flows are drawn at the full hue, darkened to 75 %.
"""
import numpy as np

__all__ = ["color_wheel", "flow_to_color", "wheel_legend"]

# (key colour, steps from it to the next key colour)
_KEYS = (((255, 0, 0), 15), ((255, 255, 0), 6), ((0, 255, 0), 4),
         ((0, 255, 255), 11), ((0, 0, 255), 13), ((255, 0, 255), 6))
# Flow components above this mark unknown flow in Middlebury files.
UNKNOWN_FLOW = 1e9


def color_wheel():
    """The wheel: float64 (55, 3) RGB values in [0, 255]."""
    ramps = []
    for k, (start, steps) in enumerate(_KEYS):
        end = _KEYS[(k + 1) % len(_KEYS)][0]
        t = np.arange(steps)[:, None] / steps
        start, end = np.array(start, float), np.array(end, float)
        # floor keeps the ramp values identical to the reference implementation's
        ramps.append(np.floor(start + (end - start) * t))
    return np.concatenate(ramps)


def flow_to_color(flow, max_flow=None):
    """Colour-code a flow field (H, W, 2) of (u, v) as uint8 RGB (H, W, 3).

    ``max_flow``: the magnitude drawn at full saturation; by default the largest known
    magnitude in ``flow`` (so that one image uses its whole range).  Unknown flow (NaN,
    infinite, or a component above 1e9) is drawn black.
    """
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow_to_color: flow must be (H, W, 2); got shape {flow.shape}")
    u, v = flow[..., 0], flow[..., 1]
    known = np.isfinite(u) & np.isfinite(v) & (np.abs(u) <= UNKNOWN_FLOW) & \
        (np.abs(v) <= UNKNOWN_FLOW)
    u, v = np.where(known, u, 0.0), np.where(known, v, 0.0)
    rad = np.hypot(u, v)
    if max_flow is None:
        max_flow = rad.max() if rad.size else 0.0
    if max_flow <= 0:
        max_flow = 1.0
    rad = rad / max_flow

    wheel = color_wheel() / 255.0
    ncols = len(wheel)
    fk = (np.arctan2(-v, -u) / np.pi + 1) / 2 * (ncols - 1)
    k0 = np.floor(fk).astype(np.int64)
    k1 = (k0 + 1) % ncols
    f = (fk - k0)[..., None]
    col = (1 - f) * wheel[k0] + f * wheel[k1]
    r = rad[..., None]
    col = np.where(r <= 1, 1 - r * (1 - col), col * 0.75)
    out = np.floor(255 * col).astype(np.uint8)
    out[~known] = 0
    return out


def wheel_legend(size=64):
    """A (size, size, 3) uint8 image of the coding: the flow at each pixel is its offset
    from the centre, with full saturation at the rim (outside the disc: white)."""
    c = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    flow = np.stack([x - c, y - c], axis=-1) / c
    img = flow_to_color(flow, max_flow=1.0)
    img[np.hypot(flow[..., 0], flow[..., 1]) > 1] = 255
    return img
