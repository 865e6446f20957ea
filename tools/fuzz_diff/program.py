"""Random concurrent programs: their steps, the model that keeps them deterministic, printing.

A program is a list of steps (tuples, first element the operation) over named objects:
executors E0.., gates G0.. (threading.Event), task futures T0.. and hand-made futures H0...
`generate(seed, features)` builds one from random.Random(seed); `Model` replays a program and
decides, before each step, whether its observable outcome is determined by the program alone
(not by thread timing). The generator emits only such steps, and the shrinker keeps only
programs that the model still accepts, so every program has one expected outcome.

The model of an executor (`_schedule`): tasks submitted from outside start in FIFO order, at
most max_workers at a time; a task blocked on a closed gate holds its worker for ever, the
others finish. So, walking a plain executor's tasks in submission order, each task either
starts (if fewer than max_workers blocked tasks are ahead of it) or stays queued until a gate is
released. A task's state is determined ("queued", "blocked", "done") or transient ("will": it
will start and finish, we do not know when); observations that depend on the moment
(cancel(), running(), a wait with a short timeout) are emitted only for determined states.

"Coop" executors never receive gated tasks, so every task there starts and no worker is held
for ever; generator tasks (which suspend instead of holding a worker), tasks submitting
subtasks, and join() live there. A generator task finishes once the futures it waits on are
done.
"""

import copy
import random

SMALL = 0.05   # a timeout that expires: used only where nothing can finish within it
# Timeouts: None, 'big' (BOUND seconds: never reached unless something is broken) and the short
# ones, used only where the outcome cannot depend on timing: 'small' (SMALL), 'zero' (0) and
# 'neg' (-1, which CPython treats as 0).
SHORT = ('small', 'zero', 'neg')
TIMEOUTS = {None: None, 'small': SMALL, 'zero': 0, 'neg': -1}
MODES = ('FIRST_COMPLETED', 'FIRST_EXCEPTION', 'ALL_COMPLETED')

# Features a program may use; the runner drops the ones a backend does not support.
BASE_FEATURES = frozenset({'join'})
ALL_FEATURES = frozenset({'join', 'gen'})


class Invalid(Exception):
    """A step whose outcome the model cannot determine (or that refers to unknown names)."""


# ---------------------------------------------------------------------------------------------
# The model


class Fut:
    def __init__(self, name, kind, ex=None, spec=None):
        self.name = name
        self.kind = kind          # 'task' | 'hand'
        self.ex = ex              # executor name, for tasks
        self.spec = spec          # task spec (dict)
        self.started = False      # its start was observed (started event awaited)
        self.cancelled = False
        self.cancel_kind = None   # 'user' (cancel()) | 'shutdown' (cancel_futures)
        self.notified = False     # cancelled and its waiters notified (CANCELLED_AND_NOTIFIED)
        self.done = False         # known done (cancelled ones too)
        self.anon = False         # a task of map(): not a name of the program
        self.hstate = 'PENDING'   # hand futures: PENDING RUNNING CANCELLED NOTIFIED FINISHED
        self.observed = False     # its exception was (or will surely be, before the task ends) seen
        self.pending_obs = set()  # generator tasks that will look at its exception
        self.reported = False     # reported by a join already
        self.ncb = 0              # callbacks registered
        self.cbs_run = True       # every registered callback is known to have run


class Exec:
    def __init__(self, name, workers, coop):
        self.name = name
        self.workers = workers
        self.coop = coop
        self.shut = False
        self.tasks = []           # names, in submission order
        self.join_indet = False   # a join's error list would depend on timing
        self.forks_pending = False  # fire-and-forget subtasks may still be queued or running


def task_raises(spec):
    return spec.get('then') in ('raise', 'base')


