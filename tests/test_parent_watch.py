"""segnp.parent_watch: a worker ends once the process that started it has gone, and not
before, whatever the start method (issue 20's runs that must not be lost: a worker left
running after its parent was killed writes files nobody owns)."""
import concurrent.futures
import functools
import multiprocessing
import os
import time

import pytest

from segnp.parent_watch import watch_parent


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
