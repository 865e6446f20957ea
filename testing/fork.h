// Test helpers for fork(): a bounded wait for a child, and what a forked child needs under the
// sanitizers. Linking this library also sets ThreadSanitizer's die_after_fork=0 (its default
// ends a child of a multithreaded process as soon as the child starts a thread).
#ifndef BETTERCONCURRENT_TESTING_FORK_H_
#define BETTERCONCURRENT_TESTING_FORK_H_

#include <sys/types.h>

#include <chrono>
#include <optional>

namespace betterconcurrent::test_util {

// Waits up to `timeout` for child `pid` to exit and returns its wait status; kills and reaps it
// and returns nullopt if it is still running then.
std::optional<int> wait_child(pid_t pid, std::chrono::duration<double> timeout);

// Call first in a forked child that will start threads. Under ThreadSanitizer, glibc hands the
// stack of a parent thread that did not survive the fork to the child's next new thread, which
// so gets that thread's id, and TSan, which still counts the parent's thread as running, dies
// ("dup thread with used id"); a larger default stack size gives the child's threads fresh
// stacks. Elsewhere it does nothing. Returns false if it could not.
bool give_child_threads_fresh_ids();

#if defined(__SANITIZE_ADDRESS__)
// GCC 12's AddressSanitizer does not hold its allocator's locks across fork(): a child forked
// while another thread is inside malloc or free can block on such a lock for ever.
inline constexpr bool kForkWhileAllocatingHangs = true;
#else
inline constexpr bool kForkWhileAllocatingHangs = false;
#endif

}  // namespace betterconcurrent::test_util

#endif  // BETTERCONCURRENT_TESTING_FORK_H_
