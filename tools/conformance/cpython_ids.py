#!/usr/bin/python3
"""The CPython test ids that //conformance replays, and the manifest that accounts for them.

The source of truth is Debian's CPython 3.11 test suite (package libpython3.11-testsuite, for
Debian's /usr/bin/python3): this script imports test.test_concurrent_futures from it and lists
its test ids with unittest's own loader, so ids generated at import time (one class per executor
kind) are counted exactly as CPython's runner counts them.

  cpython_ids.py list                     print the suite's ids, sorted
  cpython_ids.py update MANIFEST          add new ids as `unclassified`, drop vanished ones
  cpython_ids.py check MANIFEST README BINARY...
                                          run the replay binaries; fail unless the manifest,
                                          the suite, the replays and the README's counts agree

The manifest is tab-separated, one line per id; `#` starts a comment line:
  <id>  replayed        <GoogleTest name: the id without its module, e.g. FutureTests.test_cancel>
  <id>  not applicable  <why the case cannot apply to a C++ port>
"""

import os
import re
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ElementTree

MODULE = "test.test_concurrent_futures"
EXPECTED_PYTHON = (3, 11)
REPLAYED = "replayed"
NOT_APPLICABLE = "not applicable"
UNCLASSIFIED = "unclassified"
# The README sentence that states the counts; check keeps it true.
README_COUNTS = re.compile(
    r"Of CPython's (\d+) test ids, (\d+) are replayed and (\d+) are not applicable;\s+"
    r"(\d+) replays pass")


def fail(message):
    sys.exit(f"cpython_ids.py: {message}")


def suite_ids():
    """The ids of the installed suite, sorted."""
    if sys.version_info[:2] != EXPECTED_PYTHON:
        fail(f"run with Debian's python3 {EXPECTED_PYTHON[0]}.{EXPECTED_PYTHON[1]} "
             f"(/usr/bin/python3), not {sys.executable} {sys.version.split()[0]}")
    try:
        module = __import__(MODULE, fromlist=["*"])
    except ImportError as e:
        fail(f"cannot import {MODULE} ({e}); install Debian's libpython3.11-testsuite "
             "(`make deps` does) and run this script with /usr/bin/python3")
    ids = []

    def walk(suite):
        for test in suite:
            if isinstance(test, unittest.TestSuite):
                walk(test)
            elif isinstance(test, unittest.loader._FailedTest):
                fail(f"the suite failed to load: {test.id()}")
            else:
                ids.append(test.id())

    walk(unittest.defaultTestLoader.loadTestsFromModule(module))
    return sorted(ids)


def gtest_name(test_id):
    """The GoogleTest name of a replay: the id without its module."""
    return test_id[len(MODULE) + 1:]


def read_manifest(path):
    """{id: (status, detail)}, in file order; fails on a malformed line."""
    entries = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            fields = line.split("\t")
            where = f"{path}:{number}"
            if len(fields) != 3 or not all(fields):
                fail(f"{where}: expected <id>TAB<status>TAB<detail>, got {line!r}")
            test_id, status, detail = fields
            if test_id in entries:
                fail(f"{where}: {test_id} is listed twice")
            if status not in (REPLAYED, NOT_APPLICABLE, UNCLASSIFIED):
                fail(f"{where}: status must be '{REPLAYED}' or '{NOT_APPLICABLE}', got {status!r}")
            entries[test_id] = (status, detail)
    return entries


def write_manifest(path, entries):
    with open(path, encoding="utf-8") as f:
        header = [line for line in f if line.startswith("#")]
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(header)
        for test_id in sorted(entries):
            status, detail = entries[test_id]
            f.write(f"{test_id}\t{status}\t{detail}\n")


def update(path):
    entries = read_manifest(path)
    ids = suite_ids()
    for test_id in ids:
        if test_id not in entries:
            entries[test_id] = (UNCLASSIFIED, "classify: replay it or give the reason")
            print(f"added {test_id}")
    for test_id in sorted(set(entries) - set(ids)):
        del entries[test_id]
        print(f"dropped {test_id} (no longer in the suite)")
    write_manifest(path, entries)


