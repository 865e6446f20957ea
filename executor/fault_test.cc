// Exception safety under injected faults: worker threads that cannot start, allocations that
// fail inside submit(), results whose move constructor throws, and callbacks or log handlers
// that throw on worker threads.
//
// This binary links //testing:failing_new, which replaces the global operator new with one that
// can be armed, per thread, to throw std::bad_alloc on a chosen upcoming call.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "executor/scheduler.h"
#include "executor/task.h"
#include "executor/thread_pool_executor.h"
#include "future/exceptions.h"
#include "future/future.h"
#include "future/log.h"
#include "future/wait.h"
#include "gtest/gtest.h"
#include "testing/failing_new.h"
#include "testing/log_capture.h"
#include "testing/pool.h"

namespace betterconcurrent {
namespace {

using std::chrono::seconds;

constexpr seconds kLong{30};

using test_util::FailAllocation;
using test_util::LogCapture;

TEST(FaultInjection, ReplacedAllocatorWorks) {
  {
    FailAllocation arm(0);
    EXPECT_THROW((void)std::make_unique<int>(1), std::bad_alloc);
  }
  {
    FailAllocation arm(1);
    auto first = std::make_unique<int>(1);
    EXPECT_THROW((void)std::make_unique<int>(2), std::bad_alloc);
    EXPECT_TRUE(FailAllocation::fired());
  }
  EXPECT_NO_THROW((void)std::make_unique<int>(3));
}

// ---------------------------------------------------------------------------------------------
// Worker threads that cannot start

TEST(ThreadStartFailure, SubmitThrowsAndNothingIsAccepted) {
  ThreadPoolExecutor::Options options;
  options.max_workers = 2;
  options.thread_name_prefix = "f";
  auto pool = ThreadPoolExecutor::create(std::move(options));
  std::atomic<bool> ran{false};
  detail::g_fail_thread_starts = 1;
  EXPECT_THROW(pool->submit([&ran] { ran = true; }), std::system_error);
  EXPECT_EQ(detail::g_fail_thread_starts.load(), 0);
  EXPECT_EQ(pool->num_threads(), 0u);
  // No trace: join() neither waits (zero timeout) nor reports anything.
  EXPECT_NO_THROW(pool->join(seconds(0)));
  EXPECT_FALSE(ran.load());

  // Still usable.
  EXPECT_EQ(pool->submit([] { return 5; }).result(kLong), 5);
  EXPECT_EQ(pool->num_threads(), 1u);
  EXPECT_EQ(pool->thread_names(), (std::vector<std::string>{"f_0"}));
  pool->join(kLong);
  EXPECT_FALSE(ran.load());
}

TEST(ThreadStartFailure, CoroutineSubmitThrowsToo) {
  auto pool = ThreadPoolExecutor::create(1);
  std::atomic<bool> ran{false};
  detail::g_fail_thread_starts = 1;
  EXPECT_THROW(pool->submit([&ran]() -> Task<int> {
    ran = true;
    co_return 1;
  }),
               std::system_error);
  EXPECT_NO_THROW(pool->join(seconds(0)));
  EXPECT_EQ(pool->submit([]() -> Task<int> { co_return 2; }).result(kLong), 2);
  pool->join(kLong);
  EXPECT_FALSE(ran.load());
}

TEST(ThreadStartFailure, SubtaskSubmitFromWorkerThrowsInsideTask) {
  auto pool = ThreadPoolExecutor::create(2);
  pool->submit([] {}).result(kLong);  // one worker, idle
  Executor* ex = pool.get();
  std::atomic<bool> child_ran{false};
  auto parent = pool->submit([ex, &child_ran] {
    // This worker is busy and no other is idle: the subtask asks for a second worker.
    detail::g_fail_thread_starts = 1;
    try {
      ex->submit([&child_ran] { child_ran = true; });
      detail::g_fail_thread_starts = 0;
      return false;
    } catch (const std::system_error&) {
      return true;
    }
  });
  EXPECT_TRUE(parent.result(kLong));
  EXPECT_NO_THROW(pool->join(seconds(10)));  // the failed child is not waited for
  EXPECT_FALSE(child_ran.load());
  EXPECT_EQ(pool->submit([] { return 1; }).result(kLong), 1);
  pool->join(kLong);
}

// ---------------------------------------------------------------------------------------------
// Allocation failures inside submit()

// Fails each allocation that submit() makes in turn, on fresh pools (so that the thread start
// is covered too), until submit() gets through without reaching the armed allocation.
template <typename MakeTask>
void sweep_allocation_failures(MakeTask make_task, int expected_value) {
  int failures = 0;
  bool completed = false;
  for (int n = 0; n < 64 && !completed; ++n) {
    auto pool = ThreadPoolExecutor::create(2);
    std::atomic<int> ran{0};
    bool threw = false;
    bool fired = false;
    std::optional<Future<int>> f;
    try {
      FailAllocation arm(n);
      f.emplace(pool->submit(make_task(&ran)));
      fired = FailAllocation::fired();
    } catch (const std::bad_alloc&) {
      threw = true;
      fired = true;
    }
    if (threw) {
      ++failures;
      EXPECT_FALSE(f.has_value());
      // Nothing was accepted: join() neither waits nor reports.
      EXPECT_NO_THROW(pool->join(seconds(0))) << "after failing allocation #" << n;
    } else {
      ASSERT_TRUE(f.has_value());
      EXPECT_EQ(f->result(kLong), expected_value);
      completed = !fired;
    }
    // Usable afterwards either way.
    EXPECT_EQ(pool->submit([] { return 11; }).result(kLong), 11) << n;
    pool->join(kLong);
    EXPECT_EQ(ran.load(), threw ? 0 : 1) << n;
  }
  EXPECT_TRUE(completed);
  EXPECT_GE(failures, 2) << "the task and the worker thread both allocate";
}

TEST(AllocationFailure, PlainSubmitThrowsBadAllocWithNothingAccepted) {
  sweep_allocation_failures(
      [](std::atomic<int>* ran) {
        return [ran] {
          ran->fetch_add(1);
          return 3;
        };
      },
      3);
}

TEST(AllocationFailure, CoroutineSubmitThrowsBadAllocWithNothingAccepted) {
  sweep_allocation_failures(
      [](std::atomic<int>* ran) {
        return [ran]() -> Task<int> {
          ran->fetch_add(1);
          co_return 4;
        };
      },
      4);
}

TEST(AllocationFailure, SubtaskSubmitFromWorker) {
  auto pool = ThreadPoolExecutor::create(1);
  Executor* ex = pool.get();
  std::atomic<bool> child_ran{false};
  auto parent = pool->submit([ex, &child_ran] {
    try {
      FailAllocation arm(0);
      ex->submit([&child_ran] { child_ran = true; });
      return false;
    } catch (const std::bad_alloc&) {
      return true;
    }
  });
  EXPECT_TRUE(parent.result(kLong));
  EXPECT_NO_THROW(pool->join(seconds(10)));
  EXPECT_FALSE(child_ran.load());
}

// ---------------------------------------------------------------------------------------------
// Every allocation of a whole workload, on any thread, failing in turn

Task<long> sweep_fib(Executor* ex, int n) {
  if (n < 2) co_return n;
  auto a = ex->submit(sweep_fib, ex, n - 1);
  auto b = ex->submit(sweep_fib, ex, n - 2);
  std::vector<Future<long>> both{a, b};
  co_await yield_until_done(both);
  co_return a.result() + b.result();
}

// One run of a workload that exercises submit, coroutines with cooperative waits (one timed,
// on a hand-made future), subtasks, done callbacks, map and join, while allocation number `n`
// of the process fails. Returns what broke an invariant (empty if nothing) and sets `injected`.
// Any call may throw: a submit that throws accepted nothing, and anything else that throws is
// a task's or a call's outcome.
// Invariants: nothing hangs (every wait is bounded), every accepted future ends, a callback
// registered on one runs exactly once, and the pool stays usable once the fault is past.
std::string run_workload_failing_allocation(long n, bool& injected) {
  std::string problems;
  auto pool = ThreadPoolExecutor::create(2);
  Executor* ex = pool.get();
  std::vector<AnyFuture> accepted;
  std::atomic<int> callbacks{0};
  int callbacks_registered = 0;
  Future<int> hand_made;
  {
    test_util::FailProcessAllocation fail(n);
    // A step that throws (std::bad_alloc, std::system_error, a task's bad_alloc rethrown by
    // map(), UnobservedTaskErrors from join()) has an allowed outcome; the checks come after.
    auto attempt = [](auto&& step) {
      try {
        step();
      } catch (...) {
      }
    };
    attempt([&] {
      auto f = pool->submit([] { return 1; });
      accepted.emplace_back(f);
      f.add_done_callback([&callbacks](const Future<int>&) { callbacks.fetch_add(1); });
      ++callbacks_registered;
    });
    attempt([&] { accepted.emplace_back(pool->submit(sweep_fib, ex, 6)); });
    attempt([&] {
      accepted.emplace_back(pool->submit([hand_made]() -> Task<int> {
        std::vector<Future<int>> fs{hand_made};
        co_await yield_until_done(fs, std::chrono::milliseconds(1));
        co_await hand_made.yield_until_done();
        co_return hand_made.result();
      }));
    });
    attempt([&] {
      for (const int& r : pool->map([](int x) { return x * x; }, std::vector<int>{1, 2, 3})) {
        (void)r;
      }
    });
    attempt([&] { hand_made.set_result(5); });
    attempt([&] { pool->join(kLong); });
    injected = fail.injected();
  }
  if (!hand_made.done()) hand_made.set_result(5);  // if setting it failed above
  try {
    pool->join(kLong);
  } catch (const TimeoutError&) {
    problems += "join() did not return; ";
  } catch (...) {
    // Unobserved task errors (a task that failed to allocate): reported, as they must be.
  }
  for (AnyFuture& f : accepted) {
    if (!f.done()) problems += "an accepted future never ended; ";
  }
  if (callbacks.load() != callbacks_registered) problems += "a done callback did not run once; ";
  try {
    if (pool->submit([] { return 2; }).result(kLong) != 2) problems += "the pool is unusable; ";
  } catch (const std::exception& e) {
    problems += std::string("the pool is unusable: ") + e.what() + "; ";
  }
  if (!test_util::join_and_destroy(std::move(pool))) problems += "teardown hung; ";
  return problems;
}

TEST(AllocationFailure, EveryAllocationOfAWorkloadOnAnyThreadFailsInTurn) {
  long points = 0;
  for (long n = 0; n < 5000; ++n) {
    bool injected = false;
    std::string problems = run_workload_failing_allocation(n, injected);
    EXPECT_EQ(problems, "") << "allocation " << n;
    if (!injected) break;  // the workload made fewer than n + 1 allocations: all covered
    ++points;
  }
  // Timing moves allocations between threads, so the count varies a little from run to run.
  EXPECT_GT(points, 50) << "the workload allocates more than that";
  RecordProperty("fault_points", static_cast<int>(points));
  std::printf("allocation sweep: %ld fault points, each with the invariants held\n", points);
}

// ---------------------------------------------------------------------------------------------
// Results that cannot be moved into their future

struct MoveBomb {
  MoveBomb() = default;
  MoveBomb(const MoveBomb&) = delete;
  MoveBomb(MoveBomb&&) { throw std::runtime_error("move failed"); }
  int value = 1;
};

// The other half of "no failure to inject": the steps are noexcept, which these pin.
static_assert(noexcept(std::declval<detail::Scheduler&>().wake(std::declval<detail::Runnable&>())),
              "enqueueing a woken task");
static_assert(noexcept(std::declval<detail::Runnable&>().run(std::declval<detail::Scheduler&>())),
              "dequeued work: a first run or a resumption");
static_assert(noexcept(std::declval<detail::StateBase&>().link(std::declval<detail::WaitNode&>())),
              "registering a wake-up");
static_assert(noexcept(std::declval<detail::StateBase&>().try_set_exception(nullptr)),
              "completing a future");
static_assert(
    noexcept(std::declval<detail::Scheduler&>().task_ended(std::declval<detail::StateBase&>())),
    "the join bookkeeping");

// AnAcceptedTaskLivesWithoutAllocating's shared state: hand-made futures and counters.
struct NoAllocShared {
  Future<void> go;
  std::vector<Future<int>> hand;  // completed by the main thread
  std::mutex mu;
  std::condition_variable cv;
  int blocking = 0;
  bool released = false;
  int resumed = 0;
  int completed = 0;
  void bump(int& counter) {
    {
      std::lock_guard lock(mu);
      ++counter;
    }
    cv.notify_all();
  }
  template <typename Done>
  bool wait_for(Done done) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, kLong, done);
  }
};

