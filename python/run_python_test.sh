#!/usr/bin/env bash
# run_python_test.sh SCRIPT [FILE...]: runs a Python script with Debian's python3 and the
# betterconcurrent package of the runfiles on PYTHONPATH. SCRIPT and the FILEs are paths
# relative to the workspace's runfiles; FILEs are passed to the script as absolute paths.
#
# Under --config=asan (and --config=tsan) the extension needs the sanitizer's runtime, which must
# be the first library of the process: it is preloaded into python3 (found as the extension's
# own dependency), followed by libstdc++. Leak
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
libstdcxx="$(awk '/libstdc\+\+\.so/ { print $3 }' <<<"$libs")"
asan="$(awk '/libasan\.so/ { print $3 }' <<<"$libs")"
tsan="$(awk '/libtsan\.so/ { print $3 }' <<<"$libs")"
if [ -n "$asan" ]; then
  # libstdc++ too: the sanitizer resolves the real __cxa_throw when it starts, so the C++
  # runtime must already be loaded then (python3 itself does not link it).
  export LD_PRELOAD="$asan:$libstdcxx"
  export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"
elif [ -n "$tsan" ]; then
  # The interpreter is not instrumented, so TSan sees only our C++ (the extension, the port,
  # Abseil); the GIL is a pthread mutex and condition variable, whose interceptors give TSan
  # the ordering that the GIL provides. TSAN_OPTIONS come from .bazelrc (halt_on_error=1).
  export LD_PRELOAD="$tsan:$libstdcxx"
fi

# -P: sys.path must not start with the script's real directory (the source tree, which has no
# extension), only with PYTHONPATH.
script="$root/$1"
shift
args=()
for f in "$@"; do args+=("$root/$f"); done
exec /usr/bin/python3 -P -X faulthandler "$script" "${args[@]}"
