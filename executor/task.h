// Task<T>: the coroutine type that executors drive cooperatively.
//
// A callable submitted to an executor that returns Task<T> runs as a coroutine task; its
// Future is a Future<T>. Inside it, `co_await f.yield_until_done()` and
// `co_await yield_until_done(fs, timeout, return_when)` suspend the task without blocking the
// worker thread, which runs other tasks meanwhile. The task resumes, on any worker, once the
// awaited future is done (or wait()'s condition holds), so fork-join recursion never deadlocks
// on a bounded pool:
//
//   Task<long> fib(std::shared_ptr<Executor> ex, int n) {
//     if (n < 2) co_return n;
//     auto a = ex->submit(fib, ex, n - 1);
//     auto b = ex->submit(fib, ex, n - 2);
//     co_await a.yield_until_done();
//     co_await b.yield_until_done();
//     co_return a.result() + b.result();    // done() is true: result() does not block
//   }
//
// Rules:
//  - A driven task may co_await only the library's awaitables (the two above). Anything else
//    is a compile-time error, because it would resume the task outside the executor.
//  - A task that awaits its own future gets InvalidStateError at the co_await.
//  - What the coroutine throws (any type) is stored in its future. If moving the returned
//    value into the future throws, that exception is stored instead.
//  - A Task that is never submitted is destroyed without running its body.
//  - Lambdas: the executor keeps the callable alive until the coroutine finishes, so a
//    coroutine lambda's captures stay valid across suspensions.
#ifndef BETTERCONCURRENT_EXECUTOR_TASK_H_
#define BETTERCONCURRENT_EXECUTOR_TASK_H_

#include <atomic>
#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "executor/scheduler.h"
#include "future/future.h"
#include "future/wait.h"

namespace betterconcurrent {

template <typename T = void>
class Task;

namespace detail {

// What drives a coroutine: re-queues it when woken, and completes its future at the end.
class CoroutineDriver {
 public:
  // Re-queues the coroutine on its scheduler. Nothrow.
  virtual void wake() noexcept = 0;
  // Called from final_suspend: completes the future, destroys the coroutine. Nothrow.
  virtual void finish() noexcept = 0;
  // For a deadlocked coroutine, whose wake-ups are unlinked: completes the future with `error`
  // (marked observed: join() reports the deadlock itself), destroys the coroutine without
  // resuming it, and ends the task. Nothrow.
  virtual void end_deadlocked(const std::exception_ptr& error) noexcept = 0;
  // Publishes what the coroutine is about to suspend for, in its SuspensionSlot (acquired at
  // the first suspension; without memory for one, nothing is published). Nothrow.
  virtual void publish(Suspension& s) noexcept = 0;
  // Withdraws it once the coroutine runs again (or did not suspend after all). Nothrow.
  virtual void withdraw() noexcept = 0;
  // The future of the task, to refuse waits on it.
  virtual StateBase& own_state() noexcept = 0;
  virtual Scheduler& scheduler() noexcept = 0;

 protected:
  ~CoroutineDriver() = default;
};

// co_await f.yield_until_done() inside a driven task. It is also what the task publishes for
// deadlock detection (executor/deadlock.h) while it waits.
class FutureAwaiter final : public WaitNode, public Suspension {
 public:
  FutureAwaiter(StateRef<StateBase> state, CoroutineDriver& driver) noexcept
      : WaitNode(When::kDone, &FutureAwaiter::on_fire), state_(std::move(state)), driver_(driver) {}
  bool await_ready() const noexcept { return state_->done(); }
  // Suspends unless the future is done by now. After link() succeeds the task may already be
  // running elsewhere, so nothing here touches the frame afterwards.
  bool await_suspend(std::coroutine_handle<>) noexcept {
    driver_.publish(*this);
    return state_->link(*this);
  }
  void await_resume() noexcept { driver_.withdraw(); }

