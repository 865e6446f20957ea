// Tests of done callbacks: order, thread, immediacy, cancellation, errors, argument types.
#include <atomic>
#include <chrono>
#include <exception>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "future/exceptions.h"
#include "future/future.h"
#include "future/log.h"
#include "gtest/gtest.h"
#include "testing/log_capture.h"

namespace betterconcurrent {
namespace {

using namespace std::chrono_literals;

constexpr auto kLong = std::chrono::seconds(10);

using test_util::LogCapture;

TEST(CallbackTest, RunInTheOrderAdded) {
  Future<int> f;
  std::vector<int> order;
  for (int i = 0; i < 6; ++i) {
    f.add_done_callback([&order, i](const Future<int>&) { order.push_back(i); });
  }
  EXPECT_TRUE(order.empty()) << "callbacks ran before the future was done";
  f.set_result(1);
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5}));
}

TEST(CallbackTest, RunOnceEach) {
  Future<int> f;
  int calls = 0;
  f.add_done_callback([&](const Future<int>&) { ++calls; });
  f.set_result(1);
  EXPECT_THROW(f.set_result(2), InvalidStateError);
  EXPECT_FALSE(f.cancel());
  (void)f.result(0s);
  EXPECT_EQ(calls, 1);
}

TEST(CallbackTest, SeeTheFinishedFuture) {
  Future<int> f;
  bool checked = false;
  f.add_done_callback([&](const Future<int>& g) {
    EXPECT_TRUE(g.done());
    EXPECT_EQ(g.state(), FutureState::kFinished);
    EXPECT_EQ(g.result(0s), 31);  // no waiting, no TimeoutError
    checked = true;
  });
  f.set_result(31);
  EXPECT_TRUE(checked);
}

TEST(CallbackTest, ReceiveTheTypedFuture) {
  Future<std::string> f;
  Future<std::string> seen;
  f.add_done_callback([&](const Future<std::string>& g) {
    static_assert(std::is_same_v<decltype(g.result()), const std::string&>);
    seen = g;
  });
  f.set_result("typed");
  EXPECT_TRUE(seen == f);
  EXPECT_EQ(seen.result(0s), "typed");
}

TEST(CallbackTest, CallableByValueParameter) {
  Future<int> f;
  int got = 0;
  f.add_done_callback([&](Future<int> g) { got = g.result(0s); });
  f.set_result(3);
  EXPECT_EQ(got, 3);
}

TEST(CallbackTest, AnyFutureCallbackReceivesAnyFuture) {
  Future<int> f;
  AnyFuture any = f;
  bool same = false;
  any.add_done_callback([&](const AnyFuture& g) { same = (g == f) && g.done(); });
  f.set_result(2);
  EXPECT_TRUE(same);
}

TEST(CallbackTest, VoidFutureCallback) {
  Future<void> f;
  bool ran = false;
  f.add_done_callback([&](const Future<void>& g) {
    g.result(0s);
    ran = true;
  });
  f.set_result();
  EXPECT_TRUE(ran);
}

TEST(CallbackTest, RunInTheCompletingThreadBeforeSetResultReturns) {
  Future<int> f;
  std::thread::id ran_in;
  f.add_done_callback([&](const Future<int>&) { ran_in = std::this_thread::get_id(); });
  bool ran_before_return = false;
  std::thread completer([&] {
    f.set_result(1);
    ran_before_return = ran_in == std::this_thread::get_id();
  });
  const std::thread::id completer_id = completer.get_id();
  completer.join();
  EXPECT_EQ(ran_in, completer_id);
  EXPECT_TRUE(ran_before_return);
}

TEST(CallbackTest, RunInTheThreadThatSetsAnException) {
  Future<int> f;
  std::thread::id ran_in;
  f.add_done_callback([&](const Future<int>&) { ran_in = std::this_thread::get_id(); });
  std::thread completer([f] { f.set_exception(std::make_exception_ptr(std::runtime_error("x"))); });
  const std::thread::id completer_id = completer.get_id();
  completer.join();
  EXPECT_EQ(ran_in, completer_id);
}