class Model:
    def __init__(self, features=ALL_FEATURES):
        self.features = frozenset(features)
        self.execs = {}
        self.gates = {}           # name -> open?
        self.futs = {}            # name -> Fut (accepted futures only)
        self.rejected = set()     # task names whose submit raised (after shutdown)
        self.maps = []            # per map step: is the set of its items that ran determined?
        self.names = set()

    # -- derived states ------------------------------------------------------------------------

    def _schedule(self, ex):
        """{task: (starts, finishes)} for the executor's not-yet-known-done tasks."""
        out = {}
        blocked = 0
        for name in ex.tasks:
            f = self.futs[name]
            if f.cancelled and f.cancel_kind == 'user' and not f.notified:
                # stays in the queue until a worker reaches it and notifies its waiters
                reached = ex.coop or blocked < ex.workers
                out[name] = (reached, reached)
                continue
            if f.done:
                continue
            if ex.coop:
                out[name] = (True, self._gen_finishes(f))
                continue
            if blocked < ex.workers:
                gate = f.spec.get('gate')
                hand = f.spec.get('hand')
                if (gate is not None and not self.gates[gate]) or \
                        (hand is not None and not self.futs[hand].done):
                    blocked += 1
                    out[name] = (True, False)
                else:
                    out[name] = (True, True)
            else:
                out[name] = (False, False)
        return out

    def _sched_of(self, name):
        """_schedule's entry for one task (without walking a coop executor's other tasks)."""
        f = self.futs[name]
        ex = self.execs[f.ex]
        if not ex.coop:
            return self._schedule(ex)[name]
        if f.cancelled and f.cancel_kind == 'user' and not f.notified:
            return (True, True)
        return (True, self._gen_finishes(f))

    def _gen_finishes(self, f):
        deps = self.deps(f)
        if not deps:
            return True
        fin = [self.wstate(d) in ('done', 'will') for d in deps]
        mode = f.spec.get('mode', 'ALL_COMPLETED')
        if mode == 'FIRST_COMPLETED':
            return any(fin)
        if mode == 'FIRST_EXCEPTION':
            return all(fin) or any(ok and self.outcome_raises(d) for ok, d in zip(fin, deps))
        return all(fin)

    def deps(self, f):
        return f.spec.get('deps', ()) if f.kind == 'task' else ()

    def finishes(self, name):
        f = self.futs[name]
        if f.done:
            return True
        if f.kind == 'hand':
            return False
        return self._sched_of(name)[1]

    def wstate(self, name):
        """The state as wait(), as_completed() and yield_until_done() see it: CPython counts a
        cancelled future as done only once its waiters were notified (set_running_or_notify_cancel
        by a worker, or by hand). 'done' | 'will' | 'never' | 'excluded' (cancelled by
        shutdown(cancel_futures=True): never notified in CPython, notified by the port, a
        documented difference)."""
        f = self.futs[name]
        if not f.cancelled:
            st = self.state(name)
            return st if st in ('done', 'will') else 'never'
        if f.notified:
            return 'done'
        if f.kind == 'hand':
            return 'never'
        if f.cancel_kind == 'shutdown':
            return 'excluded'
        reached = self._sched_of(name)[0]
        return 'will' if reached else 'never'

    def _waited(self, name):
        """A wait saw name done."""
        f = self.futs[name]
        if f.cancelled:
            f.notified = True
        self._mark_done(name)

    def _gen_dep_pending(self, name):
        return any(self.futs[t].kind == 'task' and name in self.deps(self.futs[t])
                   and not self.futs[t].done for t in self.futs)

    def state(self, name):
        """'done' | 'will' (transient) | 'queued' | 'blocked' (started, waits for ever) |
        'never' (will not finish, start unknown) | 'hand' (hand-made, not done)."""
        f = self.futs[name]
        if f.done:
            return 'done'
        if f.kind == 'hand':
            return 'hand'
        starts, fin = self._sched_of(name)
        if fin:
            return 'will'
        if not starts:
            return 'queued'
        return 'blocked' if f.started else 'never'

    def outcome_raises(self, name):
        f = self.futs[name]
        if f.cancelled:
            return False
        if f.kind == 'hand':
            return f.hstate == 'FINISHED' and f.hand_raise
        return task_raises(f.spec)

    # -- helpers -------------------------------------------------------------------------------

    def _fut(self, name):
        if name not in self.futs:
            raise Invalid('unknown future %s' % name)
        return self.futs[name]

    def _exec(self, name):
        if name not in self.execs:
            raise Invalid('unknown executor %s' % name)
        return self.execs[name]

    def _new(self, name):
        if name in self.names:
            raise Invalid('name reused: %s' % name)
        self.names.add(name)

    def _mark_done(self, name):
        f = self.futs[name]
        if f.done:
            return
        f.done = True
        if f.kind == 'task':
            f.started = True
            for d in self.deps(f):       # a finished generator task has looked at its deps
                df = self.futs[d]
                if name in df.pending_obs:
                    df.pending_obs.discard(name)
                    if 'observe' in f.spec:
                        df.observed = True

    def _observe(self, name):
        f = self.futs[name]
        f.observed = True

    def _check_determined(self, name):
        st = self.state(name)
        if st in ('will', 'never'):
            raise Invalid('%s is transient' % name)
        return st

    def _all_done_on(self, ex, queue_drained):
        for t in ex.tasks:
            f = self.futs[t]
            self._mark_done(t)
            f.cbs_run = True
            if queue_drained and f.cancel_kind == 'user':
                f.notified = True   # the workers reached it

    # -- the steps -----------------------------------------------------------------------------

    def apply(self, step):
        """Checks that step is determined here and updates the model; raises Invalid if not."""
        getattr(self, 'op_' + step[0])(*step[1:])

    def op_executor(self, e, workers, coop):
        self._new(e)
        if coop and not (self.features & {'join', 'gen'}):
            raise Invalid('coop executors need join or gen')
        self.execs[e] = Exec(e, workers, coop)

    def op_bad_executor(self, workers):
        pass   # ThreadPoolExecutor(max_workers=0 or < 0): ValueError

    def op_gate(self, g):
        self._new(g)
        self.gates[g] = False

    def op_hand(self, h):
        self._new(h)
        self.futs[h] = Fut(h, 'hand')

    def op_submit(self, e, t, spec):
        ex = self._exec(e)
        self._new(t)
        kind = spec['kind']
        if kind in ('gen_one', 'gen_many', 'gfork') and 'gen' not in self.features:
            raise Invalid('gen feature off')
        if kind == 'fork' and 'join' not in self.features:
            raise Invalid('join feature off')
        if kind == 'gated' and ex.coop:
            raise Invalid('gated task on a coop executor')
        if not ex.coop and kind in ('gen_one', 'gen_many', 'gfork', 'fork'):
            raise Invalid('coop task on a plain executor')
        if kind == 'gated' and spec['gate'] not in self.gates:
            raise Invalid('unknown gate')
        if kind == 'hwait':
            if ex.coop:
                raise Invalid('blocking task on a coop executor')
            if spec['hand'] not in self.futs or self.futs[spec['hand']].kind != 'hand':
                raise Invalid('unknown hand-made future')
        for d in spec.get('deps', ()):
            self._fut(d)
            if self.futs[d].cancelled and not self.futs[d].notified:
                raise Invalid('waiting for a cancelled, not notified future')
        if ex.shut:
            self.rejected.add(t)   # RuntimeError; T is not defined afterwards
            return
        f = Fut(t, 'task', e, spec)
        self.futs[t] = f
        ex.tasks.append(t)
        if kind == 'fork':
            ex.forks_pending = True
        if 'observe' in spec:
            for d in spec['deps']:
                self.futs[d].pending_obs.add(t)

    def op_release(self, g):
        if g not in self.gates:
            raise Invalid('unknown gate')
        self.gates[g] = True

    def op_await_started(self, t):
        f = self._fut(t)
        if f.kind != 'task' or self.state(t) == 'queued' or f.spec['kind'] == 'noncall':
            raise Invalid('%s may never start (or sets no started event)' % t)
        if f.cancelled:
            raise Invalid('cancelled')
        f.started = True

    def op_await_done(self, t):
        self._fut(t)
        st = self.wstate(t)
        if st not in ('will', 'done'):
            raise Invalid('%s does not finish (for wait())' % t)
        self._waited(t)

    def op_cancel(self, n):
        f = self._fut(n)
        st = self._check_determined(n)
        if f.kind == 'hand':
            if f.hstate == 'PENDING':
                if self._gen_dep_pending(n):
                    raise Invalid('a generator task waits for %s' % n)
                f.hstate = 'CANCELLED'
                f.cancelled = f.done = True
                f.cancel_kind = 'user'
                f.cbs_run = True
            return
        if st == 'queued':
            if self._gen_dep_pending(n):
                raise Invalid('a generator task waits for %s' % n)
            f.cancelled = f.done = True
            f.cancel_kind = 'user'
            f.cbs_run = True

    def op_status(self, n):
        self._fut(n)
        self._check_determined(n)

    def op_result(self, n, timeout):
        self._get(n, timeout)

    def op_exception(self, n, timeout):
        self._get(n, timeout)

    def _get(self, n, timeout):
        self._fut(n)
        st = self.state(n)
        if st in ('will', 'done'):
            if timeout in SHORT and st == 'will':
                raise Invalid('small timeout on a transient future')
            self._mark_done(n)
            self._observe(n)
        else:
            if timeout not in SHORT:
                raise Invalid('would block for ever')

    def op_wait(self, ns, mode, timeout):
        self._wait_sets(ns, mode, timeout)
        if any(self.wstate(n) == 'will' for n in ns):
            for n in ns:
                self._waited(n)

    def _wait_sets(self, ns, mode, timeout):
        ns = list(dict.fromkeys(ns))   # a future listed twice counts once
        sts = {n: (self._fut(n) and self.wstate(n)) for n in ns}
        if 'excluded' in sts.values():
            raise Invalid('CPython never notifies futures cancelled by shutdown')
        will = [n for n in ns if sts[n] == 'will']
        never = [n for n in ns if sts[n] == 'never']
        done = [n for n in ns if sts[n] == 'done']
        if will:
            if never or mode != 'ALL_COMPLETED' or timeout in SHORT:
                raise Invalid('wait result depends on timing')
            return
        if mode == 'ALL_COMPLETED':
            sat = not never
        elif mode == 'FIRST_COMPLETED':
            sat = bool(done)
        else:
            sat = not never or any(self.outcome_raises(n) for n in done)
        if not sat and timeout not in SHORT:
            raise Invalid('wait would block for ever')

    def op_as_completed(self, ns, timeout, forced):
        ns = list(dict.fromkeys(ns))   # a future listed twice is yielded once
        sts = {n: (self._fut(n) and self.wstate(n)) for n in ns}
        if 'excluded' in sts.values():
            raise Invalid('CPython never notifies futures cancelled by shutdown')
        will = [n for n in ns if sts[n] == 'will']
        never = [n for n in ns if sts[n] == 'never']
        if forced:
            if will or timeout in SHORT or sorted(forced) != sorted(never):
                raise Invalid('forced order needs exactly the never-finishing futures')
            for n in forced:
                self._trigger_one(n, ns)
            return
        if will:
            if never or timeout in SHORT:
                raise Invalid('as_completed result depends on timing')
            for n in ns:
                self._waited(n)
            return
        if never and timeout not in SHORT:
            raise Invalid('as_completed would block for ever')

    def _trigger_one(self, n, ns):
        """Applies the trigger of n (release its gate / set the hand future); only n of ns may
        become finishing."""
        f = self.futs[n]
        if f.cancelled:
            raise Invalid('nothing finishes a cancelled future')
        if f.kind == 'hand':
            if f.hstate not in ('PENDING', 'RUNNING'):
                raise Invalid('hand future not settable')
            f.hstate = 'FINISHED'
            f.hand_raise = False
            f.done = True
        else:
            g = f.spec.get('gate')
            if g is None or self.gates[g]:
                raise Invalid('no gate to release')
            self.gates[g] = True
        for m in ns:
            if m != n and self.wstate(m) == 'will':
                raise Invalid('trigger of %s finishes %s too' % (n, m))
        if self.wstate(n) not in ('will', 'done'):
            raise Invalid('trigger does not finish %s' % n)
        self._mark_done(n)

    def op_add_cb(self, n, kind):
        f = self._fut(n)
        f.ncb += 1
        self._observe(n)
        if not f.done:
            f.cbs_run = False

    def op_cb_log(self, n):
        f = self._fut(n)
        if not f.cbs_run:
            raise Invalid('callbacks of %s may not have run' % n)

    def op_set_running(self, h):
        f = self._fut(h)
        if f.kind != 'hand':
            # On a task's future: only where no worker will call it again (CPython's worker
            # would die): done and not cancelled (RuntimeError). Not on one cancelled by
            # shutdown(cancel_futures=True): CPython returns False (CANCELLED), the port raises
            # RuntimeError because it notified already (CANCELLED_AND_NOTIFIED), a documented
            # difference.
            if not f.done or f.cancelled:
                raise Invalid('a worker may still call set_running_or_notify_cancel')
            return
        if f.hstate == 'PENDING':
            f.hstate = 'RUNNING'
        elif f.hstate == 'CANCELLED':
            f.hstate = 'NOTIFIED'
            f.notified = True

    def op_set_result(self, n, v):
        self._set(n, False)

    def op_set_exception(self, n, v):
        self._set(n, True)

    def _set(self, n, raises):
        f = self._fut(n)
        if f.kind == 'task':
            if not f.done:
                raise Invalid('setting a running task future is a documented difference')
            return
        if f.hstate in ('PENDING', 'RUNNING'):
            f.hstate = 'FINISHED'
            f.hand_raise = raises
            f.done = True

    def op_map(self, e, items, timeout, mode='list', extras=None, lazy=False):
        """mode 'list': list(E.map(...)); 'drop': the iterator is dropped unread (every item
        still runs, as in CPython, whose generator never started). extras: a second iterable
        (zip() semantics: the shorter one ends it). lazy: the iterables are generators (map
        consumes them when called)."""
        if extras is not None:
            items = items[:len(extras)]
        ex = self._exec(e)
        if ex.shut or not items:
            self.maps.append(True)   # RuntimeError from the first submit / nothing submitted
            return
        if mode == 'drop':
            k = len(self.maps)
            for i, (kind, v) in enumerate(items):
                name = 'M%d.%d' % (k, i)
                f = Fut(name, 'task', e, {'kind': 'plain', 'then': kind, 'v': v})
                f.anon = True
                self.futs[name] = f
                ex.tasks.append(name)
            self.maps.append(True)
            return
        sched = self._schedule(ex)
        blocked = sum(1 for s, fin in sched.values() if s and not fin)
        if not ex.coop and blocked >= ex.workers:
            if timeout not in SHORT:
                raise Invalid('map would block for ever')
            # TimeoutError at the first item; all of map's futures are cancelled, none runs
            self.maps.append(True)
            return
        if timeout in SHORT:
            raise Invalid('map timeout with running tasks')
        if any(k != 'value' for k, v in items):
            # the items after the first error are cancelled or not: a later join may differ
            ex.join_indet = True
            self.maps.append(False)
        else:
            self.maps.append(True)

    def op_shutdown(self, e, wait, cancel_futures):
        ex = self._exec(e)
        sched = self._schedule(ex)
        if cancel_futures:
            for t, (starts, fin) in sched.items():
                if starts and not self.futs[t].started:
                    raise Invalid('cancel_futures races with %s starting' % t)
        if ex.coop:
            if ex.forks_pending:
                raise Invalid('fire-and-forget subtasks may be pending')
            if any(self.futs[t].spec['kind'] == 'gfork' for t in sched):
                raise Invalid('a task may still submit subtasks')
        if wait:
            for t, (starts, fin) in sched.items():
                if not fin and not (cancel_futures and not starts):
                    raise Invalid('shutdown(wait=True) would block for ever on %s' % t)
        ex.shut = True
        if cancel_futures:
            for t, (starts, fin) in sched.items():
                f = self.futs[t]
                if not starts and f.cancelled:
                    # cancelled before and still queued: CPython drains it without notifying,
                    # the port notifies its waiters (the documented difference)
                    f.cancel_kind = 'shutdown'
                if not starts and not f.cancelled:
                    if self._gen_dep_pending(t):
                        raise Invalid('a generator task waits for %s' % t)
                    f.cancelled = f.done = True
                    f.cancel_kind = 'shutdown'
                    f.cbs_run = True
        if wait:
            self._all_done_on(ex, True)
            ex.forks_pending = False

    def op_join(self, e, timeout):
        ex = self._exec(e)
        if 'join' not in self.features:
            raise Invalid('join feature off')
        sched = self._schedule(ex)
        if any(not fin for s, fin in sched.values()):
            if timeout not in SHORT:
                raise Invalid('join would block for ever')
            return
        if timeout in SHORT:
            raise Invalid('a short join timeout only where tasks never finish')
        if ex.join_indet:
            raise Invalid('map errors make join indeterminate')
        for t in ex.tasks:
            f = self.futs[t]
            if task_raises(f.spec) and not f.cancelled and not f.observed and f.pending_obs:
                raise Invalid('a generator task may or may not look at %s first' % t)
        self._all_done_on(ex, False)
        ex.forks_pending = False
        for t in ex.tasks:
            f = self.futs[t]
            if task_raises(f.spec) and not f.cancelled and not f.observed:
                f.reported = True

    def epilogue_join(self):
        """Executors whose final join (after every gate, hand future and shutdown) is determined."""
        return sorted(e for e, ex in self.execs.items() if not ex.join_indet)


