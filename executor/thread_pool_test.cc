// ThreadPoolExecutor: Python's submit/map/shutdown semantics, thread management, initializer,
// executor() back-references and the (deliberately kept) deadlock footgun.
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <limits>
#include <memory>
#include <mutex>
#include <ranges>
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

// Generous bound for every wait that would hang if the library were wrong.
constexpr seconds kLong{30};

using test_util::LogCapture;

std::string what_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "<non-std>";
  }
}

// ---------------------------------------------------------------------------------------------
// submit

TEST(ThreadPoolSubmit, PassesArgumentsAndReturnsResult) {
  auto pool = ThreadPoolExecutor::create(2);
  auto f = pool->submit([](int a, const std::string& s,
                           std::unique_ptr<int> p) { return s + std::to_string(a * *p); },
                        6, std::string("x="), std::make_unique<int>(7));
  EXPECT_EQ(f.result(kLong), "x=42");
  EXPECT_TRUE(f.done());
  EXPECT_FALSE(f.cancelled());
  EXPECT_EQ(f.state(), FutureState::kFinished);
  EXPECT_EQ(f.exception(kLong), nullptr);
}

TEST(ThreadPoolSubmit, ArgumentsAreCopiedAtSubmitUnlessStdRef) {
  auto pool = ThreadPoolExecutor::create(1);
  Future<void> release;
  std::string copied = "before";
  std::string shared = "before";
  auto f = pool->submit(
      [release](const std::string& c, std::string& s) {
        release.result(kLong);
        std::string seen = c + "/" + s;
        s = "written";
        return seen;
      },
      copied, std::ref(shared));
  copied = "after";
  shared = "after";
  release.set_result();
  EXPECT_EQ(f.result(kLong), "before/after");
  EXPECT_EQ(shared, "written");
}

TEST(ThreadPoolSubmit, VoidTask) {
  auto pool = ThreadPoolExecutor::create(1);
  std::atomic<int> ran{0};
  Future<void> f = pool->submit([&ran] { ran.fetch_add(1); });
  f.result(kLong);
  EXPECT_EQ(ran.load(), 1);
}

TEST(ThreadPoolSubmit, StdExceptionIsStored) {
  auto pool = ThreadPoolExecutor::create(2);
  auto f = pool->submit([]() -> int { throw std::logic_error("boom"); });
  std::exception_ptr e = f.exception(kLong);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(what_of(e), "boom");
  EXPECT_EQ(f.state(), FutureState::kFinished);
  try {
    f.result(kLong);
    ADD_FAILURE() << "result() did not rethrow";
  } catch (const std::logic_error& ex) {
    EXPECT_STREQ(ex.what(), "boom");
  }
}

TEST(ThreadPoolSubmit, NonStdExceptionIsStored) {
  auto pool = ThreadPoolExecutor::create(2);
  auto f = pool->submit([]() -> std::string { throw 42; });
  ASSERT_NE(f.exception(kLong), nullptr);
  try {
    f.result(kLong);
    ADD_FAILURE() << "result() did not rethrow";
  } catch (int v) {
    EXPECT_EQ(v, 42);
  }
  // The pool survives a task that throws a non-std exception.
  EXPECT_EQ(pool->submit([] { return 5; }).result(kLong), 5);
}

TEST(ThreadPoolSubmit, AfterShutdownThrowsRuntimeError) {
  auto pool = ThreadPoolExecutor::create(2);
  EXPECT_EQ(pool->submit([] { return 1; }).result(kLong), 1);
  pool->shutdown();
  try {
    pool->submit([] { return 2; });
    ADD_FAILURE() << "submit after shutdown did not throw";
  } catch (const BrokenExecutor&) {
    ADD_FAILURE() << "submit after shutdown threw BrokenExecutor";
  } catch (const std::runtime_error&) {
  }
  // Idempotent.
  pool->shutdown();
  pool->shutdown(false, true);
}

// ---------------------------------------------------------------------------------------------
// What submit() and map() accept: checked at compile time, through requires-expressions

template <typename... A>
concept CanSubmit = requires(Executor& e, A&&... a) {
  e.submit(std::forward<A>(a)...);
};
template <typename... A>
concept CanMap = requires(Executor& e, A&&... a) {
  e.map(std::forward<A>(a)...);
};

struct NotCallable {};
using IntFn = int (*)(int);
using StringFn = int (*)(const std::string&);
using TwoIntFn = int (*)(int, int);
using MutableRefFn = void (*)(int&);
using UniqueFn = int (*)(std::unique_ptr<int>);
using CoroutineFn = Task<int> (*)(int);
using Ints = std::vector<int>;

