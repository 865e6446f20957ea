// What the README's snippets take for granted: the library's headers and a sink for values.
#ifndef BETTERCONCURRENT_TOOLS_README_PRELUDE_H_
#define BETTERCONCURRENT_TOOLS_README_PRELUDE_H_

#include <chrono>
#include <memory>
#include <vector>

#include "executor/task.h"
#include "executor/thread_pool_executor.h"
#include "future/exceptions.h"
#include "future/future.h"
#include "future/wait.h"

namespace readme {
template <typename T>
void use(const T&) {}
}  // namespace readme

#endif  // BETTERCONCURRENT_TOOLS_README_PRELUDE_H_
