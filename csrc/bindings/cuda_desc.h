// Describing CUDA arrays for the shared validator, without copying them: CuPy arrays through
// their attributes, anything else through __cuda_array_interface__ (v2/v3). The device is the
// array's CUDA device id (cupy: data.device_id; others: .device.id, or the runtime's pointer
// attributes when they have none), so the validator can reject a mix of devices. No CUDA call
// is made for CuPy arrays and objects with a .device.id.
//
// This runs for every grad of every step, so it uses the C API with interned attribute names
// and compares dtypes by identity: no Python-level call, no dtype construction on success.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "../common/errors.h"
#include "../common/validate.h"
#include "../cuda/launch.h"
#include "numpy_desc.h"

namespace fusedupdates::bindings {

namespace py = pybind11;

// cupy.ndarray (registered by fusedupdates/_cuda_backend.py; null without CuPy), and the
// names and dtypes the describer looks up. Strong references deliberately never released
// (nothing may run after the interpreter is finalised).
struct CudaNames {
  PyObject* cupy_ndarray = nullptr;
  PyObject *cai, *data, *ptr, *device_id, *shape, *strides, *dtype, *c_contiguous, *typestr,
      *device, *id;
  PyObject* dtypes[3];  // numpy float16, float32, float64 (native byte order)
  static CudaNames& get() {
    static CudaNames* names = [] {
      auto* n = new CudaNames();
      n->cai = PyUnicode_InternFromString("__cuda_array_interface__");
      n->data = PyUnicode_InternFromString("data");
      n->ptr = PyUnicode_InternFromString("ptr");
      n->device_id = PyUnicode_InternFromString("device_id");
      n->shape = PyUnicode_InternFromString("shape");
      n->strides = PyUnicode_InternFromString("strides");
      n->dtype = PyUnicode_InternFromString("dtype");
      n->c_contiguous = PyUnicode_InternFromString("_c_contiguous");
      n->typestr = PyUnicode_InternFromString("typestr");
      n->device = PyUnicode_InternFromString("device");
      n->id = PyUnicode_InternFromString("id");
      const char* names[3] = {"float16", "float32", "float64"};
      for (int k = 0; k < 3; ++k) n->dtypes[k] = py::dtype(names[k]).release().ptr();
      return n;
    }();
    return *names;
  }
};

// Shapes of the arrays described by one call: ArrayDesc::shape points into it.
using ShapeStore = std::deque<std::vector<int64_t>>;

namespace detail {

inline py::object attr(PyObject* obj, PyObject* name) {
  return py::reinterpret_steal<py::object>(PyObject_GetAttr(obj, name));  // null if missing
}

[[noreturn]] inline void malformed(const std::string& where, const char* what) {
  PyErr_Clear();
  throw ArgTypeError(where + ": malformed __cuda_array_interface__ (" + what + ")");
}

inline int64_t as_int(PyObject* x, const std::string& where, const char* what) {
  const long long v = x != nullptr ? PyLong_AsLongLong(x) : -1;
  if (v == -1 && (x == nullptr || PyErr_Occurred())) malformed(where, what);
  return v;
}

// A tuple/list of ints into `out`.
inline void read_ints(PyObject* seq, std::vector<int64_t>& out, const std::string& where,
                      const char* what) {
  out.clear();
  if (PyTuple_Check(seq)) {
    for (Py_ssize_t d = 0; d < PyTuple_GET_SIZE(seq); ++d)
      out.push_back(as_int(PyTuple_GET_ITEM(seq, d), where, what));
  } else if (PyList_Check(seq)) {
    for (Py_ssize_t d = 0; d < PyList_GET_SIZE(seq); ++d)
      out.push_back(as_int(PyList_GET_ITEM(seq, d), where, what));
  } else {
    malformed(where, what);
  }
}

// NumPy's definition: dimensions of extent 1 are ignored and an empty array is contiguous.
inline bool c_contiguous(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
                         int64_t itemsize) {
  if (strides.size() != shape.size()) return false;
  for (int64_t extent : shape)
    if (extent == 0) return true;
  int64_t expected = itemsize;
  for (size_t d = shape.size(); d-- > 0;) {
    if (shape[d] != 1 && strides[d] != expected) return false;
    expected *= shape[d];
  }
  return true;
}

// The DType of a numpy dtype object: identity with the native float dtypes first (the common
// case, no call), else numpy's own description (byte-swapped and other dtypes: unsupported;
// uint8 only with allow_codes, for the codes of 8-bit compact state).
inline DType dtype_of(PyObject* dt, std::string& dtype_str, bool allow_codes) {
  const CudaNames& n = CudaNames::get();
  for (int k = 0; k < 3; ++k)
    if (dt == n.dtypes[k]) return static_cast<DType>(k);
  const auto d = py::reinterpret_borrow<py::dtype>(dt);
  const DType result = numpy_dtype(d, allow_codes);
  if (result == DType::kUnsupported) dtype_str = py::str(d);
  return result;
}

inline DType dtype_of_typestr(PyObject* typestr, std::string& dtype_str, bool allow_codes) {
  Py_ssize_t size = 0;
  const char* s = typestr != nullptr ? PyUnicode_AsUTF8AndSize(typestr, &size) : nullptr;
  if (s != nullptr && size == 3 && (s[0] == '<' || s[0] == '=') && s[1] == 'f') {
    if (s[2] == '2') return DType::kFloat16;
    if (s[2] == '4') return DType::kFloat32;
    if (s[2] == '8') return DType::kFloat64;
  }
  PyErr_Clear();
  const py::dtype d = py::dtype::from_args(py::reinterpret_borrow<py::object>(typestr));
  const DType result = numpy_dtype(d, allow_codes);
  if (result == DType::kUnsupported) dtype_str = py::str(d);
  return result;
}

}  // namespace detail

// obj must be a CUDA array (TypeError otherwise); None allowed when optional. `shape` receives
// the shape and must outlive the returned description. Messages name `name[index]` like the
// CPU binding's describe_numpy. allow_codes: uint8 is accepted (stepper states only).
inline ArrayDesc describe_cuda(PyObject* obj, const char* name, size_t index, bool optional,
                               std::vector<int64_t>& shape, bool allow_codes = false) {
  ArrayDesc d;
  if (optional && obj == Py_None) return d;
  const CudaNames& n = CudaNames::get();
  std::vector<int64_t> strides;
  bool has_strides = false;
  int is_cupy = n.cupy_ndarray != nullptr ? PyObject_IsInstance(obj, n.cupy_ndarray) : 0;
  if (is_cupy < 0) {
    PyErr_Clear();  // an exotic __class__ that cannot be checked: use the generic path
    is_cupy = 0;
  }
  const auto where = [&] { return std::string(name) + "[" + std::to_string(index) + "]"; };
  if (is_cupy == 1) {
    const py::object data = detail::attr(obj, n.data);
    const py::object ptr = data ? detail::attr(data.ptr(), n.ptr) : py::object();
    const py::object dev = data ? detail::attr(data.ptr(), n.device_id) : py::object();
    const py::object shp = detail::attr(obj, n.shape);
    const py::object dt = detail::attr(obj, n.dtype);
    if (!ptr || !dev || !shp || !dt) detail::malformed(where(), "cupy.ndarray attributes");
    d.ptr = static_cast<std::uintptr_t>(PyLong_AsUnsignedLongLong(ptr.ptr()));
    d.device = static_cast<int>(detail::as_int(dev.ptr(), where(), "device_id"));
    detail::read_ints(shp.ptr(), shape, where(), "shape");
    d.dtype = detail::dtype_of(dt.ptr(), d.dtype_str, allow_codes);
    const py::object contiguous = detail::attr(obj, n.c_contiguous);
    if (contiguous) {
      d.contiguous = PyObject_IsTrue(contiguous.ptr()) == 1;
    } else {  // a CuPy without the private flag: NumPy's rule on the strides
      PyErr_Clear();
      const py::object s = detail::attr(obj, n.strides);
      if (!s) detail::malformed(where(), "strides");
      detail::read_ints(s.ptr(), strides, where(), "strides");
      has_strides = true;
    }
    d.writeable = true;  // CuPy has no read-only arrays
  } else {
    const py::object cai = detail::attr(obj, n.cai);
    if (!cai) {
      PyErr_Clear();
      throw ArgTypeError(where() + ": expected a cupy.ndarray (a CUDA array), got " +
                         type_name(obj));
    }
    if (!PyDict_Check(cai.ptr())) detail::malformed(where(), "not a dict");
    PyObject* data = PyDict_GetItemWithError(cai.ptr(), n.data);
    if (data == nullptr || !PyTuple_Check(data) || PyTuple_GET_SIZE(data) != 2)
      detail::malformed(where(), "data");
    PyObject* p = PyTuple_GET_ITEM(data, 0);
    d.ptr = p == Py_None ? 0 : static_cast<std::uintptr_t>(PyLong_AsUnsignedLongLong(p));
    if (PyErr_Occurred()) detail::malformed(where(), "data pointer");
    d.writeable = PyObject_IsTrue(PyTuple_GET_ITEM(data, 1)) == 0;
    PyObject* shp = PyDict_GetItemWithError(cai.ptr(), n.shape);
    if (shp == nullptr) detail::malformed(where(), "shape");
    detail::read_ints(shp, shape, where(), "shape");
    PyObject* s = PyDict_GetItemWithError(cai.ptr(), n.strides);
    if (s != nullptr && s != Py_None) {
      detail::read_ints(s, strides, where(), "strides");
      has_strides = true;
    }
    d.dtype = detail::dtype_of_typestr(PyDict_GetItemWithError(cai.ptr(), n.typestr), d.dtype_str,
                                       allow_codes);
    // The device: .device.id (CuPy-like objects) without a CUDA call; else the runtime's
    // pointer attributes (the first CUDA call, so the driver is checked first).
    const py::object dev = detail::attr(obj, n.device);
    const py::object id = dev ? detail::attr(dev.ptr(), n.id) : py::object();
    if (id) {
      d.device = static_cast<int>(detail::as_int(id.ptr(), where(), "device.id"));
    } else {
      PyErr_Clear();
      cuda::ensure_runtime();
      d.device = d.ptr != 0 ? cuda::pointer_device(d.ptr) : cuda::current_device();
    }
  }
  d.present = true;
  d.numel = 1;
  for (int64_t extent : shape) d.numel *= extent;
  d.ndim = static_cast<int>(shape.size());
  d.shape = shape.data();
  const int64_t item = d.dtype == DType::kUnsupported ? 1 : dtype_size(d.dtype);
  if (has_strides)
    d.contiguous = detail::c_contiguous(shape, strides, item);
  else if (is_cupy != 1)
    d.contiguous = true;  // no strides: C order by definition
  d.aligned = d.ptr % static_cast<std::uintptr_t>(item) == 0;
  return d;
}

// A list/tuple of CUDA arrays (None entries allowed when optional_items; uint8 with
// allow_codes).
inline ArrayGroup describe_cuda_list(const py::handle& seq, const std::string& name, bool writeable,
                                     ShapeStore& shapes, bool optional_items = false,
                                     bool allow_codes = false) {
  if (!py::isinstance<py::list>(seq) && !py::isinstance<py::tuple>(seq))
    throw ArgTypeError(name + ": expected a list of arrays, got " + type_name(seq));
  ArrayGroup g{name, {}, writeable};
  const auto items = py::reinterpret_borrow<py::sequence>(seq);
  const size_t count = py::len(items);
  g.arrays.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    shapes.emplace_back();
    g.arrays.push_back(
        describe_cuda(items[i].ptr(), name.c_str(), i, optional_items, shapes.back(), allow_codes));
  }
  return g;
}

}  // namespace fusedupdates::bindings
