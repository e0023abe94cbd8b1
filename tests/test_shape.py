"""Shape functions reshape, transpose, getitem, concat, stack, pad: NumPy forward, float64
gradient checks, gradients written out by hand where they add up, and errors."""
import numpy as np
import pytest

import segnp.functions as F
from segnp import Tensor, check_grad


def _x(shape=(3, 4, 5), seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("shape", [(12, 5), (60,), (2, -1, 5), (5, 3, 4), (-1,)])
def test_reshape(shape):
    x = _x()
    y = F.reshape(Tensor(x), shape)
    np.testing.assert_array_equal(y.numpy(), x.reshape(shape))
    check_grad(lambda t: F.reshape(t, shape), [x], name=f"reshape {shape}")
    np.testing.assert_array_equal(Tensor(x).reshape(*shape).numpy(), x.reshape(shape))


@pytest.mark.parametrize("axes", [None, (1, 0, 2), (2, 0, 1), (-1, 0, 1), (0, 1, 2)])
def test_transpose(axes):
    x = _x()
    np.testing.assert_array_equal(F.transpose(Tensor(x), axes).numpy(), np.transpose(x, axes))
    check_grad(lambda t: F.transpose(t, axes), [x], name=f"transpose {axes}")


def test_transpose_methods():
    x = _x((3, 4))
    np.testing.assert_array_equal(Tensor(x).T.numpy(), x.T)
    np.testing.assert_array_equal(Tensor(_x()).transpose(2, 0, 1).numpy(),
                                  _x().transpose(2, 0, 1))


INDICES = [
    2, -1, (1, 2), slice(1, 3), (slice(None), slice(None, None, -2)),
    (Ellipsis, 1), (None, 1, slice(2, 4)), (1, Ellipsis, None),
    np.array([0, 2, 2, 0]),                      # repeats: gradients must add up
    (slice(None), [3, 1, 3]),
    (np.array([0, 1, 1]), slice(None), np.array([4, 0, 4])),
    "mask",
]


@pytest.mark.parametrize("index", INDICES, ids=lambda i: repr(i).replace(" ", ""))
def test_getitem_matches_numpy_and_gradients(index):
    x = _x()
    if isinstance(index, str):
        index = x > 0.3
    y = F.getitem(Tensor(x), index)
    np.testing.assert_array_equal(y.numpy(), x[index])
    check_grad(lambda t: F.getitem(t, index), [x], name=f"getitem {index!r}")
    np.testing.assert_array_equal(Tensor(x)[index].numpy(), x[index])


def test_getitem_repeated_indices_add_their_gradients():
    x = _x((5,))
    index = np.array([4, 1, 4, 4, 0])
    gy = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    t = Tensor(x, requires_grad=True)
    t[index].backward(gy)
    expected = np.zeros(5)
    for k, i in enumerate(index):
        expected[i] += gy[k]
    np.testing.assert_array_equal(t.grad, expected)


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("kind", ["clamp", "random", "one target 20 times"])
def test_getitem_one_index_array_gradient_matches_a_loop(axis, kind):
    # x[:, idx] takes the round-by-round path (or add.at past 16 repeats); float32 sums
    # in pick order, so the loop below must agree to the bit.
    rng = np.random.default_rng(axis)
    x = rng.standard_normal((4, 5, 6)).astype(np.float32)
    n = x.shape[axis]
    idx = {"clamp": np.minimum(np.arange(n + 3), n - 2),
           "random": rng.integers(-n, n, 3 * n),
           "one target 20 times": np.full(20, 1)}[kind]
    index = (slice(None),) * axis + (idx,)
    t = Tensor(x, requires_grad=True)
    y = t[index]
    gy = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(gy)
    expected = np.zeros_like(x)
    for k, i in enumerate(idx):
        expected[(slice(None),) * axis + (i,)] += gy[(slice(None),) * axis + (k,)]
    np.testing.assert_array_equal(t.grad, expected)


def test_getitem_accepts_integer_tensor_indices():
    x = _x((4, 3))
    idx = Tensor(np.array([3, 0]))
    t = Tensor(x, requires_grad=True)
    y = t[idx, 1]
    np.testing.assert_array_equal(y.numpy(), x[[3, 0], 1])
    y.sum().backward()
    expected = np.zeros_like(x)
    expected[[3, 0], 1] = 1
    np.testing.assert_array_equal(t.grad, expected)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_concat(axis):
    shapes = [(3, 4, 5), (3, 4, 5), (3, 4, 5)]
    shapes = [tuple(n + k if i == axis % 3 else n for i, n in enumerate(s))
              for k, s in enumerate(shapes)]
    xs = [_x(s, seed=k) for k, s in enumerate(shapes)]
    y = F.concat([Tensor(x) for x in xs], axis=axis)
    np.testing.assert_array_equal(y.numpy(), np.concatenate(xs, axis=axis))
    check_grad(lambda *ts: F.concat(list(ts), axis=axis), xs, name=f"concat axis={axis}")


def test_concat_passes_gradients_only_where_needed():
    a, b = Tensor(_x((2, 3)), requires_grad=True), Tensor(_x((2, 2), seed=1))
    gy = _x((2, 5), seed=2)
    F.concat([a, b], axis=1).backward(gy)
    np.testing.assert_array_equal(a.grad, gy[:, :3])
    assert b.grad is None


@pytest.mark.parametrize("axis", [0, 1, 3, -1, -4])
def test_stack(axis):
    xs = [_x((3, 4, 5), seed=k) for k in range(3)]
    y = F.stack([Tensor(x) for x in xs], axis=axis)
    np.testing.assert_array_equal(y.numpy(), np.stack(xs, axis=axis))
    check_grad(lambda *ts: F.stack(ts, axis=axis), xs, name=f"stack axis={axis}")


@pytest.mark.parametrize("pad_width,value", [(1, 0.0), ((2, 1), 0.0), (((0, 1), (2, 0), (1, 3)), -1.5),
                                             (((1, 1),), 2.0), (0, 0.0)])
def test_pad(pad_width, value):
    x = _x()
    y = F.pad(Tensor(x), pad_width, value=value)
    np.testing.assert_array_equal(y.numpy(), np.pad(x, pad_width, constant_values=value))
    check_grad(lambda t: F.pad(t, pad_width, value=value), [x], name=f"pad {pad_width}")


def test_pad_gradient_is_the_crop():
    x = Tensor(_x((2, 3)), requires_grad=True)
    gy = _x((5, 4), seed=3)
    F.pad(x, ((1, 2), (0, 1))).backward(gy)
    np.testing.assert_array_equal(x.grad, gy[1:3, 0:3])


def test_float32_is_kept_through_every_shape_op():
    x = Tensor(_x((2, 3, 4)).astype(np.float32), requires_grad=True)
    y = F.concat([F.reshape(x, (6, 4)), F.transpose(x, (1, 0, 2)).reshape(6, 4)], axis=0)
    y = F.stack([F.pad(y, 1), F.pad(y, 1)], axis=0)[:, 1:-1, 1:-1]
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, np.full((2, 3, 4), 4.0, np.float32))


