// Randomized stress test of ThreadPoolExecutor (issue 5), reproducible from a seed.
//
// RandomTrees: each seed drives a std::mt19937_64 that generates a plan, then the plan is run
// and checked. A plan is a forest of tasks over two executors (A, the pool under test, with
// max_workers 1, 2, 4 or 8 chosen by seed % 4, and B, another pool with 1 or 2 workers):
// plain and coroutine tasks that submit subtasks to either pool, cancel them, wait for them
// cooperatively (`co_await f.yield_until_done()`, `co_await yield_until_done(fs, timeout,
// return_when)` in all three modes, timed or not) or with result(timeout), wait for hand-made
// futures (completed by a helper thread, or by tasks of B), and return a value or throw
// (std::exception types, int, or a type not derived from std::exception). Some seeds give A an
// initializer that throws (a broken pool). The driver thread submits the roots and, at moments
// the plan picks, cancels them, waits for them with a timeout, and shuts A or B down
// (wait true/false, cancel_futures true/false). What the tasks do is the plan's; when they do it
// is the machine's, so the checks hold whichever way each race goes:
//   - every accepted future is done after join(); join() and shutdown(wait) return (each wait is
//     bounded: a TimeoutError is reported as a HANG);
//   - no task runs twice; a cancelled task never ran; a finished task's future holds the value it
//     computed or the exception it threw (type and task id), or BrokenThreadPool from a broken
//     pool for a task that never ran;
//   - every exception a task threw is observed through its future or reported once by join()'s
//     UnobservedTaskErrors, and never both; nothing is logged as never observed;
//   - submit() throws only after shutdown() or once the pool is broken (BrokenThreadPool), and an
//     executor stays usable after its tasks fail.
// SameSeedSamePlan: generating a seed's plan twice gives the same plan.
// ForkJoinFib: fib(18) on a new 2-worker pool, result 2584 and join() returning, many times.
// Crashes, std::terminate, leaks and races are the sanitizers' and the test runner's to catch.
//
// Environment: STRESS_SEED (first seed, default 1), STRESS_TREES (seeds, default 200),
// STRESS_FIBS (fib(18) runs, default 200). A failure prints "stress: VIOLATION seed=S
// max_workers=W: ..." or "stress: HANG ..." (a hang also prints the plan and each future's
// state); rerun with STRESS_SEED=S STRESS_TREES=1, and STRESS_VERBOSE=1 to print every plan. The
// last line is the summary "stress: N trees, M fib(18): H hangs, V invariant violations".
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "executor/task.h"
#include "executor/thread_pool_executor.h"
#include "future/exceptions.h"
#include "future/future.h"
#include "future/log.h"
#include "future/wait.h"
#include "gtest/gtest.h"
#include "testing/fib.h"

namespace betterconcurrent {
namespace {

using std::chrono::microseconds;
using std::chrono::seconds;

// The bound of every wait that must not time out: running past it is a hang.
constexpr seconds kBound{30};
constexpr int kWorkerCounts[] = {1, 2, 4, 8};
constexpr char kInitializerFailed[] = "Exception in initializer:";

long env_long(const char* name, long fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  return std::strtol(text, nullptr, 10);
}

// What the tasks throw: each carries the id of the task that threw it.
struct TaskError : std::runtime_error {
  explicit TaskError(int task) : std::runtime_error("task error"), id(task) {}
  int id;
};
struct NotAStdException {
  int id;
};
// What a failing hand-made future holds.
struct HandMadeError : std::logic_error {
  explicit HandMadeError(int index) : std::logic_error("hand-made error"), index(index) {}
  int index;
};

enum class PoolId { kA, kB };
enum class Outcome { kValue, kTaskError, kInt, kNotStd };

int expected_value(int task) { return task * 31 + 7; }
int hand_made_value(int index) { return 100000 + index; }

// A future a task waits for: a subtask's (submitted earlier by the same task) or a hand-made one.
struct Target {
  bool hand_made = false;
  int index = 0;  // a task id, or an index into the hand-made futures
};

struct Op {
  enum Kind {
    kSubmit,        // submit task `child`; std::runtime_error from submit() is legal after shutdown
    kCancel,        // cancel `child`'s future
    kAwaitOne,      // coroutine: co_await target.yield_until_done(), then check it's done
    kAwaitMany,     // coroutine: co_await yield_until_done(targets, timeout, when)
    kTimedResult,   // result(timeout) on the target
    kBoundedResult  // plain task: result(kBound) on a hand-made future a thread completes
  };
  Kind kind;
  int child = -1;
  std::vector<Target> targets = {};
  ReturnWhen when = ALL_COMPLETED;
  std::optional<microseconds> timeout = std::nullopt;
  bool observe = false;  // after a wait, check the target's outcome (which observes it)
};

struct Node {
  int id = 0;
  PoolId pool = PoolId::kA;
  bool coroutine = false;
  Outcome outcome = Outcome::kValue;
  std::vector<Op> ops;
};

struct HandMade {
  bool by_thread = true;  // else by a task of B
  bool fails = false;
};

struct DriverOp {
  enum Kind { kCancelRoot, kTimedResultRoot, kShutdownA, kShutdownB };
  Kind kind;
  int root = 0;  // index into roots, for the first two
  bool wait = false;
  bool cancel_futures = false;
  microseconds timeout{0};
};

struct Plan {
  std::uint64_t seed = 0;
  int max_workers = 1;
  int b_workers = 1;
  bool broken_initializer = false;
  std::vector<Node> nodes;
  std::vector<int> roots;                     // submitted by the driver, in this order
  std::vector<std::vector<DriverOp>> driver;  // driver[i] runs before root i (or at the end)
  std::vector<HandMade> hand_made;
  std::vector<int> thread_order;  // the order the helper thread completes its own
};

// ----------------------------------------------------------------------------------------------
// The generator: the same seed gives the same plan.

class Generator {
 public:
  explicit Generator(std::uint64_t seed) : rng_(seed) { plan_.seed = seed; }

