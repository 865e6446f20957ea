// The shared state behind Future handles: Python's Future object minus its Python face.
//
// Python's state machine, with its two kinds of listeners:
//
//   PENDING ──set_running_or_notify_cancel()──▶ RUNNING ──set_result/set_exception──▶ FINISHED
//      │                                                                                ▲
//      ├──set_result/set_exception──────────────────────────────────────────────────────┘
//      └──cancel()──▶ CANCELLED ──set_running_or_notify_cancel()──▶ CANCELLED_AND_NOTIFIED
//
// - "done" listeners (blocking result()/exception(), cooperative single-future waits, done
//   callbacks) fire when the state becomes CANCELLED or FINISHED.
// - "notified" listeners (Python's `_waiters`: wait(), as_completed(), cooperative waits on
//   several futures) fire when it becomes FINISHED or CANCELLED_AND_NOTIFIED. A future that is
//   cancelled but not yet notified is not done for them, exactly as in Python.
//
// Listeners fire under the state's lock (as Python notifies under its condition), so a listener
// that unlinks itself under the same lock knows no notification is still in flight: that is what
// lets a waiter's node live on a stack or inside a coroutine frame. Done callbacks run after the
// lock is released, in the order they were added.
#ifndef BETTERCONCURRENT_FUTURE_DETAIL_STATE_H_
#define BETTERCONCURRENT_FUTURE_DETAIL_STATE_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "future/detail/lock.h"

namespace betterconcurrent {

// Python's state names (concurrent.futures._base.PENDING, ...).
enum class FutureState : std::uint8_t {
  kPending,
  kRunning,
  kCancelled,
  kCancelledAndNotified,
  kFinished,
};

// Python accepts `timeout=None` (wait forever) or seconds. Any std::chrono duration converts.
using Timeout = std::optional<std::chrono::duration<double>>;

namespace detail {

class StateBase;

// A point in time, or never. Negative timeouts are in the past; huge ones are never.
class Deadline {
 public:
  using Clock = std::chrono::steady_clock;
  static Deadline never() noexcept { return Deadline(); }
  static Deadline after(const Timeout& timeout) noexcept;

  bool is_never() const noexcept { return !at_; }
  Clock::time_point at() const noexcept { return *at_; }
  bool passed() const noexcept { return at_ && Clock::now() >= *at_; }

 private:
  std::optional<Clock::time_point> at_;
};

// A listener linked into a state's intrusive list. It lives where its owner puts it (a stack, a
// coroutine frame, a wait set) and is linked and unlinked only under the state's lock.
struct WaitNode {
  enum class When : std::uint8_t { kDone, kNotified };
  using Fire = void (*)(WaitNode* self, StateBase& state) noexcept;

  WaitNode(When when, Fire fire) noexcept : when(when), fire(fire) {}
  WaitNode(const WaitNode&) = delete;
  WaitNode& operator=(const WaitNode&) = delete;

  When when;
  bool linked = false;
  Fire fire;
  WaitNode* prev = nullptr;
  WaitNode* next = nullptr;
};

// A done callback, owned by the state until it runs.
class CallbackNode {
 public:
  virtual ~CallbackNode() = default;
  // Runs the callback; logs and swallows what it throws. Nothrow.
  virtual void run(StateBase& state) noexcept = 0;
  CallbackNode* next = nullptr;
};

// Type-independent part of a future's shared state. Reference counted; the last release
// destroys the most derived object (a bare future state, or a task that carries one).
class StateBase {
 public:
  StateBase(const StateBase&) = delete;
  StateBase& operator=(const StateBase&) = delete;

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) destroy();
  }

  FutureState state() const noexcept { return state_.load(std::memory_order_acquire); }
  bool done() const noexcept {
    FutureState s = state();
    return s != FutureState::kPending && s != FutureState::kRunning;
  }
  // Done for Python's wait()/as_completed(): FINISHED or CANCELLED_AND_NOTIFIED.
  bool notified() const noexcept {
    FutureState s = state();
    return s == FutureState::kFinished || s == FutureState::kCancelledAndNotified;
  }
  bool cancelled() const noexcept {
    FutureState s = state();
    return s == FutureState::kCancelled || s == FutureState::kCancelledAndNotified;
  }
  // The stored exception of a FINISHED state (null if it has a result). Only when FINISHED.
  const std::exception_ptr& stored_exception() const noexcept { return exception_; }