static_assert(CanSubmit<IntFn, int>);
static_assert(CanSubmit<IntFn, short>);  // converts
static_assert(CanSubmit<CoroutineFn, int>);
static_assert(Submittable<IntFn, int>);
static_assert(!CanSubmit<>, "submit() without a callable");
static_assert(!CanSubmit<NotCallable, int>, "not callable");
static_assert(!CanSubmit<int, int>, "not callable");
static_assert(!CanSubmit<IntFn>, "argument missing");
static_assert(!CanSubmit<IntFn, int, int>, "one argument too many");
static_assert(!CanSubmit<StringFn, int>, "wrong argument type");
// The arguments are decay-copied and passed as rvalues: a non-const reference needs std::ref.
static_assert(!CanSubmit<MutableRefFn, int&>);
static_assert(CanSubmit<MutableRefFn, std::reference_wrapper<int>>);
// Move-only arguments can be moved in, not copied.
static_assert(CanSubmit<UniqueFn, std::unique_ptr<int>>);
static_assert(!CanSubmit<UniqueFn, std::unique_ptr<int>&>);
// So can a move-only callable.
struct MoveOnlyFn {
  MoveOnlyFn() = default;
  MoveOnlyFn(MoveOnlyFn&&) = default;
  int operator()() { return 1; }
};
static_assert(CanSubmit<MoveOnlyFn>);
static_assert(!CanSubmit<MoveOnlyFn&>);
// A callable or an argument whose destructor may throw: a worker destroys them, and its
// exception would have nowhere to go.
struct ThrowingDestructor {
  ~ThrowingDestructor() noexcept(false) {}
  int operator()() { return 1; }
};
using ThrowingDestructorFn = int (*)(ThrowingDestructor);
static_assert(!CanSubmit<ThrowingDestructor>, "callable whose destructor may throw");
static_assert(!CanSubmit<ThrowingDestructorFn, ThrowingDestructor>,
              "argument whose destructor may throw");

static_assert(CanMap<IntFn, Ints>);
static_assert(CanMap<IntFn, const Ints&>);
static_assert(CanMap<IntFn, decltype(std::views::iota(0, 3))>);
static_assert(CanMap<TwoIntFn, Ints, std::vector<short>>);
static_assert(CanMap<CoroutineFn, Ints>);
static_assert(CanMap<std::chrono::milliseconds, IntFn, Ints>, "with a timeout");
static_assert(!CanMap<IntFn>, "map() without a range");
static_assert(!CanMap<std::chrono::milliseconds, IntFn>, "map() with a timeout, without a range");
static_assert(!CanMap<NotCallable, Ints>, "not callable");
static_assert(!CanMap<IntFn, int>, "not a range");
static_assert(!CanMap<StringFn, Ints>, "wrong element type");
static_assert(!CanMap<std::chrono::milliseconds, StringFn, Ints>, "wrong element type");
static_assert(!CanMap<TwoIntFn, Ints>, "one range too few");
static_assert(!CanMap<IntFn, Ints, Ints>, "one range too many");
static_assert(!CanMap<MutableRefFn, Ints&>, "elements are decay-copied like submit()'s");

static_assert(std::ranges::input_range<MapResults<int>>);
static_assert(std::ranges::input_range<MapResults<void>>);

// ---------------------------------------------------------------------------------------------
// map

TEST(ThreadPoolMap, ResultsInInputOrderEvenWhenFinishingInReverse) {
  constexpr int kN = 4;
  auto pool = ThreadPoolExecutor::create(kN);
  std::vector<Future<void>> finished(kN);
  // Task i waits for task i+1 to finish, so they finish in reverse order.
  auto fn = [&finished](int i) {
    if (i + 1 < kN) finished[i + 1].result(kLong);
    finished[i].set_result();
    return i * 10;
  };
  std::vector<int> inputs{0, 1, 2, 3};
  std::vector<int> got;
  for (int v : pool->map(fn, inputs)) got.push_back(v);
  EXPECT_EQ(got, (std::vector<int>{0, 10, 20, 30}));
}

// Python's test_free_reference (issue 14406): the results do not keep what they yielded.
TEST(ThreadPoolMap, LetsGoOfEachResultOnceIteratedPast) {
  struct Obj {
    int value;
  };
  constexpr int kN = 5;
  auto pool = ThreadPoolExecutor::create(2);
  std::vector<int> xs{0, 1, 2, 3, 4};
  auto results = pool->map([](int i) { return std::make_shared<Obj>(Obj{i}); }, xs);
  // Every task is done and has dropped its own reference to its future: from here on the
  // range holds the only handles.
  pool->join(kLong);
  std::vector<std::weak_ptr<Obj>> weak;
  for (const Future<std::shared_ptr<Obj>>& f : results.futures()) weak.push_back(f.result());
  ASSERT_EQ(weak.size(), static_cast<std::size_t>(kN));

  auto it = results.begin();
  for (int i = 0; i < kN; ++i) {
    ASSERT_FALSE(it == results.end());
    const std::shared_ptr<Obj>& current = *it;  // valid until ++it
    ASSERT_NE(current, nullptr);
    EXPECT_EQ(current->value, i);
    ++it;
    for (int j = 0; j < kN; ++j) {
      EXPECT_EQ(weak[j].expired(), j <= i) << "after " << i + 1 << " increments, result " << j;
      EXPECT_EQ(results.futures()[j].valid(), j > i) << j;
    }
  }
  EXPECT_TRUE(it == results.end());
}

