// CPython's ThreadPoolShutdownTest, replayed against betterconcurrent::ThreadPoolExecutor. Each
// case is named after its CPython id (test.test_concurrent_futures.ThreadPoolShutdownTest.
// <method>); manifest.tsv lists them. The cases that run a whole Python program run
// conformance/exit_child (see exit_child.cc) and check its output.
//
// Not replayed: test_submit_after_interpreter_shutdown. CPython has an interpreter-wide
// shutdown flag that makes submit() fail from exit hooks; C++ has no such state (a pool that is
// alive during exit is an ordinary live object whose destructor still joins its threads).
#include <sys/types.h>
#include <sys/wait.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <semaphore>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "conformance/exit_child_runner.h"
#include "conformance/replay.h"
#include "executor/thread_pool_executor.h"
#include "future/exceptions.h"
#include "future/future.h"
#include "future/wait.h"
#include "gtest/gtest.h"

namespace betterconcurrent::replay {
namespace {

int power(int base, int exponent) {
  int result = 1;
  for (int i = 0; i < exponent; ++i) result *= base;
  return result;
}

int absolute(int v) { return v < 0 ? -v : v; }

const std::vector<int> kAbsOfRange = {5, 4, 3, 2, 1, 0, 1, 2, 3, 4};  // abs(range(-5, 5))

// Python's threading.Semaphore(0), acquired by blocking tasks.
using Semaphore = std::counting_semaphore<>;
void acquire_lock(const std::shared_ptr<Semaphore>& sem) {
  if (!sem->try_acquire_for(kLongTimeout)) ADD_FAILURE() << "the semaphore was never released";
}

// A function run on a thread of its own, joined with a bound.
class Background {
 public:
  explicit Background(std::function<void()> fn)
      : done_(std::make_shared<Event>()), thread_([fn = std::move(fn), done = done_] {
          fn();
          done->set();
        }) {}
  ~Background() {
    if (thread_.joinable()) join();
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

  // Joins the thread if the function returns within `timeout`; else adds a test failure and
  // abandons the thread (it must own what it uses), so that the other tests still run.
  bool join(std::chrono::duration<double> timeout = kLongTimeout) {
    if (done_->wait(timeout)) {
      thread_.join();
      return true;
    }
    thread_.detach();
    ADD_FAILURE() << "a blocking call did not return within the bound: a hang";
    return false;
  }

 private:
  std::shared_ptr<Event> done_;
  std::thread thread_;
};

// pool->shutdown(wait, cancel_futures), bounded.
bool shutdown_within(const std::shared_ptr<ThreadPoolExecutor>& pool, bool wait = true,
                     bool cancel_futures = false) {
  return Background([pool, wait, cancel_futures] { pool->shutdown(wait, cancel_futures); }).join();
}

// Drops the last reference to `pool` (Python's `del executor`, or leaving its `with` block),
// bounded.
bool destroy_within(std::shared_ptr<ThreadPoolExecutor>&& pool) {
  return Background([p = std::move(pool)]() mutable { p.reset(); }).join();
}

// Counts tasks that have started to run.
class Counter {
 public:
  void increment() {
    std::lock_guard lock(mu_);
    ++n_;
    cv_.notify_all();
  }
  bool wait_for_at_least(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kLongTimeout, [&] { return n_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_ = 0;
};

// CPython's assert_python_ok() and the two checks on its output.
void expect_apple(const std::string& scenario) {
  std::optional<ChildOutput> child = run_exit_child(scenario);
  if (!child) return;
  EXPECT_TRUE(WIFEXITED(child->status) && WEXITSTATUS(child->status) == 0)
      << "wait status " << child->status;
  EXPECT_EQ(child->err, "");
  EXPECT_EQ(child->out, "apple\n");
}

// Python's re.search(r'^SpecialPool_[0-4]$', name) (std::regex makes GCC 12 warn under
// the sanitizers).
bool is_special_pool_name(const std::string& name) {
  return name.size() == 13 && name.starts_with("SpecialPool_") && name[12] >= '0' &&
         name[12] <= '4';
}

// Python's re.search(r'ThreadPoolExecutor-\d+_[0-4]$', name).
bool is_default_name(const std::string& name) {
  std::size_t n = name.size();
  if (n < 3 || name[n - 1] < '0' || name[n - 1] > '4' || name[n - 2] != '_') return false;
  std::size_t digits_begin = n - 2;
  while (digits_begin > 0 && name[digits_begin - 1] >= '0' && name[digits_begin - 1] <= '9') {
    --digits_begin;
  }
  return digits_begin < n - 2 && name.substr(0, digits_begin).ends_with("ThreadPoolExecutor-");
}

class ThreadPoolShutdownTest : public ThreadPoolMixin {};

TEST_F(ThreadPoolShutdownTest, test_run_after_shutdown) {
  EXPECT_TRUE(shutdown_within(executor));
  try {
    executor->submit(power, 2, 5);
    ADD_FAILURE() << "submit() after shutdown() did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "cannot schedule new futures after shutdown");
  }
}

TEST_F(ThreadPoolShutdownTest, test_interpreter_shutdown) { expect_apple("interpreter_shutdown"); }

TEST_F(ThreadPoolShutdownTest, test_hang_issue12364) {
  // time.sleep(0.1) tasks block on `gate`, released only once shutdown() has stopped intake
  // (a submit fails), so that shutdown() runs while all 50 are queued or running.
  std::vector<Future<void>> fs;
  for (int i = 0; i < 50; ++i) fs.push_back(executor->submit([this] { gate.wait(); }));
  Background closer([pool = executor] { pool->shutdown(); });
  bool stopped = false;
  auto deadline = std::chrono::steady_clock::now() + kLongTimeout;
  while (!stopped && std::chrono::steady_clock::now() < deadline) {
    try {
      executor->submit([] {});
      std::this_thread::yield();
    } catch (const std::runtime_error&) {
      stopped = true;
    }
  }
  EXPECT_TRUE(stopped) << "shutdown() never stopped intake";
  gate.set();
  EXPECT_TRUE(closer.join());
  for (const Future<void>& f : fs) EXPECT_NO_THROW(f.result(kLongTimeout));
}

TEST_F(ThreadPoolShutdownTest, test_cancel_futures) {
  // time.sleep(0.1) tasks block on `gate`: once the 5 workers run 5 of them, the other 45 are
  // queued when shutdown(cancel_futures=True) runs (on another thread, as it waits); `gate`
  // opens once they are cancelled. So the counts are exact: CPython can only bound them.
  ASSERT_LE(worker_count(), 5u) << "test needs few workers";
  auto started = std::make_shared<Counter>();
  std::vector<Future<void>> fs;
  for (int i = 0; i < 50; ++i) {
    fs.push_back(executor->submit([this, started] {
      started->increment();
      gate.wait();
    }));
  }
  EXPECT_TRUE(started->wait_for_at_least(static_cast<int>(worker_count())));
  std::vector<Future<void>> queued;
  for (const Future<void>& f : fs) {
    if (!f.running()) queued.push_back(f);
  }
  EXPECT_EQ(queued.size(), 45u);
  Background closer([pool = executor] { pool->shutdown(/*wait=*/true, /*cancel_futures=*/true); });
  EXPECT_TRUE(betterconcurrent::wait(queued, kLongTimeout).not_done.empty())
      << "queued tasks were not cancelled";
  gate.set();
  EXPECT_TRUE(closer.join());

  std::size_t cancelled = 0;
  std::vector<Future<void>> others;
  for (const Future<void>& f : fs) {
    if (f.cancelled()) {
      ++cancelled;
    } else {
      others.push_back(f);
    }
  }
  EXPECT_GT(cancelled, 20u);
  EXPECT_EQ(cancelled, 45u);
  for (const Future<void>& f : others) {
    EXPECT_TRUE(f.done()) << "state " << static_cast<int>(f.state());
    EXPECT_EQ(f.exception(kLongTimeout), nullptr);
  }
  EXPECT_GT(others.size(), 0u);
  EXPECT_EQ(others.size(), 5u);
}

TEST_F(ThreadPoolShutdownTest, test_hang_gh83386) { expect_apple("hang_gh83386"); }

TEST_F(ThreadPoolShutdownTest, test_threads_terminate) {
  std::size_t threads_before = thread_count();
  auto sem = std::make_shared<Semaphore>(0);
  for (int i = 0; i < 3; ++i) executor->submit(acquire_lock, sem);
  EXPECT_EQ(executor->num_threads(), 3u);
  sem->release(3);
  EXPECT_TRUE(shutdown_within(executor));
  // `for t in executor._threads: t.join()`: the threads are private; they are gone once
  // shutdown() returned.
  EXPECT_EQ(thread_count(), threads_before);
}

TEST_F(ThreadPoolShutdownTest, test_context_manager_shutdown) {
  std::size_t threads_before = thread_count();
  {
    auto e = ThreadPoolExecutor::create(5);
    std::vector<int> results;
    for (int r : e->map(kLongTimeout, absolute, std::views::iota(-5, 5))) results.push_back(r);
    EXPECT_EQ(results, kAbsOfRange);
    EXPECT_TRUE(destroy_within(std::move(e)));  // the end of the `with` block
  }
  EXPECT_EQ(thread_count(), threads_before);  // every worker thread has ended
}

TEST_F(ThreadPoolShutdownTest, test_del_shutdown) {
  std::size_t threads_before = thread_count();
  auto pool = ThreadPoolExecutor::create(5);
  auto res = pool->map(kLongTimeout, absolute, std::views::iota(-5, 5));
  EXPECT_GT(pool->num_threads(), 0u);
  EXPECT_TRUE(destroy_within(std::move(pool)));  // del executor
  EXPECT_EQ(thread_count(), threads_before);     // every worker thread has ended

  // The results were all computed before the executor went away.
  std::vector<int> results;
  for (int r : res) results.push_back(r);
  EXPECT_EQ(results, kAbsOfRange);
}

TEST_F(ThreadPoolShutdownTest, test_shutdown_no_wait) {
  // The worker threads must end on their own after shutdown(wait=False); their handles are
  // private, so the replay watches the process's threads (bounded) instead of joining them.
  std::size_t threads_before = thread_count();
  auto pool = ThreadPoolExecutor::create(5);
  auto res = pool->map(kLongTimeout, absolute, std::views::iota(-5, 5));
  EXPECT_GT(pool->num_threads(), 0u);
  pool->shutdown(/*wait=*/false);
  auto deadline = std::chrono::steady_clock::now() + kLongTimeout;
  while (thread_count() > threads_before && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(thread_count(), threads_before) << "the worker threads did not end";

  // The results were all computed before the executor got shut down.
  std::vector<int> results;
  for (int r : res) results.push_back(r);
  EXPECT_EQ(results, kAbsOfRange);
  EXPECT_TRUE(destroy_within(std::move(pool)));
}

TEST_F(ThreadPoolShutdownTest, test_thread_names_assigned) {
  ThreadPoolExecutor::Options options;
  options.max_workers = 5;
  options.thread_name_prefix = "SpecialPool";
  std::size_t threads_before = thread_count();
  auto pool = ThreadPoolExecutor::create(std::move(options));
  pool->map(absolute, std::views::iota(-5, 5));
  std::vector<std::string> names = pool->thread_names();  // threads = executor._threads
  EXPECT_TRUE(destroy_within(std::move(pool)));           // del executor
  EXPECT_GT(names.size(), 0u);
  for (const std::string& name : names) {
    EXPECT_TRUE(is_special_pool_name(name)) << name;
  }
  EXPECT_EQ(thread_count(), threads_before);
}

TEST_F(ThreadPoolShutdownTest, test_thread_names_default) {
  std::size_t threads_before = thread_count();
  auto pool = ThreadPoolExecutor::create(5);
  pool->map(absolute, std::views::iota(-5, 5));
  std::vector<std::string> names = pool->thread_names();
  EXPECT_TRUE(destroy_within(std::move(pool)));
  EXPECT_GT(names.size(), 0u);
  for (const std::string& name : names) {
    // A sane default, unique to the pool, when no thread_name_prefix was given.
    EXPECT_TRUE(is_default_name(name)) << name;
  }
  EXPECT_EQ(thread_count(), threads_before);
}

TEST_F(ThreadPoolShutdownTest, test_cancel_futures_wait_false) {
  expect_apple("cancel_futures_wait_false");
}

}  // namespace
}  // namespace betterconcurrent::replay
