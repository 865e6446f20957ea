"""betterconcurrent: concurrent.futures on a C++20 core, plus join().

The same names as concurrent.futures. Future, ThreadPoolExecutor, wait and as_completed are the
C++ port's (the extension module _betterconcurrent); the exception classes are the standard
library's own, so `except concurrent.futures.CancelledError` catches ours.
"""

from betterconcurrent._base import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    BrokenExecutor,
    CancelledError,
    Executor,
    Future,
    InvalidStateError,
    TimeoutError,
    UnobservedTaskErrors,
    as_completed,
    wait,
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
    'ProcessPoolExecutor',
    'ThreadPoolExecutor',
)
