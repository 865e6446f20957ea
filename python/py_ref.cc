#include "python/py_ref.h"

#include <string>
#include <utility>

namespace betterconcurrent::python {

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
