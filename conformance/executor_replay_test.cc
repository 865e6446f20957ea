// CPython's ThreadPoolExecutorTest, ThreadPoolInitializerTest and
// ThreadPoolFailingInitializerTest, replayed against betterconcurrent::ThreadPoolExecutor. Each
// case is named after its CPython id (test.test_concurrent_futures.<class>.<method>);
// manifest.tsv lists them.
#include <pthread.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <semaphore>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "conformance/replay.h"
#include "executor/thread_pool_executor.h"
#include "future/exceptions.h"
#include "future/future.h"
#include "future/log.h"
#include "gtest/gtest.h"
#include "testing/fork.h"
#include "testing/log_capture.h"

namespace betterconcurrent::replay {
namespace {

using test_util::LogCapture;

// Python's pow() on ints.
std::int64_t power(std::int64_t base, std::int64_t exponent) {
  std::int64_t result = 1;
  for (std::int64_t i = 0; i < exponent; ++i) result *= base;
  return result;
}

std::int64_t mul(std::int64_t x, std::int64_t y) { return x * y; }

// Python's divmod() on ints; C++ division by zero is undefined, so this raises
// std::domain_error where Python raises ZeroDivisionError.
std::pair<int, int> divmod(int a, int b) {
  if (b == 0) throw std::domain_error("integer division or modulo by zero");
  return {a / b, a % b};
}

// CPython's capture(*args): returns what it was called with.
struct Capture {
  template <typename... A>
  std::tuple<A...> operator()(A... args) const {
    return std::tuple<A...>(std::move(args)...);
  }
};

// Whether executor.submit(a...) is a valid call; false is the compile-time TypeError.
template <typename... A>
concept CanSubmit = requires(ThreadPoolExecutor& e, A&&... a) {
  e.submit(std::forward<A>(a)...);
};

struct MyObject {
  explicit MyObject(std::shared_ptr<Event> collected) : collected(std::move(collected)) {}
  ~MyObject() { collected->set(); }  // Python's weakref callback
  void my_method() const {}
  std::shared_ptr<Event> collected;
};

struct DummyObject {};
std::shared_ptr<DummyObject> make_dummy_object(int) { return std::make_shared<DummyObject>(); }

// Python's threading.Semaphore(0), acquired by blocking tasks.
using Semaphore = std::counting_semaphore<>;
void acquire_lock(const std::shared_ptr<Semaphore>& sem) {
  if (!sem->try_acquire_for(kLongTimeout)) ADD_FAILURE() << "the semaphore was never released";
}

// The forked child of test_hang_global_shutdown_lock: uses the library from scratch (a pool,
// a task, its result, the pool's shutdown) and exits without running the parent's exit code.
[[noreturn]] void use_the_library_and_exit() {
  int code = 2;
  if (!test_util::give_child_threads_fresh_ids()) _exit(4);
  try {
    auto workers = ThreadPoolExecutor::create(1);
    workers->submit([] { return std::tuple<>(); }).result(kLongTimeout);
    workers.reset();  // leaving the `with` block: shutdown(wait=True)
    code = 0;
  } catch (...) {
    code = 3;
  }
  _exit(code);
}

// Lets the test park the resubmitting task between two resubmits (outside any allocation).
class Parking {
 public:
  // Called by the task: waits here while parking is requested.
  void checkpoint() {
    std::unique_lock lock(mu_);
    if (!requested_) return;
    parked_ = true;
    cv_.notify_all();
    cv_.wait_for(lock, kLongTimeout, [this] { return !requested_; });
    parked_ = false;
  }
  // Returns once the task is parked (false if it never parks).
  bool park() {
    std::unique_lock lock(mu_);
    requested_ = true;
    return cv_.wait_for(lock, kLongTimeout, [this] { return parked_; });
  }
  void release() {
    std::lock_guard lock(mu_);
    requested_ = false;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool requested_ = false;
  bool parked_ = false;
};

// A task that submits itself again, for ever (CPython's submit(pool)).
struct Resubmit {
  std::shared_ptr<ThreadPoolExecutor> pool;
  std::shared_ptr<Event> ran;
  std::shared_ptr<Parking> parking;
  void operator()() const {
    parking->checkpoint();
    ran->set();
    pool->submit(*this);
  }
};

// ---------------------------------------------------------------------------------------------
// ThreadPoolExecutorTest

class ThreadPoolExecutorTest : public ThreadPoolMixin {};

TEST_F(ThreadPoolExecutorTest, test_submit) {
  Future<std::int64_t> future = executor->submit(power, 2, 8);
  EXPECT_EQ(future.result(kLongTimeout), 256);
}

TEST_F(ThreadPoolExecutorTest, test_submit_keyword) {
  // C++ has no keyword arguments: the intent is that submit forwards every argument after the
  // callable to it, even an executor (`self=`) or a callable (`fn=`), and rejects at compile
  // time a call whose first argument is not a callable for the rest (CPython's TypeError).
  Future<std::int64_t> future = executor->submit(mul, 2, 8);
  EXPECT_EQ(future.result(kLongTimeout), 16);

  auto fn_calls = std::make_shared<int>(0);
  auto fn = [fn_calls] { return ++*fn_calls; };
  auto captured = executor->submit(Capture{}, 1, executor, fn);
  const auto& [arg, self, passed_fn] = captured.result(kLongTimeout);
  EXPECT_EQ(arg, 1);
  EXPECT_EQ(self, executor);
  EXPECT_EQ(*fn_calls, 0) << "submit called an argument instead of passing it";
  EXPECT_EQ(passed_fn(), 1);  // the very callable that was passed

  static_assert(CanSubmit<Capture, int>);
  static_assert(!CanSubmit<int, Capture>, "submit(fn=capture, arg=1): no callable first");
  static_assert(!CanSubmit<int>, "submit(arg=1): no callable");
  static_assert(!CanSubmit<>, "submit(): no callable");
}

TEST_F(ThreadPoolExecutorTest, test_map) {
  // map(pow, range(10), range(10)); the second call's chunksize has no C++ counterpart (Python's
  // thread pool ignores it), so the replay maps once more over other range types instead.
  std::vector<std::int64_t> expected;
  for (int i = 0; i < 10; ++i) expected.push_back(power(i, i));

  std::vector<std::int64_t> got;
  for (std::int64_t r :
       executor->map(kLongTimeout, power, std::views::iota(0, 10), std::views::iota(0, 10))) {
    got.push_back(r);
  }
  EXPECT_EQ(got, expected);

  std::vector<int> bases = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  got.clear();
  for (std::int64_t r : executor->map(kLongTimeout, power, bases, std::views::iota(0, 10))) {
    got.push_back(r);
  }
  EXPECT_EQ(got, expected);
}

TEST_F(ThreadPoolExecutorTest, test_map_exception) {
  auto i = executor->map(kLongTimeout, divmod, std::vector<int>{1, 1, 1, 1},
                         std::vector<int>{2, 3, 0, 5});
  auto it = i.begin();  // Python's __next__() is *it, then ++it
  EXPECT_EQ(*it, (std::pair<int, int>(0, 1)));
  ++it;
  EXPECT_EQ(*it, (std::pair<int, int>(0, 1)));
  ++it;
  EXPECT_THROW(*it, std::domain_error);
}

TEST_F(ThreadPoolExecutorTest, test_map_timeout) {
  // time.sleep(6) becomes a task blocked on `gate` until after the 5 s timeout ran out.
  std::vector<std::monostate> results;
  bool timed_out = false;
  try {
    for (std::monostate r : executor->map(
             std::chrono::seconds(5),
             [this](int t) {
               if (t > 0) gate.wait();
             },
             std::vector<int>{0, 0, 6})) {
      results.push_back(r);
    }
  } catch (const TimeoutError&) {
    timed_out = true;
  }
  gate.set();
  EXPECT_TRUE(timed_out) << "iterating the results did not time out";
  EXPECT_EQ(results.size(), 2u);
}

TEST_F(ThreadPoolExecutorTest, test_shutdown_race_issue12456) {
  executor->map([](int v) { return std::to_string(v); }, std::vector<int>(worker_count() + 1, 2));
  shutdown_bounded(std::move(executor));
}

TEST_F(ThreadPoolExecutorTest, test_no_stale_references) {
  // Python's weakref callback is MyObject's destructor, which sets `collected`.
  auto collected = std::make_shared<Event>();
  auto my_object = std::make_shared<MyObject>(collected);
  executor->submit(&MyObject::my_method, my_object);  // the future is discarded
  my_object.reset();
  EXPECT_TRUE(collected->wait(kLongTimeout))
      << "the executor kept the object of a finished task alive";
}

TEST_F(ThreadPoolExecutorTest, test_max_workers_negative) {
  for (int number : {0, -1}) {
    try {
      ThreadPoolExecutor::create(number);
      ADD_FAILURE() << "create(" << number << ") did not throw";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("max_workers must be greater than 0"), std::string::npos)
          << e.what();
    }
  }
}

TEST_F(ThreadPoolExecutorTest, test_free_reference) {
  // join() first: a worker drops its own reference to a task just after completing it (a race
  // the GIL hides in CPython); then only the result iterator could keep each object alive.
  auto results = executor->map(kLongTimeout, make_dummy_object, std::views::iota(0, 10));
  executor->join(kLongTimeout);
  int seen = 0;
  for (auto it = results.begin(); it != results.end();) {
    std::weak_ptr<DummyObject> wr = *it;
    ++it;
    EXPECT_TRUE(wr.expired()) << "result " << seen << " is still referenced";
    ++seen;
  }
  EXPECT_EQ(seen, 10);
}

TEST_F(ThreadPoolExecutorTest, test_map_submits_without_iteration) {
  // The tasks wait on `gate` until the discarded result range is gone, so that all ten are
  // still running or queued when it goes (CPython leaves that to timing).
  auto finished = std::make_shared<std::vector<int>>();
  auto mu = std::make_shared<std::mutex>();
  executor->map(
      [this, finished, mu](int n) {
        gate.wait();
        std::lock_guard lock(*mu);
        finished->push_back(n);
      },
      std::views::iota(0, 10));
  gate.set();
  shutdown_bounded(std::move(executor));
  std::sort(finished->begin(), finished->end());
  EXPECT_EQ(*finished, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

TEST_F(ThreadPoolExecutorTest, test_default_workers) {
  // os.cpu_count() is sysconf(_SC_NPROCESSORS_ONLN) on Linux.
  auto pool = ThreadPoolExecutor::create();
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  auto expected = static_cast<std::size_t>(std::min<long>(32, (cpus > 0 ? cpus : 1) + 4));
  EXPECT_EQ(pool->max_workers(), expected);
}

TEST_F(ThreadPoolExecutorTest, test_saturation) {
  auto pool = ThreadPoolExecutor::create(4);
  auto sem = std::make_shared<Semaphore>(0);
  std::size_t n = 15 * pool->max_workers();
  for (std::size_t i = 0; i < n; ++i) pool->submit(acquire_lock, sem);
  EXPECT_EQ(pool->num_threads(), pool->max_workers());
  sem->release(static_cast<std::ptrdiff_t>(n));
  shutdown_bounded(std::move(pool));
}

TEST_F(ThreadPoolExecutorTest, test_idle_thread_reuse) {
  auto pool = ThreadPoolExecutor::create();
  EXPECT_EQ(pool->submit(mul, 21, 2).result(kLongTimeout), 42);
  EXPECT_EQ(pool->submit(mul, 6, 7).result(kLongTimeout), 42);
  EXPECT_EQ(pool->submit(mul, 3, 14).result(kLongTimeout), 42);
  EXPECT_EQ(pool->num_threads(), 1u);
  shutdown_bounded(std::move(pool));
}

TEST_F(ThreadPoolExecutorTest, test_hang_global_shutdown_lock) {
  // CPython forks through ProcessPoolExecutor(mp_context=fork); the port has none, so each of
  // the 50 forks is a child that uses the library itself and must exit within the bound. Under
  // ASan the resubmitting task is parked (between two submits) during each fork.
  LogCapture logs;  // the last resubmit fails after shutdown; nobody observes that future
  auto pool = ThreadPoolExecutor::create(1);
  auto ran = std::make_shared<Event>();
  auto parking = std::make_shared<Parking>();
  pool->submit(Resubmit{pool, ran, parking});
  EXPECT_TRUE(ran->wait(kLongTimeout));  // the pool is busy resubmitting from here on
  for (int i = 0; i < 50; ++i) {
    if (test_util::kForkWhileAllocatingHangs) {
      EXPECT_TRUE(parking->park()) << "the resubmitting task never parked";
    }
    pid_t pid = fork();
    if (pid == 0) use_the_library_and_exit();
    parking->release();
    if (pid == -1) {
      ADD_FAILURE() << "fork failed";
      break;
    }
    std::optional<int> status = test_util::wait_child(pid, kLongTimeout);
    if (!status) {
      ADD_FAILURE() << "fork " << i << ": the child hung and was killed";
      break;
    }
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << "fork " << i << ": child wait status " << *status;
  }
  shutdown_bounded(std::move(pool));
}

TEST_F(ThreadPoolExecutorTest, test_executor_map_current_future_cancel) {
  auto stop_event = std::make_shared<Event>();
  auto mu = std::make_shared<std::mutex>();
  auto log = std::make_shared<std::vector<std::string>>();
  auto log_n_wait = [stop_event, mu, log](const std::string& ident) {
    auto append = [&](const std::string& what) {
      std::lock_guard lock(*mu);
      log->push_back(ident + " " + what);
    };
    append("started");
    stop_event->wait();
    append("stopped");
  };

  auto pool = ThreadPoolExecutor::create(1);
  Future<void> fut = pool->submit(log_n_wait, std::string("first"));  // saturates the pool
  {
    auto gen =
        pool->map(std::chrono::seconds(0), log_n_wait, std::vector<std::string>{"second", "third"});
    EXPECT_THROW(*gen.begin(), TimeoutError);
  }  // contextlib.closing: the range is destroyed
  stop_event->set();
  EXPECT_NO_THROW(fut.result(kLongTimeout));
  shutdown_bounded(std::move(pool));

  // 'second' was cancelled by the TimeoutError, 'third' when the range was destroyed.
  std::lock_guard lock(*mu);
  EXPECT_EQ(*log, (std::vector<std::string>{"first started", "first stopped"}));
}

// ---------------------------------------------------------------------------------------------
// ThreadPoolInitializerTest

// Python's INITIALIZER_STATUS, per thread: each task sees what its own worker's initializer set,
// which also shows that the initializer ran in that thread before the task.
thread_local std::string initializer_status = "uninitialized";
void init(const std::string& x) { initializer_status = x; }
std::string get_init_status() { return initializer_status; }

class ThreadPoolInitializerTest : public ThreadPoolMixin {
 protected:
  std::size_t worker_count() const override { return 2; }
  ThreadPoolExecutor::Options options() const override {
    ThreadPoolExecutor::Options opts;
    opts.initializer = [] { init("initialized"); };  // initargs=('initialized',)
    return opts;
  }
};

TEST_F(ThreadPoolInitializerTest, test_initializer) {
  std::vector<Future<std::string>> futures;
  for (std::size_t i = 0; i < worker_count(); ++i) {
    futures.push_back(executor->submit(get_init_status));
  }
  for (const auto& f : futures) EXPECT_EQ(f.result(kLongTimeout), "initialized");
}

// ---------------------------------------------------------------------------------------------
// ThreadPoolFailingInitializerTest

class ThreadPoolFailingInitializerTest : public ThreadPoolMixin {
 protected:
  std::size_t worker_count() const override { return 2; }
  // CPython's init_fail sleeps 0.1 s to let futures be scheduled; here it waits on `gate`,
  // which the test sets once its submit is in. ValueError is std::invalid_argument.
  ThreadPoolExecutor::Options options() const override {
    ThreadPoolExecutor::Options opts;
    opts.initializer = [gate_ptr = &gate] {
      gate_ptr->wait();
      throw std::invalid_argument("error in initializer");
    };
    return opts;
  }
};

// Whether `e` is std::invalid_argument("error in initializer").
bool is_initializer_error(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::invalid_argument& ex) {
    return std::string(ex.what()) == "error in initializer";
  } catch (...) {
    return false;
  }
}

TEST_F(ThreadPoolFailingInitializerTest, test_initializer) {
  LogCapture logs;
  // The initializer waits for `gate`, so the pool cannot be broken before this submit.
  Future<std::string> future = executor->submit(get_init_status);
  gate.set();
  EXPECT_THROW(future.result(kLongTimeout), BrokenExecutor);
  // The pool is broken before its futures fail (as in CPython), so no polling is needed.
  EXPECT_FALSE(executor->broken().empty());
  EXPECT_THROW(executor->submit(get_init_status), BrokenExecutor);

  int logged = 0;
  for (const LogRecord& r : logs.records()) {
    logged += r.level == LogLevel::kCritical && is_initializer_error(r.exception);
  }
  EXPECT_GE(logged, 1) << "no CRITICAL record of the initializer's error";
}

}  // namespace
}  // namespace betterconcurrent::replay
