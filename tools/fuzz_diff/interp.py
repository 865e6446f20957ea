"""Runs a program (program.py) on one backend and returns its outcome record.

Backends: 'cpython' (concurrent.futures; with the join/gen features, reference.py's
CoopThreadPoolExecutor on top of it) and 'port' (`import betterconcurrent`).

The outcome is a list of [step index, operation, observation], then the epilogue's (every gate
released, every pending hand-made future set, each executor shut down with wait=True, joined,
every future's final state and every callback's log) and the number of raising callbacks that
were logged. Two backends agree if the lists are equal.

Every blocking call is bounded: waits of the tasks on gates take BOUND seconds at most, and a
watchdog thread ends the process (after writing the outcome so far, with "hang" set) if one step
takes longer than 2 * BOUND, so a deadlock shows as a mismatch and never hangs the run.

As a child process (`interp.py --backend B`), it reads one JSON request per line on stdin
({"program": ...}) and writes one JSON outcome per line on stdout.
"""

import functools
import json
import logging
import os
import re
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import program as P  # noqa: E402

BOUND = float(os.environ.get('FUZZ_BOUND', '10'))


# ---------------------------------------------------------------------------------------------
# Backends


class _Backend:
    pass


def load_backend(name, features):
    b = _Backend()
    b.name = name
    if name == 'port':
        import betterconcurrent as cf
        b.cf = cf
        b.Executor = cf.ThreadPoolExecutor
        b.Future = cf.Future
        b.wait = cf.wait
        b.as_completed = cf.as_completed
        b.UnobservedTaskErrors = getattr(cf, 'UnobservedTaskErrors', None)
        b.yu_one = lambda f: f.yield_until_done()
        b.yu_many = getattr(cf, 'yield_until_done', None)
        b.features = set()
        if hasattr(cf.ThreadPoolExecutor, 'join'):
            b.features.add('join')
        if hasattr(cf, 'yield_until_done'):
            b.features.add('gen')
    elif name == 'cpython':
        import concurrent.futures as cf
        import reference
        b.cf = cf
        coop = bool(set(features) & {'join', 'gen'})
        b.Executor = reference.CoopThreadPoolExecutor if coop else cf.ThreadPoolExecutor
        b.Future = cf.Future
        b.wait = reference.wait if coop else cf.wait
        b.as_completed = cf.as_completed
        b.UnobservedTaskErrors = reference.UnobservedTaskErrors
        b.yu_one = reference.future_yield_until_done
        b.yu_many = reference.yield_until_done
        b.features = {'join', 'gen'}
    else:
        raise ValueError('unknown backend %r' % name)
    return b


def supported_features(name):
    return sorted(load_backend(name, ()).features)


# ---------------------------------------------------------------------------------------------
# Canonical observations


class TaskAbort(BaseException):
    """What tasks raise for then='base': not an Exception (CPython's worker catches it too)."""


def err(e):
    if type(e) is ValueError and e.args and isinstance(e.args[0], str):
        return ['raise', 'ValueError']   # the API's own (e.g. max_workers): its message is not ours
    if isinstance(e, (ValueError, TaskAbort)):
        return ['raise', type(e).__name__, list(e.args)]
    if type(e).__name__ == 'UnobservedTaskErrors':
        return ['raise', 'UnobservedTaskErrors', sorted(err(x) for x in e.exceptions)]
    return ['raise', type(e).__name__]


def outcome(f):
    """The state of a done future; calls exception() (which counts as looking at it)."""
    if f.cancelled():
        return ['cancelled']
    e = f.exception(timeout=0)
    if e is not None:
        return err(e)
    return ['ok', f.result(timeout=0)]


def T(timeout):
    return BOUND if timeout == 'big' else P.TIMEOUTS[timeout]


# ---------------------------------------------------------------------------------------------
# Tasks (module functions; each gets the run's context)


def _finish(spec):
    return sub_task(spec['then'], spec['v'])


def plain_task(ctx, name, spec):
    ctx.started[name].set()
    if spec['kind'] == 'gated' and not ctx.gates[spec['gate']].wait(BOUND):
        return 'GATE-TIMEOUT'
    return _finish(spec)


def hwait_task(ctx, name, spec):
    ctx.started[name].set()
    h = ctx.futs[spec['hand']]
    try:
        seen = ['ok', h.result(timeout=BOUND)]
    except TimeoutError:
        return 'GATE-TIMEOUT'
    except (Exception, TaskAbort) as e:
        seen = err(e)
    _finish(spec)
    return [seen, spec['v']]


