// Future<T>: the result of an asynchronous computation, with the exact semantics of Python's
// concurrent.futures.Future, plus betterconcurrent's additions (the executor that made it, and
// cooperative waiting inside coroutine tasks).
//
// A Future is a shared handle, like a Python reference: copies refer to the same state, and the
// state lives as long as any handle (or the task computing it) does. All member functions are
// thread-safe. A moved-from handle is empty (valid() is false) and may only be assigned to or
// destroyed.
//
//   betterconcurrent::Future<int> f;            // a hand-made future, PENDING
//   f.add_done_callback([](const betterconcurrent::Future<int>& g) {
//     std::printf("got %d\n", g.result());       // runs in the thread that completes f
//   });
//   std::thread t([f]() mutable { f.set_result(42); });
//   assert(f.result(std::chrono::seconds(5)) == 42);
//   t.join();
//
// States and transitions are Python's (see detail/state.h for the diagram):
//   - result()/exception() of a CANCELLED future throw CancelledError; of a FINISHED one return
//     (or rethrow) its outcome; when the timeout runs out they throw TimeoutError.
//   - set_result()/set_exception() on a done future throw InvalidStateError, whose message
//     starts with Python's "FINISHED: <Future at 0x... state=finished returned int>".
//   - to_string(f) and `os << f` give Python's repr(f) (see to_string below).
//   - done callbacks run in the order added, in the thread that completes (or cancels) the
//     future, or at once in the adding thread if it is already done. A callback that throws is
//     logged (see log.h) and the later callbacks still run.
#ifndef BETTERCONCURRENT_FUTURE_FUTURE_H_
#define BETTERCONCURRENT_FUTURE_FUTURE_H_

#include <coroutine>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <type_traits>
#include <utility>

#include "future/detail/executor_registry.h"
#include "future/detail/state.h"
#include "future/exceptions.h"
#include "future/log.h"

namespace betterconcurrent {

class Executor;
class AnyFuture;
template <typename T>
class Future;

namespace detail {
template <typename Handle, typename Fn>
class CallbackImpl final : public CallbackNode {
 public:
  explicit CallbackImpl(Fn fn) : fn_(std::move(fn)) {}
  void run(StateBase& state) noexcept override {
    try {
      std::invoke(fn_, Handle(StateRef<StateBase>::share(&state)));
    } catch (...) {
      log(LogLevel::kError, "exception calling callback for future", std::current_exception());
    }
  }

 private:
  Fn fn_;
};
}  // namespace detail

// The awaitable returned by yield_until_done(). Inside a coroutine task driven by an executor
// (see executor/task.h), `co_await` suspends the task without blocking its worker thread, and
// resumes it once the future is done. Anywhere else, `co_await` blocks the calling thread until
// the future is done, like wait(). Either way, done() is true afterwards.
class [[nodiscard]] YieldUntilDone {
 public:
  explicit YieldUntilDone(detail::StateRef<detail::StateBase> state) noexcept
      : state_(std::move(state)) {}
  bool await_ready() {
    state_->wait_done(detail::Deadline::never());
    return true;
  }
  void await_suspend(std::coroutine_handle<>) const noexcept {}
  void await_resume() const noexcept {}
  detail::StateBase& state() const noexcept { return *state_; }

 private:
  detail::StateRef<detail::StateBase> state_;
};

// A type-erased future handle, for collections of futures with different result types (wait(),
// as_completed()). Future<T> derives from it. Every operation here is the same as Python's.
class AnyFuture {
 public:
  // A new PENDING future with no executor (Python's `Future()`). May throw std::bad_alloc.
  AnyFuture() : AnyFuture(detail::StateRef<detail::StateBase>::adopt(new detail::State<void>)) {}
  explicit AnyFuture(detail::StateRef<detail::StateBase> state) noexcept
      : state_(std::move(state)) {}

  // False only for a moved-from handle. Nothrow.
  bool valid() const noexcept { return static_cast<bool>(state_); }

  // Cancels the future unless it is running or done; returns whether it is cancelled now.
  // Runs the done callbacks if it cancels. Nothrow.
  bool cancel() const noexcept { return state_->cancel(); }
  // Nothrow.
  bool cancelled() const noexcept { return state_->cancelled(); }
  // Nothrow.
  bool running() const noexcept { return state_->state() == FutureState::kRunning; }
  // True once cancelled or finished. Nothrow.
  bool done() const noexcept { return state_->done(); }
  // Python's `_state`. Nothrow.
  FutureState state() const noexcept { return state_->state(); }

  // The exception the computation threw, or null if it returned normally. Waits up to
  // `timeout` (forever by default). Throws CancelledError if cancelled, TimeoutError on
  // timeout, InvalidStateError if a task calls it without a timeout on its own future. Marks
  // the exception as observed (Executor::join() will not report it). Strong guarantee.
  std::exception_ptr exception(Timeout timeout = std::nullopt) const {
    return state_->wait_outcome(timeout);
  }

  // Adds `fn`, callable as fn(const AnyFuture&), to run when the future is done (at once if it
  // is). Strong guarantee: if storing fn throws (std::bad_alloc), nothing was added.
  template <typename Fn>
  void add_done_callback(Fn&& fn) const {
    add_callback<AnyFuture>(std::forward<Fn>(fn));
  }

