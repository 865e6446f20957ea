// Shared pieces of the CPython replays: the module-level futures and helpers of CPython's
// test_concurrent_futures, and the fixtures that stand in for its BaseTestCase and
// ExecutorMixin. Each replay test is named <CPython class>.<CPython method>; manifest.tsv maps
// every CPython test id to its replay or to the reason it does not apply.
#ifndef BETTERCONCURRENT_CONFORMANCE_REPLAY_H_
#define BETTERCONCURRENT_CONFORMANCE_REPLAY_H_

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <system_error>
#include <thread>

#include "conformance/event.h"
#include "executor/thread_pool_executor.h"
#include "future/future.h"
#include "gtest/gtest.h"

namespace betterconcurrent::replay {

// CPython's create_future(state=...): the same states, reached through the public API.
template <typename T = int>
Future<T> pending_future() {
  return Future<T>();
}
template <typename T = int>
Future<T> running_future() {
  Future<T> f;
  f.set_running_or_notify_cancel();
  return f;
}
template <typename T = int>
Future<T> cancelled_future() {
  Future<T> f;
  f.cancel();
  return f;
}
template <typename T = int>
Future<T> cancelled_and_notified_future() {
  Future<T> f = cancelled_future<T>();
  f.set_running_or_notify_cancel();
  return f;
}
// FINISHED with OSError(), whose C++ counterpart is std::system_error.
Future<int> exception_future();
// FINISHED with result 42.
Future<int> successful_future();

// The number of threads in this process (Linux: /proc/self/task), leaving out those that are
// exiting, which the kernel still lists for a moment after pthread_join() returned.
std::size_t thread_count();

// The calling thread's id, for blocked_in_wait().
pid_t current_tid();

// Waits (up to `timeout`) until thread `tid` of this process is asleep in the kernel, e.g.
// blocked in result() or wait(); returns whether it was seen asleep. CPython's cases sleep for a
// second to let the main thread start waiting; the replays ask the kernel instead.
bool blocked_in_wait(pid_t tid, std::chrono::duration<double> timeout = kLongTimeout);

// Sets `gate` once thread `tid` is blocked (blocked_in_wait), from a thread of its own, joined
// on destruction. Adds a test failure if `tid` never blocks.
class ReleaseWhenBlocked {
 public:
  ReleaseWhenBlocked(Event& gate, pid_t tid);
  ~ReleaseWhenBlocked();
  ReleaseWhenBlocked(const ReleaseWhenBlocked&) = delete;
  ReleaseWhenBlocked& operator=(const ReleaseWhenBlocked&) = delete;

 private:
  std::thread thread_;
};

// CPython's BaseTestCase: fails the test if it leaves threads behind
// (threading_helper.threading_cleanup).
class BaseTestCase : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

 private:
  std::size_t threads_at_start_ = 0;
};

// CPython's ExecutorMixin with ThreadPoolMixin: `executor` is a fresh pool of worker_count()
// workers (5 unless overridden), shut down with wait at the end of each test, which must not
// take longer than kLongTimeout (CPython asserts 300 s). Tasks that stand for CPython's
// sleeping tasks block on `gate`, which TearDown sets first, so that they finish even when an
// assertion ended the test early (and the Event outlives them).
class ThreadPoolMixin : public BaseTestCase {
 protected:
  virtual std::size_t worker_count() const { return 5; }
  virtual ThreadPoolExecutor::Options options() const { return {}; }
  void SetUp() override;
  void TearDown() override;

  Event gate;
  std::shared_ptr<ThreadPoolExecutor> executor;
};

// Shuts `pool` down with wait and destroys it on another thread; adds a test failure if that
// takes longer than `timeout` (the hung pool is then abandoned so the other tests still run).
void shutdown_bounded(std::shared_ptr<ThreadPoolExecutor> pool,
                      std::chrono::duration<double> timeout = kLongTimeout);

}  // namespace betterconcurrent::replay

#endif  // BETTERCONCURRENT_CONFORMANCE_REPLAY_H_
