"""Run a graph of independent training jobs on a few worker processes.

The paper's comparisons are many small runs (an embedder, a baseline, a fine-tuned row
of Table 1 ...) whose dependencies form a shallow graph.  On a CPU the networks are
small, so one BLAS thread per process is about as fast per step as two (measured on
2 cores: 93 ms vs 95 ms per SegNet step), and two processes then do nearly twice the
work of one.  :func:`run_jobs` therefore starts ``workers`` processes, each with one
BLAS thread, and hands each job to a free worker once every job it depends on is done.

A job is ``Job(key, fn, kwargs, deps, cost=1.0)``: ``fn`` a module-level function (it is
sent to another process), called as ``fn(**kwargs, deps={dep key: dep result})``; its
result must be picklable.  ``cost`` is the job's expected duration in any unit (only
the ratios count).  Of the jobs that are ready, a free worker takes the one with the
costliest chain ahead of it: the job's cost plus, through the jobs that wait for it,
the most that still has to run after it (its "bottom level", the critical-path rule of
list scheduling).  Jobs that unlock long chains then start first and short ones fill
the end, so both workers finish close together: a job of 2 minutes started last
would leave one core idle for those 2 minutes.  Jobs write their checkpoints
themselves, so a resumed run skips the training of finished jobs and only re-evaluates
them.
"""
import collections
import numbers
import os
import signal
import threading
import time

from ..atomic import cleanup_on_sigterm
from ..command import CTRL_C, remember_ctrl_c
from ..parent_watch import watch_parent

__all__ = ["Job", "run_jobs", "bottom_levels"]

Job = collections.namedtuple("Job", "key fn kwargs deps cost", defaults=(1.0,))

_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _call(fn, kwargs, deps):
    t0 = time.perf_counter()
    return fn(**kwargs, deps=deps), time.perf_counter() - t0


