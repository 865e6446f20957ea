// Fork-join recursion with cooperative coroutine tasks.
//
// 1. fib(n) where every call is a task (Task<long>) that submits its two sub-calls and
//    `co_await`s their futures, on a pool of ONE worker. With plain callables blocking on
//    result(), the first call would block the only worker and deadlock (the footgun of
//    Python's ThreadPoolExecutor); a coroutine task suspends instead, and the worker runs the
//    sub-calls meanwhile.
// 2. A parallel merge sort on a pool of two workers: each half is a task, and the parent waits
//    for both with `co_await yield_until_done(futures)` before merging.
//
// Exits 0 only if fib(n) is right and the array comes out sorted and a permutation of the
// input.
//
//   bazel run //examples:fork_join_fib
//   bazel run //examples:fork_join_fib -- 27 2000000      # fib argument, array size
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <span>
#include <vector>

#include "executor/thread_pool_executor.h"
#include "future/wait.h"

namespace {

using betterconcurrent::Executor;
using betterconcurrent::Task;
using betterconcurrent::ThreadPoolExecutor;

Task<long> fib(Executor* ex, int n) {
  if (n < 2) co_return n;
  auto a = ex->submit(fib, ex, n - 1);
  auto b = ex->submit(fib, ex, n - 2);
  co_await a.yield_until_done();  // suspends: the worker runs other tasks meanwhile
  co_await b.yield_until_done();
  co_return a.result() + b.result();  // both are done: result() does not block
}

long fib_sequential(int n) {
  long a = 0, b = 1;
  for (int i = 0; i < n; ++i) {
    long c = a + b;
    a = b;
    b = c;
  }
  return a;
}

constexpr std::size_t kSortCutoff = 4096;

// Sorts `data`, using `scratch` (same size) for the merge.
Task<void> merge_sort(Executor* ex, std::span<int> data, std::span<int> scratch) {
  if (data.size() <= kSortCutoff) {
    std::sort(data.begin(), data.end());
    co_return;
  }
  std::size_t mid = data.size() / 2;
  std::array halves{
      ex->submit(merge_sort, ex, data.first(mid), scratch.first(mid)),
      ex->submit(merge_sort, ex, data.subspan(mid), scratch.subspan(mid)),
  };
  co_await betterconcurrent::yield_until_done(halves);  // ALL_COMPLETED
  for (const auto& h : halves) h.result();              // rethrows a half's exception, if any
  std::merge(data.begin(), data.begin() + mid, data.begin() + mid, data.end(), scratch.begin());
  std::copy(scratch.begin(), scratch.end(), data.begin());
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 25;
  std::size_t size = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 1000000;
  if (n < 0 || n > 60) {
    std::fprintf(stderr, "usage: %s [fib argument 0..60] [array size]\n", argv[0]);
    return 2;
  }
  bool ok = true;
  try {
    {
      auto pool = ThreadPoolExecutor::create(1);
      auto start = std::chrono::steady_clock::now();
      long got = pool->submit(fib, pool.get(), n).result();
      double secs = seconds_since(start);
      long want = fib_sequential(n);
      long calls = 2 * fib_sequential(n + 1) - 1;
      std::printf("fib(%d)=%ld: %ld coroutine tasks on a pool of %zu worker thread(s) in %.3f s\n",
                  n, got, calls, pool->num_threads(), secs);
      if (got != want) {
        std::printf("FAIL: fib(%d) should be %ld\n", n, want);
        ok = false;
      }
      pool->join();
    }
    {
      std::vector<int> data(size);
      std::uint64_t x = 88172645463325252ull;  // xorshift64: deterministic input
      for (int& v : data) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v = static_cast<int>(x % 1000000007u) - 500000000;
      }
      std::vector<int> expected = data;
      std::sort(expected.begin(), expected.end());
      std::vector<int> scratch(size);

      auto pool = ThreadPoolExecutor::create(2);
      auto start = std::chrono::steady_clock::now();
      pool->submit(merge_sort, pool.get(), std::span<int>(data), std::span<int>(scratch)).result();
      double secs = seconds_since(start);
      bool sorted = std::is_sorted(data.begin(), data.end());
      bool same = data == expected;
      std::printf("merge sort of %zu ints on a pool of %zu worker thread(s): %s in %.3f s\n", size,
                  pool->num_threads(), sorted && same ? "sorted" : "NOT sorted", secs);
      if (!sorted || !same) {
        std::printf("FAIL: sorted=%d, permutation of the input=%d\n", sorted, same);
        ok = false;
      }
      pool->join();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  std::printf(ok ? "OK\n" : "FAILED\n");
  return ok ? 0 : 1;
}
