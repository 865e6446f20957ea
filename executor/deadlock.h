// Deadlock detection for suspended coroutine tasks (Executor::join()'s DeadlockError).
//
// Contract. A suspended task waits for some futures: for all of them (co_await
// f.yield_until_done(), or ALL_COMPLETED) or for any one (FIRST_COMPLETED, FIRST_EXCEPTION).
// find_deadlocked() returns the tasks that can never resume: those whose wait can only be
// satisfied by the futures of other tasks in the returned set. It never returns a task that
// something else could still wake:
//  - a timed wait (its timer wakes it);
//  - a wait that is over already (its wake-up is on its way);
//  - a wait on any future that is not the future of a task in the set: a hand-made future, a
//    future of another executor, or a task of this executor that is queued or running.
//
// Mechanism: the greatest fixpoint. Start with every untimed suspended task whose wait is not
// over marked stuck; a task becomes unstuck when one of the futures it still waits for belongs
// to no stuck task (waiting for any) or when none of them does (waiting for all); unstuck tasks
// unstick their waiters in turn. Linear in the number of tasks and awaited futures. (A future
// that is done but does not end the wait, as one with a result does not end FIRST_EXCEPTION,
// counts for neither.)
//
// Why the answer is safe to act on. The task futures of a stuck set are RUNNING, so cancel()
// cannot touch them, and each is completed only by its own task, which must first be woken by
// one of the futures it waits for, all of them in the set. So the earliest completion in the
// set would need an earlier one: none ever happens, whatever threads outside the executor do
// meanwhile. The one way around it is to complete a task's future by hand
// (Future::set_result() on a task future), which the executors already treat as misuse.
//
// Where the suspended tasks are found. A coroutine task publishes its awaiter (a Suspension)
// in a word of its own before it links its wake-up, and withdraws it when it runs again: plain
// stores. At its first suspension it also gets a SuspensionSlot in its worker's
// SuspensionRegistry, which points at that word until the task ends. A search reads the
// registries only while the scheduler holds every worker out of running tasks (Scheduler's
// gate): then no published awaiter changes or dies, and no registered task ends.
#ifndef BETTERCONCURRENT_EXECUTOR_DEADLOCK_H_
#define BETTERCONCURRENT_EXECUTOR_DEADLOCK_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <vector>

#include "future/detail/state.h"

namespace betterconcurrent::detail {

// What a suspended coroutine task waits for: implemented by its awaiter (inside the coroutine
// frame), which publishes itself in its task's SuspensionSlot while the task may be suspended.
// An interface, so that an awaiter grows by one pointer: searches are rare, suspensions are not.
class Suspension {
 public:
  enum class Need : std::uint8_t { kAll, kAny };

  // The suspended task's own future.
  virtual const StateBase& waiter() const noexcept = 0;
  // The futures it waits for (each once): all of them, or any one.
  virtual std::size_t awaited_count() const noexcept = 0;
  virtual const StateBase& awaited(std::size_t i) const noexcept = 0;
  virtual Need need() const noexcept = 0;
  // Whether a timer wakes it too.
  virtual bool timed() const noexcept = 0;
  // Whether `awaited` no longer holds it back: done() for one future, notified() in a wait for
  // several (Python's rule). Nothrow.
  virtual bool satisfied(const StateBase& awaited) const noexcept = 0;
  // Whether the wait is over already, its wake-up on its way: its future is done; all are (or,
  // for FIRST_COMPLETED, one is; for FIRST_EXCEPTION, one raised). Judged from the futures'
  // states, as satisfied() is, not from what the wake-up machinery has seen yet. Nothrow.
  virtual bool ready() const noexcept = 0;

  // For a deadlocked task only. Unlinks its wake-ups and withdraws its publication: after it
  // returns, no future wakes it and no search finds it. Nothrow.
  virtual void abandon() noexcept = 0;
  // Then ends it without resuming it: completes its future with `error`, destroys its
  // coroutine (and with it this object) and uncounts it. Nothrow.
  virtual void end(const std::exception_ptr& error) noexcept = 0;