def _listen_for_ctrl_c():
    """A worker's initializer: Ctrl-C interrupts its job from now on, and SIGTERM unwinds
    it as the commands' does (:func:`segnp.atomic.cleanup_on_sigterm`).  It is born with
    SIGINT ignored (see :func:`_spawning`), so a Ctrl-C while it still imports NumPy
    cannot print a traceback from inside multiprocessing's bootstrap."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    cleanup_on_sigterm()
    # A parent killed outright (SIGKILL, or its SIGTERM's unwinding cut short) cannot
    # stop its workers; each watches for that itself and unwinds as on SIGTERM, rather
    # than run its job to the end and write into the run folder unowned.
    watch_parent(lambda: os.kill(os.getpid(), signal.SIGTERM), every=1.0)


class _spawning:
    """Ignore SIGINT in this process while a submit may start a worker: a child keeps an
    ignored signal across exec, and Python then installs no handler of its own."""

    def __enter__(self):
        # signal handlers belong to the main thread; elsewhere leave SIGINT as it is
        self.main = threading.current_thread() is threading.main_thread()
        if self.main:
            self.previous = signal.signal(signal.SIGINT, signal.SIG_IGN)

    def __exit__(self, *exc):
        if self.main:
            signal.signal(signal.SIGINT, self.previous)


def _check(fn, jobs):
    keys = [j.key for j in jobs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{fn}: job keys must be unique")
    known = set()
    for j in jobs:
        missing = [d for d in j.deps if d not in known]
        if missing:
            raise ValueError(f"{fn}: job {j.key!r} depends on {missing}, which are not "
                             f"listed before it")
        known.add(j.key)
        if not (isinstance(j.cost, numbers.Real) and j.cost >= 0):
            raise ValueError(f"{fn}: job {j.key!r} must have a cost >= 0; got "
                             f"{j.cost!r}")


def bottom_levels(jobs):
    """{key: the job's cost plus the costliest chain of jobs that depend on it}: how
    long the run still takes from the job's start, on enough workers.  ``jobs``: as
    for :func:`run_jobs`."""
    _check("bottom_levels", jobs)
    return _levels(jobs)


def _levels(jobs):
    level = {}
    waiting = collections.defaultdict(list)
    for j in jobs:
        for d in j.deps:
            waiting[d].append(j.key)
    for j in reversed(jobs):  # a job's dependents come after it in the list
        level[j.key] = j.cost + max((level[k] for k in waiting[j.key]), default=0.0)
    return level


def run_jobs(jobs, workers=2, log=print):
    """Run ``jobs`` (a list in an order where each job comes after its dependencies);
    returns {key: result}.  Of the ready jobs, the one with the highest
    :func:`bottom_levels` starts first (the earlier in the list on a tie).
    ``workers`` <= 1 runs them one by one in this process (the order of the list),
    which gives the same results: every job seeds its own generators.  ``log(line)``
    gets one line per finished job."""
    _check("run_jobs", jobs)
    results, seconds = {}, {}
    if workers <= 1:
        for j in jobs:
            results[j.key], seconds[j.key] = _call(j.fn, j.kwargs,
                                                   {d: results[d] for d in j.deps})
            log(f"done {j.key} ({seconds[j.key]:.0f} s)")
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    # children read these when they import NumPy: one BLAS thread per worker
    os.environ.update(dict.fromkeys(_THREAD_VARS, "1"))
    try:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                 initializer=_listen_for_ctrl_c) as pool:
            pending, running = list(jobs), {}
            try:
                with _ctrl_c_remembered() as interrupted:
                    _run_graph(pool, workers, pending, running, results, seconds, log,
                               interrupted)
            except KeyboardInterrupt:
                _stop_workers(pool, running)
                raise
            except SystemExit:
                # SIGTERM (segnp.atomic.cleanup_on_sigterm), maybe to this process only:
                # the workers would run their jobs to the end, orphaned, and write into
                # the run folder after the command has gone.  Those signalled with it
                # are unwinding already; the rest are stopped after a second.
                _stop_workers(pool, running, grace=1.0)
                raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return results


class _ctrl_c_remembered:
    """While the parent waits for its workers, Ctrl-C raises KeyboardInterrupt as usual
    and is also remembered in ``segnp.command.CTRL_C``: Python drops an exception raised
    inside a weakref callback or ``__del__`` ("Exception ignored in ..."), and a Ctrl-C
    lost that way, here or earlier in the command, must still stop the run (the wait
    below looks at the list twice a second)."""

    def __enter__(self):
        self.main = threading.current_thread() is threading.main_thread()
        self.previous = None
        if self.main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous = signal.signal(signal.SIGINT, remember_ctrl_c)
        return CTRL_C

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _run_graph(pool, workers, pending, running, results, seconds, log, interrupted=()):
    """Hand each job to a free worker once its dependencies are done, at most
    ``workers`` at a time (so no job waits in the pool's queue).  ``interrupted``: a
    list that a Ctrl-C makes non-empty (:class:`_ctrl_c_remembered`)."""
    from concurrent.futures import FIRST_COMPLETED, wait
    if interrupted:
        raise KeyboardInterrupt
    level = _levels(pending)
    while pending or running:
        ready = [j for j in pending if all(d in results for d in j.deps)]
        for j in sorted(ready, key=lambda j: -level[j.key]):  # stable: list order on ties
            if len(running) >= workers:
                break
            pending.remove(j)
            with _spawning():
                fut = pool.submit(_call, j.fn, j.kwargs,
                                  {d: results[d] for d in j.deps})
            running[fut] = j.key
        done, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
        if interrupted:
            raise KeyboardInterrupt
        for fut in done:
            key = running.pop(fut)
            results[key], seconds[key] = fut.result()
            log(f"done {key} ({seconds[key]:.0f} s)")


def _stop_workers(pool, running, grace=10.0):
    """After Ctrl-C: a worker running a job got the same SIGINT and unwinds (its atomic
    writers remove their temporary files); one still in its bootstrap ignored it and
    would run its job to the end, so if a job still runs after ``grace`` seconds the
    workers are sent SIGTERM, which their initializer made unwind the same way.  After
    a SIGTERM, which may have reached this process only, ``grace`` is 1 s."""
    from concurrent.futures import wait
    _, still = wait(list(running), timeout=grace)
    if not still:
        return  # idle workers end with the pool: a SIGTERM would only print their traceback
    for proc in list(getattr(pool, "_processes", {}).values()):
        if proc.is_alive():
            proc.terminate()
