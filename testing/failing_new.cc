#include "testing/failing_new.h"

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

namespace {

thread_local long t_allocations_before_failure = -1;  // -1: never fail
thread_local bool t_failure_injected = false;
// Process-wide: negative means disarmed. Each allocation decrements it while it is not
// negative; the one that takes it from 0 to -1 fails.
std::atomic<long> g_allocations_before_failure{-1};
std::atomic<bool> g_failure_injected{false};
// While set, every allocation of the process fails, and is counted.
std::atomic<bool> g_refuse_all{false};
std::atomic<long> g_refused{0};

void* allocate(std::size_t size) {
  if (g_refuse_all.load(std::memory_order_acquire)) {
    g_refused.fetch_add(1, std::memory_order_relaxed);
    throw std::bad_alloc();
  }
  if (g_allocations_before_failure.load(std::memory_order_relaxed) >= 0 &&
      g_allocations_before_failure.fetch_sub(1, std::memory_order_acq_rel) == 0) {
    g_failure_injected.store(true);
    throw std::bad_alloc();
  }
  if (t_allocations_before_failure == 0) {
    t_allocations_before_failure = -1;
    t_failure_injected = true;
    throw std::bad_alloc();
  }
  if (t_allocations_before_failure > 0) --t_allocations_before_failure;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}

void* allocate_nothrow(std::size_t size) noexcept {
  try {
    return allocate(size);
  } catch (...) {
    return nullptr;
  }
}

}  // namespace

namespace betterconcurrent::test_util::failing_new_detail {

void set_countdown(long n) noexcept { t_allocations_before_failure = n; }
long countdown() noexcept { return t_allocations_before_failure; }
void clear_injected() noexcept { t_failure_injected = false; }
bool injected() noexcept { return t_failure_injected; }
void set_process_countdown(long n) noexcept { g_allocations_before_failure.store(n); }
void clear_process_injected() noexcept { g_failure_injected.store(false); }
bool process_injected() noexcept { return g_failure_injected.load(); }
void set_refuse_all(bool refuse) noexcept { g_refuse_all.store(refuse); }
long refused() noexcept { return g_refused.load(); }

}  // namespace betterconcurrent::test_util::failing_new_detail

void* operator new(std::size_t size) { return allocate(size); }
void* operator new[](std::size_t size) { return allocate(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return allocate_nothrow(size);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return allocate_nothrow(size);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
