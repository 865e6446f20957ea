#include "future/detail/wait_set.h"

#include <algorithm>
#include <functional>
#include <mutex>
#include <utility>

#include "future/exceptions.h"

namespace betterconcurrent::detail {

WaitSet::Mode WaitSet::mode_of(ReturnWhen r) noexcept {
  switch (r) {
    case ReturnWhen::kFirstCompleted:
      return Mode::kFirstCompleted;
    case ReturnWhen::kFirstException:
      return Mode::kFirstException;
    case ReturnWhen::kAllCompleted:
      break;
  }
  return Mode::kAllCompleted;
}

WaitSet::WaitSet(Mode mode, std::vector<StateBase*> states)
    : mode_(mode),
      states_(std::move(states)),
      nodes_(std::make_unique<Node[]>(states_.size())),
      pending_(states_.size()),
      ready_(states_.empty()) {
  finished_.reserve(states_.size());
  for (std::size_t i = 0; i < states_.size(); ++i) {
    nodes_[i].set = this;
    nodes_[i].index = i;
  }
}

void WaitSet::arm() noexcept {
  for (std::size_t i = 0; i < states_.size(); ++i) {
    if (!states_[i]->link(nodes_[i])) {
      std::lock_guard lock(mu_);
      record(i, *states_[i]);
    }
  }
}

void WaitSet::disarm() noexcept {
  for (std::size_t i = 0; i < states_.size(); ++i) {
    if (states_[i] != nullptr) states_[i]->unlink(nodes_[i]);
  }
}

void WaitSet::disarm(std::size_t index) noexcept {
  if (states_[index] == nullptr) return;
  states_[index]->unlink(nodes_[index]);
  states_[index] = nullptr;
}

void WaitSet::Node::on_fire(WaitNode* self, StateBase& state) noexcept {
  auto* node = static_cast<Node*>(self);
  std::lock_guard lock(node->set->mu_);
  node->set->record(node->index, state);
}

bool WaitSet::ends_wait(Mode mode, const StateBase& finished) noexcept {
  switch (mode) {
    case Mode::kFirstCompleted:
    case Mode::kAsCompleted:
      return true;
    case Mode::kFirstException:
      // Python's _AllCompletedWaiter(stop_on_exception=True).
      return !finished.cancelled() && finished.stored_exception();
    case Mode::kAllCompleted:
      break;
  }
  return false;
}

void WaitSet::record(std::size_t index, const StateBase& state) noexcept {
  finished_.push_back(index);
  bool now_ready = ends_wait(mode_, state) || --pending_ == 0;
  if (now_ready) {
    ready_ = true;
    on_ready();
  } else {
    on_unready_record();
  }
}

std::vector<std::size_t> first_occurrences(const std::vector<StateBase*>& states) {
  // Sort positions by state (then position) and keep the first of each run: O(n log n), and
  // nothing to undo if an allocation throws.
  std::vector<std::size_t> order(states.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return std::less<const StateBase*>()(states[a], states[b]) || (states[a] == states[b] && a < b);
  });
  std::vector<std::size_t> out;
  out.reserve(order.size());
  for (std::size_t k = 0; k < order.size(); ++k) {
    if (k == 0 || states[order[k]] != states[order[k - 1]]) out.push_back(order[k]);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void check_not_waiting_on_self(const std::vector<StateBase*>& states, const Timeout& timeout,
                               ReturnWhen return_when) {
  StateBase* self = current_task_state();
  if (timeout || self == nullptr || self->done()) return;
  if (std::find(states.begin(), states.end(), self) == states.end()) return;
  if (return_when == ReturnWhen::kAllCompleted || states.size() == 1) {
    throw InvalidStateError(
        "a task cannot wait without a timeout for a set of futures that needs its own future "
        "to finish: it would wait forever");
  }
}

}  // namespace betterconcurrent::detail