  Plan generate() {
    plan_.max_workers = kWorkerCounts[plan_.seed % 4];
    plan_.b_workers = 1 + pick(2);
    plan_.broken_initializer = chance(4);
    budget_ = 8 + pick(56);
    const int hand_made = pick(5);
    for (int i = 0; i < hand_made; ++i) {
      plan_.hand_made.push_back({.by_thread = chance(60), .fails = chance(30)});
      if (plan_.hand_made.back().by_thread) plan_.thread_order.push_back(i);
    }
    std::shuffle(plan_.thread_order.begin(), plan_.thread_order.end(), rng_);
    const int roots = 1 + pick(4);
    for (int i = 0; i < roots; ++i)
      plan_.roots.push_back(new_node(chance(80) ? PoolId::kA : PoolId::kB));
    // The nodes are filled breadth first, so the tree is as wide as the budget allows.
    for (std::size_t next = 0; next < plan_.nodes.size(); ++next) fill(static_cast<int>(next));

    plan_.driver.resize(roots + 1);
    for (int i = 0; i <= roots; ++i) {
      if (i > 0 && chance(15)) {
        plan_.driver[i].push_back({.kind = DriverOp::kCancelRoot, .root = pick(i)});
      }
      if (i > 0 && chance(15)) {
        plan_.driver[i].push_back({.kind = DriverOp::kTimedResultRoot,
                                   .root = pick(i),
                                   .timeout = microseconds(pick(2000))});
      }
    }
    if (chance(40)) {
      plan_.driver[pick(roots + 1)].push_back(
          {.kind = DriverOp::kShutdownA, .wait = chance(50), .cancel_futures = chance(50)});
    }
    if (chance(10)) {
      plan_.driver[pick(roots + 1)].push_back(
          {.kind = DriverOp::kShutdownB, .wait = chance(50), .cancel_futures = chance(50)});
    }
    return std::move(plan_);
  }

 private:
  int pick(int n) { return static_cast<int>(rng_() % static_cast<std::uint64_t>(n)); }
  bool chance(int percent) { return pick(100) < percent; }

  int new_node(PoolId pool) {
    Node node;
    node.id = static_cast<int>(plan_.nodes.size());
    node.pool = pool;
    node.coroutine = chance(60);
    const int r = pick(100);
    node.outcome = r < 65   ? Outcome::kValue
                   : r < 80 ? Outcome::kTaskError
                   : r < 90 ? Outcome::kInt
                            : Outcome::kNotStd;
    plan_.nodes.push_back(std::move(node));
    --budget_;
    return plan_.nodes.back().id;
  }

  Target pick_target(const std::vector<int>& children) {
    if (!plan_.hand_made.empty() && (children.empty() || chance(25))) {
      return {.hand_made = true, .index = pick(static_cast<int>(plan_.hand_made.size()))};
    }
    return {.hand_made = false, .index = children[pick(static_cast<int>(children.size()))]};
  }

  void fill(int id) {
    std::vector<Op> ops;
    const bool coroutine = plan_.nodes[id].coroutine;
    const PoolId pool = plan_.nodes[id].pool;
    std::vector<int> children;
    const int wanted = budget_ > 0 ? pick(std::min(budget_, 5) + 1) : 0;
    for (int c = 0; c < wanted; ++c) {
      const int child =
          new_node(chance(75) ? pool : (pool == PoolId::kA ? PoolId::kB : PoolId::kA));
      children.push_back(child);
      ops.push_back({.kind = Op::kSubmit, .child = child});
      if (chance(10)) ops.push_back({.kind = Op::kCancel, .child = child});
      if (coroutine && chance(25)) {
        ops.push_back(
            {.kind = Op::kAwaitOne, .targets = {pick_target(children)}, .observe = chance(50)});
      }
      if (chance(10)) {
        ops.push_back({.kind = Op::kTimedResult,
                       .targets = {pick_target(children)},
                       .timeout = microseconds(pick(1000))});
      }
    }
    if (coroutine && (!children.empty() || !plan_.hand_made.empty()) && chance(60)) {
      Op op{.kind = Op::kAwaitMany};
      const int n = 1 + pick(4);
      for (int i = 0; i < n; ++i) op.targets.push_back(pick_target(children));  // repeats allowed
      const int w = pick(3);
      op.when = w == 0 ? ALL_COMPLETED : w == 1 ? FIRST_COMPLETED : FIRST_EXCEPTION;
      if (chance(30)) op.timeout = microseconds(pick(2000));
      op.observe = chance(50);
      ops.push_back(std::move(op));
    }
    if (coroutine && !plan_.hand_made.empty() && chance(20)) {
      ops.push_back({.kind = Op::kAwaitOne, .targets = {pick_target({})}, .observe = true});
    }
    if (!coroutine && chance(15)) {
      for (int i = 0; i < static_cast<int>(plan_.hand_made.size()); ++i) {
        if (plan_.hand_made[i].by_thread) {
          ops.push_back({.kind = Op::kBoundedResult, .targets = {{.hand_made = true, .index = i}}});
          break;
        }
      }
    }
    plan_.nodes[id].ops = std::move(ops);
  }

