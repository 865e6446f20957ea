// Two coroutine tasks that wait for each other: join() ends them and names them, instead of
// hanging. Exits 0 if that is what happened.
#include <chrono>
#include <cstdio>
#include <memory>
#include <vector>

#include "executor/task.h"
#include "executor/thread_pool_executor.h"
#include "future/exceptions.h"
#include "future/future.h"

using betterconcurrent::DeadlockError;
using betterconcurrent::Future;
using betterconcurrent::Task;
using betterconcurrent::ThreadPoolExecutor;

using Ring = std::vector<Future<void>>;

// Waits for `go`, a hand-made future (no deadlock while it is pending: the main thread sets
// it), then for the other task of the ring.
Task<void> wait_for(Future<void> go, std::shared_ptr<Ring> ring, int other) {
  co_await go.yield_until_done();
  co_await (*ring)[other].yield_until_done();
}

int main() {
  auto pool = ThreadPoolExecutor::create(2);
  auto ring = std::make_shared<Ring>();
  Future<void> go;
  ring->push_back(pool->submit(wait_for, go, ring, 1));
  ring->push_back(pool->submit(wait_for, go, ring, 0));
  go.set_result();
  try {
    pool->join(std::chrono::seconds(60));
  } catch (const DeadlockError& e) {
    std::printf("join(): %s\n", e.what());
    for (const Future<void>& f : *ring) {
      if (!f.exception()) return 1;  // each task ended with the error
    }
    pool->join();  // reported once; nothing left
    std::printf("both tasks ended with DeadlockError; the pool is usable: %d\n",
                pool->submit([] { return 42; }).result());
    return 0;
  }
  std::printf("join() did not report the deadlock\n");
  return 1;
}
