// Fire-and-forget parallel tree search: the example of the original Python package's README,
// in C++.
//
// Each task looks at one node and submits one task per child, without keeping the futures:
// nobody waits for any particular task. A task that finds the target records the node in a
// shared std::atomic, and the tasks stop spawning children once something was found.
// `pool->join()` blocks until the whole search has unfolded: every task, including the ones
// submitted by tasks after join() was called.
//
// The tree is a deterministic pseudo-random tree of 100,000 nodes. Node values are distinct
// (a bijection of the node ids), so the program knows, without searching, where the present
// value lives and that the absent value lives nowhere. It runs two searches and exits 0 only
// if the present value is found at the right node and the absent one is not found after
// visiting every node.
//
//   bazel run //examples:tree_search
//   bazel run //examples:tree_search -- 1000000 4     # nodes, workers
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <memory>
#include <vector>

#include "executor/thread_pool_executor.h"

namespace {

using betterconcurrent::Executor;
using betterconcurrent::ThreadPoolExecutor;

// A tree in breadth-first order: the children of node v are the consecutive ids
// [first_child[v], first_child[v] + num_children[v]).
struct Tree {
  std::vector<std::uint32_t> value;
  std::vector<std::uint32_t> first_child;
  std::vector<std::uint32_t> num_children;
  std::vector<std::uint32_t> depth;
  std::size_t size() const { return value.size(); }
};

// Distinct values: multiplication by an odd constant is a bijection modulo 2^32.
std::uint32_t value_of(std::uint32_t id) { return id * 2654435761u + 12345u; }

// A small deterministic generator (SplitMix64), so the tree is the same on every platform.
struct SplitMix64 {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
};

Tree make_tree(std::uint32_t n, std::uint64_t seed) {
  Tree t;
  t.value.resize(n);
  t.first_child.assign(n, 0);
  t.num_children.assign(n, 0);
  t.depth.assign(n, 0);
  SplitMix64 rng{seed};
  std::uint32_t next_id = 1;
  // Breadth-first: each node gets 0..6 children (3 on average) until n nodes exist. A node
  // that is the last one left to expand gets at least one child, so the tree reaches n.
  for (std::uint32_t v = 0; v < n; ++v) {
    t.value[v] = value_of(v);
    std::uint32_t k = static_cast<std::uint32_t>(rng.next() % 7);
    if (k == 0 && v + 1 == next_id) k = 1;
    if (k > n - next_id) k = n - next_id;
    t.first_child[v] = next_id;
    t.num_children[v] = k;
    for (std::uint32_t c = next_id; c < next_id + k; ++c) t.depth[c] = t.depth[v] + 1;
    next_id += k;
  }
  return t;
}

constexpr std::int64_t kNotFound = -1;

struct Search {
  Executor* pool;
  const Tree* tree;
  std::uint32_t target;
  std::atomic<std::int64_t> found{kNotFound};  // the node id holding `target`
  std::atomic<std::uint64_t> visited{0};
};

// One task: look at `node`, then hand each child to a task of its own, fire-and-forget.
void visit(Search* s, std::uint32_t node) {
  s->visited.fetch_add(1, std::memory_order_relaxed);
  if (s->tree->value[node] == s->target) {
    std::int64_t none = kNotFound;
    s->found.compare_exchange_strong(none, node);
    return;
  }
  if (s->found.load(std::memory_order_relaxed) != kNotFound) return;  // someone found it
  std::uint32_t first = s->tree->first_child[node];
  for (std::uint32_t c = first; c < first + s->tree->num_children[node]; ++c) {
    s->pool->submit(visit, s, c);  // the future is dropped: nobody is interested
  }
}

// Searches the whole tree for `target`; returns the node id or kNotFound.
std::int64_t search(ThreadPoolExecutor& pool, const Tree& tree, std::uint32_t target,
                    std::uint64_t* visited) {
  Search s{&pool, &tree, target};
  pool.submit(visit, &s, 0u);
  pool.join();  // every task, and every task they submitted, has finished
  *visited = s.visited.load();
  return s.found.load();
}

}  // namespace

int main(int argc, char** argv) {
  std::uint32_t n =
      argc > 1 ? static_cast<std::uint32_t>(std::strtoul(argv[1], nullptr, 10)) : 100000;
  std::size_t workers = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 4;
  if (n < 2 || workers == 0) {
    std::fprintf(stderr, "usage: %s [nodes >= 2] [workers >= 1]\n", argv[0]);
    return 2;
  }
  try {
    Tree tree = make_tree(n, /*seed=*/2023);
    std::uint32_t max_depth = 0;
    for (std::uint32_t d : tree.depth) max_depth = d > max_depth ? d : max_depth;
    std::printf("tree: %u nodes, depth %u; pool of %zu workers\n", n, max_depth, workers);

    auto pool = ThreadPoolExecutor::create(workers);
    bool ok = true;

    // 1. A value that is in the tree: the value of a node near the end of the breadth-first
    //    order, i.e. deep in the tree.
    const std::uint32_t want_node = n - n / 8;
    const std::uint32_t present = tree.value[want_node];
    std::uint64_t visited = 0;
    std::int64_t at = search(*pool, tree, present, &visited);
    if (at == want_node) {
      std::printf("found %u at node %lld, depth %u, after visiting %llu of %u nodes\n", present,
                  static_cast<long long>(at), tree.depth[at],
                  static_cast<unsigned long long>(visited), n);
    } else {
      std::printf("FAIL: %u should be at node %u, search returned %lld after visiting %llu nodes\n",
                  present, want_node, static_cast<long long>(at),
                  static_cast<unsigned long long>(visited));
      ok = false;
    }

    // 2. A value that is nowhere: the value of the first id past the tree (values are
    //    distinct), so every node must be visited.
    const std::uint32_t absent = value_of(n);
    at = search(*pool, tree, absent, &visited);
    if (at == kNotFound && visited == n) {
      std::printf("%u not found: visited all %llu nodes\n", absent,
                  static_cast<unsigned long long>(visited));
    } else {
      std::printf("FAIL: %u is absent, search returned %lld after visiting %llu of %u nodes\n",
                  absent, static_cast<long long>(at), static_cast<unsigned long long>(visited), n);
      ok = false;
    }

    std::printf("threads started: %zu\n", pool->num_threads());
    std::printf(ok ? "OK\n" : "FAILED\n");
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
