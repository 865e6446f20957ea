// Test helper: allocation-failure injection. Linking //testing:failing_new replaces the global
// operator new (and delete) of the test binary with one that can be armed, per thread, to throw
// std::bad_alloc on a chosen upcoming allocation.
#ifndef BETTERCONCURRENT_TESTING_FAILING_NEW_H_
#define BETTERCONCURRENT_TESTING_FAILING_NEW_H_

namespace betterconcurrent::test_util {

namespace failing_new_detail {
// -1: disarmed. n >= 0: the allocation n calls from now (on this thread) throws, then disarms.
void set_countdown(long n) noexcept;
long countdown() noexcept;
// Whether the armed allocation of this thread has failed since it was last armed.
void clear_injected() noexcept;
bool injected() noexcept;
}  // namespace failing_new_detail

// While alive, the allocation number `n` (0-based) of the calling thread fails with
// std::bad_alloc, then the allocator disarms itself; disarms when it ends.
class FailAllocation {
 public:
  explicit FailAllocation(long n) {
    failing_new_detail::clear_injected();
    failing_new_detail::set_countdown(n);
  }
  ~FailAllocation() { failing_new_detail::set_countdown(-1); }
  FailAllocation(const FailAllocation&) = delete;
  FailAllocation& operator=(const FailAllocation&) = delete;

  // Whether the chosen allocation has failed.
  bool injected() const { return failing_new_detail::injected(); }
  // Whether the calling thread's allocator is disarmed (the armed allocation happened, or none
  // is armed).
  static bool fired() { return failing_new_detail::countdown() < 0; }
};

}  // namespace betterconcurrent::test_util

#endif  // BETTERCONCURRENT_TESTING_FAILING_NEW_H_
