#include "future/log.h"

#include <pthread.h>

#include <cstdio>
#include <mutex>
#include <utility>

#include "future/exceptions.h"

namespace betterconcurrent {
namespace {

std::mutex& handler_mutex() {
  static std::mutex mu;
  return mu;
}

// fork() holds the lock across itself, so that a child never inherits it held by a thread that
// does not exist there: the child can still log.
void lock_for_fork() { handler_mutex().lock(); }
void unlock_after_fork() { handler_mutex().unlock(); }
[[maybe_unused]] const int g_fork_guard =
    pthread_atfork(&lock_for_fork, &unlock_after_fork, &unlock_after_fork);

LogHandler& handler_slot() {
  static LogHandler handler;
  return handler;
}

void default_handler(const LogRecord& record) {
  const char* level = record.level == LogLevel::kCritical ? "CRITICAL" : "ERROR";
  if (record.exception) {
    std::fprintf(stderr, "concurrent.futures %s: %s: %s\n", level, record.message.c_str(),
                 describe_exception(record.exception).c_str());
  } else {
    std::fprintf(stderr, "concurrent.futures %s: %s\n", level, record.message.c_str());
  }
}

}  // namespace

LogHandler set_log_handler(LogHandler handler) {
  std::lock_guard lock(handler_mutex());
  std::swap(handler_slot(), handler);
  return handler;
}

std::string describe_exception(const std::exception_ptr& e) noexcept {
  if (!e) return "no exception";
  try {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      return ex.what();
    } catch (...) {
      return "exception of a type not derived from std::exception";
    }
  } catch (...) {
    return {};  // allocating the description failed
  }
}

UnobservedTaskErrors::UnobservedTaskErrors(std::vector<std::exception_ptr> exceptions)
    : Error(std::to_string(exceptions.size()) +
            " task exception(s) were never observed; the first: " +
            describe_exception(exceptions.empty() ? nullptr : exceptions.front())),
      exceptions_(std::move(exceptions)) {}

namespace detail {

void log(LogLevel level, std::string_view message, std::exception_ptr exception) noexcept {
  try {
    LogRecord record{level, std::string(message), std::move(exception)};
    LogHandler handler;
    {
      std::lock_guard lock(handler_mutex());
      handler = handler_slot();
    }
    if (handler) {
      handler(record);
    } else {
      default_handler(record);
    }
  } catch (...) {
    // A logger that cannot log has nowhere to report; the record is dropped.
  }
}

}  // namespace detail
}  // namespace betterconcurrent