// A handle held elsewhere keeps the result alive after the range lets go of it.
TEST(ThreadPoolMap, ResultOutlivesTheRangeThroughACopiedFuture) {
  auto pool = ThreadPoolExecutor::create(1);
  std::vector<int> xs{7, 8};
  auto results = pool->map([](int i) { return std::make_shared<int>(i); }, xs);
  pool->join(kLong);
  std::vector<Future<std::shared_ptr<int>>> kept = results.futures();
  std::weak_ptr<int> first = kept[0].result();
  auto it = results.begin();
  EXPECT_EQ(**it, 7);
  ++it;
  EXPECT_FALSE(results.futures()[0].valid());
  EXPECT_FALSE(first.expired());
  EXPECT_EQ(*kept[0].result(), 7);
  kept.clear();
  EXPECT_TRUE(first.expired());
  EXPECT_EQ(**it, 8);
}

TEST(ThreadPoolMap, ZipsRangesToTheShortest) {
  auto pool = ThreadPoolExecutor::create(2);
  std::vector<int> nums{1, 2, 3, 4, 5};
  std::vector<std::string> words{"a", "b", "c"};
  auto results =
      pool->map([](int n, const std::string& w) { return w + std::to_string(n); }, nums, words);
  EXPECT_EQ(results.futures().size(), 3u);
  std::vector<std::string> got;
  for (const std::string& s : results) got.push_back(s);
  EXPECT_EQ(got, (std::vector<std::string>{"a1", "b2", "c3"}));

  // An empty range gives no results at all (and submits nothing).
  std::atomic<int> calls{0};
  std::vector<int> none;
  auto empty = pool->map(
      [&calls](int a, int b) {
        calls.fetch_add(1);
        return a + b;
      },
      nums, none);
  EXPECT_TRUE(empty.futures().empty());
  EXPECT_TRUE(empty.begin() == empty.end());
  pool->join(kLong);
  EXPECT_EQ(calls.load(), 0);
}

TEST(ThreadPoolMap, VoidFunctionYieldsMonostate) {
  auto pool = ThreadPoolExecutor::create(2);
  std::atomic<int> sum{0};
  std::vector<int> xs{1, 2, 3};
  int count = 0;
  for (std::monostate m : pool->map([&sum](int x) { sum.fetch_add(x); }, xs)) {
    (void)m;
    ++count;
  }
  EXPECT_EQ(count, 3);
  EXPECT_EQ(sum.load(), 6);
}

TEST(ThreadPoolMap, RethrowsTaskExceptionWhenReached) {
  auto pool = ThreadPoolExecutor::create(2);
  std::vector<int> xs{0, 1, 2, 3, 4};
  auto results = pool->map(
      [](int i) {
        if (i == 2) throw std::runtime_error("two");
        return i;
      },
      xs);
  std::vector<int> got;
  bool threw = false;
  try {
    for (int v : results) got.push_back(v);
  } catch (const std::runtime_error& e) {
    threw = true;
    EXPECT_STREQ(e.what(), "two");
  }
  EXPECT_TRUE(threw);
  EXPECT_EQ(got, (std::vector<int>{0, 1}));
  pool->join(kLong);
}

TEST(ThreadPoolMap, TimeoutThrowsTimeoutErrorAndCancelsTheRest) {
  auto pool = ThreadPoolExecutor::create(1);
  Future<void> release;
  std::vector<int> xs{0, 1, 2};
  std::vector<Future<int>> futures;
  {
    auto results = pool->map(
        milliseconds(50),
        [release](int i) {
          if (i == 0) release.result(kLong);
          return i;
        },
        xs);
    futures = results.futures();
    auto it = results.begin();
    EXPECT_THROW(*it, TimeoutError);
  }
  // The first task is running and cannot be cancelled; the others were queued behind it on the
  // only worker and were cancelled when the results were dropped.
  EXPECT_FALSE(futures[0].cancelled());
  EXPECT_TRUE(futures[1].cancelled());
  EXPECT_TRUE(futures[2].cancelled());
  release.set_result();
  EXPECT_EQ(futures[0].result(kLong), 0);
  EXPECT_THROW(futures[1].result(kLong), CancelledError);
  pool->join(kLong);
}

