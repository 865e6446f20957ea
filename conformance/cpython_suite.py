"""Runs CPython 3.11's own test_concurrent_futures against betterconcurrent's Python extension.

The suite is the one Debian's libpython3.11-testsuite installs (/usr/lib/python3.11/test),
imported in place. Before it is imported, `concurrent.futures` and its submodules are replaced
by betterconcurrent's, in sys.modules and as the attribute of the `concurrent` package; the
runner then checks, in this process, that the suite really got ours, and stops with an error if
not.

Selected: the cases of the thread pool, the futures, wait() and as_completed() (the classes in
SELECTED_CLASSES). The process-pool cases test the standard library's ProcessPoolExecutor, which
betterconcurrent re-exports unchanged, so they are not run here.

Exclusions: cpython_suite_exclusions.tsv lists `<test id>\t<reason>`, one per line, for cases
that depend on CPython's Python internals. Each is reported as skipped with its reason; an id
that names no selected case is an error (the list must not go stale).

Cases that start a fresh interpreter (script_helper's assert_python_ok, isolated mode) get a
python3 wrapper as sys.executable that substitutes and checks there too (child_interpreter).

Each case is bounded: if one runs longer than PER_TEST_TIMEOUT seconds, every thread's stack is
dumped and the process exits with an error.

The README states how many cases run, how many are excluded and how many pass (README_COUNTS);
the runner fails if that sentence is not what it measured.

Usage: cpython_suite.py EXCLUSIONS_FILE README
"""

import faulthandler
import re
import sys
import unittest

PER_TEST_TIMEOUT = 120  # seconds

SELECTED_CLASSES = (
    'FutureTests',
    'ThreadPoolAsCompletedTest',
    'ThreadPoolExecutorTest',
    'ThreadPoolFailingInitializerTest',
    'ThreadPoolInitializerTest',
    'ThreadPoolShutdownTest',
    'ThreadPoolWaitTests',
)

# The README sentence that states the counts; the runner keeps it true.
README_COUNTS = re.compile(
    r"CPython's own suite runs (\d+) of its cases against the Python package, (\d+) excluded;\s+"
    r"(\d+) pass")


def substitute():
    """Makes concurrent.futures (and submodules) resolve to betterconcurrent's."""
    import betterconcurrent
    from betterconcurrent import _base, process, thread
    import concurrent

    modules = {
        'concurrent.futures': betterconcurrent,
        'concurrent.futures._base': _base,
        'concurrent.futures.thread': thread,
        'concurrent.futures.process': process,
    }
    sys.modules.update(modules)
    concurrent.futures = betterconcurrent
    return modules


def fail(message):
    sys.stderr.write('cpython_suite: %s\n' % message)
    sys.exit(2)


def check_substitution(modules, suite=None):
    """Fails loudly unless every way the suite (if given) reaches concurrent.futures gives ours."""
    import betterconcurrent
    from betterconcurrent import _betterconcurrent
    import concurrent
    import concurrent.futures
    import concurrent.futures._base
    import concurrent.futures.thread
    from concurrent import futures

    for name, module in modules.items():
        if sys.modules[name] is not module:
            fail('sys.modules[%r] is %r, not betterconcurrent\'s' % (name, sys.modules[name]))
    checks = [
        ('concurrent.futures', concurrent.futures, betterconcurrent),
        ('from concurrent import futures', futures, betterconcurrent),
        ('concurrent.futures._base', concurrent.futures._base, modules['concurrent.futures._base']),
        ('concurrent.futures.thread', concurrent.futures.thread,
         modules['concurrent.futures.thread']),
        ('concurrent.futures.Future', concurrent.futures.Future, _betterconcurrent.Future),
    ]
    if suite is not None:
        checks += [
            ('the suite\'s futures', suite.futures, betterconcurrent),
            ('the suite\'s Future', suite.Future, _betterconcurrent.Future),
            ('the suite\'s futures.wait', suite.futures.wait, _betterconcurrent.wait),
            ('the suite\'s futures.as_completed', suite.futures.as_completed,
             _betterconcurrent.as_completed),
        ]
    for what, got, expected in checks:
        if got is not expected:
            fail('substitution did not take effect: %s is %r, expected %r' % (what, got, expected))
    if not issubclass(concurrent.futures.ThreadPoolExecutor, _betterconcurrent.ThreadPoolExecutor):
        fail('concurrent.futures.ThreadPoolExecutor is not the C++ pool')
    if suite is not None and not isinstance(suite.PENDING_FUTURE, _betterconcurrent.Future):
        fail('the suite\'s module-level futures are not betterconcurrent Futures')


def substitute_in_child():
    """What a child interpreter runs first (see child_interpreter)."""
    check_substitution(substitute())


