"""segnp.parent_watch: a worker ends once the process that started it has gone, and not
before, whatever the start method (issue 20's runs that must not be lost: a worker left
running after its parent was killed writes files nobody owns)."""
import concurrent.futures
import functools
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from segnp.parent_watch import watch_parent
from procs import alive


@pytest.mark.parametrize("method", multiprocessing.get_all_start_methods())
def test_a_worker_whose_parent_lives_keeps_working(method):
    """Under forkserver (Python 3.14's default on Linux) a worker's OS parent is the
    fork server: a watch on os.getppid() ended every worker within one poll."""
    ctx = multiprocessing.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(
            1, mp_context=ctx, initializer=watch_parent,
            initargs=(functools.partial(os._exit, 1), 0.01)) as pool:
        assert pool.submit(time.sleep, 0.5).result(timeout=60) is None
        assert pool.submit(os.getpid).result(timeout=60) != os.getpid()


def test_watch_parent_outside_a_worker_is_an_error():
    with pytest.raises(RuntimeError, match="watch_parent: this process has no "
                                           "multiprocessing parent"):
        watch_parent(lambda: None)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
@pytest.mark.parametrize("method", multiprocessing.get_all_start_methods())
def test_workers_end_soon_after_their_parent_is_killed(method, tmp_path):
    """Two watching workers and, started after them, a process that does not watch:
    under fork it holds the workers' sentinel pipes open, so the sentinel alone would
    keep them alive for as long as it lives (30 s here)."""
    child = textwrap.dedent(f"""
        import concurrent.futures, functools, multiprocessing, os, time
        from segnp.parent_watch import watch_parent

        def pid_after(s):
            time.sleep(s)
            return os.getpid()

        if __name__ == "__main__":
            ctx = multiprocessing.get_context({method!r})
            pool = concurrent.futures.ProcessPoolExecutor(
                2, mp_context=ctx, initializer=watch_parent,
                initargs=(functools.partial(os._exit, 1), 0.05))
            workers = {{f.result() for f in [pool.submit(pid_after, 0.5) for _ in range(2)]}}
            other = ctx.Process(target=time.sleep, args=(30,))
            other.start()
            print(*workers, other.pid, flush=True)
            time.sleep(60)
    """)
    script = tmp_path / "parent.py"  # a file: spawned workers import their main module
    script.write_text(child)
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONPATH=os.path.dirname(
                             os.path.dirname(os.path.abspath(__file__)))))
    pids = []
    try:
        pids = [int(x) for x in p.stdout.readline().split()]
        *workers, other = pids
        assert len(workers) == 2 and all(alive(w) for w in workers)
        p.kill()
        p.wait(timeout=30)
        deadline = time.monotonic() + 5
        while any(alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(w) for w in workers), "a worker outlived its parent by 5 s"
    finally:
        p.kill()
        p.wait()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
