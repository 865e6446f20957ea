#include "tools/deps/smoke/counter.h"
#include "absl/strings/str_cat.h"
namespace smoke {
void Counter::add(int n) { absl::MutexLock lock(&mu_); value_ += n; }
int Counter::get() const { absl::MutexLock lock(&mu_); return value_; }
std::string Counter::describe() const { return absl::StrCat("count=", get()); }
Gen count_to(int n) { for (int i = 1; i <= n; ++i) co_yield i; }
}  // namespace smoke
