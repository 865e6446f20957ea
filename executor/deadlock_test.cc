// Issue 5's deadlock diagnosis: find_deadlocked() on hand-built wait graphs, then whole pools
// whose coroutine tasks wait for each other. Every join() here has a bound, so a deadlock that
// is not found fails the test with TimeoutError instead of hanging it.
#include "executor/deadlock.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "executor/task.h"
#include "executor/thread_pool_executor.h"
#include "future/exceptions.h"
#include "future/future.h"
#include "future/wait.h"
#include "gtest/gtest.h"
#include "testing/fib.h"
#include "testing/log_capture.h"
#include "testing/pool.h"

namespace betterconcurrent {
namespace {

using std::chrono::seconds;
constexpr seconds kBound{30};
constexpr seconds kNow{0};

// ---------------------------------------------------------------------------------------------
// find_deadlocked() on wait graphs made of hand-made futures.

class FakeSuspension final : public detail::Suspension {
 public:
  // Its wait is over once all (kAll) or one (kAny) of `awaited` is done, unless `ready` says.
  FakeSuspension(const detail::StateBase& waiter, std::vector<detail::StateBase*> awaited,
                 Need need, bool timed = false, std::optional<bool> ready = std::nullopt)
      : waiter_(waiter), awaited_(std::move(awaited)), need_(need), timed_(timed), ready_(ready) {}
  const detail::StateBase& waiter() const noexcept override { return waiter_; }
  std::size_t awaited_count() const noexcept override { return awaited_.size(); }
  const detail::StateBase& awaited(std::size_t i) const noexcept override { return *awaited_[i]; }
  Need need() const noexcept override { return need_; }
  bool timed() const noexcept override { return timed_; }
  bool satisfied(const detail::StateBase& awaited) const noexcept override {
    return awaited.done();
  }
  bool ready() const noexcept override {
    if (ready_) return *ready_;
    auto done = [](const detail::StateBase* a) { return a->done(); };
    return need_ == Need::kAll ? std::all_of(awaited_.begin(), awaited_.end(), done)
                               : std::any_of(awaited_.begin(), awaited_.end(), done);
  }
  void abandon() noexcept override {}
  void end(const std::exception_ptr&) noexcept override {}

