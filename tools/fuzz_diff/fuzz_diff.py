"""Differential fuzzing: random concurrent programs on CPython's concurrent.futures and on the port.

Usage:
  fuzz_diff.py [--seeds START:COUNT] [--backend-port-only] [--print SEED] [--port-path DIR]
               [--features join,gen] [--backends A,B] [--no-shrink] [--verbose]

Each seed gives one program (program.generate, reproducible). The program runs on both backends,
each in its own child process (interp.py), and their outcome records are compared. On a
mismatch the program is shrunk (steps removed while the model still accepts the program and the
backends still disagree), and the minimal program, the seed and both outcomes are printed. A
child that hangs is stopped by its watchdog (or killed by this process) and counts as a mismatch.
Exit status: 0 if every seed agreed, 1 otherwise.

--backend-port-only runs only the port (no comparison): it finds hangs, crashes and harness
errors, e.g. under a sanitizer. --backends cpython,cpython compares CPython with itself, which
finds the generator's own non-determinism. --print SEED prints the program (with the features
the backends support, as a run would generate it) and exits.

The port is imported from PYTHONPATH, or from --port-path (the directory holding the
betterconcurrent package, e.g. bazel-bin/python/binding_test.runfiles/betterconcurrent/python).
Without --seeds, FUZZ_DIFF_SEEDS (default 0:400) is used.
"""

import argparse
import copy
import json
import os
import queue
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import program as P  # noqa: E402
import interp  # noqa: E402

# A child's own watchdog reports a late step after 2 * BOUND; this is the fallback.
PARENT_TIMEOUT = 6 * interp.BOUND + 30


class Child:
    """A backend's child process: one program at a time, JSON lines both ways."""

    def __init__(self, backend, env):
        self.backend = backend
        self.env = env
        self.proc = None
        self.features = None
        self.restarts = 0

    def _start(self):
        self.proc = subprocess.Popen(
            [sys.executable, '-P', '-X', 'faulthandler', os.path.join(HERE, 'interp.py'),
             '--backend', self.backend],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self.env, text=True, bufsize=1)
        self.lines = queue.Queue()
        proc = self.proc

        def reader():
            for line in proc.stdout:
                self.lines.put(line)
            self.lines.put(None)

        threading.Thread(target=reader, daemon=True).start()
        hello = self._read(PARENT_TIMEOUT)
        if not hello or not hello.get('ready'):
            raise RuntimeError('backend %s did not start: %r' % (self.backend, hello))
        self.features = set(hello['features'])
        self.module = hello['module']

    def ensure(self):
        for attempt in range(3):
            if self.proc is not None and self.proc.poll() is None:
                return
            try:
                self._start()
            except RuntimeError:
                self._kill()
                if attempt == 2:
                    raise

    def _read(self, timeout):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        return None if line is None else json.loads(line)

    def send(self, program):
        self.ensure()
        try:
            self.proc.stdin.write(json.dumps({'program': program}) + '\n')
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def receive(self):
        res = self._read(PARENT_TIMEOUT)
        if res is None or res.get('hang') is not None or 'error' in res:
            # A late step (the child ends itself), a killed or crashed child, a harness error:
            # start afresh for the next program.
            if res is None:
                res = {'backend': self.backend, 'log': [], 'hang': 'no answer',
                       'exit': self._kill()}
            else:
                self._kill()
        return res

    def _kill(self):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            rc = 'unkillable'
        self.proc = None
        self.restarts += 1
        return rc

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._kill()


def run_on(children, program):
    for c in children:
        c.send(program)
    return [c.receive() for c in children]


def bad(res):
    """A hang, a crash, a harness error, or a bounded wait of the harness that ran out (the
    model promised it would not): wrong even if both backends agree."""
    if res.get('hang') is not None or 'error' in res:
        return True
    text = json.dumps(res['log'])
    return '"HANG"' in text or '"GATE-TIMEOUT"' in text or '"all finish", [' in text


def disagree(results):
    if any(bad(r) for r in results):
        return True
    return any(r['log'] != results[0]['log'] for r in results[1:])


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def repair(steps, features):
    """The steps the model still accepts, in order, after some were removed: a step that
    refers to a removed name, or whose observation is no longer determined, is dropped too."""
    m = P.Model(features)
    kept = []
    for step in steps:
        trial = copy.deepcopy(m)
        try:
            trial.apply(step)
        except P.Invalid:
            continue
        m = trial
        kept.append(step)
    return kept


