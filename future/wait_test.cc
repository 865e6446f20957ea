// Tests of wait(), as_completed() and co_await yield_until_done() outside executors.
#include "future/wait.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <coroutine>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "future/exceptions.h"
#include "future/future.h"
#include "gtest/gtest.h"

namespace betterconcurrent {
namespace {

using namespace std::chrono_literals;

// Long enough to mean "forever" for a correct library.
constexpr auto kLong = std::chrono::seconds(10);

// Calls `fn` (which must own everything it uses) on a detached thread and returns its result,
// or nullopt if it has not returned within kLong: a call that should return but blocks makes
// the test fail instead of hanging.
template <typename Fn>
std::optional<std::invoke_result_t<Fn>> call_or_give_up(Fn fn) {
  using R = std::invoke_result_t<Fn>;
  auto task = std::make_shared<std::packaged_task<R()>>(std::move(fn));
  std::future<R> result = task->get_future();
  std::thread([task] { (*task)(); }).detach();
  if (result.wait_for(kLong) != std::future_status::ready) return std::nullopt;
  return result.get();
}

template <typename F>
std::vector<AnyFuture> as_any(const std::vector<F>& fs) {
  return std::vector<AnyFuture>(fs.begin(), fs.end());
}

// Order-insensitive comparison of two lists of distinct futures.
template <typename F, typename G>
bool same_set(const std::vector<F>& a, const std::vector<G>& b) {
  if (a.size() != b.size()) return false;
  for (const auto& x : a) {
    if (std::count_if(b.begin(), b.end(), [&](const auto& y) { return AnyFuture(x) == y; }) != 1) {
      return false;
    }
  }
  return true;
}

// Starts a thread that runs `fn` once `go` is signalled (or gives up after kLong).
std::jthread when_signalled(std::future<void> go, std::function<void()> fn) {
  return std::jthread([go = std::move(go), fn = std::move(fn)] {
    if (go.wait_for(kLong) == std::future_status::ready) fn();
  });
}

Future<int> finished(int v) {
  Future<int> f;
  f.set_result(v);
  return f;
}

Future<int> failed(const char* what) {
  Future<int> f;
  f.set_exception(std::make_exception_ptr(std::runtime_error(what)));
  return f;
}

Future<int> cancelled_and_notified() {
  Future<int> f;
  f.cancel();
  f.set_running_or_notify_cancel();
  return f;
}

Future<int> cancelled_only() {
  Future<int> f;
  f.cancel();
  return f;
}

// ---------------------------------------------------------------------------------------------
// wait()

TEST(WaitTest, ReturnTypeKeepsTheFutureType) {
  std::vector<Future<int>> ints;
  static_assert(std::is_same_v<decltype(wait(ints)), DoneAndNotDoneFutures<Future<int>>>);
  std::vector<AnyFuture> any;
  static_assert(std::is_same_v<decltype(wait(any)), DoneAndNotDoneFutures<AnyFuture>>);
}

TEST(WaitTest, EmptyInputReturnsAtOnceInEveryMode) {
  for (ReturnWhen mode : {ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION}) {
    auto r =
        call_or_give_up([mode] { return wait(std::vector<Future<int>>{}, std::nullopt, mode); });
    ASSERT_TRUE(r.has_value()) << "wait() on no futures blocked";
    EXPECT_TRUE(r->done.empty());
    EXPECT_TRUE(r->not_done.empty());
    auto z = wait(std::vector<AnyFuture>{}, 0s, mode);
    EXPECT_TRUE(z.done.empty());
    EXPECT_TRUE(z.not_done.empty());
  }
}

TEST(WaitTest, AllCompletedWithEverythingDoneKeepsInputOrder) {
  std::vector<Future<int>> fs = {finished(1), failed("x"), cancelled_and_notified(), finished(2)};
  auto r = call_or_give_up([fs] { return wait(fs); });
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->done, fs);
  EXPECT_TRUE(r->not_done.empty());
}

TEST(WaitTest, TimeoutReturnsPartialSplitWithoutThrowing) {
  Future<int> running;
  ASSERT_TRUE(running.set_running_or_notify_cancel());
  Future<int> a = finished(1), b, c = failed("c"), d = running, e = cancelled_and_notified();
  std::vector<Future<int>> fs = {a, b, c, d, e};
  for (ReturnWhen mode : {ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION}) {
    for (auto timeout : {std::chrono::duration<double>(0), std::chrono::duration<double>(0.002),
                         std::chrono::duration<double>(-1)}) {
      DoneAndNotDoneFutures<Future<int>> r;
      if (mode == FIRST_EXCEPTION) {
        // c failed, so FIRST_EXCEPTION is satisfied; use the futures without c for it.
        std::vector<Future<int>> no_failure = {a, b, d, e};
        EXPECT_NO_THROW(r = wait(no_failure, timeout, mode));
        EXPECT_EQ(r.done, (std::vector<Future<int>>{a, e}));
        EXPECT_EQ(r.not_done, (std::vector<Future<int>>{b, d}));
        continue;
      }
      if (mode == FIRST_COMPLETED) {
        std::vector<Future<int>> undone = {b, d};
        EXPECT_NO_THROW(r = wait(undone, timeout, mode));
        EXPECT_TRUE(r.done.empty());
        EXPECT_EQ(r.not_done, undone);
        continue;
      }
      EXPECT_NO_THROW(r = wait(fs, timeout, mode));
      EXPECT_EQ(r.done, (std::vector<Future<int>>{a, c, e}));
      EXPECT_EQ(r.not_done, (std::vector<Future<int>>{b, d}));
    }
  }
  // wait() changed nothing.
  EXPECT_EQ(b.state(), FutureState::kPending);
  EXPECT_EQ(d.state(), FutureState::kRunning);
}

TEST(WaitTest, AllCompletedWokenByCompletionsFromAnotherThread) {
  Future<int> a, b, c, d;
  std::vector<Future<int>> fs = {a, b, c, d};
  std::promise<void> go;
  auto completer = when_signalled(go.get_future(), [=] {
    a.set_result(1);
    b.set_exception(std::make_exception_ptr(std::runtime_error("b")));
    ASSERT_TRUE(c.cancel());
    EXPECT_FALSE(c.set_running_or_notify_cancel());
    ASSERT_TRUE(d.set_running_or_notify_cancel());
    d.set_result(4);
  });
  go.set_value();
  auto r = wait(fs, kLong);
  EXPECT_EQ(r.done, fs);
  EXPECT_TRUE(r.not_done.empty());
}

TEST(WaitTest, AllCompletedUntimedWaitReturnsWhenTheLastCompletes) {
  Future<int> a, b;
  std::vector<Future<int>> fs = {a, b};
  std::promise<void> go;
  auto completer = when_signalled(go.get_future(), [=] {
    b.set_result(2);
    a.set_result(1);
  });
  go.set_value();
  auto r = call_or_give_up([fs] { return wait(fs); });
  ASSERT_TRUE(r.has_value()) << "wait() missed a completion";
  EXPECT_EQ(r->done, fs);
}

TEST(WaitTest, FirstCompletedReturnsAtOnceIfOneIsDone) {
  Future<int> a, b = finished(2), c;
  std::vector<Future<int>> fs = {a, b, c};
  auto r = call_or_give_up([fs] { return wait(fs, std::nullopt, FIRST_COMPLETED); });
  ASSERT_TRUE(r.has_value()) << "FIRST_COMPLETED waited although a future was done";
  EXPECT_EQ(r->done, (std::vector<Future<int>>{b}));
  EXPECT_EQ(r->not_done, (std::vector<Future<int>>{a, c}));
}

TEST(WaitTest, FirstCompletedWokenByOneCompletion) {
  Future<int> a, b, c;
  std::vector<Future<int>> fs = {a, b, c};
  std::promise<void> go;
  auto completer = when_signalled(go.get_future(), [b] { b.set_result(2); });
  go.set_value();
  auto r = call_or_give_up([fs] { return wait(fs, std::nullopt, FIRST_COMPLETED); });
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->done, (std::vector<Future<int>>{b}));
  EXPECT_EQ(r->not_done, (std::vector<Future<int>>{a, c}));
}

