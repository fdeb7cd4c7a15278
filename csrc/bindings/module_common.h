// Pieces both pybind11 modules share: the hyperparameter tuple and the mapping of the
// shared validator's exceptions to Python's TypeError / ValueError.
#pragma once
#include <pybind11/pybind11.h>

#include <exception>
#include <vector>

#include "../common/errors.h"
#include "../rules/common.h"

namespace fusedupdates::bindings {

// (lr, beta1|rho, beta2, epsilon, momentum, step) as packed by fusedupdates/_hyper.py.
inline HyperParams hyper_from(const std::vector<double>& h) {
  if (h.size() != 6)
    throw ArgValueError("hyper must hold (lr, beta1, beta2, epsilon, momentum, step)");
  return HyperParams{h[0], h[1], h[2], h[3], h[4], h[5], 1.0};
}

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
