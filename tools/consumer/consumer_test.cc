// Uses betterconcurrent from another workspace, through its public headers only.

#include "executor/thread_pool_executor.h"
#include "gtest/gtest.h"

namespace {

TEST(Consumer, ThreadPoolRunsASubmittedTask) {
  auto pool = betterconcurrent::ThreadPoolExecutor::create();
  auto future = pool->submit([] { return 21 * 2; });
  EXPECT_EQ(future.result(), 42);
}

}  // namespace
