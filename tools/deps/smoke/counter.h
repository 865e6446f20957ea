#pragma once
#include <coroutine>
#include <string>
#include "absl/synchronization/mutex.h"
namespace smoke {
class Counter {
 public:
  void add(int n);
  int get() const;
  std::string describe() const;
 private:
  mutable absl::Mutex mu_;
  int value_ = 0;
};
struct Gen {
  struct promise_type {
    int v = 0;
    Gen get_return_object() { return Gen{std::coroutine_handle<promise_type>::from_promise(*this)}; }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    std::suspend_always yield_value(int x) { v = x; return {}; }
    void return_void() {}
    void unhandled_exception() {}
  };
  std::coroutine_handle<promise_type> h;
  ~Gen() { if (h) h.destroy(); }
};
Gen count_to(int n);
}  // namespace smoke
