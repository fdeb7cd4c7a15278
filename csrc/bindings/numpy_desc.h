// Describing NumPy arrays for the shared validator, without copying or converting them.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "../common/errors.h"
#include "../common/validate.h"

namespace fusedupdates::bindings {

namespace py = pybind11;

// ml_dtypes.bfloat16 is a user-defined NumPy dtype: its type number (>= NPY_USERDEF = 256) is
// assigned when ml_dtypes is imported, so it is recognised by name once and then by number
// (this runs for every grad of every step). Returns -1 until a bfloat16 array is seen.
inline int& bfloat16_type_number() {
  static int number = -1;  // only touched with the GIL held
  return number;
}

inline bool is_bfloat16(const py::dtype& dt) {
  const int num = dt.num();
  if (num == bfloat16_type_number()) return true;
  constexpr int kNpyUserDef = 256;
  if (num < kNpyUserDef || dt.itemsize() != 2 || dt.kind() != 'V') return false;
  if (py::str(dt.attr("name")).cast<std::string>() != "bfloat16") return false;
  bfloat16_type_number() = num;
  return true;
}

// allow_codes: uint8 is accepted (the codes of 8-bit compact state), elsewhere it is not.
inline DType numpy_dtype(const py::dtype& dt, bool allow_codes = false) {
  // Byte-swapped arrays share the type number of native ones: reject them explicitly.
  if (dt.byteorder() == '>') return DType::kUnsupported;  // little-endian hosts only
  switch (dt.num()) {
    case 2: return allow_codes ? DType::kUInt8 : DType::kUnsupported;  // NPY_UBYTE
    case 23: return DType::kFloat16;                                   // NPY_HALF
    case 11: return DType::kFloat32;                                   // NPY_FLOAT
    case 12: return DType::kFloat64;                                   // NPY_DOUBLE
    default: return is_bfloat16(dt) ? DType::kBFloat16 : DType::kUnsupported;
  }
}

// "cupy.ndarray" rather than just "ndarray", so mixing NumPy and CuPy reads clearly.
inline std::string type_name(const py::handle& obj) {
  const py::handle t = py::type::of(obj);
  const std::string mod = py::str(t.attr("__module__"));
  const std::string name = py::str(t.attr("__qualname__"));
  return mod == "builtins" ? name : mod.substr(0, mod.find('.')) + "." + name;
}

// obj must be a numpy.ndarray (TypeError otherwise); None allowed when optional. The
// location string is only built on error: this runs for every array of every step.
inline ArrayDesc describe_numpy(const py::handle& obj, const std::string& name, size_t index,
                                bool optional, bool allow_codes = false) {
  ArrayDesc d;
  if (optional && obj.is_none()) return d;
  if (!py::isinstance<py::array>(obj))
    throw ArgTypeError(name + "[" + std::to_string(index) + "]: expected a numpy.ndarray, got " +
                       type_name(obj));
  const auto a = py::reinterpret_borrow<py::array>(obj);
  d.present = true;
  d.ptr = reinterpret_cast<std::uintptr_t>(a.data());
  d.numel = a.size();
  const py::dtype dt = a.dtype();
  d.dtype = numpy_dtype(dt, allow_codes);
  if (d.dtype == DType::kUnsupported) d.dtype_str = py::str(dt);
  static_assert(sizeof(py::ssize_t) == sizeof(int64_t), "64-bit platforms only");
  d.shape = reinterpret_cast<const int64_t*>(a.shape());
  d.ndim = static_cast<int>(a.ndim());
  const int flags = py::detail::array_proxy(a.ptr())->flags;
  d.contiguous = (flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_) != 0;
  d.writeable = (flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_) != 0;
  d.aligned = (flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_) != 0;
  d.device = -1;
  return d;
}

// Flags and data pointer of an array described earlier, read without a Python call: a step
// re-checks that nobody made a param or state read-only (or swapped its memory) since.
inline bool still_writeable_at(const py::handle& array, std::uintptr_t ptr) {
  const auto* proxy = py::detail::array_proxy(array.ptr());
  return (proxy->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_) != 0 &&
         reinterpret_cast<std::uintptr_t>(proxy->data) == ptr;
}

// A tuple holding a reference to every item: the arrays stay alive while the GIL is
// released, whatever another thread does to the caller's list meanwhile.
inline py::tuple hold_items(const py::handle& seq, const char* name) {
  if (py::isinstance<py::tuple>(seq)) return py::reinterpret_borrow<py::tuple>(seq);
  if (!py::isinstance<py::list>(seq))
    throw ArgTypeError(std::string(name) + ": expected a list of arrays, got " + type_name(seq));
  return py::reinterpret_steal<py::tuple>(PyList_AsTuple(seq.ptr()));
}

// Holds one list of n entries (None or a block-scale array of 8-bit state) at the end of out.
inline void hold_scale_list(std::vector<py::object>& out, const py::handle& list, size_t n,
                            const std::string& what) {
  const py::tuple items = hold_items(list, what.c_str());
  if (items.size() != n)
    throw ArgValueError("got " + std::to_string(items.size()) + " arrays in " + what + " for " +
                        std::to_string(n) + " params");
  for (const py::handle a : items) out.push_back(py::reinterpret_borrow<py::object>(a));
}

// The velocity's block scales: None (n Nones) or a list of n entries, as hold_scale_list.
inline void hold_optional_scale_list(std::vector<py::object>& out, const py::object& list, size_t n,
                                     const std::string& what) {
  if (list.is_none())
    out.insert(out.end(), n, py::none());
  else
    hold_scale_list(out, list, n, what);
}

// Holds `lists` (None, or `count` lists of n entries, each None or an array) at the end of
// out: the block scales a stepper keeps alive (both bindings, the same messages).
inline void hold_scales(std::vector<py::object>& out, const py::object& lists, size_t count,
                        size_t n, const std::string& what) {
  if (lists.is_none()) {
    out.insert(out.end(), count * n, py::none());
    return;
  }
  const py::tuple outer = hold_items(lists, what.c_str());
  if (outer.size() != count)
    throw ArgValueError(what + ": expected " + std::to_string(count) +
                        " lists (one per state), got " + std::to_string(outer.size()));
  for (size_t k = 0; k < count; ++k)
    hold_scale_list(out, outer[k], n, what + "[" + std::to_string(k) + "]");
}

inline ArrayGroup describe_list(const py::handle& seq, const std::string& name, bool writeable,
                                bool optional_items = false, bool allow_codes = false) {
  if (!py::isinstance<py::list>(seq) && !py::isinstance<py::tuple>(seq))
    throw ArgTypeError(name + ": expected a list of arrays, got " + type_name(seq));
  ArrayGroup g{name, {}, writeable};
  const size_t n = py::len(seq);
  g.arrays.reserve(n);
  const auto items = py::reinterpret_borrow<py::sequence>(seq);
  for (size_t i = 0; i < n; ++i)
    g.arrays.push_back(describe_numpy(items[i], name, i, optional_items, allow_codes));
  return g;
}

}  // namespace fusedupdates::bindings
