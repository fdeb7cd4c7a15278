// Loads and stores between a storage type S and the compute type T. With bfloat16.h, the only
// place that knows the 16-bit types exist on the CPU.
#pragma once
#include <cstdint>
#include <type_traits>
#include <utility>

#include "../common/dtype_dispatch.h"
#include "bfloat16.h"

#if defined(__F16C__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#ifndef FU_ISA_NS
#error "included only by the per-instruction-set kernels (FU_ISA_NS names their namespace)"
#endif

// Inside the instruction set's inline namespace: each ISA's object file compiles these inline
// functions with its own -march flags, and a shared name would let the linker keep one copy
// (say the AVX-512 one) for every ISA's out-of-line calls.
namespace fusedupdates::cpu {
inline namespace FU_ISA_NS {

#if defined(__FLT16_MAX__)
using half_t = _Float16;  // GCC >= 12 / Clang native type
#else
#error "fusedupdates needs a compiler with _Float16 support (GCC >= 12 or Clang >= 15)"
#endif

using fusedupdates::compute_t;  // csrc/common/dtype_dispatch.h

// The 16-bit storage types: float32 state and arithmetic, processed in float tiles.
template <class S>
constexpr bool kIs16Bit = std::is_same_v<S, half_t> || std::is_same_v<S, bfloat16_t>;

// GCC 12 cannot vectorise _Float16 <-> float conversions without AVX512-FP16, so float16 (and,
// the same way, bfloat16) pieces are widened a tile at a time with F16C / AVX-512 instructions,
// processed by the (vectorised) float loop, and narrowed back with round-to-nearest-even, exactly
// as a scalar static_cast would; branch-free bit-twiddling conversions in one loop were 1.6x
// slower in cache (2-core EPYC). Tile size and prefetch distance measured together on the 2-core
// Xeon (adam, bfloat16 / float16, 16M and 1M, paired rounds against the float32 stream): tiles of
// 128 with prefetch hints 512 elements ahead streamed at 97-100% of the float32 stream's GB/s;
// 64 was level or a little slower, 256 with the same hints 83%, and 256 without hints (the
// EPYC's choice) 78-82% at 16M. 1024 elements ahead was level, 2048 slower in cache (1M).
constexpr int64_t kHalfTile = 128;
constexpr int64_t kPrefetchElements = 512;

// The shared dispatch (csrc/common/dtype_dispatch.h) with this backend's 16-bit types; it
// throws on an unknown dtype instead of silently doing nothing.
template <class F>
void dispatch_dtype(DType dtype, F&& f) {
  dispatch_storage<half_t, bfloat16_t>(dtype, std::forward<F>(f));
}

inline void widen(const half_t* __restrict in, float* __restrict out, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i,
                     _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i))));
#elif defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))));
#endif
  for (; i < n; ++i) out[i] = static_cast<float>(in[i]);
}

inline void narrow(const float* __restrict in, half_t* __restrict out, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(
        reinterpret_cast<__m256i*>(out + i),
        _mm512_cvtps_ph(_mm512_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#elif defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(
        reinterpret_cast<__m128i*>(out + i),
        _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
  for (; i < n; ++i) out[i] = static_cast<half_t>(in[i]);
}

}  // namespace FU_ISA_NS
}  // namespace fusedupdates::cpu