TEST(WaitTest, FirstCompletedWokenByAnException) {
  Future<int> a, b;
  std::vector<Future<int>> fs = {a, b};
  std::promise<void> go;
  auto completer = when_signalled(
      go.get_future(), [a] { a.set_exception(std::make_exception_ptr(std::runtime_error("a"))); });
  go.set_value();
  auto r = wait(fs, kLong, FIRST_COMPLETED);
  EXPECT_EQ(r.done, (std::vector<Future<int>>{a}));
  EXPECT_EQ(r.not_done, (std::vector<Future<int>>{b}));
}

TEST(WaitTest, FirstExceptionReturnsAtOnceIfOneFailed) {
  Future<int> a = finished(1), b, c = failed("c");
  std::vector<Future<int>> fs = {a, b, c};
  auto r = call_or_give_up([fs] { return wait(fs, std::nullopt, FIRST_EXCEPTION); });
  ASSERT_TRUE(r.has_value()) << "FIRST_EXCEPTION waited although a future had failed";
  EXPECT_EQ(r->done, (std::vector<Future<int>>{a, c}));
  EXPECT_EQ(r->not_done, (std::vector<Future<int>>{b}));
}

TEST(WaitTest, FirstExceptionReturnsAtTheFirstException) {
  Future<int> a = finished(1), b, c;
  std::vector<Future<int>> fs = {a, b, c};
  std::promise<void> go;
  auto completer = when_signalled(
      go.get_future(), [b] { b.set_exception(std::make_exception_ptr(std::runtime_error("b"))); });
  go.set_value();
  // c never finishes: wait() must return on b's exception alone.
  auto r = call_or_give_up([fs] { return wait(fs, std::nullopt, FIRST_EXCEPTION); });
  ASSERT_TRUE(r.has_value()) << "FIRST_EXCEPTION did not return on an exception";
  EXPECT_EQ(r->done, (std::vector<Future<int>>{a, b}));
  EXPECT_EQ(r->not_done, (std::vector<Future<int>>{c}));
}