def validate(program, features):
    m = Model(features)
    for step in program['steps']:
        m.apply(step)
    return m


# ---------------------------------------------------------------------------------------------
# The generator


def generate(seed, features=ALL_FEATURES, max_steps=None):
    rnd = random.Random(seed)
    features = frozenset(features)
    m = Model(features)
    steps = []
    counters = {'E': 0, 'G': 0, 'T': 0, 'H': 0}

    def fresh(prefix):
        n = '%s%d' % (prefix, counters[prefix])
        counters[prefix] += 1
        return n

    def emit(step):
        trial = copy.deepcopy(m)
        try:
            trial.apply(step)
        except Invalid:
            return False
        m.apply(step)
        steps.append(step)
        return True

    n_exec = rnd.choice((1, 2, 2))
    for i in range(n_exec):
        coop = i == 1 and bool(features & {'join', 'gen'}) and rnd.random() < 0.7
        emit(('executor', fresh('E'), rnd.choice((1, 1, 2, 2, 3, 4, 8)), coop))
    for _ in range(rnd.randint(1, 3)):
        emit(('gate', fresh('G')))

    length = max_steps or rnd.randint(6, 40)
    attempts = 0
    while len(steps) < length and attempts < length * 30:
        attempts += 1
        step = _random_step(rnd, m, fresh)
        if step is not None and emit(step) and step[0] == 'submit' and rnd.random() < 0.08:
            for _ in range(rnd.randint(2, 8)):   # a burst of submits to the same executor
                spec = dict(step[3], v=_val(rnd))
                emit(('submit', step[1], fresh('T'), spec))
    return {'seed': seed, 'features': sorted(features), 'steps': steps}