  std::mt19937_64 rng_;
  Plan plan_;
  int budget_ = 0;
};

// ----------------------------------------------------------------------------------------------
// Running a plan.

std::string describe(const Target& t) {
  return (t.hand_made ? "h" : "t") + std::to_string(t.index);
}

// One line per task: what the plan makes it do (printed after a hang, or with STRESS_VERBOSE).
std::string describe(const Plan& plan) {
  static constexpr const char* kOutcomes[] = {"value", "TaskError", "int", "NotAStdException"};
  static constexpr const char* kOps[] = {"submit",     "cancel",       "await",
                                         "await_many", "timed_result", "bounded_result"};
  static constexpr const char* kWhen[] = {"FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED"};
  std::string out = "plan: max_workers=" + std::to_string(plan.max_workers) +
                    " b_workers=" + std::to_string(plan.b_workers) +
                    (plan.broken_initializer ? " broken_initializer" : "") + "\n";
  for (std::size_t i = 0; i < plan.hand_made.size(); ++i) {
    out += "  h" + std::to_string(i) + (plan.hand_made[i].by_thread ? " by thread" : " by B") +
           (plan.hand_made[i].fails ? " fails" : "") + "\n";
  }
  for (std::size_t i = 0; i <= plan.roots.size(); ++i) {
    for (const DriverOp& op : plan.driver[i]) {
      static constexpr const char* kDriverOps[] = {"cancel root", "timed_result root", "shutdown A",
                                                   "shutdown B"};
      out += "  driver before root " + std::to_string(i) + ": " + kDriverOps[op.kind] +
             (op.kind <= DriverOp::kTimedResultRoot ? " " + std::to_string(op.root) : "") +
             (op.kind >= DriverOp::kShutdownA
                  ? std::string(" wait=") + (op.wait ? "1" : "0") +
                        " cancel_futures=" + (op.cancel_futures ? "1" : "0")
                  : "") +
             "\n";
    }
    if (i < plan.roots.size()) out += "  root t" + std::to_string(plan.roots[i]) + "\n";
  }
  for (const Node& n : plan.nodes) {
    out += "  t" + std::to_string(n.id) + (n.pool == PoolId::kA ? " A " : " B ") +
           (n.coroutine ? "coroutine" : "plain") + " -> " + kOutcomes[static_cast<int>(n.outcome)] +
           ":";
    for (const Op& op : n.ops) {
      out += std::string(" ") + kOps[op.kind] + "(";
      if (op.child >= 0) out += "t" + std::to_string(op.child);
      for (const Target& t : op.targets) out += describe(t) + ",";
      if (op.kind == Op::kAwaitMany) out += kWhen[static_cast<int>(op.when)];
      if (op.timeout) out += " " + std::to_string(op.timeout->count()) + "us";
      out += ")";
    }
    out += "\n";
  }
  return out;
}

struct Slot {
  std::atomic<int> runs{0};
  std::atomic<bool> threw{false};
  std::atomic<bool> observed{false};  // its exception was seen through its future
  std::atomic<bool> cancel_succeeded{false};
  std::optional<Future<int>> future;  // guarded by Run::mu
};

struct Run {
  explicit Run(Plan p) : plan(std::move(p)), slots(plan.nodes.size()) {
    for (std::size_t i = 0; i < plan.hand_made.size(); ++i) hand_made.emplace_back();
  }

  void violation(std::string what) {
    std::lock_guard lock(mu);
    violations.push_back(std::move(what));
  }
  std::optional<Future<int>> future_of(int id) {
    std::lock_guard lock(mu);
    return slots[id].future;
  }
  Executor* pool(PoolId id) const { return id == PoolId::kA ? a : b; }
  bool stopping(PoolId id) const { return (id == PoolId::kA ? a_stopping : b_stopping).load(); }
  bool pool_broken() const { return plan.broken_initializer; }

