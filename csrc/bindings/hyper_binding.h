// Hyperparameters across the Python boundary: keyword arguments named like the fields of
// HyperParams (FU_HYPER_FIELDS in csrc/rules/common.h, the one definition), shared by both
// modules' Stepper.set_hyperparameters(**kwargs).
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../common/dtype.h"
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
#define FU_APPLY_FIELD(name, doc)                                                \
  if (has(kField_##name) && (with_momentum || kField_##name != kField_momentum)) \
    out.name = values.name;
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
#define FU_PARSE_FIELD(name, doc)       \
  if (key == #name) {                   \
    update.values.name = x;             \
    update.mask |= 1u << kField_##name; \
    known = true;                       \
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

// The state name that marks float32 master weights (16-bit params only): given as the last
// state list, the kernels update it in place of the param and write the param rounded.
inline constexpr const char* kMasterState = "master";

// Whether the last of `state_names` is the master copy (so it is not a rule state), shared by
// both steppers.
inline bool has_master_state(const std::vector<std::string>& state_names) {
  return !state_names.empty() && state_names.back() == kMasterState;
}

inline bool is_16bit(DType dtype) { return dtype == DType::kFloat16 || dtype == DType::kBFloat16; }

// Master weights only for 16-bit params: both steppers' check and message.
inline void check_master_dtype(size_t index, DType dtype) {
  if (!is_16bit(dtype))
    throw ArgValueError("params[" + std::to_string(index) + "]: master weights are for float16 " +
                        "and bfloat16 params, not " + dtype_name(dtype));
}

// Parameter groups, shared by both steppers so that their checks and messages agree.
// The group index of each of `n` params (None: every param in group 0), numbered 0..G-1;
// sets `num_groups` to G.
inline std::vector<uint32_t> parse_group_indices(const py::object& group_indices, size_t n,
                                                 size_t& num_groups) {
  std::vector<uint32_t> group_of(n, 0);
  num_groups = 1;
  if (group_indices.is_none()) return group_of;
  const auto indices = group_indices.cast<std::vector<int64_t>>();
  if (indices.size() != n)
    throw ArgValueError("got " + std::to_string(indices.size()) + " group indices for " +
                        std::to_string(n) + " params");
  int64_t most = 0;
  for (size_t i = 0; i < n; ++i) {
    if (indices[i] < 0 || indices[i] >= static_cast<int64_t>(n))
      throw ArgValueError("groups[" + std::to_string(i) + "]: group index out of range");
    group_of[i] = static_cast<uint32_t>(indices[i]);
    most = std::max(most, indices[i]);
  }
  num_groups = static_cast<size_t>(most + 1);
  return group_of;
}

inline void check_group_index(int64_t group, size_t num_groups) {
  if (group < 0 || static_cast<uint64_t>(group) >= num_groups)
    throw ArgValueError("group " + std::to_string(group) + " out of range (" +
                        std::to_string(num_groups) + " groups)");
}

// Removes group=... from set_hyperparameters' kwargs; the groups the call sets as [first, last).
inline std::pair<size_t, size_t> pop_group_kwarg(py::kwargs& kwargs, size_t num_groups) {
  if (!kwargs.contains("group")) return {0, num_groups};
  const py::object group = kwargs["group"];
  PyDict_DelItemString(kwargs.ptr(), "group");
  if (group.is_none()) return {0, num_groups};
  const auto g = group.cast<int64_t>();
  check_group_index(g, num_groups);
  return {static_cast<size_t>(g), static_cast<size_t>(g) + 1};
}

// A loss scale given as a Python number (both steppers): finite and > 0.
inline double grad_scale_value(const py::object& grad_scale) {
  const double x = PyFloat_AsDouble(grad_scale.ptr());
  if (x == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    throw ArgTypeError("grad_scale must be a float");
  }
  if (!std::isfinite(x) || !(x > 0.0))
    throw ArgValueError("grad_scale must be finite and > 0, got " + std::to_string(x));
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
