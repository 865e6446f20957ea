// Library bugs found by //executor:stress_test, each narrowed to a small GoogleTest case that
// failed before its fix. Every wait is bounded: a case that hits its bug fails (and leaves the
// hung pool behind) instead of hanging.
#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "executor/thread_pool_executor.h"
#include "future/exceptions.h"
#include "future/future.h"
#include "future/wait.h"
#include "gtest/gtest.h"

namespace betterconcurrent {
namespace {

using std::chrono::seconds;

constexpr seconds kBound{10};
constexpr seconds kShutdownBound{60};

// Stress seed 155 (max_workers 8; about 1 run in 20): shutdown(wait=true) from outside hung
// for ever while tasks submitted subtasks.
//
// Scheduler::join_threads() held spawn_mu_ while it joins the worker threads. A worker's task
// whose submit() passed check_accepting() just before shutdown() set its flag goes on to
// Scheduler::submit() -> spawn_worker() (no worker idle, fewer than max_workers threads), which
// blocks on spawn_mu_. That task never ends, so the outstanding count never reaches zero, so no
// worker exits, so join_threads() never returns. Stacks: the driver in
// ThreadPoolExecutor::shutdown -> Scheduler::join_threads -> std::thread::join; a worker in
// plain task -> Executor::submit -> ThreadPoolExecutor::enqueue -> Scheduler::submit ->
// Scheduler::spawn_worker -> std::mutex::lock; the other workers in wait_for_work.
//
// Timing-dependent: two tasks submit blocking subtasks (so each submit starts a thread, and
// spawn_mu_ is often held by the other's thread start) while the driver shuts down. Before the
// fix it hung within the first 3 rounds in each of 5 runs. Each submitter stops after
// kSubtasks, so that a shutdown that a busy machine delays does not meet an unbounded queue.
TEST(StressRegression, ShutdownWaitRacingASubmitThatStartsAThreadReturns) {
  constexpr int kSubtasks = 500;
  for (int round = 0; round < 50; ++round) {
    auto pool = ThreadPoolExecutor::create(32);
    Future<void> release;
    auto submitter = [&pool, release](Future<void> started) {
      started.set_result();
      try {
        for (int i = 0; i < kSubtasks; ++i) pool->submit([release] { release.result(kBound); });
      } catch (const std::runtime_error&) {
        // shutdown() has begun.
      }
    };
    Future<void> first, second;
    pool->submit(submitter, first);
    pool->submit(submitter, second);
    first.result(kBound);
    second.result(kBound);
    auto shut = std::make_shared<std::promise<void>>();
    std::future<void> shut_down = shut->get_future();
    std::thread([pool, shut] {
      pool->shutdown(true);
      shut->set_value();
    }).detach();
    release.set_result();
    // A hang here is for ever; the long bound only keeps a loaded machine from looking like one.
    if (shut_down.wait_for(kShutdownBound) != std::future_status::ready) {
      new auto(std::move(pool));  // hung: left as it is
      FAIL() << "shutdown(wait=true) hung in round " << round;
    }
  }
}

// Stress seed 30 under --config=asan (max_workers 4, an initializer that throws): a coroutine's
// untimed `co_await yield_until_done(fs)` never returned, so join() timed out.
//
// A task cancelled while it waited in the queue of a pool that then broke stayed CANCELLED for
// ever: discard_task() (executor/detail/tasks.h) only tried set_exception(BrokenThreadPool),
// which a cancelled future refuses, and never called start_or_notify_cancel(). So the future never
// became CANCELLED_AND_NOTIFIED, and wait(), as_completed() and yield_until_done(fs) (which, as
// in Python, count a cancelled future as done only once notified) waited for it for ever; the
// README promises that executors always notify. Deterministic.
TEST(StressRegression, TaskCancelledInTheQueueOfABreakingPoolIsNotified) {
  Future<void> release_initializer;
  ThreadPoolExecutor::Options options;
  options.max_workers = 1;
  options.initializer = [release_initializer] {
    release_initializer.result(kBound);
    throw std::runtime_error("initializer fails");
  };
  auto pool = ThreadPoolExecutor::create(std::move(options));
  Future<int> first = pool->submit([] { return 1; });   // handed to the new (only) thread
  Future<int> queued = pool->submit([] { return 2; });  // waits in the queue
  ASSERT_TRUE(queued.cancel());
  release_initializer.set_result();  // the pool breaks and discards its queue
  EXPECT_THROW(first.result(kBound), BrokenThreadPool);
  pool->join(kBound);  // the queued task has been discarded
  EXPECT_TRUE(queued.cancelled());
  EXPECT_EQ(queued.state(), FutureState::kCancelledAndNotified);
  auto [done, not_done] = wait(std::vector<Future<int>>{queued}, std::chrono::milliseconds(100));
  EXPECT_EQ(done.size(), 1u) << "wait() does not see the cancelled task as done";
}

}  // namespace
}  // namespace betterconcurrent
