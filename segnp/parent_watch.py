"""End a worker process when the process that started it has gone.

A worker of a process pool whose parent is killed outright (SIGKILL, or a SIGTERM whose
unwinding is cut short) is not told: the pool's queues stay quiet, so it would wait
for work for ever, or run its job to the end and write files nobody owns.  Each worker
therefore watches its parent from a daemon thread.

It watches multiprocessing's parent sentinel (``multiprocessing.parent_process()``, a
pipe that reads end-of-file once the parent has ended), not ``os.getppid()``: under the
forkserver start method, Python 3.14's default on Linux, a worker's parent in the
operating system is the fork server, not the process that asked for the worker, and a
``getppid()`` watch would end every worker at once (seen: a ``DataLoader`` with workers
failed with BrokenProcessPool after 0.5 s).
"""
import multiprocessing
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

    def watch():
        while parent.is_alive():
            time.sleep(every)
        on_gone()

    threading.Thread(target=watch, daemon=True, name="segnp-parent-watch").start()
