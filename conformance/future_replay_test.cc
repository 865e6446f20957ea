// CPython's FutureTests, replayed against betterconcurrent::Future. Each case is named after
// its CPython id (test.test_concurrent_futures.FutureTests.<method>); manifest.tsv lists them.
#include <chrono>
#include <exception>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "conformance/replay.h"
#include "future/exceptions.h"
#include "future/future.h"
#include "gtest/gtest.h"
#include "testing/log_capture.h"

namespace betterconcurrent::replay {
namespace {

using test_util::LogCapture;
using namespace std::chrono_literals;

class FutureTests : public BaseTestCase {};

// The message of the exception `e` holds.
std::string what(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  }
}

bool is_system_error(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::system_error&) {
    return true;
  } catch (...) {
    return false;
  }
}

// The records a callback that raised left in the log, as one string per record: the message,
// then what the exception says. Python's logger prints both (the record and its traceback).
std::string logged(const LogCapture& log) {
  std::string out;
  for (const LogRecord& r : log.records()) {
    out += r.message + ": " + describe_exception(r.exception) + "\n";
  }
  return out;
}

TEST_F(FutureTests, test_done_callback_with_result) {
  std::optional<int> callback_result;
  Future<int> f;
  f.add_done_callback(
      [&](const Future<int>& callback_future) { callback_result = callback_future.result(); });
  f.set_result(5);
  EXPECT_EQ(callback_result, 5);
}

TEST_F(FutureTests, test_done_callback_with_exception) {
  std::exception_ptr callback_exception;
  Future<int> f;
  f.add_done_callback([&](const Future<int>& callback_future) {
    callback_exception = callback_future.exception();
  });
  // Exception('test') is std::runtime_error("test"); its args are its what().
  f.set_exception(std::make_exception_ptr(std::runtime_error("test")));
  ASSERT_TRUE(callback_exception);
  EXPECT_EQ(what(callback_exception), "test");
}

TEST_F(FutureTests, test_done_callback_with_cancel) {
  std::optional<bool> was_cancelled;
  Future<int> f;
  f.add_done_callback(
      [&](const Future<int>& callback_future) { was_cancelled = callback_future.cancelled(); });
  EXPECT_TRUE(f.cancel());
  EXPECT_EQ(was_cancelled, true);
}

TEST_F(FutureTests, test_done_callback_raises) {
  // CPython captures stderr, where its logger prints; the port's log handler is the hook.
  LogCapture log;
  bool raising_was_called = false;
  bool fn_was_called = false;
  Future<int> f;
  f.add_done_callback([&](const Future<int>&) {
    raising_was_called = true;
    throw std::runtime_error("doh!");
  });
  f.add_done_callback([&](const Future<int>&) { fn_was_called = true; });
  f.set_result(5);
  EXPECT_TRUE(raising_was_called);
  EXPECT_TRUE(fn_was_called);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log.records()[0].level, LogLevel::kError);  // Python's LOGGER.exception()
  EXPECT_NE(logged(log).find("doh!"), std::string::npos) << logged(log);
}

TEST_F(FutureTests, test_done_callback_already_successful) {
  std::optional<int> callback_result;
  Future<int> f;
  f.set_result(5);
  f.add_done_callback(
      [&](const Future<int>& callback_future) { callback_result = callback_future.result(); });
  EXPECT_EQ(callback_result, 5);
}

TEST_F(FutureTests, test_done_callback_already_failed) {
  std::exception_ptr callback_exception;
  Future<int> f;
  f.set_exception(std::make_exception_ptr(std::runtime_error("test")));
  f.add_done_callback([&](const Future<int>& callback_future) {
    callback_exception = callback_future.exception();
  });
  ASSERT_TRUE(callback_exception);
  EXPECT_EQ(what(callback_exception), "test");
}

