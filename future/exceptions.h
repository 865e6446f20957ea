// The exception hierarchy of betterconcurrent, shaped like Python's concurrent.futures:
//
//   std::exception
//   ├── std::runtime_error
//   │   ├── Error                      concurrent.futures.Error
//   │   │   ├── CancelledError         concurrent.futures.CancelledError
//   │   │   ├── InvalidStateError      concurrent.futures.InvalidStateError
//   │   │   ├── UnobservedTaskErrors   (betterconcurrent) thrown by Executor::join()
//   │   │   └── DeadlockError          (betterconcurrent) tasks that wait only for each other
//   │   ├── TimeoutError               concurrent.futures.TimeoutError (builtins.TimeoutError)
//   │   └── BrokenExecutor             concurrent.futures.BrokenExecutor (a RuntimeError)
//   │       └── BrokenThreadPool       concurrent.futures.thread.BrokenThreadPool
//
// Python's RuntimeError, which the executors raise for `submit()` after `shutdown()`, maps to
// std::runtime_error itself.
//
// Every constructor may throw std::bad_alloc (it copies the message); every other member is
// nothrow.
#ifndef BETTERCONCURRENT_FUTURE_EXCEPTIONS_H_
#define BETTERCONCURRENT_FUTURE_EXCEPTIONS_H_

#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

namespace betterconcurrent {

// Base class of the errors that Python derives from concurrent.futures.Error.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Thrown by result() and exception() of a cancelled future.
class CancelledError : public Error {
 public:
  CancelledError() : Error("the future was cancelled") {}
  using Error::Error;
};

// Thrown by set_result() and set_exception() on a future that is already done, and by the
// operations that would wait forever on themselves (a task waiting on its own future).
class InvalidStateError : public Error {
 public:
  using Error::Error;
};

// Thrown when a timed wait runs out of time: result(), exception(), as_completed(), map(),
// Executor::join().
class TimeoutError : public std::runtime_error {
 public:
  TimeoutError() : std::runtime_error("timed out") {}
  using std::runtime_error::runtime_error;
};

// The executor can no longer run tasks. Every pending future of a broken executor carries it.
class BrokenExecutor : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A ThreadPoolExecutor whose initializer threw.
class BrokenThreadPool : public BrokenExecutor {
 public:
  using BrokenExecutor::BrokenExecutor;
};

// Thrown by Executor::join() when tasks failed and nobody looked at their futures. It carries
// every such exception, in the order the tasks ended (after their done callbacks); each is
// reported once.
class UnobservedTaskErrors : public Error {
 public:
  explicit UnobservedTaskErrors(std::vector<std::exception_ptr> exceptions);

  // The unobserved exceptions, each as thrown by its task. Never empty.
  const std::vector<std::exception_ptr>& exceptions() const noexcept { return exceptions_; }

 private:
  std::vector<std::exception_ptr> exceptions_;
};

// Suspended coroutine tasks of one executor that wait for each other's futures in a cycle (or
// for such tasks), so that none of them can ever resume. Each such task ends with this error
// in its future, without resuming, and Executor::join() throws it. The message names every
// task (by its future's repr) and what it waits for. See "Deadlocks" in executor/executor.h.
class DeadlockError : public Error {
 public:
  using Error::Error;
};

}  // namespace betterconcurrent

#endif  // BETTERCONCURRENT_FUTURE_EXCEPTIONS_H_
