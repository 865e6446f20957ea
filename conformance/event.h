// Python's threading.Event, and the bound on the conformance suite's waits. No GoogleTest here:
// exit_child, a plain program, uses it too.
#ifndef BETTERCONCURRENT_CONFORMANCE_EVENT_H_
#define BETTERCONCURRENT_CONFORMANCE_EVENT_H_

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace betterconcurrent::replay {

// Generous bound for waits that must succeed: a deadlock fails the test instead of hanging it.
inline constexpr std::chrono::seconds kLongTimeout{30};

// Python's threading.Event.
class Event {
 public:
  void set() {
    std::lock_guard lock(mu_);
    set_ = true;
    cv_.notify_all();
  }
  bool is_set() const {
    std::lock_guard lock(mu_);
    return set_;
  }
  // Returns whether the event is set, waiting up to `timeout`.
  bool wait(std::chrono::duration<double> timeout = kLongTimeout) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [this] { return set_; });
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool set_ = false;
};

}  // namespace betterconcurrent::replay

#endif  // BETTERCONCURRENT_CONFORMANCE_EVENT_H_
