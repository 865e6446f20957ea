#include "executor/deadlock.h"

#include <string>
#include <unordered_map>

#include "future/exceptions.h"

namespace betterconcurrent::detail {

SuspensionRegistry::~SuspensionRegistry() = default;

SuspensionSlot* SuspensionRegistry::acquire(const PublishedSuspension& published) noexcept {
  if (free_ == nullptr) {
    try {
      chunks_.push_back(std::make_unique<SuspensionSlot[]>(kChunk));
    } catch (...) {
      return nullptr;  // see the header: this task goes unregistered
    }
    for (std::size_t i = 0; i < kChunk; ++i) {
      chunks_.back()[i].next_ = free_;
      free_ = &chunks_.back()[i];
    }
  }
  SuspensionSlot* slot = free_;
  free_ = slot->next_;
  slot->published_.store(&published, std::memory_order_relaxed);
  // Published by the release store: a search that sees the new head sees its fields.
  slot->next_ = slots_.load(std::memory_order_relaxed);
  slots_.store(slot, std::memory_order_release);
  ++size_;
  return slot;
}

void SuspensionRegistry::recycle_ended() noexcept {
  std::lock_guard lock(mu_);
  // Keeps the live slots in order; a search cannot be walking the list now.
  SuspensionSlot* live = nullptr;
  SuspensionSlot** tail = &live;
  SuspensionSlot* slot = slots_.load(std::memory_order_relaxed);
  while (slot != nullptr) {
    SuspensionSlot* next = slot->next_;
    if (slot->published_.load(std::memory_order_acquire) == nullptr) {
      slot->next_ = free_;
      free_ = slot;
      --size_;
    } else {
      *tail = slot;
      tail = &slot->next_;
    }
    slot = next;
  }
  *tail = nullptr;
  slots_.store(live, std::memory_order_release);
}

void SuspensionRegistry::collect(std::vector<Suspension*>& out) {
  std::lock_guard lock(mu_);
  for (SuspensionSlot* slot = slots_.load(std::memory_order_acquire); slot != nullptr;
       slot = slot->next_) {
    const PublishedSuspension* published = slot->published_.load(std::memory_order_acquire);
    if (published == nullptr) continue;  // the task ended
    // Null if the task is queued or running.
    if (Suspension* s = published->current()) out.push_back(s);
  }
}

std::vector<Suspension*> find_deadlocked(const std::vector<Suspension*>& suspended) {
  const std::size_t n = suspended.size();
  // Candidates: untimed waits, found by their task's future.
  std::unordered_map<const StateBase*, std::size_t> task_of;
  task_of.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (!suspended[i]->timed()) task_of.emplace(&suspended[i]->waiter(), i);
  }
  // For each candidate: whether it is still stuck, how many of its unsatisfied futures belong
  // to stuck candidates (what keeps a kAll wait stuck), and who waits for its future.
  std::vector<bool> stuck(n, false);
  std::vector<std::size_t> stuck_awaited(n, 0);
  std::vector<std::vector<std::size_t>> waiters(n);
  std::vector<std::size_t> unstuck;  // worklist
  for (std::size_t i = 0; i < n; ++i) {
    const Suspension& s = *suspended[i];
    if (s.timed()) continue;
    bool any_free = false;  // one it still waits for needs no stuck task
    for (std::size_t k = 0; k < s.awaited_count(); ++k) {
      const StateBase& awaited = s.awaited(k);
      if (s.satisfied(awaited)) continue;
      auto it = task_of.find(&awaited);
      if (it == task_of.end()) {
        any_free = true;  // something outside the candidates may complete it
        continue;
      }
      ++stuck_awaited[i];
      waiters[it->second].push_back(i);
    }
    bool progress = suspended[i]->ready() || stuck_awaited[i] == 0 ||
                    (s.need() == Suspension::Need::kAny && any_free);
    stuck[i] = true;
    if (progress) unstuck.push_back(i);
  }
  // Propagate: a task that can resume can finish, and so satisfies its waiters' need for it.
  for (std::size_t next = 0; next < unstuck.size(); ++next) {
    std::size_t i = unstuck[next];
    if (!stuck[i]) continue;
    stuck[i] = false;
    for (std::size_t w : waiters[i]) {
      if (!stuck[w]) continue;
      if (suspended[w]->need() == Suspension::Need::kAny || --stuck_awaited[w] == 0) {
        unstuck.push_back(w);
      }
    }
  }
  std::vector<Suspension*> deadlocked;
  for (std::size_t i = 0; i < n; ++i) {
    if (stuck[i]) deadlocked.push_back(suspended[i]);
  }
  return deadlocked;
}

std::exception_ptr deadlock_error(const std::vector<Suspension*>& deadlocked) noexcept {
  try {
    std::string message = "deadlock: " + std::to_string(deadlocked.size()) +
                          " suspended task(s) of this executor wait only for each other and can "
                          "never resume, so each ends with this error instead: ";
    std::size_t named = 0;
    for (const Suspension* s : deadlocked) {
      if (named == kMaxNamed) {
        message += "; and " + std::to_string(deadlocked.size() - named) + " more";
        break;
      }
      if (named++ != 0) message += "; ";
      message += repr(s->waiter()) + " waits for ";
      std::string list;
      std::size_t count = 0;
      for (std::size_t k = 0; k < s->awaited_count(); ++k) {
        const StateBase& awaited = s->awaited(k);
        if (s->satisfied(awaited)) continue;
        if (count++ != 0) list += ", ";
        list += repr(awaited);
      }
      if (count > 1) {
        message += s->need() == Suspension::Need::kAll ? "all of [" : "any of [";
        message += list + "]";
      } else {
        message += list;
      }
    }
    message +=
        ". A task must not wait, directly or through other tasks, for a task that waits for it";
    return std::make_exception_ptr(DeadlockError(message));
  } catch (...) {
    return std::current_exception();
  }
}

}  // namespace betterconcurrent::detail