def _val(rnd):
    return rnd.randint(0, 99)


def _random_step(rnd, m, fresh):
    execs = sorted(m.execs)
    plain = [e for e in execs if not m.execs[e].coop]
    coop = [e for e in execs if m.execs[e].coop]
    gates = sorted(m.gates)
    closed = [g for g in gates if not m.gates[g]]
    futs = sorted((n for n in m.futs if not m.futs[n].anon), key=_order)
    hands = [h for h in futs if m.futs[h].kind == 'hand']
    timeout = rnd.choice((None, None, 'small', 'small', 'big', 'zero', 'neg'))
    ops = ['submit'] * 8 + ['await_started'] * 3 + ['await_done'] * 3 + ['release'] * 2 + \
          ['cancel'] * 2 + ['status'] * 2 + ['result'] * 2 + ['exception'] * 2 + \
          ['wait'] * 3 + ['as_completed'] * 2 + ['add_cb'] * 2 + ['cb_log'] + \
          ['hand', 'set_running', 'set_result', 'set_exception', 'map', 'gate'] + \
          ['shutdown'] * 1 + (['join'] * 2 if 'join' in m.features else []) + \
          ['bad_executor'] * (rnd.random() < 0.1)
    op = rnd.choice(ops)
    if op == 'bad_executor':
        return ('bad_executor', rnd.choice((0, -1)))
    if op == 'gate':
        return ('gate', fresh('G')) if len(closed) < 3 else None
    if op == 'hand':
        return ('hand', fresh('H'))
    if op == 'submit':
        e = rnd.choice(execs)
        ex = m.execs[e]
        then = rnd.choice(('value', 'value', 'value', 'raise', 'raise', 'base'))
        if not ex.coop:
            pending = [h for h in hands if not m.futs[h].done]
            if rnd.random() < 0.03:
                # submit(42): CPython accepts it; the task fails with TypeError
                spec = {'kind': 'noncall', 'then': 'raise', 'v': 0}
            elif pending and rnd.random() < 0.15:
                # blocks its worker in result() until the hand-made future is set or cancelled
                spec = {'kind': 'hwait', 'hand': rnd.choice(pending), 'then': then,
                        'v': _val(rnd)}
            elif gates and rnd.random() < 0.6:
                spec = {'kind': 'gated', 'gate': rnd.choice(closed or gates), 'then': then,
                        'v': _val(rnd)}
            else:
                spec = {'kind': 'plain', 'then': then, 'v': _val(rnd)}
        else:
            kinds = ['plain']
            if 'join' in m.features:
                kinds.append('fork')
            if 'gen' in m.features and futs:
                kinds += ['gen_one', 'gen_many']
            if 'gen' in m.features:
                kinds.append('gfork')
            kind = rnd.choice(kinds)
            spec = {'kind': kind, 'then': then, 'v': _val(rnd)}
            if kind in ('fork', 'gfork'):
                spec['subs'] = [(rnd.choice(('value', 'value', 'raise')), _val(rnd))
                                for _ in range(rnd.randint(1, 4))]
            elif kind == 'gen_one':
                spec['deps'] = [rnd.choice(futs)]
                spec['observe'] = True
            elif kind == 'gen_many':
                spec['deps'] = sorted(set(rnd.choice(futs) for _ in range(rnd.randint(1, 3))),
                                      key=_order)
                spec['mode'] = rnd.choice(MODES)
        return ('submit', e, fresh('T'), spec)
    if op in ('await_started', 'await_done', 'cancel', 'status', 'result', 'exception',
              'add_cb', 'cb_log', 'set_result', 'set_exception') and not futs:
        return None
    if op == 'await_started':
        cands = [t for t in futs if m.futs[t].kind == 'task' and not m.futs[t].started]
        return ('await_started', rnd.choice(cands)) if cands else None
    if op == 'await_done':
        cands = [t for t in futs if m.state(t) == 'will']
        return ('await_done', rnd.choice(cands)) if cands else None
    if op == 'release':
        return ('release', rnd.choice(closed)) if closed else None
    if op in ('cancel', 'status', 'cb_log'):
        return (op, rnd.choice(futs))
    if op in ('result', 'exception'):
        return (op, rnd.choice(futs), timeout)
    if op == 'add_cb':
        return ('add_cb', rnd.choice(futs), rnd.choice(('log', 'log', 'raise')))
    if op == 'set_running':
        cands = hands if hands and rnd.random() < 0.8 else futs
        return ('set_running', rnd.choice(cands)) if cands else None
    if op in ('set_result', 'set_exception'):
        cands = hands if hands and rnd.random() < 0.85 else futs
        return (op, rnd.choice(cands), _val(rnd))
    if op in ('wait', 'as_completed'):
        if not futs:
            return None
        ns = sorted(set(rnd.choice(futs) for _ in range(rnd.randint(1, 4))), key=_order)
        if rnd.random() < 0.1:
            ns.append(rnd.choice(ns))   # listed twice
        elif rnd.random() < 0.03:
            ns = []
        if op == 'wait':
            return ('wait', ns, rnd.choice(MODES), timeout)
        forced = []
        never = [n for n in dict.fromkeys(ns) if m.state(n) not in ('will', 'done')]
        if never and rnd.random() < 0.6:
            forced = list(never)
            rnd.shuffle(forced)
            timeout = rnd.choice((None, 'big'))
        return ('as_completed', ns, timeout, forced)
    if op == 'map':
        e = rnd.choice(execs)
        items = [(rnd.choice(('value', 'value', 'value', 'raise', 'base')), _val(rnd))
                 for _ in range(rnd.randint(0, 4))]
        extras = [_val(rnd) for _ in range(rnd.randint(0, 5))] if rnd.random() < 0.2 else None
        lazy = rnd.random() < 0.3
        if rnd.random() < 0.25:
            return ('map', e, items, None, 'drop', extras, lazy)
        return ('map', e, items, rnd.choice((None, None, 'small', 'big', 'zero', 'neg')), 'list',
                extras, lazy)
    if op == 'shutdown':
        if rnd.random() < 0.5:
            return None
        return ('shutdown', rnd.choice(execs), rnd.random() < 0.5, rnd.random() < 0.5)
    if op == 'join':
        return ('join', rnd.choice(coop or execs),
                rnd.choice((None, None, 'small', 'big', 'zero', 'neg')))
    return None