 private:
  const detail::StateBase& waiter_;
  std::vector<detail::StateBase*> awaited_;
  Need need_;
  bool timed_;
  std::optional<bool> ready_;
};

// A graph of n nodes: node i stands for a suspended task whose own future is futures[i].
class Graph {
 public:
  explicit Graph(std::size_t n) : futures_(n) {}
  detail::StateBase& future(std::size_t i) { return futures_[i].state_base(); }
  // Node `waiter` waits for the futures of `awaited`.
  void wait(std::size_t waiter, const std::vector<std::size_t>& awaited,
            detail::Suspension::Need need = detail::Suspension::Need::kAll, bool timed = false) {
    std::vector<detail::StateBase*> states;
    for (std::size_t a : awaited) states.push_back(&future(a));
    add(waiter, std::move(states), need, timed);
  }
  // Node `waiter` waits for `states` (which may belong to no node).
  void add(std::size_t waiter, std::vector<detail::StateBase*> states,
           detail::Suspension::Need need, bool timed = false,
           std::optional<bool> ready = std::nullopt) {
    nodes_.push_back(
        std::make_unique<FakeSuspension>(future(waiter), std::move(states), need, timed, ready));
  }
  // The indexes of the deadlocked nodes, sorted.
  std::vector<std::size_t> deadlocked() {
    std::vector<detail::Suspension*> suspended;
    for (auto& n : nodes_) suspended.push_back(n.get());
    std::unordered_map<const detail::StateBase*, std::size_t> index;
    for (std::size_t i = 0; i < futures_.size(); ++i) index[&future(i)] = i;
    std::vector<std::size_t> out;
    for (detail::Suspension* s : detail::find_deadlocked(suspended)) {
      out.push_back(index.at(&s->waiter()));
    }
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  std::vector<Future<void>> futures_;
  std::vector<std::unique_ptr<FakeSuspension>> nodes_;
};

using Need = detail::Suspension::Need;
using Indexes = std::vector<std::size_t>;

TEST(FindDeadlocked, TwoTasksWaitingForEachOther) {
  Graph g(2);
  g.wait(0, {1});
  g.wait(1, {0});
  EXPECT_EQ(g.deadlocked(), (Indexes{0, 1}));
}

TEST(FindDeadlocked, TasksWaitingForACycleAreDeadlockedWithIt) {
  Graph g(4);
  g.wait(0, {1});
  g.wait(1, {2});
  g.wait(2, {0});
  g.wait(3, {2});  // not in the cycle, but can only resume once it ends
  EXPECT_EQ(g.deadlocked(), (Indexes{0, 1, 2, 3}));
}

TEST(FindDeadlocked, AChainEndingInAFutureOutsideIsNotDeadlocked) {
  Graph g(3);
  Future<void> outside;
  g.wait(0, {1});
  g.wait(1, {2});
  g.add(2, {&outside.state_base()}, Need::kAll);
  EXPECT_EQ(g.deadlocked(), Indexes{});
}

TEST(FindDeadlocked, WaitingForAnyIsStuckOnlyIfEveryFutureIs) {
  Graph g(4);
  Future<void> outside;
  g.wait(0, {1});
  g.wait(1, {0});
  g.wait(2, {0, 1}, Need::kAny);                                // both in the cycle: stuck
  g.add(3, {&g.future(0), &outside.state_base()}, Need::kAny);  // the outside one may finish
  EXPECT_EQ(g.deadlocked(), (Indexes{0, 1, 2}));
}

TEST(FindDeadlocked, WaitingForAllIsStuckIfAnyFutureIs) {
  Graph g(3);
  Future<void> outside;
  g.wait(0, {1});
  g.wait(1, {0});
  g.add(2, {&outside.state_base(), &g.future(0)}, Need::kAll);
  EXPECT_EQ(g.deadlocked(), (Indexes{0, 1, 2}));
}

TEST(FindDeadlocked, ATimedWaitBreaksTheCycle) {
  Graph g(3);
  g.wait(0, {1}, Need::kAll, /*timed=*/true);  // its timer wakes it, then it may finish
  g.wait(1, {2});
  g.wait(2, {0});
  EXPECT_EQ(g.deadlocked(), Indexes{});
}

TEST(FindDeadlocked, ASatisfiedWaitIsNotStuck) {
  Graph g(3);
  Future<void> finished;
  finished.set_result();
  g.wait(0, {1});
  g.wait(1, {0, 2});  // waiting for all: 0 keeps it stuck
  g.add(2, {&finished.state_base(), &g.future(0)}, Need::kAny);  // woken already
  EXPECT_EQ(g.deadlocked(), (Indexes{0, 1}));
}

TEST(FindDeadlocked, ADoneFutureThatDoesNotEndTheWaitFreesNothing) {
  // FIRST_EXCEPTION over {a future done with a result, a task of the cycle}: not over, and only
  // the cycle could end it.
  Graph g(2);
  Future<void> finished;
  finished.set_result();
  g.wait(0, {1});
  g.add(1, {&finished.state_base(), &g.future(0)}, Need::kAny, false, /*ready=*/false);
  EXPECT_EQ(g.deadlocked(), (Indexes{0, 1}));
}

TEST(FindDeadlocked, AWaitThatIsOverIsNotStuck) {
  Graph g(2);
  g.wait(0, {1});
  g.add(1, {&g.future(0)}, Need::kAll, false, /*ready=*/true);  // its wake-up is on its way
  EXPECT_EQ(g.deadlocked(), Indexes{});
}

TEST(FindDeadlocked, AnAwaitedTaskThatIsNotSuspendedMayStillFinish) {
  Graph g(3);  // node 2's future belongs to no suspension: a queued or running task
  g.wait(0, {1});
  g.wait(1, {2});
  EXPECT_EQ(g.deadlocked(), Indexes{});
}

TEST(FindDeadlocked, LongGraphsTakeLinearTime) {
  // 200,000 tasks in one chain, each waiting for the next: quadratic work would not finish.
  constexpr std::size_t kN = 200'000;
  Graph outside_end(kN);
  Future<void> outside;
  for (std::size_t i = 0; i + 1 < kN; ++i) outside_end.wait(i, {i + 1});
  outside_end.add(kN - 1, {&outside.state_base()}, Need::kAll);
  EXPECT_TRUE(outside_end.deadlocked().empty());

  Graph cycle_end(kN);
  for (std::size_t i = 0; i < kN; ++i) cycle_end.wait(i, {(i + 1) % kN});
  EXPECT_EQ(cycle_end.deadlocked().size(), kN);
}

TEST(DeadlockError, NamesEachTaskAndWhatItWaitsFor) {
  Graph g(3);
  g.wait(0, {1});
  g.wait(1, {0, 2}, Need::kAny);
  g.wait(2, {0});
  std::vector<detail::Suspension*> all;  // as find_deadlocked() would return them
  FakeSuspension a(g.future(0), {&g.future(1)}, Need::kAll);
  FakeSuspension b(g.future(1), {&g.future(0), &g.future(2)}, Need::kAny);
  all = {&a, &b};
  try {
    std::rethrow_exception(detail::deadlock_error(all));
  } catch (const DeadlockError& e) {
    std::string what = e.what();
    std::string f0 = detail::repr(g.future(0));
    std::string f1 = detail::repr(g.future(1));
    std::string f2 = detail::repr(g.future(2));
    EXPECT_NE(what.find("2 suspended task(s)"), std::string::npos) << what;
    EXPECT_NE(what.find(f0 + " waits for " + f1), std::string::npos) << what;
    EXPECT_NE(what.find(f1 + " waits for any of [" + f0 + ", " + f2 + "]"), std::string::npos)
        << what;
  }
}

TEST(DeadlockError, NamesAtMostAFewTasks) {
  constexpr std::size_t kN = detail::kMaxNamed + 5;
  Graph g(kN);
  std::vector<std::unique_ptr<FakeSuspension>> nodes;
  std::vector<detail::Suspension*> all;
  for (std::size_t i = 0; i < kN; ++i) {
    nodes.push_back(std::make_unique<FakeSuspension>(
        g.future(i), std::vector<detail::StateBase*>{&g.future((i + 1) % kN)}, Need::kAll));
    all.push_back(nodes.back().get());
  }
  try {
    std::rethrow_exception(detail::deadlock_error(all));
  } catch (const DeadlockError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("; and 5 more"), std::string::npos) << what;
    EXPECT_EQ(what.find(detail::repr(g.future(detail::kMaxNamed)) + " waits"), std::string::npos)
        << what;
  }
}

// What an awaiter tells a search. A future is notified before its listener reaches the wait
// set, and a search may look in between: an awaiter must already call that wait over (the
// stress test found a FIRST_COMPLETED wait ended as deadlocked in that window, when readiness
// came from what the set had recorded). Here the set never armed, so it has recorded nothing.
class InertDriver final : public detail::CoroutineDriver {
 public:
  void wake() noexcept override {}
  void finish() noexcept override {}
  void end_deadlocked(const std::exception_ptr&) noexcept override {}
  void publish(detail::Suspension&) noexcept override {}
  void withdraw() noexcept override {}
  detail::StateBase& own_state() noexcept override { return own_.state_base(); }
  detail::Scheduler& scheduler() noexcept override { std::abort(); }  // untimed waits only

