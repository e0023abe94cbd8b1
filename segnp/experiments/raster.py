"""Drawing into uint8 RGB arrays, so that the figures need only NumPy and imageio.

A 5x7 bitmap font (digits, lowercase letters, a little punctuation), image grids with
captions, line plots with axes, ticks and a legend, and the PCA of embeddings as RGB
(the paper's Fig. 3).  Canvases are (H, W, 3) uint8; coordinates are (row, column).
"""
import numpy as np

__all__ = ["text_width", "draw_text", "draw_polyline", "fill_rect", "to_uint8",
           "upscale", "grey_to_rgb", "heatmap", "pca_rgb", "grid", "line_plot",
           "PLOT_COLOURS"]

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
# Distinct line colours (Okabe-Ito, safe for colour-blind readers), then some extras.
PLOT_COLOURS = ((0, 0, 0), (230, 159, 0), (86, 180, 233), (0, 158, 115), (213, 94, 0),
                (0, 114, 178), (204, 121, 167), (128, 128, 128), (240, 228, 66))

# Each glyph: 7 rows, 5 bits each (bit 4 is the leftmost column).
_GLYPHS = {
    "a": "00 00 0E 01 0F 11 0F", "b": "10 10 16 19 11 11 1E", "c": "00 00 0E 10 10 11 0E",
    "d": "01 01 0D 13 11 11 0F", "e": "00 00 0E 11 1F 10 0E", "f": "06 09 08 1C 08 08 08",
    "g": "00 0F 11 11 0F 01 0E", "h": "10 10 16 19 11 11 11", "i": "04 00 0C 04 04 04 0E",
    "j": "02 00 06 02 02 12 0C", "k": "10 10 12 14 18 14 12", "l": "0C 04 04 04 04 04 0E",
    "m": "00 00 1A 15 15 11 11", "n": "00 00 16 19 11 11 11", "o": "00 00 0E 11 11 11 0E",
    "p": "00 00 1E 11 1E 10 10", "q": "00 00 0D 13 0F 01 01", "r": "00 00 16 19 10 10 10",
    "s": "00 00 0E 10 0E 01 1E", "t": "08 08 1C 08 08 09 06", "u": "00 00 11 11 11 13 0D",
    "v": "00 00 11 11 11 0A 04", "w": "00 00 11 11 15 15 0A", "x": "00 00 11 0A 04 0A 11",
    "y": "00 00 11 11 0F 01 0E", "z": "00 00 1F 02 04 08 1F",
    "0": "0E 11 13 15 19 11 0E", "1": "04 0C 04 04 04 04 0E", "2": "0E 11 01 02 04 08 1F",
    "3": "1F 02 04 02 01 11 0E", "4": "02 06 0A 12 1F 02 02", "5": "1F 10 1E 01 01 11 0E",
    "6": "06 08 10 1E 11 11 0E", "7": "1F 01 02 04 08 08 08", "8": "0E 11 11 0E 11 11 0E",
    "9": "0E 11 11 0F 01 02 0C", ".": "00 00 00 00 00 0C 0C", "-": "00 00 00 1F 00 00 00",
    "+": "00 04 04 1F 04 04 00", " ": "00 00 00 00 00 00 00", "(": "02 04 08 08 08 04 02",
    ")": "08 04 02 02 02 04 08", "/": "00 01 02 04 08 10 00", ":": "00 0C 0C 00 0C 0C 00",
    "=": "00 00 1F 00 1F 00 00", "%": "18 19 02 04 08 13 03", "_": "00 00 00 00 00 00 1F",
    ",": "00 00 00 00 0C 04 08", "?": "0E 11 01 02 04 00 04",
}
GLYPH_H, GLYPH_W, ADVANCE = 7, 5, 6


def _bitmap(ch):
    rows = [int(v, 16) for v in _GLYPHS.get(ch, _GLYPHS["?"]).split()]
    return (np.array(rows)[:, None] >> np.arange(GLYPH_W - 1, -1, -1)[None, :]) & 1 == 1


_BITMAPS = {ch: _bitmap(ch) for ch in _GLYPHS}


def text_width(text, scale=1):
    """Width in pixels of ``text`` drawn at ``scale``."""
    return max(len(text) * ADVANCE - 1, 0) * scale


def draw_text(canvas, text, row, col, colour=BLACK, scale=1):
    """Draw ``text`` (case-insensitive) with its top-left corner at (row, col), clipped
    to the canvas.  One glyph at a time, each as a whole array."""
    H, W = canvas.shape[:2]
    for k, ch in enumerate(str(text).lower()):
        glyph = _BITMAPS.get(ch, _BITMAPS["?"])
        if scale > 1:
            glyph = np.repeat(np.repeat(glyph, scale, 0), scale, 1)
        r0, c0 = row, col + k * ADVANCE * scale
        gr = slice(max(0, -r0), min(glyph.shape[0], H - r0))
        gc = slice(max(0, -c0), min(glyph.shape[1], W - c0))
        if gr.start >= gr.stop or gc.start >= gc.stop:
            continue
        region = canvas[r0 + gr.start:r0 + gr.stop, c0 + gc.start:c0 + gc.stop]
        region[glyph[gr, gc]] = colour
    return canvas