TEST(ThreadPoolMap, DestroyingResultsCancelsUnreachedFutures) {
  auto pool = ThreadPoolExecutor::create(1);
  Future<void> first_started, second_started, release_first, release_second;
  std::vector<int> xs{0, 1, 2, 3, 4};
  std::vector<Future<int>> futures;
  int first = -1;
  {
    auto results = pool->map(
        [=](int i) {
          if (i == 0) {
            first_started.set_result();
            release_first.result(kLong);
          } else if (i == 1) {
            second_started.set_result();
            release_second.result(kLong);
          }
          return i;
        },
        xs);
    futures = results.futures();
    first_started.result(kLong);
    release_first.set_result();
    auto it = results.begin();
    first = *it;
    ++it;
    second_started.result(kLong);  // task 1 is running: not cancellable
  }                                // drops the results with futures 1..4 unreached
  EXPECT_EQ(first, 0);
  EXPECT_FALSE(futures[0].cancelled());
  EXPECT_FALSE(futures[1].cancelled());
  for (int i = 2; i < 5; ++i) EXPECT_TRUE(futures[i].cancelled()) << i;
  release_second.set_result();
  EXPECT_EQ(futures[1].result(kLong), 1);
  pool->join(kLong);
}

// ---------------------------------------------------------------------------------------------
// wait() and as_completed() over the pool's futures

TEST(ThreadPoolWait, AsCompletedYieldsEachFutureOnce) {
  auto pool = ThreadPoolExecutor::create(3);
  std::vector<Future<int>> fs;
  for (int i = 0; i < 20; ++i) fs.push_back(pool->submit([i] { return i; }));
  std::set<int> seen;
  int sum = 0;
  for (const auto& f : as_completed(fs, kLong)) {
    EXPECT_TRUE(f.done());
    seen.insert(f.result());
    sum += f.result();
  }
  EXPECT_EQ(seen.size(), 20u);
  EXPECT_EQ(sum, 190);
}

TEST(ThreadPoolWait, FirstExceptionReturnsWhileAnotherTaskIsBlocked) {
  auto pool = ThreadPoolExecutor::create(2);
  Future<void> release;
  auto blocked = pool->submit([release] {
    release.result(kLong);
    return 0;
  });
  auto failing = pool->submit([]() -> int { throw std::runtime_error("fail"); });
  std::vector<Future<int>> fs{blocked, failing};
  auto r = wait(fs, kLong, FIRST_EXCEPTION);
  ASSERT_EQ(r.done.size(), 1u);
  EXPECT_TRUE(r.done[0] == failing);
  ASSERT_EQ(r.not_done.size(), 1u);
  EXPECT_TRUE(r.not_done[0] == blocked);
  release.set_result();
  r = wait(fs, kLong, ALL_COMPLETED);
  EXPECT_EQ(r.done.size(), 2u);
  EXPECT_THROW(failing.result(), std::runtime_error);
}

// ---------------------------------------------------------------------------------------------
// Construction, threads, names, initializer

TEST(ThreadPoolOptions, DefaultMaxWorkersIsPythons) {
  auto pool = ThreadPoolExecutor::create();
  std::size_t expected = std::min<std::size_t>(32, std::thread::hardware_concurrency() + 4);
  EXPECT_EQ(pool->max_workers(), expected);
  EXPECT_EQ(pool->num_threads(), 0u);  // no thread before the first submit
  EXPECT_EQ(ThreadPoolExecutor::create(3)->max_workers(), 3u);
}

// Python's test_max_workers_negative: 0 and -1 are rejected with the same message.
TEST(ThreadPoolOptions, ZeroAndNegativeMaxWorkersAreInvalid) {
  auto options_with = [](int max_workers) {
    ThreadPoolExecutor::Options options;
    options.max_workers = max_workers;
    return options;
  };
  auto expect_rejected = [](auto&& make, int value) {
    try {
      make();
      ADD_FAILURE() << "max_workers = " << value << " was accepted";
    } catch (const std::invalid_argument& e) {
      std::string what = e.what();
      EXPECT_EQ(what.rfind("max_workers must be greater than 0", 0), 0u) << what;
      EXPECT_NE(what.find("got " + std::to_string(value)), std::string::npos) << what;
    }
  };
  for (int value : {0, -1, std::numeric_limits<int>::min()}) {
    expect_rejected([value] { return ThreadPoolExecutor::create(value); }, value);
    expect_rejected([&, value] { return ThreadPoolExecutor::create(options_with(value)); }, value);
  }
  EXPECT_EQ(ThreadPoolExecutor::create(1)->max_workers(), 1u);
  EXPECT_EQ(ThreadPoolExecutor::create(options_with(2))->max_workers(), 2u);
}

TEST(ThreadPoolThreads, StartOnDemandAndIdleThreadsAreReused) {
  auto pool = ThreadPoolExecutor::create(4);
  EXPECT_EQ(pool->num_threads(), 0u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(pool->submit([i] { return i; }).result(kLong), i);
    EXPECT_EQ(pool->num_threads(), 1u) << "after task " << i;
  }
}