def sub_task(kind, v):
    if kind == 'raise':
        raise ValueError(v)
    if kind == 'base':
        raise TaskAbort(v)
    return v


def map_item(ctx, k, item, extra=0):
    ctx.map_ran.setdefault(k, set()).add(item[2])
    return sub_task(item[0], item[1]) + extra


def fork_task(ctx, name, spec):
    ctx.started[name].set()
    ex = ctx.execs[ctx.where[name]]
    for kind, v in spec['subs']:
        ex.submit(sub_task, kind, v)
    return _finish(spec)


def gen_one_task(ctx, name, spec):
    ctx.started[name].set()
    f = ctx.futs[spec['deps'][0]]
    r = yield from ctx.b.yu_one(f)
    seen = ['after', r is None, f.done(), outcome(f)]
    _finish(spec)
    return [seen, spec['v']]


def gen_many_task(ctx, name, spec):
    ctx.started[name].set()
    fs = [ctx.futs[d] for d in spec['deps']]
    mode = getattr(ctx.b.cf, spec['mode'])
    dn = yield from ctx.b.yu_many(fs, return_when=mode)
    if spec['mode'] == 'ALL_COMPLETED':
        seen = [ctx.names(dn.done), ctx.names(dn.not_done)]
    else:
        seen = [bool(dn.done), all(f.done() for f in dn.done),
                len(dn.done) + len(dn.not_done) == len(fs)]
    _finish(spec)
    return [seen, spec['v']]


def gfork_task(ctx, name, spec):
    ctx.started[name].set()
    ex = ctx.execs[ctx.where[name]]
    subs = [ex.submit(sub_task, kind, v) for kind, v in spec['subs']]
    dn = yield from ctx.b.yu_many(subs)
    seen = [len(dn.done), len(dn.not_done), [outcome(s) for s in subs]]
    _finish(spec)
    return [seen, spec['v']]


TASKS = {'plain': plain_task, 'gated': plain_task, 'hwait': hwait_task, 'fork': fork_task, 'gen_one': gen_one_task,
         'gen_many': gen_many_task, 'gfork': gfork_task}


class _CallbackErrors(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record):
        try:
            if record.getMessage().startswith('exception calling callback for'):
                self.count += 1
        except Exception:
            pass


# ---------------------------------------------------------------------------------------------
# The interpreter


class Context:
    def __init__(self, b):
        self.b = b
        self.execs = {}
        self.gates = {}
        self.futs = {}
        self.where = {}
        self.started = {}
        self.cblog = {}
        self.ncb = {}
        self.order = []          # future names, in creation order
        self.map_ran = {}        # map step number -> indices of the items that ran
        self.nmaps = 0

    def names(self, fs):
        by_id = {id(f): n for n, f in self.futs.items()}
        return sorted((by_id.get(id(f), '?') for f in fs), key=_key)


def _key(name):
    try:
        return (name[0], int(name[1:]))
    except ValueError:
        return (name, 0)


class Watchdog:
    """One per process: ends it, after emitting the outcome so far, when a step is late."""

    def __init__(self, emit):
        self.result = None
        self.emit = emit
        self.deadline = None
        self.where = None
        self.lock = threading.Lock()
        t = threading.Thread(target=self._run, daemon=True)
        t.start()

    def arm(self, where, seconds):
        with self.lock:
            self.where = where
            self.deadline = time.monotonic() + seconds

    def disarm(self):
        with self.lock:
            self.deadline = None

    def _run(self):
        while True:
            time.sleep(0.05)
            with self.lock:
                late = self.deadline is not None and time.monotonic() > self.deadline
                where = self.where
            if late:
                res = dict(self.result)
                res['log'] = list(self.result['log'])
                res['hang'] = where
                try:
                    self.emit(res)
                finally:
                    os._exit(3)


