// The cooperative scheduler: worker threads, their queues, the sleep and wake protocol, and the
// timers of timed cooperative waits. Its whole design is in docs/design.md; in short:
//
// Queues. Each worker owns a deque. A task submitted (or a coroutine woken) by a worker goes to
// the front of that worker's deque and the worker takes from the front (newest first, depth
// first, so fork-join recursion keeps few tasks alive). An idle worker first takes from the
// shared injection queue (FIFO, fed by threads outside the pool), then steals from the back of
// other workers' deques (oldest first). Every 61st pick looks at the injection queue first so
// that outside work is never starved by a busy recursion. A submit that starts a worker hands
// that worker the task as its first one, outside every queue: like Python's new thread, which
// takes the task before anything else can, so shutdown(cancel_futures) cannot cancel it.
//
// Task states. queued -> running -> (suspended -> queued -> running)* -> done. A coroutine that
// suspends is owned by the listener it linked into the future it waits for; firing that
// listener re-queues it. A worker never touches a task after handing it to resume(): by then
// it may already be running on another worker.
//
// Sleep and wake (an event count). An idle worker spins over the queues briefly; then it reads
// the epoch, announces itself in `sleepers_`, checks every queue once more under each queue's
// lock, and only then sleeps until the epoch changes. A pusher publishes the task under the
// queue's lock and then reads `sleepers_`; if anyone announced, it bumps the epoch under the
// sleep lock and notifies. Either the worker's final check sees the task, or the pusher sees
// the announcement (both go through the same queue lock), so no wake-up is lost.
//
// Deadlocks. drain() (join(), shutdown(wait)) searches for suspended coroutine tasks that wait
// only for each other whenever the pool goes quiet, and ends them with DeadlockError
// (executor/deadlock.h). A search runs behind a gate that keeps every worker out of running
// tasks: a worker that becomes active counts itself in `active_` and backs off if `searching_`
// is set; a search sets `searching_` and gives up if `active_` is not zero.
//
// Lifetime. Worker threads share ownership of the scheduler, so it lives until the last worker
// exits. Threads outside the pool push into the injection queue and signal sleepers while they
// hold the injection lock, and no worker can take (let alone finish) that task before they
// release it, so the scheduler cannot disappear under a thread that is waking it.
#ifndef BETTERCONCURRENT_EXECUTOR_SCHEDULER_H_
#define BETTERCONCURRENT_EXECUTOR_SCHEDULER_H_

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "executor/deadlock.h"
#include "executor/join_tracker.h"
#include "future/detail/state.h"

namespace betterconcurrent::detail {

class Scheduler;

// A unit of work in the queues: a task's first run, or a suspended coroutine's next step.
class Runnable {
 public:
  // Runs on a worker. Must not touch *this after the task may have been handed on (after it
  // resumed a coroutine, or ended the task).
  virtual void run(Scheduler& scheduler) noexcept = 0;
  // The task will never start: completes its future with `reason`, or cancels it (and notifies
  // its waiters) if `reason` is null, then ends it. Only for tasks that have not started.
  virtual void discard(Scheduler& scheduler, std::exception_ptr reason) noexcept = 0;
  // Whether the task already ran (a coroutine that is queued to resume).
  virtual bool started() const noexcept = 0;

  Runnable* prev = nullptr;  // queue links, owned by whichever queue holds the task
  Runnable* next = nullptr;
  bool external = false;  // submitted from outside the pool (Python's idle-thread rule)

 protected:
  ~Runnable() = default;
};

// A doubly linked list of runnables. Not thread-safe: each user guards it with a lock.
class RunQueue {
 public:
  void push_front(Runnable& r) noexcept;
  void push_back(Runnable& r) noexcept;
  Runnable* pop_front() noexcept;
  Runnable* pop_back() noexcept;
  // Detaches everything, oldest (back) first in the returned list linked by `next`.
  Runnable* take_all() noexcept;
  bool empty() const noexcept { return head_ == nullptr; }