def fill_rect(canvas, r0, c0, r1, c1, colour):
    """Fill rows r0..r1-1 and columns c0..c1-1 (clipped)."""
    H, W = canvas.shape[:2]
    canvas[max(r0, 0):min(r1, H), max(c0, 0):min(c1, W)] = colour
    return canvas


def draw_polyline(canvas, rows, cols, colour, thickness=1):
    """Join the points (rows[i], cols[i]) by straight segments (sub-pixel sampled)."""
    H, W = canvas.shape[:2]
    rows, cols = np.asarray(rows, float), np.asarray(cols, float)
    ok = np.isfinite(rows) & np.isfinite(cols)
    pts_r, pts_c = [], []
    for k in range(len(rows) - 1):  # one segment at a time, each as a whole array
        if not (ok[k] and ok[k + 1]):
            continue
        n = int(max(abs(rows[k + 1] - rows[k]), abs(cols[k + 1] - cols[k])) * 2) + 2
        t = np.linspace(0.0, 1.0, n)
        pts_r.append(rows[k] + t * (rows[k + 1] - rows[k]))
        pts_c.append(cols[k] + t * (cols[k + 1] - cols[k]))
    if not pts_r:
        return canvas
    r = np.rint(np.concatenate(pts_r)).astype(np.int64)
    c = np.rint(np.concatenate(pts_c)).astype(np.int64)
    half = thickness // 2
    for dr in range(-half, thickness - half):
        for dc in range(-half, thickness - half):
            rr, cc = r + dr, c + dc
            keep = (rr >= 0) & (rr < H) & (cc >= 0) & (cc < W)
            canvas[rr[keep], cc[keep]] = colour
    return canvas


def to_uint8(a, lo=None, hi=None):
    """Scale a float array to uint8 linearly, ``lo`` -> 0 and ``hi`` -> 255 (defaults:
    its 1st and 99th percentiles)."""
    a = np.asarray(a, np.float64)
    lo = np.percentile(a, 1) if lo is None else lo
    hi = np.percentile(a, 99) if hi is None else hi
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip((a - lo) * scale, 0, 255).astype(np.uint8)


def upscale(img, factor):
    """Nearest-neighbour enlargement by an integer factor (pixels stay visible)."""
    return np.repeat(np.repeat(img, factor, axis=0), factor, axis=1)


def grey_to_rgb(a):
    return np.repeat(np.asarray(a)[..., None], 3, axis=-1)


def heatmap(a, lo=None, hi=None):
    """A float map (H, W) as RGB: dark blue (low) -> white -> dark red (high)."""
    t = to_uint8(a, lo, hi).astype(np.float64) / 255.0
    r = np.clip(2 * t, 0, 1)
    b = np.clip(2 - 2 * t, 0, 1)
    g = 1 - np.abs(2 * t - 1)
    return (np.stack([r * (0.55 + 0.45 * t), g, b * (1 - 0.45 * t)], -1) * 255).astype(
        np.uint8)


def pca_rgb(e, basis=None):
    """Embeddings (D, H, W) projected on their 3 principal components, as RGB (H, W, 3).

    ``basis``: (mean (D,), components (3, D), lo (3,), hi (3,)) from an earlier call
    (returned as the second value) to colour several images alike.
    """
    e = np.asarray(e, np.float64)
    D, H, W = e.shape
    X = e.reshape(D, -1).T
    if basis is None:
        mean = X.mean(0)
        _, _, vt = np.linalg.svd(X - mean, full_matrices=False)
        comps = np.zeros((3, D))
        comps[:min(3, D)] = vt[:3]
        proj = (X - mean) @ comps.T
        lo, hi = np.percentile(proj, 1, axis=0), np.percentile(proj, 99, axis=0)
        basis = (mean, comps, lo, hi)
    mean, comps, lo, hi = basis
    proj = (X - mean) @ comps.T
    rgb = (proj - lo) / np.where(hi > lo, hi - lo, 1.0)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8).reshape(H, W, 3), basis


