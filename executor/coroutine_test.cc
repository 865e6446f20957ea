// Cooperative coroutine tasks: Task<T>, co_await f.yield_until_done() and
// co_await yield_until_done(fs, timeout, return_when).
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "executor/task.h"
#include "executor/thread_pool_executor.h"
#include "future/exceptions.h"
#include "future/future.h"
#include "future/wait.h"
#include "gtest/gtest.h"
#include "testing/fib.h"
#include "testing/pool.h"

namespace betterconcurrent {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr seconds kLong{60};

using test_util::join_and_destroy;

using test_util::fib;

TEST(Coroutine, ForkJoinFibOnOneWorker) {
  auto pool = ThreadPoolExecutor::create(1);
  auto f = pool->submit(fib, pool.get(), 25);
  EXPECT_EQ(f.result(kLong), 75025);
  EXPECT_EQ(pool->num_threads(), 1u);
  pool->join(kLong);
}

TEST(Coroutine, ForkJoinFibOnSeveralWorkers) {
  auto pool = ThreadPoolExecutor::create(4);
  auto f = pool->submit(fib, pool.get(), 18);
  EXPECT_EQ(f.result(kLong), 2584);
  pool->join(kLong);
}

// Each link submits the next and awaits it: 100,000 suspended coroutines at the deepest point.
Task<int> chain(Executor* ex, int n) {
  if (n == 0) co_return 0;
  auto next = ex->submit(chain, ex, n - 1);
  co_await next.yield_until_done();
  co_return next.result() + 1;
}

TEST(Coroutine, LongChainDoesNotGrowTheStack) {
  auto pool = ThreadPoolExecutor::create(1);
  auto f = pool->submit(chain, pool.get(), 100000);
  EXPECT_EQ(f.result(kLong), 100000);
  pool->join(kLong);
}

TEST(Coroutine, AwaitsFutureOfAnotherExecutorWithoutBlockingItsWorker) {
  auto pool = ThreadPoolExecutor::create(1);
  auto other = ThreadPoolExecutor::create(1);
  Future<void> release, about_to_await;
  Future<int> remote = other->submit([release] {
    release.result(kLong);
    return 41;
  });
  auto waiter = pool->submit([remote, about_to_await]() -> Task<std::pair<int, bool>> {
    about_to_await.set_result();
    co_await remote.yield_until_done();
    co_return std::make_pair(remote.result() + 1, remote.done());
  });
  about_to_await.result(kLong);
  // The only worker of `pool` must be free while the coroutine waits.
  EXPECT_EQ(pool->submit([] { return 7; }).result(kLong), 7);
  EXPECT_FALSE(waiter.done());
  release.set_result();
  auto [value, was_done] = waiter.result(kLong);
  EXPECT_EQ(value, 42);
  EXPECT_TRUE(was_done);
  pool->join(kLong);
  other->join(kLong);
}

TEST(Coroutine, AwaitsHandMadeFutureCompletedByPlainThread) {
  auto pool = ThreadPoolExecutor::create(1);
  Future<std::string> hand_made;
  Future<void> about_to_await;
  auto waiter = pool->submit([hand_made, about_to_await]() -> Task<std::string> {
    about_to_await.set_result();
    co_await hand_made.yield_until_done();
    if (!hand_made.done()) co_return "not done after resume";
    co_return hand_made.result(seconds(0)) + "!";
  });
  about_to_await.result(kLong);
  EXPECT_EQ(pool->submit([] { return 1; }).result(kLong), 1);  // worker not blocked
  std::thread completer([hand_made] { hand_made.set_result("hello"); });
  EXPECT_EQ(waiter.result(kLong), "hello!");
  completer.join();
  pool->join(kLong);
}

TEST(Coroutine, AwaitingCancelledFutureResumes) {
  auto pool = ThreadPoolExecutor::create(1);
  Future<int> hand_made;
  Future<void> about_to_await;
  auto waiter = pool->submit([hand_made, about_to_await]() -> Task<bool> {
    about_to_await.set_result();
    co_await hand_made.yield_until_done();
    co_return hand_made.cancelled() && hand_made.done();
  });
  about_to_await.result(kLong);
  EXPECT_TRUE(hand_made.cancel());
  EXPECT_TRUE(waiter.result(kLong));
  pool->join(kLong);
}

TEST(CoroutineWaitMany, FirstCompletedWithSubtaskOnOneWorker) {
  auto pool = ThreadPoolExecutor::create(1);
  Executor* ex = pool.get();
  Future<int> never;
  auto f = pool->submit([ex, never]() -> Task<std::pair<std::size_t, std::size_t>> {
    Future<int> sub = ex->submit([] { return 5; });
    std::vector<Future<int>> fs{never, sub};
    auto r = co_await yield_until_done(fs, std::nullopt, FIRST_COMPLETED);
    if (r.done.size() != 1 || !(r.done[0] == sub) || r.not_done.size() != 1 ||
        !(r.not_done[0] == never)) {
      co_return std::make_pair(std::size_t{999}, std::size_t{999});
    }
    co_return std::make_pair(r.done.size(), r.not_done.size());
  });
  auto [done, not_done] = f.result(kLong);
  EXPECT_EQ(done, 1u);
  EXPECT_EQ(not_done, 1u);
  pool->join(kLong);
}

TEST(CoroutineWaitMany, AllCompletedWithSubtasksOnOneWorker) {
  auto pool = ThreadPoolExecutor::create(1);
  Executor* ex = pool.get();
  auto f = pool->submit([ex]() -> Task<int> {
    std::vector<Future<int>> fs;
    for (int i = 1; i <= 5; ++i) fs.push_back(ex->submit([i] { return i; }));
    fs.push_back(fs[0]);  // a duplicate counts once
    auto r = co_await yield_until_done(fs);
    if (!r.not_done.empty() || r.done.size() != 5) co_return -1;
    int sum = 0;
    for (const auto& g : r.done) {
      if (!g.done()) co_return -2;
      sum += g.result();
    }
    co_return sum;
  });
  EXPECT_EQ(f.result(kLong), 15);
  pool->join(kLong);
}

TEST(CoroutineWaitMany, AllCompletedWithHandMadeFuturesFromThreads) {
  auto pool = ThreadPoolExecutor::create(2);
  std::vector<Future<int>> hand(3);
  Future<void> about_to_await;
  auto f = pool->submit([hand, about_to_await]() -> Task<int> {
    about_to_await.set_result();
    auto r = co_await yield_until_done(hand, std::nullopt, ALL_COMPLETED);
    int sum = 0;
    for (const auto& g : r.done) sum += g.result();
    co_return r.not_done.empty() ? sum : -1;
  });
  about_to_await.result(kLong);
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&hand, i] { hand[i].set_result(10 * (i + 1)); });
  }
  EXPECT_EQ(f.result(kLong), 60);
  for (auto& t : threads) t.join();
  // The threads race with the suspension: the task must still be resumed exactly once.
  EXPECT_TRUE(join_and_destroy(std::move(pool)));
}

