// Loads and stores between a storage type S and the compute type T. The only place that
// knows float16 exists on the CPU.
#pragma once
#include <type_traits>

namespace fusedupdates::cpu {

#if defined(__FLT16_MAX__)
using half_t = _Float16;  // GCC/Clang native type: converts with F16C/AVX-512 instructions
#else
#error "fusedupdates needs a compiler with _Float16 support (GCC >= 12 or Clang >= 15)"
#endif

template <typename S>
using compute_t = std::conditional_t<std::is_same_v<S, double>, double, float>;

}  // namespace fusedupdates::cpu
