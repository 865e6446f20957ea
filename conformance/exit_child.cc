// A whole program for the shutdown replays that watch a process exit (CPython runs them with
// assert_python_ok). Usage: exit_child <scenario>, one of
//
//   interpreter_shutdown        ThreadPoolShutdownTest.test_interpreter_shutdown
//   hang_gh83386                ThreadPoolShutdownTest.test_hang_gh83386
//   cancel_futures_wait_false   ThreadPoolShutdownTest.test_cancel_futures_wait_false
//   work_at_exit                betterconcurrent's README: exit waits for queued, running and
//                               suspended work of a pool that static destruction destroys
//   deadlock_at_exit            betterconcurrent's README: ... unless only other suspended tasks
//                               of the pool could end a wait: those tasks are ended and logged
//
// Each leaves a task running in a pool held by a global std::shared_ptr when main() returns.
// The pool is destroyed at exit (shutdown(wait=true), like CPython's exit-time join), and the
// task prints "apple" then. Expected: stdout "apple\n", stderr empty, exit status 0.
//
// Instead of sleeping, the task waits until main() has returned: an exit handler registered
// after the pool was created runs before the pool's destructor (exit handlers and static
// destructors run in the reverse order of their registration), and releases it.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "conformance/event.h"
#include "executor/task.h"
#include "executor/thread_pool_executor.h"
#include "future/exceptions.h"
#include "future/future.h"

namespace {

using betterconcurrent::ThreadPoolExecutor;

using betterconcurrent::replay::Event;

using betterconcurrent::Future;
using betterconcurrent::Task;

// work_at_exit: which of its tasks ended by the time the pool was destroyed. Printed when this
// object is destroyed, after the pool (declared below it) has been.
struct ExitReport {
  ExitReport() = default;
  ExitReport(const ExitReport&) = delete;
  ExitReport& operator=(const ExitReport&) = delete;
  ~ExitReport() {
    if (!active) return;
    std::printf("ended: running=%d blocking=%d queued=%d suspended=%d\n", running.load(),
                blocking.load(), queued.load(), suspended.load());
  }
  bool active = false;
  std::atomic<int> running{0};
  std::atomic<int> blocking{0};
  std::atomic<int> queued{0};
  std::atomic<int> suspended{0};
};

// deadlock_at_exit: the futures of two coroutine tasks that wait for each other, and how they
// ended, printed when this object is destroyed, after the pool has been.
struct RingReport {
  RingReport() = default;
  RingReport(const RingReport&) = delete;
  RingReport& operator=(const RingReport&) = delete;
  ~RingReport() {
    if (members.empty()) return;
    int deadlocked = 0;
    for (const Future<void>& f : members) {
      try {
        if (f.done()) f.result();
      } catch (const betterconcurrent::DeadlockError&) {
        ++deadlocked;
      }
    }
    std::printf("ring of %zu: %d ended with DeadlockError\n", members.size(), deadlocked);
  }
  Future<void> go;
  std::vector<Future<void>> members;
};

// Declared before the pool, so destroyed after it: the tasks may use them until they end.
ExitReport exit_report;
RingReport ring;
Future<int> gate;
Event task_started;
Event other_task_started;
Event coroutine_waiting;
Event main_returned;
std::shared_ptr<ThreadPoolExecutor> pool;

// CPython's sleep_and_print: the sleep outlasts the main program; here the task waits for
// main() to have returned.
void sleep_and_print(const char* msg) {
  task_started.set();
  if (!main_returned.wait()) std::fputs("exit_child: main() never returned\n", stderr);
  std::printf("%s\n", msg);
  std::fflush(stdout);
}

// Creates the pool, then registers the exit handler that releases the task.
void create_pool(std::optional<int> max_workers) {
  ThreadPoolExecutor::Options options;
  options.max_workers = max_workers;
  pool = ThreadPoolExecutor::create(std::move(options));
  std::atexit([] { main_returned.set(); });
}

// Waits until the task runs; false (and a message on stderr) if it never does.
bool wait_started() {
  if (task_started.wait()) return true;
  std::fputs("exit_child: the task never started\n", stderr);
  return false;
}

// work_at_exit's tasks.
Task<void> wait_for_gate() {
  coroutine_waiting.set();
  co_await gate.yield_until_done();
  exit_report.suspended = gate.result();
}

void run_until_exit_then_open_gate() {
  task_started.set();
  if (main_returned.wait()) exit_report.running = 1;
  gate.set_result(1);
}

// deadlock_at_exit's tasks: each waits for the other, once both futures are known.
Task<void> wait_for_ring_member(std::size_t other) {
  co_await ring.go.yield_until_done();
  co_await ring.members[other].yield_until_done();
}

void block_until_exit() {
  other_task_started.set();
  if (main_returned.wait()) exit_report.blocking = 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string scenario = argc == 2 ? argv[1] : "";
  if (scenario == "interpreter_shutdown") {
    // t = ThreadPoolExecutor(5); t.submit(sleep_and_print, 1.0, "apple")
    create_pool(5);
    pool->submit(sleep_and_print, "apple");
    return wait_started() ? 0 : 1;
  }
  if (scenario == "hang_gh83386") {
    // t = ThreadPoolExecutor(max_workers=3); t.submit(...); t.shutdown(wait=False)
    create_pool(3);
    pool->submit(sleep_and_print, "apple");
    pool->shutdown(/*wait=*/false);
    return wait_started() ? 0 : 1;
  }
  if (scenario == "cancel_futures_wait_false") {
    // t = ThreadPoolExecutor(); t.submit(...); t.shutdown(wait=False, cancel_futures=True),
    // literally: the submit started a worker and handed it the task, which cancel_futures
    // therefore does not cancel, even if that thread has not been scheduled yet.
    create_pool(std::nullopt);
    pool->submit(sleep_and_print, "apple");
    pool->shutdown(/*wait=*/false, /*cancel_futures=*/true);
    return 0;
  }
  if (scenario == "work_at_exit") {
    // At main()'s return: a coroutine suspended on a future that a running task completes
    // once main() has returned, that running task, another one blocking the second worker,
    // and a task queued behind them. The pool's destruction at exit lets all four end.
    exit_report.active = true;
    create_pool(2);
    pool->submit(wait_for_gate);  // starts worker 0
    if (!coroutine_waiting.wait()) return 1;
    pool->submit(run_until_exit_then_open_gate);  // the coroutine has not ended: worker 1
    pool->submit(block_until_exit);               // worker 0, free while the coroutine waits
    if (!wait_started() || !other_task_started.wait()) return 1;
    pool->submit([] { exit_report.queued = 1; });  // both workers are busy
    return 0;
  }
  if (scenario == "deadlock_at_exit") {
    // At main()'s return, two coroutine tasks wait (or are about to wait) for each other.
    create_pool(2);
    ring.members.push_back(pool->submit(wait_for_ring_member, 1));
    ring.members.push_back(pool->submit(wait_for_ring_member, 0));
    ring.go.set_result();
    return 0;
  }
  std::fprintf(stderr,
               "usage: exit_child interpreter_shutdown|hang_gh83386|"
               "cancel_futures_wait_false|work_at_exit|deadlock_at_exit\n");
  return 2;
}