TEST(ThreadPoolThreads, StartsMoreWhileAllAreBusyUpToMaxWorkers) {
  constexpr int kWorkers = 3;
  auto pool = ThreadPoolExecutor::create(kWorkers);
  std::atomic<int> arrived{0};
  Future<void> all_arrived;
  std::vector<Future<void>> fs;
  // kWorkers tasks that each wait until all of them are running at once.
  for (int i = 0; i < kWorkers; ++i) {
    fs.push_back(pool->submit([&] {
      if (arrived.fetch_add(1) + 1 == kWorkers) all_arrived.set_result();
      all_arrived.result(kLong);
    }));
  }
  for (auto& f : fs) f.result(kLong);
  EXPECT_EQ(pool->num_threads(), static_cast<std::size_t>(kWorkers));
  // More work never exceeds max_workers.
  for (int i = 0; i < 20; ++i) pool->submit([] {});
  pool->join(kLong);
  EXPECT_EQ(pool->num_threads(), static_cast<std::size_t>(kWorkers));
}

std::string current_thread_name() {
  char buf[64] = {};
  pthread_getname_np(pthread_self(), buf, sizeof buf);
  return buf;
}

TEST(ThreadPoolThreads, NamesUsePrefix) {
  ThreadPoolExecutor::Options options;
  options.max_workers = 2;
  options.thread_name_prefix = "io";
  auto pool = ThreadPoolExecutor::create(std::move(options));
  EXPECT_TRUE(pool->thread_names().empty());
  EXPECT_EQ(pool->submit(current_thread_name).result(kLong), "io_0");
  EXPECT_EQ(pool->thread_names(), (std::vector<std::string>{"io_0"}));

  // Block the first worker so that a second one starts.
  Future<void> release;
  Future<void> started;
  auto blocker = pool->submit([=] {
    started.set_result();
    release.result(kLong);
  });
  started.result(kLong);
  EXPECT_EQ(pool->submit(current_thread_name).result(kLong), "io_1");
  release.set_result();
  blocker.result(kLong);
  EXPECT_EQ(pool->thread_names(), (std::vector<std::string>{"io_0", "io_1"}));
}

TEST(ThreadPoolThreads, DefaultNamesCountPoolsWithoutPrefix) {
  // The index n of a name "ThreadPoolExecutor-<n>_0", or -1.
  auto parse = [](const std::string& name) {
    const std::string prefix = "ThreadPoolExecutor-", suffix = "_0";
    if (name.size() <= prefix.size() + suffix.size() || !name.starts_with(prefix) ||
        !name.ends_with(suffix)) {
      return -1;
    }
    std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return -1;
    }
    return std::stoi(digits);
  };
  auto name_index = [&](ThreadPoolExecutor& pool) {
    pool.submit([] {}).result(kLong);
    std::vector<std::string> names = pool.thread_names();
    EXPECT_EQ(names.size(), 1u);
    int index = names.empty() ? -1 : parse(names[0]);
    if (index < 0) ADD_FAILURE() << "unexpected name " << (names.empty() ? "<none>" : names[0]);
    return index;
  };
  auto a = ThreadPoolExecutor::create(1);
  ThreadPoolExecutor::Options prefixed;
  prefixed.max_workers = 1;
  prefixed.thread_name_prefix = "named";
  auto b = ThreadPoolExecutor::create(std::move(prefixed));  // does not use a number
  auto c = ThreadPoolExecutor::create(1);
  int na = name_index(*a);
  int nc = name_index(*c);
  EXPECT_EQ(nc, na + 1);
  b->submit([] {}).result(kLong);
  EXPECT_EQ(b->thread_names(), (std::vector<std::string>{"named_0"}));
}

thread_local bool tls_initialized = false;

TEST(ThreadPoolInitializer, RunsFirstInEveryWorker) {
  constexpr int kWorkers = 3;
  std::mutex mu;
  std::set<std::thread::id> initialized_threads;
  ThreadPoolExecutor::Options options;
  options.max_workers = kWorkers;
  options.initializer = [&] {
    tls_initialized = true;
    std::lock_guard lock(mu);
    initialized_threads.insert(std::this_thread::get_id());
  };
  auto pool = ThreadPoolExecutor::create(std::move(options));

  std::atomic<int> arrived{0};
  Future<void> all_arrived;
  std::vector<Future<std::pair<bool, std::thread::id>>> fs;
  for (int i = 0; i < kWorkers; ++i) {
    fs.push_back(pool->submit([&] {
      if (arrived.fetch_add(1) + 1 == kWorkers) all_arrived.set_result();
      all_arrived.result(kLong);  // forces kWorkers distinct threads
      return std::make_pair(tls_initialized, std::this_thread::get_id());
    }));
  }
  std::set<std::thread::id> task_threads;
  for (auto& f : fs) {
    auto [initialized, id] = f.result(kLong);
    EXPECT_TRUE(initialized);
    task_threads.insert(id);
  }
  EXPECT_EQ(task_threads.size(), static_cast<std::size_t>(kWorkers));
  std::lock_guard lock(mu);
  EXPECT_EQ(initialized_threads, task_threads);
}