 private:
  Runnable* head_ = nullptr;
  Runnable* tail_ = nullptr;
};

// A timed wake-up of a suspended coroutine. Lives in the waiting coroutine's frame.
struct TimerEntry {
  using Fire = void (*)(void* context) noexcept;
  TimerEntry(Fire fire, void* context) noexcept : fire(fire), context(context) {}
  Fire fire;
  void* context;
  std::chrono::steady_clock::time_point at;
  TimerEntry* prev = nullptr;
  TimerEntry* next = nullptr;
  bool linked = false;
};

class Scheduler : public std::enable_shared_from_this<Scheduler> {
 public:
  struct Options {
    std::size_t max_workers = 1;
    std::string thread_name_prefix;  // threads are named <prefix>_<index>
    // Runs first in every worker. A non-null error makes the worker exit at once, after it
    // discards its first task and every queued task that has not started with that error.
    // Workers may outlive the executor that made them (detach_threads()), so it must not refer
    // to it. Must not throw.
    std::function<std::exception_ptr()> on_worker_start;
  };

  static std::shared_ptr<Scheduler> create(Options options);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Enqueues a task that has not run yet; the caller has counted it in tracker(). When Python's
  // rule asks for a new worker (no idle worker, fewer than max_workers), starts one and hands
  // it the task instead. If that thread cannot start, throws (std::system_error) and enqueues
  // nothing.
  void submit(Runnable& task);
  // Re-enqueues a woken coroutine. Nothrow.
  void wake(Runnable& task) noexcept;

  // Called by a task that came from outside just before it completes its future, so that a
  // submit() that the completion unblocks reuses this worker instead of starting another.
  void release_idle_token() noexcept { idle_tokens_.fetch_add(1, std::memory_order_release); }
  // Called once a task's future is complete: ends its tracking and drops the queue's
  // reference to it. Nothrow.
  void task_ended(StateBase& task) noexcept;

  // Undoes the tracker().add() of a task that was never submitted. Nothrow.
  void withdraw() noexcept;

  JoinTracker& tracker() noexcept { return tracker_; }

  // From now on, workers exit once no task is outstanding. Nothrow.
  void stop() noexcept;
  // Joins every worker thread but the calling one, which is detached (an executor destroyed
  // by its own task). Nothrow.
  void join_threads() noexcept;
  // Detaches every worker thread; they exit on their own once stopped and idle. Nothrow.
  void detach_threads() noexcept;
  // Removes every task that has not started from the queues and discards it with `reason`
  // (null: cancel). Coroutines waiting to resume stay queued. Nothrow.
  void discard_queued(const std::exception_ptr& reason) noexcept;

  // Blocks until no task is outstanding (true) or the deadline passes (false). Each time the
  // pool goes quiet meanwhile (every worker idle, so every outstanding task suspended), it
  // looks for deadlocked tasks (executor/deadlock.h) and ends each with a DeadlockError, which
  // it records in tracker() for join(). A search without memory is skipped (the next quiet
  // moment tries again). Nothrow.
  bool drain(const Deadline& deadline) noexcept;

  // Tells a drain()er to search for deadlocks if the pool is quiet: for a change that may
  // deadlock a suspended task without any worker going idle. Nothrow.
  void prompt_deadlock_search() noexcept;

  // For a coroutine task that suspends for the first time, on one of this scheduler's workers:
  // registers where it publishes its suspensions, for drain() (executor/deadlock.h). Null if
  // there is no memory for a slot, or off the workers. Nothrow.
  SuspensionSlot* acquire_slot(const PublishedSuspension& published) noexcept;

  // Starts the timer thread if needed. Throws std::system_error if it cannot.
  void ensure_timer_thread();
  // Arms `entry` to fire at entry.at on the timer thread (after ensure_timer_thread()).
  void add_timer(TimerEntry& entry) noexcept;
  // Disarms `entry`; after it returns, `entry` will not fire. Nothrow.
  void cancel_timer(TimerEntry& entry) noexcept;

  // Whether this scheduler was created before a fork() that made this process: then its
  // threads and timer do not exist here, and its locks may be held for good by a thread that
  // was copied mid-operation. Such a scheduler must not be touched any more. Nothrow.
  bool inherited_by_fork() const noexcept;

