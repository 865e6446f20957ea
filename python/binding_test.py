"""Tests of the betterconcurrent extension: the Python face of the C++ port.

Every wait is bounded (TIMEOUT); tasks that must not finish yet block on a threading.Event that
the test sets, never on a sleep.
"""

import concurrent.futures
import functools
import gc
import inspect
import logging
import re
import subprocess
import sys
import textwrap
import threading
import traceback
import unittest
import weakref

import betterconcurrent
from betterconcurrent import _base, process, thread

TIMEOUT = 30  # seconds; only reached if something is broken


class ApiTest(unittest.TestCase):
    def test_names_of_concurrent_futures(self):
        for name in concurrent.futures.__all__:
            self.assertTrue(hasattr(betterconcurrent, name), name)
        for name in ['PENDING', 'RUNNING', 'CANCELLED', 'CANCELLED_AND_NOTIFIED', 'FINISHED',
                     'LOGGER', 'DoneAndNotDoneFutures', 'Error']:
            self.assertTrue(hasattr(_base, name), name)
        self.assertTrue(callable(process._check_system_limits))
        # betterconcurrent's own: the cooperative waits of generator tasks.
        self.assertIn('yield_until_done', betterconcurrent.__all__)
        self.assertIs(betterconcurrent.yield_until_done, _base.yield_until_done)
        self.assertTrue(callable(betterconcurrent.Future.yield_until_done))
        self.assertIs(betterconcurrent.thread, thread)

    def test_exception_classes_are_the_standard_ones(self):
        self.assertIs(betterconcurrent.CancelledError, concurrent.futures.CancelledError)
        self.assertIs(betterconcurrent.TimeoutError, TimeoutError)
        self.assertIs(betterconcurrent.InvalidStateError, concurrent.futures.InvalidStateError)
        self.assertIs(betterconcurrent.BrokenExecutor, concurrent.futures.BrokenExecutor)
        self.assertIs(thread.BrokenThreadPool, concurrent.futures.thread.BrokenThreadPool)
        self.assertTrue(issubclass(betterconcurrent.UnobservedTaskErrors, _base.Error))
        self.assertIs(betterconcurrent.DeadlockError, _base.DeadlockError)
        self.assertTrue(issubclass(betterconcurrent.DeadlockError, concurrent.futures._base.Error))
        self.assertFalse(issubclass(betterconcurrent.DeadlockError,
                                    betterconcurrent.UnobservedTaskErrors))

    def test_executor_is_an_executor(self):
        self.assertTrue(issubclass(betterconcurrent.ThreadPoolExecutor, betterconcurrent.Executor))


class FutureTest(unittest.TestCase):
    def test_result(self):
        f = betterconcurrent.Future()
        self.assertEqual(f._state, _base.PENDING)
        self.assertFalse(f.done())
        value = object()
        f.set_result(value)
        self.assertIs(f.result(), value)
        self.assertIs(f.result(timeout=0), value)
        self.assertIsNone(f.exception())
        self.assertTrue(f.done())
        self.assertEqual(f._state, _base.FINISHED)

    def test_exception_is_the_same_object(self):
        f = betterconcurrent.Future()
        error = ValueError('boom')
        f.set_exception(error)
        with self.assertRaises(ValueError) as caught:
            f.result()
        self.assertIs(caught.exception, error)
        self.assertIs(f.exception(), error)

    def test_set_twice_raises_invalid_state(self):
        f = betterconcurrent.Future()
        f.set_result(1)
        with self.assertRaisesRegex(concurrent.futures.InvalidStateError, '^FINISHED: <Future'):
            f.set_result(2)
        with self.assertRaises(concurrent.futures.InvalidStateError):
            f.set_exception(ValueError())
        self.assertEqual(f.result(), 1)

    def test_cancel(self):
        f = betterconcurrent.Future()
        self.assertTrue(f.cancel())
        self.assertTrue(f.cancelled())
        self.assertEqual(f._state, _base.CANCELLED)
        with self.assertRaises(concurrent.futures.CancelledError):
            f.result()
        with self.assertRaises(concurrent.futures.CancelledError):
            f.exception()
        self.assertFalse(f.set_running_or_notify_cancel())
        self.assertEqual(f._state, _base.CANCELLED_AND_NOTIFIED)

    def test_running(self):
        f = betterconcurrent.Future()
        self.assertTrue(f.set_running_or_notify_cancel())
        self.assertTrue(f.running())
        self.assertFalse(f.cancel())
        with self.assertLogs('concurrent.futures', logging.CRITICAL):
            with self.assertRaises(RuntimeError):
                f.set_running_or_notify_cancel()

    def test_timeouts(self):
        f = betterconcurrent.Future()
        with self.assertRaises(TimeoutError):
            f.result(timeout=0)
        with self.assertRaises(concurrent.futures.TimeoutError):
            f.exception(timeout=0.001)

    def test_result_from_another_thread_releases_the_gil(self):
        # The setter needs the GIL while the main thread blocks in result().
        f = betterconcurrent.Future()
        t = threading.Thread(target=f.set_result, args=(42,))
        t.start()
        self.assertEqual(f.result(timeout=TIMEOUT), 42)
        t.join(TIMEOUT)

    def test_done_callbacks_in_order_with_the_future(self):
        f = betterconcurrent.Future()
        seen = []
        f.add_done_callback(lambda g: seen.append(('a', g)))
        f.add_done_callback(lambda g: seen.append(('b', g)))
        self.assertEqual(seen, [])
        f.set_result(5)
        self.assertEqual(seen, [('a', f), ('b', f)])
        f.add_done_callback(lambda g: seen.append(('c', g)))  # done: runs at once
        self.assertEqual(seen[-1], ('c', f))

    def test_raising_callback_is_logged(self):
        f = betterconcurrent.Future()
        after = []

        def bad(_):
            raise ValueError('in callback')

        f.add_done_callback(bad)
        f.add_done_callback(after.append)
        with self.assertLogs('concurrent.futures', logging.ERROR) as logs:
            f.set_result(1)
        self.assertEqual(after, [f])
        self.assertIn('exception calling callback for <Future', logs.output[0])
        self.assertIn('ValueError: in callback', logs.output[0])

    def test_repr(self):
        f = betterconcurrent.Future()
        self.assertRegex(repr(f), r'^<Future at 0x[0-9a-f]+ state=pending>$')
        f.set_result(3)
        self.assertRegex(repr(f), r'^<Future at 0x[0-9a-f]+ state=finished returned int>$')
        g = betterconcurrent.Future()
        g.set_exception(OSError())
        self.assertRegex(repr(g), r'state=finished raised OSError>$')
        h = betterconcurrent.Future()
        h.cancel()
        self.assertRegex(repr(h), r'state=cancelled>$')
        self.assertIn('0x%x' % id(f), repr(f))