TEST(ThreadPoolInitializer, ThrowingInitializerBreaksThePool) {
  LogCapture logs;
  Future<void> release_initializer;
  Future<void> initializer_entered;
  ThreadPoolExecutor::Options options;
  options.max_workers = 1;
  options.initializer = [=] {
    initializer_entered.set_result();
    release_initializer.result(kLong);
    throw std::runtime_error("init failed");
  };
  auto pool = ThreadPoolExecutor::create(std::move(options));
  EXPECT_TRUE(pool->broken().empty());

  std::atomic<int> ran{0};
  std::vector<Future<int>> pending;
  for (int i = 0; i < 3; ++i)
    pending.push_back(pool->submit([&ran, i] {
      ran++;
      return i;
    }));
  initializer_entered.result(kLong);
  release_initializer.set_result();

  for (auto& f : pending) {
    std::exception_ptr e = f.exception(kLong);
    ASSERT_NE(e, nullptr);
    EXPECT_THROW(std::rethrow_exception(e), BrokenThreadPool);
    EXPECT_THROW(f.result(kLong), BrokenExecutor);
  }
  EXPECT_EQ(ran.load(), 0);
  EXPECT_FALSE(pool->broken().empty());
  EXPECT_THROW(pool->submit([] { return 0; }), BrokenThreadPool);

  std::vector<LogRecord> records = logs.records();
  auto it = std::find_if(records.begin(), records.end(), [](const LogRecord& r) {
    return r.message == "Exception in initializer:";
  });
  ASSERT_NE(it, records.end());
  EXPECT_EQ(it->level, LogLevel::kCritical);
  EXPECT_EQ(what_of(it->exception), "init failed");
  pool->join(kLong);  // the failures were all observed above
}

TEST(ThreadPoolInitializer, NonStdExceptionAlsoBreaksThePool) {
  LogCapture logs;
  ThreadPoolExecutor::Options options;
  options.max_workers = 2;
  options.initializer = [] { throw 7; };
  auto pool = ThreadPoolExecutor::create(std::move(options));
  Future<int> f = pool->submit([] { return 1; });
  EXPECT_THROW(f.result(kLong), BrokenThreadPool);
  EXPECT_FALSE(pool->broken().empty());
  EXPECT_THROW(pool->submit([] { return 0; }), BrokenThreadPool);
  bool logged = false;
  for (const LogRecord& r : logs.records()) {
    if (r.message == "Exception in initializer:" && r.level == LogLevel::kCritical) {
      logged = true;
      EXPECT_EQ(what_of(r.exception), "<non-std>");
    }
  }
  EXPECT_TRUE(logged);
}

TEST(ThreadPoolInitializer, StartedCoroutinesStillFinishWhenThePoolBreaks) {
  LogCapture logs;
  std::atomic<int> initializer_calls{0};
  Future<void> second_initializer_entered, release_initializer;
  ThreadPoolExecutor::Options options;
  options.max_workers = 2;
  options.initializer = [&] {
    if (initializer_calls.fetch_add(1) == 0) return;  // the first worker starts fine
    second_initializer_entered.set_result();
    release_initializer.result(kLong);
    throw std::runtime_error("second worker");
  };
  auto pool = ThreadPoolExecutor::create(std::move(options));
  pool->submit([] {}).result(kLong);  // worker 0 exists and is idle

  Future<int> gate;
  Future<void> about_to_await;
  auto co = pool->submit([gate, about_to_await]() -> Task<int> {
    about_to_await.set_result();
    co_await gate.yield_until_done();
    co_return gate.result() + 1;
  });
  about_to_await.result(kLong);
  // Worker 0 is free while the coroutine waits, but holds no idle token (its task has not
  // ended). So this submit starts worker 1 and hands it the task; its initializer blocks.
  auto handed = pool->submit([] { return 1; });
  second_initializer_entered.result(kLong);
  // Every thread exists: these wait in the queue. Worker 0 takes the blocker.
  Future<void> blocker_started, release_blocker;
  auto blocker = pool->submit([=] {
    blocker_started.set_result();
    release_blocker.result(kLong);
  });
  blocker_started.result(kLong);
  auto queued = pool->submit([] { return 0; });  // nobody can take it
  gate.set_result(6);  // the coroutine is queued to resume, behind the busy worker 0
  release_initializer.set_result();

  EXPECT_THROW(handed.result(kLong), BrokenThreadPool);  // its worker never ran a task
  EXPECT_THROW(queued.result(kLong), BrokenThreadPool);
  EXPECT_FALSE(pool->broken().empty());
  release_blocker.set_result();
  EXPECT_EQ(co.result(kLong), 7);  // it had started: it is not discarded
  blocker.result(kLong);
  EXPECT_EQ(initializer_calls.load(), 2);
}