def run_program(program, backend_name, dog=None):
    features = program['features']
    b = load_backend(backend_name, features)
    model = P.Model(features)
    ctx = Context(b)
    log = []
    result = {'backend': backend_name, 'log': log, 'hang': None}
    if dog:
        dog.result = result
    cblogger = logging.getLogger('concurrent.futures')
    counter = _CallbackErrors()
    cblogger.addHandler(counter)
    cblogger.propagate = False
    try:
        for i, step in enumerate(program['steps']):
            if dog:
                dog.arm(i, 2 * BOUND)
            obs = _run_step(ctx, model, step)
            log.append([i, step[0], obs])
            model.apply(step)
        if dog:
            dog.arm('epilogue', 4 * BOUND + 2 * BOUND * len(ctx.execs))
        log.extend(_epilogue(ctx, model))
        log.append(['callback errors logged', counter.count])
    except (Exception, TaskAbort):
        result['error'] = traceback.format_exc()
    finally:
        if dog:
            dog.disarm()
        cblogger.removeHandler(counter)
        for g in ctx.gates.values():
            g.set()
    return result


def _repr(f):
    """repr(f) without the address (and without the module of the class: CPython's repr
    names the class as the module sees it, concurrent.futures._base.Future vs ours)."""
    text = re.sub(r'0x[0-9a-fA-F]+', '0x', repr(f))
    return re.sub(r'^<[\w.]*Future', '<Future', text)


def _cb(ctx, name, idx, kind):
    def callback(f):
        ctx.cblog[(name, idx)] = outcome(f)
        if kind == 'raise':
            raise ValueError('callback %s/%d' % (name, idx))
    return callback


def _trigger(ctx, model, n):
    f = model.futs[n]
    if f.kind == 'hand':
        ctx.futs[n].set_result(0)
    else:
        ctx.gates[f.spec['gate']].set()


def _call(fn):
    try:
        return ['ok', fn()]
    except (Exception, TaskAbort) as e:
        return err(e)


def _run_step(ctx, model, step):
    op = step[0]
    b = ctx.b
    if op == 'executor':
        ctx.execs[step[1]] = b.Executor(max_workers=step[2])
        return None
    if op == 'gate':
        ctx.gates[step[1]] = threading.Event()
        return None
    if op == 'bad_executor':
        def make():
            b.Executor(max_workers=step[1])
        return _call(make)
    if op == 'hand':
        ctx.futs[step[1]] = b.Future()
        ctx.order.append(step[1])
        return None
    if op == 'submit':
        _, e, t, spec = step
        ctx.started[t] = threading.Event()
        ctx.where[t] = e
        try:
            if spec['kind'] == 'noncall':
                f = ctx.execs[e].submit(42)
            elif int(t[1:]) % 3 == 2:   # some by keyword
                f = ctx.execs[e].submit(TASKS[spec['kind']], ctx, t, spec=spec)
            else:
                f = ctx.execs[e].submit(TASKS[spec['kind']], ctx, t, spec)
        except Exception as exc:
            return err(exc)
        ctx.futs[t] = f
        ctx.order.append(t)
        return 'submitted'
    if op == 'release':
        ctx.gates[step[1]].set()
        return None
    if op == 'await_started':
        return ctx.started[step[1]].wait(BOUND) or 'HANG'
    if op == 'await_done':
        dn = b.wait([ctx.futs[step[1]]], timeout=BOUND)
        return 'done' if dn.done else 'HANG'
    f = ctx.futs.get(step[1]) if len(step) > 1 and isinstance(step[1], str) else None
    if op == 'cancel':
        return f.cancel()
    if op == 'status':
        return [f.cancelled(), f.running(), f.done(), _repr(f)]
    if op == 'result':
        return _call(lambda: f.result(timeout=T(step[2])))
    if op == 'exception':
        def get():
            e = f.exception(timeout=T(step[2]))
            return None if e is None else err(e)
        return _call(get)
    if op == 'wait':
        fs = [ctx.futs[n] for n in step[1]]
        dn = b.wait(fs, timeout=T(step[3]), return_when=getattr(b.cf, step[2]))
        return [ctx.names(dn.done), ctx.names(dn.not_done)]
    if op == 'as_completed':
        _, ns, timeout, forced = step
        fs = [ctx.futs[n] for n in ns]
        if not forced:
            got = []
            end = 'stop'
            try:
                for g in b.as_completed(fs, timeout=T(timeout)):
                    got.append(g)
            except TimeoutError:
                end = 'TimeoutError'
            return [ctx.names(got), end]
        ndone = sum(1 for n in dict.fromkeys(ns) if model.wstate(n) == 'done')
        it = b.as_completed(fs, timeout=T(timeout))
        first = [next(it) for _ in range(ndone)]
        order = []
        for n in forced:
            _trigger(ctx, model, n)
            order.append(ctx.names([next(it)])[0])
        try:
            end = ctx.names([next(it)])[0]
        except StopIteration:
            end = 'stop'
        except TimeoutError:
            end = 'TimeoutError'
        return [ctx.names(first), order, end]
    if op == 'add_cb':
        idx = ctx.ncb.get(step[1], 0)
        ctx.ncb[step[1]] = idx + 1
        f.add_done_callback(_cb(ctx, step[1], idx, step[2]))
        return None
    if op == 'cb_log':
        return [ctx.cblog.get((step[1], i), 'not run') for i in range(ctx.ncb.get(step[1], 0))]
    if op == 'set_running':
        return _call(f.set_running_or_notify_cancel)
    if op == 'set_result':
        return _call(lambda: f.set_result(step[2]))
    if op == 'set_exception':
        return _call(lambda: f.set_exception(ValueError(step[2])))
    if op == 'map':
        e, items, timeout = step[1:4]
        mode = step[4] if len(step) > 4 else 'list'
        extras = step[5] if len(step) > 5 else None
        lazy = len(step) > 6 and step[6]
        k = ctx.nmaps
        ctx.nmaps += 1
        fn = functools.partial(map_item, ctx, k)
        consumed = [0]

        def counted(xs):
            for x in xs:
                consumed[0] += 1
                yield x

        iterables = [[list(x) + [i] for i, x in enumerate(items)]]
        if extras is not None:
            iterables.append(list(extras))
        if lazy:
            iterables = [counted(xs) for xs in iterables]
        out = []
        try:
            it = ctx.execs[e].map(fn, *iterables, timeout=T(timeout))
            if mode == 'drop':
                del it
                return ['dropped', consumed[0]]
            if lazy:
                out.append(['consumed at the call', consumed[0]])
            for r in it:
                out.append(r)
        except (Exception, TaskAbort) as exc:
            return [out, err(exc)]
        return [out, None]
    if op == 'shutdown':
        return _call(lambda: ctx.execs[step[1]].shutdown(wait=step[2], cancel_futures=step[3]))
    if op == 'join':
        return _call(lambda: ctx.execs[step[1]].join(timeout=T(step[2])))
    raise ValueError('unknown step %r' % (step,))


