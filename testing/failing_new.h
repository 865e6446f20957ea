// Test helper: allocation-failure injection. Linking //testing:failing_new replaces the global
// operator new (and delete) of the test binary with one that can be armed, per thread or for
// the whole process, to throw std::bad_alloc on a chosen upcoming allocation.
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
// The same, counted over every thread of the process.
void set_process_countdown(long n) noexcept;
void clear_process_injected() noexcept;
bool process_injected() noexcept;
// While set, every allocation of the process fails; refused() counts them (ever).
void set_refuse_all(bool refuse) noexcept;
long refused() noexcept;
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

// While alive, the allocation number `n` (0-based) made by any thread of the process after
// construction fails with std::bad_alloc, then the allocator disarms itself; disarms when it
// ends. For sweeping every allocation of a workload that runs on several threads.
class FailProcessAllocation {
 public:
  explicit FailProcessAllocation(long n) {
    failing_new_detail::clear_process_injected();
    failing_new_detail::set_process_countdown(n);
  }
  ~FailProcessAllocation() { failing_new_detail::set_process_countdown(-1); }
  FailProcessAllocation(const FailProcessAllocation&) = delete;
  FailProcessAllocation& operator=(const FailProcessAllocation&) = delete;

  // Whether the chosen allocation has failed.
  bool injected() const { return failing_new_detail::process_injected(); }
};

// While alive, every allocation of the process, on any thread, fails with std::bad_alloc. For
// proving that a stretch of work allocates nothing: refused() counts the attempts.
class RefuseAllAllocations {
 public:
  RefuseAllAllocations() : before_(failing_new_detail::refused()) {
    failing_new_detail::set_refuse_all(true);
  }
  ~RefuseAllAllocations() { failing_new_detail::set_refuse_all(false); }
  RefuseAllAllocations(const RefuseAllAllocations&) = delete;
  RefuseAllAllocations& operator=(const RefuseAllAllocations&) = delete;

  // How many allocations failed since construction.
  long refused() const { return failing_new_detail::refused() - before_; }

 private:
  long before_;
};

}  // namespace betterconcurrent::test_util

#endif  // BETTERCONCURRENT_TESTING_FAILING_NEW_H_
