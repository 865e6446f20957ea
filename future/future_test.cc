// Tests of a single Future: the state machine, outcomes, timeouts, handles, the exception
// hierarchy and the logging hook. Callbacks are in callback_test.cc, wait()/as_completed() in
// wait_test.cc, exception-safety guarantees in exception_safety_test.cc.
#include "future/future.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <latch>
#include <limits>
#include <memory>
#include <mutex>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <typeinfo>
#include <unordered_set>
#include <utility>
#include <vector>

#include "future/detail/executor_registry.h"
#include "future/exceptions.h"
#include "future/log.h"
#include "gtest/gtest.h"
#include "testing/log_capture.h"

// Outside namespace betterconcurrent: an unqualified to_string(f) here compiles only if
// argument-dependent lookup finds betterconcurrent::to_string.
namespace repr_test {
std::string found_by_adl(const betterconcurrent::Future<double>& f) { return to_string(f); }
// A thrown type that is not a std::exception, with a name the demangler must reproduce.
struct NotAnException {
  int code;
};
}  // namespace repr_test

namespace betterconcurrent {
namespace {

using namespace std::chrono_literals;

// Long enough to mean "forever" for a correct library; a bug then fails instead of hanging.
constexpr auto kLong = std::chrono::seconds(10);

using test_util::LogCapture;

// Runs `fn` on a new thread once `go` is signalled.
std::jthread run_after(std::shared_future<void> go, std::function<void()> fn) {
  return std::jthread([go = std::move(go), fn = std::move(fn)] {
    go.wait();
    fn();
  });
}

template <typename E>
bool holds(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const E&) {
    return true;
  } catch (...) {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// States and transitions.

TEST(FutureStateTest, NewFutureIsPending) {
  Future<int> f;
  EXPECT_TRUE(f.valid());
  EXPECT_EQ(f.state(), FutureState::kPending);
  EXPECT_FALSE(f.cancelled());
  EXPECT_FALSE(f.running());
  EXPECT_FALSE(f.done());

  AnyFuture a;
  EXPECT_EQ(a.state(), FutureState::kPending);
  EXPECT_FALSE(a.done());
}

TEST(FutureStateTest, SetRunningMovesPendingToRunning) {
  Future<int> f;
  EXPECT_TRUE(f.set_running_or_notify_cancel());
  EXPECT_EQ(f.state(), FutureState::kRunning);
  EXPECT_TRUE(f.running());
  EXPECT_FALSE(f.done());
  EXPECT_FALSE(f.cancelled());
}

TEST(FutureStateTest, RunningFutureFinishesWithResult) {
  Future<int> f;
  ASSERT_TRUE(f.set_running_or_notify_cancel());
  f.set_result(5);
  EXPECT_EQ(f.state(), FutureState::kFinished);
  EXPECT_FALSE(f.running());
  EXPECT_TRUE(f.done());
  EXPECT_FALSE(f.cancelled());
  EXPECT_EQ(f.result(0s), 5);
  EXPECT_EQ(f.exception(0s), nullptr);
}

TEST(FutureStateTest, RunningFutureFinishesWithException) {
  Future<int> f;
  ASSERT_TRUE(f.set_running_or_notify_cancel());
  auto e = std::make_exception_ptr(std::out_of_range("nope"));
  f.set_exception(e);
  EXPECT_EQ(f.state(), FutureState::kFinished);
  EXPECT_TRUE(f.done());
  EXPECT_EQ(f.exception(0s), e);
  EXPECT_THROW(f.result(0s), std::out_of_range);
}

TEST(FutureStateTest, PendingFutureCanFinishWithoutRunning) {
  Future<int> f;
  f.set_result(1);
  EXPECT_EQ(f.state(), FutureState::kFinished);

  Future<int> g;
  g.set_exception(std::make_exception_ptr(std::runtime_error("x")));
  EXPECT_EQ(g.state(), FutureState::kFinished);
}

TEST(FutureStateTest, CancelPendingSucceeds) {
  Future<int> f;
  EXPECT_TRUE(f.cancel());
  EXPECT_EQ(f.state(), FutureState::kCancelled);
  EXPECT_TRUE(f.cancelled());
  EXPECT_TRUE(f.done());
  EXPECT_FALSE(f.running());
}

TEST(FutureStateTest, CancelIsIdempotentOnCancelledFutures) {
  Future<int> f;
  ASSERT_TRUE(f.cancel());
  EXPECT_TRUE(f.cancel());
  EXPECT_EQ(f.state(), FutureState::kCancelled);

  EXPECT_FALSE(f.set_running_or_notify_cancel());
  EXPECT_EQ(f.state(), FutureState::kCancelledAndNotified);
  EXPECT_TRUE(f.cancel());
  EXPECT_EQ(f.state(), FutureState::kCancelledAndNotified);
  EXPECT_TRUE(f.cancelled());
  EXPECT_TRUE(f.done());
}

TEST(FutureStateTest, CancelRunningFails) {
  Future<int> f;
  ASSERT_TRUE(f.set_running_or_notify_cancel());
  EXPECT_FALSE(f.cancel());
  EXPECT_EQ(f.state(), FutureState::kRunning);
  EXPECT_FALSE(f.cancelled());
  // It can still finish normally.
  f.set_result(3);
  EXPECT_EQ(f.result(0s), 3);
}

TEST(FutureStateTest, CancelFinishedFails) {
  Future<int> f;
  f.set_result(3);
  EXPECT_FALSE(f.cancel());
  EXPECT_EQ(f.state(), FutureState::kFinished);
  EXPECT_FALSE(f.cancelled());
  EXPECT_EQ(f.result(0s), 3);

  Future<int> g;
  g.set_exception(std::make_exception_ptr(7));
  EXPECT_FALSE(g.cancel());
  EXPECT_EQ(g.state(), FutureState::kFinished);
}

TEST(FutureStateTest, SetRunningOnCancelledNotifiesAndReturnsFalse) {
  Future<int> f;
  ASSERT_TRUE(f.cancel());
  EXPECT_FALSE(f.set_running_or_notify_cancel());
  EXPECT_EQ(f.state(), FutureState::kCancelledAndNotified);
  EXPECT_TRUE(f.cancelled());
  EXPECT_FALSE(f.running());
}

// set_running_or_notify_cancel() may be called once, on a PENDING or CANCELLED future.
void ExpectSetRunningRejected(const AnyFuture& f) {
  const FutureState before = f.state();
  LogCapture log;
  EXPECT_THROW(f.set_running_or_notify_cancel(), std::runtime_error);
  EXPECT_EQ(f.state(), before);
  auto records = log.records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].level, LogLevel::kCritical);
  EXPECT_FALSE(records[0].message.empty());
}

TEST(FutureStateTest, SetRunningOnRunningThrowsAndLogsCritical) {
  Future<int> f;
  ASSERT_TRUE(f.set_running_or_notify_cancel());
  ExpectSetRunningRejected(f);
  EXPECT_TRUE(f.running());
}

TEST(FutureStateTest, SetRunningOnFinishedThrowsAndLogsCritical) {
  Future<int> f;
  f.set_result(1);
  ExpectSetRunningRejected(f);
  EXPECT_EQ(f.result(0s), 1);

  Future<int> g;
  g.set_exception(std::make_exception_ptr(std::logic_error("e")));
  ExpectSetRunningRejected(g);
}

TEST(FutureStateTest, SetRunningTwiceOnCancelledThrows) {
  // Python raises RuntimeError for CANCELLED_AND_NOTIFIED too: the call is allowed once.
  Future<int> f;
  ASSERT_TRUE(f.cancel());
  ASSERT_FALSE(f.set_running_or_notify_cancel());
  ExpectSetRunningRejected(f);
}

TEST(FutureStateTest, SetRunningThrowsStdRuntimeErrorNotAFuturesError) {
  Future<int> f;
  f.set_result(1);
  LogCapture log;  // keep stderr quiet
  try {
    f.set_running_or_notify_cancel();
    FAIL() << "expected std::runtime_error";
  } catch (const Error&) {
    FAIL() << "Python raises a plain RuntimeError here, not a concurrent.futures.Error";
  } catch (const std::runtime_error&) {
  }
}

// ---------------------------------------------------------------------------------------------
// Setting an outcome twice.

TEST(FutureSetTest, SetResultOnFinishedThrowsInvalidState) {
  Future<int> f;
  f.set_result(1);
  EXPECT_THROW(f.set_result(2), InvalidStateError);
  EXPECT_THROW(f.set_exception(std::make_exception_ptr(std::runtime_error("x"))),
               InvalidStateError);
  EXPECT_EQ(f.state(), FutureState::kFinished);
  EXPECT_EQ(f.result(0s), 1);
  EXPECT_EQ(f.exception(0s), nullptr);
}

TEST(FutureSetTest, SetOnFinishedWithExceptionThrowsInvalidState) {
  Future<int> f;
  auto e = std::make_exception_ptr(std::runtime_error("first"));
  f.set_exception(e);
  EXPECT_THROW(f.set_result(2), InvalidStateError);
  EXPECT_THROW(f.set_exception(std::make_exception_ptr(std::runtime_error("second"))),
               InvalidStateError);
  EXPECT_EQ(f.exception(0s), e);
}

TEST(FutureSetTest, SetOnCancelledThrowsInvalidState) {
  Future<int> f;
  ASSERT_TRUE(f.cancel());
  EXPECT_THROW(f.set_result(2), InvalidStateError);
  EXPECT_THROW(f.set_exception(std::make_exception_ptr(1)), InvalidStateError);
  EXPECT_EQ(f.state(), FutureState::kCancelled);

  ASSERT_FALSE(f.set_running_or_notify_cancel());
  EXPECT_THROW(f.set_result(2), InvalidStateError);
  EXPECT_THROW(f.set_exception(std::make_exception_ptr(1)), InvalidStateError);
  EXPECT_EQ(f.state(), FutureState::kCancelledAndNotified);
  EXPECT_THROW(f.result(0s), CancelledError);
}

TEST(FutureSetTest, SetNullExceptionThrowsInvalidArgument) {
  Future<int> f;
  EXPECT_THROW(f.set_exception(nullptr), std::invalid_argument);
  EXPECT_EQ(f.state(), FutureState::kPending);
  // The future is still usable.
  f.set_result(4);
  EXPECT_EQ(f.result(0s), 4);

  AnyFuture a;
  EXPECT_THROW(a.set_exception(std::exception_ptr()), std::invalid_argument);
  EXPECT_FALSE(a.done());
}

TEST(FutureSetTest, ConcurrentSettersExactlyOneWins) {
  for (int round = 0; round < 20; ++round) {
    Future<int> f;
    constexpr int kThreads = 4;
    std::atomic<int> wins{0};
    std::atomic<int> rejected{0};
    std::promise<void> go;
    std::shared_future<void> go_f = go.get_future().share();
    std::vector<std::jthread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.push_back(run_after(go_f, [&, i] {
        try {
          f.set_result(i);
          wins.fetch_add(1);
        } catch (const InvalidStateError&) {
          rejected.fetch_add(1);
        }
      }));
    }
    go.set_value();
    int value = f.result(kLong);
    threads.clear();  // joins
    EXPECT_EQ(wins.load(), 1);
    EXPECT_EQ(rejected.load(), kThreads - 1);
    EXPECT_GE(value, 0);
    EXPECT_LT(value, kThreads);
    EXPECT_EQ(f.result(0s), value);
  }
}

