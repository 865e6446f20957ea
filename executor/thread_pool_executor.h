// ThreadPoolExecutor: Python's concurrent.futures.ThreadPoolExecutor with betterconcurrent's
// cooperative coroutine tasks and join().
//
//   auto pool = betterconcurrent::ThreadPoolExecutor::create({
//       .max_workers = 4,
//       .thread_name_prefix = "io",
//       .initializer = [] { /* runs first in every worker thread */ },
//   });
//   auto f = pool->submit([] { return 42; });
//   f.result();                // 42
//   pool->join();              // waits for everything, rethrows unobserved task errors
//   pool.reset();              // the last reference: shutdown(wait = true)
//
// Threads start on demand, up to max_workers: a submit from outside the pool starts a thread
// only when no worker is idle (Python's rule); a task that submits subtasks starts more only
// while no worker is idle to steal them. Idle threads are reused.
//
// THE DEADLOCK FOOTGUN, kept for compatibility: a plain callable that blocks (result(),
// exception(), wait()) on a future of the same bounded pool can deadlock, exactly as in Python,
// when every worker is blocked that way. Write such a task as a coroutine and
// `co_await f.yield_until_done()` instead: the worker runs other tasks while it waits.
//
// If the initializer throws, the pool breaks (Python's behaviour): the error is logged at
// CRITICAL, every pending task's future fails with BrokenThreadPool, and submit() throws
// BrokenThreadPool from then on. Coroutine tasks that had already started still finish.
#ifndef BETTERCONCURRENT_EXECUTOR_THREAD_POOL_EXECUTOR_H_
#define BETTERCONCURRENT_EXECUTOR_THREAD_POOL_EXECUTOR_H_

#include <atomic>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "executor/executor.h"
#include "executor/scheduler.h"

namespace betterconcurrent {

class ThreadPoolExecutor final : public Executor {
 public:
  struct Options {
    // The most threads the pool starts. Must be greater than 0 (Python rejects 0 and
    // negative counts too); empty means Python's default, min(32, hardware threads + 4).
    std::optional<int> max_workers;
    // Threads are named <prefix>_<index>; default "ThreadPoolExecutor-<n>".
    std::string thread_name_prefix;
    // Runs first in every worker thread (Python's initializer(*initargs)).
    std::function<void()> initializer;
  };

  // Throws std::invalid_argument ("max_workers must be greater than 0 ...") if max_workers is
  // 0 or negative, std::bad_alloc. Starts no thread. Strong guarantee: nothing is created
  // when it throws.
  static std::shared_ptr<ThreadPoolExecutor> create(Options options = {});
  // create({.max_workers = max_workers}). Same errors and guarantee.
  static std::shared_ptr<ThreadPoolExecutor> create(int max_workers) {
    Options options;
    options.max_workers = max_workers;
    return create(std::move(options));
  }

  // shutdown(wait = true), or, on one of the pool's own threads (a task dropped the last
  // reference), shutdown(wait = false) with the worker threads detached. In a child process
  // that inherited the pool through fork(), it does nothing (see "fork()" in executor.h).
  // Nothrow.
  ~ThreadPoolExecutor() override;

  void shutdown(bool wait = true, bool cancel_futures = false) override;
  void join(Timeout timeout = std::nullopt) override;

  // Python's _max_workers: the positive count given to create(), or the default. Nothrow.
  std::size_t max_workers() const noexcept { return scheduler_->max_workers(); }
  // Threads started so far (Python's len(_threads)). Nothrow.
  std::size_t num_threads() const noexcept { return scheduler_->num_threads(); }
  // Their names, in start order. May throw std::bad_alloc.
  std::vector<std::string> thread_names() const { return scheduler_->thread_names(); }
  // Python's _broken: empty, or why the pool is broken. May throw std::bad_alloc.
  std::string broken() const;

  struct PrivateTag {};
  ThreadPoolExecutor(PrivateTag, Options options);

 protected:
  void enqueue(detail::Runnable& task) override;
  detail::Scheduler& scheduler() noexcept override { return *scheduler_; }

 private:
  // The initializer and the broken state: what a starting worker needs. The worker threads
  // share it, since they outlive the executor when its own task destroyed it.
  class WorkerStart {
   public:
    explicit WorkerStart(std::function<void()> initializer)
        : initializer_(std::move(initializer)) {}
    // Runs the initializer; if it throws, logs that and breaks the pool. Returns null if the
    // worker may run tasks, else the error its first task and the queued ones get (also when
    // the pool broke before this worker started). Nothrow.
    std::exception_ptr run() noexcept;
    bool is_broken() const noexcept { return broken_flag_.load(std::memory_order_seq_cst); }
    // Empty, or why the pool is broken. May throw std::bad_alloc.
    std::string broken() const;
    // The error that the futures of a broken pool carry. Nothrow.
    std::exception_ptr broken_error() const noexcept;

   private:
    const std::function<void()> initializer_;
    std::atomic<bool> broken_flag_{false};
    mutable std::mutex mu_;
    std::string broken_ ABSL_GUARDED_BY(mu_);
  };

  void check_accepting() const;
  // Stops intake (and cancels what is queued, with cancel_futures). Nothrow.
  void stop(bool cancel_futures) noexcept;
  // Waits for every task (ending deadlocked ones) and joins the threads. Not from a worker.
  // Nothrow.
  void wait_for_threads() noexcept;

  std::shared_ptr<WorkerStart> worker_start_;
  std::shared_ptr<detail::Scheduler> scheduler_;
  std::atomic<bool> shutdown_{false};
};

}  // namespace betterconcurrent

#endif  // BETTERCONCURRENT_EXECUTOR_THREAD_POOL_EXECUTOR_H_