TEST(CoroutineWaitMany, TimeoutResumesWithNotDoneWithoutBlockingTheWorker) {
  auto pool = ThreadPoolExecutor::create(1);
  Executor* ex = pool.get();
  Future<int> never;
  struct Outcome {
    std::size_t done, not_done;
    bool other_task_ran;
  };
  auto f = pool->submit([ex, never]() -> Task<Outcome> {
    // Queued on this worker: it can only run while this coroutine is suspended.
    Future<int> other = ex->submit([] { return 1; });
    std::vector<Future<int>> fs{never};
    auto r = co_await yield_until_done(fs, milliseconds(100), ALL_COMPLETED);
    co_return Outcome{r.done.size(), r.not_done.size(), other.done()};
  });
  Outcome out = f.result(kLong);
  EXPECT_EQ(out.done, 0u);
  EXPECT_EQ(out.not_done, 1u);
  EXPECT_TRUE(out.other_task_ran) << "the timed wait blocked the only worker";
  EXPECT_FALSE(never.done());
  pool->join(kLong);
}

// A timed wait that ends early (its future finished) cancels its timer entry, which lives in
// the coroutine frame and is freed with it, while the timer thread may still be waiting for
// that entry's deadline. The next timer wakes that thread, which must not read the freed entry
// (ASan under the Python binding's tests found it doing so). Each round's wait is such a next
// timer for the round before it.
TEST(CoroutineWaitMany, EarlyEndOfATimedWaitFreesItsTimerSafely) {
  auto pool = ThreadPoolExecutor::create(1);
  for (int round = 0; round < 50; ++round) {
    Future<int> soon;
    Future<void> about_to_wait;
    auto f = pool->submit([soon, about_to_wait]() -> Task<std::size_t> {
      std::vector<Future<int>> fs{soon};
      about_to_wait.set_result();
      auto r = co_await yield_until_done(fs, kLong, ALL_COMPLETED);
      co_return r.done.size();
    });
    about_to_wait.result(kLong);
    soon.set_result(round);
    EXPECT_EQ(f.result(kLong), 1u);
  }
  pool->join(kLong);
}