TEST(CallbackTest, RunAtOnceInTheAddingThreadIfAlreadyDone) {
  Future<int> f;
  f.set_result(9);
  int calls = 0;
  std::thread::id ran_in;
  int seen = 0;
  f.add_done_callback([&](const Future<int>& g) {
    ++calls;
    ran_in = std::this_thread::get_id();
    seen = g.result(0s);
  });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(ran_in, std::this_thread::get_id());
  EXPECT_EQ(seen, 9);

  // And from another thread, in that thread.
  std::thread adder([&] {
    f.add_done_callback([&](const Future<int>&) { ran_in = std::this_thread::get_id(); });
  });
  const std::thread::id adder_id = adder.get_id();
  adder.join();
  EXPECT_EQ(ran_in, adder_id);
}

TEST(CallbackTest, RunAtOnceOnCancelledFuture) {
  Future<int> f;
  ASSERT_TRUE(f.cancel());
  bool ran = false;
  f.add_done_callback([&](const Future<int>& g) { ran = g.cancelled(); });
  EXPECT_TRUE(ran);

  ASSERT_FALSE(f.set_running_or_notify_cancel());
  ran = false;
  f.add_done_callback([&](const Future<int>& g) { ran = g.cancelled(); });
  EXPECT_TRUE(ran);
}

TEST(CallbackTest, RunOnCancelInTheCancellingThread) {
  Future<int> f;
  std::vector<int> order;
  std::thread::id ran_in;
  bool saw_cancelled = false;
  f.add_done_callback([&](const Future<int>& g) {
    order.push_back(0);
    ran_in = std::this_thread::get_id();
    saw_cancelled = g.cancelled();
    EXPECT_THROW(g.result(0s), CancelledError);
  });
  f.add_done_callback([&](const Future<int>&) { order.push_back(1); });
  std::thread canceller([f] { EXPECT_TRUE(f.cancel()); });
  const std::thread::id canceller_id = canceller.get_id();
  canceller.join();
  EXPECT_EQ(order, (std::vector<int>{0, 1}));
  EXPECT_EQ(ran_in, canceller_id);
  EXPECT_TRUE(saw_cancelled);

  // Neither a second cancel() nor the notification runs them again.
  EXPECT_TRUE(f.cancel());
  EXPECT_FALSE(f.set_running_or_notify_cancel());
  EXPECT_EQ(order.size(), 2u);
}

TEST(CallbackTest, NotRunWhenCancelFails) {
  Future<int> f;
  int calls = 0;
  f.add_done_callback([&](const Future<int>&) { ++calls; });
  ASSERT_TRUE(f.set_running_or_notify_cancel());
  EXPECT_FALSE(f.cancel());
  EXPECT_EQ(calls, 0);
  f.set_result(1);
  EXPECT_EQ(calls, 1);
}

TEST(CallbackTest, NotRunBySetRunning) {
  Future<int> f;
  int calls = 0;
  f.add_done_callback([&](const Future<int>&) { ++calls; });
  ASSERT_TRUE(f.set_running_or_notify_cancel());
  EXPECT_EQ(calls, 0);
}

TEST(CallbackTest, ThrowingCallbackIsLoggedAndLaterCallbacksRun) {
  LogCapture log;
  Future<int> f;
  std::vector<int> order;
  f.add_done_callback([&](const Future<int>&) { order.push_back(0); });
  f.add_done_callback([&](const Future<int>&) {
    order.push_back(1);
    throw std::runtime_error("callback failed");
  });
  f.add_done_callback([&](const Future<int>&) { order.push_back(2); });
  EXPECT_NO_THROW(f.set_result(1));
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(f.result(0s), 1);

  auto records = log.records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].level, LogLevel::kError);
  EXPECT_EQ(records[0].message, "exception calling callback for future");
  ASSERT_NE(records[0].exception, nullptr);
  try {
    std::rethrow_exception(records[0].exception);
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "callback failed");
  } catch (...) {
    ADD_FAILURE() << "logged the wrong exception";
  }
}

