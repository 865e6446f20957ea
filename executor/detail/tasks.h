// The objects an executor queues: one allocation per task holding the future's state, the
// callable, and the queue links. A plain callable runs once; a callable that returns Task<T>
// is driven as a coroutine across suspensions.
#ifndef BETTERCONCURRENT_EXECUTOR_DETAIL_TASKS_H_
#define BETTERCONCURRENT_EXECUTOR_DETAIL_TASKS_H_

#include <coroutine>
#include <exception>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "executor/scheduler.h"
#include "executor/task.h"
#include "future/detail/state.h"
#include "future/log.h"

namespace betterconcurrent::detail {

// Completes `state` with what `produce` returns or throws. Announces the idle worker first (see
// Scheduler::release_idle_token). An outcome that cannot be stored because the future was
// already completed by hand is logged (with the exception, if the task threw), not lost
// silently.
template <typename R, typename Produce>
void complete_task(State<R>& state, bool external, Scheduler& scheduler,
                   Produce&& produce) noexcept {
  bool stored;
  std::exception_ptr error;
  try {
    if constexpr (std::is_void_v<R>) {
      std::forward<Produce>(produce)();
      if (external) scheduler.release_idle_token();
      stored = state.try_set_result();
    } else {
      R value = std::forward<Produce>(produce)();
      if (external) scheduler.release_idle_token();
      stored = state.try_set_result(std::move(value));
    }
  } catch (...) {
    error = std::current_exception();
    stored = state.try_set_exception(error);
  }
  if (!stored) {
    log(LogLevel::kError, "task outcome discarded: its future was already completed by hand",
        std::move(error));
  }
}

// Moves a task's future to RUNNING; false if it must not run (cancelled, which notifies its
// waiters, or completed by hand before it started, which is logged). Nothrow.
inline bool begin_task(StateBase& state) noexcept {
  switch (state.try_start()) {
    case StateBase::StartResult::kStarted:
      return true;
    case StateBase::StartResult::kCancelled:
      return false;
    case StateBase::StartResult::kUnexpected:
      break;
  }
  log(LogLevel::kError, "task not run: its future was completed by hand before it started",
      nullptr);
  return false;
}

// Ends a task that never started: fails it with `reason`, or cancels it and notifies its
// waiters if `reason` is null. A task that was cancelled while it waited in the queue is only
// CANCELLED so far (its waiters learn of it when a worker would have started it): whatever the
// reason, it is notified now. Nothrow.
inline void discard_task(StateBase& state, Scheduler& scheduler,
                         std::exception_ptr reason) noexcept {
  if (!reason || !state.try_set_exception(std::move(reason))) {
    state.cancel();                  // PENDING -> CANCELLED; no-op otherwise
    state.start_or_notify_cancel();  // CANCELLED -> CANCELLED_AND_NOTIFIED; no-op otherwise
  }
  scheduler.task_ended(state);
}

template <typename R, typename Fn>
class CallTask final : public State<R>, public Runnable {
 public:
  explicit CallTask(Fn fn) : fn_(std::move(fn)) {}

  void run(Scheduler& scheduler) noexcept override {
    if (begin_task(*this)) {
      CurrentTaskScope scope(this);
      complete_task(*this, external, scheduler,
                    [this]() -> R { return std::invoke(std::move(*fn_)); });
    }
    fn_.reset();  // like Python's `del work_item`: captures die with the run, not the future
    scheduler.task_ended(*this);
  }

  void discard(Scheduler& scheduler, std::exception_ptr reason) noexcept override {
    fn_.reset();
    discard_task(*this, scheduler, std::move(reason));
  }

  bool started() const noexcept override { return false; }

 private:
  std::optional<Fn> fn_;
};

template <typename R, typename Fn>
class CoroutineTask final : public State<R>, public Runnable, public CoroutineDriver {
 public:
  CoroutineTask(Fn fn, Scheduler& scheduler) : fn_(std::move(fn)), scheduler_(scheduler) {}

  void run(Scheduler& scheduler) noexcept override {
    if (!handle_) {
      if (!begin_task(*this)) {
        fn_.reset();
        scheduler.task_ended(*this);
        return;
      }
      try {
        CurrentTaskScope scope(this);
        handle_ = std::invoke(*fn_).release();
      } catch (...) {
        std::exception_ptr e = std::current_exception();
        complete_task(*this, external, scheduler, [&]() -> R { std::rethrow_exception(e); });
        fn_.reset();
        scheduler.task_ended(*this);
        return;
      }
      handle_.promise().set_driver(this);
    }
    CurrentTaskScope scope(this);
    handle_.resume();  // `this` may be gone once this returns
  }

  void discard(Scheduler& scheduler, std::exception_ptr reason) noexcept override {
    fn_.reset();
    discard_task(*this, scheduler, std::move(reason));
  }

  bool started() const noexcept override { return static_cast<bool>(handle_); }

  void wake() noexcept override { scheduler_.wake(*this); }
  void publish(Suspension& s) noexcept override {
    if (slot_ == nullptr) slot_ = scheduler_.acquire_slot(published_);
    published_.publish(s);
  }
  void withdraw() noexcept override { published_.withdraw(); }
  StateBase& own_state() noexcept override { return *this; }
  Scheduler& scheduler() noexcept override { return scheduler_; }

  void finish() noexcept override {
    auto& promise = handle_.promise();
    if (promise.exception()) {
      std::exception_ptr e = promise.exception();
      complete_task(*this, external, scheduler_, [&]() -> R { std::rethrow_exception(e); });
    } else if constexpr (std::is_void_v<R>) {
      complete_task(*this, external, scheduler_, [] {});
    } else {
      complete_task(*this, external, scheduler_,
                    [&]() -> R { return std::move(*promise.value()); });
    }
    destroy_frame();
    fn_.reset();
    end_slot();
    scheduler_.task_ended(*this);
  }

  void end_deadlocked(const std::exception_ptr& error) noexcept override {
    complete_task(*this, external, scheduler_, [&]() -> R { std::rethrow_exception(error); });
    if (this->stored_exception() == error) this->mark_observed();
    destroy_frame();
    fn_.reset();
    end_slot();
    scheduler_.task_ended(*this);
  }

 protected:
  void destroy() noexcept override {
    destroy_frame();  // a coroutine abandoned mid-way (never in normal runs)
    end_slot();
    delete this;
  }

 private:
  // Destroys the coroutine frame, if any. The task's outcome is already decided, so what the
  // destruction throws (a parameter whose destructor may throw: submit() rejects only the
  // arguments' own types, not what the coroutine converts them to) is logged.
  void destroy_frame() noexcept {
    if (!handle_) return;
    try {
      std::exchange(handle_, {}).destroy();
    } catch (...) {
      log(LogLevel::kError, "exception while destroying a coroutine task's frame",
          std::current_exception());
    }
  }

  // Our last touch of the slot, which another task may get next.
  void end_slot() noexcept {
    if (slot_ != nullptr) std::exchange(slot_, nullptr)->end();
  }

  std::optional<Fn> fn_;
  Scheduler& scheduler_;
  std::coroutine_handle<TaskPromise<R>> handle_;
  PublishedSuspension published_;
  SuspensionSlot* slot_ = nullptr;
};

}  // namespace betterconcurrent::detail

#endif  // BETTERCONCURRENT_EXECUTOR_DETAIL_TASKS_H_