TEST(CoroutineWaitMany, ZeroTimeoutReturnsAtOnce) {
  auto pool = ThreadPoolExecutor::create(1);
  Future<int> never;
  Future<int> ready;
  ready.set_result(3);
  auto f = pool->submit([never, ready]() -> Task<std::size_t> {
    std::vector<Future<int>> fs{never, ready};
    auto r = co_await yield_until_done(fs, seconds(0), ALL_COMPLETED);
    co_return r.done.size() * 10 + r.not_done.size();
  });
  EXPECT_EQ(f.result(kLong), 11u);
  pool->join(kLong);
}

TEST(Coroutine, AwaitingOwnFutureThrowsInvalidStateError) {
  auto pool = ThreadPoolExecutor::create(1);
  Future<Future<int>> self_box;
  auto f = pool->submit([self_box]() -> Task<int> {
    Future<int> me = self_box.result(kLong);
    int score = 0;
    try {
      co_await me.yield_until_done();
    } catch (const InvalidStateError&) {
      score += 1;
    }
    std::vector<Future<int>> just_me{me};
    try {
      co_await yield_until_done(just_me);
    } catch (const InvalidStateError&) {
      score += 10;
    }
    co_return score;
  });
  self_box.set_result(f);
  EXPECT_EQ(f.result(kLong), 11);
  pool->join(kLong);
}

TEST(Coroutine, ExceptionsOfAnyTypeAreStored) {
  auto pool = ThreadPoolExecutor::create(1);
  Future<int> gate;
  gate.set_result(0);
  auto std_exc = pool->submit([gate]() -> Task<int> {
    co_await gate.yield_until_done();
    throw std::out_of_range("after await");
  });
  auto int_exc = pool->submit([]() -> Task<int> {
    throw 42;
    co_return 0;
  });
  auto void_exc = pool->submit([]() -> Task<void> {
    throw std::string("void task");
    co_return;
  });
  try {
    std_exc.result(kLong);
    ADD_FAILURE();
  } catch (const std::out_of_range& e) {
    EXPECT_STREQ(e.what(), "after await");
  }
  try {
    int_exc.result(kLong);
    ADD_FAILURE();
  } catch (int v) {
    EXPECT_EQ(v, 42);
  }
  try {
    void_exc.result(kLong);
    ADD_FAILURE();
  } catch (const std::string& s) {
    EXPECT_EQ(s, "void task");
  }
  EXPECT_EQ(std_exc.state(), FutureState::kFinished);
  pool->join(kLong);  // all observed
}

TEST(Coroutine, FunctionReturningTaskThatThrowsBeforeCreatingIt) {
  auto pool = ThreadPoolExecutor::create(1);
  // Not a coroutine: it throws before any Task exists.
  auto f = pool->submit(
      [](bool fail) -> Task<int> {
        if (fail) throw std::runtime_error("no task");
        return [](int v) -> Task<int> { co_return v; }(1);
      },
      true);
  EXPECT_THROW(f.result(kLong), std::runtime_error);
  pool->join(kLong);
}

