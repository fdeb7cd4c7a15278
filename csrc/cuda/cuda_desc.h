// Describing CUDA arrays for the shared validator, without copying them: CuPy arrays through
// their attributes, anything else through __cuda_array_interface__ (v2/v3). The device is the
// array's CUDA device id (cupy's .device.id), so validate_step can reject a mix of devices.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "../bindings/numpy_desc.h"
#include "../common/errors.h"
#include "../common/validate.h"
#include "launch.h"

namespace fusedupdates::cuda {

namespace py = pybind11;

// ArrayDesc points at its shape; these own the shapes of one call.
using ShapeStore = std::deque<std::vector<int64_t>>;

// cupy.ndarray, registered by _cuda_backend.py. Its arrays are read through attributes, which
// costs a fraction of building a __cuda_array_interface__ dict per array per step. A strong
// reference that is deliberately never released (no destructor runs after finalisation).
inline PyObject*& cupy_ndarray_type() {
  static PyObject* type = nullptr;
  return type;
}

// NumPy's definition: dimensions of extent 1 are ignored and an empty array is contiguous.
inline bool c_contiguous(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
                         int64_t itemsize) {
  for (int64_t extent : shape)
    if (extent == 0) return true;
  int64_t expected = itemsize;
  for (size_t d = shape.size(); d-- > 0;) {
    if (shape[d] != 1 && strides[d] != expected) return false;
    expected *= shape[d];
  }
  return true;
}

inline int device_of(const py::handle& obj, std::uintptr_t ptr) {
  if (py::hasattr(obj, "device")) {
    const py::object dev = obj.attr("device");
    if (py::hasattr(dev, "id")) return dev.attr("id").cast<int>();
  }
  return ptr != 0 ? pointer_device(ptr) : current_device();
}

// obj must be a CUDA array (TypeError otherwise); None allowed when optional.
inline ArrayDesc describe_cuda(const py::handle& obj, const std::string& where, bool optional,
                               ShapeStore& shapes) {
  ArrayDesc d;
  if (optional && obj.is_none()) return d;
  std::vector<int64_t> shape, strides;
  bool has_strides = false;
  py::dtype dt;
  PyObject* cupy_type = cupy_ndarray_type();
  int is_cupy = cupy_type != nullptr ? PyObject_IsInstance(obj.ptr(), cupy_type) : 0;
  if (is_cupy < 0) {
    PyErr_Clear();  // an exotic __class__ that cannot be checked: use the generic path
    is_cupy = 0;
  }
  if (is_cupy == 1) {
    d.ptr = obj.attr("data").attr("ptr").cast<std::uintptr_t>();
    shape = obj.attr("shape").cast<std::vector<int64_t>>();
    strides = obj.attr("strides").cast<std::vector<int64_t>>();
    has_strides = true;
    dt = py::reinterpret_borrow<py::dtype>(obj.attr("dtype"));
    d.device = obj.attr("device").attr("id").cast<int>();
    d.writeable = true;  // CuPy has no read-only arrays
  } else if (py::hasattr(obj, "__cuda_array_interface__")) {
    const py::dict cai = obj.attr("__cuda_array_interface__");
    const py::tuple data = cai["data"];
    d.ptr = data[0].is_none() ? 0 : data[0].cast<std::uintptr_t>();
    d.writeable = !data[1].cast<bool>();
    shape = cai["shape"].cast<std::vector<int64_t>>();
    if (cai.contains("strides") && !cai["strides"].is_none()) {
      strides = cai["strides"].cast<std::vector<int64_t>>();
      has_strides = true;
    }
    dt = py::dtype::from_args(cai["typestr"]);
    d.device = device_of(obj, d.ptr);
  } else {
    throw ArgTypeError(where + ": expected a cupy.ndarray (a CUDA array), got " +
                       std::string(py::str(py::type::of(obj).attr("__name__"))));
  }
  d.present = true;
  d.numel = 1;
  for (int64_t extent : shape) d.numel *= extent;
  d.dtype = bindings::numpy_dtype(dt);
  if (d.dtype == DType::kUnsupported) d.dtype_str = py::str(dt);
  d.contiguous = !has_strides || c_contiguous(shape, strides, dt.itemsize());
  d.ndim = static_cast<int>(shape.size());
  shapes.push_back(std::move(shape));
  d.shape = shapes.back().data();
  return d;
}

inline ArrayGroup describe_cuda_list(const py::handle& seq, const std::string& name, bool writeable,
                                     ShapeStore& shapes, bool optional_items = false) {
  if (!py::isinstance<py::list>(seq) && !py::isinstance<py::tuple>(seq))
    throw ArgTypeError(name + ": expected a list of arrays");
  ArrayGroup g{name, {}, writeable};
  const auto items = py::reinterpret_borrow<py::sequence>(seq);
  const size_t n = items.size();
  g.arrays.reserve(n);
  for (size_t i = 0; i < n; ++i)
    g.arrays.push_back(
        describe_cuda(items[i], name + "[" + std::to_string(i) + "]", optional_items, shapes));
  return g;
}

}  // namespace fusedupdates::cuda