TEST(WaitTest, FirstExceptionWithoutExceptionsWaitsForAll) {
  Future<int> a = finished(1), b, c;
  std::vector<Future<int>> fs = {a, b, c};
  std::promise<void> go;
  auto completer = when_signalled(go.get_future(), [b, c] {
    b.set_result(2);
    ASSERT_TRUE(c.cancel());
    c.set_running_or_notify_cancel();
  });
  go.set_value();
  auto r = wait(fs, kLong, FIRST_EXCEPTION);
  EXPECT_EQ(r.done, fs) << "FIRST_EXCEPTION returned before every future was done";
  EXPECT_TRUE(r.not_done.empty());
}

TEST(WaitTest, FirstExceptionIgnoresResultsAndCancellations) {
  // Neither a result nor a cancellation is an exception: with one future still pending, only
  // the timeout ends the wait.
  Future<int> pending;
  std::vector<Future<int>> fs = {finished(1), cancelled_and_notified(), pending};
  auto r = wait(fs, 0s, FIRST_EXCEPTION);
  EXPECT_EQ(r.done.size(), 2u);
  EXPECT_EQ(r.not_done, (std::vector<Future<int>>{pending}));
}

TEST(WaitTest, DuplicatesCountOnce) {
  Future<int> a = finished(1), b, c = finished(3);
  std::vector<Future<int>> fs = {b, a, b, c, a, b};
  auto r = wait(fs, 0s);
  EXPECT_EQ(r.done, (std::vector<Future<int>>{a, c}));
  EXPECT_EQ(r.not_done, (std::vector<Future<int>>{b}));

  // ALL_COMPLETED must not wait for the copies: one completion of b is all of them.
  std::promise<void> go;
  auto completer = when_signalled(go.get_future(), [b] { b.set_result(2); });
  go.set_value();
  auto all = call_or_give_up([fs] { return wait(fs); });
  ASSERT_TRUE(all.has_value()) << "a duplicated future was counted more than once";
  EXPECT_EQ(all->done, (std::vector<Future<int>>{b, a, c}));
  EXPECT_TRUE(all->not_done.empty());
}

TEST(WaitTest, DuplicatesThroughDifferentHandleTypesCountOnce) {
  Future<int> a;
  std::vector<AnyFuture> fs = {a, AnyFuture(a), Future<int>(a)};
  auto r = wait(fs, 0s);
  EXPECT_EQ(r.not_done.size(), 1u);
  a.set_result(1);
  r = wait(fs, 0s);
  EXPECT_EQ(r.done.size(), 1u);
  EXPECT_TRUE(r.not_done.empty());
}

TEST(WaitTest, MixedResultTypes) {
  Future<int> i;
  Future<std::string> s;
  Future<void> v;
  std::vector<AnyFuture> fs = {i, s, v};
  s.set_result("done");
  auto r = wait(fs, 0s);
  EXPECT_EQ(r.done, (std::vector<AnyFuture>{s}));
  EXPECT_EQ(r.not_done, (std::vector<AnyFuture>{i, v}));

  std::promise<void> go;
  auto completer = when_signalled(go.get_future(), [i, v] {
    i.set_result(1);
    v.set_result();
  });
  go.set_value();
  r = wait(fs, kLong);
  EXPECT_EQ(r.done, fs);
}

TEST(WaitTest, AcceptsOtherRanges) {
  Future<int> a = finished(1), b;
  std::list<Future<int>> list = {a, b};
  auto r1 = wait(list, 0s);
  EXPECT_EQ(r1.done, (std::vector<Future<int>>{a}));
  EXPECT_EQ(r1.not_done, (std::vector<Future<int>>{b}));

  std::array<AnyFuture, 2> array = {b, a};
  auto r2 = wait(array, 0s);
  EXPECT_EQ(r2.done, (std::vector<AnyFuture>{a}));
  EXPECT_EQ(r2.not_done, (std::vector<AnyFuture>{b}));
}

TEST(WaitTest, CancelledButNotNotifiedIsNotDone) {
  Future<int> c = cancelled_only();
  ASSERT_TRUE(c.done());
  std::vector<Future<int>> fs = {c};
  for (ReturnWhen mode : {ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION}) {
    auto r = wait(fs, 0s, mode);
    EXPECT_TRUE(r.done.empty());
    EXPECT_EQ(r.not_done, fs);
  }
  EXPECT_EQ(c.state(), FutureState::kCancelled);  // wait() does not notify
}

