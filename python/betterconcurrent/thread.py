"""ThreadPoolExecutor: the C++ pool, running Python callables.

Workers take the GIL only to run Python code; every C++ wait releases it. betterconcurrent adds
join(timeout=None): it waits until no task is queued, running or suspended (subtasks that tasks
submit included), then raises UnobservedTaskErrors if tasks failed and nobody looked at their
futures; before that, DeadlockError if it ended generator tasks that waited only for each other
(shutdown(wait=True) ends them too, without raising). And generator tasks: submit(fn) with a
generator function runs the generator cooperatively on the C++ scheduler (see submit()).
"""

import atexit
import inspect as _inspect
import os
import concurrent.futures.thread as _std_thread
import threading
import weakref

from betterconcurrent import _base
from betterconcurrent import _betterconcurrent as _core

BrokenThreadPool = _std_thread.BrokenThreadPool

# Executors still alive when the interpreter exits are shut down (waiting for their tasks)
# before Python finalizes, since their workers need the GIL to finish. Like the standard
# library's pool, this happens when the threading module shuts down, before the atexit
# functions run; from then on submit() raises RuntimeError.
_live_executors = weakref.WeakSet()
_interpreter_shutdown = False


def _shutdown_live_executors():
    global _interpreter_shutdown
    _interpreter_shutdown = True
    for executor in list(_live_executors):
        executor.shutdown(wait=True)


# threading._register_atexit is the hook the standard library's own thread pool uses (it runs
# before the atexit functions and before non-daemon threads are joined); atexit is the fallback.
getattr(threading, '_register_atexit', atexit.register)(_shutdown_live_executors)


def _after_fork_in_child():
    # The child has none of the parent's worker threads: its copies of the executors must not
    # wait for them (at exit or when collected).
    for executor in list(_live_executors):
        executor._forget_after_fork()
    _live_executors.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


class _WorkerThread:
    """One worker thread of a pool, as `executor._threads` lists it: a name, join(), is_alive().

    The C++ workers are not threading.Thread objects. A worker exits only after its pool is
    shut down, so join() waits for shutdown() to be called or the executor to be destroyed, then
    for the pool's threads to exit (the destruction of the executor joins them itself).
    """

    def __init__(self, name, executor):
        self.name = name
        self._executor = weakref.ref(executor)
        self._shutdown_called = executor._shutdown_called

    def __repr__(self):
        return '<_WorkerThread %r>' % self.name

    def is_alive(self):
        executor = self._executor()
        return executor is not None and not executor._threads_exited

    def join(self, timeout=None):
        if not self._shutdown_called.wait(timeout):
            return
        executor = self._executor()
        if executor is not None:
            _core.ThreadPoolExecutor.shutdown(executor, wait=True)
            executor._threads_exited = True


class ThreadPoolExecutor(_core.ThreadPoolExecutor, _base.Executor):
    """concurrent.futures.ThreadPoolExecutor on betterconcurrent's C++ scheduler."""

    def __init__(self, max_workers=None, thread_name_prefix='', initializer=None, initargs=()):
        self._shutdown_called = threading.Event()
        self._threads_exited = False
        _core.ThreadPoolExecutor.__init__(self, max_workers, thread_name_prefix, initializer,
                                          tuple(initargs))
        _live_executors.add(self)
        # Destroying the executor (its last reference gone) shuts it down too; the C++
        # destructor then joins the threads before the object's memory is released.
        weakref.finalize(self, self._shutdown_called.set)

    def submit(self, fn, /, *args, **kwargs):
        """Schedules fn(*args, **kwargs) on the pool and returns its Future.

        If fn is a generator function (inspect.isgeneratorfunction(fn)), the task is a generator
        task: the generator fn(*args, **kwargs) runs cooperatively, suspending (without holding
        its worker thread) at each `yield from fut.yield_until_done()` or
        `yield from betterconcurrent.yield_until_done(fs)`, and its return value is the future's
        result. Yielding anything else fails the task with TypeError.
        """
        if _interpreter_shutdown:
            raise RuntimeError('cannot schedule new futures after interpreter shutdown')
        return self._submit(fn, args, kwargs, _inspect.isgeneratorfunction(fn))

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        """Submits fn for each zipped argument tuple at once; returns the results in order.

        A generator function runs as generator tasks, as with submit().
        """
        return _core.ThreadPoolExecutor.map(self, fn, *iterables, timeout=timeout,
                                            chunksize=chunksize,
                                            _generator=_inspect.isgeneratorfunction(fn))
    join = _core.ThreadPoolExecutor.join

    def shutdown(self, wait=True, *, cancel_futures=False):
        self._shutdown_called.set()
        _core.ThreadPoolExecutor.shutdown(self, wait, cancel_futures=cancel_futures)
        if wait:
            self._threads_exited = True

    @property
    def _threads(self):
        """The worker threads started so far, in start order (CPython's `_threads`)."""
        return [_WorkerThread(name, self) for name in self._thread_names]