  // Python's cancel(). Runs callbacks if it cancels. Nothrow (callbacks' errors are logged).
  bool cancel() noexcept;
  // Python's set_running_or_notify_cancel(). Throws std::runtime_error (and logs CRITICAL) if
  // the state is RUNNING or FINISHED.
  bool set_running_or_notify_cancel();
  // Moves PENDING to RUNNING (kStarted), or CANCELLED to CANCELLED_AND_NOTIFIED (kCancelled);
  // any other state is left alone (kUnexpected). Atomic. Nothrow.
  enum class StartResult { kStarted, kCancelled, kUnexpected };
  StartResult try_start() noexcept;
  // For executors, which own the transition: whether the task should run. Nothrow.
  bool start_or_notify_cancel() noexcept { return try_start() == StartResult::kStarted; }

  // Python's set_exception(). Throws InvalidStateError if already done. Strong guarantee.
  void set_exception(std::exception_ptr e);
  // Completes with an exception unless already done; returns whether it did. Nothrow.
  bool try_set_exception(std::exception_ptr e) noexcept;

  // Blocks until done() or the deadline. Throws InvalidStateError if the calling task would wait
  // for its own future forever.
  bool wait_done(Deadline deadline);
  // Python's result()/exception() prologue: waits, then throws CancelledError or TimeoutError.
  // Marks a stored exception as observed. Returns the stored exception (maybe null).
  const std::exception_ptr& wait_outcome(const Timeout& timeout);

  // Adds a done callback, or runs it now (in this thread) if already done. Takes ownership.
  void add_callback(std::unique_ptr<CallbackNode> node) noexcept;

  // Links `node` unless its event already happened; returns whether it linked. Nothrow.
  bool link(WaitNode& node) noexcept;
  // Unlinks `node` if it is still linked. After it returns, `node` will not fire. Nothrow.
  void unlink(WaitNode& node) noexcept;

  // Whether someone looked at the stored exception (result() threw it or exception() returned
  // it), and a way to claim it for reporting exactly once.
  bool claim_unobserved() noexcept { return !observed_.exchange(true, std::memory_order_acq_rel); }
  void mark_observed() noexcept { observed_.store(true, std::memory_order_release); }

  // The type of the result: typeid(T) for a State<T>, typeid(void) for State<void>. Lets a
  // type-erased handle describe its result (Python's repr). Nothrow.
  virtual const std::type_info& result_type() const noexcept = 0;

  // The executor that made this future (see executor_registry.h); 0 for hand-made futures.
  std::uint64_t executor_id() const noexcept { return executor_id_; }
  void set_executor_id(std::uint64_t id) noexcept { executor_id_ = id; }

 protected:
  StateBase() noexcept = default;
  virtual ~StateBase();
  // Deletes the most derived object.
  virtual void destroy() noexcept = 0;

  // Completes the state: under the lock, if not done, calls store() (which may throw; then
  // nothing changes and the exception propagates) and moves to FINISHED. Then fires listeners
  // and runs callbacks. Returns false if the state was already done.
  template <typename Store>
  bool finish(Store&& store);

 private:
  // Fires and unlinks every listener for which `fire_if(node)` holds. Under lock_.
  template <typename Pred>
  void fire_listeners(Pred fire_if) noexcept;
  // Runs (then frees) a detached callback list, oldest first. Without lock_.
  void run_callbacks(CallbackNode* newest_first) noexcept;
  void unlink_locked(WaitNode& node) noexcept;

  std::atomic<std::uint32_t> refs_{1};
  std::atomic<FutureState> state_{FutureState::kPending};
  std::atomic<bool> observed_{false};
  Lock lock_;
  WaitNode* listeners_ ABSL_GUARDED_BY(lock_) = nullptr;
  CallbackNode* callbacks_ ABSL_GUARDED_BY(lock_) = nullptr;  // newest first
  std::exception_ptr exception_;  // written under lock_ before FINISHED is published
  std::uint64_t executor_id_ = 0;
};

template <typename Pred>
void StateBase::fire_listeners(Pred fire_if) noexcept {
  WaitNode* node = listeners_;
  while (node != nullptr) {
    WaitNode* next = node->next;  // read first: firing may free the node
    if (fire_if(*node)) {
      unlink_locked(*node);
      node->fire(node, *this);
    }
    node = next;
  }
}

