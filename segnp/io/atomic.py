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
    format from it).  On an exception the temporary file is removed and the error
    propagates; an existing file at ``path`` is left untouched.
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    tmp = os.path.join(folder, f".{stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{ext}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
