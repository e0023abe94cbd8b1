"""Reference pieces shared by the naive-loop tests, written straight from the paper's
equations (no segnp code), so that every kernel is checked against the same reading."""
import numpy as np


def norm_of(delta, norm):
    """||delta|| of Eq. 3 over every entry: 'l1' sum |.|, 'l2' sqrt(sum .^2), else
    'l2sq' sum .^2."""
    if norm == "l1":
        return np.abs(delta).sum()
    if norm == "l2":
        return np.sqrt((delta ** 2).sum())
    return (delta ** 2).sum()
