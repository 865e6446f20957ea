#include "testing/fork.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#include <cstddef>
#include <future>

// ThreadSanitizer's hook for default options; its name is the runtime's, hence reserved.
extern "C" const char* __tsan_default_options() {  // NOLINT(bugprone-reserved-identifier)
  return "die_after_fork=0";
}

namespace betterconcurrent::test_util {

std::optional<int> wait_child(pid_t pid, std::chrono::duration<double> timeout) {
  auto reaped = std::async(std::launch::async, [pid]() -> std::optional<int> {
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return std::nullopt;
    return status;
  });
  if (reaped.wait_for(timeout) == std::future_status::ready) return reaped.get();
  kill(pid, SIGKILL);
  reaped.wait();  // the kill makes waitpid() return
  return std::nullopt;
}

bool give_child_threads_fresh_ids() {
#if defined(__SANITIZE_THREAD__)
  pthread_attr_t attr;
  std::size_t stack_size = 0;
  if (pthread_getattr_default_np(&attr) != 0) return false;
  bool ok = pthread_attr_getstacksize(&attr, &stack_size) == 0 &&
            pthread_attr_setstacksize(&attr, stack_size + (1 << 20)) == 0 &&
            pthread_setattr_default_np(&attr) == 0;
  pthread_attr_destroy(&attr);
  return ok;
#else
  return true;
#endif
}

}  // namespace betterconcurrent::test_util
