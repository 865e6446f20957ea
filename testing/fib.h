// Test helper: fork-join Fibonacci where every call of the recursion is a coroutine task on `ex`,
// which waits for its two subtasks cooperatively.
#ifndef BETTERCONCURRENT_TESTING_FIB_H_
#define BETTERCONCURRENT_TESTING_FIB_H_

#include "executor/executor.h"
#include "executor/task.h"

namespace betterconcurrent::test_util {

inline Task<long> fib(Executor* ex, int n) {
  if (n < 2) co_return n;
  auto a = ex->submit(fib, ex, n - 1);
  auto b = ex->submit(fib, ex, n - 2);
  co_await a.yield_until_done();
  co_await b.yield_until_done();
  co_return a.result() + b.result();
}

}  // namespace betterconcurrent::test_util

#endif  // BETTERCONCURRENT_TESTING_FIB_H_