TEST(WaitTest, NotificationOfACancelledFutureWakesWait) {
  for (ReturnWhen mode : {ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION}) {
    Future<int> c = cancelled_only();
    std::promise<void> go;
    std::promise<bool> notified;
    auto completer = when_signalled(
        go.get_future(), [c, &notified] { notified.set_value(c.set_running_or_notify_cancel()); });
    go.set_value();
    auto r = wait(std::vector<Future<int>>{c}, kLong, mode);
    EXPECT_EQ(r.done, (std::vector<Future<int>>{c}));
    EXPECT_TRUE(r.not_done.empty());
    EXPECT_FALSE(notified.get_future().get());
    EXPECT_EQ(c.state(), FutureState::kCancelledAndNotified);
  }
}

TEST(WaitTest, CancelAloneDoesNotSatisfyFirstCompleted) {
  Future<int> a, b;
  std::vector<Future<int>> fs = {a, b};
  ASSERT_TRUE(a.cancel());
  auto r = wait(fs, 0s, FIRST_COMPLETED);
  EXPECT_TRUE(r.done.empty());
  // Once notified it is done, and a.cancel() leaves b alone.
  a.set_running_or_notify_cancel();
  r = wait(fs, 0s, FIRST_COMPLETED);
  EXPECT_EQ(r.done, (std::vector<Future<int>>{a}));
  EXPECT_EQ(r.not_done, (std::vector<Future<int>>{b}));
}

TEST(WaitTest, RunningIsNotDone) {
  Future<int> a;
  ASSERT_TRUE(a.set_running_or_notify_cancel());
  auto r = wait(std::vector<Future<int>>{a}, 0s, FIRST_COMPLETED);
  EXPECT_TRUE(r.done.empty());
}

TEST(WaitTest, SeveralThreadsWaitOnTheSameFutures) {
  Future<int> a, b;
  std::vector<Future<int>> fs = {a, b};
  constexpr int kWaiters = 4;
  std::vector<std::future<DoneAndNotDoneFutures<Future<int>>>> results;
  for (int i = 0; i < kWaiters; ++i) {
    results.push_back(std::async(std::launch::async, [fs, i] {
      return wait(fs, kLong, i % 2 ? FIRST_COMPLETED : ALL_COMPLETED);
    }));
  }
  a.set_result(1);
  b.set_result(2);
  for (int i = 0; i < kWaiters; ++i) {
    auto r = results[i].get();
    if (i % 2) {
      EXPECT_FALSE(r.done.empty());
    } else {
      EXPECT_EQ(r.done, fs);
    }
  }
}

TEST(WaitTest, CompletingAfterATimedOutWaitIsSafe) {
  // The timed-out wait must have unlinked its listeners: completing later touches nothing of it.
  Future<int> a, b;
  std::vector<Future<int>> fs = {a, b};
  for (int i = 0; i < 10; ++i) {
    auto r = wait(fs, 100us, i % 2 ? FIRST_COMPLETED : ALL_COMPLETED);
    EXPECT_EQ(r.not_done.size(), 2u);
  }
  a.set_result(1);
  b.cancel();
  b.set_running_or_notify_cancel();
  EXPECT_EQ(wait(fs, 0s).done.size(), 2u);
}

TEST(WaitTest, WaitedFuturesMayBeDroppedByTheCaller) {
  // wait() holds its own handles: the caller's vector can go away while another thread waits.
  auto fs = std::make_unique<std::vector<Future<int>>>(2);
  Future<int> keep = (*fs)[1];
  auto waiter =
      std::async(std::launch::async, [copy = *fs] { return wait(copy, kLong, FIRST_COMPLETED); });
  fs.reset();
  keep.set_result(1);
  auto r = waiter.get();
  EXPECT_EQ(r.done, (std::vector<Future<int>>{keep}));
}

// ---------------------------------------------------------------------------------------------
// as_completed()

template <typename F>
std::vector<F> collect(AsCompleted<F>&& range) {
  std::vector<F> out;
  for (const F& f : range) out.push_back(f);
  return out;
}

TEST(AsCompletedTest, EmptyYieldsNothing) {
  auto r = call_or_give_up([] { return collect(as_completed(std::vector<Future<int>>{})); });
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->empty());
  EXPECT_TRUE(collect(as_completed(std::vector<AnyFuture>{}, 0s)).empty());
}

TEST(AsCompletedTest, AllDoneWithZeroTimeout) {
  std::vector<Future<int>> fs = {finished(1), failed("f"), cancelled_and_notified()};
  std::vector<Future<int>> got;
  EXPECT_NO_THROW(got = collect(as_completed(fs, 0s)));
  EXPECT_TRUE(same_set(got, fs));
}

