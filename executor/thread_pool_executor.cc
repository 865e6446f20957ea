#include "executor/thread_pool_executor.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include "future/detail/executor_registry.h"
#include "future/exceptions.h"
#include "future/log.h"

namespace betterconcurrent {
namespace {

std::atomic<unsigned> g_pool_counter{0};

constexpr const char* kInheritedByFork =
    "this executor was inherited from the parent process by fork(): its worker threads do not "
    "exist in this process; create a new executor here";

std::size_t default_max_workers() {
  return std::min<std::size_t>(32, std::thread::hardware_concurrency() + 4);
}

}  // namespace

Executor::~Executor() {
  if (id_ != 0) detail::unregister_executor(id_);
}

void Executor::register_self() { id_ = detail::register_executor(weak_from_this()); }

std::shared_ptr<ThreadPoolExecutor> ThreadPoolExecutor::create(Options options) {
  auto pool = std::make_shared<ThreadPoolExecutor>(PrivateTag{}, std::move(options));
  pool->register_self();
  return pool;
}

ThreadPoolExecutor::ThreadPoolExecutor(PrivateTag, Options options)
    : worker_start_(std::make_shared<WorkerStart>(std::move(options.initializer))) {
  std::size_t max_workers = default_max_workers();
  if (options.max_workers.has_value()) {
    if (*options.max_workers <= 0) {
      throw std::invalid_argument(
          "max_workers must be greater than 0, got " + std::to_string(*options.max_workers) +
          "; pass a positive thread count, or leave Options::max_workers empty for the default "
          "(min(32, hardware threads + 4))");
    }
    max_workers = static_cast<std::size_t>(*options.max_workers);
  }
  std::string prefix = options.thread_name_prefix.empty()
                           ? "ThreadPoolExecutor-" + std::to_string(g_pool_counter++)
                           : std::move(options.thread_name_prefix);
  scheduler_ = detail::Scheduler::create(detail::Scheduler::Options{
      .max_workers = max_workers,
      .thread_name_prefix = std::move(prefix),
      .on_worker_start = [start = worker_start_] { return start->run(); },
  });
}

ThreadPoolExecutor::~ThreadPoolExecutor() {
  stop(false);
  if (scheduler_->inherited_by_fork()) return;  // the parent's threads: none to stop or join here
  if (scheduler_->is_own_worker()) {
    scheduler_->detach_threads();  // this thread cannot join itself; the workers end on their own
  } else {
    wait_for_threads();
  }
}

std::exception_ptr ThreadPoolExecutor::WorkerStart::run() noexcept {
  // A worker started by a submit that raced with the break must not run that task.
  if (is_broken()) return broken_error();
  if (!initializer_) return nullptr;
  try {
    initializer_();
    return nullptr;
  } catch (...) {
    detail::log(LogLevel::kCritical, "Exception in initializer:", std::current_exception());
  }
  // Python's _initializer_failed(): break the pool; the scheduler fails what is queued.
  try {
    std::lock_guard lock(mu_);
    if (broken_.empty()) {
      broken_ = "A thread initializer failed, the thread pool is not usable anymore";
    }
  } catch (...) {
    // The message could not be stored; the flag below still breaks the pool.
  }
  broken_flag_.store(true, std::memory_order_seq_cst);
  return broken_error();
}

std::exception_ptr ThreadPoolExecutor::WorkerStart::broken_error() const noexcept {
  try {
    return std::make_exception_ptr(BrokenThreadPool(broken()));
  } catch (...) {
    return std::current_exception();  // std::bad_alloc: still an error, never lost
  }
}

std::string ThreadPoolExecutor::WorkerStart::broken() const {
  std::lock_guard lock(mu_);
  return broken_;
}

std::string ThreadPoolExecutor::broken() const { return worker_start_->broken(); }

void ThreadPoolExecutor::check_accepting() const {
  if (worker_start_->is_broken()) throw BrokenThreadPool(broken());
  if (shutdown_.load(std::memory_order_seq_cst)) {
    throw std::runtime_error("cannot schedule new futures after shutdown");
  }
}

void ThreadPoolExecutor::enqueue(detail::Runnable& task) {
  // Before anything touches the scheduler, whose locks the parent's threads may have held.
  if (scheduler_->inherited_by_fork()) throw std::runtime_error(kInheritedByFork);
  // Counted before the checks: shutdown() and the break set their flag before they look at
  // the count, so either they see this task or this task sees their flag.
  scheduler_->tracker().add();
  try {
    check_accepting();
    scheduler_->submit(task);
  } catch (...) {
    scheduler_->withdraw();
    throw;
  }
  // A break that drained the queues just before our push would miss this task; drain again.
  if (worker_start_->is_broken()) scheduler_->discard_queued(worker_start_->broken_error());
}

void ThreadPoolExecutor::stop(bool cancel_futures) noexcept {
  shutdown_.store(true, std::memory_order_seq_cst);
  // In a child of fork(), the queues and threads are the parent's: there is nothing to stop or
  // join, and their locks may be held for good.
  if (scheduler_->inherited_by_fork()) return;
  if (cancel_futures) scheduler_->discard_queued(nullptr);
  scheduler_->stop();
}

void ThreadPoolExecutor::wait_for_threads() noexcept {
  scheduler_->drain(detail::Deadline::never());  // ends deadlocked tasks, which never would
  scheduler_->join_threads();
}

void ThreadPoolExecutor::shutdown(bool wait, bool cancel_futures) {
  stop(cancel_futures);
  if (!wait || scheduler_->inherited_by_fork()) return;
  if (scheduler_->is_own_worker()) {
    throw std::runtime_error(
        "cannot join current thread: shutdown(wait=true) was called from one of this "
        "executor's own tasks; call shutdown(false) there, or shut down from outside");
  }
  wait_for_threads();
}

void ThreadPoolExecutor::join(Timeout timeout) {
  if (scheduler_->inherited_by_fork()) throw std::runtime_error(kInheritedByFork);
  if (scheduler_->is_own_worker()) {
    throw std::runtime_error(
        "join() was called from one of this executor's own tasks, so it could never return; "
        "join from outside the executor, or co_await the futures you need");
  }
  if (!scheduler_->drain(detail::Deadline::after(timeout))) {
    throw TimeoutError("join() timed out with " +
                       std::to_string(scheduler_->tracker().outstanding()) +
                       " task(s) still queued, running or suspended");
  }
  if (std::exception_ptr deadlock = scheduler_->tracker().take_deadlock()) {
    std::rethrow_exception(deadlock);
  }
  std::vector<std::exception_ptr> unobserved = scheduler_->tracker().take_unobserved();
  if (!unobserved.empty()) throw UnobservedTaskErrors(std::move(unobserved));
}

}  // namespace betterconcurrent