  // For executors and tests, as in Python. Returns false (and notifies wait()/as_completed()
  // waiters) if the future was cancelled; true if it moved from PENDING to RUNNING. Throws
  // std::runtime_error (and logs CRITICAL) if it was already running or done. Strong guarantee.
  bool set_running_or_notify_cancel() const { return state_->set_running_or_notify_cancel(); }

  // Finishes the future with `e`. Throws InvalidStateError if it is done, std::invalid_argument
  // if `e` is null. Strong guarantee.
  void set_exception(std::exception_ptr e) const { state_->set_exception(std::move(e)); }

  // The executor that made this future, or null if it is gone or the future was made by hand.
  // Held weakly: a future never keeps its executor alive. May throw std::bad_alloc.
  std::shared_ptr<Executor> executor() const {
    return detail::find_executor(state_->executor_id());
  }

  // Waits until done() cooperatively inside a coroutine task, blocking elsewhere; see
  // YieldUntilDone. `co_await f.yield_until_done();` Nothrow until awaited.
  YieldUntilDone yield_until_done() const noexcept { return YieldUntilDone(state_); }

  friend bool operator==(const AnyFuture& a, const AnyFuture& b) noexcept {
    return a.state_.get() == b.state_.get();
  }

  // Internal: the shared state.
  detail::StateBase& state_base() const noexcept { return *state_; }

 protected:
  template <typename Handle, typename Fn>
  void add_callback(Fn&& fn) const {
    using Impl = detail::CallbackImpl<Handle, std::decay_t<Fn>>;
    static_assert(std::is_invocable_v<std::decay_t<Fn>&, const Handle&>,
                  "a done callback must be callable with the future it is added to");
    state_->add_callback(std::make_unique<Impl>(std::forward<Fn>(fn)));
  }

  detail::StateRef<detail::StateBase> state_;
};

// Python's repr(f):
//   <Future at 0x7f3a5c000b70 state=pending>            (also state=running)
//   <Future at 0x7f3a5c000b70 state=cancelled>          (CANCELLED or CANCELLED_AND_NOTIFIED)
//   <Future at 0x7f3a5c000b70 state=finished raised std::system_error>
//   <Future at 0x7f3a5c000b70 state=finished returned int>
// The address is the shared state's, so all handles to one future print the same, as 0x and
// lowercase hex. "raised" names the demangled dynamic type of the stored exception, whatever
// was thrown (`throw 2` gives "raised int"); "returned" names the demangled result type T of
// the Future<T> that made the state, also through an AnyFuture handle ("returned void" for
// Future<void> and for AnyFuture()). A moved-from handle gives "<Future (moved-from handle)>".
// May throw std::bad_alloc. Strong guarantee (it changes nothing; the exception is not marked
// observed).
inline std::string to_string(const AnyFuture& f) {
  if (!f.valid()) return "<Future (moved-from handle)>";
  return detail::repr(f.state_base());
}

// Writes to_string(f). May throw std::bad_alloc before anything is written, and whatever `os`
// throws if its exceptions() are enabled. Basic guarantee for `os`; f is unchanged.
inline std::ostream& operator<<(std::ostream& os, const AnyFuture& f) { return os << to_string(f); }

// A future whose result has type T (or none, for Future<void>).
template <typename T>
class Future : public AnyFuture {
  static_assert(!std::is_reference_v<T>, "Future<T&> is not supported; use a pointer");

 public:
  using value_type = T;

  // A new PENDING future with no executor (Python's `Future()`). May throw std::bad_alloc.
  Future() : AnyFuture(detail::StateRef<detail::StateBase>::adopt(new detail::State<T>)) {}
  // Internal: adopts a state of type State<T>.
  explicit Future(detail::StateRef<detail::StateBase> state) noexcept
      : AnyFuture(std::move(state)) {}

  // The result, waiting up to `timeout` (forever by default). Rethrows the computation's
  // exception (marking it observed); throws CancelledError if cancelled, TimeoutError on
  // timeout, InvalidStateError if a task waits without a timeout on its own future. The
  // reference stays valid while any handle to this future lives. Strong guarantee.
  decltype(auto) result(Timeout timeout = std::nullopt) const {
    const std::exception_ptr& e = state_->wait_outcome(timeout);
    if (e) std::rethrow_exception(e);
    if constexpr (std::is_void_v<T>) {
      return;
    } else {
      return static_cast<const T&>(typed().value());
    }
  }

  // Finishes the future with a result. Throws InvalidStateError if it is done; anything T's
  // constructor throws propagates. Strong guarantee.
  template <typename U = T>
  requires(!std::is_void_v<T> && std::is_constructible_v<T, U&&>) void set_result(U&& value) const {
    typed().set_result(std::forward<U>(value));
  }
  void set_result() const requires std::is_void_v<T> { typed().set_result(); }

  // Adds `fn`, callable as fn(const Future<T>&); see AnyFuture::add_done_callback.
  template <typename Fn>
  void add_done_callback(Fn&& fn) const {
    add_callback<Future<T>>(std::forward<Fn>(fn));
  }

 private:
  detail::State<T>& typed() const noexcept { return static_cast<detail::State<T>&>(*state_); }
};

}  // namespace betterconcurrent

template <>
struct std::hash<betterconcurrent::AnyFuture> {
  std::size_t operator()(const betterconcurrent::AnyFuture& f) const noexcept {
    return std::hash<const void*>()(&f.state_base());
  }
};

#endif  // BETTERCONCURRENT_FUTURE_FUTURE_H_