TEST(AsCompletedTest, FinishedFirstThenInCompletionOrder) {
  Future<int> p1, p2, p3;
  Future<int> d1 = finished(1), d2 = failed("d2");
  std::vector<Future<int>> fs = {p1, d1, p2, d2, p3};
  const std::vector<Future<int>> completion_order = {p2, p3, p1};

  // The completer finishes one future per signal, so the order is known.
  std::vector<std::promise<void>> go(completion_order.size());
  std::vector<std::future<void>> go_f;
  for (auto& p : go) go_f.push_back(p.get_future());
  std::jthread completer([&completion_order, go_f = std::move(go_f)]() mutable {
    for (std::size_t i = 0; i < go_f.size(); ++i) {
      if (go_f[i].wait_for(kLong) != std::future_status::ready) return;
      completion_order[i].set_result(static_cast<int>(i));
    }
  });

  std::vector<Future<int>> yielded;
  try {
    for (const Future<int>& f : as_completed(fs, kLong)) {
      yielded.push_back(f);
      if (yielded.size() >= 2 && yielded.size() - 2 < go.size()) go[yielded.size() - 2].set_value();
    }
  } catch (const TimeoutError& e) {
    FAIL() << e.what() << " after " << yielded.size() << " futures";
  }
  ASSERT_EQ(yielded.size(), 5u);
  EXPECT_TRUE(same_set(std::vector<Future<int>>(yielded.begin(), yielded.begin() + 2),
                       std::vector<Future<int>>{d1, d2}))
      << "the futures finished before the call must come first";
  EXPECT_EQ(std::vector<Future<int>>(yielded.begin() + 2, yielded.end()), completion_order);
}

TEST(AsCompletedTest, SeveralFinishingBetweenStepsKeepTheirOrder) {
  Future<int> a, b, c, first;
  std::vector<Future<int>> fs = {a, b, c, first};
  std::promise<void> go;
  std::promise<void> all_finished;
  auto completer = when_signalled(go.get_future(), [&, c, b, a] {
    c.set_result(3);
    a.set_result(1);
    b.set_result(2);
    all_finished.set_value();
  });
  first.set_result(0);

  std::vector<Future<int>> yielded;
  auto range = as_completed(fs, kLong);
  for (auto it = range.begin(); it != range.end(); ++it) {
    yielded.push_back(*it);
    if (yielded.size() == 1) {
      // All three finish before the next step.
      go.set_value();
      ASSERT_EQ(all_finished.get_future().wait_for(kLong), std::future_status::ready);
    }
  }
  EXPECT_EQ(yielded, (std::vector<Future<int>>{first, c, a, b}));
}

TEST(AsCompletedTest, DuplicatesAreYieldedOnce) {
  Future<int> a = finished(1), b, c;
  std::vector<Future<int>> fs = {a, b, a, c, b, a};
  std::promise<void> go;
  auto completer = when_signalled(go.get_future(), [b, c] {
    b.set_result(2);
    c.set_result(3);
  });
  go.set_value();
  std::vector<Future<int>> got;
  ASSERT_NO_THROW(got = collect(as_completed(fs, kLong)));
  EXPECT_EQ(got.size(), 3u);
  EXPECT_TRUE(same_set(got, std::vector<Future<int>>{a, b, c}));
}

TEST(AsCompletedTest, UntimedAsCompletedEndsAfterTheLastFuture) {
  Future<int> a, b;
  std::vector<Future<int>> fs = {a, b, a};
  std::promise<void> go;
  auto completer = when_signalled(go.get_future(), [a, b] {
    a.set_result(1);
    b.set_result(2);
  });
  go.set_value();
  auto got = call_or_give_up([fs] { return collect(as_completed(fs)); });
  ASSERT_TRUE(got.has_value()) << "as_completed() did not end";
  EXPECT_TRUE(same_set(*got, std::vector<Future<int>>{a, b}));
}

TEST(AsCompletedTest, TimeoutAfterTheFinishedOnes) {
  Future<int> done = finished(1), pending;
  std::vector<Future<int>> fs = {pending, done, pending};
  for (auto timeout : {std::chrono::duration<double>(0), std::chrono::duration<double>(0.005)}) {
    auto range = as_completed(fs, timeout);
    auto it = range.begin();
    ASSERT_TRUE(it != range.end());
    EXPECT_TRUE(*it == done);
    try {
      ++it;
      FAIL() << "no TimeoutError";
    } catch (const TimeoutError& e) {
      EXPECT_STREQ(e.what(), "1 (of 2) futures unfinished");
    }
  }
}

TEST(AsCompletedTest, TimeoutWithNothingFinished) {
  Future<int> a, b, c;
  ASSERT_TRUE(c.set_running_or_notify_cancel());
  std::vector<Future<int>> fs = {a, b, c, a};
  auto range = as_completed(fs, 0s);
  try {
    (void)range.begin();
    FAIL() << "no TimeoutError";
  } catch (const TimeoutError& e) {
    EXPECT_STREQ(e.what(), "3 (of 3) futures unfinished");
  }
}

