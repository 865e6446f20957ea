// Deadlock detection for suspended coroutine tasks (Executor::join()'s DeadlockError).
//
// Contract. A suspended task waits for some futures: for all of them (co_await
// f.yield_until_done(), or ALL_COMPLETED) or for any one (FIRST_COMPLETED, FIRST_EXCEPTION).
// find_deadlocked() returns the tasks that can never resume: those whose wait can only be
// satisfied by the futures of other tasks in the returned set. It never returns a task that
// something else could still wake:
//  - a timed wait (its timer wakes it);
//  - a wait that is already satisfied (its wake-up is on its way);
//  - a wait on any future that is not the future of a task in the set: a hand-made future, a
//    future of another executor, or a task of this executor that is queued or running.
//
// Mechanism: the greatest fixpoint. Start with every untimed suspended task marked stuck; a
// task becomes unstuck when one of the futures it still waits for belongs to no stuck task
// (waiting for any) or when none of them does (waiting for all); unstuck tasks unstick their
// waiters in turn. Linear in the number of tasks and awaited futures.
//
// Why the answer is safe to act on. The task futures of a stuck set are RUNNING, so cancel()
// cannot touch them, and each is completed only by its own task, which must first be woken by
// one of the futures it waits for, all of them in the set. So the earliest completion in the
// set would need an earlier one: none ever happens. This holds for any snapshot of the
// suspended tasks, whatever else runs meanwhile, as long as each task is registered before it
// links its wake-up and unregistered only when it resumes (the scheduler's rule). The one way
// around it is to complete a task's future by hand (Future::set_result() on a task future),
// which the executors already treat as misuse.
#ifndef BETTERCONCURRENT_EXECUTOR_DEADLOCK_H_
#define BETTERCONCURRENT_EXECUTOR_DEADLOCK_H_

#include <cstddef>
#include <cstdint>
#include <exception>
#include <span>
#include <vector>

#include "future/detail/state.h"

namespace betterconcurrent::detail {

// What a suspended coroutine task waits for, kept in its awaiter (inside the coroutine frame)
// and registered with the scheduler for as long as the task may be suspended.
class Suspension {
 public:
  enum class Need : std::uint8_t { kAll, kAny };

  // `waiter` is the suspended task's own future. `awaited` lists the futures it waits for
  // (each once); one counts as satisfied once done() (kDone) or notified() (kNotified).
  Suspension(StateBase& waiter, std::span<StateBase* const> awaited, WaitNode::When when, Need need,
             bool timed) noexcept
      : waiter_(waiter), awaited_(awaited), when_(when), need_(need), timed_(timed) {}
  Suspension(const Suspension&) = delete;
  Suspension& operator=(const Suspension&) = delete;

  StateBase& waiter() const noexcept { return waiter_; }
  std::span<StateBase* const> awaited() const noexcept { return awaited_; }
  Need need() const noexcept { return need_; }
  bool timed() const noexcept { return timed_; }
  // Whether `awaited` no longer holds the task back. Nothrow.
  bool satisfied(const StateBase& awaited) const noexcept {
    return when_ == WaitNode::When::kDone ? awaited.done() : awaited.notified();
  }

  // For a deadlocked task only. Unlinks its wake-ups: after it returns, no future wakes it.
  // Nothrow.
  virtual void stop_listening() noexcept = 0;
  // Then ends it without resuming it: completes its future with `error`, destroys its
  // coroutine (and with it this object) and uncounts it. Nothrow.
  virtual void end(const std::exception_ptr& error) noexcept = 0;

  // The scheduler's registry links.
  Suspension* prev = nullptr;
  Suspension* next = nullptr;
  std::size_t registry = 0;

 protected:
  ~Suspension() = default;

 private:
  StateBase& waiter_;
  std::span<StateBase* const> awaited_;
  WaitNode::When when_;
  Need need_;
  bool timed_;
};

// The tasks among `suspended` that can never resume (see the top of this file), in the order
// given. `suspended` must not change meanwhile. May throw std::bad_alloc.
std::vector<Suspension*> find_deadlocked(const std::vector<Suspension*>& suspended);

// A DeadlockError naming each of `deadlocked` (a non-empty result of find_deadlocked()) and
// what it waits for, the first kMaxNamed of them in full. If that cannot be built, the
// std::bad_alloc instead: still an error for those tasks. Nothrow.
std::exception_ptr deadlock_error(const std::vector<Suspension*>& deadlocked) noexcept;
inline constexpr std::size_t kMaxNamed = 8;

}  // namespace betterconcurrent::detail

#endif  // BETTERCONCURRENT_EXECUTOR_DEADLOCK_H_
