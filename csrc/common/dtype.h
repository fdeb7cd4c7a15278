// Storage dtypes the library accepts, and the compute/state type that goes with each.
#pragma once
#include <cstdint>

namespace fusedupdates {

// kBFloat16 (NumPy: ml_dtypes.bfloat16) is appended so the existing ids keep their values.
enum class DType : int {
  kFloat16 = 0,
  kFloat32 = 1,
  kFloat64 = 2,
  kBFloat16 = 3,
  kUInt8 = 4,  // only the codes of 8-bit compact state; never a param or grad
  kUnsupported = -1
};

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::kFloat16: return "float16";
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kBFloat16: return "bfloat16";
    case DType::kUInt8: return "uint8";
    default: return "unsupported";
  }
}

inline int64_t dtype_size(DType d) {
  if (d == DType::kUInt8) return 1;
  return d == DType::kFloat16 || d == DType::kBFloat16 ? 2 : d == DType::kFloat32 ? 4 : 8;
}

// float16 and bfloat16 parameters keep float32 state and float32 arithmetic.
inline DType state_dtype(DType param) {
  return param == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32;
}

}  // namespace fusedupdates