TEST(AsCompletedTest, TimeoutCountsOnlyUnfinished) {
  Future<int> a, b, c;
  std::vector<Future<int>> fs = {a, b, c};
  std::promise<void> go;
  auto completer = when_signalled(go.get_future(), [b] { b.set_result(2); });
  go.set_value();
  std::vector<Future<int>> got;
  try {
    for (const auto& f : as_completed(fs, kLong)) {
      got.push_back(f);
      if (got.size() == 1) break;
    }
  } catch (const TimeoutError& e) {
    FAIL() << e.what();
  }
  ASSERT_EQ(got, (std::vector<Future<int>>{b}));

  // With b finished, a fresh zero-timeout iteration yields b and then reports 2 of 3.
  got.clear();
  try {
    for (const auto& f : as_completed(fs, 0s)) got.push_back(f);
    FAIL() << "no TimeoutError";
  } catch (const TimeoutError& e) {
    EXPECT_STREQ(e.what(), "2 (of 3) futures unfinished");
  }
  EXPECT_EQ(got, (std::vector<Future<int>>{b}));
}

TEST(AsCompletedTest, CancelledButNotNotifiedIsYieldedOnlyWhenNotified) {
  Future<int> c = cancelled_only();
  std::vector<Future<int>> fs = {c};
  auto range = as_completed(fs, 0s);
  EXPECT_THROW((void)range.begin(), TimeoutError);

  std::promise<void> go;
  auto completer = when_signalled(go.get_future(), [c] { c.set_running_or_notify_cancel(); });
  go.set_value();
  std::vector<Future<int>> got;
  ASSERT_NO_THROW(got = collect(as_completed(fs, kLong)));
  EXPECT_EQ(got, fs);
}

TEST(AsCompletedTest, MixedResultTypes) {
  Future<int> i;
  Future<std::string> s;
  s.set_result("s");
  std::vector<AnyFuture> fs = {i, s};
  std::promise<void> go;
  auto completer = when_signalled(go.get_future(), [i] { i.set_result(1); });
  std::vector<AnyFuture> got;
  for (const AnyFuture& f : as_completed(fs, kLong)) {
    got.push_back(f);
    if (got.size() == 1) go.set_value();
  }
  EXPECT_EQ(got, (std::vector<AnyFuture>{s, i}));
}

TEST(AsCompletedTest, StoppingEarlyStopsListening) {
  Future<int> done = finished(0), a, b;
  std::vector<Future<int>> fs = {done, a, b};
  {
    auto range = as_completed(fs, kLong);
    auto it = range.begin();
    ASSERT_TRUE(*it == done);
  }  // destroyed while a and b are still pending
  { auto never_started = as_completed(fs, kLong); }
  // Completing now must not reach the destroyed range (AddressSanitizer checks).
  a.set_result(1);
  b.cancel();
  b.set_running_or_notify_cancel();
  EXPECT_EQ(collect(as_completed(fs, 0s)).size(), 3u);
}

TEST(AsCompletedTest, DoesNotChangeTheFutures) {
  Future<int> c = cancelled_only(), p;
  std::vector<Future<int>> fs = {c, p};
  EXPECT_THROW(collect(as_completed(fs, 0s)), TimeoutError);
  EXPECT_EQ(c.state(), FutureState::kCancelled);
  EXPECT_EQ(p.state(), FutureState::kPending);
}

// as_completed() keeps no reference to a future it has handed out (CPython's
// test_free_reference_yielded_future, Python issue 14406). The results are shared_ptrs observed
// through weak_ptrs: a result dies exactly when its future's state is freed.
using Shared = std::shared_ptr<int>;

Future<Shared> finished_with(int v, std::weak_ptr<int>& observer) {
  Future<Shared> f;
  Shared value = std::make_shared<int>(v);
  observer = value;
  f.set_result(std::move(value));
  return f;
}

TEST(AsCompletedTest, ReleasesEachYieldedFutureOnTheNextStep) {
  std::array<std::weak_ptr<int>, 2> before;
  std::vector<Future<Shared>> mine(3);  // finish during the iteration
  mine.push_back(finished_with(3, before[0]));
  mine.push_back(finished_with(4, before[1]));
  std::deque<Future<Shared>> unfinished(mine.begin(), mine.begin() + 3);
  auto range = as_completed(mine, kLong);
  mine.clear();  // from here on, the range and `unfinished` hold the only handles

  std::vector<int> order;
  std::weak_ptr<int> previous;
  for (auto it = range.begin(); it != range.end(); ++it) {
    if (!order.empty()) {
      EXPECT_TRUE(previous.expired())
          << "after the step past future " << order.back() << " the range still holds it";
    }
    const Shared& value = it->result(0s);
    order.push_back(*value);
    previous = value;
    if (!unfinished.empty()) {
      // Finishes while the range listens; our handle goes before the range hands it out.
      unfinished.front().set_result(std::make_shared<int>(static_cast<int>(order.size()) - 1));
      unfinished.pop_front();
    }
  }
  EXPECT_EQ(order, (std::vector<int>{3, 4, 0, 1, 2}));
  EXPECT_TRUE(previous.expired()) << "reaching the end must release the last future";
  EXPECT_TRUE(before[0].expired());
  EXPECT_TRUE(before[1].expired());
}