def shrink(children, program, features, budget):
    """Removes chunks of steps (ddmin, each candidate repaired to a valid program) while the
    backends still disagree."""
    steps = list(program['steps'])
    trials = 0
    n = 2
    start = time.monotonic()
    while len(steps) >= 2 and trials < budget and time.monotonic() - start < 600:
        chunk = max(1, (len(steps) + n - 1) // n)
        removed = False
        for i in range(0, len(steps), chunk):
            cand = repair(steps[:i] + steps[i + chunk:], features)
            if len(cand) >= len(steps):
                continue
            cprog = dict(program, steps=cand)
            trials += 1
            if disagree(run_on(children, cprog)):
                steps = cand
                n = max(n - 1, 2)
                removed = True
                break
            if trials >= budget:
                break
        if not removed:
            if chunk == 1:
                break
            n = min(len(steps), n * 2)
    return dict(program, steps=steps), trials


def describe(res):
    lines = []
    if res.get('hang') is not None:
        lines.append('    HANG at step %s%s' % (res['hang'], (' (exit %s)' % res['exit'])
                                                if 'exit' in res else ''))
    if 'error' in res:
        lines.append('    HARNESS ERROR:\n' + res['error'])
    for entry in res['log']:
        lines.append('    ' + json.dumps(entry))
    return '\n'.join(lines)


def report(seed, program, results, note=''):
    out = ['=' * 78, 'MISMATCH seed %s%s' % (seed, note), P.pretty(program)]
    if len(results) == 2 and not any(bad(r) for r in results):
        i = first_difference(results[0]['log'], results[1]['log'])
        out.append('first difference at record %d:' % i)
        for r in results:
            entry = r['log'][i] if i < len(r['log']) else '(missing)'
            out.append('  %-8s %s' % (r['backend'], json.dumps(entry)))
    for r in results:
        out.append('outcome on %s:' % r['backend'])
        out.append(describe(r))
    print('\n'.join(out), flush=True)


def parse_seeds(text):
    start, _, count = text.partition(':')
    return range(int(start), int(start) + int(count or 1))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seeds', default=os.environ.get('FUZZ_DIFF_SEEDS', '0:400'),
                    help='START:COUNT')
    ap.add_argument('--backend-port-only', action='store_true')
    ap.add_argument('--backends', default='cpython,port')
    ap.add_argument('--print', type=int, metavar='SEED', dest='print_seed')
    ap.add_argument('--features', default=','.join(sorted(P.ALL_FEATURES)),
                    help='requested features (dropped where a backend lacks them)')
    ap.add_argument('--port-path')
    ap.add_argument('--no-shrink', action='store_true')
    ap.add_argument('--shrink-budget', type=int, default=200)
    ap.add_argument('--max-mismatches', type=int, default=5,
                    help='stop after this many mismatching seeds')
    ap.add_argument('--verbose', action='store_true')
    args = ap.parse_args(argv)

    requested = set(f for f in args.features.split(',') if f)

    env = dict(os.environ)
    if args.port_path:
        env['PYTHONPATH'] = os.path.abspath(args.port_path) + (
            os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    env['PYTHONDONTWRITEBYTECODE'] = '1'
    backends = ['port'] if args.backend_port_only else args.backends.split(',')
    children = [Child(b, env) for b in backends]
    for c in children:
        c.ensure()
    features = requested.intersection(*(c.features for c in children))
    if args.print_seed is not None:
        # the program of that seed as a run with these backends would generate it
        for c in children:
            c.close()
        print(P.pretty(P.generate(args.print_seed, features)))
        return 0
    print('fuzz_diff: backends %s, features %s (requested %s), seeds %s' % (
        ','.join(backends), ','.join(sorted(features)) or '-', ','.join(sorted(requested)),
        args.seeds), flush=True)
    for c in children:
        print('  %s: %s' % (c.backend, c.module), flush=True)

    seeds = parse_seeds(args.seeds)
    mismatches = []
    t0 = time.monotonic()
    ran = 0
    try:
        for seed in seeds:
            program = P.generate(seed, features)
            results = run_on(children, program)
            ran += 1
            if args.verbose:
                print('seed %d: %d steps, %s' % (seed, len(program['steps']),
                                                 'MISMATCH' if disagree(results) else 'ok'),
                      flush=True)
            if not disagree(results):
                continue
            mismatches.append(seed)
            if len(backends) == 1 or args.no_shrink:
                report(seed, program, results)
            else:
                again = [disagree(run_on(children, program)) for _ in range(2)]
                note = '' if all(again) else ' (FLAKY: reproduced %d of 2 reruns)' % sum(again)
                small, trials = shrink(children, program, features, args.shrink_budget)
                final = run_on(children, small)
                if not disagree(final):   # the shrunk one did not reproduce this time
                    small, final = program, results
                report(seed, small, final,
                       note + ' (shrunk from %d to %d steps in %d trials)' % (
                           len(program['steps']), len(small['steps']), trials))
            if len(mismatches) >= args.max_mismatches:
                print('fuzz_diff: stopping after %d mismatches' % len(mismatches))
                break
    finally:
        for c in children:
            c.close()
    print('fuzz_diff: %d seeds run in %.1fs, %d mismatch(es)%s' % (
        ran, time.monotonic() - t0, len(mismatches),
        (': seeds ' + ' '.join(map(str, mismatches))) if mismatches else ''), flush=True)
    return 1 if mismatches else 0


if __name__ == '__main__':
    sys.exit(main())