// ---------------------------------------------------------------------------------------------
// Outcomes.

TEST(FutureOutcomeTest, ResultRethrowsTheStoredExceptionObject) {
  Future<int> f;
  auto e = std::make_exception_ptr(std::domain_error("bad domain"));
  f.set_exception(e);
  for (int i = 0; i < 2; ++i) {  // every call rethrows, not only the first
    try {
      f.result(0s);
      FAIL() << "result() did not throw";
    } catch (const std::domain_error& caught) {
      EXPECT_STREQ(caught.what(), "bad domain");
      EXPECT_EQ(std::current_exception(), e);
    }
  }
  EXPECT_EQ(f.exception(0s), e);
  EXPECT_EQ(f.exception(), e);
}

TEST(FutureOutcomeTest, NonStdExceptionTypesAreStoredAndRethrown) {
  Future<std::string> f;
  f.set_exception(std::make_exception_ptr(42));
  try {
    f.result(0s);
    FAIL() << "result() did not throw";
  } catch (int v) {
    EXPECT_EQ(v, 42);
  }
  EXPECT_TRUE(holds<int>(f.exception(0s)));
}

TEST(FutureOutcomeTest, ExceptionIsNullForAResult) {
  Future<std::string> f;
  f.set_result("hello");
  EXPECT_EQ(f.exception(), nullptr);
  EXPECT_EQ(f.result(), "hello");
}