def run_gtest(binary):
    """Runs a GoogleTest binary: {Suite.test: whether it passed}."""
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.xml")
        # A failing case makes the binary exit non-zero; the report says which.
        subprocess.run([binary, f"--gtest_output=xml:{report}"], capture_output=True,
                       check=False)
        if not os.path.exists(report):
            fail(f"{binary} wrote no report: it crashed or hung")
        outcomes = {}
        for case in ElementTree.parse(report).iter("testcase"):
            passed = (case.get("result", "completed") == "completed"
                      and case.find("failure") is None)
            outcomes[f"{case.get('classname')}.{case.get('name')}"] = passed
        return outcomes


def check(manifest_path, readme_path, binaries):
    entries = read_manifest(manifest_path)
    ids = set(suite_ids())
    problems = []
    for test_id in sorted(ids - set(entries)):
        problems.append(f"{test_id}: in the CPython suite but not in the manifest "
                        f"(run `tools/conformance/cpython_ids.py update {manifest_path}`)")
    for test_id in sorted(set(entries) - ids):
        problems.append(f"{test_id}: in the manifest but not in the CPython suite")

    replays, passed = {}, set()
    for binary in binaries:
        for name, ok in run_gtest(binary).items():
            replays.setdefault(name, []).append(os.path.basename(binary))
            if ok:
                passed.add(name)
    claimed = set()
    for test_id, (status, detail) in sorted(entries.items()):
        if status == UNCLASSIFIED:
            problems.append(f"{test_id}: unclassified; replay it or mark it not applicable")
        elif status == REPLAYED:
            if detail != gtest_name(test_id):
                problems.append(f"{test_id}: its replay must be named {gtest_name(test_id)}, "
                                f"not {detail}")
            elif detail not in replays:
                problems.append(f"{test_id}: marked replayed, but no binary has {detail}")
            claimed.add(detail)
        else:
            twin = re.search(r"replayed as (\S+)$", detail)
            if twin and entries.get(f"{MODULE}.{twin.group(1)}", ("",))[0] != REPLAYED:
                problems.append(f"{test_id}: its reason names {twin.group(1)}, which is not "
                                "a replayed id")
    for name, where in sorted(replays.items()):
        if name not in claimed:
            problems.append(f"{name} (in {', '.join(where)}): a replay that no `replayed` "
                            "manifest line names")
        elif len(where) > 1:
            problems.append(f"{name}: defined in several binaries: {', '.join(where)}")

    counts = {status: sum(s == status for s, _ in entries.values())
              for status in (REPLAYED, NOT_APPLICABLE)}
    with open(readme_path, encoding="utf-8") as f:
        match = README_COUNTS.search(f.read())
    passing = len(passed & claimed)
    expected = (len(ids), counts[REPLAYED], counts[NOT_APPLICABLE], passing)
    sentence = (f"Of CPython's {expected[0]} test ids, {expected[1]} are replayed and "
                f"{expected[2]} are not applicable; {expected[3]} replays pass")
    if not match:
        problems.append(f"{readme_path}: no sentence like {sentence!r}")
    elif tuple(map(int, match.groups())) != expected:
        problems.append(f"{readme_path}: says {' '.join(match.group(0).split())!r}, "
                        f"but here {sentence!r}")
    for name in sorted(claimed - passed):
        if name in replays:
            problems.append(f"{name}: the replay fails")

    if problems:
        print("\n".join(problems), file=sys.stderr)
        fail(f"{len(problems)} problem(s) with {manifest_path}")
    print(f"{sentence}; the manifest, the suite, the replays and the README agree")


def main(argv):
    if len(argv) == 2 and argv[1] == "list":
        print("\n".join(suite_ids()))
    elif len(argv) == 3 and argv[1] == "update":
        update(argv[2])
    elif len(argv) >= 5 and argv[1] == "check":
        check(argv[2], argv[3], argv[4:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
