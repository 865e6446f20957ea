// _betterconcurrent: the C++ port exposed to Python. The package python/betterconcurrent wraps
// it under concurrent.futures' names.
//
// GIL rules, which every function below follows:
//   - No C++ wait happens with the GIL held: result(), exception(), wait(), as_completed(),
//     map()'s iteration, shutdown(), join() and submit() release it first.
//   - Python objects are touched only with the GIL held. Objects that C++ carries (results,
//     exceptions, callables, arguments) are PyRefs, which take the GIL when they are copied or
//     destroyed on whatever thread that happens.
//   - Worker threads take the GIL only while they run Python code (a task, one step of a
//     generator task, a done callback, the initializer, a log record).
//   - A generator task (drive_generator below) is a C++ coroutine: it holds the GIL only within
//     a step, never across a co_await, since it may resume on another thread.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cctype>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "executor/task.h"
#include "executor/thread_pool_executor.h"
#include "future/exceptions.h"
#include "future/future.h"
#include "future/log.h"
#include "future/wait.h"
#include "python/py_ref.h"

namespace py = pybind11;

namespace betterconcurrent::python {
namespace {

using PyFutureHandle = Future<PyRef>;

// The Python classes that C++ exceptions become. Set once at import; never released (they live
// as long as the interpreter).
struct Classes {
  PyObject* error = nullptr;               // concurrent.futures.Error
  PyObject* cancelled = nullptr;           // concurrent.futures.CancelledError
  PyObject* invalid_state = nullptr;       // concurrent.futures.InvalidStateError
  PyObject* broken_executor = nullptr;     // concurrent.futures.BrokenExecutor
  PyObject* broken_thread_pool = nullptr;  // concurrent.futures.thread.BrokenThreadPool
  PyObject* unobserved = nullptr;          // betterconcurrent.UnobservedTaskErrors
  PyObject* deadlock = nullptr;            // betterconcurrent.DeadlockError
  PyObject* done_and_not_done = nullptr;   // concurrent.futures.DoneAndNotDoneFutures
};
Classes classes;

// The Python objects of the futures that a DeadlockError may name, by their C++ state: the
// futures of generator tasks (made by submit) and the futures that generator tasks wait for
// (named when the wait request is made). The core names a future by its state's address; Python's
// repr by the object's id(). An entry lives as long as its object (see FutureName). Used with
// the GIL held; never freed (PyFuture objects may be destroyed until the interpreter ends).
using PythonObjects = std::unordered_map<const detail::StateBase*, PyObject*>;
PythonObjects& python_objects() {
  static PythonObjects* objects = new PythonObjects();
  return *objects;
}

// The message of a DeadlockError with each future named as Python's repr names it: in each
// "<Future at 0x..." of the core's message, the state's address becomes the id() of the
// future's Python object, if it still has one. The GIL is held. May throw std::bad_alloc.
std::string with_python_addresses(const std::string& message) {
  static constexpr char kPrefix[] = "<Future at 0x";
  static constexpr std::size_t kPrefixLength = sizeof kPrefix - 1;
  std::string out;
  std::size_t from = 0;
  for (std::size_t at; (at = message.find(kPrefix, from)) != std::string::npos;) {
    std::size_t end = at + kPrefixLength;
    while (end < message.size() && std::isxdigit(static_cast<unsigned char>(message[end]))) ++end;
    out.append(message, from, end - from);
    from = end;
    const std::string digits = message.substr(at + kPrefixLength, end - at - kPrefixLength);
    if (digits.empty()) continue;
    const auto* state = reinterpret_cast<const detail::StateBase*>(
        static_cast<std::uintptr_t>(std::strtoull(digits.c_str(), nullptr, 16)));
    const auto found = python_objects().find(state);
    if (found == python_objects().end()) continue;
    char address[2 * sizeof(std::uintptr_t) + 1];
    std::snprintf(address, sizeof address, "%" PRIxPTR,
                  reinterpret_cast<std::uintptr_t>(found->second));
    out.resize(out.size() - digits.size());
    out += address;
  }
  out.append(message, from, std::string::npos);
  return out;
}

// Calls cls(message), or cls() for an empty message. Returns a new reference, or null with a
// Python error set.
PyObject* make_exception(PyObject* cls, const std::string& message) {
  if (message.empty()) return PyObject_CallNoArgs(cls);
  return PyObject_CallFunction(cls, "s", message.c_str());
}

// The Python exception object for an exception that C++ carries: the very object for a PyError,
// an instance of the matching concurrent.futures class for the port's exceptions. The GIL is
// held. Throws py::error_already_set if making the object fails.
py::object exception_object(const std::exception_ptr& e) {
  PyObject* made = nullptr;
  try {
    std::rethrow_exception(e);
  } catch (const PyError& error) {
    return py::reinterpret_borrow<py::object>(error.exception().get());
  } catch (const CancelledError&) {
    made = make_exception(classes.cancelled, "");
  } catch (const InvalidStateError& error) {
    made = make_exception(classes.invalid_state, error.what());
  } catch (const UnobservedTaskErrors& error) {
    made = make_exception(classes.unobserved, error.what());
    if (made != nullptr) {
      py::list exceptions;
      for (const std::exception_ptr& each : error.exceptions()) {
        exceptions.append(exception_object(each));
      }
      if (PyObject_SetAttrString(made, "exceptions", exceptions.ptr()) != 0) Py_CLEAR(made);
    }
  } catch (const DeadlockError& error) {
    made = make_exception(classes.deadlock, with_python_addresses(error.what()));
  } catch (const Error& error) {
    made = make_exception(classes.error, error.what());
  } catch (const TimeoutError& error) {
    // Python raises TimeoutError() without a message where the port says "timed out".
    const std::string message = error.what();
    made = make_exception(PyExc_TimeoutError, message == "timed out" ? "" : message);
  } catch (const BrokenThreadPool& error) {
    made = make_exception(classes.broken_thread_pool, error.what());
  } catch (const BrokenExecutor& error) {
    made = make_exception(classes.broken_executor, error.what());
  } catch (const std::invalid_argument& error) {
    made = make_exception(PyExc_ValueError, error.what());
  } catch (const std::bad_alloc&) {
    made = make_exception(PyExc_MemoryError, "");
  } catch (const std::exception& error) {
    made = make_exception(PyExc_RuntimeError, error.what());
  } catch (...) {
    made = make_exception(PyExc_SystemError, "unknown C++ exception");
  }
  if (made == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(made);
}

// Raises `e` (a Python exception object) in this thread.
void set_python_error(const py::object& e) {
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(e.ptr())), e.ptr());
}

// pybind11's translator for the port's exceptions and for carried Python exceptions. Anything
// else goes on to pybind11's own translators (std::runtime_error -> RuntimeError, ...).
void translate(std::exception_ptr p) {
  if (!p) return;
  try {
    std::rethrow_exception(p);
  } catch (const PyError& error) {
    error.restore();
  } catch (const Error&) {
    set_python_error(exception_object(p));
  } catch (const TimeoutError&) {
    set_python_error(exception_object(p));
  } catch (const BrokenExecutor&) {
    set_python_error(exception_object(p));
  }
}

// Python's timeout argument: None waits forever, a number is seconds.
Timeout to_timeout(const py::object& timeout) {
  if (timeout.is_none()) return std::nullopt;
  return std::chrono::duration<double>(timeout.cast<double>());
}

using detail::state_description;
using detail::state_name;

// Sends a record to logging.getLogger("concurrent.futures"). `exc_info` may be None.
void log_to_python(int level, const char* message, const py::object& argument,
                   const py::object& exc_info) {
  py::object logger = py::module_::import("logging").attr("getLogger")("concurrent.futures");
  if (argument.is_none()) {
    logger.attr("log")(level, message, py::arg("exc_info") = exc_info);
  } else {
    logger.attr("log")(level, message, argument, py::arg("exc_info") = exc_info);
  }
}

// The port's log handler: records go to Python's logging. Runs on any thread; never throws.
void log_handler(const LogRecord& record) {
  if (!may_take_gil()) return;
  Gil gil;
  PyObject* type = nullptr;
  PyObject* value = nullptr;
  PyObject* traceback = nullptr;
  PyErr_Fetch(&type, &value, &traceback);  // keep whatever error this thread has
  try {
    py::object exc_info =
        record.exception ? exception_object(record.exception) : py::object(py::none());
    const int level = record.level == LogLevel::kCritical ? 50 : 40;  // logging.CRITICAL, ERROR
    log_to_python(level, record.message.c_str(), py::none(), exc_info);
  } catch (...) {
    // Logging itself failed; there is nobody to tell.
  }
  PyErr_Restore(type, value, traceback);
}

// A Python callable and its arguments, run by a worker thread with the GIL taken.
class PyCall {
 public:
  PyCall(PyRef fn, PyRef args, PyRef kwargs)
      : fn_(std::move(fn)), args_(std::move(args)), kwargs_(std::move(kwargs)) {}

