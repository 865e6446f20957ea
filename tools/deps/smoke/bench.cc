#include "benchmark/benchmark.h"
#include "tools/deps/smoke/counter.h"
static void BM_Add(benchmark::State& s) { smoke::Counter c; for (auto _ : s) c.add(1); benchmark::DoNotOptimize(c.get()); }
BENCHMARK(BM_Add);
