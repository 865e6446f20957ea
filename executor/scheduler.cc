#include "executor/scheduler.h"

#include <pthread.h>

#include <new>
#include <system_error>
#include <utility>

namespace betterconcurrent::detail {

std::atomic<int> g_fail_thread_starts{0};

namespace {

// How many times an idle worker scans the queues before it goes to sleep.
constexpr int kIdleSpins = 64;
// Every this many picks, a worker looks at the injection queue before its own deque.
constexpr unsigned kInjectionCheckPeriod = 61;

// How many fork()s made this process (counted in each child). A scheduler created at another
// count belongs to an ancestor process.
std::atomic<std::uint64_t> g_fork_generation{0};
void count_fork_in_child() { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }
[[maybe_unused]] const int g_fork_counter = pthread_atfork(nullptr, nullptr, &count_fork_in_child);

struct WorkerIdentity {
  const Scheduler* scheduler = nullptr;
  std::size_t index = 0;
};
thread_local WorkerIdentity tls_worker;

}  // namespace

void RunQueue::push_front(Runnable& r) noexcept {
  r.prev = nullptr;
  r.next = head_;
  if (head_ != nullptr) {
    head_->prev = &r;
  } else {
    tail_ = &r;
  }
  head_ = &r;
}

void RunQueue::push_back(Runnable& r) noexcept {
  r.next = nullptr;
  r.prev = tail_;
  if (tail_ != nullptr) {
    tail_->next = &r;
  } else {
    head_ = &r;
  }
  tail_ = &r;
}

Runnable* RunQueue::pop_front() noexcept {
  Runnable* r = head_;
  if (r == nullptr) return nullptr;
  head_ = r->next;
  if (head_ != nullptr) {
    head_->prev = nullptr;
  } else {
    tail_ = nullptr;
  }
  r->next = nullptr;
  return r;
}

Runnable* RunQueue::pop_back() noexcept {
  Runnable* r = tail_;
  if (r == nullptr) return nullptr;
  tail_ = r->prev;
  if (tail_ != nullptr) {
    tail_->next = nullptr;
  } else {
    head_ = nullptr;
  }
  r->prev = nullptr;
  return r;
}

Runnable* RunQueue::take_all() noexcept {
  Runnable* oldest = nullptr;
  Runnable* last = nullptr;
  while (Runnable* r = pop_back()) {
    if (last == nullptr) {
      oldest = r;
    } else {
      last->next = r;
    }
    last = r;
  }
  return oldest;
}

std::shared_ptr<Scheduler> Scheduler::create(Options options) {
  return std::shared_ptr<Scheduler>(new Scheduler(std::move(options)));
}

Scheduler::Scheduler(Options options)
    : options_(std::move(options)),
      fork_generation_(g_fork_generation.load(std::memory_order_relaxed)),
      workers_(std::make_unique<Worker[]>(options_.max_workers)) {}

Scheduler::~Scheduler() {
  std::thread timer;
  {
    std::lock_guard lock(timer_mu_);
    timer_stop_ = true;
    timer = std::move(timer_thread_);
  }
  timer_cv_.notify_all();
  if (timer.joinable()) timer.join();
}

bool Scheduler::inherited_by_fork() const noexcept {
  return g_fork_generation.load(std::memory_order_relaxed) != fork_generation_;
}

bool Scheduler::is_own_worker() const noexcept { return tls_worker.scheduler == this; }

std::vector<std::string> Scheduler::thread_names() const {
  std::vector<std::string> names;
  std::size_t n = num_threads();
  names.reserve(n);
  for (std::size_t i = 0; i < n; ++i) names.push_back(workers_[i].name);
  return names;
}

bool Scheduler::should_spawn(bool external) noexcept {
  if (num_threads() >= options_.max_workers) return false;
  if (external) {
    // Python: reuse an idle thread if one is (or is about to be) free.
    std::size_t tokens = idle_tokens_.load(std::memory_order_acquire);
    while (tokens > 0) {
      if (idle_tokens_.compare_exchange_weak(tokens, tokens - 1, std::memory_order_acq_rel)) {
        return false;
      }
    }
    return true;
  }
  // A worker's own subtask: start another worker only if none is idle to steal it.
  return idle_workers_.load(std::memory_order_acquire) == 0;
}

bool Scheduler::spawn_worker(Runnable& first) {
  std::lock_guard lock(spawn_mu_);
  std::size_t index = started_.load(std::memory_order_relaxed);
  if (index >= options_.max_workers) return false;
  Worker& w = workers_[index];
  w.name = options_.thread_name_prefix + "_" + std::to_string(index);
  if (g_fail_thread_starts.load(std::memory_order_relaxed) > 0 &&
      g_fail_thread_starts.fetch_sub(1, std::memory_order_relaxed) > 0) {
    throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again),
                            "can't start new thread (injected fault)");
  }
  w.first = &first;  // the thread's start publishes it
  try {
    w.thread = std::thread([self = shared_from_this(), index] { self->worker_main(index); });
  } catch (...) {
    w.first = nullptr;
    throw;
  }
  started_.store(index + 1, std::memory_order_release);
  return true;
}

