// The one storage-dtype dispatch of both backends, and the compute type of each storage type.
// Each backend names its own 16-bit type (the CPU's _Float16, CUDA's __half); everything else
// is shared, so adding a dtype means one new case here.
#pragma once
#include <stdexcept>
#include <string>
#include <type_traits>

#include "dtype.h"

namespace fusedupdates {

// float16 params keep float arithmetic and float32 state; float32 stays float (never upcast).
template <typename S>
using compute_t = std::conditional_t<std::is_same_v<S, double>, double, float>;

// Calls f(S{}) with S the storage type of `dtype` (Half for float16, BFloat16 for bfloat16). An
// unsupported dtype throws: validation rejects it first, so reaching the throw is a bug, never a
// silent no-op. BFloat16 names the backend's bfloat16 storage type; a backend that has none yet
// leaves it at NoBFloat16 and a bfloat16 dtype then throws like an unknown one (its binding rejects
// bfloat16 arrays with a TypeError before this is reached).
struct NoBFloat16 {};

template <class Half, class BFloat16 = NoBFloat16, class F>
decltype(auto) dispatch_storage(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kFloat16: return f(Half{});
    case DType::kBFloat16:
      if constexpr (!std::is_same_v<BFloat16, NoBFloat16>) return f(BFloat16{});
      break;
    case DType::kFloat32: return f(float{});
    case DType::kFloat64: return f(double{});
    default: break;
  }
  throw std::invalid_argument("fusedupdates: unsupported storage dtype id " +
                              std::to_string(static_cast<int>(dtype)));
}

}  // namespace fusedupdates
