// A coroutine task that co_awaits yield_until_done(fs, ...) on a set of futures that is already
// complete (or completes while the task is suspending) must be resumed exactly once.
//
// Kept in a binary of its own: when this goes wrong the task is run twice, which corrupts the
// pool's task count and frees the task under its future, so whatever runs next in the same
// process is unreliable.
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "executor/task.h"
#include "executor/thread_pool_executor.h"
#include "future/exceptions.h"
#include "future/future.h"
#include "future/wait.h"
#include "gtest/gtest.h"
#include "testing/pool.h"

namespace betterconcurrent {
namespace {

using std::chrono::seconds;

constexpr seconds kShort{10};

using test_util::join_and_destroy;

TEST(WaitManyResume, AllCompletedOnAlreadyCompleteSet) {
  auto pool = ThreadPoolExecutor::create(1);
  std::vector<Future<int>> ready(3);
  for (int i = 0; i < 3; ++i) ready[i].set_result(i + 1);
  std::atomic<int> resumed{0};
  auto f = pool->submit([ready, &resumed]() -> Task<int> {
    auto r = co_await yield_until_done(ready);
    resumed.fetch_add(1);
    int sum = 0;
    for (const auto& g : r.done) sum += g.result();
    co_return r.not_done.empty() ? sum : -1;
  });
  EXPECT_EQ(f.result(kShort), 6);
  // A task queued behind it on the only worker: a bogus second run of the first comes before.
  EXPECT_EQ(pool->submit([] { return 0; }).result(kShort), 0);
  EXPECT_TRUE(join_and_destroy(std::move(pool))) << "a task was ended twice";
  EXPECT_EQ(resumed.load(), 1);
}

TEST(WaitManyResume, FirstCompletedWithOneAlreadyDone) {
  auto pool = ThreadPoolExecutor::create(1);
  Future<int> done_one;
  done_one.set_result(5);
  Future<int> never;
  auto f = pool->submit([done_one, never]() -> Task<int> {
    std::vector<Future<int>> fs{never, done_one};
    auto r = co_await yield_until_done(fs, std::nullopt, FIRST_COMPLETED);
    co_return r.done.size() == 1 ? r.done[0].result() : -1;
  });
  EXPECT_EQ(f.result(kShort), 5);
  EXPECT_EQ(pool->submit([] { return 0; }).result(kShort), 0);
  EXPECT_TRUE(join_and_destroy(std::move(pool))) << "a task was ended twice";
}

}  // namespace
}  // namespace betterconcurrent