// The steps of an accepted task's life — enqueue, dequeue, resume, registering a wake-up, the
// wake itself, completing the future, its done callbacks, the join bookkeeping — allocate
// nothing (the queues, listeners and timers are intrusive), and they are noexcept: there is no
// failure in them to inject. This proves the first part: a pool takes many coroutine tasks
// through all of those steps, twice over, while every allocation of the process is refused.
TEST(NoFailurePoint, AnAcceptedTaskLivesWithoutAllocating) {
  constexpr int kTasks = 64;
  auto shared = std::make_shared<NoAllocShared>();
  for (int i = 0; i < kTasks; ++i) shared->hand.emplace_back();
  auto pool = ThreadPoolExecutor::create(1);  // one worker: the order below is exact
  std::vector<Future<int>> tasks;
  for (int i = 0; i < kTasks; ++i) {
    tasks.push_back(pool->submit(
        [](std::shared_ptr<NoAllocShared> s, int i) -> Task<int> {
          co_await s->go.yield_until_done();
          s->bump(s->resumed);
          co_await s->hand[i].yield_until_done();
          co_return s->hand[i].result() + i;
        },
        shared, i));
    tasks.back().add_done_callback(
        [shared](const Future<int>&) { shared->bump(shared->completed); });
  }
  // Runs after every coroutine above suspended on `go` (one worker takes outside tasks in
  // order), and holds the worker until the allocator is armed.
  auto blocker = pool->submit([shared] {
    shared->bump(shared->blocking);
    shared->wait_for([&] { return shared->released; });
  });
  ASSERT_TRUE(shared->wait_for([&] { return shared->blocking == 1; }));
  long refused = 0;
  bool resumed = false;
  bool completed = false;
  {
    test_util::RefuseAllAllocations refuse;
    shared->go.set_result();  // wakes every coroutine: enqueued from this thread
    {
      std::lock_guard lock(shared->mu);
      shared->released = true;
    }
    shared->cv.notify_all();
    resumed = shared->wait_for([&] { return shared->resumed == kTasks; });
    // Each coroutine suspends again (or, if it has not reached its wait yet, finds it done).
    for (int i = 0; i < kTasks; ++i) shared->hand[i].set_result(10 * i);
    completed = shared->wait_for([&] { return shared->completed == kTasks; });
    refused = refuse.refused();
  }
  ASSERT_TRUE(resumed && completed) << "the tasks did not finish";
  EXPECT_EQ(refused, 0) << "allocations after acceptance";
  for (int i = 0; i < kTasks; ++i) EXPECT_EQ(tasks[i].result(kLong), 11 * i);
  pool->join(kLong);
}

