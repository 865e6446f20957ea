"""concurrent.futures._base's names, on betterconcurrent's C++ core.

The exception classes and DoneAndNotDoneFutures are the standard library's own objects. Future,
wait and as_completed come from the extension. Executor is the abstract base class.
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

Future = _core.Future
wait = _core.wait
as_completed = _core.as_completed


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
