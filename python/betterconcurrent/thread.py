"""ThreadPoolExecutor: the C++ pool, running Python callables.

Workers take the GIL only to run Python code; every C++ wait releases it. betterconcurrent adds
join(timeout=None): it waits until no task is queued, running or suspended (subtasks that tasks
submit included), then raises UnobservedTaskErrors if tasks failed and nobody looked at their
futures.
"""

import atexit
import concurrent.futures.thread as _std_thread
import weakref

from betterconcurrent import _base
from betterconcurrent import _betterconcurrent as _core

BrokenThreadPool = _std_thread.BrokenThreadPool

# Executors still alive when the interpreter exits are shut down (waiting for their tasks)
# before Python finalizes, since their workers need the GIL to finish.
_live_executors = weakref.WeakSet()


def _shutdown_live_executors():
    for executor in list(_live_executors):
        executor.shutdown(wait=True)


atexit.register(_shutdown_live_executors)


class ThreadPoolExecutor(_core.ThreadPoolExecutor, _base.Executor):
    """concurrent.futures.ThreadPoolExecutor on betterconcurrent's C++ scheduler."""

    def __init__(self, max_workers=None, thread_name_prefix='', initializer=None, initargs=()):
        _core.ThreadPoolExecutor.__init__(self, max_workers, thread_name_prefix, initializer,
                                          tuple(initargs))
        _live_executors.add(self)

    submit = _core.ThreadPoolExecutor.submit
    map = _core.ThreadPoolExecutor.map
    shutdown = _core.ThreadPoolExecutor.shutdown