def _order(name):
    return (name[0], int(name[1:]))


# ---------------------------------------------------------------------------------------------
# Printing


def _t(timeout):
    if timeout == 'big':
        return 'timeout=BOUND'
    return 'timeout=%g' % TIMEOUTS[timeout] if timeout else ''


def _task_text(spec):
    then = {'value': 'return %d', 'raise': 'raise ValueError(%d)',
            'base': 'raise TaskAbort(%d)'}[spec['then']] % spec['v']
    k = spec['kind']
    if k == 'plain':
        return 'task(%s)' % then
    if k == 'noncall':
        return '42   # not callable'
    if k == 'gated':
        return 'task(%s.wait(); %s)' % (spec['gate'], then)
    if k == 'hwait':
        return 'task(outcome of %s.result(); %s)' % (spec['hand'], then)
    if k == 'fork':
        subs = ', '.join(_item(kk, v) for kk, v in spec['subs'])
        return 'task(submit subtasks [%s] and forget them; %s)' % (subs, then)
    if k == 'gfork':
        subs = ', '.join(_item(kk, v) for kk, v in spec['subs'])
        return 'gen(fs = submit subtasks [%s]; yield from yield_until_done(fs); ' \
               'outcomes of fs; %s)' % (subs, then)
    if k == 'gen_one':
        return 'gen(yield from %s.yield_until_done(); outcome of %s; %s)' % (
            spec['deps'][0], spec['deps'][0], then)
    if k == 'gen_many':
        return 'gen(dn = yield from yield_until_done([%s], return_when=%s); %s)' % (
            ', '.join(spec['deps']), spec['mode'], then)
    return repr(spec)