# Some cases run code in a fresh interpreter (test.support.script_helper: sys.executable, in
# isolated mode `-I`, which ignores PYTHONPATH). So that they test betterconcurrent too,
# sys.executable becomes this wrapper: it prefixes `-c` code with the substitution and its check.
_CHILD_WRAPPER = """#!/bin/bash
prelude='import sys; sys.path[:0] = [{paths}]; import cpython_suite; \
cpython_suite.substitute_in_child(); del cpython_suite, sys
'
args=()
while [ $# -gt 0 ]; do
  if [ "$1" = -c ] && [ $# -ge 2 ]; then
    args+=(-c "$prelude$2"); shift 2; args+=("$@"); break
  fi
  args+=("$1"); shift
done
exec {python} "${{args[@]}}"
"""


def child_interpreter(directory):
    """Writes the wrapper into `directory` and returns its path."""
    import os
    package_dir = os.path.dirname(os.path.dirname(sys.modules['betterconcurrent'].__file__))
    # JSON strings are Python literals too, and have no single quote to break the bash quoting.
    import json
    paths = ', '.join(json.dumps(p) for p in (package_dir, os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(directory, 'python3-betterconcurrent')
    with open(path, 'w', encoding='utf-8') as f:
        f.write(_CHILD_WRAPPER.format(paths=paths, python=sys.executable))
    os.chmod(path, 0o755)
    return path


def read_exclusions(path):
    exclusions = {}
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip('\n')
            if not line or line.startswith('#'):
                continue
            test_id, sep, reason = line.partition('\t')
            if not sep or not reason.strip():
                fail('%s:%d: expected "<test id><TAB><reason>"' % (path, number))
            exclusions[test_id] = reason.strip()
    return exclusions


def selected_cases(suite_module):
    loader = unittest.TestLoader()
    cases = []
    for name in SELECTED_CLASSES:
        cls = getattr(suite_module, name, None)
        if cls is None:
            fail('the suite has no class %s' % name)
        cases.extend(loader.loadTestsFromTestCase(cls))
    return cases


class BoundedResult(unittest.TextTestResult):
    """Arms a watchdog around each case."""

    def startTest(self, test):
        faulthandler.dump_traceback_later(PER_TEST_TIMEOUT, exit=True)
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        faulthandler.cancel_dump_traceback_later()


def main(argv):
    if len(argv) != 3:
        fail('usage: cpython_suite.py EXCLUSIONS_FILE README')
    exclusions = read_exclusions(argv[1])

    modules = substitute()
    from test import test_concurrent_futures as suite_module
    if not suite_module.__file__.startswith('/usr/lib/python3.11/test/'):
        fail('the suite was not loaded from /usr/lib/python3.11/test: %s' % suite_module.__file__)
    check_substitution(modules, suite_module)
    import os
    import tempfile
    sys.executable = child_interpreter(os.environ.get('TEST_TMPDIR') or tempfile.mkdtemp())

    cases = selected_cases(suite_module)
    ids = {case.id() for case in cases}
    stale = sorted(set(exclusions) - ids)
    if stale:
        fail('exclusions name no selected case: %s' % ', '.join(stale))
    for case in cases:
        reason = exclusions.get(case.id())
        if reason is not None:
            setattr(case, case._testMethodName,
                    unittest.skip('excluded: ' + reason)(getattr(case, case._testMethodName)))

    suite = unittest.TestSuite(cases)
    runner = unittest.TextTestRunner(verbosity=2, resultclass=BoundedResult, stream=sys.stdout)
    result = runner.run(suite)
    passed = result.testsRun - len(result.failures) - len(result.errors) - len(result.skipped)
    print('cpython_suite: %d selected, %d passed, %d failed, %d errors, %d skipped (%d excluded)'
          % (result.testsRun, passed, len(result.failures), len(result.errors),
             len(result.skipped), len(exclusions)))
    return 0 if result.wasSuccessful() and readme_agrees(argv[2], result, passed) else 1


def readme_agrees(readme_path, result, passed):
    """Whether the README's sentence states the counts of this run; says what to write if not."""
    measured = (result.testsRun, len(result.skipped), passed)
    sentence = ("CPython's own suite runs %d of its cases against the Python package, %d excluded; "
                "%d pass" % measured)
    with open(readme_path, encoding='utf-8') as f:
        match = README_COUNTS.search(f.read())
    if match and tuple(map(int, match.groups())) == measured:
        return True
    print('cpython_suite: %s: %s, but this run measured %r' % (
        readme_path, 'says %r' % ' '.join(match.group(0).split()) if match else 'has no count sentence',
        sentence), file=sys.stderr)
    return False


if __name__ == '__main__':
    sys.exit(main(sys.argv))
