"""im2col / col2im of the NumPy backend against scalar loops written from the definition

    cols[n, c, i, j, oh, ow] = x[n, c, oh*SH - PH + i*DH, ow*SW - PW + j*DW]  (0 outside)

and col2im as its adjoint: <im2col(x), y> == <x, col2im(y)>.
"""
import numpy as np
import pytest

from segnp.backends import get_backend
from naive_ops import naive_col2im, naive_im2col

im2col = get_backend("numpy").im2col
col2im = get_backend("numpy").col2im

# (x shape, ksize, stride, padding, dilation): odd sizes, ints and pairs, a tap that
# never leaves the padding (3x3 input, stride 5, padding 2), padding wider than the window.
CASES = [
    ((2, 3, 7, 9), 3, 1, 0, 1),
    ((2, 3, 7, 9), 3, 1, 1, 1),
    ((2, 3, 7, 9), 3, 2, 1, 1),
    ((1, 2, 9, 7), 3, 1, 2, 2),
    ((2, 2, 7, 9), (2, 3), (2, 1), (1, 0), (1, 2)),
    ((1, 3, 5, 5), 1, 1, 0, 1),
    ((2, 1, 11, 6), 5, 3, 2, 1),
    ((1, 2, 3, 3), 3, 5, 2, 1),
    ((1, 2, 5, 7), 2, (1, 3), 4, (3, 1)),
    ((1, 2, 10, 6), (1, 3), (20, 1), (3, 1), 1),   # every window row in the padding
]


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)





@pytest.mark.parametrize("shape,k,s,p,d", CASES)
def test_im2col_matches_naive_loop(shape, k, s, p, d):
    x = np.random.default_rng(0).standard_normal(shape)
    cols = im2col(x, k, s, p, d)
    np.testing.assert_array_equal(cols, naive_im2col(x, k, s, p, d))
    assert cols.flags.c_contiguous


@pytest.mark.parametrize("shape,k,s,p,d", CASES)
def test_col2im_matches_naive_loop(shape, k, s, p, d):
    rng = np.random.default_rng(1)
    ref_shape = naive_im2col(np.zeros(shape), k, s, p, d).shape
    cols = rng.standard_normal(ref_shape)
    got = col2im(cols, shape[2:], s, p, d)
    np.testing.assert_allclose(got, naive_col2im(cols, shape[2:], s, p, d), rtol=1e-12,
                               atol=1e-12)
    assert got.shape == shape and got.flags.c_contiguous


@pytest.mark.parametrize("shape,k,s,p,d", CASES)
def test_col2im_is_the_adjoint_of_im2col(shape, k, s, p, d):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape)
    cols = im2col(x, k, s, p, d)
    y = rng.standard_normal(cols.shape)
    lhs = float(np.sum(cols * y))
    rhs = float(np.sum(x * col2im(y, shape[2:], s, p, d)))
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))


def test_ints_and_pairs_agree_and_dtype_is_kept():
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 7)).astype(np.float32)
    a = im2col(x, 3, 2, 1, 2)
    b = im2col(x, (3, 3), [2, 2], (1, 1), (2, 2))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32
    back = col2im(a, (8, 7), 2, 1, 2)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, col2im(a, [8, 7], (2, 2), [1, 1], (2, 2)))


def test_bad_input_names_the_function_expected_and_given():
    x = np.zeros((2, 3, 5, 5))
    with pytest.raises(ValueError, match=r"im2col: x must be \(N, C, H, W\); got shape \(3, 5, 5\)"):
        im2col(x[0], 3)
    with pytest.raises(ValueError, match=r"im2col: padding must be >= 0; got -1"):
        im2col(x, 3, padding=-1)
    with pytest.raises(ValueError, match=r"im2col: stride must be >= 1; got \(1, 0\)"):
        im2col(x, 3, stride=(1, 0))
    with pytest.raises(TypeError, match=r"im2col: ksize must be an int or a pair of ints; got 2.5"):
        im2col(x, 2.5)
    with pytest.raises(ValueError, match=r"im2col: a 7x7 window .* does not fit an input of size \(5, 5\)"):
        im2col(x, 7)
    cols = im2col(x, 3, padding=1)
    with pytest.raises(ValueError, match=r"col2im: cols must be \(N, C, KH, KW, OH, OW\); got shape"):
        col2im(cols[0], (5, 5), padding=1)
    with pytest.raises(ValueError, match=r"col2im: cols hold a \(5, 5\) output, but size \(6, 5\)"):
        col2im(cols, (6, 5), padding=1)
    with pytest.raises(ValueError, match=r"col2im: size must be the image size \(H, W\); got 5"):
        col2im(cols, 5, padding=1)