class WaitTest(unittest.TestCase):
    def test_first_completed_returns_the_same_objects(self):
        a, b = betterconcurrent.Future(), betterconcurrent.Future()
        t = threading.Thread(target=a.set_result, args=(1,))
        t.start()
        done, not_done = betterconcurrent.wait([a, b, a], timeout=TIMEOUT,
                                               return_when=betterconcurrent.FIRST_COMPLETED)
        t.join(TIMEOUT)
        self.assertEqual(done, {a})
        self.assertEqual(not_done, {b})
        self.assertIsInstance(done, set)

    def test_timeout_and_first_exception(self):
        a, b, c = (betterconcurrent.Future() for _ in range(3))
        a.set_result(1)
        result = betterconcurrent.wait([a, b], timeout=0)
        self.assertEqual(result.done, {a})
        self.assertEqual(result.not_done, {b})
        c.set_exception(KeyError())
        done, not_done = betterconcurrent.wait([a, b, c], timeout=TIMEOUT,
                                               return_when=betterconcurrent.FIRST_EXCEPTION)
        self.assertEqual(done, {a, c})
        self.assertEqual(not_done, {b})

    def test_as_completed(self):
        a, b, c = (betterconcurrent.Future() for _ in range(3))
        b.set_result(1)
        it = betterconcurrent.as_completed([a, b, c], timeout=TIMEOUT)
        self.assertIs(next(it), b)
        t = threading.Thread(target=c.set_result, args=(2,))
        t.start()
        self.assertIs(next(it), c)
        t.join(TIMEOUT)
        a.set_result(3)
        self.assertIs(next(it), a)
        with self.assertRaises(StopIteration):
            next(it)

    def test_as_completed_timeout(self):
        a, b = betterconcurrent.Future(), betterconcurrent.Future()
        a.set_result(0)
        it = betterconcurrent.as_completed([a, b], timeout=0.01)
        self.assertIs(next(it), a)
        with self.assertRaisesRegex(TimeoutError, r'1 \(of 2\) futures unfinished'):
            next(it)
        with self.assertRaises(StopIteration):
            next(it)


def exception_raised_by_result(test, future):
    """What future.result() raises (a test failure if nothing). Not assertRaises: that drops the
    exception's traceback, which the callers inspect."""
    try:
        future.result(timeout=TIMEOUT)
    except BaseException as e:  # whatever it is: the caller checks its type
        return e
    test.fail('result() did not raise')


def raise_value_error(text):
    raise ValueError(text)


