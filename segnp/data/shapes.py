"""Shapes and textures of FlyingShapes objects, evaluated at arbitrary points.

Both take coordinates in an object's own frame, so a texture moves, turns and stretches
with its object and the second frame's pixels are exact samples of the same pattern.
Shapes take coordinates normalised by the object's radius (each shape has the
area of the unit disc); textures take them in pixels, so that their periods are in pixels.

Every texture is smooth (sines, softened by tanh where a pattern needs edges) with
periods of at least 7 pixels: it can be resampled with small error, which is what makes
a backward warp by the exact flow reproduce the first frame.
"""
import numpy as np

__all__ = ["SHAPES", "TEXTURES", "inside", "texture"]

SHAPES = ("disc", "box", "triangle", "star", "cross", "ring", "hexagon", "crescent")
# one texture family per object class (same order as SHAPES); the background has its own
TEXTURES = ("stripes", "checker", "dots", "rings", "waves", "plaid", "hexgrid", "spokes")
BACKGROUND_TEXTURE = "interference"
# Radius multipliers that give every shape the area of the unit disc (measured on a fine
# grid), so that no class is rare in pixels just because its shape is thin.
AREA_SCALE = {"disc": 1.0, "box": 1.108, "triangle": 1.556, "star": 1.49, "cross": 1.231,
              "ring": 1.196, "hexagon": 1.1, "crescent": 1.403}


def _polygon(x, y, n):
    """Inside a regular n-gon with vertices on the unit circle."""
    theta = np.arctan2(y, x)
    sector = np.mod(theta, 2 * np.pi / n) - np.pi / n
    return np.hypot(x, y) * np.cos(sector) <= np.cos(np.pi / n)


def inside(shape, x, y):
    """Boolean mask: are the normalised points (x, y) inside ``shape``?  Every shape has
    the area of the unit disc (pi)."""
    if shape not in AREA_SCALE:
        raise ValueError(f"inside: shape must be one of {SHAPES}; got {shape!r}")
    x, y = x / AREA_SCALE[shape], y / AREA_SCALE[shape]
    if shape == "disc":
        return x * x + y * y <= 1
    if shape == "box":
        return np.maximum(np.abs(x), np.abs(y)) <= 0.8
    if shape == "triangle":
        return _polygon(x, y, 3)
    if shape == "star":
        lobes = 0.5 + 0.5 * np.cos(5 * np.arctan2(y, x))
        return np.hypot(x, y) <= 0.42 + 0.58 * lobes * lobes
    if shape == "cross":
        ax, ay = np.abs(x), np.abs(y)
        return ((ax <= 0.95) & (ay <= 0.33)) | ((ax <= 0.33) & (ay <= 0.95))
    if shape == "ring":
        r2 = x * x + y * y
        return (r2 <= 1) & (r2 >= 0.3)
    if shape == "hexagon":
        return _polygon(x, y, 6)
    # crescent: the unit disc less an offset one
    return (x * x + y * y <= 1) & ((x - 0.5) ** 2 + y * y >= 0.6)


def texture(name, u, v, period, params):
    """Pattern values in [0, 1] at the pixel coordinates (u, v) of an object's frame.

    ``period``: the pattern's scale in pixels; ``params``: (4,) random numbers in [0, 1)
    that vary orientation and phase between objects of one family.
    """
    turn = params[0] * np.pi
    c, s = np.cos(turn), np.sin(turn)
    a = (c * u + s * v) * (2 * np.pi / period)   # along the pattern's own axes
    b = (-s * u + c * v) * (2 * np.pi / period)
    phase = params[1] * 2 * np.pi
    if name == "stripes":
        t = np.sin(a + phase)
    elif name == "checker":
        t = np.tanh(2.0 * np.sin(a + phase) * np.sin(b))
    elif name == "dots":
        t = np.tanh(2.5 * (np.cos(a + phase) + np.cos(b) - 0.8))
    elif name == "rings":
        t = np.sin(np.hypot(u, v) * (2 * np.pi / period) + phase)
    elif name == "waves":
        t = np.sin(b + 1.6 * np.sin(0.5 * a + phase))
    elif name == "plaid":
        t = 0.5 * (np.sin(a + phase) + np.sin(b / 1.8))
    elif name == "hexgrid":
        k = 2 * np.pi / period
        waves = [np.cos(k * (np.cos(turn + j * 2 * np.pi / 3) * u +
                             np.sin(turn + j * 2 * np.pi / 3) * v) + phase * (j == 0))
                 for j in range(3)]
        t = (waves[0] + waves[1] + waves[2] - 0.75) / 2.25
    elif name == "spokes":
        r = np.hypot(u, v)
        n = 5 + int(params[2] * 4)
        # fade the spokes out where they crowd together near the centre
        t = np.sin(n * np.arctan2(v, u) + phase) * (1 - np.exp(-(r / period) ** 2))
    elif name == "interference":
        t = 0.0
        for j in range(3):
            d = turn + j * (1.0 + params[3])
            scale = 1.3 + 0.6 * j
            t = t + np.sin((np.cos(d) * u + np.sin(d) * v) * (2 * np.pi / (scale * period))
                           + phase * (j + 1))
        t = np.tanh(1.2 * t) / np.tanh(3.6)
    else:
        raise ValueError(f"texture: name must be one of {TEXTURES + (BACKGROUND_TEXTURE,)};"
                         f" got {name!r}")
    return np.clip(0.5 + 0.5 * t, 0.0, 1.0)
