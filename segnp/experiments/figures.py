"""The paper's figures on FlyingShapes, drawn with matplotlib and written as PNG files:
Fig. 3 (learned embeddings and the masks they give), Fig. 4 (FC8 scores before and after
the segmentation-aware bilateral filter), Fig. 7 (mIoU in trimaps around label
boundaries) and Fig. 8 (optical flow in the Middlebury colour coding).

Each ``figure_*`` function draws on its own :class:`matplotlib.figure.Figure` with an
Agg canvas (no pyplot, so no display and no global state; see ``drawing.py``), writes
``path`` atomically (:func:`segnp.io.atomic_path`) and returns it.  matplotlib is
imported only when a figure is drawn, so that ``import segnp`` does not pay for it.
At the default ``dpi`` the figures are about 1,000-1,400 pixels wide, readable in a
README.

Notation: N images, H, W their size, D embedding channels, L classes, K trimap
half-widths, S seeds.  Images are network inputs (N, 3, H, W), turned back into RGB
with the ``mean`` and ``scale`` of the preprocessing.  Labels are drawn in the PASCAL
VOC palette (:func:`segnp.io.label_palette`), so a class has the same colour everywhere.
"""
import numpy as np

from ..autograd import Tensor, no_grad
from ..backends import get_backend
from ..io import flow_to_color, label_palette, wheel_legend
from ..metrics import end_point_error
from .drawing import (DPI, IGNORE, class_legend, colorbar, mark_pixel, new_figure,
                      panel_grid, save_figure, show)

__all__ = ["to_rgb", "labels_rgb", "pca_rgb", "window_masks", "boundary_pixel",
           "figure_embeddings", "figure_bilateral", "figure_predictions", "figure_trimap",
           "figure_flow"]

# ---------------------------------------------------------------- array helpers

def to_rgb(images, mean, scale):
    """Network inputs (N, 3, H, W) back to uint8 RGB (N, H, W, 3)."""
    x = np.asarray(images).transpose(0, 2, 3, 1) / scale + np.asarray(mean)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def labels_rgb(labels):
    """Labels (..., H, W) as uint8 RGB (..., H, W, 3) in the VOC palette."""
    return label_palette()[np.asarray(labels)]


