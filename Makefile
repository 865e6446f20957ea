# Entry points for building, testing and running betterconcurrent with Debian's Bazel 4.2.3,
# offline. Every target works from a fresh clone: `deps` installs what is missing first.
#
#   make deps    install/check the Debian packages and Abseil's source (tools/deps/install.sh)
#   make build   bazel build //...
#   make test    tests in the default, asan and tsan configurations, then the consumer workspace
#   make demo    build and run the examples
#   make bench   run the benchmarks, optimized
#   make stress  randomized stress: 10,000 task trees + 10,000 fib(18) (//executor:stress_test);
#                STRESS_TREES, STRESS_FIBS, STRESS_SEED, STRESS_CONFIG=--config=asan|tsan
#   make fuzz-diff   random concurrent programs on CPython and on the Python package, outcomes
#                compared (tools/fuzz_diff); FUZZ_SEEDS=START:COUNT, FUZZ_CONFIG=--config=tsan
#   make format / make lint   clang-format the C++ sources / check them

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

BAZEL ?= bazel
# Plain, line-oriented output that stays readable in CI logs.
BAZEL_FLAGS ?= --curses=no --noshow_progress
# What the test stages and `build` cover, e.g. make test TARGETS=//future/...
TARGETS ?= //...
BENCH_ARGS ?=
# make fuzz-diff: which seeds, and an optional Bazel config (--config=asan / --config=tsan).
FUZZ_SEEDS ?= 0:5000
FUZZ_CONFIG ?=
CLANG_FORMAT ?= clang-format

EXAMPLES := tree_search fork_join_fib
TEST_STAGES := test-default test-asan test-tsan test-consumer

.PHONY: all deps build test $(TEST_STAGES) demo bench stress fuzz-diff format lint clean

all: build

deps:
	@tools/deps/install.sh

build: deps
	$(BAZEL) build $(BAZEL_FLAGS) $(TARGETS)

# Runs the stages in order, stops at the first failure, and ends with a summary either way.
test: deps
	@rm -f $(LOG_DIR)/test-*.log; summary=""; rc=0; t_all=$$SECONDS; \
	for stage in $(TEST_STAGES); do \
	  if [ $$rc -ne 0 ]; then summary+="$$(printf '  %-14s skipped' $$stage)"$$'\n'; continue; fi; \
	  echo "=== make $$stage"; t0=$$SECONDS; \
	  if $(MAKE) --no-print-directory $$stage; then result=passed; else result=FAILED; rc=1; fi; \
	  summary+="$$(printf '  %-14s %-7s %5ss' $$stage $$result $$((SECONDS - t0)))"$$'\n'; \
	done; \
	echo; echo "=== make test summary ($$((SECONDS - t_all))s)"; printf '%s' "$$summary"; \
	if [ $$rc -eq 0 ]; then echo "all stages passed"; else echo "make test FAILED"; fi; \
	cat $(LOG_DIR)/test-*.log 2>/dev/null | awk ' \
	  match($$0, /[0-9]+ tests? pass/) { split(substr($$0, RSTART), a, " "); p += a[1] } \
	  match($$0, /[0-9]+ fails? locally/) { split(substr($$0, RSTART), a, " "); f += a[1] } \
	  END { printf "tests: %d passed, %d failed\n", p, f }'; \
	exit $$rc

# Each stage keeps Bazel's output in $(LOG_DIR), for the closing count of `make test`.
LOG_DIR ?= bazel-make-logs

test-default:
	@mkdir -p $(LOG_DIR)
	$(BAZEL) test $(BAZEL_FLAGS) $(TARGETS) 2>&1 | tee $(LOG_DIR)/test-default.log

test-asan:
	@mkdir -p $(LOG_DIR)
	$(BAZEL) test $(BAZEL_FLAGS) --config=asan $(TARGETS) 2>&1 | tee $(LOG_DIR)/test-asan.log

test-tsan:
	@mkdir -p $(LOG_DIR)
	$(BAZEL) test $(BAZEL_FLAGS) --config=tsan $(TARGETS) 2>&1 | tee $(LOG_DIR)/test-tsan.log

# A separate workspace depending on this one (tools/consumer/WORKSPACE). Besides its test,
# check that its own GoogleTest declaration won over betterconcurrent_dependencies(). Its
# Bazel server is shut down afterwards; it is only needed for this stage.
test-consumer:
	cd tools/consumer && $(BAZEL) test $(BAZEL_FLAGS) //...
	cd tools/consumer && rule="$$($(BAZEL) query $(BAZEL_FLAGS) //external:com_google_googletest --output=build)" \
	  && grep -q '^new_local_repository(' <<<"$$rule" \
	  || { echo "consumer: its own @com_google_googletest was replaced by betterconcurrent's" >&2; exit 1; }
	cd tools/consumer && $(BAZEL) shutdown

demo: deps
	$(BAZEL) build $(BAZEL_FLAGS) //examples:all
	@for ex in $(EXAMPLES); do \
	  echo; echo "=== examples/$$ex"; \
	  bazel-bin/examples/$$ex; \
	done

bench: deps
	$(BAZEL) run $(BAZEL_FLAGS) -c opt //tools/bench:benchmarks -- $(BENCH_ARGS)

# Issue 5's randomized stress test, with the counts of a long run. It prints each violation
# with its seed and max_workers, then "stress: N trees, M fib(18): H hangs, V invariant
# violations", and fails if there was any. Reproduce one seed with STRESS_SEED=S STRESS_TREES=1.
STRESS_TREES ?= 10000
STRESS_FIBS ?= 10000
STRESS_SEED ?= 1
STRESS_CONFIG ?=

stress: deps
	$(BAZEL) test $(BAZEL_FLAGS) $(STRESS_CONFIG) //executor:stress_test \
	  --test_output=streamed --nocache_test_results --test_timeout=7200 \
	  --test_env=STRESS_TREES=$(STRESS_TREES) --test_env=STRESS_FIBS=$(STRESS_FIBS) \
	  --test_env=STRESS_SEED=$(STRESS_SEED)

# The differential fuzzer with many seeds: //conformance:fuzz_diff_test, which runs the script
# with the package in its runfiles (and, under a sanitizer config, the runtime preloaded). A
# mismatch fails it and prints the shrunk program with both outcomes.
fuzz-diff: deps
	$(BAZEL) test $(BAZEL_FLAGS) $(FUZZ_CONFIG) //conformance:fuzz_diff_test \
	  --test_env=FUZZ_DIFF_SEEDS=$(FUZZ_SEEDS) --test_timeout=7200 --nocache_test_results \
	  --test_output=errors
	@tail -n 1 bazel-testlogs/conformance/fuzz_diff_test/test.log

CC_SOURCES = $$(git ls-files --cached --others --exclude-standard -- '*.h' '*.cc')

format:
	$(CLANG_FORMAT) -i $(CC_SOURCES)

lint:
	$(CLANG_FORMAT) --dry-run --Werror $(CC_SOURCES)

clean:
	$(BAZEL) clean
	cd tools/consumer && $(BAZEL) clean