TEST(ThrowingMove, PlainTaskStoresTheMoveException) {
  auto pool = ThreadPoolExecutor::create(1);
  auto f = pool->submit([] { return MoveBomb{}; });
  std::exception_ptr e = f.exception(kLong);
  ASSERT_NE(e, nullptr);
  try {
    std::rethrow_exception(e);
  } catch (const std::runtime_error& ex) {
    EXPECT_STREQ(ex.what(), "move failed");
  }
  EXPECT_EQ(f.state(), FutureState::kFinished);
  pool->join(kLong);
  // The worker survived.
  EXPECT_EQ(pool->submit([] { return 1; }).result(kLong), 1);
  EXPECT_EQ(pool->num_threads(), 1u);
}

TEST(ThrowingMove, CoroutineTaskStoresTheMoveException) {
  auto pool = ThreadPoolExecutor::create(1);
  Future<int> gate;
  gate.set_result(0);
  auto f = pool->submit([gate]() -> Task<MoveBomb> {
    co_await gate.yield_until_done();
    co_return MoveBomb{};
  });
  EXPECT_THROW(f.result(kLong), std::runtime_error);
  pool->join(kLong);
}

TEST(ThrowingMove, UnobservedMoveFailureIsReportedByJoin) {
  auto pool = ThreadPoolExecutor::create(1);
  // Kept (not observed) so that the exception is freed on this thread: see join_test.cc.
  auto f = pool->submit([] { return MoveBomb{}; });
  try {
    pool->join(kLong);
    ADD_FAILURE() << "not reported";
  } catch (const UnobservedTaskErrors& e) {
    ASSERT_EQ(e.exceptions().size(), 1u);
    EXPECT_THROW(std::rethrow_exception(e.exceptions()[0]), std::runtime_error);
  }
}