  PyRef operator()() {
    Gil gil;
    PyObject* result = PyObject_Call(fn_.get(), args_.get(), kwargs_.get());
    std::optional<PyError> error;
    if (result == nullptr) error.emplace(PyError::fetch());
    // Like CPython's worker, the callable and its arguments die with the run.
    fn_.reset();
    args_.reset();
    kwargs_.reset();
    if (error) throw std::move(*error);
    return PyRef::steal(result);
  }

 private:
  PyRef fn_;
  PyRef args_;
  PyRef kwargs_;
};

// Runs a done callback `fn(future)`. Logs what it raises, as Python's Future does.
void run_done_callback(const PyRef& fn, const PyRef& future) noexcept {
  if (!may_take_gil()) return;
  Gil gil;
  PyObject* result = PyObject_CallOneArg(fn.get(), future.get());
  if (result != nullptr) {
    Py_DECREF(result);
    return;
  }
  PyError error = PyError::fetch();
  try {
    log_to_python(40, "exception calling callback for %r",
                  py::reinterpret_borrow<py::object>(future.get()),
                  py::reinterpret_borrow<py::object>(error.exception().get()));
  } catch (const py::error_already_set&) {
  }
  PyErr_Clear();
}

// The entry of one Python future object in python_objects(), if it has one: removed when the
// object is destroyed. Belongs to that object, so copies of a PyFuture do not take it along.
// Used with the GIL held.
class FutureName {
 public:
  FutureName() = default;
  FutureName(const FutureName&) noexcept {}
  FutureName& operator=(const FutureName&) noexcept { return *this; }
  ~FutureName() {
    if (object_ == nullptr) return;
    const auto found = python_objects().find(state_);
    if (found != python_objects().end() && found->second == object_) python_objects().erase(found);
  }

  // Enters `object`, the Python object of the future whose state is `state`, unless it is
  // entered already (or another object of that state is: the first one keeps the name). May
  // throw std::bad_alloc.
  void enter(const detail::StateBase* state, PyObject* object) {
    if (object_ != nullptr) return;
    if (python_objects().emplace(state, object).second) {
      state_ = state;
      object_ = object;
    }
  }

