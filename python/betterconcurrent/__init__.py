"""betterconcurrent: concurrent.futures on a C++20 core, plus join().

The same names as concurrent.futures. Future, ThreadPoolExecutor, wait and as_completed are the
C++ port's (the extension module _betterconcurrent); the exception classes are the standard
library's own, so `except concurrent.futures.CancelledError` catches ours.

Generator tasks: a generator function submitted to ThreadPoolExecutor runs cooperatively. It
waits with `yield from fut.yield_until_done()` or `yield from yield_until_done(fs)` (wait()'s
answer), which suspend the task, not its worker thread, so fork-join recursion never deadlocks
on a bounded pool; what it returns is its future's result:

    def fib(pool, n):
        if n < 2:
            return n
        a, b = pool.submit(fib, pool, n - 1), pool.submit(fib, pool, n - 2)
        yield from betterconcurrent.yield_until_done([a, b])
        return a.result() + b.result()

Generator tasks that wait only for each other's futures can never resume: join() and
shutdown(wait=True) end them with DeadlockError (closing their generators), and join() raises it.
"""

from betterconcurrent._base import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    BrokenExecutor,
    CancelledError,
    DeadlockError,
    Executor,
    Future,
    InvalidStateError,
    TimeoutError,
    UnobservedTaskErrors,
    as_completed,
    wait,
    yield_until_done,
)
from betterconcurrent.process import ProcessPoolExecutor
from betterconcurrent.thread import ThreadPoolExecutor
from betterconcurrent import _base, process, thread  # noqa: F401  (the submodules, as attributes)

__all__ = (
    'FIRST_COMPLETED',
    'FIRST_EXCEPTION',
    'ALL_COMPLETED',
    'CancelledError',
    'TimeoutError',
    'BrokenExecutor',
    'Future',
    'Executor',
    'wait',
    'as_completed',
    'yield_until_done',
    'ProcessPoolExecutor',
    'ThreadPoolExecutor',
)
