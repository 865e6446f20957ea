// wait(), as_completed() and yield_until_done() over several futures, with Python's semantics.
//
//   std::vector<betterconcurrent::Future<int>> fs = ...;
//   auto [done, not_done] = betterconcurrent::wait(fs, std::chrono::seconds(1),
//                                                  betterconcurrent::FIRST_COMPLETED);
//   for (const auto& f : betterconcurrent::as_completed(fs)) use(f.result());
//
// Each takes any range of futures (Future<T> or AnyFuture) and treats it as a set: a future
// that appears twice counts once. Like Python, they consider a future done when it is FINISHED
// or CANCELLED_AND_NOTIFIED; a future that was cancelled by hand but never passed to
// set_running_or_notify_cancel() is still "not done" for them (executors always notify).
#ifndef BETTERCONCURRENT_FUTURE_WAIT_H_
#define BETTERCONCURRENT_FUTURE_WAIT_H_

#include <cstddef>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <type_traits>
#include <utility>
#include <vector>

#include "future/detail/wait_set.h"
#include "future/future.h"

namespace betterconcurrent {

inline constexpr ReturnWhen FIRST_COMPLETED = ReturnWhen::kFirstCompleted;
inline constexpr ReturnWhen FIRST_EXCEPTION = ReturnWhen::kFirstException;
inline constexpr ReturnWhen ALL_COMPLETED = ReturnWhen::kAllCompleted;

// Python's DoneAndNotDoneFutures: the two halves of a wait's input. Each future appears once,
// in the order of its first appearance in the input.
template <typename F>
struct DoneAndNotDoneFutures {
  std::vector<F> done;
  std::vector<F> not_done;
};

template <typename R>
concept FutureRange =
    std::ranges::input_range<R> && std::is_base_of_v<AnyFuture, std::ranges::range_value_t<R>>;

namespace detail {

// The input of a wait: each distinct future once, in order, with its state.
template <typename F>
struct UniqueFutures {
  template <typename Range>
  explicit UniqueFutures(const Range& fs) {
    std::vector<F> all(std::ranges::begin(fs), std::ranges::end(fs));
    std::vector<StateBase*> all_states;
    all_states.reserve(all.size());
    for (const F& f : all) all_states.push_back(&f.state_base());
    for (std::size_t i : first_occurrences(all_states)) {
      futures.push_back(std::move(all[i]));
      states.push_back(all_states[i]);
    }
  }
  std::vector<F> futures;
  std::vector<StateBase*> states;
};

// Blocks until the wait set is ready or the deadline passes. Returns, for each state, whether
// it was seen finished. Disarms the set.
std::vector<bool> wait_states(const std::vector<StateBase*>& states, const Timeout& timeout,
                              ReturnWhen return_when);

template <typename F>
DoneAndNotDoneFutures<F> split(std::vector<F> futures, const std::vector<bool>& done) {
  DoneAndNotDoneFutures<F> out;
  for (std::size_t i = 0; i < futures.size(); ++i) {
    (done[i] ? out.done : out.not_done).push_back(std::move(futures[i]));
  }
  return out;
}

// The non-template engine of as_completed().
class AsCompletedCore {
 public:
  AsCompletedCore(std::vector<StateBase*> states, Timeout timeout);
  ~AsCompletedCore();
  AsCompletedCore(const AsCompletedCore&) = delete;
  AsCompletedCore& operator=(const AsCompletedCore&) = delete;
  // The index of the next future to finish, or nullopt when all were handed out. Before it
  // returns an index, it removes its listener from that future and forgets it (as Python's
  // _yield_finished_futures does), so the caller may release the future's last handle. Throws
  // TimeoutError when the time runs out first.
  std::optional<std::size_t> next();

 private:
  class Set;
  std::unique_ptr<Set> set_;
  Timeout timeout_;
  std::optional<Deadline> deadline_;  // set on the first next(), as Python's generator does
  std::size_t handed_out_ = 0;
};

}  // namespace detail

// Waits until `return_when` holds or `timeout` runs out (no timeout by default), and returns
// the futures split into done and not done. Never throws TimeoutError: on timeout the
// unfinished futures are in not_done. Throws InvalidStateError if a task would wait without a
// timeout on its own future; std::bad_alloc if it cannot allocate its listeners. Strong
// guarantee (it changes no future).
template <FutureRange Range>
auto wait(const Range& fs, Timeout timeout = std::nullopt, ReturnWhen return_when = ALL_COMPLETED) {
  using F = std::ranges::range_value_t<Range>;
  detail::UniqueFutures<F> unique(fs);
  std::vector<bool> done = detail::wait_states(unique.states, timeout, return_when);
  return detail::split(std::move(unique.futures), done);
}

// Yields the futures as they finish (those already finished first), each once. The timeout
// counts from the start of the iteration (begin()); when it runs out before every future
// finished, begin() or ++it throws TimeoutError("N (of M) futures unfinished"). The range is
// single-pass and not thread-safe; destroying it stops listening to the futures.
//
// Like Python's generator (issue 14406), the range keeps no reference to a future it handed
// out: *it refers to a handle held by the range, valid only until the next ++it, which releases
// it (before waiting for the next future). Copy it to keep it. So once the iteration moves past
// a future that nobody else holds, its state (and its result) is freed right then. The range
// holds the futures not yet handed out, and listens only to those.
//
// Guarantees: as_completed() never changes a future (strong). begin() and ++it may throw
// TimeoutError and std::bad_alloc; a begin() that cannot allocate its listeners leaves nothing
// listening. ++it releases the previous future even when it then throws (as Python's generator
// drops it before waiting), so after a throw *it must not be used; a later ++it yields a future
// that finished meanwhile, or throws TimeoutError again.
template <typename F>
class AsCompleted {
 public:
  template <typename Range>
  AsCompleted(const Range& fs, Timeout timeout) : unique_(fs), timeout_(timeout) {}