  const Plan plan;
  std::vector<Slot> slots;
  std::vector<Future<int>> hand_made;
  // The executors, owned by the driver, which destroys them only after every task ended.
  Executor* a = nullptr;
  Executor* b = nullptr;
  std::atomic<bool> a_stopping{false};  // set before the driver calls shutdown()
  std::atomic<bool> b_stopping{false};
  std::mutex mu;
  std::vector<std::string> violations;
};

std::string task_name(const Run& run, int id) {
  const Node& n = run.plan.nodes[id];
  return std::string(n.coroutine ? "coroutine" : "plain") + " task " + std::to_string(id) +
         " (pool " + (n.pool == PoolId::kA ? "A" : "B") + ")";
}

// Checks the outcome of a done future of task `id`, which marks its exception observed.
void check_done(Run& run, int id, const Future<int>& f) {
  const Node& node = run.plan.nodes[id];
  Slot& slot = run.slots[id];
  const std::string name = task_name(run, id);
  if (f.cancelled()) {
    if (slot.runs.load() != 0) run.violation(name + " ran but its future is cancelled");
    return;
  }
  std::exception_ptr e;
  try {
    e = f.exception(microseconds(0));
  } catch (const std::exception& x) {
    run.violation(name + ": exception() of its done, uncancelled future threw: " + x.what());
    return;
  }
  if (slot.cancel_succeeded.load())
    run.violation(name + ": cancel() returned true, then it finished");
  const int runs = slot.runs.load();
  if (!e) {
    if (runs != 1) run.violation(name + " has a result but ran " + std::to_string(runs) + " times");
    if (node.outcome != Outcome::kValue) run.violation(name + " returned though it throws");
    const int value = f.result(microseconds(0));
    if (value != expected_value(id)) {
      run.violation(name + "'s result is " + std::to_string(value) + ", not " +
                    std::to_string(expected_value(id)));
    }
    return;
  }
  slot.observed.store(true);
  try {
    std::rethrow_exception(e);
  } catch (const BrokenThreadPool&) {
    if (!(run.pool_broken() && node.pool == PoolId::kA)) {
      run.violation(name + " failed with BrokenThreadPool, but its pool's initializer works");
    }
    if (runs != 0) run.violation(name + " ran but failed with BrokenThreadPool");
    return;
  } catch (const TaskError& x) {
    if (node.outcome != Outcome::kTaskError || x.id != id) {
      run.violation(name + " holds the TaskError of task " + std::to_string(x.id));
    }
  } catch (const NotAStdException& x) {
    if (node.outcome != Outcome::kNotStd || x.id != id) {
      run.violation(name + " holds the NotAStdException of task " + std::to_string(x.id));
    }
  } catch (int x) {
    if (node.outcome != Outcome::kInt || x != id) {
      run.violation(name + " holds the int " + std::to_string(x));
    }
  } catch (const std::exception& x) {
    run.violation(name + " holds an unexpected exception: " + x.what());
  } catch (...) {
    run.violation(name + " holds an exception of an unexpected type");
  }
  if (runs != 1) run.violation(name + " threw but ran " + std::to_string(runs) + " times");
}

void check_hand_made(Run& run, int index) {
  const Future<int>& f = run.hand_made[index];
  const std::string name = "hand-made future " + std::to_string(index);
  if (!f.done()) {
    run.violation(name + " is not done");
    return;
  }
  if (f.cancelled()) {
    run.violation(name + " is cancelled; nobody cancels it");
    return;
  }
  std::exception_ptr e = f.exception(microseconds(0));
  if (run.plan.hand_made[index].fails) {
    try {
      if (e) std::rethrow_exception(e);
      run.violation(name + " has a result; it fails");
    } catch (const HandMadeError& x) {
      if (x.index != index) run.violation(name + " holds another future's error");
    } catch (...) {
      run.violation(name + " holds an unexpected exception");
    }
  } else if (e || f.result(microseconds(0)) != hand_made_value(index)) {
    run.violation(name + " does not hold its value");
  }
}

void complete_hand_made(const Future<int>& f, int index, bool fails) {
  try {
    if (fails) {
      f.set_exception(std::make_exception_ptr(HandMadeError(index)));
    } else {
      f.set_result(hand_made_value(index));
    }
  } catch (const InvalidStateError&) {
    // Completed already (the B task and its fallback callback both try).
  }
}

std::optional<AnyFuture> resolve(Run& run, const Target& t) {
  if (t.hand_made) return AnyFuture(run.hand_made[t.index]);
  std::optional<Future<int>> f = run.future_of(t.index);
  if (!f) return std::nullopt;  // its submit was refused
  return AnyFuture(*f);
}

void check_target(Run& run, const Target& t) {
  if (t.hand_made) {
    if (run.hand_made[t.index].done()) check_hand_made(run, t.index);
  } else if (std::optional<Future<int>> f = run.future_of(t.index); f && f->done()) {
    check_done(run, t.index, *f);
  }
}

int plain_body(std::shared_ptr<Run> run, int id);
Task<int> coroutine_body(std::shared_ptr<Run> run, int id);

// Submits task `id` to its pool. A refused submit is legal only after shutdown() or, with
// BrokenThreadPool, from a broken pool.
void submit_task(const std::shared_ptr<Run>& run, int id) {
  const Node& node = run->plan.nodes[id];
  Executor* pool = run->pool(node.pool);
  try {
    Future<int> f =
        node.coroutine ? pool->submit(coroutine_body, run, id) : pool->submit(plain_body, run, id);
    std::lock_guard lock(run->mu);
    run->slots[id].future = std::move(f);
  } catch (const BrokenThreadPool&) {
    if (!(run->pool_broken() && node.pool == PoolId::kA)) {
      run->violation("submit of " + task_name(*run, id) + " threw BrokenThreadPool");
    }
  } catch (const std::runtime_error& e) {
    if (!run->stopping(node.pool)) {
      run->violation("submit of " + task_name(*run, id) + " threw before shutdown: " + e.what());
    }
  }
}

[[noreturn]] void finish(Run& run, int id) {
  Slot& slot = run.slots[id];
  slot.threw.store(true);
  switch (run.plan.nodes[id].outcome) {
    case Outcome::kTaskError:
      throw TaskError(id);
    case Outcome::kInt:
      throw id;
    case Outcome::kNotStd:
      throw NotAStdException{id};
    case Outcome::kValue:
      break;
  }
  std::abort();  // not reached: callers return for kValue
}

void count_run(Run& run, int id) {
  if (run.slots[id].runs.fetch_add(1) != 0) run.violation(task_name(run, id) + " runs twice");
}

void cancel(Run& run, int id) {
  if (std::optional<Future<int>> f = run.future_of(id)) {
    if (f->cancel()) run.slots[id].cancel_succeeded.store(true);
  }
}

// The ops that do not suspend; they may block (with a timeout).
void run_op(const std::shared_ptr<Run>& run, int id, const Op& op) {
  switch (op.kind) {
    case Op::kSubmit:
      submit_task(run, op.child);
      break;
    case Op::kCancel:
      cancel(*run, op.child);
      break;
    case Op::kTimedResult:
      if (std::optional<AnyFuture> f = resolve(*run, op.targets[0])) {
        try {
          f->exception(op.timeout);
        } catch (const TimeoutError&) {
          break;
        } catch (const CancelledError&) {
        }
        check_target(*run, op.targets[0]);
      }
      break;
    case Op::kBoundedResult:
      try {
        run->hand_made[op.targets[0].index].exception(kBound);
        check_target(*run, op.targets[0]);
      } catch (const TimeoutError&) {
        run->violation(task_name(*run, id) + ": HANG: a hand-made future was not completed");
      }
      break;
    case Op::kAwaitOne:
    case Op::kAwaitMany:
      break;  // coroutines only
  }
}

int plain_body(std::shared_ptr<Run> run, int id) {
  count_run(*run, id);
  for (const Op& op : run->plan.nodes[id].ops) run_op(run, id, op);
  if (run->plan.nodes[id].outcome != Outcome::kValue) finish(*run, id);
  return expected_value(id);
}

// Checks what co_await yield_until_done(fs, timeout, when) returned.
void check_wait(Run& run, int id, const Op& op, const std::vector<AnyFuture>& fs,
                const std::vector<Target>& targets, const DoneAndNotDoneFutures<AnyFuture>& r) {
  const std::string name = task_name(run, id);
  std::vector<AnyFuture> unique;
  for (const AnyFuture& f : fs) {
    if (std::find(unique.begin(), unique.end(), f) == unique.end()) unique.push_back(f);
  }
  if (r.done.size() + r.not_done.size() != unique.size()) {
    run.violation(name + ": yield_until_done split " + std::to_string(unique.size()) +
                  " futures into " + std::to_string(r.done.size()) + " + " +
                  std::to_string(r.not_done.size()));
  }
  for (const AnyFuture& f : r.done) {
    if (!f.done()) run.violation(name + ": yield_until_done returned a pending future as done");
  }
  if (op.timeout || unique.empty()) return;
  if (op.when == ALL_COMPLETED && !r.not_done.empty()) {
    run.violation(name + ": untimed yield_until_done(ALL_COMPLETED) left futures not done");
  }
  if (op.when == FIRST_COMPLETED && r.done.empty()) {
    run.violation(name + ": untimed yield_until_done(FIRST_COMPLETED) returned none done");
  }
  if (op.when == FIRST_EXCEPTION && !r.not_done.empty()) {
    bool failed = false;
    for (const AnyFuture& f : r.done) {
      if (f.cancelled()) continue;
      if (f.exception(microseconds(0))) {
        failed = true;
        for (std::size_t i = 0; i < fs.size(); ++i) {
          if (fs[i] == f && !targets[i].hand_made) run.slots[targets[i].index].observed.store(true);
        }
      }
    }
    if (!failed) {
      run.violation(name +
                    ": untimed yield_until_done(FIRST_EXCEPTION) returned early without "
                    "a failed future");
    }
  }
}

Task<int> coroutine_body(std::shared_ptr<Run> run, int id) {
  count_run(*run, id);
  for (const Op& op : run->plan.nodes[id].ops) {
    if (op.kind == Op::kAwaitOne) {
      std::optional<AnyFuture> f = resolve(*run, op.targets[0]);
      if (!f) continue;
      co_await f->yield_until_done();
      if (!f->done())
        run->violation(task_name(*run, id) + ": co_await f.yield_until_done() returned early");
      if (op.observe) check_target(*run, op.targets[0]);
    } else if (op.kind == Op::kAwaitMany) {
      std::vector<AnyFuture> fs;
      std::vector<Target> targets;
      for (const Target& t : op.targets) {
        if (std::optional<AnyFuture> f = resolve(*run, t)) {
          fs.push_back(*f);
          targets.push_back(t);
        }
      }
      DoneAndNotDoneFutures<AnyFuture> r = co_await yield_until_done(fs, op.timeout, op.when);
      check_wait(*run, id, op, fs, targets, r);
      if (op.observe) {
        for (const Target& t : targets) check_target(*run, t);
      }
    } else {
      run_op(run, id, op);
    }
  }
  if (run->plan.nodes[id].outcome != Outcome::kValue) finish(*run, id);
  co_return expected_value(id);
}

// Runs `fn` on a detached thread and waits up to kBound for it; false if it did not return by
// then (the thread is left blocked). An exception from fn is rethrown.
bool bounded(std::function<void()> fn) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> finished = done->get_future();
  std::thread([fn = std::move(fn), done] {
    try {
      fn();
      done->set_value();
    } catch (...) {
      done->set_exception(std::current_exception());
    }
  }).detach();
  if (finished.wait_for(kBound) != std::future_status::ready) return false;
  finished.get();
  return true;
}

// What a hang leaves behind: kept reachable (not a leak), never destroyed.
void keep_forever(std::shared_ptr<void> object) {
  static auto* const kept = new std::vector<std::shared_ptr<void>>;
  kept->push_back(std::move(object));
}

struct Totals {
  long trees = 0;
  long fibs = 0;
  long hangs = 0;
  long violations = 0;
};
Totals totals;

class LogCounter {
 public:
  LogCounter()
      : previous_(set_log_handler([this](const LogRecord& r) {
          std::lock_guard lock(mu_);
          ++counts_[r.message];
        })) {}
  ~LogCounter() { set_log_handler(std::move(previous_)); }
  // Each message logged since the last call, and how many times.
  std::map<std::string, int> take_all() {
    std::lock_guard lock(mu_);
    return std::exchange(counts_, {});
  }

