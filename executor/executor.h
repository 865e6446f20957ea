// Executor: Python's concurrent.futures.Executor, plus betterconcurrent's join().
//
// Executors are shared objects: create one with ThreadPoolExecutor::create(), which returns a
// std::shared_ptr. Destroying the last reference calls shutdown(wait = true), like leaving
// Python's `with` block. Futures refer to their executor weakly (Future::executor()).
//
//   auto pool = betterconcurrent::ThreadPoolExecutor::create({.max_workers = 4});
//   auto f = pool->submit([](int a, int b) { return a * b; }, 6, 7);
//   assert(f.result() == 42);
//   for (int x : pool->map([](int v) { return v * v; }, std::vector<int>{1, 2, 3})) { ... }
//
// A callable that returns Task<T> (executor/task.h) runs as a cooperative coroutine task.
//
// fork(): the child gets copies of the parent's executors, but none of their threads. It can
// create and use new executors (the library's global locks are held across fork(), so the child
// never inherits one locked). An inherited executor refuses work: submit(), map() and join()
// throw std::runtime_error saying so; shutdown() and its destructor return at once, joining
// nothing. Its pending futures never complete in the child. As with any lock, an object that a
// parent's worker was using at the moment of the fork (a future it was completing) may be
// unusable in the child.
#ifndef BETTERCONCURRENT_EXECUTOR_EXECUTOR_H_
#define BETTERCONCURRENT_EXECUTOR_EXECUTOR_H_

#include <concepts>
#include <cstddef>
#include <functional>
#include <iterator>
#include <memory>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "executor/detail/tasks.h"
#include "executor/task.h"
#include "future/future.h"

namespace betterconcurrent {

namespace detail {
// submit() can keep a decay-copy of each T&&: a std::decay_t<T> made from it, and moved later.
template <typename... Ts>
concept DecayCopyable = (std::constructible_from<std::decay_t<Ts>, Ts> && ...) &&
                        (std::move_constructible<std::decay_t<Ts>> && ...);
}  // namespace detail

// fn(args...) can be submitted to an executor: submit() decay-copies fn and every argument
// (so each must be constructible from what is passed, and movable), and invokes the copies
// as rvalues, as std::invoke(std::move(fn), std::move(args)...). To pass an argument by
// reference, wrap it in std::ref or std::cref. The copies are destroyed on a worker, where an
// exception would have nowhere to go, so their destructors must not throw (std::destructible,
// which std::constructible_from requires).
template <typename Fn, typename... Args>
concept Submittable =
    std::invocable<std::decay_t<Fn>, std::decay_t<Args>...> && detail::DecayCopyable<Fn, Args...>;

// map(fn, ranges...) is possible: at least one range, every one an input range, and fn can be
// submitted with one element of each (Submittable<Fn&, element references...>).
template <typename Fn, typename... Ranges>
concept Mappable = (sizeof...(Ranges) > 0) && (std::ranges::input_range<Ranges&> && ...) &&
                   Submittable<Fn&, std::ranges::range_reference_t<Ranges&>...>;

// The results of Executor::map(), in input order. Iterating calls each future's result()
// with what is left of the timeout (counted from the map() call): a task's exception is
// rethrown when its result is reached, and TimeoutError is thrown when time runs out; either
// way that future is cancelled first (Python's _result_or_cancel(); a no-op once it runs).
//
// The range lets go of each future as the iteration moves past it (++it), as Python's result
// iterator pops each future (issue 14406): once nobody else holds that future, its result
// object is destroyed there and then. So the reference *it returns is valid until ++it (or
// until the range is destroyed): copy or move the value out if you need it longer. ++it
// without *it lets go of that future without waiting for it or cancelling it.
//
// Once the iteration has started (*it or ++it), destroying the range cancels the futures whose
// results were not reached (Python's generator `finally`); a range destroyed unread leaves every
// task to run, as a discarded map() does in Python. Single-pass; not thread-safe; moving the range
// invalidates its iterators. For a void function, the values are std::monostate.
template <typename R>
class MapResults {
 public:
  using value_type = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

  // Nothrow.
  MapResults(std::vector<Future<R>> futures, detail::Deadline deadline) noexcept
      : futures_(std::move(futures)), deadline_(deadline) {}
  MapResults(MapResults&&) noexcept = default;
  MapResults& operator=(MapResults&&) = delete;
  // Once the iteration has started (*it or ++it ran), cancels the futures not reached:
  // Python's generator `finally`, which runs only if the generator was started. A range
  // dropped unread leaves every task to run, as a discarded map() does in Python. Nothrow.
  ~MapResults() {
    if (!started_) return;
    for (std::size_t i = next_; i < futures_.size(); ++i) futures_[i].cancel();
  }