// ---------------------------------------------------------------------------------------------
// Throwing callbacks and log handlers never escape a worker

// A coroutine's cleanup that throws. A local whose destructor throws as the body ends throws
// inside the body, so the task fails with it. A parameter is destroyed with the frame, after
// the outcome is stored: what it throws is logged, and the result stands.
struct ThrowsWhenDestroyed {
  // Implicit: the coroutine makes its parameter from the int that submit() was given.
  ThrowsWhenDestroyed(int n) : armed(n != 0) {}  // NOLINT(google-explicit-constructor)
  ThrowsWhenDestroyed(ThrowsWhenDestroyed&& other) noexcept : armed(other.armed) {
    other.armed = false;
  }
  ~ThrowsWhenDestroyed() noexcept(false) {
    if (armed) throw std::runtime_error("cleanup failed");
  }
  bool armed;
};

Task<int> with_throwing_local(int n) {
  ThrowsWhenDestroyed local(n);
  co_return n;
}

Task<int> with_throwing_parameter(ThrowsWhenDestroyed parameter) { co_return parameter.armed; }

TEST(ThrowingCleanup, CoroutineLocalWhoseDestructorThrowsFailsTheTask) {
  auto pool = ThreadPoolExecutor::create(1);
  auto f = pool->submit(with_throwing_local, 1);
  EXPECT_THROW(
      {
        try {
          f.result(kLong);
        } catch (const std::runtime_error& e) {
          EXPECT_STREQ(e.what(), "cleanup failed");
          throw;
        }
      },
      std::runtime_error);
  EXPECT_EQ(pool->submit(with_throwing_local, 0).result(kLong), 0);
}