void Scheduler::submit(Runnable& task) {
  bool own = is_own_worker();
  task.external = !own;
  if (should_spawn(!own) && spawn_worker(task)) return;
  if (own) {
    push_local(tls_worker.index, task);
  } else {
    push_injected(task);
  }
}

void Scheduler::wake(Runnable& task) noexcept {
  if (is_own_worker()) {
    push_local(tls_worker.index, task);
  } else {
    push_injected(task);
  }
}

void Scheduler::push_local(std::size_t index, Runnable& task) noexcept {
  Worker& w = workers_[index];
  {
    std::lock_guard lock(w.mu);
    w.queue.push_front(task);
    w.size.fetch_add(1, std::memory_order_relaxed);
  }
  notify_sleeper();
}

void Scheduler::push_injected(Runnable& task) noexcept {
  // Signal while holding inject_mu_: see "Lifetime" in scheduler.h.
  std::lock_guard lock(inject_mu_);
  injected_.push_back(task);
  injected_size_.fetch_add(1, std::memory_order_relaxed);
  notify_sleeper();
}

void Scheduler::notify_sleeper() noexcept {
  if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
  {
    std::lock_guard lock(sleep_mu_);
    epoch_.fetch_add(1, std::memory_order_seq_cst);
  }
  sleep_cv_.notify_one();
}

void Scheduler::notify_all_sleepers() noexcept {
  {
    std::lock_guard lock(sleep_mu_);
    epoch_.fetch_add(1, std::memory_order_seq_cst);
  }
  sleep_cv_.notify_all();
}

void Scheduler::task_ended(StateBase& task) noexcept {
  tracker_.record_outcome(task);
  // Release before uncounting: once join() sees zero, no worker touches a task any more.
  task.release();
  bool idle = tracker_.finished();
  if (idle && stopping_.load(std::memory_order_seq_cst)) notify_all_sleepers();
}

void Scheduler::withdraw() noexcept {
  if (tracker_.withdraw() && stopping_.load(std::memory_order_seq_cst)) notify_all_sleepers();
}

void Scheduler::detach_threads() noexcept {
  std::lock_guard lock(spawn_mu_);
  std::size_t n = num_threads();
  for (std::size_t i = 0; i < n; ++i) {
    if (workers_[i].thread.joinable()) workers_[i].thread.detach();
  }
}

void Scheduler::stop() noexcept {
  stopping_.store(true, std::memory_order_seq_cst);
  notify_all_sleepers();
}

bool Scheduler::exiting() const noexcept {
  return stopping_.load(std::memory_order_seq_cst) && tracker_.outstanding() == 0;
}