class ThreadPoolTest(unittest.TestCase):
    def setUp(self):
        self.pool = betterconcurrent.ThreadPoolExecutor(max_workers=2,
                                                        thread_name_prefix='binding')

    def tearDown(self):
        self.pool.shutdown(wait=True)

    def test_submit(self):
        f = self.pool.submit(pow, 2, 10)
        self.assertIsInstance(f, betterconcurrent.Future)
        self.assertEqual(f.result(timeout=TIMEOUT), 1024)
        g = self.pool.submit(lambda a, *, b: a - b, 5, b=3)
        self.assertEqual(g.result(timeout=TIMEOUT), 2)
        self.assertEqual(self.pool._max_workers, 2)
        self.assertIs(self.pool._broken, False)

    def test_task_exception_keeps_its_traceback(self):
        f = self.pool.submit(raise_value_error, 'from a task')
        caught = exception_raised_by_result(self, f)
        self.assertIsInstance(caught, ValueError)
        self.assertEqual(str(caught), 'from a task')
        frames = [frame.name for frame in traceback.extract_tb(caught.__traceback__)]
        self.assertIn('raise_value_error', frames)
        self.assertIs(f.exception(), caught)

    def test_tasks_run_in_the_pool_threads(self):
        names = self.pool.submit(lambda: threading.get_ident()).result(timeout=TIMEOUT)
        self.assertNotEqual(names, threading.get_ident())
        self.assertTrue(all(n.startswith('binding_') for n in self.pool._thread_names))

    def test_map(self):
        self.assertEqual(list(self.pool.map(pow, [2, 3, 4], [2, 2, 2], timeout=TIMEOUT)),
                         [4, 9, 16])
        results = self.pool.map(raise_value_error, ['x'])
        with self.assertRaises(ValueError):
            next(results)
        with self.assertRaises(StopIteration):
            next(results)

    def test_map_takes_from_the_iterables_as_zip_does(self):
        # Found by tools/fuzz_diff: the shorter iterable ends the map, and the longer one loses
        # exactly the item CPython's zip() takes before it sees the end (not one more).
        pulled = []

        def items(name, values):
            for v in values:
                pulled.append((name, v))
                yield v

        results = self.pool.map(pow, items('a', [2, 3, 4]), items('b', [2]), timeout=TIMEOUT)
        self.assertEqual(pulled, [('a', 2), ('b', 2), ('a', 3)])
        self.assertEqual(list(results), [4])
        shared = iter(range(10))
        self.assertEqual(list(self.pool.map(pow, shared, [1, 1], timeout=TIMEOUT)), [0, 1])
        self.assertEqual(next(shared), 3)
        with self.assertRaises(ZeroDivisionError):
            self.pool.map(pow, (1 // x for x in [1, 0]))

    def test_map_timeout_cancels_the_rest(self):
        release = threading.Event()
        started = threading.Event()

        def blocked(_):
            started.set()
            release.wait(TIMEOUT)

        pool = betterconcurrent.ThreadPoolExecutor(max_workers=1)
        try:
            results = pool.map(blocked, range(3), timeout=0.05)
            self.assertTrue(started.wait(TIMEOUT))
            with self.assertRaises(TimeoutError):
                next(results)
        finally:
            release.set()
            pool.shutdown(wait=True)

    def test_shutdown_cancel_futures_and_submit_after(self):
        pool = betterconcurrent.ThreadPoolExecutor(max_workers=1)
        release = threading.Event()
        started = threading.Event()

        def first():
            started.set()
            return release.wait(TIMEOUT)

        running = pool.submit(first)
        queued = pool.submit(pow, 1, 1)
        self.assertTrue(started.wait(TIMEOUT))
        pool.shutdown(wait=False, cancel_futures=True)
        self.assertTrue(queued.cancelled())
        with self.assertRaises(RuntimeError):
            pool.submit(pow, 1, 1)
        release.set()
        self.assertTrue(running.result(timeout=TIMEOUT))
        pool.shutdown(wait=True)

    def test_context_manager(self):
        with betterconcurrent.ThreadPoolExecutor(max_workers=1) as pool:
            f = pool.submit(pow, 3, 3)
        self.assertTrue(f.done())
        self.assertEqual(f.result(), 27)

    def test_failing_initializer_breaks_the_pool(self):
        def init():
            raise OSError('no init')

        with self.assertLogs('concurrent.futures', logging.CRITICAL) as logs:
            pool = betterconcurrent.ThreadPoolExecutor(max_workers=1, initializer=init)
            try:
                f = pool.submit(pow, 2, 2)
                with self.assertRaises(thread.BrokenThreadPool):
                    f.result(timeout=TIMEOUT)
                with self.assertRaises(thread.BrokenThreadPool):
                    pool.submit(pow, 2, 2)
                self.assertTrue(pool._broken)
            finally:
                pool.shutdown(wait=True)
        self.assertIn('Exception in initializer:', logs.output[0])
        self.assertIn('OSError: no init', logs.output[0])

    def test_initializer_runs_in_each_worker(self):
        seen = []
        pool = betterconcurrent.ThreadPoolExecutor(max_workers=1, initializer=seen.append,
                                                   initargs=('ready',))
        try:
            self.assertEqual(pool.submit(len, seen).result(timeout=TIMEOUT), 1)
        finally:
            pool.shutdown(wait=True)
        self.assertEqual(seen, ['ready'])
        with self.assertRaises(TypeError):
            betterconcurrent.ThreadPoolExecutor(initializer=42)
        with self.assertRaises(ValueError):
            betterconcurrent.ThreadPoolExecutor(max_workers=0)

    def test_thread_local_data_lasts_as_long_as_the_worker(self):
        # The usual initializer: a per-thread resource in a threading.local. As in CPython, each
        # worker keeps one Python thread state for its whole life, so what the initializer and
        # earlier tasks stored there is still there for later tasks on the same thread.
        local = threading.local()

        def open_resource():
            local.resource = 'connection of %d' % threading.get_ident()

        def use_resource(note):
            local.notes = getattr(local, 'notes', ()) + (note,)
            return local.resource, threading.get_ident(), local.notes

        with betterconcurrent.ThreadPoolExecutor(max_workers=1, initializer=open_resource) as pool:
            first = pool.submit(use_resource, 'a').result(timeout=TIMEOUT)
            second = pool.submit(use_resource, 'b').result(timeout=TIMEOUT)
        self.assertEqual(first[0], 'connection of %d' % first[1])
        self.assertEqual(second, (first[0], first[1], ('a', 'b')))

    def test_join_waits_for_subtasks(self):
        pool = betterconcurrent.ThreadPoolExecutor(max_workers=2)
        count = []
        lock = threading.Lock()

        def node(depth):
            with lock:
                count.append(depth)
            if depth < 4:
                for _ in range(2):
                    pool.submit(node, depth + 1)

        try:
            pool.submit(node, 0)
            pool.join(timeout=TIMEOUT)
            self.assertEqual(len(count), 31)
        finally:
            pool.shutdown(wait=True)

    def test_join_reports_unobserved_errors(self):
        pool = betterconcurrent.ThreadPoolExecutor(max_workers=1)
        try:
            pool.submit(raise_value_error, 'lost')
            seen = pool.submit(raise_value_error, 'seen')
            with self.assertRaises(ValueError):
                seen.result(timeout=TIMEOUT)
            with self.assertRaises(betterconcurrent.UnobservedTaskErrors) as caught:
                pool.join(timeout=TIMEOUT)
            self.assertEqual([str(e) for e in caught.exception.exceptions], ['lost'])
            self.assertIsInstance(caught.exception.exceptions[0], ValueError)
            pool.join(timeout=TIMEOUT)  # each error is reported once
        finally:
            pool.shutdown(wait=True)

    def test_join_timeout(self):
        pool = betterconcurrent.ThreadPoolExecutor(max_workers=1)
        release = threading.Event()
        try:
            pool.submit(release.wait, TIMEOUT)
            with self.assertRaises(TimeoutError):
                pool.join(timeout=0.01)
        finally:
            release.set()
            pool.shutdown(wait=True)

    def test_many_tasks_and_callbacks(self):
        counter = []
        all_called = threading.Event()

        def callback(f):
            counter.append(f)
            if len(counter) == 200:
                all_called.set()

        futures = [self.pool.submit(pow, i, 2) for i in range(200)]
        for f in futures:
            f.add_done_callback(callback)
        results = [f.result(timeout=TIMEOUT)
                   for f in betterconcurrent.as_completed(futures, timeout=TIMEOUT)]
        self.assertEqual(sorted(results), sorted(i * i for i in range(200)))
        # As in CPython, a future's callbacks run after its waiters were woken: the last ones
        # may still be running when as_completed() has handed out every future.
        self.assertTrue(all_called.wait(TIMEOUT))
        self.assertEqual(sorted(map(id, counter)), sorted(map(id, futures)))


# Generator tasks: generator functions submitted to the pool, driven cooperatively by the C++
# scheduler. A task that waited by blocking its worker would deadlock on max_workers=1, so most
# of these run there: completing at all (within TIMEOUT) shows the wait was cooperative.

def fib_each(pool, n):
    """Fork-join fib, waiting for each subtask's future in turn."""
    if n < 2:
        return n
    a = pool.submit(fib_each, pool, n - 1)
    b = pool.submit(fib_each, pool, n - 2)
    yield from a.yield_until_done()
    yield from b.yield_until_done()
    return a.result() + b.result()


def fib_all(pool, n):
    """Fork-join fib, waiting for both subtasks at once."""
    if n < 2:
        return n
    a = pool.submit(fib_all, pool, n - 1)
    b = pool.submit(fib_all, pool, n - 2)
    done, not_done = yield from betterconcurrent.yield_until_done([a, b])
    if done != {a, b} or not_done:
        raise AssertionError('yield_until_done returned before both were done')
    return a.result() + b.result()


def result_of(generator):
    """Runs `generator` by hand (as no driver would) and returns its return value."""
    try:
        while True:
            next(generator)
    except StopIteration as stop:
        return stop.value


class GeneratorTaskTest(unittest.TestCase):
    def make_pool(self, max_workers):
        pool = betterconcurrent.ThreadPoolExecutor(max_workers=max_workers)
        self.addCleanup(pool.shutdown, wait=True)
        return pool

    def make_event(self):
        """An Event that is set when the test ends (before the pools are shut down)."""
        event = threading.Event()
        self.addCleanup(event.set)
        return event

    # The original package's examples.

    def test_continuation_on_one_future(self):
        pool = self.make_pool(1)

        def continuation():
            answer = pool.submit(lambda a, b: a * b, 6, 7)
            result = yield from answer.yield_until_done()
            if result is not None or not answer.done():
                return 'resumed with %r, done=%r' % (result, answer.done())
            return 'the answer is %d' % answer.result()

        f = pool.submit(continuation)
        called = threading.Event()
        f.add_done_callback(lambda g: called.set() if g is f else None)
        self.assertEqual(f.result(timeout=TIMEOUT), 'the answer is 42')
        self.assertTrue(called.wait(TIMEOUT))  # the callback ran (on the worker, with the GIL)
        pool.join(timeout=TIMEOUT)

    def test_continuation_on_a_later_task(self):
        # On one worker the continuation runs first; only its suspension lets the task it
        # waits for run at all.
        pool = self.make_pool(1)
        handoff = betterconcurrent.Future()

        def continuation():
            yield from handoff.yield_until_done()
            later = handoff.result()
            yield from later.yield_until_done()
            return later.result() + 1

        f = pool.submit(continuation)
        handoff.set_result(pool.submit(pow, 41, 1))
        self.assertEqual(f.result(timeout=TIMEOUT), 42)

    def test_continuations_on_several_futures(self):
        pool = self.make_pool(1)

        def combined():
            parts = [pool.submit(pow, i, 2) for i in range(1, 21)]
            waited = yield from betterconcurrent.yield_until_done(parts)
            return waited, parts, sum(part.result() for part in parts)

        waited, parts, total = pool.submit(combined).result(timeout=TIMEOUT)
        self.assertEqual(total, 2870)  # 1^2 + ... + 20^2
        self.assertIsInstance(waited, _base.DoneAndNotDoneFutures)
        self.assertIsInstance(waited.done, set)
        self.assertEqual(waited.done, set(parts))
        self.assertEqual(waited.not_done, set())

    def test_waiting_for_a_future_that_gets_cancelled(self):
        pool = self.make_pool(1)
        hand_made = betterconcurrent.Future()
        waiting = threading.Event()

        def waits():
            waiting.set()
            yield from hand_made.yield_until_done()
            return hand_made.cancelled()

        f = pool.submit(waits)
        self.assertTrue(waiting.wait(TIMEOUT))
        self.assertTrue(hand_made.cancel())
        self.assertIs(f.result(timeout=TIMEOUT), True)

    # Fork-join on bounded pools.

    def test_fib_does_not_deadlock_on_bounded_pools(self):
        for max_workers in (1, 2):
            for fib in (fib_each, fib_all):
                with self.subTest(max_workers=max_workers, fib=fib.__name__):
                    pool = self.make_pool(max_workers)
                    self.assertEqual(pool.submit(fib, pool, 15).result(timeout=TIMEOUT), 610)
                    pool.join(timeout=TIMEOUT)
                    self.assertLessEqual(pool._num_threads, max_workers)

    def test_map_runs_generator_tasks(self):
        pool = self.make_pool(1)
        results = pool.map(fib_all, [pool] * 4, range(4, 8), timeout=TIMEOUT)
        self.assertEqual(list(results), [3, 5, 8, 13])

    def test_arguments_partials_and_methods(self):
        pool = self.make_pool(1)

        class Doubler:
            def __init__(self, factor):
                self.factor = factor

            def run(self, x, *, plus):
                inner = pool.submit(pow, x, 1)
                yield from inner.yield_until_done()
                return inner.result() * self.factor + plus

        self.assertEqual(pool.submit(Doubler(2).run, 5, plus=1).result(timeout=TIMEOUT), 11)
        self.assertEqual(
            pool.submit(functools.partial(fib_all, pool), 10).result(timeout=TIMEOUT), 55)

    # Exceptions.

    def test_exception_raised_by_a_generator_task(self):
        pool = self.make_pool(1)

        def failing(before_any_yield):
            if before_any_yield:
                raise KeyError('early')
            inner = pool.submit(pow, 2, 2)
            yield from inner.yield_until_done()
            raise ValueError('after waiting for %d' % inner.result())

        f = pool.submit(failing, False)
        caught = exception_raised_by_result(self, f)
        self.assertIsInstance(caught, ValueError)
        self.assertEqual(str(caught), 'after waiting for 4')
        self.assertIs(f.exception(), caught)
        frames = [frame.name for frame in traceback.extract_tb(caught.__traceback__)]
        self.assertIn('failing', frames)
        with self.assertRaisesRegex(KeyError, 'early'):
            pool.submit(failing, True).result(timeout=TIMEOUT)

    def test_exception_of_the_awaited_future(self):
        pool = self.make_pool(1)

        def waits_then_looks():
            inner = pool.submit(raise_value_error, 'inner failed')
            yield from inner.yield_until_done()  # does not raise: the future is just done
            yield from betterconcurrent.yield_until_done([inner])
            seen = inner.exception()
            try:
                inner.result()
            except ValueError as e:
                return seen, e

        seen, caught = pool.submit(waits_then_looks).result(timeout=TIMEOUT)
        self.assertIs(seen, caught)
        self.assertEqual(str(caught), 'inner failed')

        def propagates():
            inner = pool.submit(raise_value_error, 'passed on')
            yield from inner.yield_until_done()
            return inner.result()

        with self.assertRaisesRegex(ValueError, '^passed on$'):
            pool.submit(propagates).result(timeout=TIMEOUT)

    def test_first_exception(self):
        pool = self.make_pool(2)
        release = self.make_event()

        def waits():
            failing = pool.submit(raise_value_error, 'first')
            blocked = pool.submit(release.wait, TIMEOUT)
            done, not_done = yield from betterconcurrent.yield_until_done(
                [failing, blocked], timeout=TIMEOUT,
                return_when=betterconcurrent.FIRST_EXCEPTION)
            return done == {failing} and not_done == {blocked} and failing.exception()

        self.assertIsInstance(pool.submit(waits).result(timeout=TIMEOUT), ValueError)

    def test_yielding_anything_else_fails_the_task_and_closes_the_generator(self):
        pool = self.make_pool(1)
        progress = []

        def bad(value):
            try:
                progress.append('started')
                yield value
                progress.append('resumed')
            finally:
                progress.append('closed')

        for value in (42, None, betterconcurrent.Future()):
            with self.subTest(value=value):
                del progress[:]
                f = pool.submit(bad, value)
                error = f.exception(timeout=TIMEOUT)
                self.assertIsInstance(error, TypeError)
                self.assertIn("yielded a value of type '%s'" % type(value).__name__, str(error))
                self.assertIn('yield from fut.yield_until_done()', str(error))
                self.assertEqual(progress, ['started', 'closed'])

    def test_bad_yield_of_a_generator_that_refuses_to_close(self):
        pool = self.make_pool(1)

        def stubborn():
            try:
                yield 'not a request'
            except GeneratorExit:
                pass
            yield 'still not'  # close() raises RuntimeError; the next close() succeeds

        error = pool.submit(stubborn).exception(timeout=TIMEOUT)
        self.assertIsInstance(error, RuntimeError)  # "generator ignored GeneratorExit"
        self.assertIsInstance(error.__context__, TypeError)

    def test_waiting_for_its_own_future_raises_invalid_state_error(self):
        pool = self.make_pool(1)
        gate = betterconcurrent.Future()
        futures = {}

        def waits_for_itself(catch):
            yield from gate.yield_until_done()
            me = futures[catch]
            if not catch:
                yield from me.yield_until_done()
                return 'not reached'
            try:
                yield from me.yield_until_done()
            except concurrent.futures.InvalidStateError as e:
                caught = e
            # The generator goes on after catching it: wait for something else, then return.
            done, _ = yield from betterconcurrent.yield_until_done([gate])
            return caught, done

        futures[True] = pool.submit(waits_for_itself, True)
        futures[False] = pool.submit(waits_for_itself, False)
        gate.set_result(None)
        caught, done = futures[True].result(timeout=TIMEOUT)
        self.assertIsInstance(caught, concurrent.futures.InvalidStateError)
        self.assertIn('its own future', str(caught))
        self.assertEqual(done, {gate})
        with self.assertRaisesRegex(concurrent.futures.InvalidStateError, 'its own future'):
            futures[False].result(timeout=TIMEOUT)

        def waits_for_a_set_with_itself():
            me = futures['set']
            yield from betterconcurrent.yield_until_done([me, gate])

        gate2 = betterconcurrent.Future()

        def gated_set():
            yield from gate2.yield_until_done()
            yield from waits_for_a_set_with_itself()

        futures['set'] = pool.submit(gated_set)
        gate2.set_result(None)
        with self.assertRaises(concurrent.futures.InvalidStateError):
            futures['set'].result(timeout=TIMEOUT)

    # yield_until_done(fs, timeout, return_when).

    def test_timeout_with_a_future_that_never_completes(self):
        pool = self.make_pool(2)
        release = self.make_event()
        blocked = pool.submit(release.wait, TIMEOUT)
        hand_made = betterconcurrent.Future()

        def waits(timeout):
            done_one = pool.submit(pow, 2, 3)
            waited = yield from betterconcurrent.yield_until_done(
                [blocked, hand_made, done_one], timeout=timeout)
            return waited, done_one, blocked.done()

        for timeout in (0, 0.05):
            with self.subTest(timeout=timeout):
                (done, not_done), done_one, blocked_done = pool.submit(waits, timeout).result(
                    timeout=TIMEOUT)
                self.assertFalse(blocked_done)
                self.assertEqual(not_done - {done_one}, {blocked, hand_made})
                # done_one ran on the other worker; with timeout=0 it may not have yet.
                self.assertLessEqual(done, {done_one})
                if timeout:
                    self.assertEqual(done, {done_one})
        release.set()
        hand_made.set_result(None)
        self.assertTrue(blocked.result(timeout=TIMEOUT))

    def test_first_completed(self):
        pool = self.make_pool(1)
        never = betterconcurrent.Future()  # completed by the test at the end
        self.addCleanup(never.cancel)

        def waits():
            quick = pool.submit(pow, 3, 2)
            done, not_done = yield from betterconcurrent.yield_until_done(
                iter([never, quick, quick]), timeout=TIMEOUT,
                return_when=betterconcurrent.FIRST_COMPLETED)
            return done == {quick} and not_done == {never}

        self.assertIs(pool.submit(waits).result(timeout=TIMEOUT), True)

    def test_return_when_is_checked_like_wait(self):
        f = betterconcurrent.Future()
        with self.assertRaisesRegex(ValueError, 'Invalid return condition'):
            betterconcurrent.wait([f], return_when='SOMETIMES')
        with self.assertRaisesRegex(ValueError, 'Invalid return condition'):
            betterconcurrent.yield_until_done([f], return_when='SOMETIMES')
        pool = self.make_pool(1)

        def bad_condition():
            yield from betterconcurrent.yield_until_done([f], return_when='SOMETIMES')

        with self.assertRaisesRegex(ValueError, 'Invalid return condition'):
            pool.submit(bad_condition).result(timeout=TIMEOUT)

    def test_nested_helper_generators(self):
        pool = self.make_pool(1)

        def wait_for_square(x):
            f = pool.submit(pow, x, 2)
            yield from f.yield_until_done()
            return f.result()

        def wait_for_both(a, b):
            first = yield from wait_for_square(a)
            waited = yield from betterconcurrent.yield_until_done(
                [pool.submit(wait_for_square, b)])
            (second,) = waited.done
            return first + second.result()

        def outer():
            total = yield from wait_for_both(3, 4)
            more = yield from wait_for_both(5, 12)
            return total, more

        self.assertEqual(pool.submit(outer).result(timeout=TIMEOUT), (25, 169))

    # Only generator functions are driven.

    def test_a_plain_function_returning_a_generator_is_not_driven(self):
        pool = self.make_pool(1)
        ran = []

        def gen():
            ran.append('driven')
            yield 'first'

        def plain():
            return gen()

        result = pool.submit(plain).result(timeout=TIMEOUT)
        self.assertTrue(inspect.isgenerator(result))
        self.assertEqual(ran, [])  # the generator's body never ran
        self.assertEqual(list(result), ['first'])
        expression = pool.submit(lambda: (x * x for x in range(3))).result(timeout=TIMEOUT)
        self.assertEqual(list(expression), [0, 1, 4])

    def test_waits_outside_a_driver_block(self):
        # next() outside any task: the request is yielded, then the generator blocks until done.
        f = betterconcurrent.Future()
        waiting = f.yield_until_done()
        self.assertTrue(inspect.isgenerator(waiting))
        self.assertIn('wait request', repr(next(waiting)))
        t = threading.Thread(target=f.set_result, args=(7,))
        t.start()
        with self.assertRaises(StopIteration):
            next(waiting)
        t.join(TIMEOUT)
        self.assertTrue(f.done())
        # yield_until_done(fs) outside a task is wait(), timeouts included.
        g = betterconcurrent.Future()
        done, not_done = result_of(betterconcurrent.yield_until_done([f, g], timeout=0.01))
        self.assertEqual((done, not_done), ({f}, {g}))
        waited = result_of(betterconcurrent.yield_until_done(
            [f, g], return_when=betterconcurrent.FIRST_COMPLETED))
        self.assertIsInstance(waited, _base.DoneAndNotDoneFutures)
        self.assertEqual(waited.done, {f})

    def test_plain_task_iterating_a_wait_blocks_until_done(self):
        pool = self.make_pool(1)
        other = betterconcurrent.Future()
        got_request = threading.Event()

        def plain():
            for _ in other.yield_until_done():
                got_request.set()
            return other.done()

        f = pool.submit(plain)
        self.assertTrue(got_request.wait(TIMEOUT))
        other.set_result(None)
        self.assertIs(f.result(timeout=TIMEOUT), True)

    # join, shutdown.

    def test_join_waits_for_a_generator_task_tree_search(self):
        # The original package's fire-and-forget tree search, with generator tasks: each node
        # submits a task per child and nobody waits for the search; join() does. Here each node
        # also waits cooperatively for its left child (on a bounded pool, blocking there could
        # deadlock).
        depth_limit = 6
        nodes = 2 ** (depth_limit + 1) - 1  # 127
        for target in ('LRRL', None):
            with self.subTest(target=target):
                pool = self.make_pool(2)
                gate = betterconcurrent.Future()
                self.addCleanup(lambda gate=gate: gate.done() or gate.set_result(None))
                visited = []
                found = []
                lock = threading.Lock()

                def node(path):
                    with lock:
                        visited.append(path)
                        if path == target:
                            found.append(path)
                        if found or len(path) == depth_limit:
                            return
                    left = pool.submit(node, path + 'L')
                    pool.submit(node, path + 'R')  # fire-and-forget
                    yield from left.yield_until_done()

                def root():
                    yield from gate.yield_until_done()
                    yield from node('')

                pool.submit(root)
                with self.assertRaises(TimeoutError):
                    pool.join(timeout=0.05)  # the root is suspended on the gate
                self.assertEqual(visited, [])
                gate.set_result(None)
                pool.join(timeout=TIMEOUT)
                self.assertEqual(len(set(visited)), len(visited))
                if target is None:
                    self.assertEqual(found, [])
                    self.assertEqual(len(visited), nodes)  # join() waited for every node
                else:
                    self.assertEqual(found, [target])
                    self.assertIn(target, visited)
                    self.assertLessEqual(len(visited), nodes)

    def test_join_reports_unobserved_generator_task_errors(self):
        pool = self.make_pool(1)

        def fails():
            inner = pool.submit(pow, 1, 1)
            yield from inner.yield_until_done()
            raise ValueError('nobody looked')

        pool.submit(fails)
        with self.assertRaises(betterconcurrent.UnobservedTaskErrors) as caught:
            pool.join(timeout=TIMEOUT)
        self.assertEqual([str(e) for e in caught.exception.exceptions], ['nobody looked'])

    def test_shutdown_cancel_futures_lets_suspended_generator_tasks_finish(self):
        pool = betterconcurrent.ThreadPoolExecutor(max_workers=1)
        gate = betterconcurrent.Future()
        release = threading.Event()
        blocker_started = threading.Event()
        try:
            def suspended(submit_after):
                yield from gate.yield_until_done()
                if submit_after:
                    pool.submit(pow, 1, 1)  # RuntimeError: the pool is shut down
                return 'finished'

            def blocker():
                blocker_started.set()
                return release.wait(TIMEOUT)

            finishing = pool.submit(suspended, False)
            submitting = pool.submit(suspended, True)
            running = pool.submit(blocker)
            # One worker: the blocker runs only once both generator tasks are suspended.
            self.assertTrue(blocker_started.wait(TIMEOUT))
            queued = pool.submit(pow, 2, 2)
            pool.shutdown(wait=False, cancel_futures=True)
            self.assertTrue(queued.cancelled())
            self.assertFalse(finishing.done())
            gate.set_result(None)
            release.set()
            self.assertEqual(finishing.result(timeout=TIMEOUT), 'finished')
            with self.assertRaisesRegex(RuntimeError, 'shutdown'):
                submitting.result(timeout=TIMEOUT)
            self.assertTrue(running.result(timeout=TIMEOUT))
        finally:
            release.set()
            if not gate.done():
                gate.set_result(None)
            pool.shutdown(wait=True)

    def test_pool_dropped_by_its_own_generator_task(self):
        # The generator's frame holds the last reference to the pool: the executor is destroyed
        # on its own worker when the generator returns (with the GIL; the C++ destructor then
        # shuts down without waiting for itself), and the task's future still gets its result.
        def owns_the_pool(holder):
            pool = holder.pop()
            inner = pool.submit(pow, 2, 5)
            yield from inner.yield_until_done()
            more = pool.submit(pow, 2, 6)
            yield from betterconcurrent.yield_until_done([more])
            return inner.result() + more.result()

        for _ in range(5):
            holder = [betterconcurrent.ThreadPoolExecutor(max_workers=1)]
            f = holder[0].submit(owns_the_pool, holder)
            self.assertEqual(f.result(timeout=TIMEOUT), 96)
            self.assertEqual(holder, [])

    def test_interpreter_exit_with_generator_tasks_suspended(self):
        # The main thread ends while generator tasks are suspended: the exit waits for them,
        # they resume on the workers (which take the GIL for it), their frames are destroyed
        # there, and the process exits cleanly. (As in CPython, tasks cannot submit new tasks
        # once the exit has begun.) The child inherits this process's environment, so under the
        # sanitizer configs it is instrumented too.
        script = textwrap.dedent("""
            import atexit, betterconcurrent, threading

            pool = betterconcurrent.ThreadPoolExecutor(max_workers=2)
            release = threading.Event()
            blocker = pool.submit(release.wait, 60)
            results = []

            def suspended(i, quick, started):
                started.set()
                yield from blocker.yield_until_done()
                done, _ = yield from betterconcurrent.yield_until_done([blocker, quick])
                results.append((i, len(done), quick.result()))

            # Everything is submitted before the exit begins (then submit() raises).
            for i in range(5):
                started = threading.Event()
                pool.submit(suspended, i, pool.submit(pow, i, 2), started)
                assert started.wait(60)
            # Runs after everything else: the executors' exit hook waited for the tasks.
            atexit.register(lambda: print(sorted(results), flush=True))

            def release_when_the_exit_shuts_the_pool_down():
                pool._shutdown_called.wait()  # set by the exit hook's shutdown(wait=True)
                release.set()

            threading.Thread(target=release_when_the_exit_shuts_the_pool_down).start()
        """)
        child = subprocess.run([sys.executable, '-P', '-X', 'faulthandler', '-c', script],
                               capture_output=True, text=True, timeout=TIMEOUT * 2)
        self.assertEqual(child.returncode, 0, child.stderr)
        self.assertEqual(child.stdout, '[%s]\n' % ', '.join(
            '(%d, 2, %d)' % (i, i * i) for i in range(5)))
        self.assertEqual(child.stderr, '')

# Deadlocks: generator tasks suspended only on each other's futures can never resume. Once the
# pool is quiet, join() and shutdown(wait=True) end them with DeadlockError, without resuming
# them, and join() raises it. Waits that something else may end (a hand-made future, a timeout,
# FIRST_COMPLETED with such a future among the others) are never reported.

def running_repr(future):
    """repr(future) while its task runs (or is suspended): how a DeadlockError names it."""
    return '<Future at 0x%x state=running>' % id(future)


class DeadlockTest(unittest.TestCase):
    def make_pool(self, max_workers):
        pool = betterconcurrent.ThreadPoolExecutor(max_workers=max_workers)
        self.addCleanup(pool.shutdown, wait=True)
        return pool

    def make_gate(self):
        """A hand-made future, completed by the test (and when it ends, before the pools shut
        down). Waiting for it is never a deadlock."""
        gate = betterconcurrent.Future()
        self.addCleanup(lambda: gate.done() or gate.set_result(None))
        return gate

    def submit_started(self, pool, fn, *args):
        """Submits the generator function fn(*args) as a generator task and returns its future
        once the generator has started. From then until it suspends in its first wait the task
        runs, so the pool cannot look for deadlocks before that wait is in place."""
        started = threading.Event()

        def task():
            started.set()
            return (yield from fn(*args))

        future = pool.submit(task)
        self.assertTrue(started.wait(TIMEOUT))
        return future

    def start_ring(self, pool, n, member=None):
        """n generator tasks, task i waiting for task i+1's future (the last one for the first
        one's). Each first waits for the hand-made future `go`: the ring closes once the test
        sets it. Returns (ring, go). `member(i, ring, go)`, if given, is the generator function
        of task i."""
        go = self.make_gate()
        ring = []

        def default_member(i, ring, go):
            yield from go.yield_until_done()
            yield from ring[(i + 1) % n].yield_until_done()
            return 'not reached'

        ring.extend(self.submit_started(pool, member or default_member, i, ring, go)
                    for i in range(n))
        return ring, go

    def test_join_ends_a_ring_and_raises_deadlock_error(self):
        for max_workers in (1, 2):
            for n in (2, 3):
                with self.subTest(max_workers=max_workers, n=n):
                    pool = self.make_pool(max_workers)
                    ring, go = self.start_ring(pool, n)
                    names = [repr(f) for f in ring]
                    self.assertEqual(names, [running_repr(f) for f in ring])
                    go.set_result(None)
                    with self.assertRaises(betterconcurrent.DeadlockError) as caught:
                        pool.join(timeout=TIMEOUT)
                    message = str(caught.exception)
                    self.assertTrue(
                        message.startswith('deadlock: %d suspended task(s) of this executor' % n),
                        message)
                    for i in range(n):  # each task by its repr, and the one it waits for
                        self.assertIn('%s waits for %s' % (names[i], names[(i + 1) % n]), message)
                    for f in ring:
                        self.assertRegex(repr(f), r'state=finished raised DeadlockError>$')
                        error = f.exception(timeout=0)
                        self.assertIsInstance(error, betterconcurrent.DeadlockError)
                        self.assertEqual(str(error), message)
                        error = exception_raised_by_result(self, f)
                        self.assertIsInstance(error, betterconcurrent.DeadlockError)
                        self.assertEqual(str(error), message)
                    self.assertIsNone(pool.join(timeout=TIMEOUT))  # reported once
                    # The pool goes on: plain tasks, and generator tasks that wait.
                    self.assertEqual(pool.submit(pow, 2, 5).result(timeout=TIMEOUT), 32)
                    self.assertEqual(pool.submit(fib_all, pool, 10).result(timeout=TIMEOUT), 55)
                    self.assertIsNone(pool.join(timeout=TIMEOUT))

    def test_other_unobserved_errors_wait_for_the_next_join(self):
        pool = self.make_pool(1)
        pool.submit(raise_value_error, 'unseen')
        ring, go = self.start_ring(pool, 2)
        go.set_result(None)
        with self.assertRaises(betterconcurrent.DeadlockError):
            pool.join(timeout=TIMEOUT)
        # The ring's own DeadlockErrors are not reported again as unobserved.
        with self.assertRaises(betterconcurrent.UnobservedTaskErrors) as caught:
            pool.join(timeout=TIMEOUT)
        self.assertEqual([str(e) for e in caught.exception.exceptions], ['unseen'])
        self.assertIsNone(pool.join(timeout=TIMEOUT))

    def test_first_completed_with_a_hand_made_future_is_not_a_deadlock(self):
        pool = self.make_pool(2)
        ring, go = self.start_ring(pool, 2)
        hand_made = self.make_gate()

        def first_completed():
            done, not_done = yield from betterconcurrent.yield_until_done(
                [ring[0], hand_made], return_when=betterconcurrent.FIRST_COMPLETED)
            return done, not_done, ring[0].exception(timeout=0)

        waiter = self.submit_started(pool, first_completed)
        go.set_result(None)
        with self.assertRaises(betterconcurrent.DeadlockError) as caught:
            pool.join(timeout=TIMEOUT)
        message = str(caught.exception)
        self.assertTrue(message.startswith('deadlock: 2 suspended task(s)'), message)
        self.assertNotIn('0x%x' % id(waiter), message)
        # Ending the ring completed ring[0], which woke the waiter; join() waited for it.
        done, not_done, error = waiter.result(timeout=0)
        self.assertEqual((done, not_done), ({ring[0]}, {hand_made}))
        self.assertIsInstance(error, betterconcurrent.DeadlockError)
        self.assertFalse(hand_made.done())

    def test_waiting_for_all_of_a_ring_member_and_a_hand_made_future_is_ended_too(self):
        # It can never resume: ring[0] completes only if it does.
        pool = self.make_pool(2)
        ring, go = self.start_ring(pool, 2)
        hand_made = self.make_gate()

        def all_completed():
            yield from betterconcurrent.yield_until_done([ring[0], hand_made])
            return 'not reached'

        stuck = self.submit_started(pool, all_completed)
        go.set_result(None)
        with self.assertRaises(betterconcurrent.DeadlockError) as caught:
            pool.join(timeout=TIMEOUT)
        message = str(caught.exception)
        self.assertTrue(message.startswith('deadlock: 3 suspended task(s)'), message)
        # The hand-made future too is named by its repr.
        self.assertIn('%s waits for all of [' % running_repr(stuck), message)
        self.assertIn('<Future at 0x%x state=pending>' % id(hand_made), message)
        self.assertIsInstance(stuck.exception(timeout=0), betterconcurrent.DeadlockError)
        self.assertFalse(hand_made.done())

    def test_waits_on_a_hand_made_future_or_with_a_timeout_are_not_deadlocks(self):
        pool = self.make_pool(2)
        hand_made = self.make_gate()

        def waits_for_hand_made():
            yield from hand_made.yield_until_done()
            return hand_made.result()

        f = self.submit_started(pool, waits_for_hand_made)
        with self.assertRaises(TimeoutError) as caught:
            pool.join(timeout=0.1)
        self.assertNotIsInstance(caught.exception, betterconcurrent.DeadlockError)
        hand_made.set_result('set')
        self.assertIsNone(pool.join(timeout=TIMEOUT))
        self.assertEqual(f.result(timeout=0), 'set')
        # Two tasks waiting for each other with a timeout: the timers end the waits.
        pair = []
        go = self.make_gate()

        def timed(i):
            yield from go.yield_until_done()
            done, not_done = yield from betterconcurrent.yield_until_done(
                [pair[1 - i]], timeout=0.2)
            return done, not_done

        pair.extend(self.submit_started(pool, timed, i) for i in range(2))
        go.set_result(None)
        self.assertIsNone(pool.join(timeout=TIMEOUT))
        # The first to time out returns, which completes the other's wait (unless that one
        # timed out too).
        outcomes = [f.result(timeout=0) for f in pair]
        for i, outcome in enumerate(outcomes):
            self.assertIn(outcome, [(set(), {pair[1 - i]}), ({pair[1 - i]}, set())])
        self.assertIn(set(), [done for done, _ in outcomes])

    def test_shutdown_ends_a_ring(self):
        for join_after in (True, False):
            with self.subTest(join_after=join_after):
                pool = betterconcurrent.ThreadPoolExecutor(max_workers=2)
                ring, go = self.start_ring(pool, 3)
                go.set_result(None)
                shutting_down = threading.Thread(target=pool.shutdown, kwargs={'wait': True})
                shutting_down.start()
                shutting_down.join(TIMEOUT)
                self.assertFalse(shutting_down.is_alive())
                del shutting_down
                for f in ring:
                    self.assertIsInstance(f.exception(timeout=0), betterconcurrent.DeadlockError)
                if join_after:
                    # join() after shutdown() still reports it.
                    with self.assertRaises(betterconcurrent.DeadlockError):
                        pool.join(timeout=TIMEOUT)
                    with self.assertNoLogs('concurrent.futures'):
                        del pool
                else:
                    # Nobody joined: the pool's destruction logs it.
                    with self.assertLogs('concurrent.futures', logging.ERROR) as logs:
                        del pool
                    self.assertEqual(len(logs.records), 1)
                    self.assertIn('tasks deadlocked and nobody joined to hear of it',
                                  logs.output[0])
                    self.assertIn('DeadlockError: deadlock: 3 suspended task(s)', logs.output[0])

    def test_ended_generators_are_closed_on_the_joining_thread(self):
        # Each ended task's generator gets GeneratorExit at its `yield from`, on the thread that
        # called join() (which waits without the GIL), after its future got the DeadlockError;
        # done callbacks run there too. What the generator raises then goes to
        # sys.unraisablehook. Its generator is closed even if something else holds it, and freed.
        pool = self.make_pool(2)
        seen = []
        unraisable = []
        hook = sys.unraisablehook
        self.addCleanup(setattr, sys, 'unraisablehook', hook)
        sys.unraisablehook = lambda args: unraisable.append(
            (type(args.exc_value), str(args.exc_value), inspect.isgenerator(args.object)))

        def member(i, ring, go):
            try:
                yield from go.yield_until_done()
                yield from ring[1 - i].yield_until_done()
            except GeneratorExit:
                seen.append((i, 'GeneratorExit', threading.get_ident(),
                             type(ring[i].exception(timeout=0))))
                raise
            finally:
                seen.append((i, 'finally'))
                if i == 1:
                    raise ValueError('raised while closing')

        ring, go = self.start_ring(pool, 2, member)
        # Hold the generators that the driver holds (submit_started's, which delegate to the
        # members): closing them does not wait for the last reference.
        generators = [g for g in gc.get_objects()
                      if inspect.isgenerator(g) and inspect.isgenerator(g.gi_yieldfrom)
                      and g.gi_yieldfrom.gi_code is member.__code__]
        self.assertEqual(len(generators), 2)
        callbacks = []
        ring[0].add_done_callback(lambda f: callbacks.append(threading.get_ident()))
        go.set_result(None)
        with self.assertRaises(betterconcurrent.DeadlockError):
            pool.join(timeout=TIMEOUT)
        me = threading.get_ident()
        self.assertEqual(callbacks, [me])
        self.assertEqual(sorted(seen, key=str), sorted([
            (0, 'GeneratorExit', me, betterconcurrent.DeadlockError), (0, 'finally'),
            (1, 'GeneratorExit', me, betterconcurrent.DeadlockError), (1, 'finally')], key=str))
        self.assertEqual(unraisable, [(ValueError, 'raised while closing', True)])
        self.assertEqual([g.gi_frame for g in generators], [None, None])  # closed
        refs = [weakref.ref(g) for g in generators]
        del generators
        self.assertEqual([r() for r in refs], [None, None])  # freed, without gc.collect()

    def test_a_closing_generator_may_use_the_pool(self):
        # Its `finally` runs inside join(): it may submit a task (join() waits for that too) and
        # join with a timeout (which runs out: its own task is still being ended).
        pool = self.make_pool(2)
        seen = []

        def member(i, ring, go):
            try:
                yield from go.yield_until_done()
                yield from ring[1 - i].yield_until_done()
            finally:
                if i == 0:
                    seen.append(pool.submit(pow, 2, 3))
                    try:
                        pool.join(timeout=0.05)
                    except BaseException as e:  # whatever it is: checked below
                        seen.append(type(e))

        ring, go = self.start_ring(pool, 2, member)
        go.set_result(None)
        with self.assertRaises(betterconcurrent.DeadlockError):
            pool.join(timeout=TIMEOUT)
        submitted, nested_join_raised = seen
        self.assertEqual(submitted.result(timeout=0), 8)
        self.assertIs(nested_join_raised, TimeoutError)
        self.assertIsNone(pool.join(timeout=TIMEOUT))

    def test_interpreter_exit_ends_a_ring_nobody_joined(self):
        # The exit's shutdown(wait=True) ends the ring (closing the generators on the main
        # thread) instead of waiting forever. The pool is destroyed only while Python finalizes,
        # when the core can no longer log: its "nobody joined" record is not seen, as an
        # unobserved task error is not at exit either.
        script = textwrap.dedent("""
            import betterconcurrent, threading

            pool = betterconcurrent.ThreadPoolExecutor(max_workers=2)
            go = betterconcurrent.Future()
            ring = []

            def member(i):
                try:
                    yield from go.yield_until_done()
                    yield from ring[(i + 1) % 3].yield_until_done()
                finally:
                    print(i, threading.current_thread() is threading.main_thread(),
                          type(ring[i].exception(timeout=0)).__name__, flush=True)

            ring.extend(pool.submit(member, i) for i in range(3))
            go.set_result(None)
        """)
        child = subprocess.run([sys.executable, '-P', '-X', 'faulthandler', '-c', script],
                               capture_output=True, text=True, timeout=TIMEOUT * 2)
        self.assertEqual(child.returncode, 0, child.stderr)
        self.assertEqual(sorted(child.stdout.splitlines()),
                         ['%d True DeadlockError' % i for i in range(3)])
        self.assertEqual(child.stderr, '')


README = None  # README.md's path: the script's argument under Bazel


class ReadmeTest(unittest.TestCase):
    MARKER = '<!-- python example: run by python/binding_test.py (ReadmeTest) -->'

    def test_readme_python_example_runs(self):
        if README is None:
            self.skipTest('README.md not given')
        with open(README, encoding='utf-8') as f:
            text = f.read()
        self.assertEqual(text.count(self.MARKER), 1)
        after = text.split(self.MARKER, 1)[1].lstrip('\n')
        self.assertTrue(after.startswith('```python\n'), after[:40])
        code = after[len('```python\n'):].split('\n```\n', 1)[0]
        self.assertIn('yield from', code)
        exec(compile(code, 'README.md example', 'exec'), {'__name__': 'readme_example'})


if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1].endswith('README.md'):
        README = sys.argv.pop(1)
    unittest.main(verbosity=2)