TEST(FutureOutcomeTest, CancelledFutureThrowsCancelledError) {
  Future<int> f;
  ASSERT_TRUE(f.cancel());
  EXPECT_THROW(f.result(), CancelledError);
  EXPECT_THROW(f.exception(), CancelledError);
  // Cancellation wins over the timeout, even a zero one.
  EXPECT_THROW(f.result(0s), CancelledError);
  EXPECT_THROW(f.exception(0s), CancelledError);

  ASSERT_FALSE(f.set_running_or_notify_cancel());
  EXPECT_THROW(f.result(), CancelledError);
  EXPECT_THROW(f.exception(0s), CancelledError);
}

TEST(FutureOutcomeTest, CancelledErrorIsAFuturesError) {
  Future<void> f;
  ASSERT_TRUE(f.cancel());
  try {
    f.result(0s);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(dynamic_cast<const CancelledError*>(&e), nullptr);
  }
}

TEST(FutureOutcomeTest, ExceptionMarksItObserved) {
  Future<int> f;
  f.set_exception(std::make_exception_ptr(std::runtime_error("seen")));
  (void)f.exception(0s);
  EXPECT_FALSE(f.state_base().claim_unobserved());
}

TEST(FutureOutcomeTest, ResultMarksExceptionObserved) {
  Future<int> f;
  f.set_exception(std::make_exception_ptr(std::runtime_error("seen")));
  EXPECT_THROW(f.result(0s), std::runtime_error);
  EXPECT_FALSE(f.state_base().claim_unobserved());
}

TEST(FutureOutcomeTest, UnlookedAtExceptionIsUnobserved) {
  Future<int> f;
  f.set_exception(std::make_exception_ptr(std::runtime_error("unseen")));
  EXPECT_TRUE(f.state_base().claim_unobserved());
  EXPECT_FALSE(f.state_base().claim_unobserved());  // claimed once
}

// ---------------------------------------------------------------------------------------------
// Timeouts.

TEST(FutureTimeoutTest, ZeroTimeoutOnPendingThrowsTimeoutError) {
  Future<int> f;
  EXPECT_THROW(f.result(0s), TimeoutError);
  EXPECT_THROW(f.exception(0s), TimeoutError);
  EXPECT_EQ(f.state(), FutureState::kPending);
}

TEST(FutureTimeoutTest, ZeroTimeoutOnRunningThrowsTimeoutError) {
  Future<int> f;
  ASSERT_TRUE(f.set_running_or_notify_cancel());
  EXPECT_THROW(f.result(0s), TimeoutError);
  EXPECT_THROW(f.exception(0s), TimeoutError);
  EXPECT_TRUE(f.running());
}

TEST(FutureTimeoutTest, NegativeTimeoutActsLikeZero) {
  Future<int> f;
  EXPECT_THROW(f.result(-1s), TimeoutError);
  EXPECT_THROW(f.exception(std::chrono::duration<double>(-0.5)), TimeoutError);
  f.set_result(2);
  EXPECT_EQ(f.result(-1s), 2);
}

TEST(FutureTimeoutTest, ShortTimeoutExpiresAndFutureStaysUsable) {
  Future<int> f;
  EXPECT_THROW(f.result(1ms), TimeoutError);
  EXPECT_THROW(f.exception(std::chrono::microseconds(500)), TimeoutError);
  EXPECT_FALSE(f.done());
  f.set_result(8);
  EXPECT_EQ(f.result(1ms), 8);
}

TEST(FutureTimeoutTest, ZeroTimeoutOnDoneFutureReturns) {
  Future<int> f;
  f.set_result(9);
  EXPECT_EQ(f.result(0s), 9);
  EXPECT_EQ(f.exception(0s), nullptr);
}

TEST(FutureTimeoutTest, HugeTimeoutsDoNotOverflow) {
  // A timeout too large for the clock must mean "wait", not "already expired".
  const std::vector<std::chrono::duration<double>> huge = {
      std::chrono::duration<double>::max(),
      std::chrono::duration<double>(std::numeric_limits<double>::infinity()),
      std::chrono::hours(24 * 365 * 1000),
  };
  for (const auto& timeout : huge) {
    Future<int> f;
    std::promise<void> waiting;
    std::jthread setter([f, w = waiting.get_future()]() mutable {
      w.wait();
      f.set_result(11);
    });
    waiting.set_value();
    EXPECT_EQ(f.result(timeout), 11) << timeout.count();
  }
}