 private:
  std::mutex mu_;
  std::map<std::string, int> counts_;
  LogHandler previous_;
};

// Runs and checks one plan. Returns false after a hang (its executors are left alive).
class TreeRun {
 public:
  TreeRun(std::uint64_t seed, LogCounter& logs)
      : run_(std::make_shared<Run>(Generator(seed).generate())), logs_(logs) {}

  void execute() {
    const Plan& plan = run_->plan;
    ThreadPoolExecutor::Options options;
    options.max_workers = plan.max_workers;
    if (plan.broken_initializer) {
      options.initializer = [] { throw std::runtime_error("stress: the initializer fails"); };
    }
    a_ = ThreadPoolExecutor::create(std::move(options));
    b_ = ThreadPoolExecutor::create(plan.b_workers);
    run_->a = a_.get();
    run_->b = b_.get();
    start_hand_made();
    for (std::size_t i = 0; i <= plan.roots.size(); ++i) {
      for (const DriverOp& op : plan.driver[i]) {
        if (!driver_op(op)) return;
      }
      if (i < plan.roots.size()) submit_task(run_, plan.roots[i]);
    }
    if (helper_done_.wait_for(kBound) != std::future_status::ready) {
      return hang("the helper thread did not finish");
    }
    helper_.join();
    if (!join_all()) return;
    check_after_join();
    check_usable();
    if (!bounded([a = a_.get()] { a->shutdown(true); })) return hang("shutdown(wait=true) of A");
    if (!bounded([b = b_.get()] { b->shutdown(true); })) return hang("shutdown(wait=true) of B");
    for (Slot& slot : run_->slots) {
      std::lock_guard lock(run_->mu);
      slot.future.reset();  // the tasks hold the Run: let go of their futures
    }
    run_->hand_made.clear();
    if (!bounded([a = std::move(a_), b = std::move(b_)]() mutable {
          a.reset();
          b.reset();
        })) {
      return hang("destroying the executors");
    }
    for (const auto& [message, n] : logs_.take_all()) {
      // (Also from an earlier seed's pool, left hanging.)
      if (message == kInitializerFailed) continue;
      run_->violation("logged " + std::to_string(n) + " time(s): " + message);
    }
  }