TEST(ThrowingCleanup, CoroutineParameterWhoseDestructorThrowsIsLoggedAndTheResultKept) {
#if defined(__SANITIZE_ADDRESS__)
  // GCC (at -O1 and above) does not free a coroutine frame whose destruction throws; the README
  // documents that leak, which LeakSanitizer would report at exit.
  GTEST_SKIP() << "the frame of this coroutine is leaked by design (see README)";
#endif
  LogCapture logs;
  auto pool = ThreadPoolExecutor::create(1);
  // The argument is an int; the coroutine makes the throwing parameter from it.
  auto f = pool->submit(with_throwing_parameter, 1);
  EXPECT_EQ(f.result(kLong), 1);
  pool->join(kLong);  // the frame is gone once the task is no longer outstanding
  EXPECT_EQ(logs.count("exception while destroying a coroutine task's frame"), 1);
  EXPECT_EQ(pool->submit([] { return 2; }).result(kLong), 2);  // the worker lives on
}

TEST(ThrowingCallbacks, AreLoggedAndTheWorkerKeepsRunning) {
  LogCapture logs;
  auto pool = ThreadPoolExecutor::create(1);
  Future<void> release;
  auto f = pool->submit([release] {
    release.result(kLong);
    return 1;
  });
  std::atomic<int> later_callback_ran{0};
  f.add_done_callback([](const Future<int>&) { throw std::runtime_error("callback 1"); });
  f.add_done_callback([](const Future<int>&) { throw 5; });
  f.add_done_callback(
      [&later_callback_ran](const Future<int>& g) { later_callback_ran = g.result(); });
  release.set_result();
  EXPECT_EQ(f.result(kLong), 1);
  pool->join(kLong);  // callbacks have run once the task is no longer outstanding
  EXPECT_EQ(later_callback_ran.load(), 1);
  EXPECT_EQ(logs.count("exception calling callback for future"), 2);

  // The same (only) worker still runs tasks.
  EXPECT_EQ(pool->submit([] { return 2; }).result(kLong), 2);
  EXPECT_EQ(pool->num_threads(), 1u);
}

