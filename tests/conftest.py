"""Test-suite switches for the CUDA kernels.

- ``SEGNP_REQUIRE_GPU=1``: a test marked ``gpu`` that skips (no CuPy, no device, a CuPy
  wheel too new for the driver...) fails instead, so that a GPU run cannot be green
  while checking nothing (benchmarks/gpu_verify.sh sets it).
- ``emulator_order``: tests that use this fixture (the kernel parity modules name it in
  ``pytestmark``) run twice, with the emulator's threads in ascending and in descending
  order between barriers (``SEGNP_EMULATOR_ORDER``), which exposes a missing
  ``__syncthreads`` whichever thread's store it would have waited for.  Tests marked
  ``gpu`` run once: the order is the emulator's, not the device's.
- ``backend``: tests that take it run once per backend, with that backend active:
  ``numpy``, ``cuda-emulator``, and ``cupy`` (marked ``gpu``; skipped without a device).
- ``spread``: the NumPy kernels spread their pieces over two threads whatever the
  machine, with no minimum of work (``FakeBlas`` stands in for the BLAS thread count).
"""
import os

import pytest

ORDERS = ("ascending", "descending")


def require_gpu():
    return os.environ.get("SEGNP_REQUIRE_GPU", "").strip() == "1"


def pytest_report_header(config):
    if require_gpu():
        return "SEGNP_REQUIRE_GPU=1: skipped gpu tests count as failures"
    return None


def pytest_generate_tests(metafunc):
    if "emulator_order" in metafunc.fixturenames and \
            metafunc.definition.get_closest_marker("gpu") is None:
        metafunc.parametrize("emulator_order", ORDERS, indirect=True)


@pytest.fixture
def emulator_order(request, monkeypatch):
    order = getattr(request, "param", None)
    if order is not None:
        monkeypatch.setenv("SEGNP_EMULATOR_ORDER", order)
    return order


@pytest.fixture(params=["numpy", "cuda-emulator", pytest.param("cupy", marks=pytest.mark.gpu)])
def backend(request):
    from segnp.backends import using_backend
    if request.param == "cupy":
        cupy = pytest.importorskip("cupy", reason="cupy (the 'test' extra) is not installed")
        if not cupy.is_available():
            pytest.skip("the cupy backend needs a CUDA device")
    with using_backend(request.param) as b:
        yield b


class FakeBlas:
    """Reports ``n`` BLAS threads whatever the machine has, and records what is set.  The
    setting is passed on to the real OpenBLAS where there is one, so that concurrent runs
    call it single-threaded, as they do in use."""

    def __init__(self, n):
        from segnp.backends.numpy import threads
        self.real = threads._control
        self.real_before = self.real[0]() if self.real is not None else 1
        self.n, self.calls = n, []

    def get(self):
        return self.n

    def set(self, n):
        self.calls.append(n)
        self.n = n
        if self.real is not None:
            self.real[1](1 if n == 1 else self.real_before)


@pytest.fixture
def spread(monkeypatch):
    from segnp.backends.numpy import threads
    fake = FakeBlas(2)
    monkeypatch.setattr(threads, "_control", (fake.get, fake.set))
    monkeypatch.setattr(threads, "MIN_PARALLEL_FLOPS", 0)
    return fake


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and require_gpu() and item.get_closest_marker("gpu") is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (f"SEGNP_REQUIRE_GPU=1, but this gpu test was skipped: {reason}")