 private:
  Future<void> own_;
};

bool awaiter_ready(std::vector<Future<void>> fs, ReturnWhen return_when) {
  InertDriver driver;
  detail::WaitAllAwaiter<Future<void>> awaiter(yield_until_done(fs, std::nullopt, return_when),
                                               driver);
  return awaiter.ready();
}

TEST(AwaiterReadiness, JudgedFromTheFuturesThemselves) {
  Future<void> pending;
  Future<void> result;
  result.set_result();
  Future<void> raised;
  raised.set_exception(std::make_exception_ptr(std::logic_error("x")));
  EXPECT_TRUE(awaiter_ready({pending, result}, FIRST_COMPLETED));
  EXPECT_FALSE(awaiter_ready({pending, result}, FIRST_EXCEPTION));
  EXPECT_TRUE(awaiter_ready({pending, raised}, FIRST_EXCEPTION));
  EXPECT_TRUE(awaiter_ready({result, raised}, ALL_COMPLETED));
  EXPECT_FALSE(awaiter_ready({pending, raised}, ALL_COMPLETED));
  EXPECT_FALSE(awaiter_ready({pending}, FIRST_COMPLETED));
}

// ---------------------------------------------------------------------------------------------
// Whole pools, with 1, 2 and 4 workers.

class Deadlock : public ::testing::TestWithParam<int> {
 protected:
  std::shared_ptr<ThreadPoolExecutor> pool_ = ThreadPoolExecutor::create(GetParam());
};

// Tasks that first wait for `go` (a hand-made future: no deadlock while they wait for it), then
// each for the next one's future, in a ring.
struct Ring {
  Future<void> go;
  std::vector<Future<void>> members;
};

Task<void> wait_for_next(std::shared_ptr<Ring> ring, std::size_t i) {
  co_await ring->go.yield_until_done();
  co_await ring->members[(i + 1) % ring->members.size()].yield_until_done();
}

std::shared_ptr<Ring> make_ring(ThreadPoolExecutor& pool, std::size_t n) {
  auto ring = std::make_shared<Ring>();
  for (std::size_t i = 0; i < n; ++i) ring->members.push_back(pool.submit(wait_for_next, ring, i));
  return ring;
}

// "<Future at 0x...": how a message names a future, whatever its state was then.
std::string named(const AnyFuture& f) {
  std::string repr = to_string(f);
  return repr.substr(0, repr.find(" state="));
}

std::string join_error(ThreadPoolExecutor& pool) {
  try {
    pool.join(kBound);
  } catch (const DeadlockError& e) {
    return e.what();
  }
  ADD_FAILURE() << "join() did not throw DeadlockError";
  return "";
}

TEST_P(Deadlock, JoinEndsARingOfTasksAndNamesThem) {
  auto ring = make_ring(*pool_, 3);
  ring->go.set_result();
  std::string what = join_error(*pool_);
  for (const Future<void>& f : ring->members) {
    EXPECT_NE(what.find(named(f) + " state=running> waits for"), std::string::npos) << what;
    // Each task ended with the same error, without resuming.
    std::exception_ptr e = f.exception(kNow);
    ASSERT_TRUE(e);
    try {
      std::rethrow_exception(e);
    } catch (const DeadlockError& stored) {
      EXPECT_EQ(std::string(stored.what()), what);
    }
  }
  // Reported once; the pool stays usable.
  pool_->join(kBound);
  EXPECT_EQ(pool_->submit([] { return 7; }).result(kBound), 7);
  EXPECT_TRUE(test_util::join_and_destroy(std::move(pool_)));
}

TEST_P(Deadlock, ADeadlockThatFormedBeforeJoinIsFoundToo) {
  auto ring = make_ring(*pool_, 2);
  ring->go.set_result();
  // Wait (outside the pool, bounded) until both tasks suspended for good: each future stays
  // pending, and the pool has nothing left to run. wait() returning on timeout proves nothing
  // by itself, so join() below is the real check; this only makes it likely that the deadlock
  // formed before join() started.
  EXPECT_EQ(wait(ring->members, std::chrono::milliseconds(50)).not_done.size(), 2u);
  std::string what = join_error(*pool_);
  EXPECT_NE(what.find("2 suspended task(s)"), std::string::npos) << what;
}

TEST_P(Deadlock, WaitersOutsideThePoolGetTheError) {
  auto ring = make_ring(*pool_, 2);
  std::atomic<int> callbacks{0};
  ring->members[0].add_done_callback([&](const Future<void>& f) {
    if (f.exception(kNow)) callbacks.fetch_add(1);
  });
  // An outside waiter blocked in result(), released by the deadlock's end.
  auto outside = std::async(std::launch::async, [f = ring->members[1]] {
    try {
      f.result(kBound);
    } catch (const DeadlockError&) {
      return true;
    }
    return false;
  });
  ring->go.set_result();
  join_error(*pool_);
  EXPECT_TRUE(outside.get());
  EXPECT_EQ(callbacks.load(), 1);
}

TEST_P(Deadlock, TheEndDestroysTheCoroutinesLocals) {
  auto alive = std::make_shared<int>(0);
  auto ring = std::make_shared<Ring>();
  std::weak_ptr<int> watch = alive;
  auto waits = [](std::shared_ptr<Ring> ring, std::size_t i,
                  std::shared_ptr<int> held) -> Task<void> {
    co_await ring->go.yield_until_done();
    co_await ring->members[1 - i].yield_until_done();
    ++*held;  // never reached
  };
  ring->members.push_back(pool_->submit(waits, ring, 0, alive));
  ring->members.push_back(pool_->submit(waits, ring, 1, alive));
  alive.reset();
  ring->go.set_result();
  join_error(*pool_);
  EXPECT_TRUE(watch.expired());
}

TEST_P(Deadlock, AWaitForAnyThatAFutureOutsideCanEndIsNotReported) {
  auto ring = make_ring(*pool_, 2);
  Future<void> outside;
  auto either = pool_->submit(
      [](std::shared_ptr<Ring> ring, Future<void> outside) -> Task<int> {
        std::vector<Future<void>> fs{ring->members[0], outside};
        auto [done, not_done] = co_await yield_until_done(fs, std::nullopt, FIRST_COMPLETED);
        co_return static_cast<int>(done.size());
      },
      ring, outside);
  ring->go.set_result();
  std::string what = join_error(*pool_);
  // The ring ended, which woke `either`, which the deadlock report leaves out.
  EXPECT_EQ(what.find(named(either)), std::string::npos) << what;
  EXPECT_EQ(either.result(kBound), 1);
}

TEST_P(Deadlock, AWaitForAllThatNeedsTheRingIsEndedWithIt) {
  auto ring = make_ring(*pool_, 2);
  Future<void> outside;
  // It lets the ring go itself, so it is suspended (not queued) whenever the ring is found: a
  // search leaves queued tasks alone, and once the ring ended, this would wait for `outside`.
  auto both = pool_->submit(
      [](std::shared_ptr<Ring> ring, Future<void> outside) -> Task<void> {
        std::vector<Future<void>> fs{ring->members[0], outside};
        ring->go.set_result();
        co_await yield_until_done(fs);
      },
      ring, outside);
  std::string what = join_error(*pool_);
  EXPECT_NE(what.find("3 suspended task(s)"), std::string::npos) << what;
  EXPECT_NE(what.find(named(both) + " state=running> waits for all of ["), std::string::npos)
      << what;
  EXPECT_THROW(both.result(kBound), DeadlockError);
}

// FIRST_EXCEPTION over {a ring member, a hand-made future}: a result in the hand-made future does
// not end the wait, so only the ring could; an exception there ends it.
Task<void> first_exception(std::shared_ptr<Ring> ring, Future<void> other) {
  co_await ring->go.yield_until_done();
  std::vector<Future<void>> fs{ring->members[1], other};
  co_await yield_until_done(fs, std::nullopt, FIRST_EXCEPTION);
}

TEST_P(Deadlock, FirstExceptionWithAResultElsewhereIsStillStuck) {
  auto ring = std::make_shared<Ring>();
  Future<void> other;
  other.set_result();
  ring->members.push_back(pool_->submit(first_exception, ring, other));
  ring->members.push_back(pool_->submit(wait_for_next, ring, 1));  // waits for members[0]
  ring->go.set_result();
  std::string what = join_error(*pool_);
  EXPECT_NE(what.find("2 suspended task(s)"), std::string::npos) << what;
}

TEST_P(Deadlock, FirstExceptionWithAnExceptionElsewhereIsOver) {
  auto ring = std::make_shared<Ring>();
  Future<void> other;
  other.set_exception(std::make_exception_ptr(std::logic_error("ends FIRST_EXCEPTION")));
  ring->members.push_back(pool_->submit(first_exception, ring, other));
  ring->members.push_back(pool_->submit(wait_for_next, ring, 1));
  ring->go.set_result();
  pool_->join(kBound);  // the first task's wait is over, so both finish
  EXPECT_FALSE(ring->members[0].exception(kNow));
  EXPECT_FALSE(ring->members[1].exception(kNow));
}

TEST_P(Deadlock, AResultThatLeavesAFirstExceptionWaitStuckIsFoundToo) {
  auto ring = std::make_shared<Ring>();
  Future<void> other;  // may still raise: no deadlock yet
  ring->members.push_back(pool_->submit(first_exception, ring, other));
  ring->members.push_back(pool_->submit(wait_for_next, ring, 1));
  ring->go.set_result();
  EXPECT_THROW(pool_->join(std::chrono::milliseconds(50)), TimeoutError);
  // Its result wakes nobody, so no worker goes idle afterwards: the wait set prompts the
  // search itself. Which comes first, the result or join()'s wait, is up to the scheduler here;
  // with the result delayed until join() waits, this failed (join() timed out) without the
  // prompt.
  auto joined = std::async(std::launch::async, [this] { return join_error(*pool_); });
  other.set_result();
  std::string what = joined.get();
  EXPECT_NE(what.find("2 suspended task(s)"), std::string::npos) << what;
}

TEST_P(Deadlock, AWaitOnAFutureOutsideIsNeverReported) {
  Future<void> outside;
  auto waiter =
      pool_->submit([](Future<void> f) -> Task<void> { co_await f.yield_until_done(); }, outside);
  // The pool is quiet with a task suspended on a future nobody completes (yet): join() looks,
  // finds no deadlock, and waits on.
  EXPECT_THROW(pool_->join(std::chrono::milliseconds(100)), TimeoutError);
  outside.set_result();
  pool_->join(kBound);
  EXPECT_TRUE(waiter.done());
}

TEST_P(Deadlock, ATimedWaitInARingIsNotReported) {
  auto ring = std::make_shared<Ring>();
  auto patient = [](std::shared_ptr<Ring> ring) -> Task<void> {
    co_await ring->go.yield_until_done();
    std::vector<Future<void>> next{ring->members[1]};
    co_await yield_until_done(next, std::chrono::milliseconds(20));
  };
  auto plain = [](std::shared_ptr<Ring> ring) -> Task<void> {
    co_await ring->go.yield_until_done();
    co_await ring->members[0].yield_until_done();
  };
  ring->members.push_back(pool_->submit(patient, ring));
  ring->members.push_back(pool_->submit(plain, ring));
  ring->go.set_result();
  pool_->join(kBound);  // the timer ends the wait, then both finish
  EXPECT_TRUE(ring->members[0].done());
  EXPECT_FALSE(ring->members[1].exception(kNow));
}

TEST_P(Deadlock, OtherUnobservedErrorsWaitForTheNextJoin) {
  auto failed = pool_->submit([] { throw std::logic_error("plain failure"); });
  auto ring = make_ring(*pool_, 2);
  ring->go.set_result();
  join_error(*pool_);
  try {
    pool_->join(kBound);
    ADD_FAILURE() << "the plain failure was not reported";
  } catch (const UnobservedTaskErrors& e) {
    ASSERT_EQ(e.exceptions().size(), 1u);  // not the deadlocked tasks' errors again
    EXPECT_THROW(std::rethrow_exception(e.exceptions()[0]), std::logic_error);
  }
}

TEST_P(Deadlock, ShutdownEndsDeadlockedTasksAndLogsWhatNoJoinReported) {
  test_util::LogCapture logs;
  auto ring = make_ring(*pool_, 2);
  ring->go.set_result();
  auto pool = std::move(pool_);
  auto shut = std::async(std::launch::async, [&pool] { pool->shutdown(true); });
  ASSERT_EQ(shut.wait_for(kBound), std::future_status::ready) << "shutdown() hangs";
  for (const Future<void>& f : ring->members) EXPECT_THROW(f.result(kNow), DeadlockError);
  pool.reset();  // the workers exited, so this frees the scheduler, which logs
  EXPECT_EQ(logs.count("tasks deadlocked and nobody joined to hear of it"), 1);
}

TEST_P(Deadlock, ForkJoinRecursionIsNeverReported) {
  // Many quiet moments with many suspended tasks, none deadlocked.
  auto f = pool_->submit(test_util::fib, pool_.get(), 16);
  pool_->join(kBound);
  EXPECT_EQ(f.result(kNow), 987);
}

INSTANTIATE_TEST_SUITE_P(Workers, Deadlock, ::testing::Values(1, 2, 4));

}  // namespace
}  // namespace betterconcurrent