void Scheduler::join_threads() noexcept {
  // Each thread is taken out under spawn_mu_ but joined without it: a task that a worker is
  // still running may start another worker (its submit was accepted before the shutdown), and
  // spawn_worker() takes spawn_mu_. So rescan until no thread is left to join.
  for (;;) {
    std::thread to_join;
    {
      std::lock_guard lock(spawn_mu_);
      std::size_t n = num_threads();
      for (std::size_t i = 0; i < n && !to_join.joinable(); ++i) {
        std::thread& t = workers_[i].thread;
        if (!t.joinable()) continue;
        if (t.get_id() == std::this_thread::get_id()) {
          t.detach();  // the executor is being destroyed by its own task: this thread exits soon
        } else {
          to_join = std::move(t);
        }
      }
    }
    if (!to_join.joinable()) return;
    to_join.join();
  }
}

Runnable* Scheduler::find_work(std::size_t index, bool thorough, unsigned tick) noexcept {
  Worker& self = workers_[index];
  auto take_injected = [&]() -> Runnable* {
    if (!thorough && injected_size_.load(std::memory_order_relaxed) == 0) return nullptr;
    std::lock_guard lock(inject_mu_);
    Runnable* r = injected_.pop_front();
    if (r != nullptr) injected_size_.fetch_sub(1, std::memory_order_relaxed);
    return r;
  };
  if (tick % kInjectionCheckPeriod == 0) {
    if (Runnable* r = take_injected()) return r;
  }
  if (thorough || self.size.load(std::memory_order_relaxed) != 0) {
    std::lock_guard lock(self.mu);
    if (Runnable* r = self.queue.pop_front()) {
      self.size.fetch_sub(1, std::memory_order_relaxed);
      return r;
    }
  }
  if (Runnable* r = take_injected()) return r;
  std::size_t n = num_threads();
  for (std::size_t k = 1; k < n; ++k) {
    Worker& victim = workers_[(index + k) % n];
    if (!thorough && victim.size.load(std::memory_order_relaxed) == 0) continue;
    std::lock_guard lock(victim.mu);
    if (Runnable* r = victim.queue.pop_back()) {
      victim.size.fetch_sub(1, std::memory_order_relaxed);
      return r;
    }
  }
  return nullptr;
}

void Scheduler::went_idle() noexcept {
  active_.fetch_sub(1, std::memory_order_seq_cst);
  prompt_deadlock_search();
}

void Scheduler::prompt_deadlock_search() noexcept {
  // Both sides announce themselves (seq_cst) before they look at the other: either this sees
  // the drain()er's Waiter, or the drain()er, which checks quiet() after announcing, sees us.
  if (quiet() && tracker_.has_waiters() && tracker_.outstanding() != 0) tracker_.notify_quiet();
}

void Scheduler::become_active() noexcept {
  for (;;) {
    active_.fetch_add(1, std::memory_order_seq_cst);
    if (!searching_.load(std::memory_order_seq_cst)) return;
    active_.fetch_sub(1, std::memory_order_seq_cst);  // the search may be counting on us
    std::unique_lock lock(gate_mu_);
    gate_cv_.wait(lock, [this] { return !searching_.load(std::memory_order_seq_cst); });
  }
}

Runnable* Scheduler::wait_for_work(std::size_t index) noexcept {
  idle_workers_.fetch_add(1, std::memory_order_acq_rel);
  went_idle();
  workers_[index].suspensions.trim([this] { return outstanding(); });
  Runnable* found = nullptr;
  for (int spin = 0; spin < kIdleSpins && found == nullptr; ++spin) {
    if (exiting()) break;
    cpu_relax();
    found = find_work(index, false, 1);
  }
  while (found == nullptr && !exiting()) {
    std::uint64_t epoch = epoch_.load(std::memory_order_seq_cst);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    found = find_work(index, true, 1);
    if (found == nullptr && !exiting()) {
      std::unique_lock lock(sleep_mu_);
      sleep_cv_.wait(lock,
                     [&] { return epoch_.load(std::memory_order_seq_cst) != epoch || exiting(); });
    }
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
  }
  idle_workers_.fetch_sub(1, std::memory_order_acq_rel);
  if (found != nullptr) become_active();
  return found;
}