 protected:
  Suspension() = default;
  Suspension(const Suspension&) = default;
  Suspension& operator=(const Suspension&) = default;
  ~Suspension() = default;
};

// What a coroutine task publishes while it may be suspended: one word inside the task, which
// travels with it from worker to worker, so publishing costs a store to a line the task owns.
class PublishedSuspension {
 public:
  // Before the task links its wake-up. Nothrow.
  void publish(Suspension& s) noexcept { current_.store(&s, std::memory_order_release); }
  // When the task runs again (or did not suspend after all). Nothrow.
  void withdraw() noexcept { current_.store(nullptr, std::memory_order_release); }
  Suspension* current() const noexcept { return current_.load(std::memory_order_acquire); }

 private:
  std::atomic<Suspension*> current_{nullptr};
};

// A registry's entry for one coroutine task, from its first suspension to its end: where to
// find what it publishes. The task's end clears it, and the registry then recycles it.
class SuspensionSlot {
 public:
  // The task ended: the slot may go to another task. Its last touch of the slot. Nothrow.
  void end() noexcept { published_.store(nullptr, std::memory_order_release); }

 private:
  friend class SuspensionRegistry;
  std::atomic<const PublishedSuspension*> published_{nullptr};  // null once the task ended
  SuspensionSlot* next_ = nullptr;  // the registry's list, or its free list
};

// One worker's slots. Its worker acquires them without a lock (it only ever prepends to the
// list) and recycles them under the lock, which a search also holds while it walks the list.
class SuspensionRegistry {
 public:
  SuspensionRegistry() = default;
  SuspensionRegistry(const SuspensionRegistry&) = delete;
  SuspensionRegistry& operator=(const SuspensionRegistry&) = delete;
  ~SuspensionRegistry();

  // Owner only. A slot for a task that suspends for the first time and publishes in
  // `published`, or null if there is no memory for one (the task then suspends unregistered:
  // never reported, and never the reason another task is). Nothrow.
  SuspensionSlot* acquire(const PublishedSuspension& published) noexcept;
  // Owner only: recycles the ended slots when they may be most of the list. `outstanding()`
  // bounds the live slots (each belongs to an outstanding task) and is read only when the list
  // is long, so the work stays amortized constant per slot. Nothrow.
  template <typename Outstanding>
  void trim(Outstanding outstanding) noexcept {
    if (size_ > kChunk && size_ > 2 * outstanding() + kChunk) recycle_ended();
  }

  // Appends every published Suspension to `out`. Only while no worker runs tasks (see the top
  // of this file). May throw std::bad_alloc.
  void collect(std::vector<Suspension*>& out);

 private:
  static constexpr std::size_t kChunk = 256;  // slots allocated at a time
  void recycle_ended() noexcept;

  std::mutex mu_;  // held by recycling and by searches
  std::atomic<SuspensionSlot*> slots_{nullptr};
  std::size_t size_ = 0;                                   // owner only: the length of slots_
  SuspensionSlot* free_ = nullptr;                         // owner only
  std::vector<std::unique_ptr<SuspensionSlot[]>> chunks_;  // owner only
};

// The tasks among `suspended` that can never resume (see the top of this file), in the order
// given. The Suspensions must not change meanwhile. May throw std::bad_alloc.
std::vector<Suspension*> find_deadlocked(const std::vector<Suspension*>& suspended);

// A DeadlockError naming each of `deadlocked` (a non-empty result of find_deadlocked()) and
// what it waits for, the first kMaxNamed of them in full. If that cannot be built, the
// std::bad_alloc instead: still an error for those tasks. Nothrow.
std::exception_ptr deadlock_error(const std::vector<Suspension*>& deadlocked) noexcept;
inline constexpr std::size_t kMaxNamed = 8;

}  // namespace betterconcurrent::detail

#endif  // BETTERCONCURRENT_EXECUTOR_DEADLOCK_H_
