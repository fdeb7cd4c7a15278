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

// How a tensor's optimizer states are stored (every state of one tensor alike, its velocity
// included): in the compute dtype, as bfloat16 (rounded to nearest even after each step) or as
// the 8-bit blockwise code of csrc/rules/quantize.h with one float32 absmax per kQuantBlock
// elements. Both backends' plans and launches carry it.
enum class StateFormat : int32_t { kFull = 0, kBFloat16 = 1, kInt8 = 2 };

// The format of states stored in `storage` (a param's state storage, as FixedArrays finds it).
inline StateFormat state_format_of(DType storage) {
  return storage == DType::kBFloat16 ? StateFormat::kBFloat16
         : storage == DType::kUInt8  ? StateFormat::kInt8
                                     : StateFormat::kFull;
}

}  // namespace fusedupdates
