// Test helper: tearing down a ThreadPoolExecutor without letting a bug hang the test binary.
#ifndef BETTERCONCURRENT_TESTING_POOL_H_
#define BETTERCONCURRENT_TESTING_POOL_H_

#include <chrono>
#include <future>
#include <memory>
#include <thread>
#include <utility>

#include "executor/thread_pool_executor.h"
#include "future/exceptions.h"
#include "gtest/gtest.h"

namespace betterconcurrent::test_util {

// Joins the pool, then destroys it on another thread. Returns false (and adds a test failure) if
// either does not finish within `timeout`; a destructor that hangs is left blocked on its
// detached thread (with the pool), so that the other tests still run. For tests that have
// exposed a double resumption.
inline bool join_and_destroy(std::shared_ptr<ThreadPoolExecutor> pool,
                             std::chrono::seconds timeout = std::chrono::seconds(10)) {
  bool ok = true;
  try {
    pool->join(timeout);
  } catch (const TimeoutError&) {
    ADD_FAILURE() << "join() never saw the pool idle";
    ok = false;
  }
  auto destroyed = std::make_shared<std::promise<void>>();
  std::future<void> done = destroyed->get_future();
  std::thread([pool = std::move(pool), destroyed]() mutable {
    pool.reset();
    destroyed->set_value();
  }).detach();
  if (done.wait_for(timeout) != std::future_status::ready) {
    ADD_FAILURE() << "the pool's destructor (shutdown(wait = true)) hangs";
    ok = false;
  }
  return ok;
}

}  // namespace betterconcurrent::test_util

#endif  // BETTERCONCURRENT_TESTING_POOL_H_
