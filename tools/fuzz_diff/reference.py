"""A small pure-Python reference for betterconcurrent's additions, on CPython's executor.

CoopThreadPoolExecutor is concurrent.futures.ThreadPoolExecutor plus:
- generator tasks: submit(gen_fn, *args) with inspect.isgeneratorfunction(gen_fn). The
  generator runs on a worker until it yields a wait request (from `yield from
  yield_until_done(...)`); then it gives the worker back, done callbacks on the awaited futures
  put its continuation on the work queue once the wait is over, and the value of the `yield from`
  is the DoneAndNotDoneFutures of that wait. Its return value is the future's result.
- join(timeout=None): waits until no task (subtasks included) is queued, running or suspended,
  counted by a counter and a Condition; then raises UnobservedTaskErrors for the failed tasks
  whose exception nobody looked at (result() raising it or exception() returning it), each once.
- shutdown() lets suspended generator tasks finish: the work queue's end marker is put only when
  none is left, and cancel_futures cancels only tasks that have not started.

It is the expected behaviour for the differential tests, not an implementation to use.
"""

import concurrent.futures as _cf
import concurrent.futures._base as _base
import concurrent.futures.thread as _thread
import inspect
import threading

ALL_COMPLETED = _cf.ALL_COMPLETED
FIRST_COMPLETED = _cf.FIRST_COMPLETED
FIRST_EXCEPTION = _cf.FIRST_EXCEPTION

_internal = threading.local()   # set while the stdlib's own wait() looks at exceptions


class UnobservedTaskErrors(_base.Error):
    def __init__(self, exceptions):
        super().__init__('%d task exception(s) never observed' % len(exceptions))
        self.exceptions = list(exceptions)


class ObservedFuture(_base.Future):
    """A Future that remembers whether its exception was looked at by the user."""

    _observed = False

    def _mark(self):
        if not getattr(_internal, 'active', False) and self._state == _base.FINISHED \
                and self._exception is not None:
            self._observed = True

    def result(self, timeout=None):
        try:
            return super().result(timeout)
        finally:
            self._mark()

    def exception(self, timeout=None):
        try:
            return super().exception(timeout)
        finally:
            self._mark()


def wait(fs, timeout=None, return_when=ALL_COMPLETED):
    """The stdlib's wait(), whose internal exception() calls do not count as observing."""
    _internal.active = True
    try:
        return _cf.wait(fs, timeout, return_when)
    finally:
        _internal.active = False


class _WaitRequest:
    def __init__(self, fs, timeout, return_when):
        self.fs = list(fs)
        self.timeout = timeout
        self.return_when = return_when


def yield_until_done(fs, timeout=None, return_when=ALL_COMPLETED):
    """`yield from` this in a generator task: evaluates to wait()'s DoneAndNotDoneFutures."""
    result = yield _WaitRequest(fs, timeout, return_when)
    return result


def future_yield_until_done(fut):
    """The reference's fut.yield_until_done(): `yield from` it; evaluates to None."""
    yield _WaitRequest([fut], None, ALL_COMPLETED)
    return None


def _satisfied(fs, return_when):
    done = [f for f in fs if f.done()]
    if return_when == FIRST_COMPLETED:
        return bool(done)
    if return_when == FIRST_EXCEPTION and any(
            not f.cancelled() and f._exception is not None for f in done):
        return True
    return len(done) == len(fs)


