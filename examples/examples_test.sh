#!/bin/bash
# Runs each example binary given as an argument; fails if any exits non-zero.
status=0
for bin in "$@"; do
  echo "=== $bin"
  "$bin"
  rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "FAIL: $bin exited with $rc"
    status=1
  fi
done
exit $status
