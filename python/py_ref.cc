#include "python/py_ref.h"

#include <pthread.h>

#include <string>
#include <utility>

namespace betterconcurrent::python {
namespace {

// Held while a thread state is made, and by fork() itself (in the forking thread, between its
// prepare and its parent/child handlers): so no thread is inside PyThreadState_New(), holding
// the interpreter's thread-list lock, when the process forks. Making a state does not need the
// GIL, so the forking thread (which holds the GIL) cannot deadlock waiting here.
pthread_mutex_t g_fork_mu = PTHREAD_MUTEX_INITIALIZER;

void lock_fork_mu() { pthread_mutex_lock(&g_fork_mu); }
void unlock_fork_mu() { pthread_mutex_unlock(&g_fork_mu); }
[[maybe_unused]] const int g_fork_guard_installed =
    pthread_atfork(&lock_fork_mu, &unlock_fork_mu, &unlock_fork_mu);

// Python code that asks for the current thread (logging does) on a thread Python did not start
// makes a threading._DummyThread and keeps it in threading._active, where Python 3.11 never
// removes it: the object would outlive the thread, and CPython's tests report it as a dangling
// thread. Removes this thread's entry, if it is such a stand-in. The GIL is held.
void forget_dummy_thread() noexcept {
  PyObject* type = nullptr;
  PyObject* value = nullptr;
  PyObject* traceback = nullptr;
  PyErr_Fetch(&type, &value, &traceback);
  PyObject* name = PyUnicode_FromString("threading");
  PyObject* threading = name == nullptr ? nullptr : PyImport_GetModule(name);  // no import
  PyObject* active = threading == nullptr ? nullptr : PyObject_GetAttrString(threading, "_active");
  PyObject* dummy_type =
      threading == nullptr ? nullptr : PyObject_GetAttrString(threading, "_DummyThread");
  PyObject* ident = PyLong_FromUnsignedLong(PyThread_get_thread_ident());
  if (active != nullptr && PyDict_Check(active) && dummy_type != nullptr && ident != nullptr) {
    PyObject* entry = PyDict_GetItemWithError(active, ident);  // borrowed
    if (entry != nullptr && PyObject_IsInstance(entry, dummy_type) == 1) {
      PyDict_DelItem(active, ident);
    }
  }
  Py_XDECREF(ident);
  Py_XDECREF(dummy_type);
  Py_XDECREF(active);
  Py_XDECREF(threading);
  Py_XDECREF(name);
  PyErr_Clear();  // nothing here may fail the exiting thread
  PyErr_Restore(type, value, traceback);
}

// The thread state that ensure_thread_state() made for this thread; deleted at thread exit,
// with the GIL, unless the interpreter is finalizing (then it is left to Python).
class OwnThreadState {
 public:
  OwnThreadState() = default;
  OwnThreadState(const OwnThreadState&) = delete;
  OwnThreadState& operator=(const OwnThreadState&) = delete;
  ~OwnThreadState() {
    if (state_ == nullptr || !may_take_gil()) return;
    PyEval_RestoreThread(state_);
    forget_dummy_thread();
    PyThreadState_Clear(state_);
    PyThreadState_DeleteCurrent();  // releases the GIL
  }
  void make() noexcept {
    lock_fork_mu();
    // Its GIL-state counter starts at 1, so PyGILState_Release() never deletes it.
    state_ = PyThreadState_New(PyInterpreterState_Main());
    unlock_fork_mu();
  }

 private:
  PyThreadState* state_ = nullptr;
};
thread_local OwnThreadState t_own_state;

}  // namespace

void ensure_thread_state() noexcept {
  if (PyGILState_GetThisThreadState() == nullptr) t_own_state.make();
}

PyError::PyError(PyRef exception) : exception_(std::move(exception)) {
  PyObject* e = exception_.get();
  what_ = _PyType_Name(Py_TYPE(e));
  PyObject* text = PyObject_Str(e);
  if (text == nullptr) {
    PyErr_Clear();
    return;
  }
  const char* utf8 = PyUnicode_AsUTF8(text);
  if (utf8 == nullptr) {
    PyErr_Clear();
  } else if (*utf8 != '\0') {
    what_ += ": ";
    what_ += utf8;
  }
  Py_DECREF(text);
}

PyError PyError::fetch() {
  PyObject* type = nullptr;
  PyObject* value = nullptr;
  PyObject* traceback = nullptr;
  PyErr_Fetch(&type, &value, &traceback);
  PyErr_NormalizeException(&type, &value, &traceback);
  if (value != nullptr && traceback != nullptr) PyException_SetTraceback(value, traceback);
  Py_XDECREF(type);
  Py_XDECREF(traceback);
  if (value == nullptr) {
    value = PyObject_CallFunction(PyExc_SystemError, "s", "error return without exception set");
  }
  return PyError(PyRef::steal(value));
}

void PyError::restore() const noexcept {
  PyObject* e = exception_.get();
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(e)), e);
}

}  // namespace betterconcurrent::python
