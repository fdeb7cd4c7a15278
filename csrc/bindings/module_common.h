// What both pybind11 modules share: the mapping of the shared validator's exceptions to
// Python's TypeError / ValueError.
#pragma once
#include <pybind11/pybind11.h>

#include <exception>

#include "../common/errors.h"

namespace fusedupdates::bindings {

inline void register_error_translator() {
  pybind11::register_exception_translator([](std::exception_ptr e) {
    try {
      if (e) std::rethrow_exception(e);
    } catch (const ArgTypeError& err) {
      PyErr_SetString(PyExc_TypeError, err.what());
    } catch (const ArgValueError& err) {
      PyErr_SetString(PyExc_ValueError, err.what());
    }
  });
}

}  // namespace fusedupdates::bindings
