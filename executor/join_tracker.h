// JoinTracker: counts an executor's outstanding tasks (queued, running or suspended) and keeps
// the exceptions of failed tasks (and the deadlocks the scheduler broke) until someone observes
// them. It is what lets Executor::join() wait for fire-and-forget trees of tasks and report
// their errors.
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
#include <cstdint>
#include <exception>
#include <mutex>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "future/detail/state.h"

namespace betterconcurrent::detail {

class JoinTracker {
 public:
  JoinTracker() = default;
  // Logs (ERROR) every recorded exception and deadlock that was never observed.
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

  // Blocks until no task is outstanding (kIdle), the deadline passes (kTimedOut), or the pool
  // went quiet (kQuiet: see notify_quiet()) since the last wait of this Waiter. A Waiter is
  // announced from construction to destruction, so that notify_quiet() knows someone listens.
  enum class WaitResult { kIdle, kQuiet, kTimedOut };
  class Waiter {
   public:
    explicit Waiter(JoinTracker& tracker) noexcept;
    ~Waiter();
    Waiter(const Waiter&) = delete;
    Waiter& operator=(const Waiter&) = delete;
    WaitResult wait(const Deadline& deadline) noexcept;

   private:
    JoinTracker& tracker_;
    std::uint64_t quiet_seen_;
  };
  // Whether a Waiter is announced. Nothrow.
  bool has_waiters() const noexcept { return waiters_.load(std::memory_order_seq_cst) > 0; }
  // Wakes every Waiter with kQuiet: the scheduler calls it when its last busy worker goes idle
  // while tasks are outstanding (all of them suspended). Nothrow.
  void notify_quiet() noexcept;

  // Removes and returns the recorded exceptions nobody has observed yet, oldest first, marking
  // them observed. May throw std::bad_alloc (then nothing is removed).
  std::vector<std::exception_ptr> take_unobserved();

  // Keeps the DeadlockError of tasks the scheduler ended, for join() to throw; their futures'
  // own copies are marked observed by then. If it cannot be kept, logs it now. Nothrow.
  void record_deadlock(std::exception_ptr error) noexcept;
  // The oldest recorded deadlock not yet taken, or null. Nothrow.
  std::exception_ptr take_deadlock() noexcept;

 private:
  std::atomic<std::size_t> outstanding_{0};
  std::atomic<int> waiters_{0};
  std::mutex mu_;
  std::condition_variable idle_;  // idle, or quiet
  std::uint64_t quiet_generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<StateRef<StateBase>> failed_ ABSL_GUARDED_BY(mu_);
  std::vector<std::exception_ptr> deadlocks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace betterconcurrent::detail

#endif  // BETTERCONCURRENT_EXECUTOR_JOIN_TRACKER_H_
