#include <thread>
#include <vector>
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
TEST(AbslMutex, FourThreadsIncrement) {
  absl::Mutex mu; int counter = 0;
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) ts.emplace_back([&] { for (int i = 0; i < 10000; ++i) { absl::MutexLock l(&mu); ++counter; } });
  for (auto& t : ts) t.join();
  absl::MutexLock l(&mu);
  EXPECT_EQ(counter, 40000);
}
