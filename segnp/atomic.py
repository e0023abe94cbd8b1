"""Atomic file writing: write under a temporary name in the target folder, then rename.

``os.replace`` is atomic on one file system, so a reader sees either the old file or the
complete new one, and a writer that fails (an exception, a kill) leaves no partial file
under the final name.

This module sits at the package root, below every layer and importing only the
standard library, so that the backends (the emulator's build cache) use the same writer
as checkpoints and datasets without importing the image libraries of :mod:`segnp.io`,
which re-exports :func:`atomic_path`.
"""
import contextlib
import os
import signal
import threading
import uuid

__all__ = ["atomic_path", "check_writable", "cleanup_on_sigterm"]

# The temporary files of the atomic_path blocks now open in this process.
_LIVE = set()
# Seconds the main thread gets to unwind after SIGTERM before the fallback ends the process.
SIGTERM_GRACE_S = 5.0


def _hard_exit(status):
    """The fallback of a SIGTERM whose SystemExit was swallowed: remove the temporary
    files of the open atomic_path blocks, then end the process at once."""
    for tmp in list(_LIVE):
        try:
            os.remove(tmp)
        except OSError:
            pass
    os._exit(status)


def _exit_on_signal(signum, frame):
    # Python runs a handler at the next bytecode of the main thread, which may be inside
    # a weakref callback or a __del__, where a raised exception is printed and dropped
    # (seen with h5py: the process then ran to the end and exited 0).  So a daemon timer
    # also ends the process if it is still alive after the grace period.
    timer = threading.Timer(SIGTERM_GRACE_S, _hard_exit, (128 + signum,))
    timer.daemon = True
    timer.start()
    # A second SIGTERM (a process group signalled, then a parent stopping its workers)
    # would raise again inside the cleanup, between an atomic_path's bookkeeping and its
    # os.remove, and leave the temporary file; the timer ends the process regardless.
    signal.signal(signum, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def cleanup_on_sigterm():
    """Make SIGTERM unwind the main thread like Ctrl-C does (a SystemExit with status
    143), so that every :func:`atomic_path` removes its temporary file.  By default
    SIGTERM ends a process at once and leaves the files behind.  Should the SystemExit
    be swallowed (raised inside a callback whose exceptions Python ignores), the process
    still ends with status 143 after ``SIGTERM_GRACE_S`` seconds, its temporary files
    removed.  Call it where a command starts (``if __name__ == "__main__"``), not in
    library code; returns the previous handler."""
    return signal.signal(signal.SIGTERM, _exit_on_signal)


def check_writable(fn, path):
    """Raise ValueError (naming ``fn`` and ``path``) now, before any work, when the file
    ``path`` could not be written: it is a folder, or its folder cannot be created or
    written.  Creates the folder."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        raise ValueError(f"{fn}: {path!r} is a folder; expected a file name")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{fn}: cannot create the folder {folder!r} "
                         f"({err.strerror or err})") from err
    if not os.access(folder, os.W_OK):
        raise ValueError(f"{fn}: cannot write to {folder!r} (permission denied)")


@contextlib.contextmanager
def atomic_path(path, keep_ext=True, durable=False):
    """Yield a temporary path next to ``path``; on success rename it to ``path``.

    The temporary file is ``.<name>.<pid>-<random>.tmp``, followed by the extension of
    ``path`` when ``keep_ext`` (writers such as imageio pick the format from it); a
    process killed outright leaves it beside ``path``, recognisable and hidden.  A file
    replacing an existing one keeps that file's permissions.  With ``durable`` the data
    and then the rename are flushed to disk (``fsync``), for checkpoints that must
    survive a power loss.  On an exception (or a SystemExit raised by a SIGTERM
    handler) the temporary file is removed and the error propagates, an OSError naming
    ``path`` rather than the temporary name; an existing file at ``path`` is left
    untouched.
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    ext = os.path.splitext(name)[1] if keep_ext else ""
    tmp = os.path.join(folder, f".{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{ext}")
    _LIVE.add(tmp)
    try:
        yield tmp
        if durable:
            _fsync(tmp, os.O_RDONLY)
        if os.path.exists(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o777)
        os.replace(tmp, path)
    except OSError as err:
        if tmp not in str(err):
            raise
        renamed = OSError(err.errno, str(err.strerror or err).replace(tmp, path), path) \
            if err.errno else OSError(str(err).replace(tmp, path))
        raise renamed from err
    finally:
        _LIVE.discard(tmp)
        if os.path.exists(tmp):
            os.remove(tmp)
    if durable:
        _fsync(folder, os.O_RDONLY, missing_ok=True)


def _fsync(path, flags, missing_ok=False):
    """Flush ``path`` (a file, or a folder: the record of a rename) to disk.  Not every
    platform can open a folder; ``missing_ok`` lets that pass."""
    try:
        fd = os.open(path, flags)
    except OSError:
        if missing_ok:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not missing_ok:
            raise
    finally:
        os.close(fd)
