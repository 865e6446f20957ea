// Executor::join(): waiting for fire-and-forget trees of tasks, and reporting the exceptions
// nobody observed.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "executor/task.h"
#include "executor/thread_pool_executor.h"
#include "future/exceptions.h"
#include "future/future.h"
#include "future/log.h"
#include "future/wait.h"
#include "gtest/gtest.h"
#include "testing/log_capture.h"

namespace betterconcurrent {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr seconds kLong{30};

using test_util::LogCapture;

// Describes an exception for comparisons: "std:<what>" or "int:<value>".
std::string describe(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return std::string("std:") + ex.what();
  } catch (int v) {
    return "int:" + std::to_string(v);
  } catch (...) {
    return "other";
  }
}

// A plain task that counts itself and fires off two children, discarding their futures.
void spread(Executor* ex, std::atomic<int>* count, int depth) {
  count->fetch_add(1);
  if (depth == 0) return;
  ex->submit(spread, ex, count, depth - 1);
  ex->submit(spread, ex, count, depth - 1);
}

// The same as a coroutine that also suspends on its first child before spawning the second.
Task<void> spread_co(Executor* ex, std::atomic<int>* count, int depth) {
  count->fetch_add(1);
  if (depth == 0) co_return;
  auto first = ex->submit(spread_co, ex, count, depth - 1);
  co_await first.yield_until_done();
  ex->submit(spread_co, ex, count, depth - 1);
}

TEST(Join, WaitsForFireAndForgetTree) {
  auto pool = ThreadPoolExecutor::create(4);
  std::atomic<int> count{0};
  pool->submit(spread, pool.get(), &count, 10);
  pool->join(kLong);
  EXPECT_EQ(count.load(), 2047);
}

TEST(Join, WaitsForCoroutineTreeOnOneWorker) {
  auto pool = ThreadPoolExecutor::create(1);
  std::atomic<int> count{0};
  pool->submit(spread_co, pool.get(), &count, 9);
  pool->join(kLong);
  EXPECT_EQ(count.load(), 1023);
}

TEST(Join, WaitsForTasksSubmittedAfterJoinWasCalled) {
  auto pool = ThreadPoolExecutor::create(2);
  Executor* ex = pool.get();
  std::atomic<int> count{0};
  Future<void> go;
  // The root holds the pool busy until `go`, then submits the whole tree: all of it after the
  // joiner below has started waiting (join cannot return while the root is outstanding).
  pool->submit([ex, &count, go] {
    go.result(kLong);
    spread(ex, &count, 8);
  });
  std::promise<void> joined;
  std::thread joiner([&] {
    try {
      pool->join(kLong);
      joined.set_value();
    } catch (...) {
      joined.set_exception(std::current_exception());
    }
  });
  go.set_result();
  auto j = joined.get_future();
  ASSERT_EQ(j.wait_for(kLong), std::future_status::ready);
  EXPECT_NO_THROW(j.get());
  EXPECT_EQ(count.load(), 511);
  joiner.join();
}

TEST(Join, EmptyPoolReturnsAtOnce) {
  auto pool = ThreadPoolExecutor::create(2);
  pool->join(seconds(0));
  pool->submit([] {}).result(kLong);
  pool->join(kLong);
  pool->join(kLong);
}

TEST(Join, TimeoutThrowsAndExecutorStaysUsable) {
  auto pool = ThreadPoolExecutor::create(2);
  Future<void> started, release;
  auto blocked = pool->submit([=] {
    started.set_result();
    release.result(kLong);
    return 1;
  });
  started.result(kLong);
  EXPECT_THROW(pool->join(milliseconds(50)), TimeoutError);
  EXPECT_FALSE(blocked.done());
  EXPECT_EQ(pool->submit([] { return 2; }).result(kLong), 2);
  release.set_result();
  pool->join(kLong);
  EXPECT_TRUE(blocked.done());
  EXPECT_EQ(blocked.result(), 1);
  EXPECT_EQ(pool->submit([] { return 3; }).result(kLong), 3);
  pool->join(kLong);
}

