// A four-byte mutex for future states: a futex word with three values (free, held, held with
// sleepers). Each future owns one, so it has to be small; the critical sections it guards are a
// few pointer updates, so it spins briefly before it sleeps.
#ifndef BETTERCONCURRENT_FUTURE_DETAIL_LOCK_H_
#define BETTERCONCURRENT_FUTURE_DETAIL_LOCK_H_

#include <atomic>

#include "absl/base/thread_annotations.h"

namespace betterconcurrent::detail {

// A hint to the processor that the caller is busy-waiting.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

class ABSL_LOCKABLE Lock {
 public:
  Lock() = default;
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

  void lock() noexcept ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    int expected = kFree;
    if (!word_.compare_exchange_strong(expected, kHeld, std::memory_order_acquire)) lock_slow();
  }

  void unlock() noexcept ABSL_UNLOCK_FUNCTION() {
    if (word_.exchange(kFree, std::memory_order_release) == kContended) word_.notify_one();
  }

 private:
  static constexpr int kFree = 0;
  static constexpr int kHeld = 1;
  static constexpr int kContended = 2;

  void lock_slow() noexcept {
    for (int spin = 0; spin < 64; ++spin) {
      cpu_relax();
      int expected = kFree;
      if (word_.load(std::memory_order_relaxed) == kFree &&
          word_.compare_exchange_weak(expected, kHeld, std::memory_order_acquire)) {
        return;
      }
    }
    // Announce a sleeper; whoever unlocks a contended word wakes one.
    while (word_.exchange(kContended, std::memory_order_acquire) != kFree) {
      word_.wait(kContended, std::memory_order_relaxed);
    }
  }

  std::atomic<int> word_{kFree};
};

}  // namespace betterconcurrent::detail

#endif  // BETTERCONCURRENT_FUTURE_DETAIL_LOCK_H_