class _Item:
    """A work item of CoopThreadPoolExecutor: a plain call, a generator's first step, or a
    generator's continuation (`gen` set)."""

    def __init__(self, executor, future, fn, args, kwargs, gen=None, value=None):
        self.executor = executor
        self.future = future
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.gen = gen
        self.value = value

    @property
    def is_continuation(self):
        return self.gen is not None

    def run(self):
        if self.gen is not None:
            self._step(self.gen, self.value)
            return
        if not self.future.set_running_or_notify_cancel():
            self.executor._task_ended(self.future, False)
            return
        if inspect.isgeneratorfunction(self.fn):
            try:
                gen = self.fn(*self.args, **self.kwargs)
            except BaseException as exc:
                self.future.set_exception(exc)
                self.executor._task_ended(self.future, True)
                return
            self._step(gen, None)
            return
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)
        self.executor._task_ended(self.future, False)

    def _step(self, gen, value):
        try:
            request = gen.send(value)
        except StopIteration as stop:
            self.future.set_result(stop.value)
        except BaseException as exc:
            self.future.set_exception(exc)
        else:
            if not isinstance(request, _WaitRequest):
                gen.close()
                self.future.set_exception(TypeError('generator task yielded %r' % (request,)))
            else:
                self._suspend(gen, request)
                return
        self.executor._task_ended(self.future, True)

    def _suspend(self, gen, request):
        lock = threading.Lock()
        fired = []

        def resume(timed_out=False):
            with lock:
                if fired:
                    return
                if not timed_out and not _satisfied(request.fs, request.return_when):
                    return
                fired.append(True)
            done = set(f for f in request.fs if f.done())
            value = _base.DoneAndNotDoneFutures(done, set(request.fs) - done)
            self.executor._put(_Item(self.executor, self.future, None, (), {}, gen, value))

        if request.timeout is not None:
            timer = threading.Timer(request.timeout, resume, (True,))
            timer.daemon = True
            timer.start()
        for f in request.fs:
            f.add_done_callback(lambda _f: resume())
        if not request.fs:
            resume()


class CoopThreadPoolExecutor(_thread.ThreadPoolExecutor):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Reentrant: a done callback that resumes a generator task may run inside shutdown()'s
        # cancellations, which hold this lock.
        self._shutdown_lock = threading.RLock()
        self._jcond = threading.Condition()
        self._outstanding = 0       # accepted tasks not ended
        self._generators = 0        # generator tasks not ended
        self._ended_errors = []     # futures of failed tasks, in end order, not yet reported
        self._deferred_shutdown = False

    def submit(self, fn, /, *args, **kwargs):
        with self._shutdown_lock, _thread._global_shutdown_lock:
            if self._broken:
                raise _thread.BrokenThreadPool(self._broken)
            if self._shutdown:
                raise RuntimeError('cannot schedule new futures after shutdown')
            if _thread._shutdown:
                raise RuntimeError('cannot schedule new futures after interpreter shutdown')
            f = ObservedFuture()
            with self._jcond:
                self._outstanding += 1
                if inspect.isgeneratorfunction(fn):
                    self._generators += 1
                    f._is_generator = True
            self._work_queue.put(_Item(self, f, fn, args, kwargs))
            self._adjust_thread_count()
            return f

    def _put(self, item):
        with self._shutdown_lock:
            self._work_queue.put(item)
            self._adjust_thread_count()

    def _task_ended(self, future, generator):
        fire = False
        with self._jcond:
            self._outstanding -= 1
            if getattr(future, '_is_generator', False):
                self._generators -= 1
                fire = self._deferred_shutdown and self._generators == 0
                if fire:
                    self._deferred_shutdown = False
            if not future.cancelled() and future._exception is not None:
                self._ended_errors.append(future)
            self._jcond.notify_all()
        if fire:
            super().shutdown(wait=False)

    def join(self, timeout=None):
        with self._jcond:
            if not self._jcond.wait_for(lambda: self._outstanding == 0, timeout):
                raise TimeoutError()
            errors = [f for f in self._ended_errors if not f._observed]
            self._ended_errors = []
        if errors:
            raise UnobservedTaskErrors([f._exception for f in errors])

    def shutdown(self, wait=True, *, cancel_futures=False):
        with self._shutdown_lock:
            self._shutdown = True
            if cancel_futures:
                keep = []
                while True:
                    try:
                        item = self._work_queue.get_nowait()
                    except Exception:
                        break
                    if item is None or item.is_continuation:
                        keep.append(item)
                    elif item.future.cancel():
                        self._task_ended(item.future, False)
                    else:
                        keep.append(item)
                for item in keep:
                    self._work_queue.put(item)
        with self._jcond:
            defer = self._generators > 0
            if defer and not wait:
                self._deferred_shutdown = True
                return
            if wait:
                self._jcond.wait_for(lambda: self._generators == 0)
        super().shutdown(wait=wait)
