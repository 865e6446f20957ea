// PyRef and PyError: Python objects that C++ futures and tasks can carry across threads.
//
// The C++ core moves results and exceptions between threads and destroys them wherever the last
// handle dies, often a worker thread that does not hold the GIL. So:
//   - PyRef owns one reference to a Python object. Moving it needs nothing; copying it and
//     destroying it take the GIL themselves (PyGILState_Ensure, which also works on threads that
//     already hold it or that Python has never seen).
//   - PyError is the C++ exception that carries a raised Python exception object through a C++
//     future (as its std::exception_ptr), so that result() re-raises the very same object.
//
// Once the interpreter is finalizing, a thread that is not the finalizing one must not take the
// GIL (Python would end that thread). Then a PyRef drops its reference without decrementing it:
// a leak of one object at exit, instead of a crash.
#ifndef BETTERCONCURRENT_PYTHON_PY_REF_H_
#define BETTERCONCURRENT_PYTHON_PY_REF_H_

#include <Python.h>

#include <exception>
#include <string>
#include <utility>

namespace betterconcurrent::python {

// Gives the calling thread a Python thread state for the rest of its life, if it has none (a
// thread Python did not start). PyGILState_Ensure() would make a fresh one each time and delete
// it at the matching release, and making one takes the interpreter's thread-list lock without
// the GIL: a fork() at that moment leaves the lock held in the child, which then hangs in
// PyOS_AfterFork_Child(). So a thread's state is made once, under a lock that fork() also takes
// (pthread_atfork), and deleted when the thread exits. Nothrow.
void ensure_thread_state() noexcept;

// Holds the GIL for its lifetime, from any thread. Nothrow.
class Gil {
 public:
  Gil() noexcept : state_((ensure_thread_state(), PyGILState_Ensure())) {}
  ~Gil() { PyGILState_Release(state_); }
  Gil(const Gil&) = delete;
  Gil& operator=(const Gil&) = delete;

 private:
  PyGILState_STATE state_;
};

// Whether this thread may take the GIL: false once the interpreter is finalizing, except on the
// thread that finalizes it (which already holds the GIL). Nothrow.
inline bool may_take_gil() noexcept {
  if (!Py_IsInitialized()) return false;
  if (!_Py_IsFinalizing()) return true;
  return PyGILState_Check() != 0;
}

class PyRef {
 public:
  PyRef() noexcept = default;
  // Takes over a new reference (may be null). No GIL needed.
  static PyRef steal(PyObject* p) noexcept { return PyRef(p); }
  // Takes a new reference. The caller holds the GIL.
  static PyRef borrow(PyObject* p) noexcept {
    Py_XINCREF(p);
    return PyRef(p);
  }

  PyRef(PyRef&& other) noexcept : p_(std::exchange(other.p_, nullptr)) {}
  PyRef(const PyRef& other) noexcept : p_(other.p_) {
    if (p_ != nullptr) {
      Gil gil;
      Py_INCREF(p_);
    }
  }
  PyRef& operator=(PyRef other) noexcept {
    std::swap(p_, other.p_);
    return *this;
  }
  ~PyRef() { reset(); }

  // Drops the reference, taking the GIL if this thread does not hold it. Nothrow.
  void reset() noexcept {
    PyObject* p = std::exchange(p_, nullptr);
    if (p == nullptr || !may_take_gil()) return;
    Gil gil;
    Py_DECREF(p);
  }

  // The object, borrowed (null if empty).
  PyObject* get() const noexcept { return p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }
  // A new reference, for returning to Python. The caller holds the GIL.
  PyObject* new_reference() const noexcept {
    Py_XINCREF(p_);
    return p_;
  }

 private:
  explicit PyRef(PyObject* p) noexcept : p_(p) {}
  PyObject* p_ = nullptr;
};

// A Python exception object in flight through C++. what() is "TypeName: str(exc)", computed
// when it is made, for C++ logs.
class PyError : public std::exception {
 public:
  // `exception` is an exception instance. The caller holds the GIL.
  explicit PyError(PyRef exception);
  // Takes the exception that is set in this thread (PyErr_Occurred() must be true), clearing it.
  // The caller holds the GIL.
  static PyError fetch();

  const char* what() const noexcept override { return what_.c_str(); }
  const PyRef& exception() const noexcept { return exception_; }
  // Raises the carried object in this thread (PyErr_SetObject). The caller holds the GIL.
  void restore() const noexcept;

 private:
  PyRef exception_;
  std::string what_;
};

}  // namespace betterconcurrent::python

#endif  // BETTERCONCURRENT_PYTHON_PY_REF_H_