  class iterator {
   public:
    using value_type = F;
    using difference_type = std::ptrdiff_t;
    // The future handed out, held by the range until the next ++it. Nothrow.
    const F& operator*() const noexcept { return *owner_->current_; }
    const F* operator->() const noexcept { return &*owner_->current_; }
    // Releases the current future, then waits for the next one (see the class comment).
    iterator& operator++() {
      owner_->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const noexcept { return owner_->ended_; }

   private:
    friend class AsCompleted;
    explicit iterator(AsCompleted* owner) noexcept : owner_(owner) {}
    AsCompleted* owner_;
  };

  // Starts listening and waits for the first future. Call once. Throws TimeoutError if none
  // finishes in time; std::bad_alloc if the listeners cannot be allocated (then nothing
  // listens).
  iterator begin() {
    core_ = std::make_unique<detail::AsCompletedCore>(unique_.states, timeout_);
    advance();
    return iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  void advance() {
    current_.reset();  // the range's handle to the previous future goes first, as in Python
    std::optional<std::size_t> next = core_->next();
    if (next) {
      current_.emplace(std::move(unique_.futures[*next]));  // the range keeps no other handle
    } else {
      ended_ = true;
    }
  }

  // Declaration order matters: core_ (whose destructor unlinks from the futures not handed out)
  // goes before unique_ releases them.
  detail::UniqueFutures<F> unique_;  // handed-out entries are moved from (empty)
  Timeout timeout_;
  std::unique_ptr<detail::AsCompletedCore> core_;
  std::optional<F> current_;
  bool ended_ = false;
};

template <FutureRange Range>
AsCompleted<std::ranges::range_value_t<Range>> as_completed(const Range& fs,
                                                            Timeout timeout = std::nullopt) {
  return AsCompleted<std::ranges::range_value_t<Range>>(fs, timeout);
}

// The awaitable of yield_until_done(fs, ...). In a coroutine task driven by an executor,
// `co_await` suspends the task without blocking its worker and resumes it when wait() would
// return (executor/task.h). Anywhere else, `co_await` calls wait(). Either way the result is
// wait()'s DoneAndNotDoneFutures.
template <typename F>
class [[nodiscard]] WaitAll {
 public:
  template <typename Range>
  WaitAll(const Range& fs, Timeout timeout, ReturnWhen return_when)
      : unique_(fs), timeout_(timeout), return_when_(return_when) {}

  bool await_ready() {
    done_ = detail::wait_states(unique_.states, timeout_, return_when_);
    return true;
  }
  void await_suspend(std::coroutine_handle<>) const noexcept {}
  DoneAndNotDoneFutures<F> await_resume() {
    return detail::split(std::move(unique_.futures), done_);
  }

  // For the cooperative awaiter.
  const std::vector<detail::StateBase*>& states() const noexcept { return unique_.states; }
  const Timeout& timeout() const noexcept { return timeout_; }
  ReturnWhen return_when() const noexcept { return return_when_; }
  void set_done(std::vector<bool> done) noexcept { done_ = std::move(done); }

 private:
  detail::UniqueFutures<F> unique_;
  Timeout timeout_;
  ReturnWhen return_when_;
  std::vector<bool> done_;
};

// `co_await yield_until_done(fs, timeout, return_when)`: see WaitAll. May throw std::bad_alloc.
template <FutureRange Range>
WaitAll<std::ranges::range_value_t<Range>> yield_until_done(
    const Range& fs, Timeout timeout = std::nullopt, ReturnWhen return_when = ALL_COMPLETED) {
  return WaitAll<std::ranges::range_value_t<Range>>(fs, timeout, return_when);
}

}  // namespace betterconcurrent

#endif  // BETTERCONCURRENT_FUTURE_WAIT_H_
