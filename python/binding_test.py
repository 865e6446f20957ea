"""Tests of the betterconcurrent extension: the Python face of the C++ port.

Every wait is bounded (TIMEOUT); tasks that must not finish yet block on a threading.Event that
the test sets, never on a sleep.
"""

import concurrent.futures
import logging
import re
import threading
import traceback
import unittest

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
        self.assertIs(betterconcurrent.thread, thread)

    def test_exception_classes_are_the_standard_ones(self):
        self.assertIs(betterconcurrent.CancelledError, concurrent.futures.CancelledError)
        self.assertIs(betterconcurrent.TimeoutError, TimeoutError)
        self.assertIs(betterconcurrent.InvalidStateError, concurrent.futures.InvalidStateError)
        self.assertIs(betterconcurrent.BrokenExecutor, concurrent.futures.BrokenExecutor)
        self.assertIs(thread.BrokenThreadPool, concurrent.futures.thread.BrokenThreadPool)
        self.assertTrue(issubclass(betterconcurrent.UnobservedTaskErrors, _base.Error))

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
        # Not assertRaises: it drops the exception's traceback.
        try:
            f.result(timeout=TIMEOUT)
        except ValueError as e:
            caught = e
        else:
            self.fail('result() did not raise')
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


if __name__ == '__main__':
    unittest.main(verbosity=2)
