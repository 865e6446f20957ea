// Tests of the documented exception-safety guarantees: an operation that throws leaves the
// future (and everything linked to it) as it was (strong), or never throws (nothrow).
//
// Besides types whose constructors throw, this binary links //testing:failing_new, which replaces
// the global operator new so that a chosen allocation of the calling thread fails with
// std::bad_alloc; each operation is run with its first, second, ... allocation failing until it
// succeeds.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "future/detail/executor_registry.h"
#include "future/exceptions.h"
#include "future/future.h"
#include "future/log.h"
#include "future/wait.h"
#include "gtest/gtest.h"
#include "testing/failing_new.h"
#include "testing/log_capture.h"

namespace betterconcurrent {
namespace {

using namespace std::chrono_literals;

constexpr auto kLong = std::chrono::seconds(10);

using test_util::FailAllocation;
using test_util::LogCapture;

// Calls attempt(n) for n = 0, 1, ... until an attempt reports that no failure was injected
// (the operation made n or fewer allocations). Returns how many attempts had a failure.
template <typename Attempt>
long for_each_allocation(Attempt attempt) {
  for (long n = 0; n < 1000; ++n) {
    if (!attempt(n)) return n;
  }
  ADD_FAILURE() << "the operation never stopped allocating";
  return -1;
}

TEST(FailAllocationTest, InjectsExactlyTheChosenAllocation) {
  std::unique_ptr<int> a, b;
  {
    FailAllocation fail(1);
    a = std::make_unique<int>(1);
    EXPECT_FALSE(fail.injected());
    EXPECT_THROW(b = std::make_unique<int>(2), std::bad_alloc);
    EXPECT_TRUE(fail.injected());
  }
  EXPECT_NE(std::make_unique<int>(3), nullptr);
}

// ---------------------------------------------------------------------------------------------
// noexcept where documented.

TEST(NothrowTest, DeclaredNoexcept) {
  Future<int> f;
  AnyFuture a;
  static_assert(noexcept(f.valid()));
  static_assert(noexcept(f.cancel()));
  static_assert(noexcept(f.cancelled()));
  static_assert(noexcept(f.running()));
  static_assert(noexcept(f.done()));
  static_assert(noexcept(f.state()));
  static_assert(noexcept(f.yield_until_done()));
  static_assert(noexcept(a == f));
  static_assert(noexcept(std::hash<AnyFuture>()(a)));
  static_assert(noexcept(describe_exception(nullptr)));
  static_assert(std::is_nothrow_destructible_v<Future<int>>);
  SUCCEED();
}

// ---------------------------------------------------------------------------------------------
// set_result(): what T's constructor throws propagates and nothing changes.

// Constructible from an int; throws for negative ones.
struct Picky {
  explicit Picky(int v) : value(v) {
    if (v < 0) throw std::domain_error("negative");
  }
  int value;
};

// Copying throws; moving does not.
struct CopyThrows {
  explicit CopyThrows(int v) : value(v) {}
  CopyThrows(const CopyThrows&) { throw std::runtime_error("copy"); }
  CopyThrows(CopyThrows&& o) noexcept : value(o.value) {}
  int value;
};

TEST(SetResultStrongTest, ThrowingConstructorLeavesFuturePending) {
  Future<Picky> f;
  int calls = 0;
  f.add_done_callback([&](const Future<Picky>&) { ++calls; });
  EXPECT_THROW(f.set_result(-1), std::domain_error);
  EXPECT_EQ(f.state(), FutureState::kPending);
  EXPECT_FALSE(f.done());
  EXPECT_EQ(calls, 0);
  EXPECT_THROW(f.result(0s), TimeoutError);
  EXPECT_EQ(wait(std::vector<Future<Picky>>{f}, 0s).not_done.size(), 1u);

  // A later set_result succeeds, and the callback runs once.
  f.set_result(5);
  EXPECT_EQ(f.result(0s).value, 5);
  EXPECT_EQ(calls, 1);
}

TEST(SetResultStrongTest, ThrowingConstructorLeavesFutureRunning) {
  Future<Picky> f;
  ASSERT_TRUE(f.set_running_or_notify_cancel());
  EXPECT_THROW(f.set_result(-2), std::domain_error);
  EXPECT_TRUE(f.running());
  EXPECT_FALSE(f.cancel());
  f.set_result(2);
  EXPECT_EQ(f.result(0s).value, 2);
}

TEST(SetResultStrongTest, ThrowingCopyThenMove) {
  Future<CopyThrows> f;
  const CopyThrows original(9);
  EXPECT_THROW(f.set_result(original), std::runtime_error);
  EXPECT_FALSE(f.done());
  f.set_result(CopyThrows(10));
  EXPECT_EQ(f.result(0s).value, 10);
}

TEST(SetResultStrongTest, FailedSetResultDoesNotWakeWaiters) {
  Future<Picky> f;
  std::promise<void> waiting;
  std::future<int> seen = std::async(std::launch::async, [f, &waiting] {
    waiting.set_value();
    return f.result(kLong).value;
  });
  waiting.get_future().wait();
  EXPECT_THROW(f.set_result(-1), std::domain_error);
  f.set_result(3);
  EXPECT_EQ(seen.get(), 3);
}

TEST(SetResultStrongTest, FailedSetResultDoesNotSatisfyWait) {
  Future<Picky> f, g;
  std::vector<Future<Picky>> fs = {f, g};
  EXPECT_THROW(f.set_result(-1), std::domain_error);
  auto r = wait(fs, 0s, FIRST_COMPLETED);
  EXPECT_TRUE(r.done.empty());
  auto waiter = std::async(std::launch::async, [fs] { return wait(fs, kLong, FIRST_COMPLETED); });
  EXPECT_THROW(g.set_result(-3), std::domain_error);
  g.set_result(3);
  r = waiter.get();
  EXPECT_EQ(r.done, (std::vector<Future<Picky>>{g}));
}

TEST(SetResultStrongTest, SetOnDoneFutureKeepsTheFirstOutcome) {
  Future<Picky> f;
  f.set_result(1);
  EXPECT_ANY_THROW(f.set_result(-1));  // InvalidStateError or domain_error: either way, no change
  EXPECT_THROW(f.set_result(2), InvalidStateError);
  EXPECT_EQ(f.result(0s).value, 1);

  Future<int> g;
  auto e = std::make_exception_ptr(std::runtime_error("first"));
  g.set_exception(e);
  EXPECT_THROW(g.set_exception(std::make_exception_ptr(2)), InvalidStateError);
  EXPECT_THROW(g.set_exception(nullptr), std::exception);
  EXPECT_EQ(g.exception(0s), e);
}

TEST(SetExceptionStrongTest, NullLeavesTheStateAlone) {
  Future<int> f;
  ASSERT_TRUE(f.set_running_or_notify_cancel());
  EXPECT_THROW(f.set_exception(nullptr), std::invalid_argument);
  EXPECT_TRUE(f.running());
  f.set_result(1);
  EXPECT_EQ(f.result(0s), 1);
}

TEST(ResultStrongTest, ResultAndExceptionDoNotConsumeTheOutcome) {
  Future<std::unique_ptr<int>> f;
  f.set_result(std::make_unique<int>(4));
  for (int i = 0; i < 3; ++i) {
    ASSERT_NE(f.result(0s), nullptr);
    EXPECT_EQ(*f.result(0s), 4);
  }
  Future<int> g;
  g.set_exception(std::make_exception_ptr(std::overflow_error("o")));
  for (int i = 0; i < 3; ++i) {
    EXPECT_THROW(g.result(0s), std::overflow_error);
    EXPECT_NE(g.exception(0s), nullptr);
  }
}

TEST(ResultStrongTest, TimeoutChangesNothing) {
  Future<int> f;
  int calls = 0;
  f.add_done_callback([&](const Future<int>&) { ++calls; });
  EXPECT_THROW(f.result(0s), TimeoutError);
  EXPECT_THROW(f.exception(1ms), TimeoutError);
  EXPECT_EQ(f.state(), FutureState::kPending);
  EXPECT_EQ(calls, 0);
  EXPECT_TRUE(f.cancel());
  EXPECT_EQ(calls, 1);
}

TEST(SetRunningStrongTest, RejectedCallChangesNothing) {
  LogCapture log;
  Future<int> running;
  ASSERT_TRUE(running.set_running_or_notify_cancel());
  EXPECT_THROW(running.set_running_or_notify_cancel(), std::runtime_error);
  EXPECT_EQ(running.state(), FutureState::kRunning);
  running.set_result(1);  // still completable

  Future<int> notified;
  ASSERT_TRUE(notified.cancel());
  ASSERT_FALSE(notified.set_running_or_notify_cancel());
  EXPECT_THROW(notified.set_running_or_notify_cancel(), std::runtime_error);
  EXPECT_EQ(notified.state(), FutureState::kCancelledAndNotified);
}

// ---------------------------------------------------------------------------------------------
// add_done_callback(): if storing the callable throws, nothing was added.

struct CallbackCopyThrows {
  explicit CallbackCopyThrows(int* calls) : calls(calls) {}
  CallbackCopyThrows(const CallbackCopyThrows&) { throw std::runtime_error("copy"); }
  CallbackCopyThrows(CallbackCopyThrows&& o) noexcept : calls(o.calls) {}
  void operator()(const Future<int>&) const { ++*calls; }
  int* calls;
};

struct CallbackMoveThrows {
  explicit CallbackMoveThrows(int* calls) : calls(calls) {}
  CallbackMoveThrows(const CallbackMoveThrows&) = default;
  CallbackMoveThrows(CallbackMoveThrows&&) { throw std::runtime_error("move"); }
  void operator()(const AnyFuture&) const { ++*calls; }
  int* calls;
};

TEST(AddDoneCallbackStrongTest, ThrowingCopyAddsNothing) {
  Future<int> f;
  std::vector<int> order;
  int throwing_calls = 0;
  f.add_done_callback([&](const Future<int>&) { order.push_back(1); });
  const CallbackCopyThrows bad(&throwing_calls);
  EXPECT_THROW(f.add_done_callback(bad), std::runtime_error);
  f.add_done_callback([&](const Future<int>&) { order.push_back(2); });
  f.set_result(1);
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_EQ(throwing_calls, 0);
}

TEST(AddDoneCallbackStrongTest, ThrowingMoveAddsNothing) {
  Future<int> f;
  AnyFuture any = f;
  std::vector<int> order;
  int throwing_calls = 0;
  any.add_done_callback([&](const AnyFuture&) { order.push_back(1); });
  EXPECT_THROW(any.add_done_callback(CallbackMoveThrows(&throwing_calls)), std::runtime_error);
  any.add_done_callback([&](const AnyFuture&) { order.push_back(2); });
  ASSERT_TRUE(f.cancel());
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_EQ(throwing_calls, 0);
}

TEST(AddDoneCallbackStrongTest, ThrowingCopyOnDoneFutureRunsNothing) {
  Future<int> f;
  f.set_result(1);
  int throwing_calls = 0;
  const CallbackCopyThrows bad(&throwing_calls);
  EXPECT_THROW(f.add_done_callback(bad), std::runtime_error);
  EXPECT_EQ(throwing_calls, 0);
}

TEST(AddDoneCallbackStrongTest, AllocationFailureAddsNothing) {
  const std::string big(200, 'c');  // copying it allocates too
  long failures = for_each_allocation([&](long n) {
    Future<int> f;
    std::vector<std::string> ran;
    f.add_done_callback([&](const Future<int>&) { ran.push_back("before"); });
    bool threw = false;
    bool injected;
    {
      FailAllocation fail(n);
      try {
        f.add_done_callback([&ran, big](const Future<int>&) { ran.push_back(big); });
      } catch (const std::bad_alloc&) {
        threw = true;
      }
      injected = fail.injected();
    }
    EXPECT_EQ(threw, injected) << "allocation " << n;
    f.add_done_callback([&](const Future<int>&) { ran.push_back("after"); });
    f.set_result(1);
    if (threw) {
      EXPECT_EQ(ran, (std::vector<std::string>{"before", "after"})) << "allocation " << n;
    } else {
      EXPECT_EQ(ran, (std::vector<std::string>{"before", big, "after"})) << "allocation " << n;
    }
    return injected;
  });
  EXPECT_GE(failures, 1);
}

TEST(AddDoneCallbackStrongTest, AllocationFailureOnDoneFutureRunsNothing) {
  long failures = for_each_allocation([&](long n) {
    Future<int> f;
    f.set_result(1);
    int calls = 0;
    bool threw = false;
    bool injected;
    {
      FailAllocation fail(n);
      try {
        f.add_done_callback([&calls](const Future<int>&) { ++calls; });
      } catch (const std::bad_alloc&) {
        threw = true;
      }
      injected = fail.injected();
    }
    EXPECT_EQ(calls, threw ? 0 : 1) << "allocation " << n;
    return injected;
  });
  EXPECT_GE(failures, 1);
}

// ---------------------------------------------------------------------------------------------
// Completion never throws because of callbacks, even when logging cannot allocate.

TEST(CompletionNothrowTest, CallbackErrorsWhileAllocationsFail) {
  LogCapture log;
  long failures = for_each_allocation([&](long n) {
    Future<int> f;
    int later = 0;
    f.add_done_callback([](const Future<int>&) { throw std::runtime_error("callback failed"); });
    f.add_done_callback([&](const Future<int>&) { ++later; });
    bool injected;
    {
      FailAllocation fail(n);
      EXPECT_NO_THROW(f.set_result(1)) << "allocation " << n;
      injected = fail.injected();
    }
    EXPECT_EQ(later, 1) << "allocation " << n;
    EXPECT_EQ(f.result(0s), 1);
    return injected;
  });
  EXPECT_GE(failures, 1);  // at least the callback's exception message and the log record
}

TEST(CompletionNothrowTest, CancelWithCallbackErrorsWhileAllocationsFail) {
  LogCapture log;
  long failures = for_each_allocation([&](long n) {
    Future<int> f;
    int later = 0;
    f.add_done_callback([](const Future<int>&) { throw std::runtime_error("callback failed"); });
    f.add_done_callback([&](const Future<int>&) { ++later; });
    bool cancelled;
    bool injected;
    {
      FailAllocation fail(n);
      cancelled = f.cancel();
      injected = fail.injected();
    }
    EXPECT_TRUE(cancelled);
    EXPECT_EQ(later, 1) << "allocation " << n;
    return injected;
  });
  EXPECT_GE(failures, 1);
}

// ---------------------------------------------------------------------------------------------
// Other operations under allocation failure: they throw std::bad_alloc (or their usual error)
// and change nothing.

TEST(AllocationFailureTest, ConstructingAFuture) {
  long failures = for_each_allocation([&](long n) {
    bool injected;
    {
      FailAllocation fail(n);
      try {
        Future<std::string> f;
        AnyFuture a;
      } catch (const std::bad_alloc&) {
      }
      injected = fail.injected();
    }
    return injected;  // LeakSanitizer checks that nothing leaked
  });
  EXPECT_GE(failures, 1);
}

TEST(AllocationFailureTest, SetResultCopyingAString) {
  const std::string value(300, 'v');
  long failures = for_each_allocation([&](long n) {
    Future<std::string> f;
    int calls = 0;
    f.add_done_callback([&](const Future<std::string>&) { ++calls; });
    bool threw = false;
    bool injected;
    {
      FailAllocation fail(n);
      try {
        f.set_result(value);
      } catch (const std::bad_alloc&) {
        threw = true;
      }
      injected = fail.injected();
    }
    if (threw) {
      EXPECT_EQ(f.state(), FutureState::kPending);
      EXPECT_EQ(calls, 0);
      f.set_result(value);  // a later attempt succeeds
    }
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(f.result(0s), value);
    return injected;
  });
  EXPECT_GE(failures, 1);
}

TEST(AllocationFailureTest, SetOutcomeOnDoneFuture) {
  long failures = for_each_allocation([&](long n) {
    Future<int> f;
    f.set_result(7);
    bool injected;
    {
      FailAllocation fail(n);
      try {
        f.set_exception(std::make_exception_ptr(1));
      } catch (const InvalidStateError&) {
      } catch (const std::bad_alloc&) {
      }
      try {
        f.set_result(8);
      } catch (const InvalidStateError&) {
      } catch (const std::bad_alloc&) {
      }
      injected = fail.injected();
    }
    EXPECT_EQ(f.result(0s), 7);
    return injected;
  });
  EXPECT_GE(failures, 1);
}

TEST(AllocationFailureTest, ResultTimeoutAndCancelled) {
  long failures = for_each_allocation([&](long n) {
    Future<int> pending;
    Future<int> cancelled;
    cancelled.cancel();
    bool injected;
    {
      FailAllocation fail(n);
      try {
        pending.result(0s);
      } catch (const TimeoutError&) {
      } catch (const std::bad_alloc&) {
      }
      try {
        cancelled.exception(0s);
      } catch (const CancelledError&) {
      } catch (const std::bad_alloc&) {
      }
      injected = fail.injected();
    }
    EXPECT_EQ(pending.state(), FutureState::kPending);
    EXPECT_EQ(cancelled.state(), FutureState::kCancelled);
    pending.set_result(1);
    EXPECT_EQ(pending.result(0s), 1);
    return injected;
  });
  EXPECT_GE(failures, 1);
}

TEST(AllocationFailureTest, RejectedSetRunning) {
  LogCapture log;
  long failures = for_each_allocation([&](long n) {
    Future<int> f;
    if (!f.set_running_or_notify_cancel()) {
      ADD_FAILURE() << "could not start the future";
      return false;
    }
    bool threw = false;
    bool injected;
    {
      FailAllocation fail(n);
      try {
        f.set_running_or_notify_cancel();
      } catch (const std::runtime_error&) {
        threw = true;
      } catch (const std::bad_alloc&) {
        threw = true;
      }
      injected = fail.injected();
    }
    EXPECT_TRUE(threw);
    EXPECT_EQ(f.state(), FutureState::kRunning);
    return injected;
  });
  EXPECT_GE(failures, 1);
}

// wait(), as_completed() and yield_until_done(fs) under allocation failure. Each runs in a child
// process, so that a crash (heap corruption) fails the test without taking the others down.
#define EXPECT_SURVIVES(statement)                        \
  GTEST_FLAG_SET(death_test_style, "threadsafe");         \
  EXPECT_EXIT(                                            \
      {                                                   \
        statement;                                        \
        std::exit(::testing::Test::HasFailure() ? 1 : 0); \
      },                                                  \
      ::testing::ExitedWithCode(0), "")

void WaitBody() {
  for (ReturnWhen mode : {ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION}) {
    long failures = for_each_allocation([&](long n) {
      Future<int> done, pending, cancelled, running;
      done.set_result(1);
      cancelled.cancel();
      running.set_running_or_notify_cancel();
      std::vector<AnyFuture> fs = {pending, done, pending, cancelled, running};
      bool threw = false;
      bool injected;
      DoneAndNotDoneFutures<AnyFuture> r;
      {
        FailAllocation fail(n);
        try {
          r = wait(fs, 0s, mode);
        } catch (const std::bad_alloc&) {
          threw = true;
        }
        injected = fail.injected();
      }
      EXPECT_EQ(threw, injected) << "allocation " << n;
      if (!threw) {
        EXPECT_EQ(r.done, (std::vector<AnyFuture>{done}));
        EXPECT_EQ(r.not_done, (std::vector<AnyFuture>{pending, cancelled, running}));
      }
      EXPECT_EQ(pending.state(), FutureState::kPending);
      EXPECT_EQ(cancelled.state(), FutureState::kCancelled);
      EXPECT_EQ(running.state(), FutureState::kRunning);
      // Completing them now must not reach a listener of the failed wait (AddressSanitizer).
      pending.set_result(2);
      cancelled.set_running_or_notify_cancel();
      Future<int>(running).set_result(3);
      return injected;
    });
    EXPECT_GE(failures, 1);
  }
}

void AsCompletedBody() {
  long failures = for_each_allocation([&](long n) {
    Future<int> done, pending;
    done.set_result(1);
    std::vector<Future<int>> fs = {done, pending, done};
    std::vector<Future<int>> got;
    bool timed_out = false;
    bool injected;
    {
      FailAllocation fail(n);
      try {
        for (const auto& f : as_completed(fs, 0s)) got.push_back(f);
      } catch (const TimeoutError&) {
        timed_out = true;
      } catch (const std::bad_alloc&) {
      }
      injected = fail.injected();
    }
    if (!injected) {
      EXPECT_TRUE(timed_out);
      EXPECT_EQ(got, (std::vector<Future<int>>{done}));
    }
    EXPECT_EQ(pending.state(), FutureState::kPending);
    pending.set_result(2);  // must not reach a destroyed listener
    return injected;
  });
  EXPECT_GE(failures, 1);
}

void YieldUntilDoneBody() {
  long failures = for_each_allocation([&](long n) {
    Future<int> done, pending;
    done.set_result(1);
    std::vector<Future<int>> fs = {done, pending};
    bool injected;
    std::size_t done_count = 0;
    bool threw = false;
    {
      FailAllocation fail(n);
      try {
        auto awaitable = yield_until_done(fs, 0s, ALL_COMPLETED);
        if (awaitable.await_ready()) done_count = awaitable.await_resume().done.size();
      } catch (const std::bad_alloc&) {
        threw = true;
      }
      injected = fail.injected();
    }
    EXPECT_EQ(threw, injected);
    if (!threw) {
      EXPECT_EQ(done_count, 1u);
    }
    pending.set_result(2);
    return injected;
  });
  EXPECT_GE(failures, 1);
}

// The executor registry behind Future::executor(): registering "may throw std::bad_alloc". A
// failed registration must leave the registry usable. The registry only allocates when it grows,
// so this registers more and more executors, each time first with the next allocation failing.
void RegistryBody() {
  auto owner = std::make_shared<int>(0);
  // Executor is incomplete here; a stand-in pointer is enough since it is never dereferenced.
  std::shared_ptr<Executor> executor(owner, reinterpret_cast<Executor*>(owner.get()));
  std::vector<std::uint64_t> kept;
  int failures = 0;
  for (int i = 0; i < 100; ++i) {
    std::uint64_t id = 0;
    bool injected;
    {
      FailAllocation fail(0);
      try {
        id = detail::register_executor(executor);
      } catch (const std::bad_alloc&) {
      }
      injected = fail.injected();
    }
    if (injected) {
      ++failures;
      EXPECT_EQ(id, 0u);
    } else {
      kept.push_back(id);
    }
    kept.push_back(detail::register_executor(executor));
    for (std::uint64_t k : kept) EXPECT_EQ(detail::find_executor(k), executor) << k;
  }
  for (std::uint64_t k : kept) {
    detail::unregister_executor(k);
    EXPECT_EQ(detail::find_executor(k), nullptr);
  }
  EXPECT_GE(failures, 2);  // the registry itself, then at least one growth
}

TEST(WaitAllocationFailureTest, WaitChangesNothingAndLeavesNoListener) {
  EXPECT_SURVIVES(WaitBody());
}

TEST(WaitAllocationFailureTest, AsCompletedChangesNothingAndLeavesNoListener) {
  EXPECT_SURVIVES(AsCompletedBody());
}

TEST(WaitAllocationFailureTest, YieldUntilDoneOnManyFutures) {
  EXPECT_SURVIVES(YieldUntilDoneBody());
}

TEST(WaitAllocationFailureTest, ExecutorRegistrySurvivesFailedRegistration) {
  EXPECT_SURVIVES(RegistryBody());
}

}  // namespace
}  // namespace betterconcurrent
