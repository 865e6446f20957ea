#include "conformance/replay.h"

#include <dirent.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <utility>

namespace betterconcurrent::replay {

Future<int> exception_future() {
  Future<int> f;
  f.set_exception(std::make_exception_ptr(std::system_error(std::error_code())));
  return f;
}

Future<int> successful_future() {
  Future<int> f;
  f.set_result(42);
  return f;
}

namespace {
// Whether task `tid` of this process has begun to exit: the PF_EXITING bit of the flags, the
// ninth field of /proc/self/task/<tid>/stat. The kernel sets it before it wakes pthread_join(),
// but lists the task until a moment after, so a thread that was just joined can still be there.
bool exiting(const char* tid) {
  std::ifstream stat(std::string("/proc/self/task/") + tid + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;  // already gone
  std::size_t close = line.rfind(')');
  if (close == std::string::npos) return false;
  char state = 0;
  unsigned long flags = 0;
  if (std::sscanf(line.c_str() + close + 1, " %c %*d %*d %*d %*d %*d %lu", &state, &flags) != 2) {
    return false;
  }
  constexpr unsigned long kPfExiting = 0x4;
  return (flags & kPfExiting) != 0;
}

// The kernel's count of this process's tasks ("Threads:" in /proc/self/status), exiting ones
// included; -1 if unreadable.
long tasks_in_status() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stol(line.substr(8));
  }
  return -1;
}
}  // namespace

std::size_t thread_count() {
  // Listing /proc/self/task can skip a live thread when another task leaves the list during
  // the listing; such a listing disagrees with the kernel's count, taken before and after.
  std::size_t live = 0;
  for (int attempt = 0; attempt < 1000; ++attempt) {
    long before = tasks_in_status();
    long listed = 0;
    live = 0;
    DIR* dir = opendir("/proc/self/task");
    if (dir == nullptr) return 0;
    while (dirent* entry = readdir(dir)) {
      if (entry->d_name[0] == '.') continue;
      ++listed;
      if (!exiting(entry->d_name)) ++live;
    }
    closedir(dir);
    if (before == listed && tasks_in_status() == listed) break;
  }
  return live;
}

pid_t current_tid() { return static_cast<pid_t>(syscall(SYS_gettid)); }

namespace {
// The scheduling state of thread `tid` of this process ('R' running, 'S' asleep, ...), from
// /proc/self/task/<tid>/stat, whose third field follows the parenthesised thread name.
char thread_state(pid_t tid) {
  std::ifstream stat("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string line;
  std::getline(stat, line);
  std::size_t close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) return '?';
  return line[close + 2];
}
}  // namespace

bool blocked_in_wait(pid_t tid, std::chrono::duration<double> timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    char state = thread_state(tid);
    if (state == 'S' || state == 'D') return true;
    std::this_thread::yield();
  }
  return false;
}

ReleaseWhenBlocked::ReleaseWhenBlocked(Event& gate, pid_t tid)
    : thread_([&gate, tid] {
        EXPECT_TRUE(blocked_in_wait(tid)) << "the waiting thread never blocked";
        gate.set();
      }) {}

ReleaseWhenBlocked::~ReleaseWhenBlocked() { thread_.join(); }

void BaseTestCase::SetUp() {
  // A sanitizer runtime may start a thread of its own with the first thread the process
  // starts (TSan does); start one first, so that it is counted here rather than blamed later.
  static const bool runtime_threads_started = [] {
    std::thread([] {}).join();
    return true;
  }();
  static_cast<void>(runtime_threads_started);
  threads_at_start_ = thread_count();
}

void BaseTestCase::TearDown() {
  EXPECT_EQ(thread_count(), threads_at_start_) << "the test left threads behind";
}

void ThreadPoolMixin::SetUp() {
  BaseTestCase::SetUp();
  ThreadPoolExecutor::Options opts = options();
  opts.max_workers = worker_count();
  executor = ThreadPoolExecutor::create(std::move(opts));
}

void ThreadPoolMixin::TearDown() {
  gate.set();
  shutdown_bounded(std::move(executor));
  BaseTestCase::TearDown();
}

void shutdown_bounded(std::shared_ptr<ThreadPoolExecutor> pool,
                      std::chrono::duration<double> timeout) {
  if (!pool) return;
  auto finished = std::make_shared<std::promise<void>>();
  std::future<void> done = finished->get_future();
  std::thread closer([pool = std::move(pool), finished]() mutable {
    pool->shutdown(/*wait=*/true);
    pool.reset();
    finished->set_value();
  });
  if (done.wait_for(timeout) == std::future_status::ready) {
    closer.join();
  } else {
    closer.detach();
    ADD_FAILURE() << "shutdown(wait=true) did not return within the bound: a hang";
  }
}

}  // namespace betterconcurrent::replay
