// Where betterconcurrent reports what it cannot throw to anyone: a done callback that threw, a
// failed thread initializer, task exceptions that nobody observed before shutdown. Python sends
// these to the logger "concurrent.futures"; here they go to one process-wide handler.
//
// The default handler writes one line per record to stderr:
//   concurrent.futures CRITICAL: Exception in initializer: <what()>
//
// Example: capture records in a test.
//
//   std::vector<std::string> seen;
//   std::mutex mu;
//   auto previous = betterconcurrent::set_log_handler(
//       [&](const betterconcurrent::LogRecord& r) {
//         std::lock_guard lock(mu);
//         seen.push_back(r.message);
//       });
//   ...
//   betterconcurrent::set_log_handler(std::move(previous));
#ifndef BETTERCONCURRENT_FUTURE_LOG_H_
#define BETTERCONCURRENT_FUTURE_LOG_H_

#include <exception>
#include <functional>
#include <string>
#include <string_view>

namespace betterconcurrent {

// Python's logging levels that concurrent.futures uses.
enum class LogLevel { kError, kCritical };

struct LogRecord {
  LogLevel level;
  std::string message;           // e.g. "exception calling callback for future"
  std::exception_ptr exception;  // what was caught; may be null
};

using LogHandler = std::function<void(const LogRecord&)>;

// Installs `handler` (an empty one restores the default) and returns the previous handler.
// The handler may run on any thread, concurrently with itself, and must not throw: an exception
// it throws is swallowed. Thread-safe. Strong guarantee.
LogHandler set_log_handler(LogHandler handler);

// A one-line description of an exception: what() for std::exception, else a placeholder.
// Nothrow.
std::string describe_exception(const std::exception_ptr& e) noexcept;

namespace detail {
// Sends a record to the installed handler. Nothrow: a failure to log is dropped.
void log(LogLevel level, std::string_view message, std::exception_ptr exception) noexcept;
}  // namespace detail

}  // namespace betterconcurrent

#endif  // BETTERCONCURRENT_FUTURE_LOG_H_