TEST(Coroutine, LambdaCapturesStayValidAcrossSuspension) {
  auto pool = ThreadPoolExecutor::create(2);
  Future<int> gate;
  Future<void> about_to_await;
  auto text = std::string(200, 'x');  // heap-allocated capture
  auto f =
      pool->submit([text, numbers = std::vector<int>{1, 2, 3}, owned = std::make_unique<int>(4),
                    gate, about_to_await]() -> Task<std::string> {
        about_to_await.set_result();
        co_await gate.yield_until_done();
        int sum = gate.result();
        for (int n : numbers) sum += n;
        co_return text.substr(0, 3) + std::to_string(sum + *owned);
      });
  about_to_await.result(kLong);
  std::thread t([gate] { gate.set_result(100); });
  EXPECT_EQ(f.result(kLong), "xxx110");
  t.join();
  pool->join(kLong);
}

TEST(Coroutine, CancelQueuedCoroutineTask) {
  auto pool = ThreadPoolExecutor::create(1);
  Future<void> started, release;
  auto blocker = pool->submit([=] {
    started.set_result();
    release.result(kLong);
  });
  started.result(kLong);
  std::atomic<bool> body_ran{false};
  auto f = pool->submit([&body_ran]() -> Task<int> {
    body_ran = true;
    co_return 1;
  });
  EXPECT_TRUE(f.cancel());
  EXPECT_TRUE(f.cancelled());
  release.set_result();
  blocker.result(kLong);
  EXPECT_THROW(f.result(kLong), CancelledError);
  pool->join(kLong);
  EXPECT_FALSE(body_ran.load());
  EXPECT_EQ(f.state(), FutureState::kCancelledAndNotified);
}

TEST(Coroutine, RunningCoroutineCannotBeCancelled) {
  auto pool = ThreadPoolExecutor::create(1);
  Future<int> gate;
  Future<void> about_to_await;
  auto f = pool->submit([gate, about_to_await]() -> Task<int> {
    about_to_await.set_result();
    co_await gate.yield_until_done();
    co_return gate.result();
  });
  about_to_await.result(kLong);
  EXPECT_FALSE(f.cancel());  // suspended counts as running
  gate.set_result(9);
  EXPECT_EQ(f.result(kLong), 9);
  pool->join(kLong);
}

TEST(Coroutine, ManyTasksSuspendedOnOneFutureAllResume) {
  constexpr int kTasks = 10000;
  auto pool = ThreadPoolExecutor::create(2);
  Future<long> gate;
  Future<void> all_suspending;
  std::atomic<int> arrived{0};
  std::vector<Future<long>> fs;
  fs.reserve(kTasks);
  for (int i = 0; i < kTasks; ++i) {
    fs.push_back(pool->submit([gate, all_suspending, &arrived, i]() -> Task<long> {
      if (arrived.fetch_add(1) + 1 == kTasks) all_suspending.set_result();
      co_await gate.yield_until_done();
      co_return gate.result() + i;
    }));
  }
  all_suspending.result(kLong);
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(fs[i].done());
  gate.set_result(1);
  long sum = 0;
  for (auto& f : fs) sum += f.result(kLong);
  EXPECT_EQ(sum, static_cast<long>(kTasks) + static_cast<long>(kTasks) * (kTasks - 1) / 2);
  pool->join(kLong);
}

TEST(Coroutine, YieldUntilDoneOutsideATaskBlocks) {
  // A coroutine that is not driven by an executor: co_await falls back to blocking.
  struct Eager {
    struct promise_type {
      Eager get_return_object() { return {}; }
      std::suspend_never initial_suspend() noexcept { return {}; }
      std::suspend_never final_suspend() noexcept { return {}; }
      void return_void() {}
      void unhandled_exception() { std::terminate(); }
    };
  };
  Future<int> f;
  bool done_after = false;
  std::thread t([f] { f.set_result(1); });
  [](Future<int> g, bool* out) -> Eager {
    co_await g.yield_until_done();
    *out = g.done();
  }(f, &done_after);
  EXPECT_TRUE(done_after);
  t.join();
}

}  // namespace
}  // namespace betterconcurrent
