// JoinTracker: counts an executor's outstanding tasks (queued, running or suspended) and keeps
// the exceptions of failed tasks until someone observes them. It is what lets
// Executor::join() wait for fire-and-forget trees of tasks and report their errors.
//
// A task is counted from the moment it is accepted (before it can run, so a task that submits
// children keeps the count above zero until they are counted too) until its future is complete
// and its done callbacks have run. So when the count reaches zero, nothing is left that could
// submit more work, except threads outside the executor.
#ifndef BETTERCONCURRENT_EXECUTOR_JOIN_TRACKER_H_
#define BETTERCONCURRENT_EXECUTOR_JOIN_TRACKER_H_

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <mutex>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "future/detail/state.h"

namespace betterconcurrent::detail {

class JoinTracker {
 public:
  JoinTracker() = default;
  // Logs (ERROR) every recorded exception that was never observed.
  ~JoinTracker();
  JoinTracker(const JoinTracker&) = delete;
  JoinTracker& operator=(const JoinTracker&) = delete;

  // A task was accepted. Nothrow.
  void add() noexcept { outstanding_.fetch_add(1, std::memory_order_relaxed); }
  // A task ended (its future is done): keeps its exception, if it finished with one, for
  // take_unobserved(); if even that cannot allocate, logs it at once. Nothrow.
  void record_outcome(StateBase& state) noexcept;
  // Then, once the task itself is released, uncounts it. Returns whether no task is
  // outstanding any more. Nothrow.
  bool finished() noexcept;
  // Undoes add() for a task that was never enqueued; returns whether no task is outstanding
  // any more. Nothrow.
  bool withdraw() noexcept { return finished(); }

  std::size_t outstanding() const noexcept { return outstanding_.load(std::memory_order_seq_cst); }

  // Blocks until no task is outstanding or the deadline passes; returns whether idle.
  bool wait_idle(const Deadline& deadline);

  // Removes and returns the recorded exceptions nobody has observed yet, oldest first, marking
  // them observed. May throw std::bad_alloc (then nothing is removed).
  std::vector<std::exception_ptr> take_unobserved();

 private:
  std::atomic<std::size_t> outstanding_{0};
  std::atomic<int> waiters_{0};
  std::mutex mu_;
  std::condition_variable idle_;
  std::vector<StateRef<StateBase>> failed_ ABSL_GUARDED_BY(mu_);
};

}  // namespace betterconcurrent::detail

#endif  // BETTERCONCURRENT_EXECUTOR_JOIN_TRACKER_H_