  // Prints and counts the violations; returns whether there were none.
  void report() {
    const std::string where = "seed=" + std::to_string(run_->plan.seed) +
                              " max_workers=" + std::to_string(run_->plan.max_workers);
    std::lock_guard lock(run_->mu);
    for (const std::string& v : run_->violations) {
      std::printf("stress: VIOLATION %s: %s\n", where.c_str(), v.c_str());
      ADD_FAILURE() << "stress: VIOLATION " << where << ": " << v;
    }
    totals.violations += static_cast<long>(run_->violations.size());
    if (hung_ || std::getenv("STRESS_VERBOSE") != nullptr) {
      std::printf("%s", describe(run_->plan).c_str());
      static constexpr const char* kStates[] = {"pending", "running", "cancelled",
                                                "cancelled_and_notified", "finished"};
      for (std::size_t i = 0; i < run_->slots.size(); ++i) {
        const Slot& slot = run_->slots[i];
        std::printf("  t%zu: runs=%d %s\n", i, slot.runs.load(),
                    slot.future ? kStates[static_cast<int>(slot.future->state())] : "not accepted");
      }
      for (std::size_t i = 0; i < run_->hand_made.size(); ++i) {
        std::printf("  h%zu: %s\n", i, kStates[static_cast<int>(run_->hand_made[i].state())]);
      }
    }
    if (hung_) {
      std::printf("stress: HANG %s: %s\n", where.c_str(), hang_.c_str());
      ADD_FAILURE() << "stress: HANG " << where << ": " << hang_;
      ++totals.hangs;
    }
    std::fflush(stdout);
  }

  bool hung() const { return hung_; }

  // After a hang: the executors and the helper thread are left as they are, for ever.
  ~TreeRun() {
    if (hung_) {
      keep_forever(std::move(a_));
      keep_forever(std::move(b_));
      keep_forever(run_);
      if (helper_.joinable()) helper_.detach();
    }
  }

 private:
  void hang(std::string what) {
    hung_ = true;
    hang_ = std::move(what);
  }