 private:
  const detail::StateBase* state_ = nullptr;
  PyObject* object_ = nullptr;  // borrowed: this is part of it
};

// betterconcurrent.Future: a C++ Future<PyRef>.
//
// CPython's Future keeps its state in plain attributes, and code (CPython's own test suite among
// it) builds futures in a chosen state by assigning them: `f._state = FINISHED`, then
// `f._exception = ...` and `f._result = ...`, possibly inside `with f._condition:` followed by
// `f._condition.notify_all()`. Here those assignments are staged, and committed to the C++
// future through its own transitions (set_running_or_notify_cancel, cancel, set_result,
// set_exception) the next time the future is used: by any method, by reading `_state`, or by
// leaving `_condition` / notifying it. A transition the C++ state machine does not have (say
// FINISHED back to PENDING) raises RuntimeError when it is committed.
struct PyFuture {
  PyFuture() = default;  // Python's Future(): a new PENDING future
  explicit PyFuture(PyFutureHandle handle) : f(std::move(handle)) {}

  PyFutureHandle f;
  FutureName name;  // set for the futures a DeadlockError may name (see python_objects())
  std::optional<std::string> staged_state;
  py::object staged_result = py::none();
  py::object staged_exception = py::none();

  // Applies the staged assignments, then returns the handle. The GIL is held.
  const PyFutureHandle& committed();
};

const PyFutureHandle& PyFuture::committed() {
  if (!staged_state) return f;
  const std::string target = std::move(*staged_state);
  staged_state.reset();
  const py::object result = std::exchange(staged_result, py::none());
  const py::object exception = std::exchange(staged_exception, py::none());
  const std::string current = state_name(f.state());
  if (target == current) return f;
  const bool pending = current == "PENDING";
  if (target == "RUNNING" && pending) {
    f.set_running_or_notify_cancel();
  } else if (target == "CANCELLED" && pending) {
    f.cancel();
  } else if (target == "CANCELLED_AND_NOTIFIED" && (pending || current == "CANCELLED")) {
    f.cancel();
    f.set_running_or_notify_cancel();
  } else if (target == "FINISHED" && (pending || current == "RUNNING")) {
    if (!exception.is_none()) {
      f.set_exception(std::make_exception_ptr(PyError(PyRef::borrow(exception.ptr()))));
    } else {
      f.set_result(PyRef::borrow(result.ptr()));
    }
  } else {
    throw std::runtime_error("betterconcurrent.Future: the C++ future cannot move from " + current +
                             " to " + target);
  }
  return f;
}

const PyFutureHandle& handle_of(const py::handle& o) { return o.cast<PyFuture&>().committed(); }

// Enters the future object `o` in python_objects(), so that a DeadlockError names it by its
// repr. The GIL is held.
void name_future(const py::handle& o) {
  PyFuture& future = o.cast<PyFuture&>();
  future.name.enter(&future.f.state_base(), o.ptr());
}

// What `_condition` returns: committing staged assignments on exit and on notify. It is not a
// lock (the C++ future has its own); it exists for code that sets the private attributes.
class PyFutureCondition {
 public:
  explicit PyFutureCondition(py::object future) : future_(std::move(future)) {}
  void commit() const { handle_of(future_); }

 private:
  py::object future_;
};

py::str future_repr(const py::object& self) {
  const PyFutureHandle& f = handle_of(self);
  const FutureState s = f.state();
  std::string text = "<" + py::str(py::type::of(self).attr("__name__")).cast<std::string>() +
                     " at " +
                     py::str(py::module_::import("builtins")
                                 .attr("hex")(py::module_::import("builtins").attr("id")(self)))
                         .cast<std::string>() +
                     " state=" + state_description(s);
  if (s == FutureState::kFinished) {
    const detail::StateBase& base = f.state_base();
    if (const std::exception_ptr& e = base.stored_exception()) {
      text += " raised ";
      text += _PyType_Name(Py_TYPE(exception_object(e).ptr()));
    } else {
      const auto& typed = static_cast<const detail::State<PyRef>&>(base);
      text += " returned ";
      text += _PyType_Name(Py_TYPE(typed.value().get()));
    }
  }
  return py::str(text + ">");
}

// Python's InvalidStateError for set_result()/set_exception() on a done future:
// "FINISHED: <Future at 0x... state=finished returned int>".
[[noreturn]] void raise_already_done(const py::object& self) {
  const PyFutureHandle& f = handle_of(self);
  const std::string message =
      std::string(state_name(f.state())) + ": " + future_repr(self).cast<std::string>();
  PyObject* e = make_exception(classes.invalid_state, message);
  if (e != nullptr) {
    set_python_error(py::reinterpret_steal<py::object>(e));
  }
  throw py::error_already_set();
}

// wait() and as_completed() take Python futures and must hand back the same objects: this maps
// each distinct future's state to its first Python object.
struct FutureSet {
  explicit FutureSet(const py::iterable& fs) {
    for (py::handle o : fs) {
      const PyFutureHandle& f = handle_of(o);
      if (objects.emplace(&f.state_base(), py::reinterpret_borrow<py::object>(o)).second) {
        handles.push_back(f);
      }
    }
  }
  py::object object_of(const AnyFuture& f) const { return objects.at(&f.state_base()); }

