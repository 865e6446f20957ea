#!/usr/bin/env bash
# Installs everything the build needs on a fresh Debian 12 machine, offline but for Debian's
# archive: Bazel 4.2.3 and its rule sets from Debian packages, GoogleTest and Google Benchmark,
# and Abseil's full source (Debian's source package), which the sanitizer builds instrument.
# Idempotent: a second run only checks.
set -euo pipefail

DEPS_DIR="${BETTERCONCURRENT_DEPS:-/opt/betterconcurrent-deps}"
# g++ 12 is the compiler (its libasan/libubsan/liblsan/libtsan serve the sanitizer configs);
# clang-format is for `make format` / `make lint`; libpython3.11-testsuite is CPython's own test
# suite, which //conformance replays (tools/conformance/cpython_ids.py lists its test ids);
# python3-dev (Python 3.11's headers) and pybind11-dev (pybind11 2.10, headers only) build the
# Python extension //python:betterconcurrent, which //python tests with Debian's /usr/bin/python3.
PACKAGES=(bazel-bootstrap bazel-rules-cc bazel-rules-java bazel-skylib bazel-platforms
          googletest libbenchmark-dev dpkg-dev python3 python3-dev pybind11-dev
          libpython3.11-testsuite g++ clang-format)

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
apt_updated=0
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_if_needed apt-get update -qq
  apt_updated=1
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Abseil from source: Debian's source package carries upstream's BUILD.bazel files.
if [ ! -f "$DEPS_DIR/abseil/WORKSPACE" ]; then
  src=/etc/apt/sources.list.d/debian.sources
  if [ -f "$src" ] && ! grep -q "^Types:.*deb-src" "$src"; then
    sudo_if_needed sed -i 's/^Types: deb$/Types: deb deb-src/' "$src"
    apt_updated=0
  fi
  [ "$apt_updated" -eq 1 ] || sudo_if_needed apt-get update -qq
  tmp="$(mktemp -d)"
  (cd "$tmp" && apt-get source -qq abseil >/dev/null)
  sudo_if_needed mkdir -p "$DEPS_DIR"
  sudo_if_needed rm -rf "$DEPS_DIR/abseil"
  sudo_if_needed mv "$(find "$tmp" -maxdepth 1 -mindepth 1 -type d -name 'abseil*' | head -n1)" "$DEPS_DIR/abseil"
  rm -rf "$tmp"
fi
echo "dependencies ready (abseil source: $DEPS_DIR/abseil)"
