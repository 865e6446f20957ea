#!/usr/bin/env bash
# Turns every ```cpp block of a Markdown file into a C++ function, so that the build proves the
# README's examples compile. #include lines are hoisted to the top; each block becomes the body
# of its own function. Usage: extract_snippets.sh README.md > out.cc
set -euo pipefail
awk '
  BEGIN { n = 0; inblock = 0 }
  /^```cpp[[:space:]]*$/ { inblock = 1; n++; body[n] = ""; next }
  /^```[[:space:]]*$/ && inblock { inblock = 0; next }
  inblock && /^#include/ { includes[$0] = 1; next }
  inblock && /^using namespace betterconcurrent;/ { next }
  inblock { body[n] = body[n] "  " $0 "\n" }
  END {
    for (inc in includes) print inc
    print "#include \"tools/readme/prelude.h\""
    print "namespace readme {"
    print "using namespace betterconcurrent;"
    for (i = 1; i <= n; i++) printf "[[maybe_unused]] void snippet_%d() {\n%s}\n", i, body[i]
    print "}  // namespace readme"
  }
' "$1"