  const StateBase& waiter() const noexcept override { return driver_.own_state(); }
  std::size_t awaited_count() const noexcept override { return 1; }
  const StateBase& awaited(std::size_t) const noexcept override { return *state_.get(); }
  Need need() const noexcept override { return Need::kAll; }
  bool timed() const noexcept override { return false; }
  bool satisfied(const StateBase& awaited) const noexcept override { return awaited.done(); }
  bool ready() const noexcept override { return state_->done(); }
  void abandon() noexcept override {
    state_->unlink(*this);
    driver_.withdraw();
  }
  void end(const std::exception_ptr& error) noexcept override { driver_.end_deadlocked(error); }

 private:
  static void on_fire(WaitNode* self, StateBase&) noexcept {
    static_cast<FutureAwaiter*>(self)->driver_.wake();
  }
  StateRef<StateBase> state_;
  CoroutineDriver& driver_;
};

// co_await yield_until_done(fs, timeout, return_when) inside a driven task: a WaitSet whose
// readiness, or a timer, wakes the task exactly once. Published for deadlock detection too.
template <typename F>
class WaitAllAwaiter final : public Suspension {
 public:
  WaitAllAwaiter(WaitAll<F>&& op, CoroutineDriver& driver)
      : op_(std::move(op)),
        set_(WaitSet::mode_of(op_.return_when()), op_.states(), *this),
        driver_(driver),
        deadline_(Deadline::after(op_.timeout())) {
    check_not_waiting_on_self(op_.states(), op_.timeout(), op_.return_when());
    if (!deadline_.is_never()) driver_.scheduler().ensure_timer_thread();
  }

  bool await_ready() const noexcept { return false; }

  bool await_suspend(std::coroutine_handle<>) noexcept {
    driver_.publish(*this);
    set_.arm();  // wakes are suppressed (woken_ is true) until we decide to suspend
    std::unique_lock lock(set_.mu());
    if (set_.ready_locked() || deadline_.passed()) return false;
    // Readiness is only ever reported under mu(), which we hold: from here on, it wakes us.
    woken_.store(false, std::memory_order_release);
    if (!deadline_.is_never()) {
      timer_.at = deadline_.at();
      driver_.scheduler().add_timer(timer_);
    }
    return true;  // the unlock below is our last touch of the frame
  }

  DoneAndNotDoneFutures<F> await_resume() {
    driver_.withdraw();
    set_.disarm();
    if (!deadline_.is_never()) driver_.scheduler().cancel_timer(timer_);
    std::vector<bool> done(set_.size(), false);
    {
      std::lock_guard lock(set_.mu());
      for (std::size_t i : set_.finished_locked()) done[i] = true;
    }
    op_.set_done(std::move(done));
    return op_.await_resume();
  }

  const StateBase& waiter() const noexcept override { return driver_.own_state(); }
  std::size_t awaited_count() const noexcept override { return op_.states().size(); }
  const StateBase& awaited(std::size_t i) const noexcept override { return *op_.states()[i]; }
  Need need() const noexcept override {
    return op_.return_when() == ALL_COMPLETED ? Need::kAll : Need::kAny;
  }
  bool timed() const noexcept override { return !deadline_.is_never(); }
  bool satisfied(const StateBase& awaited) const noexcept override { return awaited.notified(); }
  // From the futures themselves, not from what the set has recorded so far: a future is
  // notified before its listener reaches the set, and satisfied() already counts it.
  bool ready() const noexcept override {
    WaitSet::Mode mode = WaitSet::mode_of(op_.return_when());
    bool all = true;
    for (const StateBase* s : op_.states()) {
      if (!s->notified()) {
        all = false;
      } else if (WaitSet::ends_wait(mode, *s)) {
        return true;
      }
    }
    return all;
  }
  void abandon() noexcept override {
    set_.disarm();
    driver_.withdraw();
  }
  void end(const std::exception_ptr& error) noexcept override { driver_.end_deadlocked(error); }

 private:
  class Set : public WaitSet {
   public:
    Set(Mode mode, std::vector<StateBase*> states, WaitAllAwaiter& owner)
        : WaitSet(mode, std::move(states)), owner_(owner) {}

   protected:
    void on_ready() noexcept override { owner_.wake_once(); }
    // A result that does not end a FIRST_EXCEPTION wait may leave the task with only deadlocked
    // tasks to wait for, and wakes nobody: no worker goes idle to prompt a search, so ask.
    void on_unready_record() noexcept override {
      owner_.driver_.scheduler().prompt_deadlock_search();
    }