  class iterator {
   public:
    using value_type = MapResults::value_type;
    using difference_type = std::ptrdiff_t;
    // The current result: const R& (valid until ++it), or std::monostate for a void
    // function. Waits for it with what is left of the timeout. Rethrows the task's exception;
    // throws TimeoutError, or CancelledError if the future was cancelled. Basic guarantee: when
    // it throws, the current future has been cancelled if it had not started (Python's
    // _result_or_cancel()), and the position is unchanged.
    decltype(auto) operator*() const {
      owner_->started_ = true;
      const Future<R>& f = owner_->futures_[owner_->next_];
      try {
        if constexpr (std::is_void_v<R>) {
          f.result(owner_->remaining());
          return std::monostate{};
        } else {
          return f.result(owner_->remaining());
        }
      } catch (...) {
        f.cancel();
        throw;
      }
    }
    // Moves to the next result and drops the range's handle to the current future: the
    // reference *it returned dangles from here on unless another handle keeps the future.
    // Nothrow.
    iterator& operator++() noexcept {
      owner_->started_ = true;
      Future<R> passed = std::move(owner_->futures_[owner_->next_]);
      ++owner_->next_;
      return *this;
    }
    // Nothrow.
    void operator++(int) noexcept { ++*this; }
    // Nothrow.
    bool operator==(std::default_sentinel_t) const noexcept {
      return owner_->next_ == owner_->futures_.size();
    }

   private:
    friend class MapResults;
    explicit iterator(MapResults* owner) noexcept : owner_(owner) {}
    MapResults* owner_;
  };

  // Nothrow. Single-pass: every iterator shares the range's position.
  iterator begin() noexcept { return iterator(this); }
  // Nothrow.
  std::default_sentinel_t end() const noexcept { return {}; }
  // The futures, in input order. Those the iteration has moved past are empty handles
  // (valid() is false; call nothing but the destructor or assignment on them): copy the vector
  // before iterating to keep them. Nothrow.
  const std::vector<Future<R>>& futures() const noexcept { return futures_; }

 private:
  Timeout remaining() const {
    if (deadline_.is_never()) return std::nullopt;
    return deadline_.at() - detail::Deadline::Clock::now();
  }

  std::vector<Future<R>> futures_;
  detail::Deadline deadline_;
  std::size_t next_ = 0;
  bool started_ = false;  // whether *it or ++it ran: the destructor cancels only then
};

class Executor : public std::enable_shared_from_this<Executor> {
 public:
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;
  virtual ~Executor();

  // Schedules fn(args...) and returns its Future. fn and args are decay-copied (std::ref to
  // share). If fn returns Task<T>, the coroutine is driven cooperatively and the future is a
  // Future<T>. Throws std::runtime_error after shutdown(), BrokenExecutor (BrokenThreadPool)
  // if the executor is broken, std::bad_alloc or std::system_error (a worker thread could not
  // start). Strong guarantee: when it throws, no task was accepted and join() does not wait
  // for one. Does not compile (and a requires-expression is false) unless fn(args...) is
  // Submittable: a callable first, then the arguments it can be invoked with.
  template <typename Fn, typename... Args>
  requires Submittable<Fn, Args...>
  auto submit(Fn&& fn, Args&&... args);

  // Python's map(fn, *iterables): submits fn(x, y, ...) for the zipped ranges (stopping at the
  // shortest) at once, and returns the results in input order; see MapResults. Throws what
  // submit() throws. Basic guarantee: if a submit throws, the tasks submitted before it keep
  // running (as in Python). Does not compile (and a requires-expression is false) unless
  // fn, ranges... is Mappable: one or more input ranges whose elements fn can be submitted with.
  template <typename Fn, typename... Ranges>
  requires(!std::is_convertible_v<Fn, Timeout> &&
           Mappable<Fn, Ranges...>) auto map(Fn&& fn, Ranges&&... ranges) {
    return map(Timeout{}, std::forward<Fn>(fn), std::forward<Ranges>(ranges)...);
  }
  // map() with Python's `timeout=`, counted from this call. Same guarantee.
  template <typename Fn, typename... Ranges>
  requires Mappable<Fn, Ranges...>
  auto map(Timeout timeout, Fn&& fn, Ranges&&... ranges);

