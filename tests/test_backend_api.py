"""Every backend exposes the same array-level kernels with the same signatures."""
import inspect
import os

import numpy as np
import pytest

from segnp import backends
from segnp.backends import KERNEL_NAMES, get_backend, using_backend


def _signature(backend, name):
    params = inspect.signature(getattr(backend, name)).parameters.values()
    return [(p.name, p.default) for p in params]


def test_numpy_backend_has_every_kernel():
    b = get_backend("numpy")
    missing = [n for n in KERNEL_NAMES if not callable(getattr(b, n, None))]
    assert missing == []


@pytest.mark.parametrize("name", ["cuda-emulator", "cupy"])
def test_other_backends_match_numpy_signatures(name):
    if name == "cupy":
        cupy = pytest.importorskip("cupy")
        if not cupy.is_available():
            pytest.skip("cupy backend needs a CUDA device")
    ref = get_backend("numpy")
    other = get_backend(name)
    for kernel in KERNEL_NAMES:
        assert hasattr(other, kernel), f"{name} backend lacks {kernel}"
        assert _signature(other, kernel) == _signature(ref, kernel), kernel


def test_unknown_backend_name_is_rejected():
    with pytest.raises(ValueError, match=r"get_backend: expected one of .*got 'tpu'"):
        get_backend("tpu")


def test_env_var_selects_backend(monkeypatch):
    monkeypatch.setenv("SEGNP_BACKEND", "numpy")
    assert backends._auto_name() == "numpy"
    monkeypatch.setenv("SEGNP_BACKEND", "bogus")
    with pytest.raises(ValueError, match="SEGNP_BACKEND"):
        backends._auto_name()


def test_using_backend_restores_previous():
    before = get_backend()
    with using_backend("numpy") as b:
        assert get_backend() is b
    assert get_backend() is before


def test_importing_segnp_does_not_import_cupy():
    import subprocess
    import sys
    code = "import sys, segnp, segnp.functions, segnp.nn; print('cupy' in sys.modules)"
    env = dict(os.environ, SEGNP_BACKEND="")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_kernels_are_bound_statically_as_class_attributes():
    """Each backend class names every kernel in its own body (an editor's "go to
    definition" follows them), rather than attaching them at run time."""
    from segnp.backends.cuda import CudaBackend
    from segnp.backends.numpy import NumpyBackend
    for cls in (NumpyBackend, CudaBackend):
        assert [n for n in KERNEL_NAMES if n not in vars(cls)] == [], cls.__name__
