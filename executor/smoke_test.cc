#include <cstdio>
#include <vector>
#include "executor/thread_pool_executor.h"
#include "future/wait.h"
#include "gtest/gtest.h"
using namespace betterconcurrent;

Task<long> fib(std::shared_ptr<Executor> ex, int n) {
  if (n < 2) co_return n;
  auto a = ex->submit(fib, ex, n - 1);
  auto b = ex->submit(fib, ex, n - 2);
  co_await a.yield_until_done();
  co_await b.yield_until_done();
  co_return a.result() + b.result();
}

TEST(Smoke, Basic) {
  auto pool = ThreadPoolExecutor::create(2);
  auto f = pool->submit([](int a, int b) { return a * b; }, 6, 7);
  EXPECT_EQ(f.result(), 42);
  EXPECT_EQ(f.executor(), pool);
  std::vector<int> xs{1, 2, 3};
  int sum = 0;
  for (int v : pool->map([](int x) { return x * x; }, xs)) sum += v;
  EXPECT_EQ(sum, 14);
}

TEST(Smoke, Fib) {
  auto pool = ThreadPoolExecutor::create(1);
  std::shared_ptr<Executor> ex = pool;
  auto f = pool->submit(fib, ex, 20);
  EXPECT_EQ(f.result(), 6765);
  pool->join();
}

TEST(Smoke, WaitAndAsCompleted) {
  auto pool = ThreadPoolExecutor::create(4);
  std::vector<Future<int>> fs;
  for (int i = 0; i < 10; ++i) fs.push_back(pool->submit([i] { return i; }));
  auto r = wait(fs);
  EXPECT_EQ(r.done.size(), 10u);
  int n = 0;
  for (const auto& f : as_completed(fs)) n += f.result();
  EXPECT_EQ(n, 45);
}

TEST(Smoke, JoinErrors) {
  auto pool = ThreadPoolExecutor::create(2);
  pool->submit([] { throw 5; });
  EXPECT_THROW(pool->join(), UnobservedTaskErrors);
  pool->join();
}
