// One future, 1,000,000 coroutine tasks suspended on it: completing it resumes every one of
// them, and each finishes. Each waiter is its own listener in the future's list, so none can be
// lost or overwritten (the original package kept one continuation per future).
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

#include "executor/task.h"
#include "executor/thread_pool_executor.h"
#include "future/future.h"
#include "gtest/gtest.h"
#include "testing/pool.h"

namespace betterconcurrent {
namespace {

constexpr std::size_t kWaiters = 1'000'000;
constexpr std::chrono::seconds kBound{240};

TEST(ManyWaiters, AMillionCoroutinesSuspendedOnOneFutureAllResumeAndFinish) {
  auto pool = ThreadPoolExecutor::create(2);
  Future<long> gate;
  Future<void> all_suspending;  // completed by the last task to reach its co_await
  std::atomic<std::size_t> suspending{0};
  std::atomic<std::size_t> resumed{0};
  auto waiter = [&](std::size_t i) -> Task<long> {
    if (suspending.fetch_add(1) + 1 == kWaiters) all_suspending.set_result();
    co_await gate.yield_until_done();
    resumed.fetch_add(1, std::memory_order_relaxed);
    co_return gate.result() + static_cast<long>(i);
  };
  std::vector<Future<long>> futures;
  futures.reserve(kWaiters);
  for (std::size_t i = 0; i < kWaiters; ++i) futures.push_back(pool->submit(waiter, i));
  all_suspending.result(kBound);
  // Every task has run up to its co_await, and the gate is pending: none has resumed.
  EXPECT_EQ(resumed.load(), 0u);

  gate.set_result(1);
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < kWaiters; ++i) {
    if (futures[i].result(kBound) != 1 + static_cast<long>(i)) ++wrong;
  }
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(resumed.load(), kWaiters);
  futures.clear();
  EXPECT_TRUE(test_util::join_and_destroy(std::move(pool), kBound));
}

}  // namespace
}  // namespace betterconcurrent
