#include "future/detail/state.h"

#include <cxxabi.h>

#include <cinttypes>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <typeinfo>

#include "future/exceptions.h"
#include "future/log.h"

namespace betterconcurrent::detail {
namespace {

// A timeout beyond this many seconds is treated as no timeout: the clock arithmetic would
// overflow, and nobody can observe the difference.
constexpr double kLongestTimeoutSeconds = 1e9;

// A blocking wait first polls this many times: completion is often a few microseconds away (a
// worker that is already running the task), and polling saves a sleep and a wake-up on both
// sides.
constexpr int kPollsBeforeBlocking = 1000;

thread_local StateBase* tls_current_task = nullptr;

// The demangled name of `type` ("int", "std::system_error"). Throws std::bad_alloc if the
// demangler runs out of memory.
std::string demangled_name(const std::type_info& type) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(
      abi::__cxa_demangle(type.name(), nullptr, nullptr, &status), &std::free);
  if (status == -1) throw std::bad_alloc();
  if (status != 0 || name == nullptr) return type.name();  // not a mangled name: keep it as is
  return name.get();
}

// The dynamic type of the exception `e` holds, or null if the runtime cannot tell (an exception
// thrown by another language). Rethrowing does not copy the exception object. Nothrow.
const std::type_info* exception_type(const std::exception_ptr& e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (...) {
    return abi::__cxa_current_exception_type();
  }
}

std::string repr(const StateBase& state, FutureState s) {
  char address[2 + 2 * sizeof(std::uintptr_t) + 1];
  std::snprintf(address, sizeof address, "0x%" PRIxPTR, reinterpret_cast<std::uintptr_t>(&state));
  std::string out = std::string("<Future at ") + address + " state=" + state_description(s);
  if (s == FutureState::kFinished) {
    // FINISHED was read with acquire, after the outcome was stored: reading it is race-free.
    if (const std::exception_ptr& e = state.stored_exception()) {
      const std::type_info* type = exception_type(e);
      out += " raised ";
      out += type != nullptr ? demangled_name(*type) : std::string("<unknown exception type>");
    } else {
      out += " returned ";
      out += demangled_name(state.result_type());
    }
  }
  out += '>';
  return out;
}

// A thread blocked in wait_done(): fired under the state's lock, it signals under its own mutex
// so that the waiter cannot return (and free this node) before the signal is complete.
struct BlockingWaiter : WaitNode {
  BlockingWaiter() noexcept : WaitNode(When::kDone, &BlockingWaiter::on_fire) {}

  static void on_fire(WaitNode* self, StateBase&) noexcept {
    auto* waiter = static_cast<BlockingWaiter*>(self);
    std::lock_guard lock(waiter->mu);
    waiter->fired = true;
    waiter->cv.notify_all();
  }

  std::mutex mu;
  std::condition_variable cv;
  bool fired = false;
};

}  // namespace

const char* state_name(FutureState s) noexcept {
  switch (s) {
    case FutureState::kPending:
      return "PENDING";
    case FutureState::kRunning:
      return "RUNNING";
    case FutureState::kCancelled:
      return "CANCELLED";
    case FutureState::kCancelledAndNotified:
      return "CANCELLED_AND_NOTIFIED";
    case FutureState::kFinished:
      return "FINISHED";
  }
  return "UNKNOWN";
}

const char* state_description(FutureState s) noexcept {
  switch (s) {
    case FutureState::kPending:
      return "pending";
    case FutureState::kRunning:
      return "running";
    case FutureState::kCancelled:
    case FutureState::kCancelledAndNotified:
      return "cancelled";
    case FutureState::kFinished:
      return "finished";
  }
  return "unknown";
}

Deadline Deadline::after(const Timeout& timeout) noexcept {
  Deadline d;
  if (!timeout || timeout->count() > kLongestTimeoutSeconds) return d;
  double seconds = timeout->count() > 0 ? timeout->count() : 0.0;
  d.at_ = Clock::now() +
          std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  return d;
}

StateBase::~StateBase() {
  CallbackNode* node = callbacks_;
  while (node != nullptr) {
    delete std::exchange(node, node->next);
  }
}

void StateBase::unlink_locked(WaitNode& node) noexcept {
  if (node.prev != nullptr) {
    node.prev->next = node.next;
  } else {
    listeners_ = node.next;
  }
  if (node.next != nullptr) node.next->prev = node.prev;
  node.prev = node.next = nullptr;
  node.linked = false;
}

bool StateBase::link(WaitNode& node) noexcept {
  std::lock_guard<Lock> guard(lock_);
  if (node.when == WaitNode::When::kDone ? done() : notified()) return false;
  node.prev = nullptr;
  node.next = listeners_;
  if (listeners_ != nullptr) listeners_->prev = &node;
  listeners_ = &node;
  node.linked = true;
  return true;
}

void StateBase::unlink(WaitNode& node) noexcept {
  std::lock_guard<Lock> guard(lock_);
  if (node.linked) unlink_locked(node);
}

