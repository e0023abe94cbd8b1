"""Atomic file writing: write under a temporary name in the target folder, then rename.

``os.replace`` is atomic on one file system, so a reader sees either the old file or the
complete new one, and a writer that fails (an exception, a kill) leaves no partial file
under the final name.
"""
import contextlib
import os
import uuid

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; on success rename it to ``path``.

    The temporary name keeps the extension of ``path`` (writers such as imageio pick the
    format from it).  On an exception (or a SystemExit raised by a SIGTERM handler) the
    temporary file is removed and the error propagates, an OSError naming ``path``
    rather than the temporary name; an existing file at ``path`` is left untouched.
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    tmp = os.path.join(folder, f".{stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{ext}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        if tmp not in str(err):
            raise
        renamed = OSError(err.errno, str(err.strerror or err).replace(tmp, path), path) \
            if err.errno else OSError(str(err).replace(tmp, path))
        raise renamed from err
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
