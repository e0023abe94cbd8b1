"""End a worker process when the process that started it has gone.

A worker of a process pool whose parent is killed outright (SIGKILL, or a SIGTERM whose
unwinding is cut short) is not told: the pool's queues stay quiet, so it would wait
for work for ever, or run its job to the end and write files nobody owns.  Each worker
therefore watches its parent from a daemon thread.

It watches multiprocessing's parent sentinel (``multiprocessing.parent_process()``, a
pipe that reads end-of-file once the parent has ended), not only ``os.getppid()``: under
the forkserver start method, Python 3.14's default on Linux, a worker's parent in the
operating system is the fork server, not the process that asked for the worker, and a
``getppid()`` watch alone ended every worker at once (seen: a ``DataLoader`` with
workers failed with BrokenProcessPool after 0.5 s).  Where the two parents are the same
(fork, spawn), a changed ``getppid()`` counts too (see :func:`watch_parent`).
"""
import multiprocessing
import os
import threading
import time

__all__ = ["watch_parent"]


def watch_parent(on_gone, every=0.5):
    """Call ``on_gone()`` from a daemon thread of this worker once the process that
    started it has ended, checking every ``every`` seconds.  Raises RuntimeError in a
    process that multiprocessing did not start."""
    parent = multiprocessing.parent_process()
    if parent is None:
        raise RuntimeError("watch_parent: this process has no multiprocessing parent; "
                           "call it in a worker's initializer")
    # Under fork, every process the parent forks later inherits a copy of the sentinel
    # pipe's write end, so the sentinel reads end-of-file only once those have ended too;
    # where the parent is the operating system's parent (fork, spawn), its death also
    # shows as a new os.getppid(), which nothing delays.
    direct = os.getppid() == parent.pid

    def watch():
        while parent.is_alive() and (not direct or os.getppid() == parent.pid):
            time.sleep(every)
        on_gone()

    threading.Thread(target=watch, daemon=True, name="segnp-parent-watch").start()
