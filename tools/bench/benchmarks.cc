// Benchmarks of betterconcurrent's ThreadPoolExecutor, with a hand-rolled pool
// (hand_rolled_pool.h) measured in the same run as the peer baseline.
//
//   bazel run -c opt //tools/bench:benchmarks -- --benchmark_min_time=0.2
//
// Multi-threaded cases use real (wall-clock) time: the benchmark thread mostly waits while the
// workers do the work, so its CPU time means nothing. items_per_second is tasks (or tree
// nodes) per wall-clock second.
//
// Cases:
//   BM_NoopSubmitWait/W             submit a no-op from outside, wait for its result(); W workers
//   BM_HandRolledPool_NoopSubmitWait  the same on the hand-rolled pool (2 threads)
//   BM_FireAndForgetTree/W          1,111,111-node tree (fan-out 10, depth 6), each node a task
//                                   submitting its children without keeping futures; join()
//   BM_HandRolledPool_FireAndForgetTree  the same on the hand-rolled pool (2 threads)
//   BM_ForkJoinFib/N/W              fib(N), every call a coroutine task co_awaiting its two
//                                   children. There is no hand-rolled counterpart: on a
//                                   blocking pool each call would hold its thread while waiting
//                                   for its children, and fork-join recursion deadlocks as soon
//                                   as every thread is blocked (the footgun).
//   BM_SuspendedTaskBytes           heap bytes held per coroutine task suspended on a future,
//                                   measured by counting operator new/delete (below).
#include <malloc.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

#include "benchmark/benchmark.h"
#include "executor/thread_pool_executor.h"
#include "tools/bench/hand_rolled_pool.h"

// ---- Counting global operator new/delete -------------------------------------------------
// Counting is off except inside BM_SuspendedTaskBytes' measured window, so the other cases pay
// one relaxed load per allocation. Bytes are malloc_usable_size(), i.e. what the allocator
// really set aside (excluding its per-chunk header), so they include rounding.
namespace {
std::atomic<bool> g_counting{false};
std::atomic<std::int64_t> g_net_bytes{0};
std::atomic<std::int64_t> g_net_allocs{0};

void* counted_alloc(std::size_t size) {
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  if (g_counting.load(std::memory_order_relaxed)) {
    g_net_bytes.fetch_add(static_cast<std::int64_t>(malloc_usable_size(p)),
                          std::memory_order_relaxed);
    g_net_allocs.fetch_add(1, std::memory_order_relaxed);
  }
  return p;
}

void counted_free(void* p) noexcept {
  if (p == nullptr) return;
  if (g_counting.load(std::memory_order_relaxed)) {
    g_net_bytes.fetch_sub(static_cast<std::int64_t>(malloc_usable_size(p)),
                          std::memory_order_relaxed);
    g_net_allocs.fetch_sub(1, std::memory_order_relaxed);
  }
  std::free(p);
}
}  // namespace