def grid(cells, captions=None, col_titles=None, pad=4, scale=1, background=WHITE):
    """Tile a list of rows of RGB images (all cells of a column share a width, all of a
    row a height) with optional per-cell captions under each cell and column titles."""
    rows = [[upscale(c if c.ndim == 3 else grey_to_rgb(c), scale) for c in row]
            for row in cells]
    ncol = max(len(r) for r in rows)
    col_w = [max(r[j].shape[1] for r in rows if j < len(r)) for j in range(ncol)]
    cap_h = GLYPH_H + 4 if captions is not None else 0
    title_h = GLYPH_H + 6 if col_titles is not None else 0
    row_h = [max(c.shape[0] for c in r) + cap_h for r in rows]
    H = title_h + sum(row_h) + pad * (len(rows) + 1)
    W = sum(col_w) + pad * (ncol + 1)
    canvas = np.empty((H, W, 3), np.uint8)
    canvas[...] = background
    col_x = np.cumsum([pad] + [w + pad for w in col_w])[:-1]
    if col_titles is not None:
        for j, t in enumerate(col_titles[:ncol]):
            draw_text(canvas, t, pad, col_x[j])
    y = title_h + pad
    for i, r in enumerate(rows):
        for j, c in enumerate(r):
            canvas[y:y + c.shape[0], col_x[j]:col_x[j] + c.shape[1]] = c
            if captions is not None and captions[i] and j < len(captions[i]):
                draw_text(canvas, captions[i][j], y + c.shape[0] + 2, col_x[j])
        y += row_h[i] + pad
    return canvas


def _ticks(lo, hi, n=5):
    """About n round tick values covering [lo, hi]."""
    span = hi - lo if hi > lo else 1.0
    raw = span / n
    mag = 10.0 ** np.floor(np.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    start = np.ceil(lo / step - 1e-9) * step
    return np.arange(start, hi + step * 1e-6, step), step


def _fmt(v, step):
    digits = max(0, int(-np.floor(np.log10(step) + 1e-9)))
    if abs(v) < 1e-6 * step:   # ceil(lo / step) * step can land on -0.0 or -1e-17
        v = 0.0
    return f"{v:.{digits}f}"


def line_plot(series, title="", xlabel="", ylabel="", size=(300, 460), colours=None,
              ylim=None):
    """A line plot as an RGB image: ``series`` maps a legend name to (x, y) arrays.

    Axes with round ticks, a title, axis labels, and a legend box in the lower right.
    """
    colours = colours or PLOT_COLOURS
    H, W = size
    canvas = np.full((H, W, 3), 255, np.uint8)
    xs = np.concatenate([np.asarray(x, float) for x, _ in series.values()])
    ys = np.concatenate([np.asarray(y, float) for _, y in series.values()])
    ys = ys[np.isfinite(ys)]
    x0, x1 = xs.min(), xs.max()
    y0, y1 = ylim if ylim is not None else (ys.min(), ys.max())
    if y1 <= y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    margin = 0.05 * (y1 - y0)
    if ylim is None:
        y0, y1 = y0 - margin, y1 + margin
    left, right, top, bottom = 52, W - 12, 30, H - 34
    px = lambda x: left + (np.asarray(x, float) - x0) / max(x1 - x0, 1e-12) * (right - left)  # noqa: E731
    py = lambda y: bottom - (np.asarray(y, float) - y0) / (y1 - y0) * (bottom - top)  # noqa: E731
    grey = (225, 225, 225)
    yt, ystep = _ticks(y0, y1)
    for v in yt:
        r = int(round(float(py(v))))
        fill_rect(canvas, r, left, r + 1, right, grey)
        label = _fmt(v, ystep)
        draw_text(canvas, label, r - 3, left - 4 - text_width(label))
    xt, xstep = _ticks(x0, x1)
    for v in xt:
        c = int(round(float(px(v))))
        fill_rect(canvas, bottom, c, bottom + 4, c + 1, BLACK)
        label = _fmt(v, xstep)
        draw_text(canvas, label, bottom + 6, c - text_width(label) // 2)
    fill_rect(canvas, top, left, bottom + 1, left + 1, BLACK)
    fill_rect(canvas, bottom, left, bottom + 1, right + 1, BLACK)
    for k, (name, (x, y)) in enumerate(series.items()):
        draw_polyline(canvas, py(y), px(x), colours[k % len(colours)], thickness=2)
    draw_text(canvas, title, 3, left)
    draw_text(canvas, xlabel, H - 12, (left + right - text_width(xlabel)) // 2)
    draw_text(canvas, ylabel, 16, 4)
    names = list(series)
    box_w = max(text_width(n) for n in names) + 26
    box_h = len(names) * 11 + 6
    r0, c0 = bottom - box_h - 6, right - box_w - 6
    fill_rect(canvas, r0, c0, r0 + box_h, c0 + box_w, WHITE)
    for k, name in enumerate(names):
        r = r0 + 4 + 11 * k
        fill_rect(canvas, r + 2, c0 + 4, r + 5, c0 + 18, colours[k % len(colours)])
        draw_text(canvas, name, r, c0 + 22)
    return canvas
