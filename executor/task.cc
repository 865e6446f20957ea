#include "executor/task.h"

#include "future/exceptions.h"

namespace betterconcurrent::detail {

void TaskPromiseBase::refuse_own(StateBase& awaited) const {
  if (driver_ != nullptr && &driver_->own_state() == &awaited) {
    throw InvalidStateError(
        "a task cannot co_await its own future: it would wait for itself forever");
  }
}

}  // namespace betterconcurrent::detail
