// WaitSet: one listener on each of several futures, with Python's rules for when the wait is
// over (the `_Waiter` classes of concurrent.futures._base). Shared by wait(), as_completed()
// and the cooperative yield_until_done(fs) of coroutine tasks, which differ only in how they
// are woken (on_ready()).
#ifndef BETTERCONCURRENT_FUTURE_DETAIL_WAIT_SET_H_
#define BETTERCONCURRENT_FUTURE_DETAIL_WAIT_SET_H_

#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "future/detail/state.h"

namespace betterconcurrent {

// Python's FIRST_COMPLETED, FIRST_EXCEPTION and ALL_COMPLETED.
enum class ReturnWhen { kFirstCompleted, kFirstException, kAllCompleted };

namespace detail {

class WaitSet {
 public:
  enum class Mode { kFirstCompleted, kFirstException, kAllCompleted, kAsCompleted };
  static Mode mode_of(ReturnWhen r) noexcept;
  // Whether `finished` (notified) ends a wait of `mode` by itself, whatever the others do; a
  // wait that no single future ends is over once all are notified. Nothrow.
  static bool ends_wait(Mode mode, const StateBase& finished) noexcept;

  // `states` must hold each state once. Allocates (may throw std::bad_alloc); links nothing.
  WaitSet(Mode mode, std::vector<StateBase*> states);
  virtual ~WaitSet() = default;
  WaitSet(const WaitSet&) = delete;
  WaitSet& operator=(const WaitSet&) = delete;

  // Links a listener to every future that is not yet notified (FINISHED or
  // CANCELLED_AND_NOTIFIED) and records the others as finished. Nothrow.
  void arm() noexcept;
  // Unlinks every listener. After it returns, nothing fires any more. Nothrow.
  void disarm() noexcept;
  // Unlinks the listener on states[index] and forgets that state: no later call touches it, so
  // it may be destroyed. For as_completed, which hands its futures out one by one. Nothrow.
  void disarm(std::size_t index) noexcept;

  // Under mu(): whether Python's waiter would have set its event.
  bool ready_locked() const noexcept { return ready_; }
  // Under mu(): for as_completed, which rearms the event after taking what finished.
  void clear_ready_locked() noexcept { ready_ = false; }
  // Under mu(): indexes (into the constructor's `states`) of the futures seen finished, in the
  // order they were seen.
  const std::vector<std::size_t>& finished_locked() const noexcept { return finished_; }
  std::size_t size() const noexcept { return states_.size(); }
  std::mutex& mu() noexcept { return mu_; }

 protected:
  // Called under mu() each time the set becomes ready. Nothrow.
  virtual void on_ready() noexcept = 0;
  // Called under mu() when a future finished without making the set ready. Nothrow.
  virtual void on_unready_record() noexcept {}

 private:
  struct Node : WaitNode {
    Node() noexcept : WaitNode(When::kNotified, &Node::on_fire) {}
    static void on_fire(WaitNode* self, StateBase& state) noexcept;
    WaitSet* set = nullptr;
    std::size_t index = 0;
  };

  void record(std::size_t index, const StateBase& state) noexcept;

  const Mode mode_;
  std::vector<StateBase*> states_;  // null once forgotten by disarm(index)
  std::unique_ptr<Node[]> nodes_;
  std::mutex mu_;
  std::vector<std::size_t> finished_ ABSL_GUARDED_BY(mu_);  // reserved: push_back never throws
  std::size_t pending_ ABSL_GUARDED_BY(mu_);
  bool ready_ ABSL_GUARDED_BY(mu_) = false;
};

// Returns the position of each state's first occurrence. May throw std::bad_alloc.
std::vector<std::size_t> first_occurrences(const std::vector<StateBase*>& states);

// Throws InvalidStateError if the calling task would wait forever for its own future.
void check_not_waiting_on_self(const std::vector<StateBase*>& states, const Timeout& timeout,
                               ReturnWhen return_when);

}  // namespace detail
}  // namespace betterconcurrent

#endif  // BETTERCONCURRENT_FUTURE_DETAIL_WAIT_SET_H_