TEST(Join, TimeoutWhileCoroutineIsSuspended) {
  auto pool = ThreadPoolExecutor::create(1);
  Future<int> gate;
  Future<void> about_to_await;
  auto f = pool->submit([gate, about_to_await]() -> Task<int> {
    about_to_await.set_result();
    co_await gate.yield_until_done();
    co_return gate.result();
  });
  about_to_await.result(kLong);
  EXPECT_THROW(pool->join(milliseconds(50)), TimeoutError);  // suspended counts as outstanding
  gate.set_result(4);
  pool->join(kLong);
  EXPECT_TRUE(f.done());
  EXPECT_EQ(f.result(), 4);
}

TEST(Join, FromOwnTaskThrowsRuntimeError) {
  auto pool = ThreadPoolExecutor::create(2);
  ThreadPoolExecutor* p = pool.get();
  // 1: refused at once (std::runtime_error); 2: it waited and timed out (wrong).
  auto plain = pool->submit([p] {
    try {
      p->join(seconds(5));
      return 0;
    } catch (const TimeoutError&) {
      return 2;
    } catch (const std::runtime_error&) {
      return 1;
    }
  });
  EXPECT_EQ(plain.result(kLong), 1);
  auto coroutine = pool->submit([p]() -> Task<int> {
    try {
      p->join(seconds(5));
      co_return 0;
    } catch (const TimeoutError&) {
      co_return 2;
    } catch (const std::runtime_error&) {
      co_return 1;
    }
  });
  EXPECT_EQ(coroutine.result(kLong), 1);
  pool->join(kLong);
}

TEST(Join, JoinFromAnotherPoolsTaskIsAllowed) {
  auto pool = ThreadPoolExecutor::create(2);
  auto other = ThreadPoolExecutor::create(1);
  std::atomic<int> count{0};
  pool->submit(spread, pool.get(), &count, 5);
  ThreadPoolExecutor* p = pool.get();
  auto f = other->submit([p] { p->join(kLong); });
  EXPECT_NO_THROW(f.result(kLong));
  EXPECT_EQ(count.load(), 63);
}

TEST(JoinErrors, ReportsEachUnobservedExceptionOnce) {
  auto pool = ThreadPoolExecutor::create(1);
  Executor* ex = pool.get();
  // Held by the only worker while the rest is set up.
  Future<void> started, release;
  pool->submit([=] {
    started.set_result();
    release.result(kLong);
  });
  started.result(kLong);

  // Unobserved: nobody calls result() or exception() on these. The test keeps the handles
  // (which does not observe them) only so that the exception objects are freed on this thread:
  // ThreadSanitizer cannot see the synchronisation of std::exception_ptr's reference count in
  // the uninstrumented libstdc++, and would report a race if a worker dropped the last one.
  std::vector<AnyFuture> unobserved;
  unobserved.push_back(pool->submit([]() -> int { throw std::runtime_error("lost 1"); }));
  unobserved.push_back(pool->submit([] { throw 7; }));
  unobserved.push_back(pool->submit([]() -> Task<int> {
    throw std::logic_error("lost coroutine");
    co_return 0;
  }));
  // A fire-and-forget child failing deep in a tree.
  auto parent =
      pool->submit([ex] { return ex->submit([] { throw std::runtime_error("lost child"); }); });
  // Observed ones.
  auto via_result = pool->submit([]() -> int { throw std::runtime_error("seen by result"); });
  auto via_exception = pool->submit([] { throw std::runtime_error("seen by exception"); });
  // Cancelled before it ran.
  auto cancelled = pool->submit([] { throw std::runtime_error("never ran"); });
  EXPECT_TRUE(cancelled.cancel());
  // Succeeding ones.
  auto ok = pool->submit([] { return 1; });

  release.set_result();
  unobserved.push_back(parent.result(kLong));  // the parent itself succeeded
  EXPECT_THROW(via_result.result(kLong), std::runtime_error);
  EXPECT_NE(via_exception.exception(kLong), nullptr);

  std::vector<std::string> reported;
  try {
    pool->join(kLong);
    ADD_FAILURE() << "join() reported nothing";
  } catch (const UnobservedTaskErrors& e) {
    for (const auto& p : e.exceptions()) reported.push_back(describe(p));
    EXPECT_NE(std::string(e.what()).find("lost 1"), std::string::npos) << e.what();
  }
  std::vector<std::string> expected{"std:lost 1", "int:7", "std:lost coroutine", "std:lost child"};
  std::sort(reported.begin(), reported.end());
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(reported, expected);

  // Reported once: nothing is left for the next join().
  EXPECT_NO_THROW(pool->join(kLong));
  EXPECT_EQ(ok.result(), 1);

  // New failures after a join() are reported by the next one.
  unobserved.push_back(pool->submit([] { throw 8; }));
  try {
    pool->join(kLong);
    ADD_FAILURE() << "join() reported nothing";
  } catch (const UnobservedTaskErrors& e) {
    ASSERT_EQ(e.exceptions().size(), 1u);
    EXPECT_EQ(describe(e.exceptions()[0]), "int:8");
  }
  EXPECT_NO_THROW(pool->join(kLong));
}

