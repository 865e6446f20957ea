#!/bin/bash
# Checks conformance/manifest.tsv against the installed CPython suite, the replay binaries given
# as arguments, and the README's counts (see tools/conformance/cpython_ids.py).
set -euo pipefail
exec /usr/bin/python3 tools/conformance/cpython_ids.py check conformance/manifest.tsv README.md "$@"
