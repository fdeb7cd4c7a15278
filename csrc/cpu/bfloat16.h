// bfloat16 storage on the CPU: the type, its scalar conversions and the vectorised tile
// conversions the kernels use (the float16 ones are in storage.h). bfloat16 is the top half of
// a float32, so widening is a 16-bit shift; narrowing rounds to nearest even in integer
// arithmetic (NaN stays a quiet NaN of the same sign), exactly as ml_dtypes' astype does for
// every finite value and infinity.
#pragma once
#include <cstdint>
#include <cstring>

#include "../rules/quantize.h"

#if defined(__SSE2__)
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

// The scalar conversions: csrc/rules/quantize.h's recipe (shared with the CUDA kernels).
inline float bf16_bits_to_float(uint16_t bits) { return bfloat16_value(bits); }
inline uint16_t float_to_bf16_bits(float x) { return bfloat16_bits(x); }

// The bit pattern of one ml_dtypes.bfloat16 element. The explicit conversions make the generic
// scalar loops (bandwidth probe) work; the rule kernels use the tile conversions below.
struct bfloat16_t {
  uint16_t bits;
  bfloat16_t() = default;
  explicit bfloat16_t(float x) : bits(float_to_bf16_bits(x)) {}
  explicit operator float() const { return bf16_bits_to_float(bits); }
};
static_assert(sizeof(bfloat16_t) == 2, "bfloat16_t must be two bytes");

inline void widen(const bfloat16_t* __restrict in, float* __restrict out, int64_t n) {
  const auto* src = reinterpret_cast<const uint16_t*>(in);
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    _mm512_storeu_si512(out + i, _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
#elif defined(__AVX2__)
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
#elif defined(__SSE2__)
  const __m128i zero = _mm_setzero_si128();
  for (; i + 8 <= n; i += 8) {  // interleaving zeros below each element is the shift
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm_unpacklo_epi16(zero, h));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i + 4), _mm_unpackhi_epi16(zero, h));
  }
#endif
  for (; i < n; ++i) out[i] = bf16_bits_to_float(src[i]);
}

#if defined(__AVX512F__) && !defined(__AVX512BF16__)
// 16 floats -> 16 bfloat16 bit patterns (in the low halves of 32-bit lanes): the integer
// round-to-nearest-even of float_to_bf16_bits, NaN lanes replaced by their quiet truncation.
inline __m512i bf16_round_avx512(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i top = _mm512_srli_epi32(u, 16);
  const __m512i lsb = _mm512_and_si512(top, _mm512_set1_epi32(1));
  const __m512i bias = _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb);
  const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, bias), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  return _mm512_mask_mov_epi32(rounded, nan, _mm512_or_si512(top, _mm512_set1_epi32(0x40)));
}
#endif

#if defined(__AVX2__) && !defined(__AVX512F__)
inline __m256i bf16_round_avx2(__m256 x) {
  const __m256i u = _mm256_castps_si256(x);
  const __m256i top = _mm256_srli_epi32(u, 16);
  const __m256i lsb = _mm256_and_si256(top, _mm256_set1_epi32(1));
  const __m256i bias = _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb);
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  return _mm256_blendv_epi8(rounded, _mm256_or_si256(top, _mm256_set1_epi32(0x40)), nan);
}
#endif

inline void narrow(const float* __restrict in, bfloat16_t* __restrict out, int64_t n) {
  auto* dst = reinterpret_cast<uint16_t*>(out);
  int64_t i = 0;
#if defined(__AVX512BF16__)
  // VCVTNEPS2BF16: round to nearest even in one instruction; it treats float32 subnormals as
  // zero and flushes bfloat16 subnormals (|x| < 2^-126) to zero, the integer path keeps them.
  // The tail goes through the instruction too (masked), so every element rounds alike.
  for (; i < n; i += 16) {
    const __mmask16 lanes = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
    const __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(lanes, in + i));
    _mm256_mask_storeu_epi16(dst + i, lanes, (__m256i)h);
  }
#elif defined(__AVX512F__)
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                        _mm512_cvtepi32_epi16(bf16_round_avx512(_mm512_loadu_ps(in + i))));
#elif defined(__AVX2__)
  for (; i + 16 <= n; i += 16) {
    const __m256i lo = bf16_round_avx2(_mm256_loadu_ps(in + i));
    const __m256i hi = bf16_round_avx2(_mm256_loadu_ps(in + i + 8));
    // packus works per 128-bit lane: reorder the 64-bit quarters back into element order.
    const __m256i packed = _mm256_packus_epi32(lo, hi);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                        _mm256_permute4x64_epi64(packed, _MM_SHUFFLE(3, 1, 2, 0)));
  }
#endif
  for (; i < n; ++i) dst[i] = float_to_bf16_bits(in[i]);
}

}  // namespace FU_ISA_NS
}  // namespace fusedupdates::cpu
