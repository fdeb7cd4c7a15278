// Hyperparameters across the Python boundary: keyword arguments named like the fields of
// HyperParams (FU_HYPER_FIELDS in csrc/rules/common.h, the one definition), shared by both
// modules' Stepper.set_hyperparameters(**kwargs).
#pragma once
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>

#include "../common/errors.h"
#include "../rules/common.h"

namespace fusedupdates::bindings {

namespace py = pybind11;

// The comma-separated field names, for messages and the .pyi stubs.
inline const char* hyper_field_names() {
#define FU_FIELD_NAME(name, doc) #name ", "
  static const std::string names = [] {
    std::string s = FU_HYPER_FIELDS(FU_FIELD_NAME);
    return s.substr(0, s.size() - 2);
  }();
#undef FU_FIELD_NAME
  return names.c_str();
}

// Bit of each field in HyperUpdate::mask.
enum HyperField : unsigned {
#define FU_FIELD_BIT(name, doc) kField_##name,
  FU_HYPER_FIELDS(FU_FIELD_BIT)
#undef FU_FIELD_BIT
};

// The fields named by one set_hyperparameters(**kwargs) call, parsed while the GIL is held and
// applied later under the stepper's lock.
struct HyperUpdate {
  HyperParams values;
  unsigned mask = 0;
  bool has(HyperField f) const { return (mask >> f) & 1u; }
  // Writes the named fields into `out`, all but momentum when !with_momentum.
  void apply_to(HyperParams& out, bool with_momentum) const {
#define FU_APPLY_FIELD(name, doc) \
  if (has(kField_##name) && (with_momentum || kField_##name != kField_momentum)) out.name = values.name;
    FU_HYPER_FIELDS(FU_APPLY_FIELD)
#undef FU_APPLY_FIELD
  }
};

// TypeError for an unknown name or a value that is not a Python float or int, ValueError for
// one that is not finite or too large for a double. Nothing is applied on error. Range checks
// by rule (beta in [0, 1), epsilon >= 0, ...) are the Python layer's.
inline HyperUpdate parse_hyper_kwargs(const py::kwargs& kwargs) {
  HyperUpdate update;
  for (const auto& item : kwargs) {
    const std::string key = py::str(item.first);
    const py::handle value = item.second;
    if (PyBool_Check(value.ptr()) || (!PyFloat_Check(value.ptr()) && !PyLong_Check(value.ptr())))
      throw ArgTypeError("hyperparameter " + key + " must be a float, got " +
                         std::string(py::str(py::type::of(value).attr("__name__"))));
    const double x = PyFloat_AsDouble(value.ptr());
    if (x == -1.0 && PyErr_Occurred()) {
      PyErr_Clear();  // an int too large for a double
      throw ArgValueError("hyperparameter " + key + " is too large for a double");
    }
    if (!std::isfinite(x)) throw ArgValueError("hyperparameter " + key + " must be finite");
    bool known = false;
#define FU_PARSE_FIELD(name, doc)        \
  if (key == #name) {                    \
    update.values.name = x;              \
    update.mask |= 1u << kField_##name;  \
    known = true;                        \
  }
    FU_HYPER_FIELDS(FU_PARSE_FIELD)
#undef FU_PARSE_FIELD
    if (!known)
      throw ArgTypeError("unknown hyperparameter '" + key + "' (fields: " + hyper_field_names() +
                         ")");
  }
  return update;
}

// The max_norm of a step, shared by both steppers so that their checks and messages agree.
inline double max_norm_value(const py::object& max_norm) {
  const double x = PyFloat_AsDouble(max_norm.ptr());
  if (x == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    throw ArgTypeError("max_norm must be a float");
  }
  if (!std::isfinite(x) || x < 0.0)
    throw ArgValueError("max_norm must be finite and >= 0, got " + std::to_string(x));
  return x;
}

// The current fields as a dict (for tests and repr).
inline py::dict hyper_to_dict(const HyperParams& h) {
  py::dict d;
#define FU_GET_FIELD(name, doc) d[#name] = h.name;
  FU_HYPER_FIELDS(FU_GET_FIELD)
#undef FU_GET_FIELD
  return d;
}

}  // namespace fusedupdates::bindings