  std::vector<PyFutureHandle> handles;
  std::unordered_map<const detail::StateBase*, py::object> objects;
};

ReturnWhen to_return_when(const std::string& s) {
  if (s == "FIRST_COMPLETED") return FIRST_COMPLETED;
  if (s == "FIRST_EXCEPTION") return FIRST_EXCEPTION;
  if (s == "ALL_COMPLETED") return ALL_COMPLETED;
  throw py::value_error("Invalid return condition: " + s);
}

// wait()'s answer as Python's DoneAndNotDoneFutures of the objects in `set`. The GIL is held.
py::object done_and_not_done(const FutureSet& set,
                             const DoneAndNotDoneFutures<PyFutureHandle>& result) {
  py::set done;
  py::set not_done;
  for (const PyFutureHandle& f : result.done) done.add(set.object_of(f));
  for (const PyFutureHandle& f : result.not_done) not_done.add(set.object_of(f));
  return py::reinterpret_borrow<py::object>(classes.done_and_not_done)(done, not_done);
}

// wait() on the futures of `set`, with the GIL released while it waits. The GIL is held.
py::object wait_on(const FutureSet& set, const Timeout& timeout, ReturnWhen when) {
  DoneAndNotDoneFutures<PyFutureHandle> result;
  {
    py::gil_scoped_release release;
    result = wait(set.handles, timeout, when);
  }
  return done_and_not_done(set, result);
}

py::object py_wait(const py::iterable& fs, const py::object& timeout,
                   const std::string& return_when) {
  FutureSet set(fs);
  const Timeout t = to_timeout(timeout);
  const ReturnWhen when = to_return_when(return_when);
  return wait_on(set, t, when);
}

// The wait requests that the generators of Future.yield_until_done() and
// betterconcurrent.yield_until_done(fs, ...) yield. The driver of generator tasks
// (drive_generator) recognises them and waits cooperatively. When something else iterates the
// generator (next() outside a task, a plain task looping over it), the request is just a value
// it passes over; the generator then finishes the wait itself, blocking like wait() (finish()
// and outcome() below), so that its promise (done() is true, or wait()'s answer) holds anyway.

// What Future.yield_until_done() yields.
struct PyFutureWait {
  explicit PyFutureWait(const py::object& future) : f(handle_of(future)) { name_future(future); }

  // Returns once the future is done: at once after the driver's wait; otherwise blocks like
  // wait([f]) (InvalidStateError in a task that would wait for its own future). The GIL is held.
  void finish() const {
    if (f.done()) return;
    py::gil_scoped_release release;
    wait(std::vector<PyFutureHandle>{f});
  }

  PyFutureHandle f;
};

// What betterconcurrent.yield_until_done(fs, timeout, return_when) yields. Made (and
// return_when validated) when yield_until_done() is called, as wait() validates its arguments.
struct PyWaitAll {
  PyWaitAll(const py::iterable& fs, const py::object& timeout, const std::string& return_when)
      : set(fs), timeout(to_timeout(timeout)), when(to_return_when(return_when)) {
    for (const auto& [state, object] : set.objects) name_future(object);
  }

  // The driver's answer if it waited, else wait()'s (counting the timeout from now). The GIL is
  // held.
  py::object outcome() {
    if (!answer.is_none()) return std::exchange(answer, py::none());
    return wait_on(set, timeout, when);
  }

  FutureSet set;
  Timeout timeout;
  ReturnWhen when;
  py::object answer = py::none();  // set by the driver once its cooperative wait returns
};

// Generator tasks: submit(fn) where inspect.isgeneratorfunction(fn) (the package decides, as the
// original betterconcurrent does) runs drive_generator, a C++ coroutine task (Task<PyRef>) that
// steps the generator fn(*args, **kwargs) with the GIL held and waits, with the GIL released,
// wherever the generator yields a wait request:
//   - PyFutureWait (from `yield from f.yield_until_done()`): co_await f.yield_until_done(), then
//     send None;
//   - PyWaitAll (from `yield from betterconcurrent.yield_until_done(fs, ...)`):
//     co_await yield_until_done(fs, timeout, return_when), then send the DoneAndNotDoneFutures
//     (also left on the request, which the generator returns);
//   - anything else: the generator is closed and the task fails with TypeError.
// If the wait itself throws (InvalidStateError when a task waits for its own future), the
// exception is thrown into the generator at its yield, where it can be caught. The generator's
// return value is the future's result; what it raises is the future's exception (a PyError,
// as for plain tasks). The GIL is never held across a co_await: every Gil below lives in a
// block that ends before the next suspension.

// What one step of a generator produced: the value it yielded, or the value it returned.
struct GeneratorStep {
  bool returned = false;
  PyRef value;
};

// Resumes `gen` by sending `value` into it (PyIter_Send), or, if `thrown` is not null, by
// throwing `thrown` into it (gen.throw). Throws PyError with what the generator raised. The GIL
// is held.
GeneratorStep resume_generator(PyObject* gen, PyObject* value, PyObject* thrown) {
  PyObject* out = nullptr;
  if (thrown == nullptr) {
    switch (PyIter_Send(gen, value != nullptr ? value : Py_None, &out)) {
      case PYGEN_RETURN:
        return {true, PyRef::steal(out)};
      case PYGEN_NEXT:
        return {false, PyRef::steal(out)};
      case PYGEN_ERROR:
        break;
    }
    throw PyError::fetch();
  }
  out = PyObject_CallMethod(gen, "throw", "(O)", thrown);
  if (out != nullptr) return {false, PyRef::steal(out)};
  if (!PyErr_ExceptionMatches(PyExc_StopIteration)) throw PyError::fetch();
  // The generator returned: gen.throw() raised StopIteration(value).
  PyError stop = PyError::fetch();
  PyObject* returned = PyObject_GetAttrString(stop.exception().get(), "value");
  if (returned == nullptr) throw PyError::fetch();
  return {true, PyRef::steal(returned)};
}

// The Python exception object for a C++ exception, as a PyRef; if making it fails, the error
// that failure raised. The GIL is held.
PyRef exception_ref(const std::exception_ptr& e) {
  try {
    return PyRef::borrow(exception_object(e).ptr());
  } catch (py::error_already_set& failed) {
    return PyRef::borrow(failed.value().ptr());
  }
}

// The failure of a generator that yielded `yielded`, which is not a wait request: closes the
// generator and returns the TypeError to fail the task with (or, if close() raised, what it
// raised, with the TypeError as its __context__). The GIL is held.
PyError bad_yield(PyObject* gen, PyObject* yielded) {
  PyObject* error = PyObject_CallFunction(
      PyExc_TypeError, "s",
      ("a generator task yielded a value of type '" + std::string(_PyType_Name(Py_TYPE(yielded))) +
       "', which is not a wait request: wait with `yield from fut.yield_until_done()` or "
       "`yield from betterconcurrent.yield_until_done(fs)`, and return the task's result "
       "with `return`")
          .c_str());
  if (error == nullptr) return PyError::fetch();
  PyRef type_error = PyRef::steal(error);
  PyObject* closed = PyObject_CallMethod(gen, "close", nullptr);
  if (closed != nullptr) {
    Py_DECREF(closed);
    return PyError(std::move(type_error));
  }
  PyError close_error = PyError::fetch();
  PyException_SetContext(close_error.exception().get(), type_error.new_reference());
  return close_error;
}

// Thrown where a generator task would have to take the GIL while the interpreter finalizes
// (only the finalizing thread may): the task fails without running Python code.
[[noreturn]] void throw_finalizing() {
  throw std::runtime_error("the Python interpreter is finalizing: a generator task cannot resume");
}

// Closes a generator task's generator if the coroutine is destroyed while it waits: the task was
// ended without being resumed, because join() or shutdown(wait=True) found it deadlocked
// (executor/deadlock.h). That happens on the thread that called them, which waits without the
// GIL. close() raises GeneratorExit at the generator's `yield from`, so its `finally` blocks
// and `with` exits run, as for any generator abandoned mid-way; the task's future already holds
// its DeadlockError, so what they raise cannot change it and goes to sys.unraisablehook (as
// when Python finalizes a generator). Closing now, rather than when the last reference goes,
// also covers a generator that something else keeps alive. A task ended while the interpreter
// finalizes leaves its generator alone (see PyRef).
class CloseIfEnded {
 public:
  explicit CloseIfEnded(const PyRef& gen) noexcept : gen_(gen) {}
  CloseIfEnded(const CloseIfEnded&) = delete;
  CloseIfEnded& operator=(const CloseIfEnded&) = delete;
  ~CloseIfEnded() {
    if (!waiting_ || !gen_ || !may_take_gil()) return;
    Gil gil;
    PyObject* type = nullptr;
    PyObject* value = nullptr;
    PyObject* traceback = nullptr;
    PyErr_Fetch(&type, &value, &traceback);  // keep whatever error this thread has
    PyObject* closed = PyObject_CallMethod(gen_.get(), "close", nullptr);
    if (closed != nullptr) {
      Py_DECREF(closed);
    } else {
      PyErr_WriteUnraisable(gen_.get());
    }
    PyErr_Restore(type, value, traceback);
  }