void Scheduler::worker_main(std::size_t index) {
  tls_worker = WorkerIdentity{this, index};
  std::string os_name = workers_[index].name.substr(0, 15);  // the kernel keeps 15 bytes
  pthread_setname_np(pthread_self(), os_name.c_str());
  Runnable* first = std::exchange(workers_[index].first, nullptr);
  if (options_.on_worker_start) {
    if (std::exception_ptr failure = options_.on_worker_start()) {
      first->discard(*this, failure);
      discard_queued(failure);
      tls_worker = WorkerIdentity{};
      return;
    }
  }
  become_active();
  first->run(*this);
  unsigned tick = 0;
  for (;;) {
    Runnable* task = find_work(index, false, ++tick);
    if (task == nullptr) task = wait_for_work(index);
    if (task == nullptr) break;
    task->run(*this);
  }
  tls_worker = WorkerIdentity{};
}

void Scheduler::discard_queued(const std::exception_ptr& reason) noexcept {
  Runnable* all;
  {
    std::lock_guard lock(inject_mu_);
    all = injected_.take_all();
    injected_size_.store(0, std::memory_order_relaxed);
  }
  // Workers' deques: collect them too, oldest first.
  std::size_t n = num_threads();
  for (std::size_t i = 0; i < n; ++i) {
    Runnable* local;
    {
      std::lock_guard lock(workers_[i].mu);
      local = workers_[i].queue.take_all();
      workers_[i].size.store(0, std::memory_order_relaxed);
    }
    if (local == nullptr) continue;
    Runnable* last = local;
    while (last->next != nullptr) last = last->next;
    last->next = all;
    all = local;
  }
  while (all != nullptr) {
    Runnable* next = all->next;
    all->next = nullptr;
    if (all->started()) {
      push_injected(*all);
    } else {
      all->discard(*this, reason);
    }
    all = next;
  }
}

bool Scheduler::drain(const Deadline& deadline) noexcept {
  JoinTracker::Waiter waiter(tracker_);
  // A search that finds nothing waits out ten times its own length before the next one, so that
  // a pool that keeps going quiet around many suspended tasks spends little time searching.
  constexpr int kBackOff = 10;
  bool look = quiet() && outstanding() != 0;  // after announcing the Waiter: see went_idle()
  Deadline::Clock::time_point next_look = Deadline::Clock::now();
  for (;;) {
    Deadline::Clock::time_point now = Deadline::Clock::now();
    if (look && now >= next_look) {
      look = false;
      bool found = false;
      try {
        found = end_deadlocked();
      } catch (const std::bad_alloc&) {
        // No memory to search this time: the next quiet moment tries again.
      }
      if (!found) next_look = Deadline::Clock::now() + kBackOff * (Deadline::Clock::now() - now);
    }
    Deadline until = deadline;
    if (look && (deadline.is_never() || next_look < deadline.at())) {
      until = Deadline::after(next_look - Deadline::Clock::now());
    }
    switch (waiter.wait(until)) {
      case JoinTracker::WaitResult::kIdle:
        return true;
      case JoinTracker::WaitResult::kQuiet:
        look = true;
        break;
      case JoinTracker::WaitResult::kTimedOut:
        if (deadline.passed()) return false;
        break;  // the back-off ended: look now
    }
  }
}