template <typename Store>
bool StateBase::finish(Store&& store) {
  CallbackNode* callbacks;
  {
    std::lock_guard<Lock> guard(lock_);
    if (done()) return false;
    std::forward<Store>(store)(exception_);
    state_.store(FutureState::kFinished, std::memory_order_release);
    fire_listeners([](const WaitNode&) { return true; });
    callbacks = std::exchange(callbacks_, nullptr);
  }
  run_callbacks(callbacks);
  return true;
}

// The state of a Future<T>: adds the result.
template <typename T>
class State : public StateBase {
 public:
  // Python's set_result(). Throws InvalidStateError if done; what T's constructor throws
  // propagates with nothing changed. Strong guarantee.
  template <typename U>
  void set_result(U&& value);
  // Completes with a result unless done; returns whether it did. Throws what T's constructor
  // throws, with nothing changed.
  template <typename U>
  bool try_set_result(U&& value) {
    return finish([&](std::exception_ptr&) { value_.emplace(std::forward<U>(value)); });
  }
  // Only after a successful wait_outcome() with no exception.
  const T& value() const noexcept { return *value_; }

  const std::type_info& result_type() const noexcept final { return typeid(T); }

 protected:
  void destroy() noexcept override { delete this; }

 private:
  std::optional<T> value_;
};

template <>
class State<void> : public StateBase {
 public:
  void set_result();
  bool try_set_result() noexcept {
    return finish([](std::exception_ptr&) noexcept {});
  }

  const std::type_info& result_type() const noexcept final { return typeid(void); }

 protected:
  void destroy() noexcept override { delete this; }
};

// Python's name of a state ("PENDING", ..., "CANCELLED_AND_NOTIFIED"), as `_state` holds it.
// Nothrow.
const char* state_name(FutureState s) noexcept;
// The state as Python's repr() describes it (_STATE_TO_DESCRIPTION_MAP): "pending", "running",
// "cancelled" (both cancelled states) or "finished". Nothrow.
const char* state_description(FutureState s) noexcept;

// Python's repr(future), e.g. "<Future at 0x55d0c3a0 state=finished returned int>": the
// state's address, its state in lower case ("cancelled" for both cancelled states), and for a
// FINISHED state the demangled type of the stored exception ("raised std::system_error") or of
// the result ("returned int", "returned void"). Reads the state once, so the text is one
// snapshot. May throw std::bad_alloc; strong guarantee (changes nothing).
std::string repr(const StateBase& state);

// Throws InvalidStateError("<STATE>: <repr>; <hint>"), Python's message for set_result() and
// set_exception() on a done future, plus a hint. `state` must be done.
[[noreturn]] void throw_already_done(const StateBase& state);

template <typename T>
template <typename U>
void State<T>::set_result(U&& value) {
  if (!try_set_result(std::forward<U>(value))) throw_already_done(*this);
}

// Thread-local identity of the task the calling thread is running, so that waits can refuse to
// wait on the caller's own future. Set by executors around each run.
StateBase* current_task_state() noexcept;
class CurrentTaskScope {
 public:
  explicit CurrentTaskScope(StateBase* state) noexcept;
  ~CurrentTaskScope();
  CurrentTaskScope(const CurrentTaskScope&) = delete;
  CurrentTaskScope& operator=(const CurrentTaskScope&) = delete;

 private:
  StateBase* previous_;
};

// An owning pointer to a state: one reference.
template <typename S>
class StateRef {
 public:
  StateRef() noexcept = default;
  // Adopts one reference.
  static StateRef adopt(S* s) noexcept { return StateRef(s); }
  // Takes a new reference.
  static StateRef share(S* s) noexcept {
    if (s != nullptr) s->add_ref();
    return StateRef(s);
  }
  StateRef(const StateRef& o) noexcept : s_(o.s_) {
    if (s_ != nullptr) s_->add_ref();
  }
  StateRef(StateRef&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  StateRef& operator=(StateRef o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~StateRef() {
    if (s_ != nullptr) s_->release();
  }
  S* get() const noexcept { return s_; }
  S* operator->() const noexcept { return s_; }
  S& operator*() const noexcept { return *s_; }
  explicit operator bool() const noexcept { return s_ != nullptr; }
  S* release_ownership() noexcept { return std::exchange(s_, nullptr); }

 private:
  explicit StateRef(S* s) noexcept : s_(s) {}
  S* s_ = nullptr;
};

}  // namespace detail
}  // namespace betterconcurrent

#endif  // BETTERCONCURRENT_FUTURE_DETAIL_STATE_H_