// ---------------------------------------------------------------------------------------------
// shutdown and destruction

TEST(ThreadPoolShutdown, WaitWaitsForRunningAndQueuedTasks) {
  auto pool = ThreadPoolExecutor::create(2);
  Future<void> release;
  std::atomic<int> started{0};
  Future<void> both_started;
  std::vector<Future<int>> fs;
  for (int i = 0; i < 2; ++i) {
    fs.push_back(pool->submit([&, i] {
      if (started.fetch_add(1) + 1 == 2) both_started.set_result();
      release.result(kLong);
      return i;
    }));
  }
  both_started.result(kLong);
  for (int i = 2; i < 6; ++i) fs.push_back(pool->submit([i] { return i; }));

  std::thread releaser([&] { release.set_result(); });
  pool->shutdown(/*wait=*/true);
  releaser.join();
  for (int i = 0; i < 6; ++i) {
    EXPECT_TRUE(fs[i].done()) << i;
    EXPECT_FALSE(fs[i].cancelled()) << i;
    EXPECT_EQ(fs[i].result(seconds(0)), i);
  }
  EXPECT_THROW(pool->submit([] { return 0; }), std::runtime_error);
}

TEST(ThreadPoolShutdown, CancelFuturesCancelsQueuedTasksAndNotifiesWaiters) {
  auto pool = ThreadPoolExecutor::create(1);
  Future<void> started, release;
  auto running = pool->submit([=] {
    started.set_result();
    release.result(kLong);
    return -1;
  });
  started.result(kLong);
  std::atomic<int> ran{0};
  std::vector<Future<int>> queued;
  for (int i = 0; i < 4; ++i)
    queued.push_back(pool->submit([&ran, i] {
      ran++;
      return i;
    }));

  std::atomic<int> callbacks{0};
  for (auto& f : queued) {
    f.add_done_callback([&callbacks](const Future<int>& g) {
      if (g.cancelled()) callbacks++;
    });
  }
  // Waiters blocked before the cancellation must be woken by it.
  std::promise<std::size_t> waited_done;
  std::thread waiter([&] {
    auto r = wait(queued, kLong, ALL_COMPLETED);
    waited_done.set_value(r.done.size());
  });
  std::promise<bool> result_cancelled;
  std::thread result_waiter([&] {
    try {
      queued[0].result(kLong);
      result_cancelled.set_value(false);
    } catch (const CancelledError&) {
      result_cancelled.set_value(true);
    } catch (...) {
      result_cancelled.set_value(false);
    }
  });

  pool->shutdown(/*wait=*/false, /*cancel_futures=*/true);
  for (auto& f : queued) {
    EXPECT_TRUE(f.cancelled());
    EXPECT_EQ(f.state(), FutureState::kCancelledAndNotified);
  }
  EXPECT_EQ(callbacks.load(), 4);
  EXPECT_FALSE(running.cancelled());
  EXPECT_THROW(pool->submit([] { return 0; }), std::runtime_error);

  auto done_count = waited_done.get_future();
  ASSERT_EQ(done_count.wait_for(kLong), std::future_status::ready);
  EXPECT_EQ(done_count.get(), 4u);
  auto cancelled = result_cancelled.get_future();
  ASSERT_EQ(cancelled.wait_for(kLong), std::future_status::ready);
  EXPECT_TRUE(cancelled.get());
  waiter.join();
  result_waiter.join();

  release.set_result();
  EXPECT_EQ(running.result(kLong), -1);
  pool->shutdown(true);
  EXPECT_EQ(ran.load(), 0);
  pool->join(kLong);  // cancelled tasks are not errors
}

// A submit that starts a thread hands it the task, as Python's new thread takes it first: so
// shutdown(cancel_futures) right after such submits spares them, even if the threads have not
// been scheduled yet. The task that found every thread taken waits in the queue and is cancelled.
TEST(ThreadPoolShutdown, CancelFuturesSparesTasksHandedToNewThreads) {
  auto pool = ThreadPoolExecutor::create(2);
  Future<void> release;
  auto blocked = [release](int i) {
    release.result(kLong);
    return i;
  };
  auto first = pool->submit(blocked, 0);
  auto second = pool->submit(blocked, 1);
  auto queued = pool->submit(blocked, 2);
  pool->shutdown(/*wait=*/false, /*cancel_futures=*/true);

  EXPECT_TRUE(queued.cancelled());
  EXPECT_FALSE(first.cancelled());
  EXPECT_FALSE(second.cancelled());
  release.set_result();
  EXPECT_EQ(first.result(kLong), 0);
  EXPECT_EQ(second.result(kLong), 1);
  pool->shutdown(/*wait=*/true);
}

