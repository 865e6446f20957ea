// The peer baseline of the benchmarks: the thread pool most people would write by hand.
// One std::mutex, one std::condition_variable, one std::deque<std::function<void()>>; submit()
// wraps the callable in a std::packaged_task and returns its std::future. join() waits until
// no task is pending (queued or running), counting tasks submitted by tasks, which is what a
// fire-and-forget computation needs.
//
// It has no cooperative waiting: a task that blocks on the future of another task of the same
// pool holds its thread, so fork-join recursion (fib) deadlocks once every thread is blocked.
#ifndef BETTERCONCURRENT_TOOLS_BENCH_HAND_ROLLED_POOL_H_
#define BETTERCONCURRENT_TOOLS_BENCH_HAND_ROLLED_POOL_H_

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace bench {

class HandRolledPool {
 public:
  explicit HandRolledPool(std::size_t threads) {
    for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
  }
  ~HandRolledPool() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }
  HandRolledPool(const HandRolledPool&) = delete;
  HandRolledPool& operator=(const HandRolledPool&) = delete;

  // Schedules fn() and returns its future.
  template <typename Fn>
  auto submit(Fn fn) -> std::future<std::invoke_result_t<Fn&>> {
    using R = std::invoke_result_t<Fn&>;
    // std::function needs a copyable callable; packaged_task is move-only, hence the
    // shared_ptr (one more allocation, as in most hand-written pools).
    auto task = std::make_shared<std::packaged_task<R()>>(std::move(fn));
    std::future<R> future = task->get_future();
    post([task = std::move(task)] { (*task)(); });
    return future;
  }

  // Schedules fn() with no future: fire-and-forget.
  void post(std::function<void()> fn) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(fn));
      ++pending_;
    }
    work_cv_.notify_one();
  }

  // Blocks until every task posted so far, and every task they posted, has finished.
  void join() {
    std::unique_lock lock(mu_);
    idle_cv_.wait(lock, [this] { return pending_ == 0; });
  }

 private:
  void work() {
    std::unique_lock lock(mu_);
    for (;;) {
      work_cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left
      std::function<void()> fn = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      fn();
      fn = nullptr;  // destroy the captures outside the lock
      lock.lock();
      if (--pending_ == 0) idle_cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable idle_cv_;
  std::deque<std::function<void()>> queue_;  // guarded by mu_
  std::size_t pending_ = 0;                  // queued or running; guarded by mu_
  bool stop_ = false;                        // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace bench

#endif  // BETTERCONCURRENT_TOOLS_BENCH_HAND_ROLLED_POOL_H_