bool Scheduler::end_deadlocked() {
  std::vector<Suspension*> deadlocked;
  std::exception_ptr error;
  {
    std::lock_guard search(deadlock_mu_);
    {
      // Closes the gate (see searching_) for the search; opens it however the search ends.
      struct Gate {
        explicit Gate(Scheduler& s) : s(s) { s.searching_.store(true, std::memory_order_seq_cst); }
        ~Gate() {
          {
            std::lock_guard lock(s.gate_mu_);
            s.searching_.store(false, std::memory_order_seq_cst);
          }
          s.gate_cv_.notify_all();
        }
        Gate(const Gate&) = delete;
        Gate& operator=(const Gate&) = delete;
        Scheduler& s;
      } gate(*this);
      if (!quiet()) return false;  // a task runs: it may still end the wait; look when quiet
      // Every slot, not just [0, started_): a worker runs (and its tasks suspend) before the
      // thread that started it counts it.
      std::vector<Suspension*> suspended;
      for (std::size_t i = 0; i < options_.max_workers; ++i) {
        workers_[i].suspensions.collect(suspended);
      }
      deadlocked = find_deadlocked(suspended);
    }
    // The other tasks may run again. The deadlocked ones never would: their awaiters stay put.
    if (deadlocked.empty()) return false;
    error = deadlock_error(deadlocked);
    // Every wake-up goes first, so that ending one task (completing its future) cannot wake
    // another; and no later search may find them again.
    for (Suspension* s : deadlocked) s->abandon();
  }
  // Recorded before the tasks are uncounted, so that the join() their end releases finds it.
  tracker_.record_deadlock(error);
  // Without the search lock, so that nothing their done callbacks and destructors do (they
  // run here) can wait for it.
  for (Suspension* s : deadlocked) s->end(error);
  return true;
}

SuspensionSlot* Scheduler::acquire_slot(const PublishedSuspension& published) noexcept {
  if (!is_own_worker()) return nullptr;
  SuspensionRegistry& registry = workers_[tls_worker.index].suspensions;
  registry.trim([this] { return outstanding(); });
  return registry.acquire(published);
}

void Scheduler::ensure_timer_thread() {
  std::lock_guard lock(timer_mu_);
  if (timer_thread_.joinable() || timer_stop_) return;
  timer_thread_ = std::thread([this] { timer_main(); });
}

void Scheduler::add_timer(TimerEntry& entry) noexcept {
  std::lock_guard lock(timer_mu_);
  TimerEntry** link = &timers_;
  TimerEntry* prev = nullptr;
  while (*link != nullptr && (*link)->at <= entry.at) {
    prev = *link;
    link = &(*link)->next;
  }
  entry.prev = prev;
  entry.next = *link;
  if (*link != nullptr) (*link)->prev = &entry;
  *link = &entry;
  entry.linked = true;
  if (timers_ == &entry) timer_cv_.notify_one();
}

void Scheduler::cancel_timer(TimerEntry& entry) noexcept {
  std::lock_guard lock(timer_mu_);
  if (!entry.linked) return;
  if (entry.prev != nullptr) {
    entry.prev->next = entry.next;
  } else {
    timers_ = entry.next;
  }
  if (entry.next != nullptr) entry.next->prev = entry.prev;
  entry.linked = false;
}

void Scheduler::timer_main() noexcept {
  std::unique_lock lock(timer_mu_);
  while (!timer_stop_) {
    if (timers_ == nullptr) {
      timer_cv_.wait(lock);
      continue;
    }
    // A copy: wait_until() reads its deadline again once it wakes, and by then the entry may
    // have been cancelled and freed (with the coroutine frame it lives in) while timer_mu_ was
    // released.
    const std::chrono::steady_clock::time_point at = timers_->at;
    if (std::chrono::steady_clock::now() < at) {
      timer_cv_.wait_until(lock, at);
      continue;
    }
    TimerEntry* due = timers_;
    timers_ = due->next;
    if (timers_ != nullptr) timers_->prev = nullptr;
    due->linked = false;
    due->fire(due->context);  // under timer_mu_, so cancel_timer() waits for it
  }
}

}  // namespace betterconcurrent::detail