TEST(CallbackTest, NonStdExceptionFromCallbackIsLogged) {
  LogCapture log;
  Future<int> f;
  bool later = false;
  f.add_done_callback([](const Future<int>&) { throw 42; });
  f.add_done_callback([&](const Future<int>&) { later = true; });
  ASSERT_TRUE(f.cancel());
  EXPECT_TRUE(later);
  auto records = log.records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].level, LogLevel::kError);
  EXPECT_EQ(records[0].message, "exception calling callback for future");
  try {
    std::rethrow_exception(records[0].exception);
  } catch (int v) {
    EXPECT_EQ(v, 42);
  } catch (...) {
    ADD_FAILURE() << "logged the wrong exception";
  }
}

TEST(CallbackTest, EveryThrowingCallbackIsLogged) {
  LogCapture log;
  Future<int> f;
  for (int i = 0; i < 3; ++i) f.add_done_callback([i](const Future<int>&) { throw i; });
  f.set_result(0);
  auto records = log.records();
  ASSERT_EQ(records.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    try {
      std::rethrow_exception(records[i].exception);
    } catch (int v) {
      EXPECT_EQ(v, i) << "records out of callback order";
    }
  }
}

TEST(CallbackTest, ThrowingCallbackOnDoneFutureIsLoggedNotThrown) {
  LogCapture log;
  Future<int> f;
  f.set_result(1);
  EXPECT_NO_THROW(f.add_done_callback([](const Future<int>&) { throw std::logic_error("late"); }));
  auto records = log.records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].level, LogLevel::kError);
  EXPECT_EQ(records[0].message, "exception calling callback for future");
}

TEST(CallbackTest, CallbackAddedFromACallbackRunsAtOnce) {
  Future<int> f;
  std::vector<std::string> order;
  f.add_done_callback([&](const Future<int>& g) {
    order.push_back("outer begin");
    g.add_done_callback([&](const Future<int>&) { order.push_back("inner"); });
    order.push_back("outer end");
  });
  f.add_done_callback([&](const Future<int>&) { order.push_back("second"); });
  f.set_result(1);
  EXPECT_EQ(order, (std::vector<std::string>{"outer begin", "inner", "outer end", "second"}));
}

TEST(CallbackTest, CallbackMayCompleteAnotherFuture) {
  Future<int> a;
  Future<int> b;
  a.add_done_callback([b](const Future<int>& g) { b.set_result(g.result(0s) + 1); });
  std::thread t([a] { a.set_result(1); });
  EXPECT_EQ(b.result(kLong), 2);
  t.join();
}

TEST(CallbackTest, PendingCallbacksAreDestroyedWithTheFuture) {
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> watch = token;
  {
    Future<int> f;
    f.add_done_callback([token = std::move(token)](const Future<int>&) {});
    EXPECT_FALSE(watch.expired());
  }
  EXPECT_TRUE(watch.expired()) << "a never-run callback leaked with its captures";
}

TEST(CallbackTest, CallbackAddedConcurrentlyWithCompletionRunsExactlyOnce) {
  for (int round = 0; round < 200; ++round) {
    Future<int> f;
    std::atomic<int> calls{0};
    std::atomic<int> arrived{0};
    std::thread completer([&] {
      arrived.fetch_add(1);
      while (arrived.load() < 2) std::this_thread::yield();
      f.set_result(round);
    });
    arrived.fetch_add(1);
    while (arrived.load() < 2) std::this_thread::yield();
    f.add_done_callback([&](const Future<int>& g) {
      EXPECT_EQ(g.result(0s), round);
      calls.fetch_add(1);
    });
    completer.join();
    ASSERT_EQ(calls.load(), 1);
  }
}

TEST(CallbackTest, ManyThreadsAddingCallbacksAllRunOnce) {
  Future<int> f;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;
  std::atomic<int> calls{0};
  std::promise<void> go;
  std::shared_future<void> go_f = go.get_future().share();
  std::vector<std::thread> adders;
  for (int t = 0; t < kThreads; ++t) {
    adders.emplace_back([&, go_f] {
      go_f.wait();
      for (int i = 0; i < kPerThread; ++i) {
        f.add_done_callback([&](const Future<int>&) { calls.fetch_add(1); });
      }
    });
  }
  go.set_value();
  f.set_result(1);
  for (auto& t : adders) t.join();
  EXPECT_EQ(calls.load(), kThreads * kPerThread);
}

}  // namespace
}  // namespace betterconcurrent
