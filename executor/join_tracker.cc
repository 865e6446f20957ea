#include "executor/join_tracker.h"

#include <utility>

#include "future/log.h"

namespace betterconcurrent::detail {

JoinTracker::~JoinTracker() {
  for (std::exception_ptr& error : deadlocks_) {
    log(LogLevel::kError, "tasks deadlocked and nobody joined to hear of it", std::move(error));
  }
  for (StateRef<StateBase>& state : failed_) {
    if (state->claim_unobserved()) {
      log(LogLevel::kError, "exception in a task was never observed", state->stored_exception());
    }
  }
}

void JoinTracker::record_outcome(StateBase& state) noexcept {
  if (state.state() == FutureState::kFinished && state.stored_exception()) {
    try {
      std::lock_guard lock(mu_);
      failed_.push_back(StateRef<StateBase>::share(&state));
    } catch (...) {
      // No memory to keep it for join(): report it now rather than lose it.
      if (state.claim_unobserved()) {
        log(LogLevel::kError, "exception in a task (not kept for join(): out of memory)",
            state.stored_exception());
      }
    }
  }
}

bool JoinTracker::finished() noexcept {
  if (outstanding_.fetch_sub(1, std::memory_order_seq_cst) != 1) return false;
  // A joiner announces itself (waiters_) before it checks the count under mu_, so either it
  // sees zero or we see it and notify under mu_, after it started waiting.
  if (waiters_.load(std::memory_order_seq_cst) > 0) {
    std::lock_guard lock(mu_);
    idle_.notify_all();
  }
  return true;
}

JoinTracker::Waiter::Waiter(JoinTracker& tracker) noexcept : tracker_(tracker) {
  tracker_.waiters_.fetch_add(1, std::memory_order_seq_cst);
  std::lock_guard lock(tracker_.mu_);
  quiet_seen_ = tracker_.quiet_generation_;
}

JoinTracker::Waiter::~Waiter() { tracker_.waiters_.fetch_sub(1, std::memory_order_seq_cst); }

JoinTracker::WaitResult JoinTracker::Waiter::wait(const Deadline& deadline) noexcept {
  std::unique_lock lock(tracker_.mu_);
  auto woken = [&] {
    return tracker_.outstanding() == 0 || tracker_.quiet_generation_ != quiet_seen_;
  };
  if (deadline.is_never()) {
    tracker_.idle_.wait(lock, woken);
  } else if (!tracker_.idle_.wait_until(lock, deadline.at(), woken)) {
    return WaitResult::kTimedOut;
  }
  if (tracker_.outstanding() == 0) return WaitResult::kIdle;
  quiet_seen_ = tracker_.quiet_generation_;
  return WaitResult::kQuiet;
}

void JoinTracker::notify_quiet() noexcept {
  std::lock_guard lock(mu_);
  ++quiet_generation_;
  idle_.notify_all();
}

void JoinTracker::record_deadlock(std::exception_ptr error) noexcept {
  try {
    std::lock_guard lock(mu_);
    deadlocks_.push_back(error);
  } catch (...) {
    log(LogLevel::kError, "tasks deadlocked (not kept for join(): out of memory)",
        std::move(error));
  }
}

std::exception_ptr JoinTracker::take_deadlock() noexcept {
  std::lock_guard lock(mu_);
  if (deadlocks_.empty()) return nullptr;
  std::exception_ptr error = std::move(deadlocks_.front());
  deadlocks_.erase(deadlocks_.begin());
  return error;
}

std::vector<std::exception_ptr> JoinTracker::take_unobserved() {
  std::vector<StateRef<StateBase>> failed;
  std::vector<std::exception_ptr> out;
  {
    std::lock_guard lock(mu_);
    out.reserve(failed_.size());  // the only step that may throw; nothing is removed before it
    failed.swap(failed_);
  }
  for (StateRef<StateBase>& state : failed) {
    if (state->claim_unobserved()) out.push_back(state->stored_exception());
  }
  return out;
}

}  // namespace betterconcurrent::detail
