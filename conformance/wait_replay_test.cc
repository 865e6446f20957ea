// CPython's ThreadPoolWaitTests and ThreadPoolAsCompletedTest, replayed against
// betterconcurrent::wait() and as_completed() with a ThreadPoolExecutor. Each case is named
// after its CPython id; manifest.tsv lists them.
//
// CPython's tasks that sleep (time.sleep(t), sleep_and_raise(t)) stand for "still running when
// the wait decides"; here they block on an Event the test releases, which makes that certain.
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include "conformance/replay.h"
#include "executor/thread_pool_executor.h"
#include "future/exceptions.h"
#include "future/future.h"
#include "future/wait.h"
#include "gtest/gtest.h"

namespace betterconcurrent::replay {
namespace {

using namespace std::chrono_literals;

class ThreadPoolWaitTests : public ThreadPoolMixin {};
class ThreadPoolAsCompletedTest : public ThreadPoolMixin {};

using FutureSet = std::unordered_set<AnyFuture>;

template <typename F>
FutureSet as_set(const std::vector<F>& fs) {
  return FutureSet(fs.begin(), fs.end());
}

int mul(int x, int y) { return x * y; }

// divmod(x, 0): Python raises ZeroDivisionError; the C++ task throws std::domain_error.
int divide(int x, int y) {
  if (y == 0) throw std::domain_error("integer division or modulo by zero");
  return x / y;
}

TEST_F(ThreadPoolWaitTests, test_20369) {
  Future<bool> future = executor->submit([&] { return gate.wait(); });
  // The task finishes only once the main thread is blocked in wait().
  ReleaseWhenBlocked releaser(gate, current_tid());
  auto [done, not_done] = wait(std::vector{future, future}, std::nullopt, ALL_COMPLETED);
  EXPECT_EQ(as_set(done), FutureSet({future}));
  EXPECT_EQ(done.size(), 1u);
  EXPECT_TRUE(not_done.empty());
}

TEST_F(ThreadPoolWaitTests, test_first_completed) {
  Future<int> future1 = executor->submit(mul, 21, 2);
  Future<bool> future2 = executor->submit([&] { return gate.wait(); });
  Future<int> cancelled = cancelled_future();

  auto [done, not_done] =
      wait(std::vector<AnyFuture>{cancelled, future1, future2}, std::nullopt, FIRST_COMPLETED);
  EXPECT_EQ(as_set(done), FutureSet({future1}));
  EXPECT_EQ(as_set(not_done), FutureSet({cancelled, future2}));
}

TEST_F(ThreadPoolWaitTests, test_first_completed_some_already_completed) {
  Future<bool> future1 = executor->submit([&] { return gate.wait(); });
  Future<int> cancelled_and_notified = cancelled_and_notified_future();
  Future<int> successful = successful_future();

  auto [finished, pending] =
      wait(std::vector<AnyFuture>{cancelled_and_notified, successful, future1}, std::nullopt,
           FIRST_COMPLETED);
  EXPECT_EQ(as_set(finished), FutureSet({cancelled_and_notified, successful}));
  EXPECT_EQ(as_set(pending), FutureSet({future1}));
}

TEST_F(ThreadPoolWaitTests, test_first_exception) {
  Future<int> future1 = executor->submit(mul, 2, 21);
  // Raises after future1 has finished, while future3 still runs.
  Future<void> future2 = executor->submit([future1] {
    future1.result(kLongTimeout);
    throw std::runtime_error("this is an exception");
  });
  Future<bool> future3 = executor->submit([&] { return gate.wait(); });

  auto [finished, pending] =
      wait(std::vector<AnyFuture>{future1, future2, future3}, std::nullopt, FIRST_EXCEPTION);
  EXPECT_EQ(as_set(finished), FutureSet({future1, future2}));
  EXPECT_EQ(as_set(pending), FutureSet({future3}));
  EXPECT_THROW(future2.result(0s), std::runtime_error);
}

TEST_F(ThreadPoolWaitTests, test_first_exception_some_already_complete) {
  Future<int> future1 = executor->submit(divide, 21, 0);
  Future<bool> future2 = executor->submit([&] { return gate.wait(); });
  Future<int> successful = successful_future();
  Future<int> cancelled = cancelled_future();
  Future<int> cancelled_and_notified = cancelled_and_notified_future();

  auto [finished, pending] =
      wait(std::vector<AnyFuture>{successful, cancelled, cancelled_and_notified, future1, future2},
           std::nullopt, FIRST_EXCEPTION);
  EXPECT_EQ(as_set(finished), FutureSet({successful, cancelled_and_notified, future1}));
  EXPECT_EQ(as_set(pending), FutureSet({cancelled, future2}));
  EXPECT_THROW(future1.result(0s), std::domain_error);
}

TEST_F(ThreadPoolWaitTests, test_first_exception_one_already_failed) {
  Future<bool> future1 = executor->submit([&] { return gate.wait(); });
  Future<int> failed = exception_future();

  auto [finished, pending] =
      wait(std::vector<AnyFuture>{failed, future1}, std::nullopt, FIRST_EXCEPTION);
  EXPECT_EQ(as_set(finished), FutureSet({failed}));
  EXPECT_EQ(as_set(pending), FutureSet({future1}));
}

TEST_F(ThreadPoolWaitTests, test_all_completed) {
  Future<int> future1 = executor->submit(divide, 2, 0);
  Future<int> future2 = executor->submit(mul, 2, 21);
  Future<int> successful = successful_future();
  Future<int> cancelled_and_notified = cancelled_and_notified_future();
  Future<int> failed = exception_future();

  auto [finished, pending] =
      wait(std::vector<AnyFuture>{successful, cancelled_and_notified, failed, future1, future2},
           std::nullopt, ALL_COMPLETED);
  EXPECT_EQ(as_set(finished),
            FutureSet({successful, cancelled_and_notified, failed, future1, future2}));
  EXPECT_TRUE(pending.empty());
  EXPECT_THROW(future1.result(0s), std::domain_error);
}

TEST_F(ThreadPoolWaitTests, test_timeout) {
  Future<int> future1 = executor->submit(mul, 6, 7);
  Future<bool> future2 = executor->submit([&] { return gate.wait(); });
  Future<int> cancelled_and_notified = cancelled_and_notified_future();
  Future<int> failed = exception_future();
  Future<int> successful = successful_future();

  // CPython waits 5 s for a task that sleeps 6 s; future2 here never finishes in time.
  auto [finished, pending] =
      wait(std::vector<AnyFuture>{cancelled_and_notified, failed, successful, future1, future2}, 2s,
           ALL_COMPLETED);
  EXPECT_EQ(as_set(finished), FutureSet({cancelled_and_notified, failed, successful, future1}));
  EXPECT_EQ(as_set(pending), FutureSet({future2}));
}

TEST_F(ThreadPoolWaitTests, test_pending_calls_race) {
  // CPython shrinks the GIL's switch interval to provoke the race; C++ threads race freely.
  std::vector<Future<bool>> fs;
  fs.reserve(100);
  for (int i = 0; i < 100; ++i) fs.push_back(executor->submit([&] { return gate.wait(); }));
  gate.set();
  auto [done, not_done] = wait(fs, kLongTimeout, ALL_COMPLETED);
  EXPECT_EQ(done.size(), 100u);
  EXPECT_TRUE(not_done.empty());
}

TEST_F(ThreadPoolAsCompletedTest, test_no_timeout) {
  Future<int> future1 = executor->submit(mul, 2, 21);
  Future<int> future2 = executor->submit(mul, 7, 6);
  std::vector<AnyFuture> fs{cancelled_and_notified_future(), exception_future(),
                            successful_future(), future1, future2};

  FutureSet completed;
  for (const AnyFuture& f : as_completed(fs, kLongTimeout)) completed.insert(f);
  EXPECT_EQ(completed, as_set(fs));
}

TEST_F(ThreadPoolAsCompletedTest, test_zero_timeout) {
  Future<bool> future1 = executor->submit([&] { return gate.wait(); });
  std::vector<AnyFuture> finished{cancelled_and_notified_future(), exception_future(),
                                  successful_future()};
  std::vector<AnyFuture> fs = finished;
  fs.push_back(future1);

  FutureSet completed_futures;
  try {
    for (const AnyFuture& f : as_completed(fs, 0s)) completed_futures.insert(f);
  } catch (const TimeoutError&) {
  }
  EXPECT_EQ(completed_futures, as_set(finished));
}

TEST_F(ThreadPoolAsCompletedTest, test_duplicate_futures) {
  Future<bool> future1 = executor->submit([&] { return gate.wait(); });
  // The task finishes only once the main thread is blocked in as_completed().
  ReleaseWhenBlocked releaser(gate, current_tid());
  int completed = 0;
  for (const auto& f : as_completed(std::vector{future1, future1, future1}, kLongTimeout)) {
    EXPECT_EQ(f, future1);
    ++completed;
  }
  EXPECT_EQ(completed, 1);
}

// A result whose lifetime the test watches: C++ sees a future's end through its result.
struct MyObject {};
using Watched = std::shared_ptr<MyObject>;

TEST_F(ThreadPoolAsCompletedTest, test_free_reference_yielded_future) {
  // CPython checks through weakref.ref(future) that, once the loop drops a yielded future,
  // nothing keeps it alive. C++ watches each future's result through a weak_ptr, after ++it
  // (the reference *it returns lives until then). The cancelled future has no result to watch.
  std::vector<Future<Watched>> futures_list(8);
  futures_list.push_back(cancelled_and_notified_future<Watched>());
  futures_list.emplace_back().set_result(std::make_shared<MyObject>());

  std::vector<std::weak_ptr<MyObject>> dropped;
  auto expect_dropped_freed = [&] {
    for (const auto& wr : dropped) EXPECT_TRUE(wr.expired()) << "a yielded future is still held";
  };
  // The loop body of CPython's case: forget the future, remember how to see that it died.
  auto drop = [&](const Future<Watched>& future) {
    if (!future.cancelled()) dropped.push_back(future.result());
    std::erase(futures_list, future);
  };

  std::size_t yielded = 0;
  try {
    auto completed = as_completed(futures_list, 0s);
    for (auto it = completed.begin(); it != completed.end(); ++it) {
      expect_dropped_freed();
      drop(*it);
      ++yielded;
    }
    ADD_FAILURE() << "as_completed(timeout=0) did not time out";
  } catch (const TimeoutError&) {
  }
  expect_dropped_freed();
  EXPECT_EQ(yielded, 2u);
  ASSERT_EQ(futures_list.size(), 8u);

  futures_list[0].set_result(std::make_shared<MyObject>());
  yielded = 0;
  auto completed = as_completed(futures_list, kLongTimeout);
  for (auto it = completed.begin(); it != completed.end(); ++it) {
    expect_dropped_freed();
    drop(*it);
    ++yielded;
    if (!futures_list.empty()) futures_list[0].set_result(std::make_shared<MyObject>());
  }
  expect_dropped_freed();
  EXPECT_EQ(yielded, 8u);
  EXPECT_EQ(dropped.size(), 9u);
}

TEST_F(ThreadPoolAsCompletedTest, test_correct_timeout_exception_msg) {
  std::vector<AnyFuture> futures_list{cancelled_and_notified_future(), pending_future(),
                                      running_future(), successful_future()};
  try {
    for (const AnyFuture& f : as_completed(futures_list, 0s)) static_cast<void>(f);
    ADD_FAILURE() << "as_completed(timeout=0) did not time out";
  } catch (const TimeoutError& e) {
    EXPECT_STREQ(e.what(), "2 (of 4) futures unfinished");
  }
}

}  // namespace
}  // namespace betterconcurrent::replay
