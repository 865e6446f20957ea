#include "future/wait.h"

#include <condition_variable>
#include <mutex>
#include <string>
#include <utility>

#include "future/exceptions.h"

namespace betterconcurrent::detail {
namespace {

// A wait set that a blocked thread waits on.
class BlockingWaitSet : public WaitSet {
 public:
  using WaitSet::WaitSet;

  // Under `lock` (on mu()): waits until ready or the deadline. Returns whether ready.
  bool wait(std::unique_lock<std::mutex>& lock, const Deadline& deadline) {
    if (deadline.is_never()) {
      cv_.wait(lock, [&] { return ready_locked(); });
      return true;
    }
    return cv_.wait_until(lock, deadline.at(), [&] { return ready_locked(); });
  }

 protected:
  void on_ready() noexcept override { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace

std::vector<bool> wait_states(const std::vector<StateBase*>& states, const Timeout& timeout,
                              ReturnWhen return_when) {
  check_not_waiting_on_self(states, timeout, return_when);
  Deadline deadline = Deadline::after(timeout);
  BlockingWaitSet set(WaitSet::mode_of(return_when), states);
  std::vector<bool> done(states.size(), false);
  set.arm();
  {
    std::unique_lock lock(set.mu());
    set.wait(lock, deadline);
  }
  set.disarm();
  // After disarm() nothing records any more; what finished in between counts, as in Python.
  std::lock_guard lock(set.mu());
  for (std::size_t i : set.finished_locked()) done[i] = true;
  return done;
}

class AsCompletedCore::Set : public BlockingWaitSet {
 public:
  using BlockingWaitSet::BlockingWaitSet;
};

AsCompletedCore::AsCompletedCore(std::vector<StateBase*> states, Timeout timeout)
    : set_(std::make_unique<Set>(WaitSet::Mode::kAsCompleted, std::move(states))),
      timeout_(timeout) {
  set_->arm();
}

AsCompletedCore::~AsCompletedCore() { set_->disarm(); }

std::optional<std::size_t> AsCompletedCore::next() {
  if (!deadline_) deadline_ = Deadline::after(timeout_);
  std::size_t index;
  {
    std::unique_lock lock(set_->mu());
    while (handed_out_ == set_->finished_locked().size()) {
      if (handed_out_ == set_->size()) return std::nullopt;
      if (deadline_->passed()) {
        throw TimeoutError(std::to_string(set_->size() - handed_out_) + " (of " +
                           std::to_string(set_->size()) + ") futures unfinished");
      }
      set_->clear_ready_locked();
      set_->wait(lock, *deadline_);
    }
    index = set_->finished_locked()[handed_out_++];
  }
  // Python's _yield_finished_futures removes its waiter before yielding. Ours has already been
  // unlinked when it fired (or was never linked, for a future finished before arm()), so this
  // mostly makes the set forget the future: the caller may then free it. Not under mu(): a
  // firing listener holds the future's lock, then mu().
  set_->disarm(index);
  return index;
}

}  // namespace betterconcurrent::detail