def pca_rgb(e, basis=None):
    """Embeddings (D, H, W) projected on their 3 principal components, as RGB (H, W, 3).

    Each component is stretched so that its 1st..99th percentiles fill 0..255.
    ``basis``: (mean (D,), components (3, D), lo (3,), hi (3,)) from an earlier call
    (returned as the second value), to colour several images alike.
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


def _mask_lam(feat, step):
    # a hardness putting the median distance of pixels ``step`` apart at mask 0.5, so
    # that the embedding and colour masks are compared at the same contrast
    d = np.abs(feat[:, :, step:] - feat[:, :, :-step]).sum(1)
    med = float(np.median(d))
    return np.log(2.0) / med if med > 0 else 1.0


def _present(class_names, label_maps):
    """The label values found in ``label_maps`` (for the legend), or [] without names."""
    if class_names is None:
        return []
    return np.unique(np.concatenate([np.ravel(m) for m in label_maps])).tolist()


def _main_class(labels):
    """The most frequent label other than 0 (background) and 255 (ignore), else 0."""
    counts = np.bincount(np.asarray(labels).ravel(), minlength=256)
    counts[[0, IGNORE]] = 0
    return int(counts.argmax()) if counts.any() else 0


# ---------------------------------------------------------------- argument checks

def _check(fn, name, a, ndim, letters, dtype=np.float64):
    a = np.asarray(a, dtype) if dtype is not None else np.asarray(a)
    if a.ndim != ndim:
        raise ValueError(f"{fn}: {name} must be {letters}; got shape {a.shape}")
    return a


def _check_same(fn, pairs):
    """pairs: (name, shape, expected shape, letters); raise on the first mismatch."""
    for name, got, want, letters in pairs:
        if tuple(got) != tuple(want):
            raise ValueError(f"{fn}: {name} must be {letters} = {tuple(want)}; got "
                             f"{tuple(got)}")


def _rows(fn, count, n):
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"{fn}: count must be a positive integer; got {count!r}")
    if n < 1:
        raise ValueError(f"{fn}: no images given")
    return min(int(count), n)


def _segmentation_inputs(fn, images, labels):
    images = _check(fn, "images", images, 4, "(N, 3, H, W)")
    labels = _check(fn, "labels", labels, 3, "(N, H, W)", dtype=None)
    N, C, H, W = images.shape
    _check_same(fn, [("images", (C,), (3,), "(N, 3, H, W): channels"),
                     ("labels", labels.shape, (N, H, W), "(N, H, W)")])
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{fn}: labels must be integers; got {labels.dtype}")
    return images, labels.astype(np.int64)


# ---------------------------------------------------------------- Fig. 3

def figure_embeddings(path, images, labels, embeddings, mean, scale, count=4, radius=7,
                      class_names=None, dpi=DPI,
                      title="Fig. 3: learned embeddings and the masks they give at the "
                            "marked pixel"):
    """Fig. 3: per image (one row), the image with the window around a boundary pixel
    boxed, that window's pixels, its labels, the embeddings' 3 principal components as
    RGB, the embedding mask exp(-lam ||e_j - e_i||_1) (Eq. 3) and the same mask from RGB
    colour, both of the marked centre pixel i and on one grey scale.

    Each mask's lam puts the median distance of horizontal neighbours (over all
    images) at mask 0.5, so the two are compared at the same contrast.  The PCA basis
    is that of the first image, so the colours of the rows are comparable.

    images (N, 3, H, W) network inputs; labels (N, H, W); embeddings (N, D, H, W).
    ``class_names``: names by label, for a legend.  Returns ``path``.
    """
    fn = "figure_embeddings"
    images, labels = _segmentation_inputs(fn, images, labels)
    embeddings = _check(fn, "embeddings", embeddings, 4, "(N, D, H, W)")
    N, _, H, W = images.shape
    _check_same(fn, [("embeddings", embeddings.shape[:1] + embeddings.shape[2:], (N, H, W),
                      "(N, D, H, W): N, H, W")])
    rows = _rows(fn, count, N)
    if not 1 <= radius or 2 * radius + 1 > min(H, W):
        raise ValueError(f"{fn}: radius must be >= 1 with a (2 radius + 1) window inside "
                         f"the {H}x{W} images; got {radius}")
    rgb = to_rgb(images, mean, scale)
    colour = images / scale
    lam_e, lam_c = _mask_lam(embeddings, 1), _mask_lam(colour, 1)
    _, basis = pca_rgb(embeddings[0])
    from matplotlib.patches import Rectangle

    cols = ["image", "window", "labels", "embeddings (PCA)", "embedding mask",
            "colour mask"]
    centres = [boundary_pixel(labels[n], radius) for n in range(rows)]
    windows = [(slice(r - radius, r + radius + 1), slice(c - radius, c + radius + 1))
               for r, c in centres]
    present = _present(class_names, [labels[n][w] for n, w in enumerate(windows)])
    fig, axes = panel_grid(rows, len(cols), title, dpi, legend=len(present),
                           space_after={len(cols) - 1: 1.0})
    for n, ((r, c), win) in enumerate(zip(centres, windows)):
        masks = (window_masks(embeddings[n], (r, c), radius, lam_e),
                 window_masks(colour[n], (r, c), radius, lam_c))
        ax = axes[n]
        show(ax[0], rgb[n])
        ax[0].add_patch(Rectangle((c - radius - 0.5, r - radius - 0.5), 2 * radius + 1,
                                  2 * radius + 1, fill=False, edgecolor="red", lw=1.5))
        ax[0].set_ylabel(f"image {n + 1}")
        show(ax[1], rgb[n][win])
        show(ax[2], labels_rgb(labels[n][win]))
        show(ax[3], pca_rgb(embeddings[n], basis)[0][win])
        for a, m in zip(ax[4:], masks):
            im = show(a, m, cmap="gray", vmin=0.0, vmax=1.0)
        for a in ax[1:]:
            mark_pixel(a, radius, radius)
    for a, t in zip(axes[0], cols):
        a.set_title(t, fontsize="medium")
    colorbar(fig, im, axes[0, -1], axes[-1, -1],
             r"mask value $\exp(-\lambda\,\|f_j - f_i\|_1)$")
    if present:
        class_legend(fig, present, class_names)
    return save_figure(fn, fig, path)


# ---------------------------------------------------------------- Fig. 4

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


def figure_bilateral(path, model, images, labels, mean, scale, count=3, class_names=None,
                     dpi=DPI, title="Fig. 4: FC8 scores before and after the "
                                    "segmentation-aware bilateral filter"):
    """Fig. 4: per image (one row), the image, its labels, the FC8 score of one class
    before and after the segmentation-aware bilateral filter (Eq. 4) on one colour
    scale (the row's colour bar), and the argmax of the scores before and after.

    The class shown is the image's most frequent label other than background (0) and
    ignore (255).  ``model``: a SegNet built with ``bf`` and an embedder.
    images (N, 3, H, W) network inputs; labels (N, H, W).  Returns ``path``.
    """
    fn = "figure_bilateral"
    if getattr(model, "bf", None) is None or getattr(model, "embedder", None) is None:
        raise ValueError(f"{fn}: model must be a SegNet with a bilateral filter (bf) and "
                         f"an embedder; got {type(model).__name__} with bf="
                         f"{getattr(model, 'bf', None)!r}")
    images, labels = _segmentation_inputs(fn, images, labels)
    rows = _rows(fn, count, len(images))
    x = np.ascontiguousarray(images[:rows], np.float32)
    before, after, _ = _scores(model, x)
    rgb = to_rgb(x, mean, scale)
    names = list(class_names) if class_names is not None else []
    cols = ["image", "labels", "FC8 score, before BF", "FC8 score, after BF",
            "argmax, before BF", "argmax, after BF"]
    argmax = (before.argmax(1), after.argmax(1))
    present = _present(class_names, [labels[:rows], *argmax])
    fig, axes = panel_grid(rows, len(cols), title, dpi, legend=len(present),
                           space_after={3: 1.0}, row_gap=0.2)
    for n in range(rows):
        cls = _main_class(labels[n])
        lo = min(before[n, cls].min(), after[n, cls].min())
        hi = max(before[n, cls].max(), after[n, cls].max())
        ax = axes[n]
        show(ax[0], rgb[n])
        ax[0].set_ylabel(f"image {n + 1}")
        show(ax[1], labels_rgb(labels[n]))
        for a, s in zip(ax[2:4], (before[n, cls], after[n, cls])):
            im = show(a, s, cmap="viridis", vmin=lo, vmax=hi)
        show(ax[4], labels_rgb(argmax[0][n]))
        show(ax[5], labels_rgb(argmax[1][n]))
        name = names[cls] if cls < len(names) else f"class {cls}"
        colorbar(fig, im, ax[3], ax[3], f"score of {name}")
    for a, t in zip(axes[0], cols):
        a.set_title(t, fontsize="medium")
    if present:
        class_legend(fig, present, names)
    return save_figure(fn, fig, path)


def figure_predictions(path, images, labels, predictions, mean, scale, count=4,
                       class_names=None, dpi=DPI, title="Segmentations"):
    """Per image (one row): the image, its labels and each model's predicted labels.

    images (N, 3, H, W) network inputs; labels (N, H, W); ``predictions``: name ->
    labels (N, H, W).  Returns ``path``.
    """
    fn = "figure_predictions"
    images, labels = _segmentation_inputs(fn, images, labels)
    if not isinstance(predictions, dict) or not predictions:
        raise ValueError(f"{fn}: predictions must be a non-empty dict name -> (N, H, W)")
    preds = {k: _check(fn, f"predictions[{k!r}]", v, 3, "(N, H, W)", dtype=None)
             for k, v in predictions.items()}
    _check_same(fn, [(f"predictions[{k!r}]", v.shape, labels.shape, "(N, H, W) of labels")
                     for k, v in preds.items()])
    rows = _rows(fn, count, len(images))
    rgb = to_rgb(images[:rows], mean, scale)
    cols = ["image", "labels"] + list(preds)
    present = _present(class_names, [labels[:rows]] + [p[:rows] for p in preds.values()])
    fig, axes = panel_grid(rows, len(cols), title, dpi, legend=len(present))
    for n in range(rows):
        show(axes[n, 0], rgb[n])
        axes[n, 0].set_ylabel(f"image {n + 1}")
        for a, lab in zip(axes[n, 1:], [labels[n]] + [p[n] for p in preds.values()]):
            show(a, labels_rgb(lab))
    for a, t in zip(axes[0], cols):
        a.set_title(t, fontsize="medium")
    if present:
        class_legend(fig, present, class_names)
    return save_figure(fn, fig, path)


# ---------------------------------------------------------------- Fig. 7

def _curve(fn, name, value):
    """(x (K,), mean (K,), band (K,) or None, per-seed (S, K) or None) of one curve."""
    if not isinstance(value, (tuple, list)) or len(value) not in (2, 3):
        raise ValueError(f"{fn}: curves[{name!r}] must be (half-widths, mIoU) or "
                         f"(half-widths, mIoU, spread); got {type(value).__name__}")
    x = np.asarray(value[0], np.float64)
    y = np.asarray(value[1], np.float64)
    if x.ndim != 1 or y.shape[-1:] != x.shape or y.ndim not in (1, 2) or not x.size:
        raise ValueError(f"{fn}: curves[{name!r}]: half-widths must be (K,) and mIoU (K,) "
                         f"or (S, K) per seed; got {x.shape} and {y.shape}")
    seeds = y if y.ndim == 2 else None
    mean = y.mean(0) if seeds is not None else y
    band = seeds.std(0, ddof=1) if seeds is not None and len(seeds) > 1 else None
    if len(value) == 3:
        band = np.asarray(value[2], np.float64)
        if band.shape != x.shape:
            raise ValueError(f"{fn}: curves[{name!r}]: the spread must be (K,) = "
                             f"{x.shape}; got {band.shape}")
    return x, mean, band, seeds


def figure_trimap(path, curves, reference=None, dpi=DPI,
                  title="Fig. 7: mIoU within a band around label boundaries (trimap)"):
    """Fig. 7: mIoU against the trimap half-width, one curve per model.

    ``curves``: name -> (half-widths (K,), mIoU in % (K,)), or (half-widths, mIoU per
    seed (S, K)): then the mean is drawn with a band of one standard deviation over the
    seeds, or (half-widths, mIoU (K,), spread (K,)) with the band given.
    ``reference``: the name of one curve (e.g. the baseline).  A second panel then shows
    every curve minus it, where variants a point or two apart no longer hide under the
    spread of the absolute values; with per-seed curves of as many seeds, the band there
    is the spread of the paired (same-seed) differences.  Returns ``path``.
    """
    fn = "figure_trimap"
    if not isinstance(curves, dict) or not curves:
        raise ValueError(f"{fn}: curves must be a non-empty dict name -> (half-widths, "
                         f"mIoU); got {type(curves).__name__}")
    parsed = {name: _curve(fn, name, v) for name, v in curves.items()}
    if reference is not None:
        if reference not in parsed:
            raise ValueError(f"{fn}: reference {reference!r} is not one of the curves "
                             f"{list(parsed)}")
        x_ref = parsed[reference][0]
        for name, (x, *_) in parsed.items():
            if not np.array_equal(x, x_ref):
                raise ValueError(f"{fn}: curves[{name!r}] must have the half-widths of the "
                                 f"reference {reference!r} {x_ref.tolist()}; got {x.tolist()}")
    fig = new_figure(11.5, 4.8, dpi, layout="constrained")
    axes = fig.subplots(1, 2 if reference is not None else 1, squeeze=False)[0]
    palette = [f"C{k}" for k in range(10)]
    markers = "osD^vP*Xph"
    for k, (name, (x, mean, band, _)) in enumerate(parsed.items()):
        ref = name == reference
        style = dict(color="black" if ref else palette[k % 10], marker=markers[k % 10],
                     markersize=4, lw=2.4 if ref else 1.6, label=name)
        axes[0].plot(x, mean, **style)
        if band is not None:
            axes[0].fill_between(x, mean - band, mean + band, color=style["color"],
                                 alpha=0.15, lw=0)
        if reference is None:
            continue
        _, ref_mean, _, ref_seeds = parsed[reference]
        seeds = parsed[name][3]
        diff = mean - ref_mean
        axes[1].plot(x, diff, **style)
        if not ref and seeds is not None and ref_seeds is not None and \
                len(seeds) == len(ref_seeds) > 1:
            spread = (seeds - ref_seeds).std(0, ddof=1)
            axes[1].fill_between(x, diff - spread, diff + spread, color=style["color"],
                                 alpha=0.12, lw=0)
    axes[0].set_ylabel("mIoU (%)")
    axes[0].set_title("mIoU in the trimap")
    if reference is not None:
        axes[1].axhline(0.0, color="black", lw=0.8)
        axes[1].set_ylabel(f"mIoU − {reference} (points)")
        axes[1].set_title(f"difference to {reference}")
    from matplotlib.ticker import MaxNLocator
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trimap half-width (pixels)")
        ax.grid(True, color="0.9")
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
                    title="model")
    fig.suptitle(title, fontsize="large")
    return save_figure(fn, fig, path)


# ---------------------------------------------------------------- Fig. 8

def figure_flow(path, image1, flow_true, flows, mean, scale, count=3, epes=None, dpi=DPI,
                title="Fig. 8: optical flow in the Middlebury colour coding"):
    """Fig. 8: per image (one row), frame 1, the true flow and each model's flow in the
    Middlebury colour coding (hue: direction, saturation: length), and the colour key.

    One scale per row, set by the longest true flow vector: its length is drawn at full
    saturation (the rim of the key, whose axes are in pixels); longer predicted flow is
    drawn darker.  Each predicted panel gives that image's end-point error (EPE).

    image1 (N, 3, H, W) network inputs; flow_true (N, 2, H, W); flows: name ->
    (N, 2, H, W).  ``epes``: name -> an EPE measured elsewhere (e.g. over the whole
    test set), shown in the column titles.  Returns ``path``.
    """
    fn = "figure_flow"
    image1 = _check(fn, "image1", image1, 4, "(N, 3, H, W)")
    flow_true = _check(fn, "flow_true", flow_true, 4, "(N, 2, H, W)")
    N, _, H, W = image1.shape
    _check_same(fn, [("flow_true", flow_true.shape, (N, 2, H, W), "(N, 2, H, W)")])
    if not isinstance(flows, dict) or not flows:
        raise ValueError(f"{fn}: flows must be a non-empty dict name -> (N, 2, H, W)")
    flows = {k: _check(fn, f"flows[{k!r}]", v, 4, "(N, 2, H, W)") for k, v in flows.items()}
    _check_same(fn, [(f"flows[{k!r}]", v.shape, flow_true.shape, "(N, 2, H, W) of flow_true")
                     for k, v in flows.items()])
    epes = dict(epes or {})
    unknown = [k for k in epes if k not in flows]
    if unknown:
        raise ValueError(f"{fn}: epes names {unknown} that are not in flows {list(flows)}")
    rows = _rows(fn, count, N)
    rgb = to_rgb(image1[:rows], mean, scale)
    cols = ["frame 1", "true flow"] + [
        f"{k}\n(mean EPE {epes[k]:.3f} px)" if k in epes else k for k in flows] + ["colour key"]
    fig, axes = panel_grid(rows, len(cols), title, dpi, space_after={len(cols) - 2: 0.55},
                           row_gap=0.45, bottom=0.45, top=0.85 if epes else 0.65)
    key = wheel_legend(129)
    for n in range(rows):
        ft = flow_true[n].transpose(1, 2, 0)
        m = float(np.sqrt((ft ** 2).sum(-1)).max()) or 1.0
        ax = axes[n]
        show(ax[0], rgb[n])
        ax[0].set_ylabel(f"image {n + 1}")
        show(ax[1], flow_to_color(ft, m))
        for a, f in zip(ax[2:-1], flows.values()):
            show(a, flow_to_color(f[n].transpose(1, 2, 0), m))
            a.set_xlabel(f"EPE here {end_point_error(f[n:n + 1], flow_true[n:n + 1]):.2f} px")
        # the key: the flow (u, v) at a point is its offset from the centre, in pixels
        ax[-1].imshow(key, extent=(-m, m, m, -m), interpolation="bilinear")
        ax[-1].set_xticks([-m, 0, m], [f"{-m:.1f}", "0", f"{m:.1f}"])
        ax[-1].set_yticks([-m, 0, m], [f"{-m:.1f}", "0", f"{m:.1f}"])
        ax[-1].set_xlabel("u (px)")
        ax[-1].set_ylabel("v (px, down)")
        ax[-1].tick_params(labelsize="small")
    for a, t in zip(axes[0], cols):
        a.set_title(t, fontsize="medium")
    return save_figure(fn, fig, path)
