"""Numerical gradient checking in float64.

``check_grad`` compares the gradients of the autograd with central finite differences:

1. a random upstream gradient ``gy`` turns ``fn`` into the scalar ``L = sum(fn(x) * gy)``;
2. along one random direction ``v`` per input, ``(L(x + h v) - L(x - h v)) / 2h`` must
   equal ``sum_i <grad_i, v_i>`` (this covers every element at once);
3. for inputs of at most ``max_elementwise`` elements, every element is perturbed in turn
   and the worst mismatch is reported with its index.
"""
import numpy as np

from .autograd import Tensor, no_grad
from .backends import get_backend

__all__ = ["check_grad", "GradcheckError"]


class GradcheckError(AssertionError):
    """Raised by :func:`check_grad` when analytic and numerical gradients disagree."""


def _as_outputs(out):
    return out if isinstance(out, (tuple, list)) else (out,)


def check_grad(fn, inputs, wrt=None, eps=1e-6, atol=1e-6, rtol=1e-4, seed=0,
               max_elementwise=64, name=None):
    """Check the gradients of ``fn(*tensors)`` with respect to float inputs.

    Args:
        fn: callable taking one Tensor per entry of ``inputs``; returns a Tensor or a
            tuple of Tensors.
        inputs: arrays, scalars or Tensors.  Floating ones are cast to float64;
            others (labels, ``None``) are passed as they are.
        wrt: indices of the inputs to differentiate; default: every floating input.
        eps: finite-difference step.
        atol, rtol: tolerance ``|a - n| <= atol + rtol * |n|``.
        seed: seeds the upstream gradient and the direction.
        max_elementwise: inputs with at most this many elements are also checked
            element by element.
        name: used in the error message (default: ``fn.__name__``).

    Returns the list of analytic gradients (host float64 arrays, one per ``wrt`` entry).
    Raises :class:`GradcheckError` naming the input and the worst index on mismatch.
    """
    backend = get_backend()
    name = name or getattr(fn, "__name__", "fn")
    rng = np.random.default_rng(seed)

    host = []
    for x in inputs:
        if isinstance(x, Tensor):
            x = x.numpy()
        if x is not None and not isinstance(x, str) and np.asarray(x).dtype.kind == "f":
            x = np.array(x, dtype=np.float64)
        host.append(x)
    if wrt is None:
        wrt = [i for i, x in enumerate(host) if isinstance(x, np.ndarray) and x.dtype.kind == "f"]
    wrt = list(wrt)
    if not wrt:
        raise ValueError(f"check_grad: {name} has no floating input to differentiate")

    def make_tensors(values, requires):
        out = []
        for i, x in enumerate(values):
            if isinstance(x, np.ndarray):
                out.append(Tensor(backend.asarray(x), requires_grad=(i in requires)))
            else:
                out.append(x)
        return out

    # Analytic gradients with a random upstream gradient.
    tensors = make_tensors(host, set(wrt))
    outs = _as_outputs(fn(*tensors))
    gys = [rng.standard_normal(o.shape) for o in outs]
    total = None
    for o, gy in zip(outs, gys):
        if o.dtype != np.float64:
            raise GradcheckError(f"check_grad: {name} returned dtype {o.dtype} for float64 "
                                 f"inputs; every op must keep float64")
        term = (o * Tensor(backend.asarray(gy))).sum()
        total = term if total is None else total + term
    total.backward()
    analytic = []
    for i in wrt:
        g = tensors[i].grad
        analytic.append(np.zeros_like(host[i]) if g is None else backend.to_numpy(g))

    def loss_at(values):
        with no_grad():
            res = _as_outputs(fn(*make_tensors(values, set())))
            return sum(float(np.sum(backend.to_numpy(o.data) * gy)) for o, gy in zip(res, gys))

    def perturbed(index, delta):
        values = list(host)
        values[index] = host[index] + delta
        return values

    # Element by element, for small inputs.
    for a, i in zip(analytic, wrt):
        x = host[i]
        if x.size > max_elementwise:
            continue
        num = np.zeros_like(x)
        for j in range(x.size):
            delta = np.zeros_like(x)
            delta.flat[j] = eps
            num.flat[j] = (loss_at(perturbed(i, delta)) - loss_at(perturbed(i, -delta))) / (2 * eps)
        err = np.abs(a - num) - (atol + rtol * np.abs(num))
        if x.size and err.max() > 0:
            worst = tuple(int(k) for k in np.unravel_index(int(np.argmax(err)), x.shape))
            raise GradcheckError(
                f"check_grad: {name}: gradient of input {i} wrong at index {worst}: "
                f"analytic {a[worst]:.10g}, numeric {num[worst]:.10g}")

    # Along one random direction through every checked input at once.
    dirs = {i: rng.standard_normal(np.shape(host[i])) for i in wrt}
    norm = max(np.sqrt(sum(float(np.sum(d * d)) for d in dirs.values())), 1e-300)
    for i in wrt:
        dirs[i] /= norm
    plus, minus = list(host), list(host)
    for i in wrt:
        plus[i] = host[i] + eps * dirs[i]
        minus[i] = host[i] - eps * dirs[i]
    numeric = (loss_at(plus) - loss_at(minus)) / (2 * eps)
    predicted = sum(float(np.sum(a * dirs[i])) for a, i in zip(analytic, wrt))
    if abs(predicted - numeric) > atol + rtol * abs(numeric):
        raise GradcheckError(
            f"check_grad: {name}: directional derivative mismatch: analytic {predicted:.10g}, "
            f"numeric {numeric:.10g} (inputs {wrt})")

    return analytic