  // Around each co_await: whether the coroutine is suspended there.
  void set_waiting(bool waiting) noexcept { waiting_ = waiting; }

 private:
  const PyRef& gen_;
  bool waiting_ = false;
};

Task<PyRef> drive_generator(PyRef fn, PyRef args, PyRef kwargs) {
  PyRef gen;
  {
    if (!may_take_gil()) throw_finalizing();
    Gil gil;
    PyObject* made = PyObject_Call(fn.get(), args.get(), kwargs.get());
    // As for plain tasks, the callable and its arguments die once they have run.
    fn.reset();
    args.reset();
    kwargs.reset();
    if (made == nullptr) throw PyError::fetch();
    gen = PyRef::steal(made);
    // Not a generator after all (inspect.isgeneratorfunction is a guess about what a call
    // returns): the object is the result, as for a plain task.
    if (!PyGen_Check(made)) co_return std::move(gen);
  }
  CloseIfEnded close_if_ended(gen);  // destroyed before `gen`
  PyRef to_send;                     // sent at the next step (null: None)
  std::exception_ptr to_throw;       // thrown into the generator at the next step instead
  while (true) {
    std::optional<PyFutureHandle> future;  // the request: one future...
    PyRef wait_all;                        // ...or a PyWaitAll
    std::vector<PyFutureHandle> futures;   // its futures, timeout and return_when
    Timeout timeout;
    ReturnWhen when = ALL_COMPLETED;
    {
      if (!may_take_gil()) throw_finalizing();
      Gil gil;
      try {
        PyRef thrown;
        if (to_throw) thrown = exception_ref(std::exchange(to_throw, nullptr));
        GeneratorStep step = resume_generator(gen.get(), to_send.get(), thrown.get());
        to_send.reset();
        if (step.returned) {
          gen.reset();
          co_return std::move(step.value);
        }
        py::handle yielded(step.value.get());
        if (py::isinstance<PyFutureWait>(yielded)) {
          future.emplace(yielded.cast<const PyFutureWait&>().f);
        } else if (py::isinstance<PyWaitAll>(yielded)) {
          const auto& request = yielded.cast<const PyWaitAll&>();
          futures = request.set.handles;
          timeout = request.timeout;
          when = request.when;
          wait_all = std::move(step.value);
        } else {
          throw bad_yield(gen.get(), step.value.get());
        }
      } catch (py::error_already_set& error) {
        error.restore();
        throw PyError::fetch();
      }
    }
    // The GIL is released: wait cooperatively.
    if (future) {
      close_if_ended.set_waiting(true);
      try {
        co_await future->yield_until_done();
      } catch (const InvalidStateError&) {
        // The core's message speaks of co_await; say it in the generator's terms.
        to_throw = std::make_exception_ptr(
            InvalidStateError("a generator task cannot wait for its own future "
                              "(yield from fut.yield_until_done()): it would wait forever"));
      } catch (...) {
        to_throw = std::current_exception();
      }
      close_if_ended.set_waiting(false);
      continue;
    }
    std::optional<DoneAndNotDoneFutures<PyFutureHandle>> result;
    close_if_ended.set_waiting(true);
    try {
      result.emplace(co_await yield_until_done(futures, timeout, when));
    } catch (...) {
      to_throw = std::current_exception();
    }
    close_if_ended.set_waiting(false);
    futures.clear();
    if (!result) continue;
    if (!may_take_gil()) throw_finalizing();
    Gil gil;
    try {
      auto& request = py::handle(wait_all.get()).cast<PyWaitAll&>();
      request.answer = done_and_not_done(request.set, *result);
      to_send = PyRef::borrow(request.answer.ptr());
    } catch (py::error_already_set& error) {
      error.restore();
      throw PyError::fetch();
    }
    result.reset();
    wait_all.reset();
  }
}

// The iterator of as_completed(): the C++ range, started by the first next().
class PyAsCompleted {
 public:
  PyAsCompleted(const py::iterable& fs, const py::object& timeout)
      : set_(fs),
        range_(std::make_unique<AsCompleted<PyFutureHandle>>(set_.handles, to_timeout(timeout))) {
    set_.handles.clear();  // the range holds the futures not handed out yet
  }