  void start_hand_made() {
    const Plan& plan = run_->plan;
    for (std::size_t i = 0; i < plan.hand_made.size(); ++i) {
      if (plan.hand_made[i].by_thread) continue;
      Future<int> f = run_->hand_made[i];
      const bool fails = plan.hand_made[i].fails;
      const int index = static_cast<int>(i);
      Future<void> done = b_->submit([f, index, fails] { complete_hand_made(f, index, fails); });
      // If that task is cancelled (shutdown(cancel_futures)), this completes the future instead.
      done.add_done_callback(
          [f, index, fails](const Future<void>&) { complete_hand_made(f, index, fails); });
    }
    auto done = std::make_shared<std::promise<void>>();
    helper_done_ = done->get_future();
    helper_ = std::thread([run = run_, done] {
      for (int index : run->plan.thread_order) {
        complete_hand_made(run->hand_made[index], index, run->plan.hand_made[index].fails);
      }
      done->set_value();
    });
  }

  // False after a hang.
  bool driver_op(const DriverOp& op) {
    const Plan& plan = run_->plan;
    switch (op.kind) {
      case DriverOp::kCancelRoot:
        cancel(*run_, plan.roots[op.root]);
        return true;
      case DriverOp::kTimedResultRoot:
        if (std::optional<Future<int>> f = run_->future_of(plan.roots[op.root])) {
          try {
            f->exception(op.timeout);
            check_done(*run_, plan.roots[op.root], *f);
          } catch (const TimeoutError&) {
          } catch (const CancelledError&) {
          }
        }
        return true;
      case DriverOp::kShutdownA:
      case DriverOp::kShutdownB: {
        const bool is_a = op.kind == DriverOp::kShutdownA;
        (is_a ? run_->a_stopping : run_->b_stopping).store(true);
        Executor* pool = is_a ? a_.get() : b_.get();
        if (!op.wait) {
          pool->shutdown(false, op.cancel_futures);
          return true;
        }
        if (bounded([pool, c = op.cancel_futures] { pool->shutdown(true, c); })) return true;
        hang(std::string("shutdown(wait=true) of ") + (is_a ? "A" : "B") + " from the driver");
        return false;
      }
    }
    return true;
  }

  // Joins both pools until neither has work (a task of one may submit to the other). Collects
  // what UnobservedTaskErrors reports. False after a hang.
  bool join_all() {
    // A task of one pool may submit to the other after that one's join returned; once every
    // accepted task's future is done, no task can submit any more, and one more round of joins
    // sees both pools idle.
    for (int round = 0, last = -1; round != last; ++round) {
      if (round == 64) {
        hang("the pools never became idle together in 64 rounds of join()");
        return false;
      }
      if (last < 0 && all_done()) last = round + 1;
      for (ThreadPoolExecutor* pool : {a_.get(), b_.get()}) {
        if (!join(pool)) return false;
      }
    }
    // Every exception a task threw is observed or reported.
    for (std::size_t i = 0; i < run_->slots.size(); ++i) {
      const Slot& slot = run_->slots[i];
      if (slot.threw.load() && !slot.observed.load() && reported_.count(static_cast<int>(i)) == 0) {
        run_->violation("the exception of " + task_name(*run_, static_cast<int>(i)) +
                        " was neither observed nor reported by join()");
      }
    }
    return true;
  }

  // join(kBound), recording what UnobservedTaskErrors reports. False after a hang.
  bool join(ThreadPoolExecutor* pool) {
    // Observations made before this join must keep their exceptions out of its report.
    std::vector<int> observed_before(run_->slots.size());
    for (std::size_t i = 0; i < run_->slots.size(); ++i) {
      observed_before[i] = run_->slots[i].observed.load();
    }
    try {
      pool->join(kBound);
    } catch (const UnobservedTaskErrors& errors) {
      for (const std::exception_ptr& e : errors.exceptions()) record_report(e, observed_before);
    } catch (const TimeoutError& e) {
      hang(std::string("join() of ") + (pool == a_.get() ? "A" : "B") + ": " + e.what());
      return false;
    }
    return true;
  }

  bool all_done() {
    for (std::size_t i = 0; i < run_->slots.size(); ++i) {
      std::optional<Future<int>> f = run_->future_of(static_cast<int>(i));
      if (f && !f->done()) return false;
    }
    return true;
  }

  void record_report(const std::exception_ptr& e, const std::vector<int>& observed_before) {
    int id = -1;
    try {
      std::rethrow_exception(e);
    } catch (const TaskError& x) {
      id = x.id;
    } catch (const NotAStdException& x) {
      id = x.id;
    } catch (int x) {
      id = x;
    } catch (const BrokenThreadPool&) {
      // A task of a broken pool that never ran: not a task's own exception.
      if (!run_->plan.broken_initializer) run_->violation("join() reported a BrokenThreadPool");
      return;
    } catch (...) {
      run_->violation("join() reported an exception of an unexpected type");
      return;
    }
    if (id < 0 || id >= static_cast<int>(run_->slots.size())) {
      run_->violation("join() reported an exception of unknown task " + std::to_string(id));
      return;
    }
    if (++reported_[id] > 1)
      run_->violation("join() reported the exception of " + task_name(*run_, id) + " twice");
    if (observed_before[id]) {
      run_->violation("join() reported the exception of " + task_name(*run_, id) +
                      ", which was observed before");
    }
    if (!run_->slots[id].threw.load()) {
      run_->violation("join() reported an exception " + task_name(*run_, id) + " never threw");
    }
  }