TEST_F(FutureTests, test_done_callback_already_cancelled) {
  std::optional<bool> was_cancelled;
  Future<int> f;
  EXPECT_TRUE(f.cancel());
  f.add_done_callback(
      [&](const Future<int>& callback_future) { was_cancelled = callback_future.cancelled(); });
  EXPECT_EQ(was_cancelled, true);
}

TEST_F(FutureTests, test_done_callback_raises_already_succeeded) {
  LogCapture log;
  Future<int> f;
  // Already finished: the callback runs at once, in add_done_callback().
  f.set_result(5);
  f.add_done_callback([](const Future<int>&) { throw std::runtime_error("doh!"); });
  EXPECT_NE(logged(log).find("exception calling callback for"), std::string::npos) << logged(log);
  EXPECT_NE(logged(log).find("doh!"), std::string::npos) << logged(log);
}

TEST_F(FutureTests, test_repr) {
  // repr() is to_string(); OSError is std::system_error.
  auto matches = [](const AnyFuture& f, const std::string& pattern) {
    return std::regex_search(to_string(f), std::regex(pattern));
  };
  EXPECT_TRUE(matches(pending_future(), "<Future at 0x[0-9a-f]+ state=pending>"));
  EXPECT_TRUE(matches(running_future(), "<Future at 0x[0-9a-f]+ state=running>"));
  EXPECT_TRUE(matches(cancelled_future(), "<Future at 0x[0-9a-f]+ state=cancelled>"));
  EXPECT_TRUE(matches(cancelled_and_notified_future(), "<Future at 0x[0-9a-f]+ state=cancelled>"));
  EXPECT_TRUE(matches(exception_future(),
                      "<Future at 0x[0-9a-f]+ state=finished raised std::system_error>"))
      << to_string(exception_future());
  EXPECT_TRUE(matches(successful_future(), "<Future at 0x[0-9a-f]+ state=finished returned int>"))
      << to_string(successful_future());
}

TEST_F(FutureTests, test_cancel) {
  Future<int> f1 = pending_future();
  Future<int> f2 = running_future();
  Future<int> f3 = cancelled_future();
  Future<int> f4 = cancelled_and_notified_future();
  Future<int> f5 = exception_future();
  Future<int> f6 = successful_future();

  EXPECT_TRUE(f1.cancel());
  EXPECT_EQ(f1.state(), FutureState::kCancelled);

  EXPECT_FALSE(f2.cancel());
  EXPECT_EQ(f2.state(), FutureState::kRunning);

  EXPECT_TRUE(f3.cancel());
  EXPECT_EQ(f3.state(), FutureState::kCancelled);

  EXPECT_TRUE(f4.cancel());
  EXPECT_EQ(f4.state(), FutureState::kCancelledAndNotified);

  EXPECT_FALSE(f5.cancel());
  EXPECT_EQ(f5.state(), FutureState::kFinished);

  EXPECT_FALSE(f6.cancel());
  EXPECT_EQ(f6.state(), FutureState::kFinished);
}

TEST_F(FutureTests, test_cancelled) {
  EXPECT_FALSE(pending_future().cancelled());
  EXPECT_FALSE(running_future().cancelled());
  EXPECT_TRUE(cancelled_future().cancelled());
  EXPECT_TRUE(cancelled_and_notified_future().cancelled());
  EXPECT_FALSE(exception_future().cancelled());
  EXPECT_FALSE(successful_future().cancelled());
}

TEST_F(FutureTests, test_done) {
  EXPECT_FALSE(pending_future().done());
  EXPECT_FALSE(running_future().done());
  EXPECT_TRUE(cancelled_future().done());
  EXPECT_TRUE(cancelled_and_notified_future().done());
  EXPECT_TRUE(exception_future().done());
  EXPECT_TRUE(successful_future().done());
}