  py::object next() {
    if (!range_) throw py::stop_iteration();
    try {
      py::gil_scoped_release release;
      if (it_) {
        ++*it_;
      } else {
        it_.emplace(range_->begin());
      }
    } catch (...) {
      finish();  // like a generator that raised: exhausted from now on
      throw;
    }
    if (*it_ == std::default_sentinel) {
      finish();
      throw py::stop_iteration();
    }
    // Hand the object out and forget it, as Python's generator does (issue 14406).
    auto node = set_.objects.extract(&(**it_).state_base());
    return std::move(node.mapped());
  }

 private:
  void finish() {
    it_.reset();
    range_.reset();
    set_.objects.clear();
  }

  FutureSet set_;
  std::unique_ptr<AsCompleted<PyFutureHandle>> range_;
  std::optional<AsCompleted<PyFutureHandle>::iterator> it_;
};

// The iterator of Executor.map(): the C++ MapResults.
class PyMapIterator {
 public:
  explicit PyMapIterator(std::unique_ptr<MapResults<PyRef>> results)
      : results_(std::move(results)), it_(results_->begin()) {}

  py::object next() {
    if (!results_ || it_ == std::default_sentinel) {
      results_.reset();
      throw py::stop_iteration();
    }
    PyRef value;
    try {
      py::gil_scoped_release release;
      value = *it_;
      ++it_;
    } catch (...) {
      results_.reset();  // cancels the futures not reached, as the generator's `finally`
      throw;
    }
    return py::reinterpret_steal<py::object>(value.new_reference());
  }

  // The generator's close(): cancels the futures not reached (if the iteration started).
  void close() { results_.reset(); }

 private:
  std::unique_ptr<MapResults<PyRef>> results_;
  MapResults<PyRef>::iterator it_;
};

// betterconcurrent.ThreadPoolExecutor: the C++ pool.
// Submits fn(*args, **kwargs) to `pool`: a plain task, or with `generator` a generator task.
// The GIL is held; it is released while submitting.
PyFutureHandle submit_to(ThreadPoolExecutor& pool, PyRef fn, PyRef args, PyRef kwargs,
                         bool generator) {
  py::gil_scoped_release release;
  if (generator) {
    return pool.submit(&drive_generator, std::move(fn), std::move(args), std::move(kwargs));
  }
  return pool.submit(PyCall(std::move(fn), std::move(args), std::move(kwargs)));
}

class PyThreadPoolExecutor {
 public:
  PyThreadPoolExecutor(const py::object& max_workers, const std::string& thread_name_prefix,
                       const py::object& initializer, const py::tuple& initargs) {
    if (!initializer.is_none() && !PyCallable_Check(initializer.ptr())) {
      throw py::type_error("initializer must be a callable");
    }
    ThreadPoolExecutor::Options options;
    if (!max_workers.is_none()) options.max_workers = max_workers.cast<int>();
    options.thread_name_prefix = thread_name_prefix;
    if (!initializer.is_none()) {
      options.initializer = [call =
                                 std::make_shared<PyCall>(PyRef::borrow(initializer.ptr()),
                                                          PyRef::borrow(initargs.ptr()), PyRef())] {
        // The initializer runs once per thread: a copy of the call, so each run has its own.
        PyCall run = *call;
        run();
      };
    }
    pool_ = ThreadPoolExecutor::create(std::move(options));
  }

  ~PyThreadPoolExecutor() {
    py::gil_scoped_release release;
    pool_.reset();  // shutdown(wait=True), which waits for the tasks (they need the GIL)
  }

  // `generator`: fn is a generator function (the package asks inspect.isgeneratorfunction),
  // whose generator is driven cooperatively (drive_generator).
  py::object submit(const py::object& fn, const py::tuple& args, const py::dict& kwargs,
                    bool generator) {
    std::shared_ptr<ThreadPoolExecutor> pool = checked_pool();
    PyFutureHandle f = submit_to(*pool, PyRef::borrow(fn.ptr()), PyRef::borrow(args.ptr()),
                                 kwargs.empty() ? PyRef() : PyRef::borrow(kwargs.ptr()), generator);
    // With the GIL: PyFuture holds Python objects.
    py::object future = py::cast(PyFuture(std::move(f)));
    if (generator) name_future(future);  // a generator task may deadlock: name it
    return future;
  }

  PyMapIterator map(const py::object& fn, const py::args& iterables, const py::object& timeout,
                    int chunksize, bool generator) {
    if (chunksize < 1) throw py::value_error("chunksize must be >= 1.");
    const detail::Deadline deadline = detail::Deadline::after(to_timeout(timeout));
    std::shared_ptr<ThreadPoolExecutor> pool = checked_pool();
    std::vector<PyFutureHandle> futures;
    // zip() is asked for its next tuple until it first says it is exhausted, and never again:
    // an exhausted zip() asked again pulls one more item from its first iterable (pybind11's
    // range-for over an iterator does ask again), which CPython's list comprehension does not.
    py::iterator zipped = py::iter(py::module_::import("builtins").attr("zip")(*iterables));
    while (PyObject* next = PyIter_Next(zipped.ptr())) {
      py::object args = py::reinterpret_steal<py::object>(next);
      futures.push_back(
          submit_to(*pool, PyRef::borrow(fn.ptr()), PyRef::borrow(args.ptr()), PyRef(), generator));
    }
    if (PyErr_Occurred() != nullptr) throw py::error_already_set();
    return PyMapIterator(std::make_unique<MapResults<PyRef>>(std::move(futures), deadline));
  }

