"""The library's random number generator: one seedable NumPy ``Generator``.

Weight initialisers (``segnp.nn.init``) and dropout masks draw from it on the host, then
move the values to the active backend, so a NumPy run is reproducible from one
``manual_seed`` call and a CuPy run sees the same initial weights and masks.

Until ``manual_seed`` is called the generator is seeded from the operating system's
entropy (like ``numpy.random.default_rng()``), so unseeded runs differ.
"""

import numpy as np

from ._validate import is_int

__all__ = ["manual_seed", "get_rng"]

_rng = np.random.default_rng()


def manual_seed(seed):
    """Re-seed the library generator with a non-negative integer; returns it.

    The generator object stays the same (only its state changes), so code holding the
    result of an earlier ``get_rng()`` sees the new seed too.
    """
    if not is_int(seed) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative integer; got {seed!r}")
    _rng.bit_generator.state = type(_rng.bit_generator)(int(seed)).state
    return _rng


def get_rng():
    """The library generator (a ``numpy.random.Generator``)."""
    return _rng
