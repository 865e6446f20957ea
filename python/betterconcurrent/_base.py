"""concurrent.futures._base's names, on betterconcurrent's C++ core.

The exception classes and DoneAndNotDoneFutures are the standard library's own objects. Future,
wait and as_completed come from the extension. Executor is the abstract base class.
betterconcurrent adds Future.yield_until_done() and yield_until_done(fs, ...), the cooperative
waits of generator tasks.
"""

import concurrent.futures._base as _std
import logging

from betterconcurrent import _betterconcurrent as _core

FIRST_COMPLETED = 'FIRST_COMPLETED'
FIRST_EXCEPTION = 'FIRST_EXCEPTION'
ALL_COMPLETED = 'ALL_COMPLETED'

# Future._state values.
PENDING = 'PENDING'
RUNNING = 'RUNNING'
CANCELLED = 'CANCELLED'
CANCELLED_AND_NOTIFIED = 'CANCELLED_AND_NOTIFIED'
FINISHED = 'FINISHED'

_FUTURE_STATES = [PENDING, RUNNING, CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED]

_STATE_TO_DESCRIPTION_MAP = {
    PENDING: 'pending',
    RUNNING: 'running',
    CANCELLED: 'cancelled',
    CANCELLED_AND_NOTIFIED: 'cancelled',
    FINISHED: 'finished',
}

# The C++ core logs here too (a failed initializer, a raising done callback).
LOGGER = logging.getLogger('concurrent.futures')

Error = _std.Error
CancelledError = _std.CancelledError
TimeoutError = TimeoutError  # the builtin, as in the standard library
InvalidStateError = _std.InvalidStateError
BrokenExecutor = _std.BrokenExecutor
DoneAndNotDoneFutures = _std.DoneAndNotDoneFutures

# betterconcurrent's own: raised by ThreadPoolExecutor.join(); `.exceptions` lists the errors.
UnobservedTaskErrors = _core.UnobservedTaskErrors
# betterconcurrent's own: the exception of generator tasks that waited only for each other,
# which join() and shutdown(wait=True) end; join() raises it too.
DeadlockError = _core.DeadlockError

Future = _core.Future
wait = _core.wait
as_completed = _core.as_completed


# Cooperative waiting. A generator function submitted to ThreadPoolExecutor (one for which
# inspect.isgeneratorfunction(fn) is true, as in the original betterconcurrent) runs as a
# generator task: the C++ scheduler steps the generator and, wherever it does
# `yield from fut.yield_until_done()` or `yield from yield_until_done(fs)`, suspends it without
# blocking the worker thread, which runs other tasks meanwhile. The generator's return value is
# the future's result. The generators below yield wait requests that the scheduler recognises;
# iterated by anything else (next() outside a task, a plain function looping over them), they
# block like wait() instead, so their promises hold everywhere.

def _future_yield_until_done(self):
    """Waits until this future is done: `yield from fut.yield_until_done()`.

    In a generator task, suspends the task (its worker runs other tasks meanwhile) and resumes
    it once the future is done; elsewhere, blocks like wait([fut]). Either way the expression
    evaluates to None and fut.done() is True afterwards, so fut.result() does not block.
    A task that waits for its own future gets InvalidStateError there.
    """
    request = _core._FutureWait(self)
    yield request
    request._finish()


Future.yield_until_done = _future_yield_until_done


def _wait_all_generator(request):
    yield request
    return request._outcome()


def yield_until_done(fs, timeout=None, return_when=ALL_COMPLETED):
    """wait(fs, timeout, return_when) for generator tasks: `yield from yield_until_done(fs)`.

    Returns a generator whose `yield from` evaluates to wait()'s DoneAndNotDoneFutures, with
    wait()'s semantics (timeout in seconds counted from when the wait starts, None for no
    limit; return_when is FIRST_COMPLETED, FIRST_EXCEPTION or ALL_COMPLETED, checked here as
    wait() checks it). In a generator task the task is suspended instead of its worker thread;
    elsewhere the generator blocks like wait().
    """
    return _wait_all_generator(_core._WaitAll(fs, timeout, return_when))


class Executor:
    """The interface of executors. Subclasses implement submit(); the rest has defaults."""

    def submit(self, fn, /, *args, **kwargs):
        """Schedules fn(*args, **kwargs) and returns its Future."""
        raise NotImplementedError()

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        """Submits fn for each zipped argument tuple at once; yields the results in order."""
        deadline = None
        if timeout is not None:
            import time
            deadline = time.monotonic() + timeout
        futures = [self.submit(fn, *args) for args in zip(*iterables)]

        def results():
            import time
            try:
                futures.reverse()
                while futures:
                    future = futures.pop()
                    try:
                        if deadline is None:
                            yield future.result()
                        else:
                            yield future.result(deadline - time.monotonic())
                    finally:
                        future.cancel()
            finally:
                for future in futures:
                    future.cancel()

        return results()

    def shutdown(self, wait=True, *, cancel_futures=False):
        """Releases the executor's resources; the default has none."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.shutdown(wait=True)
        return False
