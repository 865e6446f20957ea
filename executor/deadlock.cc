#include "executor/deadlock.h"

#include <string>
#include <unordered_map>

#include "future/exceptions.h"

namespace betterconcurrent::detail {

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
    bool any_free = false;  // waiting for any: one of them needs no stuck task
    for (StateBase* awaited : s.awaited()) {
      auto it = s.satisfied(*awaited) ? task_of.end() : task_of.find(awaited);
      if (it == task_of.end()) {
        any_free = true;  // satisfied, or something outside the candidates may complete it
        continue;
      }
      ++stuck_awaited[i];
      waiters[it->second].push_back(i);
    }
    bool progress = stuck_awaited[i] == 0 || (s.need() == Suspension::Need::kAny && any_free);
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
      for (const StateBase* awaited : s->awaited()) {
        if (s->satisfied(*awaited)) continue;
        if (count++ != 0) list += ", ";
        list += repr(*awaited);
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