  void check_after_join() {
    bool any_accepted_on_a = false;
    for (std::size_t i = 0; i < run_->slots.size(); ++i) {
      const int id = static_cast<int>(i);
      std::optional<Future<int>> f = run_->future_of(id);
      if (!f) {
        if (run_->slots[i].runs.load() != 0)
          run_->violation(task_name(*run_, id) + " ran though its submit failed");
        continue;
      }
      if (run_->plan.nodes[i].pool == PoolId::kA) any_accepted_on_a = true;
      if (!f->done()) {
        run_->violation("the future of " + task_name(*run_, id) + " is pending after join()");
        continue;
      }
      check_done(*run_, id, *f);
    }
    for (std::size_t i = 0; i < run_->hand_made.size(); ++i)
      check_hand_made(*run_, static_cast<int>(i));
    if (run_->plan.broken_initializer && any_accepted_on_a && a_->broken().empty()) {
      run_->violation("A's initializer threw, but the pool is not broken");
    }
  }

  // The executors stay usable after their tasks failed (or, broken, refuse with BrokenThreadPool).
  void check_usable() {
    for (ThreadPoolExecutor* pool : {a_.get(), b_.get()}) {
      const bool is_a = pool == a_.get();
      if ((is_a ? run_->a_stopping : run_->b_stopping).load()) continue;
      // A pool whose initializer throws breaks when its first worker starts.
      const bool breaks = is_a && run_->plan.broken_initializer;
      const bool broken = breaks && !a_->broken().empty();
      try {
        Future<int> f = pool->submit([] { return 1; });
        if (broken) run_->violation("a broken pool accepted a task");
        if (f.result(kBound) != 1) run_->violation("a task after the run returned a wrong result");
        pool->join(kBound);
      } catch (const BrokenThreadPool&) {
        if (!breaks) run_->violation("a usable pool threw BrokenThreadPool");
      } catch (const TimeoutError&) {
        hang(std::string("a task submitted to ") + (is_a ? "A" : "B") + " after the run");
        return;
      } catch (const std::exception& e) {
        run_->violation(std::string("a pool is unusable after the run: ") + e.what());
      }
    }
  }

  std::shared_ptr<Run> run_;
  LogCounter& logs_;
  std::shared_ptr<ThreadPoolExecutor> a_;
  std::shared_ptr<ThreadPoolExecutor> b_;
  std::thread helper_;
  std::future<void> helper_done_;
  std::map<int, int> reported_;  // task id -> times join() reported its exception
  bool hung_ = false;
  std::string hang_;
};

struct Config {
  std::uint64_t seed = static_cast<std::uint64_t>(env_long("STRESS_SEED", 1));
  long trees = env_long("STRESS_TREES", 200);
  long fibs = env_long("STRESS_FIBS", 200);
};

// The same seed gives the same plan (what reproducing a failure from its seed relies on).
TEST(Stress, SameSeedSamePlan) {
  for (std::uint64_t seed = 1; seed <= 100; ++seed) {
    EXPECT_EQ(describe(Generator(seed).generate()), describe(Generator(seed).generate()));
  }
  EXPECT_NE(describe(Generator(1).generate()), describe(Generator(2).generate()));
}

TEST(Stress, RandomTrees) {
  const Config config;
  // Never destroyed: an executor left hanging may still log.
  static LogCounter& logs = *new LogCounter;
  for (long i = 0; i < config.trees; ++i) {
    TreeRun tree(config.seed + static_cast<std::uint64_t>(i), logs);
    tree.execute();
    tree.report();
    ++totals.trees;
    if (totals.hangs >= 3) {
      ADD_FAILURE() << "stress: stopping after 3 hangs";
      break;
    }
  }
}

TEST(Stress, ForkJoinFib) {
  const Config config;
  for (long i = 0; i < config.fibs; ++i) {
    ++totals.fibs;
    auto pool = ThreadPoolExecutor::create(2);
    try {
      Future<long> f = pool->submit(test_util::fib, pool.get(), 18);
      const long value = f.result(kBound);
      if (value != 2584) {
        ++totals.violations;
        ADD_FAILURE() << "stress: VIOLATION fib run " << i << " max_workers=2: fib(18) = " << value;
      }
      pool->join(kBound);
    } catch (const TimeoutError& e) {
      ++totals.hangs;
      ADD_FAILURE() << "stress: HANG fib run " << i << " max_workers=2: " << e.what();
      keep_forever(std::move(pool));
      break;
    }
    if (!bounded([pool = std::move(pool)]() mutable { pool.reset(); })) {
      ++totals.hangs;
      ADD_FAILURE() << "stress: HANG fib run " << i << " max_workers=2: the destructor";
      break;
    }
  }
}

class Summary : public ::testing::Environment {
 public:
  void SetUp() override { start_ = std::chrono::steady_clock::now(); }
  void TearDown() override {
    const auto elapsed = std::chrono::duration_cast<std::chrono::duration<double>>(
        std::chrono::steady_clock::now() - start_);
    std::printf("stress: %ld trees, %ld fib(18): %ld hangs, %ld invariant violations (%.1f s)\n",
                totals.trees, totals.fibs, totals.hangs, totals.violations, elapsed.count());
    std::fflush(stdout);
  }

 private:
  std::chrono::steady_clock::time_point start_;
};
// Printed last, after both tests.
const auto* const kSummary = ::testing::AddGlobalTestEnvironment(new Summary);

}  // namespace
}  // namespace betterconcurrent
