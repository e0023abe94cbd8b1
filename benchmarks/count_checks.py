"""How many argument checks one ``F.segaware_conv2d`` forward makes, per backend.

Counts the calls, during one forward (the mask and the masked convolution), into
every check of ``segnp/_validate.py`` (not its helpers ``is_int`` and ``_dtype_of``)
and into the window and backend functions whose work is checking an argument
(``CHECKS`` below: the public function's one build of the Window, the kernels' own
checks).  The CUDA runtime's check of each launch against the kernel's parsed C
signature (``runtime.check_args``: dtype, contiguity, int32) is a launch invariant and
is counted on its own line.  Prints figures; not a test.

    PYTHONPATH=$PWD python3 benchmarks/count_checks.py [--backend numpy cuda-emulator]
"""
import argparse
import collections
import os
import sys

import numpy as np

import segnp
import segnp.functions as F
from segnp.backends import using_backend

ROOT = os.path.dirname(os.path.abspath(segnp.__file__))
# Checking functions outside _validate.py, by (file relative to segnp/, name).  Names
# from before and after issue 24 are both listed, so the script measures either tree.
CHECKS = {
    ("window.py", "pair"), ("window.py", "segaware_window"), ("window.py", "of"),
    ("window.py", "segaware"), ("window.py", "check_operands"),
    ("backends/numpy/segaware.py", "_check_mask"),
    ("backends/numpy/segaware.py", "_bilateral_setup"),
    ("backends/numpy/masked_conv.py", "_conv_setup"),
    ("backends/cuda/_common.py", "check_real"), ("backends/cuda/_common.py", "image"),
    ("backends/cuda/_common.py", "per_output"), ("backends/cuda/_common.py", "same_dtype"),
    ("backends/cuda/_common.py", "checked_window"),
    ("backends/cuda/_common.py", "plane_limit"),
    ("backends/cuda/masked_conv.py", "_inputs"),
    ("backends/cuda/masked_conv.py", "_backward_inputs"),
}
LAUNCH = ("backends/cuda/runtime.py", "check_args")


def _named(fn):
    """A check of _validate.py itself, not a helper inside one (is_int, generators)."""
    return not fn.startswith(("<", "_")) and fn != "is_int"


def count(backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 16, 16)).astype(np.float32)
    e = rng.standard_normal((2, 4, 16, 16)).astype(np.float32)
    W = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    b = np.zeros(8, np.float32)
    calls = collections.Counter()

    def profile(frame, event, _arg):
        if event != "call":
            return
        path = frame.f_code.co_filename
        if not path.startswith(ROOT):
            return
        key = (os.path.relpath(path, ROOT), frame.f_code.co_name)
        if key in CHECKS or key == LAUNCH or (key[0] == "_validate.py" and _named(key[1])):
            calls[key] += 1

    with using_backend(backend):
        F.segaware_conv2d(x, e, W, b, lam=0.5)  # builds (emulator) and caches kernels
        sys.setprofile(profile)
        try:
            F.segaware_conv2d(x, e, W, b, lam=0.5)
        finally:
            sys.setprofile(None)
    return calls


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", nargs="+", default=["numpy", "cuda-emulator"])
    args = ap.parse_args()
    for name in args.backend:
        calls = count(name)
        launch = calls.pop(LAUNCH, 0)
        print(f"{name}: {sum(calls.values())} argument checks per segaware_conv2d forward"
              f" (+ {launch} launch signature checks by the CUDA runtime)")
        for (path, fn), n in sorted(calls.items()):
            print(f"  {n:3d}  {path}:{fn}")


if __name__ == "__main__":
    main()