TEST(FutureTimeoutTest, TimeoutErrorIsNotAFuturesError) {
  Future<int> f;
  try {
    f.result(0s);
    FAIL();
  } catch (const Error&) {
    FAIL() << "TimeoutError must not derive from Error";
  } catch (const TimeoutError&) {
  }
}

// ---------------------------------------------------------------------------------------------
// Blocking and waking.

TEST(FutureWakeTest, ResultSetFromAnotherThreadWakesResult) {
  Future<int> f;
  std::promise<void> about_to_wait;
  std::jthread setter([f, w = about_to_wait.get_future()]() mutable {
    w.wait();
    f.set_result(21);
  });
  about_to_wait.set_value();
  EXPECT_EQ(f.result(kLong), 21);
}

TEST(FutureWakeTest, ExceptionSetFromAnotherThreadWakesException) {
  Future<void> f;
  auto e = std::make_exception_ptr(std::runtime_error("late"));
  std::promise<void> about_to_wait;
  std::jthread setter([f, e, w = about_to_wait.get_future()]() mutable {
    w.wait();
    f.set_exception(e);
  });
  about_to_wait.set_value();
  EXPECT_EQ(f.exception(kLong), e);
}

TEST(FutureWakeTest, CancelFromAnotherThreadWakesResultWithCancelledError) {
  Future<int> f;
  std::promise<void> about_to_wait;
  std::promise<bool> cancel_result;
  std::jthread canceller([f, &cancel_result, w = about_to_wait.get_future()]() mutable {
    w.wait();
    cancel_result.set_value(f.cancel());
  });
  about_to_wait.set_value();
  EXPECT_THROW(f.result(kLong), CancelledError);
  EXPECT_TRUE(cancel_result.get_future().get());
}

TEST(FutureWakeTest, UntimedResultWakes) {
  Future<std::string> f;
  std::promise<void> about_to_wait;
  std::jthread setter([f, w = about_to_wait.get_future()]() mutable {
    w.wait();
    f.set_result(std::string(100, 'x'));
  });
  about_to_wait.set_value();
  EXPECT_EQ(f.result(), std::string(100, 'x'));
}

TEST(FutureWakeTest, OneCompletionWakesEveryWaiter) {
  Future<int> f;
  constexpr int kWaiters = 8;
  std::vector<std::promise<int>> got(kWaiters);
  std::vector<std::jthread> waiters;
  for (int i = 0; i < kWaiters; ++i) {
    waiters.emplace_back([f, &p = got[i]] {
      try {
        p.set_value(f.result(kLong));
      } catch (...) {
        p.set_exception(std::current_exception());
      }
    });
  }
  f.set_result(77);
  for (auto& p : got) EXPECT_EQ(p.get_future().get(), 77);
}

TEST(FutureWakeTest, WaiterThatTimedOutDoesNotDisturbLaterCompletion) {
  // A timed-out waiter unlinks itself; completing the future later must not touch it.
  Future<int> f;
  for (int i = 0; i < 20; ++i) EXPECT_THROW(f.result(std::chrono::microseconds(50)), TimeoutError);
  f.set_result(1);
  EXPECT_EQ(f.result(0s), 1);
}

// ---------------------------------------------------------------------------------------------
// Result types.

TEST(FutureTypesTest, VoidFuture) {
  Future<void> f;
  static_assert(std::is_void_v<decltype(f.result())>);
  EXPECT_THROW(f.result(0s), TimeoutError);
  f.set_result();
  EXPECT_TRUE(f.done());
  EXPECT_NO_THROW(f.result(0s));
  EXPECT_EQ(f.exception(0s), nullptr);
  EXPECT_THROW(f.set_result(), InvalidStateError);

  Future<void> g;
  g.set_exception(std::make_exception_ptr(std::length_error("void failed")));
  EXPECT_THROW(g.result(0s), std::length_error);
}

TEST(FutureTypesTest, MoveOnlyResult) {
  Future<std::unique_ptr<int>> f;
  f.set_result(std::make_unique<int>(7));
  static_assert(std::is_same_v<decltype(f.result()), const std::unique_ptr<int>&>);
  const std::unique_ptr<int>& r = f.result(0s);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(*r, 7);
  // result() does not move the value out: a second call sees the same object.
  EXPECT_EQ(&f.result(0s), &r);
  EXPECT_EQ(*f.result(0s), 7);
}

TEST(FutureTypesTest, NonDefaultConstructibleResult) {
  struct NoDefault {
    explicit NoDefault(int v) : value(v) {}
    int value;
  };
  Future<NoDefault> f;
  f.set_result(NoDefault(3));
  EXPECT_EQ(f.result(0s).value, 3);
}

TEST(FutureTypesTest, SetResultConvertsFromOtherTypes) {
  Future<std::string> f;
  f.set_result("converted");
  EXPECT_EQ(f.result(0s), "converted");

  Future<double> g;
  g.set_result(2);
  EXPECT_EQ(g.result(0s), 2.0);
}

TEST(FutureTypesTest, ResultReferenceOutlivesTheHandleItCameFrom) {
  Future<std::string> keep;
  const std::string* ref;
  {
    Future<std::string> f;
    f.set_result(std::string(64, 'r'));
    keep = f;
    ref = &f.result(0s);
  }
  EXPECT_EQ(*ref, std::string(64, 'r'));
  EXPECT_EQ(&keep.result(0s), ref);
}

// ---------------------------------------------------------------------------------------------
// Handles.

TEST(FutureHandleTest, CopiesShareState) {
  Future<int> f;
  Future<int> g = f;
  AnyFuture a = f;
  EXPECT_TRUE(g == f);
  EXPECT_TRUE(a == f);

  ASSERT_TRUE(g.set_running_or_notify_cancel());
  EXPECT_TRUE(f.running());
  EXPECT_TRUE(a.running());

  f.set_result(12);
  EXPECT_TRUE(g.done());
  EXPECT_EQ(g.result(0s), 12);
  EXPECT_EQ(&g.result(0s), &f.result(0s));
  EXPECT_TRUE(a.done());
}

