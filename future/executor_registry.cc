#include "future/detail/executor_registry.h"

#include <pthread.h>

#include <mutex>
#include <unordered_map>
#include <utility>

namespace betterconcurrent::detail {
namespace {

struct Registry {
  std::mutex mu;
  std::uint64_t last_id = 0;
  // std::unordered_map: emplace() has no effect if it throws (Abseil 20220623's flat_hash_map
  // is left inconsistent by a failed allocation).
  std::unordered_map<std::uint64_t, std::weak_ptr<Executor>> executors;
};

Registry& registry() {
  static auto* r = new Registry;  // never destroyed: executors may outlive static destruction
  return *r;
}

// fork() holds the lock across itself, so that a child never inherits it held by a thread that
// does not exist there: the child can still create and destroy executors.
void lock_for_fork() { registry().mu.lock(); }
void unlock_after_fork() { registry().mu.unlock(); }
[[maybe_unused]] const int g_fork_guard =
    pthread_atfork(&lock_for_fork, &unlock_after_fork, &unlock_after_fork);

}  // namespace

std::uint64_t register_executor(std::weak_ptr<Executor> executor) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  std::uint64_t id = r.last_id + 1;
  r.executors.emplace(id, std::move(executor));
  r.last_id = id;
  return id;
}

void unregister_executor(std::uint64_t id) noexcept {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  r.executors.erase(id);
}

std::shared_ptr<Executor> find_executor(std::uint64_t id) {
  if (id == 0) return nullptr;
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  auto it = r.executors.find(id);
  return it == r.executors.end() ? nullptr : it->second.lock();
}

}  // namespace betterconcurrent::detail