void StateBase::run_callbacks(CallbackNode* newest_first) noexcept {
  CallbackNode* oldest_first = nullptr;
  while (newest_first != nullptr) {
    CallbackNode* next = newest_first->next;
    newest_first->next = oldest_first;
    oldest_first = newest_first;
    newest_first = next;
  }
  while (oldest_first != nullptr) {
    CallbackNode* next = oldest_first->next;
    oldest_first->run(*this);
    delete oldest_first;
    oldest_first = next;
  }
}

void StateBase::add_callback(std::unique_ptr<CallbackNode> node) noexcept {
  {
    std::lock_guard<Lock> guard(lock_);
    if (!done()) {
      node->next = callbacks_;
      callbacks_ = node.release();
      return;
    }
  }
  node->run(*this);
}

bool StateBase::cancel() noexcept {
  CallbackNode* callbacks;
  {
    std::lock_guard<Lock> guard(lock_);
    FutureState s = state();
    if (s == FutureState::kRunning || s == FutureState::kFinished) return false;
    if (s != FutureState::kPending) return true;  // already cancelled
    state_.store(FutureState::kCancelled, std::memory_order_release);
    fire_listeners([](const WaitNode& n) { return n.when == WaitNode::When::kDone; });
    callbacks = std::exchange(callbacks_, nullptr);
  }
  run_callbacks(callbacks);
  return true;
}

StateBase::StartResult StateBase::try_start() noexcept {
  std::lock_guard<Lock> guard(lock_);
  switch (state()) {
    case FutureState::kPending:
      state_.store(FutureState::kRunning, std::memory_order_release);
      return StartResult::kStarted;
    case FutureState::kCancelled:
      state_.store(FutureState::kCancelledAndNotified, std::memory_order_release);
      fire_listeners([](const WaitNode& n) { return n.when == WaitNode::When::kNotified; });
      return StartResult::kCancelled;
    default:
      return StartResult::kUnexpected;
  }
}

bool StateBase::set_running_or_notify_cancel() {
  StartResult r = try_start();
  if (r != StartResult::kUnexpected) return r == StartResult::kStarted;
  // Only PENDING and CANCELLED may be started; anything else is a caller's bug.
  std::string message = std::string("Future in unexpected state: ") + state_name(state());
  log(LogLevel::kCritical, message, nullptr);
  throw std::runtime_error(message +
                           "; set_running_or_notify_cancel() must be called once, on a "
                           "PENDING or CANCELLED future");
}

bool StateBase::try_set_exception(std::exception_ptr e) noexcept {
  return finish([&](std::exception_ptr& slot) noexcept { slot = std::move(e); });
}

void StateBase::set_exception(std::exception_ptr e) {
  if (!e) {
    throw std::invalid_argument(
        "set_exception() needs a non-null exception_ptr; use set_result() to succeed");
  }
  if (!try_set_exception(std::move(e))) throw_already_done(*this);
}

std::string repr(const StateBase& state) { return repr(state, state.state()); }

void throw_already_done(const StateBase& state) {
  // One snapshot for both names (a CANCELLED state may become CANCELLED_AND_NOTIFIED meanwhile).
  FutureState s = state.state();
  throw InvalidStateError(std::string(state_name(s)) + ": " + repr(state, s) +
                          "; a future's outcome can be set only once");
}

void State<void>::set_result() {
  if (!try_set_result()) throw_already_done(*this);
}

bool StateBase::wait_done(Deadline deadline) {
  if (done()) return true;
  if (deadline.is_never() && current_task_state() == this) {
    throw InvalidStateError(
        "a task cannot wait for its own future without a timeout: it would wait forever");
  }
  for (int poll = 0; poll < kPollsBeforeBlocking && !deadline.passed(); ++poll) {
    if (done()) return true;
    cpu_relax();
  }
  BlockingWaiter waiter;
  if (!link(waiter)) return true;
  {
    std::unique_lock lock(waiter.mu);
    if (deadline.is_never()) {
      waiter.cv.wait(lock, [&] { return waiter.fired; });
      return true;
    }
    if (waiter.cv.wait_until(lock, deadline.at(), [&] { return waiter.fired; })) return true;
  }
  unlink(waiter);  // not under waiter.mu: a firing thread holds our state's lock, then waiter.mu
  return done();
}

const std::exception_ptr& StateBase::wait_outcome(const Timeout& timeout) {
  if (!wait_done(Deadline::after(timeout))) throw TimeoutError();
  if (cancelled()) throw CancelledError();
  if (exception_) mark_observed();
  return exception_;
}

StateBase* current_task_state() noexcept { return tls_current_task; }

CurrentTaskScope::CurrentTaskScope(StateBase* state) noexcept
    : previous_(std::exchange(tls_current_task, state)) {}

CurrentTaskScope::~CurrentTaskScope() { tls_current_task = previous_; }

}  // namespace betterconcurrent::detail