  // Whether the calling thread is one of this scheduler's workers. Nothrow.
  bool is_own_worker() const noexcept;
  // Threads started so far (Python's len(executor._threads)). Nothrow.
  std::size_t num_threads() const noexcept { return started_.load(std::memory_order_acquire); }
  std::vector<std::string> thread_names() const;
  std::size_t max_workers() const noexcept { return options_.max_workers; }

 private:
  struct Worker {
    std::mutex mu;
    RunQueue queue ABSL_GUARDED_BY(mu);
    std::atomic<std::size_t> size{0};  // hint for idle scans; exact under mu
    std::thread thread;                // guarded by spawn_mu_
    std::string name;
    Runnable* first = nullptr;  // set before the thread starts; only that thread reads it
    // The slots of the coroutine tasks that first suspended on this worker.
    SuspensionRegistry suspensions;
  };

  explicit Scheduler(Options options);

  void worker_main(std::size_t index);
  Runnable* find_work(std::size_t index, bool thorough, unsigned tick) noexcept;
  Runnable* wait_for_work(std::size_t index) noexcept;
  bool exiting() const noexcept;
  void push_local(std::size_t index, Runnable& task) noexcept;
  void push_injected(Runnable& task) noexcept;
  void notify_sleeper() noexcept;
  void notify_all_sleepers() noexcept;
  // Starts the next worker with `first` as its first task. Returns false, leaving `first` to
  // the caller, if max_workers threads already exist.
  bool spawn_worker(Runnable& first);
  bool should_spawn(bool external) noexcept;
  void timer_main() noexcept;
  // A worker stops running tasks: tells drain() when that leaves none running. Nothrow.
  void went_idle() noexcept;
  // A worker is about to run tasks again (or for the first time): counts it as active, after
  // waiting for a search in progress to open the gate. Nothrow.
  void become_active() noexcept;
  std::size_t outstanding() const noexcept { return tracker_.outstanding(); }
  // Whether no worker is running tasks. Nothrow.
  bool quiet() const noexcept { return active_.load(std::memory_order_seq_cst) == 0; }
  // Finds the deadlocked tasks among the suspended ones and ends them; returns whether there
  // were any. May throw std::bad_alloc (then nothing changed).
  bool end_deadlocked();

  const Options options_;
  const std::uint64_t fork_generation_;  // forks this process had seen when it was created
  std::unique_ptr<Worker[]> workers_;    // max_workers slots; [0, started_) are live
  std::atomic<std::size_t> started_{0};
  std::mutex spawn_mu_;  // guards the workers' std::thread objects: spawning, joining, detaching

  std::mutex inject_mu_;
  RunQueue injected_ ABSL_GUARDED_BY(inject_mu_);
  std::atomic<std::size_t> injected_size_{0};

  std::atomic<std::size_t> idle_workers_{0};  // spinning or sleeping

  // Deadlock searches (drain()). A search closes the gate and proceeds only if no worker is
  // active then; a worker that becomes active while the gate is closed backs off and waits for
  // it to open. Both sides write their flag before they read the other's (seq_cst), so either
  // the search sees the worker or the worker sees the gate: no task runs during a search.
  std::mutex deadlock_mu_;              // one search at a time
  std::atomic<std::size_t> active_{0};  // workers running tasks
  std::atomic<bool> searching_{false};  // the gate is closed
  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  std::atomic<std::size_t> idle_tokens_{0};  // Python's _idle_semaphore
  std::atomic<int> sleepers_{0};
  std::atomic<std::uint64_t> epoch_{0};  // changed under sleep_mu_
  std::mutex sleep_mu_;
  std::condition_variable sleep_cv_;
  std::atomic<bool> stopping_{false};

  JoinTracker tracker_;

  std::mutex timer_mu_;
  std::condition_variable timer_cv_;
  TimerEntry* timers_ ABSL_GUARDED_BY(timer_mu_) = nullptr;  // sorted by deadline
  bool timer_stop_ ABSL_GUARDED_BY(timer_mu_) = false;
  std::thread timer_thread_ ABSL_GUARDED_BY(timer_mu_);
};

// Fault injection for tests: while positive, each worker-thread start fails with
// std::system_error and decrements it.
extern std::atomic<int> g_fail_thread_starts;

}  // namespace betterconcurrent::detail

#endif  // BETTERCONCURRENT_EXECUTOR_SCHEDULER_H_