def _item(kind, v):
    return {'value': '%d', 'raise': 'raise ValueError(%d)', 'base': 'raise TaskAbort(%d)'}[
        kind] % v


def pretty(program):
    lines = ['# seed %s, features %s' % (program.get('seed'), ','.join(program['features']))]
    for i, s in enumerate(program['steps']):
        op = s[0]
        if op == 'executor':
            txt = '%s = ThreadPoolExecutor(max_workers=%d)%s' % (
                s[1], s[2], '   # coop: no gated tasks' if s[3] else '')
        elif op == 'gate':
            txt = '%s = Event()' % s[1]
        elif op == 'bad_executor':
            txt = 'log(ThreadPoolExecutor(max_workers=%d))' % s[1]
        elif op == 'hand':
            txt = '%s = Future()' % s[1]
        elif op == 'submit':
            txt = '%s = %s.submit(%s)' % (s[2], s[1], _task_text(s[3]))
        elif op == 'release':
            txt = '%s.set()' % s[1]
        elif op == 'await_started':
            txt = '%s.started.wait()' % s[1]
        elif op == 'await_done':
            txt = 'wait([%s])' % s[1]
        elif op == 'cancel':
            txt = 'log(%s.cancel())' % s[1]
        elif op == 'status':
            txt = 'log(%s.cancelled(), %s.running(), %s.done(), repr(%s))' % (s[1], s[1], s[1], s[1])
        elif op in ('result', 'exception'):
            txt = 'log(%s.%s(%s))' % (s[1], op, _t(s[2]))
        elif op == 'wait':
            args = ['[%s]' % ', '.join(s[1])]
            if s[3]:
                args.append(_t(s[3]))
            args.append('return_when=%s' % s[2])
            txt = 'log(wait(%s))' % ', '.join(args)
        elif op == 'as_completed':
            args = '[%s]%s' % (', '.join(s[1]), ', ' + _t(s[2]) if s[2] else '')
            if s[3]:
                txt = 'it = as_completed(%s); log(the done ones); then for each of %s: ' \
                      'finish it (release its gate / set_result(0)), log(next(it))' % (
                          args, ', '.join(s[3]))
            else:
                txt = 'log(list(as_completed(%s)))' % args
        elif op == 'add_cb':
            txt = '%s.add_done_callback(%s)' % (s[1], 'log_cb' if s[2] == 'log' else
                                                 'log_then_raise_cb')
        elif op == 'cb_log':
            txt = 'log(callback log of %s)' % s[1]
        elif op == 'set_running':
            txt = 'log(%s.set_running_or_notify_cancel())' % s[1]
        elif op == 'set_result':
            txt = 'log(%s.set_result(%d))' % (s[1], s[2])
        elif op == 'set_exception':
            txt = 'log(%s.set_exception(ValueError(%d)))' % (s[1], s[2])
        elif op == 'map':
            items = '[%s]' % ', '.join(_item(k, v) for k, v in s[2])
            extras = s[5] if len(s) > 5 else None
            lazy = len(s) > 6 and s[6]
            if lazy:
                items = 'iter(%s)' % items
            if extras is not None:
                items += ', ' + ('iter(%s)' % extras if lazy else str(extras))
            call = '%s.map(%s, %s%s)' % (s[1], 'add_or_raise' if extras is not None else
                                          'ident_or_raise', items,
                                          ', ' + _t(s[3]) if s[3] else '')
            if len(s) > 4 and s[4] == 'drop':
                txt = '%s   # the iterator dropped unread' % call
            else:
                txt = 'log(list(%s))' % call
        elif op == 'shutdown':
            txt = '%s.shutdown(wait=%s, cancel_futures=%s)' % (s[1], s[2], s[3])
        elif op == 'join':
            txt = 'log(%s.join(%s))' % (s[1], _t(s[2]))
        else:
            txt = repr(s)
        lines.append('%3d  %s' % (i, txt))
    lines.append('     epilogue: set every gate and pending Future, shutdown(wait=True) each '
                 'executor, join() each, log every future and callback')
    return '\n'.join(lines)