   private:
    WaitAllAwaiter& owner_;
  };

  void wake_once() noexcept {
    if (!woken_.exchange(true, std::memory_order_acq_rel)) driver_.wake();
  }
  static void on_timer(void* self) noexcept { static_cast<WaitAllAwaiter*>(self)->wake_once(); }

  WaitAll<F> op_;
  Set set_;
  CoroutineDriver& driver_;
  Deadline deadline_;
  TimerEntry timer_{&WaitAllAwaiter::on_timer, this};
  std::atomic<bool> woken_{true};  // true until await_suspend decides to suspend
};

class TaskPromiseBase {
 public:
  std::suspend_always initial_suspend() const noexcept { return {}; }

  struct FinalAwaiter {
    bool await_ready() const noexcept { return false; }
    template <typename P>
    void await_suspend(std::coroutine_handle<P> h) const noexcept {
      h.promise().driver()->finish();  // destroys the coroutine
    }
    void await_resume() const noexcept {}
  };
  FinalAwaiter final_suspend() const noexcept { return {}; }

  void unhandled_exception() noexcept { exception_ = std::current_exception(); }

  FutureAwaiter await_transform(YieldUntilDone awaitable) {
    refuse_own(awaitable.state());
    return FutureAwaiter(StateRef<StateBase>::share(&awaitable.state()), *driver_);
  }
  template <typename F>
  WaitAllAwaiter<F> await_transform(WaitAll<F>&& awaitable) {
    return WaitAllAwaiter<F>(std::move(awaitable), *driver_);
  }
  template <typename A>
  void await_transform(A&&) {
    static_assert(sizeof(A) == 0,
                  "a coroutine task may only co_await f.yield_until_done() or "
                  "yield_until_done(fs...); submit other work to the executor and await its "
                  "future instead");
  }

  CoroutineDriver* driver() const noexcept { return driver_; }
  void set_driver(CoroutineDriver* d) noexcept { driver_ = d; }
  const std::exception_ptr& exception() const noexcept { return exception_; }

 private:
  void refuse_own(StateBase& awaited) const;

  CoroutineDriver* driver_ = nullptr;
  std::exception_ptr exception_;
};

template <typename T>
class TaskPromise : public TaskPromiseBase {
 public:
  Task<T> get_return_object() noexcept;
  template <typename U>
  requires std::is_constructible_v<T, U&&>
  void return_value(U&& value) { value_.emplace(std::forward<U>(value)); }
  std::optional<T>& value() noexcept { return value_; }

 private:
  std::optional<T> value_;
};

template <>
class TaskPromise<void> : public TaskPromiseBase {
 public:
  Task<void> get_return_object() noexcept;
  void return_void() const noexcept {}
};

}  // namespace detail

// The coroutine type of cooperative tasks. Move-only; it owns the coroutine until an executor
// takes it. See the top of this file.
template <typename T>
class [[nodiscard]] Task {
 public:
  using promise_type = detail::TaskPromise<T>;
  using value_type = T;

  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      if (handle_) handle_.destroy();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  ~Task() {
    if (handle_) handle_.destroy();
  }

  // Internal: hands the coroutine to its driver.
  std::coroutine_handle<promise_type> release() noexcept { return std::exchange(handle_, {}); }

 private:
  friend class detail::TaskPromise<T>;
  explicit Task(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
  std::coroutine_handle<promise_type> handle_;
};

namespace detail {
template <typename T>
Task<T> TaskPromise<T>::get_return_object() noexcept {
  return Task<T>(std::coroutine_handle<TaskPromise<T>>::from_promise(*this));
}
inline Task<void> TaskPromise<void>::get_return_object() noexcept {
  return Task<void>(std::coroutine_handle<TaskPromise<void>>::from_promise(*this));
}

template <typename T>
struct IsTask : std::false_type {};
template <typename T>
struct IsTask<Task<T>> : std::true_type {
  using value_type = T;
};
}  // namespace detail

}  // namespace betterconcurrent

#endif  // BETTERCONCURRENT_EXECUTOR_TASK_H_