def test_errors_name_the_function_expected_and_given():
    x = Tensor(_x((3, 4)))
    with pytest.raises(ValueError, match=r"reshape: cannot reshape an array of shape \(3, 4\) "
                                         r"\(12 elements\) into \(5, 2\)"):
        F.reshape(x, (5, 2))
    with pytest.raises(ValueError, match=r"transpose: axes must be a permutation of 0..1 .* "
                                         r"got \(0, 0\)"):
        F.transpose(x, (0, 0))
    with pytest.raises(ValueError, match=r"concat: every input must match \(3, 4\) except on "
                                         r"axis 0; input 1 has shape \(2, 3\)"):
        F.concat([x, Tensor(_x((2, 3)))], axis=0)
    with pytest.raises(ValueError, match=r"concat: axis must be in \[-2, 1\] for 2 dims; got 2"):
        F.concat([x, x], axis=2)
    with pytest.raises(TypeError, match=r"concat: expected a non-empty list or tuple of "
                                        r"Tensors; got list of length 0"):
        F.concat([])
    with pytest.raises(TypeError, match=r"stack: expected a non-empty list or tuple of "
                                        r"Tensors; got Tensor"):
        F.stack(x)
    with pytest.raises(ValueError, match=r"stack: every input must have the shape of input 0, "
                                         r"\(3, 4\); input 1 has shape \(4, 3\)"):
        F.stack([x, x.T])
    with pytest.raises(ValueError, match=r"pad: pad widths must be >= 0; got -1"):
        F.pad(x, -1)
    with pytest.raises(ValueError, match=r"pad: pad_width must broadcast to one \(before, "
                                         r"after\) pair for each of the 2 axes; got"):
        F.pad(x, ((1, 1), (1, 1), (1, 1)))
    with pytest.raises(TypeError, match=r"pad: pad_width must be an int.*; got 1.5"):
        F.pad(x, 1.5)
    with pytest.raises(ValueError, match=r"pad: mode must be 'constant'; got 'reflect'"):
        F.pad(x, 1, mode="reflect")
