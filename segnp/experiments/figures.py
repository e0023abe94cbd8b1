"""The paper's figures, on FlyingShapes, as uint8 RGB arrays (write them with
:func:`segnp.io.write_png`): Fig. 3 (embeddings and masks), Fig. 4 (FC8 scores before
and after the segmentation-aware bilateral filter), Fig. 7 (trimap curves) and Fig. 8
(flow colour coding).  NumPy only; see ``raster.py`` for the drawing.
"""
import numpy as np

from ..autograd import Tensor, no_grad
from ..backends import get_backend
from ..io import flow_to_color, label_palette
from .raster import grid, heatmap, line_plot, pca_rgb, upscale

__all__ = ["to_rgb", "labels_rgb", "window_masks", "figure_embeddings", "figure_bilateral",
           "figure_trimap", "figure_flow", "boundary_pixel"]


def to_rgb(images, mean, scale):
    """Network inputs (N, 3, H, W) back to uint8 RGB (N, H, W, 3)."""
    x = np.asarray(images).transpose(0, 2, 3, 1) / scale + np.asarray(mean)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def labels_rgb(labels):
    return label_palette()[np.asarray(labels)]


def boundary_pixel(labels, margin):
    """(row, col) of a pixel on a label boundary at least ``margin`` from the image edge
    (the most central one), or the image centre when there is none."""
    lab = np.asarray(labels)
    H, W = lab.shape
    edge = np.zeros_like(lab, bool)
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    edge[1:, :] |= lab[1:, :] != lab[:-1, :]
    edge[:margin], edge[H - margin:], edge[:, :margin], edge[:, W - margin:] = (False,) * 4
    ys, xs = np.nonzero(edge)
    if ys.size == 0:
        return H // 2, W // 2
    k = np.argmin((ys - H / 2) ** 2 + (xs - W / 2) ** 2)
    return int(ys[k]), int(xs[k])


def window_masks(feat, centre, radius, lam):
    """The mask exp(-lam * ||f_j - f_i||_1) of Eq. 3 for the pixels j of the
    (2 radius + 1)^2 window around ``centre`` = i, from features (D, H, W)."""
    r0, c0 = centre
    patch = feat[:, r0 - radius:r0 + radius + 1, c0 - radius:c0 + radius + 1]
    d = np.abs(patch - feat[:, r0:r0 + 1, c0:c0 + 1]).sum(0)
    return np.exp(-lam * d)


def _mask_lam(feat, radius):
    # a hardness putting the median neighbour distance at mask 0.5, so that the
    # embedding and colour masks are compared at the same contrast
    d = np.abs(feat[:, :, radius:] - feat[:, :, :-radius]).sum(1)
    med = float(np.median(d))
    return np.log(2.0) / med if med > 0 else 1.0


def figure_embeddings(images, labels, embeddings, mean, scale, count=4, radius=7, zoom=4):
    """Fig. 3: per image, the patch around a boundary pixel, its labels, the PCA of the
    embeddings as RGB, the embedding mask and the colour-distance mask at that pixel.

    images (N, 3, H, W) network inputs; labels (N, H, W); embeddings (N, D, H, W).
    """
    rgb = to_rgb(images, mean, scale)
    colour = np.asarray(images, np.float64) / scale
    lam_e = _mask_lam(embeddings, 1)
    lam_c = _mask_lam(colour, 1)
    _, basis = pca_rgb(embeddings[0])
    rows, caps = [], []
    for n in range(min(count, len(images))):
        r, c = boundary_pixel(labels[n], radius)
        sl = (slice(r - radius, r + radius + 1), slice(c - radius, c + radius + 1))
        pca, _ = pca_rgb(embeddings[n], basis)
        me = window_masks(embeddings[n], (r, c), radius, lam_e)
        mc = window_masks(colour[n], (r, c), radius, lam_c)
        grey = lambda m: np.repeat((m * 255).astype(np.uint8)[..., None], 3, -1)  # noqa: E731
        cells = [rgb[n][sl], labels_rgb(labels[n])[sl], pca[sl], grey(me), grey(mc)]
        for cell in cells:
            cell[radius, radius] = (255, 0, 0)
        rows.append([upscale(cell, zoom) for cell in cells])
        caps.append(None)
    return grid(rows, col_titles=["patch", "labels", "embed pca", "embed mask",
                                  "colour mask"])