  void shutdown(bool wait, bool cancel_futures) {
    std::shared_ptr<ThreadPoolExecutor> pool = checked_pool();
    py::gil_scoped_release release;
    pool->shutdown(wait, cancel_futures);
  }

  void join(const py::object& timeout) {
    const Timeout t = to_timeout(timeout);
    std::shared_ptr<ThreadPoolExecutor> pool = checked_pool();
    py::gil_scoped_release release;
    pool->join(t);
  }

  // In a child made by fork(), only the forking thread exists: the pool's workers, and any lock
  // they held, are gone. The child must never wait for them, so it drops the pool without
  // destroying it (a deliberate leak in the child; CPython's child similarly abandons its
  // copy of the pool's threads).
  void forget_after_fork() noexcept {
    if (pool_) new std::shared_ptr<ThreadPoolExecutor>(std::move(pool_));
  }

  std::size_t max_workers() const { return checked_pool()->max_workers(); }
  std::size_t num_threads() const { return checked_pool()->num_threads(); }
  std::vector<std::string> thread_names() const { return checked_pool()->thread_names(); }
  py::object broken() const {
    std::string why = checked_pool()->broken();
    if (why.empty()) return py::bool_(false);
    return py::str(why);
  }

 private:
  std::shared_ptr<ThreadPoolExecutor> checked_pool() const {
    if (!pool_)
      throw std::runtime_error(
          "this executor cannot be used (a child process inherited it by fork)");
    return pool_;
  }

  std::shared_ptr<ThreadPoolExecutor> pool_;
};

PyObject* import_attr(const char* module, const char* name) {
  py::object value = py::module_::import(module).attr(name);
  return value.release().ptr();
}

}  // namespace
}  // namespace betterconcurrent::python

