#include "executor/join_tracker.h"

#include <utility>

#include "future/log.h"

namespace betterconcurrent::detail {

JoinTracker::~JoinTracker() {
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

bool JoinTracker::wait_idle(const Deadline& deadline) {
  waiters_.fetch_add(1, std::memory_order_seq_cst);
  bool idle;
  {
    std::unique_lock lock(mu_);
    auto is_idle = [&] { return outstanding() == 0; };
    if (deadline.is_never()) {
      idle_.wait(lock, is_idle);
      idle = true;
    } else {
      idle = idle_.wait_until(lock, deadline.at(), is_idle);
    }
  }
  waiters_.fetch_sub(1, std::memory_order_relaxed);
  return idle;
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