// The aligned forms are left to the standard library, which pairs them with free() itself.
void* operator new(std::size_t size) { return counted_alloc(size); }
void* operator new[](std::size_t size) { return counted_alloc(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(size);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(size);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_free(p); }

namespace {

using betterconcurrent::Executor;
using betterconcurrent::Future;
using betterconcurrent::Task;
using betterconcurrent::ThreadPoolExecutor;

constexpr int kTreeFanOut = 10;
constexpr int kTreeDepth = 6;
constexpr std::int64_t kTreeNodes = 1111111;  // 1 + 10 + ... + 10^6

std::shared_ptr<ThreadPoolExecutor> started_pool(std::size_t workers) {
  auto pool = ThreadPoolExecutor::create(workers);
  pool->submit([] {}).result();  // start a worker outside the timed loop
  return pool;
}

// ---- No-op submit + wait -------------------------------------------------------------------

void BM_NoopSubmitWait(benchmark::State& state) {
  auto pool = started_pool(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) pool->submit([] {}).result();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NoopSubmitWait)->Arg(1)->Arg(2)->UseRealTime();

void BM_HandRolledPool_NoopSubmitWait(benchmark::State& state) {
  bench::HandRolledPool pool(2);
  pool.submit([] {}).get();
  for (auto _ : state) pool.submit([] {}).get();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HandRolledPool_NoopSubmitWait)->UseRealTime();

// ---- Fire-and-forget tree ------------------------------------------------------------------

void tree_node(Executor* ex, int depth) {
  if (depth == 0) return;
  for (int i = 0; i < kTreeFanOut; ++i) ex->submit(tree_node, ex, depth - 1);
}

// The same tree, counting its nodes: run once before timing to check the shape.
void counted_tree_node(Executor* ex, int depth, std::atomic<std::int64_t>* nodes) {
  nodes->fetch_add(1, std::memory_order_relaxed);
  if (depth == 0) return;
  for (int i = 0; i < kTreeFanOut; ++i) ex->submit(counted_tree_node, ex, depth - 1, nodes);
}

void BM_FireAndForgetTree(benchmark::State& state) {
  auto pool = started_pool(static_cast<std::size_t>(state.range(0)));
  std::atomic<std::int64_t> nodes{0};
  pool->submit(counted_tree_node, pool.get(), kTreeDepth, &nodes);
  pool->join();
  if (nodes.load() != kTreeNodes) {
    state.SkipWithError("the tree did not have the expected number of nodes");
    return;
  }
  for (auto _ : state) {
    pool->submit(tree_node, pool.get(), kTreeDepth);
    pool->join();
  }
  state.SetItemsProcessed(state.iterations() * kTreeNodes);
}
BENCHMARK(BM_FireAndForgetTree)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

void hand_rolled_tree_node(bench::HandRolledPool* pool, int depth,
                           std::atomic<std::int64_t>* nodes) {
  if (nodes != nullptr) nodes->fetch_add(1, std::memory_order_relaxed);
  if (depth == 0) return;
  for (int i = 0; i < kTreeFanOut; ++i) {
    pool->post([pool, depth, nodes] { hand_rolled_tree_node(pool, depth - 1, nodes); });
  }
}

void BM_HandRolledPool_FireAndForgetTree(benchmark::State& state) {
  bench::HandRolledPool pool(2);
  std::atomic<std::int64_t> nodes{0};
  pool.post([&] { hand_rolled_tree_node(&pool, kTreeDepth, &nodes); });
  pool.join();
  if (nodes.load() != kTreeNodes) {
    state.SkipWithError("the tree did not have the expected number of nodes");
    return;
  }
  for (auto _ : state) {
    pool.post([&] { hand_rolled_tree_node(&pool, kTreeDepth, nullptr); });
    pool.join();
  }
  state.SetItemsProcessed(state.iterations() * kTreeNodes);
}
BENCHMARK(BM_HandRolledPool_FireAndForgetTree)->UseRealTime()->Unit(benchmark::kMillisecond);

// ---- Fork-join fib ------------------------------------------------------------------------

Task<long> fib(Executor* ex, int n) {
  if (n < 2) co_return n;
  auto a = ex->submit(fib, ex, n - 1);
  auto b = ex->submit(fib, ex, n - 2);
  co_await a.yield_until_done();
  co_await b.yield_until_done();
  co_return a.result() + b.result();
}

long fib_value(int n) {
  long a = 0, b = 1;
  for (int i = 0; i < n; ++i) {
    long c = a + b;
    a = b;
    b = c;
  }
  return a;
}

// Args: n, workers. One task per fib call: 2 * fib(n + 1) - 1 tasks.
void BM_ForkJoinFib(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  auto pool = started_pool(static_cast<std::size_t>(state.range(1)));
  const long want = fib_value(n);
  for (auto _ : state) {
    long got = pool->submit(fib, pool.get(), n).result();
    if (got != want) {
      state.SkipWithError("wrong fib value");
      return;
    }
  }
  const std::int64_t tasks = 2 * fib_value(n + 1) - 1;
  state.SetItemsProcessed(state.iterations() * tasks);
  state.counters["tasks"] = static_cast<double>(tasks);
}
BENCHMARK(BM_ForkJoinFib)
    ->ArgNames({"n", "workers"})
    ->Args({20, 2})
    ->Args({25, 2})
    ->Args({30, 2})
    ->Args({25, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---- Memory per suspended coroutine task --------------------------------------------------

Task<void> park(Future<void> gate, std::atomic<int>* arrived) {
  arrived->fetch_add(1, std::memory_order_relaxed);
  co_await gate.yield_until_done();
}

// Suspends 100k coroutine tasks on one hand-made future and counts the heap they hold: the
// task object (future state, queue links, the callable and its arguments) plus the coroutine
// frame. One worker, so that a no-op submitted after them runs only once every one of them
// has run up to its co_await and suspended (outside submissions are served in FIFO order).
void BM_SuspendedTaskBytes(benchmark::State& state) {
  constexpr int kTasks = 100000;
  auto pool = started_pool(1);
  double bytes = 0, allocs = 0;
  for (auto _ : state) {
    Future<void> gate;
    std::atomic<int> arrived{0};
    g_net_bytes.store(0);
    g_net_allocs.store(0);
    g_counting.store(true);
    for (int i = 0; i < kTasks; ++i) pool->submit(park, gate, &arrived);  // futures dropped
    pool->submit([] {}).result();
    g_counting.store(false);
    bytes = static_cast<double>(g_net_bytes.load()) / kTasks;
    allocs = static_cast<double>(g_net_allocs.load()) / kTasks;
    if (arrived.load() != kTasks) {
      state.SkipWithError("not every task reached its co_await");
      gate.set_result();
      pool->join();
      return;
    }
    gate.set_result();
    pool->join();
  }
  state.SetItemsProcessed(state.iterations() * kTasks);
  state.counters["bytes_per_task"] = bytes;
  state.counters["allocs_per_task"] = allocs;
}
BENCHMARK(BM_SuspendedTaskBytes)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
