// Test helper: captures the library's log records (future/log.h) while alive.
#ifndef BETTERCONCURRENT_TESTING_LOG_CAPTURE_H_
#define BETTERCONCURRENT_TESTING_LOG_CAPTURE_H_

#include <cstddef>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "future/log.h"

namespace betterconcurrent::test_util {

// Installs a log handler that records everything, and restores the previous one.
class LogCapture {
 public:
  LogCapture()
      : previous_(set_log_handler([this](const LogRecord& r) {
          std::lock_guard lock(mu_);
          records_.push_back(r);
        })) {}
  ~LogCapture() { set_log_handler(std::move(previous_)); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  // A copy of the records so far.
  std::vector<LogRecord> records() const {
    std::lock_guard lock(mu_);
    return records_;
  }

  // How many records so far.
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return records_.size();
  }

  // How many records so far have exactly this message.
  int count(const std::string& message) const {
    std::lock_guard lock(mu_);
    int n = 0;
    for (const auto& r : records_) n += r.message == message;
    return n;
  }

 private:
  mutable std::mutex mu_;
  std::vector<LogRecord> records_;
  LogHandler previous_;  // last: the handler above may run as soon as it is installed
};

}  // namespace betterconcurrent::test_util

#endif  // BETTERCONCURRENT_TESTING_LOG_CAPTURE_H_
