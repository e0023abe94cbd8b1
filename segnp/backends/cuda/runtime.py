"""What the CuPy runtime and the CPU emulator share: the kernel cache, and the check of
every launch's arguments against the kernel's parsed parameter list (``source.py``).

A *runtime* ``rt`` is the one object a launcher (``conv.py``, ``masked_conv.py``, ...)
talks to:

- ``rt.xp``: the array module (numpy for the emulator, cupy on a GPU);
- ``rt.kernel(source, name, dtype, defines=None)``: the kernel ``name`` of
  ``segnp/backends/cuda/<source>``, instantiated as ``name<float>`` or ``name<double>``
  for ``dtype`` (a kernel that is not a template ignores ``dtype``).  It returns a
  callable ``k(grid, block, args, shared_mem=0)``; ``grid`` and ``block`` are ints or
  tuples of up to three ints, ``args`` a tuple of C-contiguous ``rt.xp`` arrays and
  NumPy scalars whose dtypes match the C parameter types exactly.  ``defines`` (a dict)
  become ``#define`` lines in front of the source (tile shapes, for instance);
- ``rt.threads``: threads per block for 1-D launches, ``rt.max_blocks``: the most
  blocks a 1-D launch may use (kernels walk their outputs with a grid-stride loop, so
  both only change speed; tests vary them).

Both runtimes check every launch the same way, because a mistake here is silent on a
real GPU: RawKernel ignores strides, and a Python ``int`` passed where the kernel takes
``int`` is sent as 64 bits.  A mismatch raises TypeError naming the kernel and the
parameter.
"""
import numpy as np

from .source import CUDA_DIR, c_float_type, load_source, parse_kernels, source_path


def dim3(value, what):
    """An int or a tuple of up to three positive ints -> a 3-tuple of Python ints."""
    t = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if not 1 <= len(t) <= 3 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer))
                                   or v < 1 for v in t):
        raise ValueError(f"{what} must be a positive int or a tuple of 1 to 3 positive ints; "
                         f"got {value!r}")
    return tuple(int(v) for v in t) + (1,) * (3 - len(t))


def check_args(sig, dtype, args, array_type):
    """TypeError unless ``args`` match the kernel's C parameters one for one."""
    who = f"kernel {sig.name_expression(dtype)}"
    if not isinstance(args, tuple) or len(args) != len(sig.params):
        got = len(args) if isinstance(args, tuple) else type(args).__name__
        raise TypeError(f"{who}: expected a tuple of {len(sig.params)} arguments "
                        f"({', '.join(p.name for p in sig.params)}); got {got}")
    for p, a in zip(sig.params, args):
        want = sig.dtype_of(p, dtype)
        if p.pointer:
            if not isinstance(a, array_type):
                raise TypeError(f"{who}: {p.name} must be a {array_type.__module__}.ndarray "
                                f"of {want}; got {type(a).__name__}")
            if a.dtype != want:
                raise TypeError(f"{who}: {p.name} must be an array of {want}; got {a.dtype}")
            if not a.flags.c_contiguous:
                raise TypeError(f"{who}: {p.name} must be C-contiguous (kernels ignore "
                                f"strides); got strides {a.strides}")
            # cupy's flags have no ``writeable`` (device arrays always are).
            if not p.const and not getattr(a.flags, "writeable", True):
                raise TypeError(f"{who}: {p.name} is written by the kernel but the array "
                                f"is read-only")
        else:
            if not isinstance(a, np.generic) or a.dtype != want:
                got = (f"numpy {a.dtype} scalar" if isinstance(a, np.generic)
                       else f"{type(a).__name__} {a!r}")
                ctype = c_float_type(dtype) if p.ctype == sig.tparam else p.ctype
                raise TypeError(f"{who}: {p.name} is a C {ctype} and must be passed as "
                                f"numpy.{want.name}; got {got}")


class Runtime:
    """Caches kernels by (source, name, dtype, defines); subclasses build them."""

    xp = np
    name = "runtime"

    def __init__(self, threads=256, max_blocks=65535, source_dir=None):
        if not 1 <= int(threads) <= 1024:
            raise ValueError(f"{type(self).__name__}: threads must be in [1, 1024]; "
                             f"got {threads}")
        if not 1 <= int(max_blocks) <= 2 ** 31 - 1:
            raise ValueError(f"{type(self).__name__}: max_blocks must be in [1, 2**31 - 1]; "
                             f"got {max_blocks}")
        self.threads = int(threads)
        self.max_blocks = int(max_blocks)
        self.source_dir = source_dir or CUDA_DIR
        self._kernels = {}

    def kernel(self, source, name, dtype, defines=None):
        dtype = np.dtype(dtype)
        key = (source, name, dtype.str, tuple(sorted((defines or {}).items())))
        k = self._kernels.get(key)
        if k is None:
            text = load_source(source_path(source, self.source_dir), defines)
            sigs = parse_kernels(text)
            if name not in sigs:
                raise ValueError(f"{source}: no __global__ kernel named {name!r}; it has "
                                 f"{sorted(sigs)}")
            if sigs[name].tparam is not None:
                c_float_type(dtype)
            k = self._build(source, text, sigs, sigs[name], dtype)
            self._kernels[key] = k
        return k

    def _build(self, source, text, sigs, sig, dtype):
        raise TypeError(f"{type(self).__name__} cannot build kernels")

    def __repr__(self):
        return f"<segnp runtime {self.name!r} threads={self.threads}>"