TEST(ThrowingCallbacks, OnCoroutineTaskAndOnCancellation) {
  LogCapture logs;
  auto pool = ThreadPoolExecutor::create(1);
  Future<int> gate;
  Future<void> about_to_await, blocker_started, release_blocker;
  auto co = pool->submit([gate, about_to_await]() -> Task<int> {
    about_to_await.set_result();
    co_await gate.yield_until_done();
    co_return 3;
  });
  co.add_done_callback([](const Future<int>&) { throw std::logic_error("co callback"); });
  about_to_await.result(kLong);
  // The coroutine is suspended; hold the worker and queue a task behind it.
  auto blocker = pool->submit([=] {
    blocker_started.set_result();
    release_blocker.result(kLong);
  });
  blocker_started.result(kLong);
  auto queued = pool->submit([] { return 4; });
  queued.add_done_callback([](const Future<int>&) { throw std::logic_error("cancel callback"); });
  pool->shutdown(/*wait=*/false, /*cancel_futures=*/true);  // runs the callback here
  EXPECT_TRUE(queued.cancelled());
  EXPECT_EQ(logs.count("exception calling callback for future"), 1);
  std::thread completer([gate] { gate.set_result(0); });
  release_blocker.set_result();
  pool->shutdown(/*wait=*/true);
  completer.join();
  EXPECT_EQ(co.result(kLong), 3);  // a started coroutine still finishes
  EXPECT_EQ(logs.count("exception calling callback for future"), 2);
}

TEST(ThrowingLogHandler, IsSwallowed) {
  LogHandler previous = set_log_handler([](const LogRecord&) { throw std::runtime_error("log"); });
  {
    auto pool = ThreadPoolExecutor::create(1);
    auto f = pool->submit([] { return 1; });
    f.add_done_callback([](const Future<int>&) { throw 1; });
    EXPECT_EQ(f.result(kLong), 1);
    pool->submit([] { throw 2; });  // never observed: logged (and thrown) at destruction
    EXPECT_EQ(pool->submit([] { return 3; }).result(kLong), 3);
  }
  set_log_handler(std::move(previous));
}

}  // namespace
}  // namespace betterconcurrent