TEST(JoinErrors, TimedOutJoinKeepsTheErrorsForTheNextOne) {
  auto pool = ThreadPoolExecutor::create(2);
  auto failed = pool->submit([] { throw 3; });
  std::vector<Future<void>> fs{failed};
  ASSERT_EQ(wait(fs, kLong).done.size(), 1u);  // done, not observed
  Future<void> started, release;
  pool->submit([=] {
    started.set_result();
    release.result(kLong);
  });
  started.result(kLong);
  EXPECT_THROW(pool->join(milliseconds(20)), TimeoutError);
  release.set_result();
  try {
    pool->join(kLong);
    ADD_FAILURE() << "the error was lost by the timed-out join()";
  } catch (const UnobservedTaskErrors& e) {
    ASSERT_EQ(e.exceptions().size(), 1u);
    EXPECT_EQ(describe(e.exceptions()[0]), "int:3");
  }
}

TEST(JoinErrors, ObservingAfterJoinStillWorksButIsNotReportedAgain) {
  LogCapture logs;
  auto pool = ThreadPoolExecutor::create(2);
  auto f = pool->submit([]() -> int { throw std::runtime_error("x"); });
  EXPECT_THROW(pool->join(kLong), UnobservedTaskErrors);
  EXPECT_THROW(f.result(kLong), std::runtime_error);  // the future still has it
  pool.reset();
  for (const LogRecord& r : logs.records()) {
    EXPECT_NE(r.message, "exception in a task was never observed");
  }
}

TEST(JoinErrors, NeverReportedExceptionsAreLoggedAtShutdown) {
  LogCapture logs;
  auto pool = ThreadPoolExecutor::create(2);
  auto lost = pool->submit([]() -> int { throw std::runtime_error("nobody looked"); });
  auto seen = pool->submit([]() -> int { throw std::runtime_error("looked at"); });
  // Wait without observing (wait() does not look at the outcome).
  std::vector<Future<int>> both{lost, seen};
  auto r = wait(both, kLong);
  ASSERT_EQ(r.done.size(), 2u);
  EXPECT_NE(seen.exception(), nullptr);
  pool.reset();

  std::vector<std::string> logged;
  for (const LogRecord& rec : logs.records()) {
    if (rec.message == "exception in a task was never observed") {
      EXPECT_EQ(rec.level, LogLevel::kError);
      logged.push_back(describe(rec.exception));
    }
  }
  EXPECT_EQ(logged, (std::vector<std::string>{"std:nobody looked"}));
}

TEST(JoinErrors, DiscardedFutureOfDestroyedPoolIsLoggedOnce) {
  LogCapture logs;
  {
    auto pool = ThreadPoolExecutor::create(1);
    pool->submit([] { throw 99; });
    // No join(): the destructor's shutdown(wait = true) lets it fail, then it is logged.
  }
  int count = 0;
  for (const LogRecord& rec : logs.records()) {
    if (rec.message == "exception in a task was never observed") {
      ++count;
      EXPECT_EQ(describe(rec.exception), "int:99");
    }
  }
  EXPECT_EQ(count, 1);
}

}  // namespace
}  // namespace betterconcurrent