PYBIND11_MODULE(_betterconcurrent, m) {
  using namespace betterconcurrent;
  using namespace betterconcurrent::python;

  m.doc() = "betterconcurrent's C++ core (use the betterconcurrent package instead)";

  // The stdlib's own exception classes, so that `except concurrent.futures.CancelledError`
  // catches ours. Imported before anything can substitute concurrent.futures.
  classes.error = import_attr("concurrent.futures._base", "Error");
  classes.cancelled = import_attr("concurrent.futures._base", "CancelledError");
  classes.invalid_state = import_attr("concurrent.futures._base", "InvalidStateError");
  classes.broken_executor = import_attr("concurrent.futures._base", "BrokenExecutor");
  classes.broken_thread_pool = import_attr("concurrent.futures.thread", "BrokenThreadPool");
  classes.done_and_not_done = import_attr("concurrent.futures._base", "DoneAndNotDoneFutures");
  classes.unobserved = PyErr_NewExceptionWithDoc(
      "betterconcurrent.UnobservedTaskErrors",
      "Raised by join(): tasks failed and nobody observed their futures. `exceptions` lists "
      "them, in the order the tasks ended.",
      classes.error, nullptr);
  if (classes.unobserved == nullptr) throw py::error_already_set();
  m.attr("UnobservedTaskErrors") = py::handle(classes.unobserved);
  classes.deadlock = PyErr_NewExceptionWithDoc(
      "betterconcurrent.DeadlockError",
      "Generator tasks of one executor were suspended waiting only for each other, so none "
      "could ever resume: join() or shutdown(wait=True) ended each of them with this error "
      "(closing its generator), and join() raises it. The message names every such task's "
      "future and what it waited for.",
      classes.error, nullptr);
  if (classes.deadlock == nullptr) throw py::error_already_set();
  m.attr("DeadlockError") = py::handle(classes.deadlock);

  py::register_exception_translator(&translate);
  set_log_handler(&log_handler);

  py::class_<PyFuture>(m, "Future", py::dynamic_attr())
      .def(py::init<>())
      .def("cancel", [](PyFuture& self) { return self.committed().cancel(); })
      .def("cancelled", [](PyFuture& self) { return self.committed().cancelled(); })
      .def("running", [](PyFuture& self) { return self.committed().running(); })
      .def("done", [](PyFuture& self) { return self.committed().done(); })
      .def(
          "result",
          [](PyFuture& self, const py::object& timeout) {
            const Timeout t = to_timeout(timeout);
            const PyFutureHandle& f = self.committed();
            const PyRef* value;
            {
              py::gil_scoped_release release;
              value = &f.result(t);
            }
            return py::reinterpret_borrow<py::object>(value->get());
          },
          py::arg("timeout") = py::none())
      .def(
          "exception",
          [](PyFuture& self, const py::object& timeout) {
            const Timeout t = to_timeout(timeout);
            const PyFutureHandle& f = self.committed();
            std::exception_ptr e;
            {
              py::gil_scoped_release release;
              e = f.exception(t);
            }
            return e ? exception_object(e) : py::object(py::none());
          },
          py::arg("timeout") = py::none())
      .def("add_done_callback",
           [](const py::object& self, const py::object& fn) {
             handle_of(self).add_done_callback(
                 [fn = PyRef::borrow(fn.ptr()), future = PyRef::borrow(self.ptr())](
                     const PyFutureHandle&) { run_done_callback(fn, future); });
           })
      .def("set_running_or_notify_cancel",
           [](PyFuture& self) { return self.committed().set_running_or_notify_cancel(); })
      .def("set_result",
           [](const py::object& self, const py::object& result) {
             const PyFutureHandle& f = handle_of(self);
             if (f.done()) raise_already_done(self);
             f.set_result(PyRef::borrow(result.ptr()));
           })
      .def("set_exception",
           [](const py::object& self, const py::object& exception) {
             const PyFutureHandle& f = handle_of(self);
             if (f.done()) raise_already_done(self);
             f.set_exception(std::make_exception_ptr(PyError(PyRef::borrow(exception.ptr()))));
           })
      .def_property(
          "_state", [](PyFuture& self) { return state_name(self.committed().state()); },
          [](PyFuture& self, const std::string& state) {
            static const std::set<std::string> kStates = {"PENDING", "RUNNING", "CANCELLED",
                                                          "CANCELLED_AND_NOTIFIED", "FINISHED"};
            if (kStates.count(state) == 0) throw py::value_error("not a future state: " + state);
            self.staged_state = state;
          })
      .def_property(
          "_result",
          [](PyFuture& self) -> py::object {
            if (self.staged_state) return self.staged_result;
            const detail::StateBase& base = self.f.state_base();
            if (self.f.state() != FutureState::kFinished || base.stored_exception()) {
              return py::none();
            }
            const auto& typed = static_cast<const detail::State<PyRef>&>(base);
            return py::reinterpret_borrow<py::object>(typed.value().get());
          },
          [](PyFuture& self, py::object result) { self.staged_result = std::move(result); })
      .def_property(
          "_exception",
          [](PyFuture& self) -> py::object {
            if (self.staged_state) return self.staged_exception;
            if (self.f.state() != FutureState::kFinished) return py::none();
            const std::exception_ptr& e = self.f.state_base().stored_exception();
            return e ? exception_object(e) : py::object(py::none());
          },
          [](PyFuture& self, py::object exception) {
            self.staged_exception = std::move(exception);
          })
      .def_property_readonly("_condition",
                             [](const py::object& self) { return PyFutureCondition(self); })
      .def("__repr__", &future_repr);

  py::class_<PyFutureCondition>(m, "_FutureCondition")
      .def("__enter__", [](const py::object& self) { return self; })
      .def("__exit__",
           [](const PyFutureCondition& self, const py::args&) {
             self.commit();
             return false;
           })
      .def("notify_all", &PyFutureCondition::commit)
      .def(
          "notify", [](const PyFutureCondition& self, int) { self.commit(); }, py::arg("n") = 1)
      .def("acquire", [](const PyFutureCondition&, const py::args&) { return true; })
      .def("release", [](const PyFutureCondition&) {});

  // The wait requests of generator tasks (see drive_generator); the package's generators make
  // and yield them.
  py::class_<PyFutureWait>(m, "_FutureWait")
      .def(py::init<const py::object&>(), py::arg("future"))
      .def("_finish", &PyFutureWait::finish)
      .def("__repr__", [](const py::object&) {
        return "<betterconcurrent wait request of `yield from fut.yield_until_done()`>";
      });
  py::class_<PyWaitAll>(m, "_WaitAll")
      .def(py::init<const py::iterable&, const py::object&, const std::string&>(), py::arg("fs"),
           py::arg("timeout") = py::none(), py::arg("return_when") = "ALL_COMPLETED")
      .def("_outcome", &PyWaitAll::outcome)
      .def("__repr__", [](const py::object&) {
        return "<betterconcurrent wait request of `yield from yield_until_done(fs)`>";
      });

  py::class_<PyAsCompleted>(m, "_AsCompletedIterator")
      .def("__iter__", [](py::object self) { return self; })
      .def("__next__", &PyAsCompleted::next);
  py::class_<PyMapIterator>(m, "_MapIterator")
      .def("__iter__", [](py::object self) { return self; })
      .def("__next__", &PyMapIterator::next)
      .def("close", &PyMapIterator::close);

  m.def("wait", &py_wait, py::arg("fs"), py::arg("timeout") = py::none(),
        py::arg("return_when") = "ALL_COMPLETED");
  m.def(
      "as_completed",
      [](const py::iterable& fs, const py::object& timeout) { return PyAsCompleted(fs, timeout); },
      py::arg("fs"), py::arg("timeout") = py::none());

  py::class_<PyThreadPoolExecutor>(m, "ThreadPoolExecutor", py::dynamic_attr())
      .def(py::init<const py::object&, const std::string&, const py::object&, const py::tuple&>(),
           py::arg("max_workers") = py::none(), py::arg("thread_name_prefix") = "",
           py::arg("initializer") = py::none(), py::arg("initargs") = py::tuple())
      // thread.py gives it Python's signature, submit(fn, /, *args, **kwargs): pybind11 cannot
      // pass keyword arguments named like its positional-only ones (`self=`, `fn=`) to **kwargs.
      .def("_submit", &PyThreadPoolExecutor::submit, py::arg("fn"), py::arg("args"),
           py::arg("kwargs"), py::arg("generator") = false)
      // thread.py's map() passes _generator=inspect.isgeneratorfunction(fn).
      .def("map", &PyThreadPoolExecutor::map, py::arg("fn"), py::kw_only(),
           py::arg("timeout") = py::none(), py::arg("chunksize") = 1, py::arg("_generator") = false)
      .def("shutdown", &PyThreadPoolExecutor::shutdown, py::arg("wait") = true, py::kw_only(),
           py::arg("cancel_futures") = false)
      .def("join", &PyThreadPoolExecutor::join, py::arg("timeout") = py::none())
      .def("_forget_after_fork", &PyThreadPoolExecutor::forget_after_fork)
      .def_property_readonly("_max_workers", &PyThreadPoolExecutor::max_workers)
      .def_property_readonly("_num_threads", &PyThreadPoolExecutor::num_threads)
      .def_property_readonly("_thread_names", &PyThreadPoolExecutor::thread_names)
      .def_property_readonly("_broken", &PyThreadPoolExecutor::broken);
}