TEST(AsCompletedTest, ReleasesAFutureThatFinishedWhileItWaited) {
  std::weak_ptr<int> first_result;
  std::vector<Future<Shared>> mine = {finished_with(1, first_result), Future<Shared>()};
  Shared late = std::make_shared<int>(2);
  std::weak_ptr<int> late_result = late;
  std::promise<void> go;
  // The completer's handle and value die with its thread, which we join before looking.
  std::jthread completer =
      when_signalled(go.get_future(),
                     [f = mine[1], v = std::move(late)]() mutable { f.set_result(std::move(v)); });
  auto range = as_completed(mine, kLong);
  mine.clear();

  auto it = range.begin();
  ASSERT_TRUE(it != range.end());
  EXPECT_EQ(*it->result(0s), 1);
  go.set_value();
  ++it;  // releases the first future, then waits for the completer
  ASSERT_TRUE(it != range.end());
  EXPECT_TRUE(first_result.expired());
  completer.join();
  EXPECT_EQ(*it->result(0s), 2);
  EXPECT_FALSE(late_result.expired()) << "*it must stay valid until the next ++it";
  ++it;
  EXPECT_TRUE(it == range.end());
  EXPECT_TRUE(late_result.expired());
}

TEST(AsCompletedTest, TimeoutReleasesWhatWasHandedOutAndKeepsTheRest) {
  std::array<std::weak_ptr<int>, 2> before;
  std::optional<Future<Shared>> pending_a(std::in_place), pending_b(std::in_place);
  std::vector<Future<Shared>> mine = {*pending_a, finished_with(1, before[0]), *pending_b,
                                      finished_with(2, before[1])};
  std::optional<AsCompleted<Future<Shared>>> range(std::in_place, mine, 0s);
  mine.clear();

  auto it = range->begin();
  ASSERT_TRUE(it != range->end());
  std::weak_ptr<int> yielded = it->result(0s);
  ++it;
  EXPECT_TRUE(yielded.expired());
  ASSERT_TRUE(it != range->end());
  yielded = it->result(0s);
  try {
    ++it;
    ADD_FAILURE() << "no TimeoutError";
  } catch (const TimeoutError& e) {
    EXPECT_STREQ(e.what(), "2 (of 4) futures unfinished");
  }
  EXPECT_TRUE(yielded.expired()) << "the ++it that timed out must still release the last future";
  EXPECT_TRUE(before[0].expired());
  EXPECT_TRUE(before[1].expired());

  // The range still holds and listens to the futures it has not handed out: one that finishes
  // now is yielded by a later ++it, then released by the next.
  std::weak_ptr<int> late;
  {
    Shared value = std::make_shared<int>(3);
    late = value;
    pending_a->set_result(std::move(value));
  }
  pending_a.reset();
  EXPECT_FALSE(late.expired()) << "a future not yet handed out must be kept by the range";
  ++it;
  ASSERT_TRUE(it != range->end());
  EXPECT_EQ(*it->result(0s), 3);
  EXPECT_THROW(++it, TimeoutError);
  EXPECT_TRUE(late.expired());

  // pending_b was never handed out: the range keeps it until destroyed, and stops listening.
  range.reset();
  pending_b->set_result(std::make_shared<int>(4));  // must not reach the destroyed range
  EXPECT_EQ(*pending_b->result(0s), 4);
}

// ---------------------------------------------------------------------------------------------
// co_await outside executors: blocks like wait().

