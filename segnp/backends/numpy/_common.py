"""What the NumPy segmentation-aware kernels (``segaware.py``, ``masked_conv.py``) share:
a tap's shifted copy of the input and the denominator of Eqs. 4 and 7.  The taps
themselves, and the one check the kernels keep, are the Window's (``Window.taps``,
``Window.check_operands`` in ``segnp/window.py``).
"""
import numpy as np

from ...window import NORM_EPS


def shifted(x, rect, tap, out, mk=None):
    """``out[:, :, o] = x[:, :, tap pixel of o]`` (times ``mk[:, :, o]`` when given)
    inside ``rect``, 0 outside it."""
    (r, c), OH, OW = rect, out.shape[2], out.shape[3]
    if (r.start, r.stop, c.start, c.stop) != (0, OH, 0, OW):
        out[:, :, :r.start] = 0
        out[:, :, r.stop:] = 0
        out[:, :, r, :c.start] = 0
        out[:, :, r, c.stop:] = 0
    if mk is None:
        out[:, :, r, c] = x[:, :, tap[0], tap[1]]
    else:
        np.multiply(x[:, :, tap[0], tap[1]], mk[:, :, r, c], out=out[:, :, r, c])
    return out


def mask_sum(m):
    """The denominator of Eqs. 4 and 7: sum_k m_k + eps, (N, OH, OW)."""
    s = m.sum(axis=1)
    s += NORM_EPS
    return s
