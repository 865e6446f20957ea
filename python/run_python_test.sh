#!/usr/bin/env bash
# run_python_test.sh SCRIPT [FILE...]: runs a Python script with Debian's python3 and the
# betterconcurrent package of the runfiles on PYTHONPATH. SCRIPT and the FILEs are paths
# relative to the workspace's runfiles; FILEs are passed to the script as absolute paths.
#
# Under --config=asan the extension needs the ASan runtime, which must be the first library of
# the process: it is preloaded into python3 (found as the extension's own dependency), followed
# by libstdc++. Leak
# detection is off for that process only: the interpreter deliberately leaves its own objects
# allocated at exit, and every allocation, ours included, goes through its uninstrumented frames,
# so LeakSanitizer could not tell the two apart (the C++ tests keep detect_leaks=1).
set -euo pipefail

root="${TEST_SRCDIR:?}/${TEST_WORKSPACE:?}"
ext="$root/python/betterconcurrent/_betterconcurrent.so"
[ -f "$ext" ] || { echo "missing extension: $ext" >&2; exit 1; }
export PYTHONPATH="$root/python"
export PYTHONDONTWRITEBYTECODE=1

libs="$(ldd "$ext")"
if grep -q 'libtsan\.so' <<<"$libs"; then
  echo "the extension was built with ThreadSanitizer; python3 cannot load it" >&2
  exit 1
fi
asan="$(awk '/libasan\.so/ { print $3 }' <<<"$libs")"
if [ -n "$asan" ]; then
  # libstdc++ too: ASan resolves the real __cxa_throw when it starts, so the C++ runtime must
  # already be loaded then (python3 itself does not link it).
  libstdcxx="$(awk '/libstdc\+\+\.so/ { print $3 }' <<<"$libs")"
  export LD_PRELOAD="$asan:$libstdcxx"
  export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"
fi

# -P: sys.path must not start with the script's real directory (the source tree, which has no
# extension), only with PYTHONPATH.
script="$root/$1"
shift
args=()
for f in "$@"; do args+=("$root/$f"); done
exec /usr/bin/python3 -P -X faulthandler "$script" "${args[@]}"
