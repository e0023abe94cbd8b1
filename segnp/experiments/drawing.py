"""matplotlib helpers for the figures (:mod:`segnp.experiments.figures`): a figure on
an Agg canvas (no pyplot: no display, no global state), a grid of image panels laid out
by hand, colour bars, a legend of label colours, and the atomic PNG save.

matplotlib is imported inside the functions, so that importing segnp does not pay for it.
Lengths are in inches; a figure is ``dpi`` pixels per inch.
"""
import os

import numpy as np

from ..io import atomic_path, label_palette

__all__ = ["DPI", "IGNORE", "new_figure", "save_figure", "panel_grid", "colorbar", "show",
           "class_legend", "mark_pixel"]

DPI = 110
WIDTH = 10.5     # inches of a grid of image panels, before extra space for colour bars
IGNORE = 255     # the label of pixels that belong to no class (VOC's boundaries)
LEGEND_COLUMNS = 8


def new_figure(width, height, dpi, layout=None):
    """A Figure of width x height inches on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fn, fig, path):
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{fn}: the folder of {path!r} does not exist")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi, facecolor="white")
    return path


def panel_grid(rows, cols, title, dpi, legend=False, space_after=None, row_gap=0.12,
                left=0.35, bottom=0.1, top=0.65):
    """A figure with rows x cols square image panels, laid out by hand (in inches) so
    that the images fill it: a layout engine leaves wide gaps around equal-aspect
    images.  ``space_after``: column -> extra inches after it (colour bars, keys);
    ``legend``: room at the bottom for a legend of that many entries; ``top``: room for the title
    and one line of column titles.  Returns (figure, axes (rows, cols))."""
    space_after = space_after or {}
    cell, gap = min(2.0, WIDTH / cols), 0.1
    xs, x = [], left
    for j in range(cols):
        xs.append(x)
        x += cell + gap + space_after.get(j, 0.0)
    width = x - gap + 0.2
    if legend:
        bottom += 0.35 + 0.25 * -(-legend // LEGEND_COLUMNS)
    height = top + rows * cell + (rows - 1) * row_gap + bottom
    fig = new_figure(width, height, dpi)
    axes = np.array([[fig.add_axes((xs[j] / width,
                                    (height - top - i * (cell + row_gap) - cell) / height,
                                    cell / width, cell / height))
                      for j in range(cols)] for i in range(rows)])
    fig.suptitle(title, fontsize="large", y=1 - 0.12 / height, va="top")
    return fig, axes


def colorbar(fig, im, top_ax, bottom_ax, label, pad=0.08, width=0.14):
    """A colour bar right of the axes from ``top_ax`` down to ``bottom_ax`` (inches)."""
    fw = fig.get_size_inches()[0]
    t, b = top_ax.get_position(), bottom_ax.get_position()
    cax = fig.add_axes((t.x1 + pad / fw, b.y0, width / fw, t.y1 - b.y0))
    fig.colorbar(im, cax=cax, label=label)
    return cax


def show(ax, img, title=None, **kw):
    im = ax.imshow(img, interpolation="nearest", **kw)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize="medium")
    return im


def class_legend(fig, present, class_names):
    """A legend at the bottom of the figure of the classes ``present`` (label values),
    in the palette."""
    from matplotlib.patches import Patch
    palette = label_palette() / 255.0
    names = list(class_names)
    handles = [Patch(facecolor=palette[c], edgecolor="0.3",
                     label="ignore" if c == IGNORE else names[c] if c < len(names) else str(c))
               for c in present]
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(len(handles), LEGEND_COLUMNS), frameon=False, title="classes",
               fontsize="medium")


def mark_pixel(ax, row, col):
    """A red cross with a white rim at pixel (row, col): visible on any colour."""
    from matplotlib import patheffects
    ax.plot(col, row, marker="+", color="red", markersize=14, markeredgewidth=2.5,
            path_effects=[patheffects.withStroke(linewidth=4.5, foreground="white")])