def _scores(model, x):
    """(FC8 scores upsampled, the same after the model's bilateral filter, e)."""
    be = get_backend()
    bf = model.bf
    model.eval()
    with no_grad():
        xt = Tensor(be.asarray(x))
        e, _ = model.embedder(xt)
        model.bf = None
        try:
            before = model(xt, e)
        finally:
            model.bf = bf
        after = bf(before, e)
    return be.to_numpy(before.data), be.to_numpy(after.data), be.to_numpy(e.data)


def figure_bilateral(model, images, labels, mean, scale, count=3, zoom=3):
    """Fig. 4: image, labels, the FC8 score of the true class of the central pixel
    before and after the segmentation-aware bilateral filter, and both argmax maps.

    ``model``: a SegNet built with ``bf`` and an embedder.
    """
    if model.bf is None:
        raise ValueError("figure_bilateral: the model has no bilateral filter (bf=None)")
    before, after, _ = _scores(model, images[:count])
    rgb = to_rgb(images[:count], mean, scale)
    rows = []
    for n in range(len(before)):
        H, W = labels[n].shape
        cls = int(labels[n][H // 2, W // 2]) if labels[n][H // 2, W // 2] != 255 else 0
        lo = min(before[n, cls].min(), after[n, cls].min())
        hi = max(before[n, cls].max(), after[n, cls].max())
        rows.append([upscale(a, zoom) for a in (
            rgb[n], labels_rgb(labels[n]), heatmap(before[n, cls], lo, hi),
            heatmap(after[n, cls], lo, hi), labels_rgb(before[n].argmax(0)),
            labels_rgb(after[n].argmax(0)))])
    return grid(rows, col_titles=["image", "labels", "fc8 before", "fc8 after",
                                  "argmax before", "argmax after"])


def figure_trimap(curves, title="trimap miou near label boundaries", reference=None):
    """Fig. 7: ``curves`` maps a variant name to (half-widths, mIoU in %).

    ``reference``: the name of one curve (e.g. the baseline).  A second panel then
    plots every other curve minus it, where variants that differ by a point or two
    no longer hide each other under the spread of the absolute values.
    """
    kw = {"xlabel": "trimap half-width (pixels)", "size": (320, 520)}
    panel = line_plot(curves, title=title, ylabel="miou %", **kw)
    if reference is None:
        return panel
    if reference not in curves:
        raise ValueError(f"figure_trimap: reference {reference!r} is not one of the "
                         f"curves {list(curves)}")
    base = np.asarray(curves[reference][1], float)
    deltas = {name: (x, np.asarray(y, float) - base) for name, (x, y) in curves.items()}
    diff = line_plot(deltas, title=f"difference to {reference}", ylabel="miou points",
                     **kw)
    gap = np.full((panel.shape[0], 12, 3), 255, np.uint8)
    return np.concatenate([panel, gap, diff], axis=1)


def figure_flow(image1, flow_true, flows, mean, scale, count=3, zoom=3):
    """Fig. 8: frame 1, the true flow and each model's flow in the Middlebury colour
    coding (one colour scale per row, set by the true flow).

    image1 (N, 3, H, W) network inputs; flow_true (N, 2, H, W); flows: name -> (N, 2, H, W).
    """
    rgb = to_rgb(image1[:count], mean, scale)
    rows = []
    for n in range(len(rgb)):
        ft = np.asarray(flow_true[n]).transpose(1, 2, 0)
        m = float(np.sqrt((ft ** 2).sum(-1)).max()) or 1.0
        cells = [rgb[n], flow_to_color(ft, m)]
        cells += [flow_to_color(np.asarray(f[n]).transpose(1, 2, 0), m) for f in flows.values()]
        rows.append([upscale(c, zoom) for c in cells])
    return grid(rows, col_titles=["frame 1", "true flow"] + list(flows))