TEST(ThreadPoolShutdown, FromOwnTaskWithWaitThrowsAndStopsIntake) {
  auto pool = ThreadPoolExecutor::create(2);
  ThreadPoolExecutor* p = pool.get();
  auto f = pool->submit([p] {
    try {
      p->shutdown(true);
      return 0;
    } catch (const std::runtime_error&) {
      return 1;
    }
  });
  EXPECT_EQ(f.result(kLong), 1);
  EXPECT_THROW(pool->submit([] {}), std::runtime_error);
  pool->shutdown(true);
}

TEST(ThreadPoolLifetime, DestroyingLastReferenceWaitsForTasks) {
  auto pool = ThreadPoolExecutor::create(1);
  Future<void> started, release;
  std::vector<Future<int>> fs;
  fs.push_back(pool->submit([=] {
    started.set_result();
    release.result(kLong);
    return 0;
  }));
  for (int i = 1; i < 5; ++i) fs.push_back(pool->submit([i] { return i; }));
  started.result(kLong);
  std::weak_ptr<ThreadPoolExecutor> weak = pool;
  std::thread releaser([&] { release.set_result(); });
  pool.reset();  // shutdown(wait = true)
  releaser.join();
  EXPECT_TRUE(weak.expired());
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(fs[i].done()) << i;
    EXPECT_EQ(fs[i].result(seconds(0)), i);
  }
}

TEST(ThreadPoolLifetime, LastReferenceDroppedByOwnTaskDoesNotDeadlock) {
  auto pool = ThreadPoolExecutor::create(2);
  std::weak_ptr<ThreadPoolExecutor> weak = pool;
  Future<void> release;
  Future<bool> destroyed_inside;
  auto f = pool->submit([keep = pool, release, destroyed_inside]() mutable {
    release.result(kLong);
    std::weak_ptr<ThreadPoolExecutor> w = keep;
    keep.reset();  // the last reference: the pool is destroyed on its own worker
    destroyed_inside.set_result(w.expired());
    return 1;
  });
  pool.reset();
  EXPECT_FALSE(weak.expired());  // the task still holds it
  release.set_result();
  EXPECT_TRUE(destroyed_inside.result(kLong));
  EXPECT_EQ(f.result(kLong), 1);
  EXPECT_TRUE(weak.expired());
  EXPECT_EQ(f.executor(), nullptr);
}

TEST(ThreadPoolLifetime, FutureExecutorIsWeak) {
  auto pool = ThreadPoolExecutor::create(2);
  auto f = pool->submit([] { return 1; });
  f.result(kLong);
  EXPECT_EQ(f.executor(), pool);
  EXPECT_EQ(Future<int>().executor(), nullptr);  // hand-made

  auto other = ThreadPoolExecutor::create(1);
  auto g = other->submit([] { return 2; });
  EXPECT_EQ(g.executor(), other);
  EXPECT_NE(g.executor(), pool);

  std::weak_ptr<ThreadPoolExecutor> weak = pool;
  pool.reset();
  EXPECT_TRUE(weak.expired()) << "a future kept its executor alive";
  EXPECT_EQ(f.executor(), nullptr);
  EXPECT_EQ(f.result(), 1);  // the future itself is still fine
  EXPECT_EQ(g.executor(), other);
}

// ---------------------------------------------------------------------------------------------
// The deadlock footgun (kept for compatibility) and its cooperative cure.

TEST(ThreadPoolFootgun, PlainTaskBlockingOnSiblingTimesOut) {
  auto pool = ThreadPoolExecutor::create(1);
  ThreadPoolExecutor* p = pool.get();
  auto outer = pool->submit([p] {
    Future<int> inner = p->submit([] { return 1; });
    bool timed_out = false;
    try {
      inner.result(milliseconds(200));
    } catch (const TimeoutError&) {
      timed_out = true;
    }
    return std::make_pair(timed_out, inner);
  });
  auto [timed_out, inner] = outer.result(kLong);
  EXPECT_TRUE(timed_out) << "the only worker ran the inner task while the outer one blocked";
  EXPECT_EQ(inner.result(kLong), 1);  // runs once the worker is free
  pool->join(kLong);
}

TEST(ThreadPoolFootgun, CoroutineTaskAwaitingSiblingCompletes) {
  auto pool = ThreadPoolExecutor::create(1);
  ThreadPoolExecutor* p = pool.get();
  auto outer = pool->submit([p]() -> Task<int> {
    Future<int> inner = p->submit([] { return 1; });
    co_await inner.yield_until_done();
    co_return inner.result() + 1;
  });
  EXPECT_EQ(outer.result(kLong), 2);
  pool->join(kLong);
}

}  // namespace
}  // namespace betterconcurrent
