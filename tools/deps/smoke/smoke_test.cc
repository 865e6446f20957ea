#include <thread>
#include <vector>
#include "benchmark/benchmark.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tools/deps/smoke/counter.h"
TEST(Smoke, Coroutine) {
  auto g = smoke::count_to(3);
  int sum = 0;
  while (true) { g.h.resume(); if (g.h.done()) break; sum += g.h.promise().v; }
  EXPECT_EQ(sum, 6);
}
TEST(Smoke, CounterSingleThread) {
  smoke::Counter c; c.add(2); c.add(3);
  EXPECT_THAT(c.describe(), ::testing::HasSubstr("count=5"));
}
TEST(Smoke, BenchmarkLinks) {
  int x = 1; benchmark::DoNotOptimize(x);
  EXPECT_FALSE(benchmark::GetBenchmarkFilter().empty() && false);
}
