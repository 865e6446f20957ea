// fork() with live executors: the child can create and use new executors, and the ones it
// inherited refuse work with a clear error instead of hanging.
//
// Each child reports through its exit status; the parent waits for it with a bound, so a child
// that hangs fails the test (and is killed) instead of hanging it.
#include "testing/fork.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "executor/task.h"
#include "executor/thread_pool_executor.h"
#include "future/future.h"
#include "future/log.h"
#include "gtest/gtest.h"
#include "testing/fib.h"
#include "testing/pool.h"

namespace betterconcurrent {
namespace {

using std::chrono::seconds;
constexpr seconds kBound{60};

// Waits for `pid` to exit, at most `bound`. Returns its exit status, or -1 if it hung (it was
// killed) or did not exit normally.
int exit_status(pid_t pid, seconds bound = kBound) {
  std::optional<int> status = test_util::wait_child(pid, bound);
  return status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
}

using test_util::fib;

// In the child: what is wrong with using `inherited` and a new pool; empty if nothing.
std::string child_checks(std::shared_ptr<ThreadPoolExecutor> inherited) {
  std::string problems;
  auto refuses = [&](const char* what, auto&& call) {
    try {
      call();
      problems += std::string(what) + " on the inherited pool did not throw; ";
    } catch (const std::runtime_error& e) {
      if (std::string(e.what()).find("fork()") == std::string::npos) {
        problems += std::string(what) + ": unclear error: " + e.what() + "; ";
      }
    }
  };
  refuses("submit", [&] { inherited->submit([] { return 1; }); });
  refuses("join", [&] { inherited->join(seconds(1)); });
  inherited->shutdown(/*wait=*/true, /*cancel_futures=*/true);  // returns: nothing to join
  inherited.reset();                                            // the destructor too

  auto pool = ThreadPoolExecutor::create(2);
  if (pool->submit([](int a) { return a * 2; }, 21).result(kBound) != 42) {
    problems += "a plain task in a new pool; ";
  }
  if (pool->submit(fib, pool.get(), 15).result(kBound) != 610)
    problems += "fib(15) in a new pool; ";
  pool->join(kBound);
  if (!test_util::join_and_destroy(std::move(pool))) problems += "the new pool's teardown; ";
  return problems;
}

// Runs child_checks() in a forked child; returns its report ("" if clean).
std::string fork_and_check(const std::shared_ptr<ThreadPoolExecutor>& live) {
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    std::string problems;
    if (!test_util::give_child_threads_fresh_ids()) _exit(4);
    try {
      problems = child_checks(live);
    } catch (const std::exception& e) {
      problems = std::string("threw: ") + e.what();
    }
    if (!problems.empty()) std::fprintf(stderr, "child: %s\n", problems.c_str());
    _exit(problems.empty() ? 0 : 1);
  }
  if (pid < 0) return "fork failed";
  int status = exit_status(pid);
  return status == 0 ? "" : "child exit status " + std::to_string(status);
}

TEST(Fork, ChildUsesNewExecutorsAndInheritedOnesRefuseWork) {
  auto pool = ThreadPoolExecutor::create(2);
  EXPECT_EQ(pool->submit(fib, pool.get(), 10).result(kBound), 55);  // both workers have run
  Future<int> gate;
  Future<void> started;
  auto running = pool->submit([gate, started] {
    started.set_result();
    return gate.result(kBound) + 1;
  });
  started.result(kBound);  // one worker is busy in a task, the other idle, at the fork

  EXPECT_EQ(fork_and_check(pool), "");

  // The parent's pool is untouched by the fork.
  gate.set_result(1);
  EXPECT_EQ(running.result(kBound), 2);
  EXPECT_EQ(pool->submit([] { return 3; }).result(kBound), 3);
  EXPECT_TRUE(test_util::join_and_destroy(std::move(pool)));
}

// The library's global locks (the executor registry's, the log handler's) are held across
// fork(): while another thread creates and destroys executors and swaps log handlers, every
// child can still do both.
TEST(Fork, ChildNeverInheritsTheLibrarysGlobalLocksHeld) {
  if (test_util::kForkWhileAllocatingHangs) {
    GTEST_SKIP() << "this sanitizer's allocator is not fork-safe (see testing/fork.h)";
  }
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    while (!stop.load()) {
      auto pool = ThreadPoolExecutor::create(1);  // registers, then unregisters
      set_log_handler(set_log_handler(nullptr));  // takes the handler lock twice
    }
  });
  constexpr int kForks = 100;
  std::string failure;
  for (int i = 0; i < kForks && failure.empty(); ++i) {
    std::fflush(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
      int code = 0;
      if (!test_util::give_child_threads_fresh_ids()) _exit(4);
      try {
        set_log_handler(set_log_handler(nullptr));
        auto pool = ThreadPoolExecutor::create(1);
        code = pool->submit([] { return 7; }).result(seconds(10)) == 7 ? 0 : 1;
      } catch (...) {
        code = 2;
      }
      _exit(code);
    }
    int status = pid < 0 ? -2 : exit_status(pid, seconds(20));
    if (status != 0) failure = "child " + std::to_string(i) + ": status " + std::to_string(status);
  }
  stop.store(true);
  churn.join();
  EXPECT_EQ(failure, "");
}

}  // namespace
}  // namespace betterconcurrent
