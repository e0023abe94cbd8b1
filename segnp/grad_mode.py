"""The grad mode: whether calls to a ``Function`` are recorded on the tape.

It is per thread (a ``threading.local``), so a data-loading or evaluation thread under
``no_grad`` does not switch recording off in the thread that trains.
"""
import contextlib
import threading

__all__ = ["no_grad", "enable_grad", "is_grad_enabled"]


class _GradMode(threading.local):
    enabled = True  # the class attribute is every new thread's starting value


_grad_mode = _GradMode()


def is_grad_enabled():
    return _grad_mode.enabled


@contextlib.contextmanager
def _set_grad(mode):
    previous = _grad_mode.enabled
    _grad_mode.enabled = mode
    try:
        yield
    finally:
        _grad_mode.enabled = previous


def no_grad():
    """Context manager: ops inside record nothing on the tape (evaluation, updates)."""
    return _set_grad(False)


def enable_grad():
    """Context manager: turn recording back on inside a ``no_grad`` block."""
    return _set_grad(True)