TEST_F(FutureTests, test_running) {
  EXPECT_FALSE(pending_future().running());
  EXPECT_TRUE(running_future().running());
  EXPECT_FALSE(cancelled_future().running());
  EXPECT_FALSE(cancelled_and_notified_future().running());
  EXPECT_FALSE(exception_future().running());
  EXPECT_FALSE(successful_future().running());
}

TEST_F(FutureTests, test_result_with_timeout) {
  EXPECT_THROW(pending_future().result(0s), TimeoutError);
  EXPECT_THROW(running_future().result(0s), TimeoutError);
  EXPECT_THROW(cancelled_future().result(0s), CancelledError);
  EXPECT_THROW(cancelled_and_notified_future().result(0s), CancelledError);
  EXPECT_THROW(exception_future().result(0s), std::system_error);
  EXPECT_EQ(successful_future().result(0s), 42);
}

TEST_F(FutureTests, test_result_with_success) {
  Future<int> f1 = pending_future();
  pid_t waiter = current_tid();
  // Completes f1 once the main thread is blocked in result() (CPython sleeps a second).
  std::thread t([&] {
    EXPECT_TRUE(blocked_in_wait(waiter));
    f1.set_result(42);
  });
  EXPECT_EQ(f1.result(5s), 42);
  t.join();
}

TEST_F(FutureTests, test_result_with_cancel) {
  Future<int> f1 = pending_future();
  pid_t waiter = current_tid();
  std::thread t([&] {
    EXPECT_TRUE(blocked_in_wait(waiter));
    f1.cancel();
  });
  EXPECT_THROW(f1.result(kLongTimeout), CancelledError);
  t.join();
}

TEST_F(FutureTests, test_exception_with_timeout) {
  EXPECT_THROW(pending_future().exception(0s), TimeoutError);
  EXPECT_THROW(running_future().exception(0s), TimeoutError);
  EXPECT_THROW(cancelled_future().exception(0s), CancelledError);
  EXPECT_THROW(cancelled_and_notified_future().exception(0s), CancelledError);
  EXPECT_TRUE(is_system_error(exception_future().exception(0s)));
  EXPECT_EQ(successful_future().exception(0s), nullptr);
}

TEST_F(FutureTests, test_exception_with_success) {
  Future<int> f1 = pending_future();
  pid_t waiter = current_tid();
  // CPython finishes f1 by hand under its condition; set_exception() is the public way.
  std::thread t([&] {
    EXPECT_TRUE(blocked_in_wait(waiter));
    f1.set_exception(std::make_exception_ptr(std::system_error(std::error_code())));
  });
  EXPECT_TRUE(is_system_error(f1.exception(kLongTimeout)));
  t.join();
}

TEST_F(FutureTests, test_multiple_set_result) {
  Future<int> f = pending_future();
  f.set_result(1);
  try {
    f.set_result(2);
    ADD_FAILURE() << "set_result() on a finished future did not throw";
  } catch (const InvalidStateError& e) {
    EXPECT_TRUE(std::regex_search(
        e.what(), std::regex("FINISHED: <Future at 0x[0-9a-f]+ state=finished returned int>")))
        << e.what();
  }
  EXPECT_TRUE(f.done());
  EXPECT_EQ(f.result(), 1);
}

TEST_F(FutureTests, test_multiple_set_exception) {
  Future<int> f = pending_future();
  // ValueError is std::invalid_argument.
  std::exception_ptr e = std::make_exception_ptr(std::invalid_argument(""));
  f.set_exception(e);
  try {
    f.set_exception(std::make_exception_ptr(std::runtime_error("")));
    ADD_FAILURE() << "set_exception() on a finished future did not throw";
  } catch (const InvalidStateError& error) {
    EXPECT_TRUE(std::regex_search(
        error.what(),
        std::regex(
            "FINISHED: <Future at 0x[0-9a-f]+ state=finished raised std::invalid_argument>")))
        << error.what();
  }
  EXPECT_EQ(f.exception(), e);
}

}  // namespace
}  // namespace betterconcurrent::replay