// A coroutine that runs eagerly, on the caller's thread, to its end. No executor is involved.
class Eager {
 public:
  struct promise_type {
    std::exception_ptr error;
    Eager get_return_object() {
      return Eager(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { error = std::current_exception(); }
  };

  Eager(Eager&& o) noexcept : handle_(std::exchange(o.handle_, nullptr)) {}
  Eager& operator=(Eager&&) = delete;
  ~Eager() {
    if (handle_) handle_.destroy();
  }

  // Whether the body ran to its end during the call that created it.
  bool finished() const { return handle_.done(); }
  std::exception_ptr error() const { return handle_.promise().error; }

 private:
  explicit Eager(std::coroutine_handle<promise_type> h) : handle_(h) {}
  std::coroutine_handle<promise_type> handle_;
};

struct AwaitOneReport {
  bool done_after = false;
  std::thread::id thread;
};

Eager await_one(AnyFuture f, AwaitOneReport* report) {
  co_await f.yield_until_done();
  report->done_after = f.done();
  report->thread = std::this_thread::get_id();
}

template <typename F>
Eager await_many(std::vector<F> fs, Timeout timeout, ReturnWhen when,
                 DoneAndNotDoneFutures<F>* out) {
  *out = co_await yield_until_done(fs, timeout, when);
}

TEST(YieldUntilDoneTest, SingleFutureBlocksUntilDone) {
  Future<int> f;
  std::promise<void> go;
  auto completer = when_signalled(go.get_future(), [f] { f.set_result(1); });
  go.set_value();
  AwaitOneReport report;
  Eager co = await_one(f, &report);
  EXPECT_TRUE(co.finished()) << "the coroutine suspended without an executor to resume it";
  EXPECT_EQ(co.error(), nullptr);
  EXPECT_TRUE(report.done_after);
  EXPECT_EQ(report.thread, std::this_thread::get_id());
  EXPECT_EQ(f.result(0s), 1);
}

TEST(YieldUntilDoneTest, SingleFutureAlreadyDoneOrCancelled) {
  // A cancelled future is done for a single-future wait even before it is notified.
  for (AnyFuture f : {AnyFuture(finished(1)), AnyFuture(failed("x")), AnyFuture(cancelled_only()),
                      AnyFuture(cancelled_and_notified())}) {
    auto report = call_or_give_up([f] {
      AwaitOneReport report;
      Eager co = await_one(f, &report);
      return co.finished() && report.done_after;
    });
    ASSERT_TRUE(report.has_value()) << "co_await on a done future blocked";
    EXPECT_TRUE(*report);
  }
}

TEST(YieldUntilDoneTest, SingleFutureWokenByCancel) {
  Future<int> f;
  std::promise<void> go;
  auto canceller = when_signalled(go.get_future(), [f] { f.cancel(); });
  go.set_value();
  AwaitOneReport report;
  Eager co = await_one(f, &report);
  EXPECT_TRUE(co.finished());
  EXPECT_TRUE(report.done_after);
  EXPECT_TRUE(f.cancelled());
}

TEST(YieldUntilDoneTest, ManyFuturesAllCompleted) {
  Future<int> a, b = finished(2);
  std::vector<Future<int>> fs = {a, b, a};
  std::promise<void> go;
  auto completer = when_signalled(go.get_future(), [a] { a.set_result(1); });
  go.set_value();
  DoneAndNotDoneFutures<Future<int>> r;
  Eager co = await_many(fs, std::nullopt, ALL_COMPLETED, &r);
  EXPECT_TRUE(co.finished());
  EXPECT_EQ(co.error(), nullptr);
  EXPECT_EQ(r.done, (std::vector<Future<int>>{a, b}));
  EXPECT_TRUE(r.not_done.empty());
  EXPECT_TRUE(a.done());
}

TEST(YieldUntilDoneTest, ManyFuturesFirstCompleted) {
  Future<int> a, b;
  std::vector<AnyFuture> fs = {a, b};
  std::promise<void> go;
  auto completer = when_signalled(go.get_future(), [b] { b.set_result(2); });
  go.set_value();
  DoneAndNotDoneFutures<AnyFuture> r;
  Eager co = await_many(fs, kLong, FIRST_COMPLETED, &r);
  EXPECT_TRUE(co.finished());
  EXPECT_EQ(r.done, (std::vector<AnyFuture>{b}));
  EXPECT_EQ(r.not_done, (std::vector<AnyFuture>{a}));
}

TEST(YieldUntilDoneTest, ManyFuturesTimeoutAndCancelledNotNotified) {
  Future<int> c = cancelled_only(), d = finished(4), p;
  std::vector<Future<int>> fs = {c, d, p};
  DoneAndNotDoneFutures<Future<int>> r;
  Eager co = await_many(fs, 0s, ALL_COMPLETED, &r);
  EXPECT_TRUE(co.finished());
  EXPECT_EQ(co.error(), nullptr);
  EXPECT_EQ(r.done, (std::vector<Future<int>>{d}));
  EXPECT_EQ(r.not_done, (std::vector<Future<int>>{c, p}));
}

TEST(YieldUntilDoneTest, ManyFuturesFirstException) {
  Future<int> a, b;
  std::vector<Future<int>> fs = {a, b};
  std::promise<void> go;
  auto completer = when_signalled(
      go.get_future(), [a] { a.set_exception(std::make_exception_ptr(std::runtime_error("a"))); });
  go.set_value();
  auto r = call_or_give_up([fs] {
    DoneAndNotDoneFutures<Future<int>> r;
    Eager co = await_many(fs, std::nullopt, FIRST_EXCEPTION, &r);
    return r;
  });
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->done, (std::vector<Future<int>>{a}));
  EXPECT_EQ(r->not_done, (std::vector<Future<int>>{b}));
}

}  // namespace
}  // namespace betterconcurrent