  // Python's shutdown(wait, cancel_futures): no new tasks are accepted. With cancel_futures,
  // tasks still waiting in a queue are cancelled (their waiters notified); a task whose submit
  // started a new thread was handed to that thread and is not. With wait, returns
  // once every accepted task (including suspended coroutines) is done and every worker thread
  // has exited. Throws std::runtime_error if called with wait from one of the executor's own
  // tasks (after stopping intake), since it would wait for itself. Idempotent. Nothrow
  // otherwise.
  virtual void shutdown(bool wait = true, bool cancel_futures = false) = 0;

  // Blocks until the executor is quiescent: nothing queued, running or suspended, including
  // tasks submitted by tasks, even after join() was called. Then throws UnobservedTaskErrors
  // carrying the exceptions of the tasks that failed since the last join() and whose futures
  // nobody observed (result()/exception()); each is reported once. Throws TimeoutError if the
  // timeout runs out first, std::runtime_error if called from one of the executor's own tasks.
  // The executor stays usable. Strong guarantee.
  //
  // Deadlocks: whenever no task is running while it waits, it ends the suspended coroutine
  // tasks that only each other could wake (a cycle of co_awaits, and the tasks whose wait needs
  // one of them) without resuming them: their futures fail with one DeadlockError naming them
  // all. Once the executor is quiescent it throws that DeadlockError (the earliest not yet
  // thrown) before anything else; the deadlocked futures count as observed, and other
  // unobserved errors stay for the next join(). A wait that a timer, a hand-made future or
  // another executor's future could still end is never reported. shutdown(wait = true) ends
  // deadlocked tasks the same way. See the README's "join, errors and shutdown".
  virtual void join(Timeout timeout = std::nullopt) = 0;

 protected:
  Executor() = default;

  // Accepts `task` (one reference, the queue's) or throws with nothing accepted.
  virtual void enqueue(detail::Runnable& task) = 0;
  virtual detail::Scheduler& scheduler() noexcept = 0;
  // Registers this executor so that its futures can find it; call once from the factory,
  // after the shared_ptr exists. May throw std::bad_alloc.
  void register_self();

 private:
  // Gives a new task to enqueue(); returns the future's reference. Strong guarantee.
  template <typename T>
  detail::StateRef<detail::StateBase> accept(T* task) {
    task->set_executor_id(id_);
    auto future_ref = detail::StateRef<detail::StateBase>::share(task);
    try {
      enqueue(*task);
    } catch (...) {
      task->release();  // the queue's reference; future_ref frees the task
      throw;
    }
    return future_ref;
  }

  std::uint64_t id_ = 0;
};

template <typename Fn, typename... Args>
requires Submittable<Fn, Args...>
auto Executor::submit(Fn&& fn, Args&&... args) {
  using Invoked = std::invoke_result_t<std::decay_t<Fn>, std::decay_t<Args>...>;
  using Plain = std::remove_cvref_t<Invoked>;
  auto call = [fn = std::forward<Fn>(fn),
               ... args = std::forward<Args>(args)]() mutable -> decltype(auto) {
    return std::invoke(std::move(fn), std::move(args)...);
  };
  using Call = decltype(call);
  if constexpr (detail::IsTask<Plain>::value) {
    using R = typename detail::IsTask<Plain>::value_type;
    auto* task = new detail::CoroutineTask<R, Call>(std::move(call), scheduler());
    return Future<R>(accept(task));
  } else {
    using R = Plain;
    auto* task = new detail::CallTask<R, Call>(std::move(call));
    return Future<R>(accept(task));
  }
}

template <typename Fn, typename... Ranges>
requires Mappable<Fn, Ranges...>
auto Executor::map(Timeout timeout, Fn&& fn, Ranges&&... ranges) {
  using R = typename decltype(submit(fn, *std::ranges::begin(ranges)...))::value_type;
  detail::Deadline deadline = detail::Deadline::after(timeout);
  std::vector<Future<R>> futures;
  auto its = std::make_tuple(std::ranges::begin(ranges)...);
  auto ends = std::make_tuple(std::ranges::end(ranges)...);
  auto any_at_end = [&]<std::size_t... I>(std::index_sequence<I...>) {
    return ((std::get<I>(its) == std::get<I>(ends)) || ...);
  };
  auto submit_current = [&]<std::size_t... I>(std::index_sequence<I...>) {
    futures.push_back(submit(fn, *std::get<I>(its)...));
    (++std::get<I>(its), ...);
  };
  constexpr auto kIndexes = std::index_sequence_for<Ranges...>{};
  while (!any_at_end(kIndexes)) submit_current(kIndexes);
  return MapResults<R>(std::move(futures), deadline);
}

}  // namespace betterconcurrent

#endif  // BETTERCONCURRENT_EXECUTOR_EXECUTOR_H_