TEST(FutureHandleTest, CopyAssignmentSharesState) {
  Future<int> f;
  Future<int> g;
  EXPECT_FALSE(f == g);
  g = f;
  EXPECT_TRUE(f == g);
  f.cancel();
  EXPECT_TRUE(g.cancelled());
}

TEST(FutureHandleTest, MovedFromHandleIsInvalid) {
  Future<int> f;
  Future<int> g = std::move(f);
  EXPECT_FALSE(f.valid());  // NOLINT(bugprone-use-after-move): documented behaviour
  EXPECT_TRUE(g.valid());
  g.set_result(1);

  Future<int> h;
  h = std::move(g);
  EXPECT_FALSE(g.valid());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(h.result(0s), 1);

  // A moved-from handle may be assigned to again.
  g = h;
  EXPECT_TRUE(g.valid());
  EXPECT_EQ(g.result(0s), 1);
}

TEST(FutureHandleTest, StateOutlivesCreatorWhileAnotherHandleLives) {
  auto make = [] {
    Future<std::vector<int>> f;
    f.set_result(std::vector<int>{1, 2, 3});
    return AnyFuture(f);
  };
  AnyFuture a = make();
  EXPECT_TRUE(a.done());
  EXPECT_EQ(a.exception(0s), nullptr);
}

TEST(FutureHandleTest, AnyFutureCanBeCompletedThroughTheBase) {
  Future<int> f;
  AnyFuture a = f;
  ASSERT_TRUE(a.set_running_or_notify_cancel());
  a.set_exception(std::make_exception_ptr(std::runtime_error("via base")));
  EXPECT_THROW(f.result(0s), std::runtime_error);
}

TEST(FutureHandleTest, EqualityIsIdentity) {
  Future<int> f;
  Future<int> g;
  AnyFuture fa = f;
  EXPECT_TRUE(f == f);
  EXPECT_TRUE(fa == f);
  EXPECT_FALSE(f == g);
  EXPECT_TRUE(f != g);
  EXPECT_FALSE(fa != f);
  // Two finished futures with equal results are still different futures.
  f.set_result(1);
  g.set_result(1);
  EXPECT_FALSE(f == g);
}

TEST(FutureHandleTest, HashFollowsIdentity) {
  Future<int> f;
  Future<std::string> s;
  AnyFuture f1 = f;
  AnyFuture f2 = f;
  std::hash<AnyFuture> h;
  EXPECT_EQ(h(f1), h(f2));

  std::unordered_set<AnyFuture> set;
  EXPECT_TRUE(set.insert(f1).second);
  EXPECT_FALSE(set.insert(f2).second);
  EXPECT_TRUE(set.insert(AnyFuture(s)).second);
  EXPECT_TRUE(set.insert(AnyFuture()).second);
  EXPECT_EQ(set.size(), 3u);
  EXPECT_EQ(set.count(AnyFuture(f)), 1u);
  EXPECT_EQ(set.count(AnyFuture(s)), 1u);
}

TEST(FutureHandleTest, HandMadeFutureHasNoExecutor) {
  Future<int> f;
  EXPECT_EQ(f.executor(), nullptr);
  f.set_result(1);
  EXPECT_EQ(f.executor(), nullptr);
  EXPECT_EQ(AnyFuture().executor(), nullptr);
}

TEST(FutureHandleTest, ExecutorIsHeldWeakly) {
  // Executor is incomplete here; a stand-in pointer is enough since it is never dereferenced.
  auto owner = std::make_shared<int>(0);
  std::shared_ptr<Executor> executor(owner, reinterpret_cast<Executor*>(owner.get()));
  const std::uint64_t id = detail::register_executor(executor);
  EXPECT_NE(id, 0u);

  Future<int> f;
  f.state_base().set_executor_id(id);
  EXPECT_EQ(f.executor(), executor);
  EXPECT_EQ(Future<int>(f).executor(), executor);

  std::weak_ptr<int> watch = owner;
  owner.reset();
  executor.reset();
  EXPECT_TRUE(watch.expired()) << "the future must not keep its executor alive";
  EXPECT_EQ(f.executor(), nullptr);
  detail::unregister_executor(id);
  EXPECT_EQ(f.executor(), nullptr);
}

// ---------------------------------------------------------------------------------------------
// The exception hierarchy.

TEST(ExceptionsTest, Hierarchy) {
  static_assert(std::is_base_of_v<std::runtime_error, Error>);
  static_assert(std::is_base_of_v<Error, CancelledError>);
  static_assert(std::is_base_of_v<Error, InvalidStateError>);
  static_assert(std::is_base_of_v<Error, UnobservedTaskErrors>);
  static_assert(std::is_base_of_v<std::runtime_error, TimeoutError>);
  static_assert(!std::is_base_of_v<Error, TimeoutError>);
  static_assert(std::is_base_of_v<std::runtime_error, BrokenExecutor>);
  static_assert(!std::is_base_of_v<Error, BrokenExecutor>);
  static_assert(std::is_base_of_v<BrokenExecutor, BrokenThreadPool>);
  static_assert(!std::is_base_of_v<CancelledError, InvalidStateError>);
  static_assert(!std::is_base_of_v<InvalidStateError, CancelledError>);

  // And at run time, through handlers for the base classes.
  auto caught_as_error = [](auto thrower) {
    try {
      thrower();
    } catch (const Error&) {
      return true;
    } catch (...) {
    }
    return false;
  };
  EXPECT_TRUE(caught_as_error([] { throw CancelledError(); }));
  EXPECT_TRUE(caught_as_error([] { throw InvalidStateError("s"); }));
  EXPECT_FALSE(caught_as_error([] { throw TimeoutError(); }));
  EXPECT_FALSE(caught_as_error([] { throw BrokenThreadPool("b"); }));
  try {
    throw BrokenThreadPool("initializer failed");
  } catch (const BrokenExecutor& e) {
    EXPECT_STREQ(e.what(), "initializer failed");
  }
}

