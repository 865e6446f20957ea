// A whole program for the shutdown replays that watch a process exit (CPython runs them with
// assert_python_ok). Usage: exit_child <scenario>, one of
//
//   interpreter_shutdown        ThreadPoolShutdownTest.test_interpreter_shutdown
//   hang_gh83386                ThreadPoolShutdownTest.test_hang_gh83386
//   cancel_futures_wait_false   ThreadPoolShutdownTest.test_cancel_futures_wait_false
//
// Each leaves a task running in a pool held by a global std::shared_ptr when main() returns.
// The pool is destroyed at exit (shutdown(wait=true), like CPython's exit-time join), and the
// task prints "apple" then. Expected: stdout "apple\n", stderr empty, exit status 0.
//
// Instead of sleeping, the task waits until main() has returned: an exit handler registered
// after the pool was created runs before the pool's destructor (exit handlers and static
// destructors run in the reverse order of their registration), and releases it.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "conformance/event.h"
#include "executor/thread_pool_executor.h"

namespace {

using betterconcurrent::ThreadPoolExecutor;

using betterconcurrent::replay::Event;

// Declared before the pool, so destroyed after it: the task may use them until it ends.
Event task_started;
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
  std::fprintf(stderr,
               "usage: exit_child interpreter_shutdown|hang_gh83386|"
               "cancel_futures_wait_false\n");
  return 2;
}