def _epilogue(ctx, model):
    out = []
    for n in ctx.order:
        if model.futs[n].kind == 'hand' and not ctx.futs[n].done():
            ctx.futs[n].set_result('epilogue')
    for g in ctx.gates.values():
        g.set()
    # Every task finishes now; wait for them first, so that tasks submitting subtasks have done
    # so before the shutdowns (whose submit would raise RuntimeError then).
    running = [ctx.futs[n] for n in ctx.order if not ctx.futs[n].cancelled()]
    dn = ctx.b.wait(running, timeout=BOUND)
    out.append(['epilogue', 'all finish', ctx.names(dn.not_done) or 'yes'])
    for e, ex in ctx.execs.items():
        out.append(['epilogue', 'shutdown ' + e, _call(lambda: ex.shutdown(wait=True))])
    if 'join' in model.features:
        for e in model.epilogue_join():
            ex = ctx.execs[e]
            out.append(['epilogue', 'join ' + e, _call(lambda: ex.join(timeout=BOUND))])
    for n in ctx.order:
        f = ctx.futs[n]
        out.append(['epilogue', n, [f.cancelled(), f.done(), outcome(f) if f.done() else None]])
    for k, determined in enumerate(model.maps):
        if determined:
            out.append(['epilogue', 'map %d ran' % k, sorted(ctx.map_ran.get(k, ()))])
    for n in ctx.order:
        if ctx.ncb.get(n):
            out.append(['epilogue', 'callbacks ' + n,
                        [ctx.cblog.get((n, i), 'not run') for i in range(ctx.ncb[n])]])
    return out


# ---------------------------------------------------------------------------------------------
# Child process


def child_main(backend):
    out = sys.stdout
    sys.stdout = sys.stderr   # nothing else may write on the protocol's stream
    lock = threading.Lock()

    def emit(res):
        with lock:
            out.write(json.dumps(res) + '\n')
            out.flush()

    dog = Watchdog(emit)
    b = load_backend(backend, ())
    emit({'ready': True, 'features': sorted(b.features), 'module': b.cf.__file__})
    for line in sys.stdin:
        req = json.loads(line)
        res = run_program(req['program'], backend, dog)
        emit(res)


if __name__ == '__main__':
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument('--backend', required=True, choices=('cpython', 'port'))
    child_main(ap.parse_args().backend)