TEST(ExceptionsTest, Messages) {
  EXPECT_STRNE(CancelledError().what(), "");
  EXPECT_STREQ(CancelledError("custom").what(), "custom");
  EXPECT_STRNE(TimeoutError().what(), "");
  EXPECT_STREQ(TimeoutError("3 (of 4) futures unfinished").what(), "3 (of 4) futures unfinished");
  EXPECT_STREQ(InvalidStateError("state").what(), "state");
}

TEST(ExceptionsTest, UnobservedTaskErrorsKeepsExceptionsInOrder) {
  auto a = std::make_exception_ptr(std::runtime_error("first failure"));
  auto b = std::make_exception_ptr(5);
  UnobservedTaskErrors errors({a, b});
  ASSERT_EQ(errors.exceptions().size(), 2u);
  EXPECT_EQ(errors.exceptions()[0], a);
  EXPECT_EQ(errors.exceptions()[1], b);
  EXPECT_NE(std::string(errors.what()).find("first failure"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// The logging hook.

TEST(LogTest, SetLogHandlerReturnsThePreviousHandler) {
  int first_calls = 0;
  int second_calls = 0;
  LogHandler original = set_log_handler([&](const LogRecord&) { ++first_calls; });
  LogHandler first = set_log_handler([&](const LogRecord&) { ++second_calls; });
  ASSERT_TRUE(first);
  first(LogRecord{LogLevel::kError, "m", nullptr});
  EXPECT_EQ(first_calls, 1);
  EXPECT_EQ(second_calls, 0);

  // Records go to the installed handler.
  Future<int> f;
  f.add_done_callback([](const Future<int>&) { throw 1; });
  f.set_result(0);
  EXPECT_EQ(second_calls, 1);
  EXPECT_EQ(first_calls, 1);

  LogHandler second = set_log_handler(std::move(original));
  ASSERT_TRUE(second);
  second(LogRecord{LogLevel::kError, "m", nullptr});
  EXPECT_EQ(second_calls, 2);
}

TEST(LogTest, ThrowingHandlerIsSwallowed) {
  LogHandler previous = set_log_handler([](const LogRecord&) { throw std::runtime_error("log"); });
  Future<int> f;
  bool later_ran = false;
  f.add_done_callback([](const Future<int>&) { throw 1; });
  f.add_done_callback([&](const Future<int>&) { later_ran = true; });
  EXPECT_NO_THROW(f.set_result(0));
  EXPECT_TRUE(later_ran);
  set_log_handler(std::move(previous));
}

TEST(LogTest, DescribeException) {
  EXPECT_EQ(describe_exception(std::make_exception_ptr(std::runtime_error("what text"))),
            "what text");
  EXPECT_FALSE(describe_exception(std::make_exception_ptr(3)).empty());
  EXPECT_FALSE(describe_exception(nullptr).empty());
}

// ---------------------------------------------------------------------------------------------
// set_running_or_notify_cancel() is atomic with respect to the other transitions: whatever the
// interleaving, its outcome must be that of one of the serial orders, as in Python, which holds
// the future's condition for the whole check-and-set.
//
// To make the interleaving likely, set_result() is held in the middle of its work by a result
// type whose constructor waits for a signal, while other threads call
// set_running_or_notify_cancel(). Every outcome is checked against the serial orders, so the
// tests hold however the threads are scheduled; the yields only make the overlap likely.

// Construction signals `entered`, waits for `release`, then succeeds or throws.
struct Gate {
  std::promise<void>* entered;
  std::shared_future<void> release;
  bool fail;
};

struct GatedValue {
  explicit GatedValue(const Gate& gate) {
    gate.entered->set_value();
    if (gate.release.wait_for(kLong) != std::future_status::ready) {
      throw std::logic_error("the test never released the gate");
    }
    if (gate.fail) throw std::runtime_error("construction failed");
  }
};

enum class Outcome { kTrue, kFalse, kThrew };

Outcome try_set_running(const AnyFuture& f) {
  try {
    return f.set_running_or_notify_cancel() ? Outcome::kTrue : Outcome::kFalse;
  } catch (const std::runtime_error&) {
    return Outcome::kThrew;
  }
}

// Gives the threads that announced themselves a chance to reach the call they announced.
void let_others_run() {
  for (int i = 0; i < 2000; ++i) std::this_thread::yield();
}

TEST(FutureRaceTest, SetRunningRacingSetResultNeverReportsCancellation) {
  // Serial orders: set_running first (true; set_result then finishes the running future), or
  // set_result first (set_running then throws). False would report a cancellation nobody made.
  LogCapture log;  // the expected CRITICAL records
  for (int round = 0; round < 20; ++round) {
    Future<GatedValue> f;
    std::promise<void> entered;
    std::promise<void> release;
    Gate gate{&entered, release.get_future().share(), /*fail=*/false};
    std::jthread completer([f, &gate] { f.set_result(gate); });
    ASSERT_EQ(entered.get_future().wait_for(kLong), std::future_status::ready);

    std::atomic<bool> started{false};
    std::future<Outcome> outcome = std::async(std::launch::async, [f, &started] {
      started = true;
      return try_set_running(f);
    });
    while (!started) std::this_thread::yield();
    let_others_run();
    release.set_value();

    const Outcome o = outcome.get();
    completer.join();
    ASSERT_NE(o, Outcome::kFalse)
        << "round " << round << ": set_running_or_notify_cancel() returned false (\"cancelled\") "
        << "for a future that was never cancelled";
    EXPECT_FALSE(f.cancelled());
    EXPECT_EQ(f.state(), FutureState::kFinished);
  }
}

TEST(FutureRaceTest, ConcurrentSetRunningExactlyOneSucceedsOthersThrow) {
  // Two calls on a PENDING future: one returns true, the other must throw (it is the second
  // call). Here set_result() holds the future while both start, then fails, leaving it PENDING.
  LogCapture log;
  for (int round = 0; round < 20; ++round) {
    Future<GatedValue> f;
    std::promise<void> entered;
    std::promise<void> release;
    Gate gate{&entered, release.get_future().share(), /*fail=*/true};
    std::jthread completer([f, &gate] { EXPECT_THROW(f.set_result(gate), std::runtime_error); });
    ASSERT_EQ(entered.get_future().wait_for(kLong), std::future_status::ready);

    std::atomic<int> started{0};
    auto attempt = [f, &started] {
      started.fetch_add(1);
      return try_set_running(f);
    };
    std::future<Outcome> first = std::async(std::launch::async, attempt);
    std::future<Outcome> second = std::async(std::launch::async, attempt);
    while (started.load() < 2) std::this_thread::yield();
    let_others_run();
    release.set_value();

    Outcome a = first.get();
    Outcome b = second.get();
    completer.join();
    if (a != Outcome::kTrue) std::swap(a, b);
    ASSERT_EQ(a, Outcome::kTrue) << "round " << round;
    ASSERT_EQ(b, Outcome::kThrew) << "round " << round
                                  << ": the second set_running_or_notify_cancel() returned "
                                  << (b == Outcome::kFalse ? "false" : "true")
                                  << " instead of throwing";
    EXPECT_TRUE(f.running());
  }
}

// ---------------------------------------------------------------------------------------------
// Python's repr (to_string, operator<<) and the message of InvalidStateError.

// Matches a whole repr with the given suffix after "state=".
::testing::AssertionResult IsRepr(const std::string& text, const std::string& state_part) {
  static const std::regex kShape("<Future at 0x[0-9a-f]+ state=(.*)>");
  std::smatch m;
  if (!std::regex_match(text, m, kShape)) {
    return ::testing::AssertionFailure() << '"' << text << "\" is not shaped like Python's repr";
  }
  if (m[1] != state_part) {
    return ::testing::AssertionFailure()
           << '"' << text << "\" has state=" << m[1] << ", expected state=" << state_part;
  }
  return ::testing::AssertionSuccess();
}

std::string hex_address(const AnyFuture& f) {
  std::ostringstream out;
  out << "0x" << std::hex << reinterpret_cast<std::uintptr_t>(&f.state_base());
  return out.str();
}

std::exception_ptr caught_as_std_exception(std::function<void()> thrower) {
  try {
    thrower();
  } catch (const std::exception&) {
    return std::current_exception();
  }
  return nullptr;
}

TEST(FutureReprTest, PendingAndRunning) {
  Future<int> f;
  EXPECT_TRUE(IsRepr(to_string(f), "pending"));
  ASSERT_TRUE(f.set_running_or_notify_cancel());
  EXPECT_TRUE(IsRepr(to_string(f), "running"));
}

TEST(FutureReprTest, BothCancelledStatesPrintCancelled) {
  Future<int> f;
  ASSERT_TRUE(f.cancel());
  ASSERT_EQ(f.state(), FutureState::kCancelled);
  EXPECT_TRUE(IsRepr(to_string(f), "cancelled"));
  ASSERT_FALSE(f.set_running_or_notify_cancel());
  ASSERT_EQ(f.state(), FutureState::kCancelledAndNotified);
  EXPECT_TRUE(IsRepr(to_string(f), "cancelled"));
}

TEST(FutureReprTest, FinishedWithResultNamesTheResultType) {
  Future<int> i;
  i.set_result(5);
  EXPECT_TRUE(IsRepr(to_string(i), "finished returned int"));

  Future<void> v;
  EXPECT_TRUE(IsRepr(to_string(v), "pending"));
  v.set_result();
  EXPECT_TRUE(IsRepr(to_string(v), "finished returned void"));

  Future<std::vector<double>> vec;
  vec.set_result(std::vector<double>{1.5});
  EXPECT_TRUE(
      IsRepr(to_string(vec), "finished returned std::vector<double, std::allocator<double> >"))
      << to_string(vec);
}

TEST(FutureReprTest, TypeErasedHandleKnowsTheResultType) {
  Future<double> d;
  AnyFuture erased = d;
  d.set_result(2.5);
  EXPECT_TRUE(IsRepr(to_string(erased), "finished returned double"));
  EXPECT_EQ(to_string(erased), to_string(d));

  AnyFuture bare;  // Python's Future(): a State<void>
  bare.set_exception(std::make_exception_ptr(std::runtime_error("x")));
  EXPECT_TRUE(IsRepr(to_string(bare), "finished raised std::runtime_error"));
  EXPECT_EQ(bare.state_base().result_type(), typeid(void));  // "returned void" once finished
}

TEST(FutureReprTest, FinishedWithExceptionNamesItsDynamicType) {
  Future<int> sys;
  sys.set_exception(caught_as_std_exception(
      [] { throw std::system_error(std::make_error_code(std::errc::io_error)); }));
  EXPECT_TRUE(IsRepr(to_string(sys), "finished raised std::system_error"));

  Future<int> futures_error;
  futures_error.set_exception(caught_as_std_exception([] { throw CancelledError(); }));
  EXPECT_TRUE(IsRepr(to_string(futures_error), "finished raised betterconcurrent::CancelledError"));

  Future<int> two;
  two.set_exception(std::make_exception_ptr(2));
  EXPECT_TRUE(IsRepr(to_string(two), "finished raised int"));

  Future<std::string> custom;
  custom.set_exception(std::make_exception_ptr(repr_test::NotAnException{7}));
  EXPECT_TRUE(IsRepr(to_string(custom), "finished raised repr_test::NotAnException"));
  // The stored exception is the same object as before, and still rethrows.
  try {
    (void)custom.result(0s);
    ADD_FAILURE() << "no exception";
  } catch (const repr_test::NotAnException& e) {
    EXPECT_EQ(e.code, 7);
  }
}

TEST(FutureReprTest, DoesNotMarkTheExceptionObserved) {
  Future<int> f;
  f.set_exception(std::make_exception_ptr(std::runtime_error("unseen")));
  EXPECT_TRUE(IsRepr(to_string(f), "finished raised std::runtime_error"));
  EXPECT_TRUE(f.state_base().claim_unobserved());
}

TEST(FutureReprTest, AddressIsTheSharedStatesSoHandlesAgree) {
  Future<int> f;
  Future<int> copy = f;
  AnyFuture erased = f;
  const std::string text = to_string(f);
  EXPECT_EQ(text, "<Future at " + hex_address(f) + " state=pending>");
  EXPECT_EQ(to_string(copy), text);
  EXPECT_EQ(to_string(erased), text);
  Future<int> other;
  EXPECT_NE(to_string(other), text);
}

TEST(FutureReprTest, StreamOperatorWritesTheRepr) {
  Future<int> f;
  f.set_result(1);
  std::ostringstream out;
  out << "[" << f << "]";
  EXPECT_EQ(out.str(), "[" + to_string(f) + "]");
  EXPECT_TRUE(IsRepr(repr_test::found_by_adl(Future<double>()), "pending"));
}

TEST(FutureReprTest, MovedFromHandleDoesNotCrash) {
  Future<int> f;
  Future<int> g = std::move(f);
  EXPECT_EQ(to_string(f), "<Future (moved-from handle)>");
  EXPECT_TRUE(IsRepr(to_string(g), "pending"));
}

TEST(FutureReprTest, ReprRacingCompletionIsAConsistentSnapshot) {
  for (int round = 0; round < 20; ++round) {
    Future<int> f;
    std::latch started(1);
    std::jthread setter([f, &started] {
      started.wait();
      f.set_exception(std::make_exception_ptr(std::out_of_range("r")));
    });
    started.count_down();
    const auto give_up = std::chrono::steady_clock::now() + kLong;
    std::string text;
    do {
      text = to_string(f);
      EXPECT_TRUE(IsRepr(text, "pending") || IsRepr(text, "finished raised std::out_of_range"))
          << text;
    } while (text.find("finished") == std::string::npos &&
             std::chrono::steady_clock::now() < give_up);
    EXPECT_TRUE(IsRepr(text, "finished raised std::out_of_range"));
  }
}

// Python: InvalidStateError('{}: {!r}'.format(self._state, self)), plus our hint.
::testing::AssertionResult IsAlreadyDoneMessage(const std::string& what, const char* state_name,
                                                const AnyFuture& f) {
  const std::string expected_start = std::string(state_name) + ": " + to_string(f) + "; ";
  if (what.rfind(expected_start, 0) != 0) {
    return ::testing::AssertionFailure()
           << '"' << what << "\" does not start with \"" << expected_start << '"';
  }
  if (what.find("only once") == std::string::npos) {
    return ::testing::AssertionFailure() << '"' << what << "\" has no hint";
  }
  return ::testing::AssertionSuccess();
}

template <typename Fn>
std::string invalid_state_message(Fn fn) {
  try {
    fn();
  } catch (const InvalidStateError& e) {
    return e.what();
  }
  return "(no InvalidStateError)";
}

TEST(FutureReprTest, InvalidStateErrorCarriesPythonsMessage) {
  Future<int> f;
  f.set_result(1);
  const std::string twice = invalid_state_message([&] { f.set_result(2); });
  EXPECT_TRUE(IsAlreadyDoneMessage(twice, "FINISHED", f));
  EXPECT_TRUE(std::regex_search(
      twice, std::regex("^FINISHED: <Future at 0x[0-9a-f]+ state=finished returned int>; ")))
      << twice;
  EXPECT_TRUE(IsAlreadyDoneMessage(
      invalid_state_message([&] { f.set_exception(std::make_exception_ptr(1)); }), "FINISHED", f));

  Future<int> e;
  e.set_exception(std::make_exception_ptr(std::logic_error("first")));
  const std::string after_exception = invalid_state_message([&] { e.set_result(2); });
  EXPECT_TRUE(IsAlreadyDoneMessage(after_exception, "FINISHED", e));
  EXPECT_NE(after_exception.find("state=finished raised std::logic_error>"), std::string::npos)
      << after_exception;

  Future<void> v;
  v.set_result();
  EXPECT_TRUE(IsAlreadyDoneMessage(invalid_state_message([&] { v.set_result(); }), "FINISHED", v));
  EXPECT_NE(to_string(v).find("returned void"), std::string::npos);
}

TEST(FutureReprTest, InvalidStateErrorOnCancelledFutures) {
  Future<int> f;
  ASSERT_TRUE(f.cancel());
  const std::string cancelled = invalid_state_message([&] { f.set_result(2); });
  EXPECT_TRUE(IsAlreadyDoneMessage(cancelled, "CANCELLED", f));
  EXPECT_TRUE(std::regex_search(
      cancelled, std::regex("^CANCELLED: <Future at 0x[0-9a-f]+ state=cancelled>; ")))
      << cancelled;

  ASSERT_FALSE(f.set_running_or_notify_cancel());
  AnyFuture erased = f;
  EXPECT_TRUE(IsAlreadyDoneMessage(
      invalid_state_message([&] { erased.set_exception(std::make_exception_ptr(1)); }),
      "CANCELLED_AND_NOTIFIED", f));
}

}  // namespace
}  // namespace betterconcurrent
