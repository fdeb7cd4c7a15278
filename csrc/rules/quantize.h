// Compact optimizer state: the 8-bit blockwise code (state_dtype="int8"), its per-element
// math only. Loops, tiles and the block scales' storage live in the backends.
//
// A block of kQuantBlock consecutive elements of one state shares one float32 scale, its
// absmax A (the largest finite |x|; Dettmers et al., "8-bit Optimizers via Block-wise
// Quantization", 2022). Each element is stored as one byte of a non-linear code: a tiny float
// format whose largest used value, 1, stands for A (a power of two, so that decoding the
// absmax element gives A exactly) and smaller values keep a constant relative precision (3
// mantissa bits) down to a floor far below A:
//   signed code (first moments, velocity): sign bit + E4M3, values from A down to
//     A * 2^-15 * 1.125, then 0;
//   unsigned code (second moments and other never-negative states): E5M3, values from A
//     down to A * 2^-31 * 1.125.
// (The codes above 1 in the top binade, 7 signed and 6 unsigned, are never produced.)
// Why these and not the paper's dynamic tree code: both decode and encode with a few integer
// operations on float32's bits (no search of a 256-entry table), which is what keeps the
// codec's cost near the update's own; and the unsigned range (2^-31) covers the square of the
// signed range (2^-15), so where adam's m is still nonzero its v is too (a v that rounded to 0
// under a nonzero m would step by m / eps).
// A non-finite value (NaN, +-Inf) is stored as the code's NaN and ignored by the block's
// absmax, so it stays in its own element instead of spoiling the block. A block whose absmax is
// below FLT_MIN stores scale 0: all its finite values become 0.
#pragma once
#include <cstdint>
#include <cstring>

#include "common.h"

namespace fusedupdates {

// Elements per block scale: 4 bytes per 256 elements, 1.6% on top of the 1-byte codes (state
// memory 25.4% of float32). The block is also the tile of the CPU loop for 8-bit state.
// Measured with the pipelined SIMD codec on the 2-core Zen 3 VM (AVX2; bench/native and
// bench/ab_step.py, adam): against 128, int8 state ~5% faster in cache (0.91 vs 0.95
// ns/element) and at 1M, no slower at 16M or on the model; and 128 put a model's 8-bit state
// over 26% of float32 memory (its small params keep float32 state).
// bench/results/block-size-cpu-2core-zen3-2026-12-06.md. (Before the SIMD codec, on the Xeon,
// 128 had been the fastest: compact-state-cpu-2core-xeon-2026-12-02.md.)
constexpr int64_t kQuantBlock = 256;

constexpr int64_t quant_blocks(int64_t numel) { return (numel + kQuantBlock - 1) / kQuantBlock; }

FU_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}

FU_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// bfloat16 storage (state_dtype="bfloat16", and bfloat16 params): the bits of x rounded to
// nearest even, as ml_dtypes' astype; a NaN keeps its sign and top bits and is made quiet
// (rounding its bits could carry into the exponent and make it Inf). One recipe for the CPU
// tiles and the CUDA kernels.
FU_HD uint16_t bfloat16_bits(float x) {
  const uint32_t u = float_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
FU_HD float bfloat16_value(uint16_t bits) { return bits_float(static_cast<uint32_t>(bits) << 16); }

// One tiny float format without subnormals: magnitude code c in 1..kTop stands for
// 2^(e - kBias) (1 + f / 2^kMantissa) with e = c >> kMantissa, f = its low kMantissa bits, and
// code 0 for zero. Decoding is then a shift and an add into float32's own exponent and
// mantissa fields; encoding the reverse with one rounding add, no search and no float
// subnormals (slow on x86). Values below the smallest code flush to zero.
template <int kMantissa, int kBias, uint32_t kTop>
struct TinyFloat {
  // Added to a code to make float32's biased exponent and mantissa bits of its value.
  static constexpr uint32_t kOffset = (127u - uint32_t(kBias)) << kMantissa;
  static constexpr int kShift = 23 - kMantissa;
  static constexpr float kTopValue = float((1u << kMantissa) + (kTop & ((1u << kMantissa) - 1))) /
                                     float(1u << kMantissa) * float(1ull << (kTop >> kMantissa)) /
                                     float(1ull << kBias);

  // The magnitude of code c (0..kTop), exactly representable in float32.
  FU_HD static float value(uint32_t c) {
    const float v = bits_float((c + kOffset) << kShift);
    return c == 0 ? 0.0f : v;
  }

  // Added to float32's bits before the shift: half of the code's last place rounds to
  // nearest, ties away from zero (the carry goes into the exponent where it should).
  static constexpr uint32_t kNearest = 1u << (kShift - 1);

  // The code of y in [0, kTopValue] (finite), rounded by `rounding` (kNearest, or
  // stochastic_code_rounding's random addend).
  FU_HD static uint32_t encode(float y, uint32_t rounding = kNearest) {
    const int32_t r = int32_t((float_bits(y) + rounding) >> kShift);
    const int32_t c = r - int32_t(kOffset);
    return uint32_t(c < 0 ? 0 : c > int32_t(kTop) ? int32_t(kTop) : c);
  }
};

// Signed code: bit 7 sign, bits 0-6 an E4M3 magnitude, codes 0..120 (values 1 down to
// 2^-15 * 1.125); 0x80 ("-0") is NaN.
struct SignedCode {
  using Magnitude = TinyFloat<3, 15, 120>;
  static constexpr uint8_t kNaN = 0x80;
  static constexpr float kTopValue = Magnitude::kTopValue;  // 1.0
  FU_HD static float decode(uint8_t code, float multiplier) {
    const uint32_t c = code, magnitude = c & 0x7fu;
    const float v =
        bits_float(((c & 0x80u) << 24) | ((magnitude + Magnitude::kOffset) << Magnitude::kShift)) *
        multiplier;
    return c == kNaN ? bits_float(0x7fc00000u) : magnitude == 0 ? 0.0f : v;
  }
  static constexpr uint32_t kNearest = Magnitude::kNearest;
  // x finite; inverse = kTopValue / absmax (0 for a zero block).
  FU_HD static uint8_t encode(float x, float inverse, uint32_t rounding = kNearest) {
    const uint32_t c = Magnitude::encode(FU_MATH::fabs(x) * inverse, rounding);
    const uint32_t sign = (x < 0.0f && c != 0) ? 0x80u : 0u;  // -0 would read as NaN
    return uint8_t(c | sign);
  }
};

// Unsigned code: an E5M3 magnitude of the (never negative) value, codes 0..248 (values 1 down
// to 2^-31 * 1.125); 0xff is NaN.
struct UnsignedCode {
  using Magnitude = TinyFloat<3, 31, 248>;
  static constexpr uint8_t kNaN = 0xff;
  static constexpr float kTopValue = Magnitude::kTopValue;  // 1.0
  FU_HD static float decode(uint8_t code, float multiplier) {
    const float v = Magnitude::value(code) * multiplier;
    return code == kNaN ? bits_float(0x7fc00000u) : v;
  }
  static constexpr uint32_t kNearest = Magnitude::kNearest;
  FU_HD static uint8_t encode(float x, float inverse, uint32_t rounding = kNearest) {
    return uint8_t(Magnitude::encode(FU_MATH::fabs(x) * inverse, rounding));
  }
};

// A block's two per-block factors from its absmax A: decode multiplies a code's value by
// A / top, encode multiplies |x| by top / A. A below FLT_MIN (or zero) makes both 0.
template <class Code>
struct BlockScale {
  float absmax, multiplier, inverse;
  FU_HD explicit BlockScale(float a) {
    const bool usable = a >= 1.17549435e-38f;  // FLT_MIN; also false for a NaN
    absmax = usable ? a : 0.0f;
    multiplier = usable ? a / Code::kTopValue : 0.0f;
    inverse = usable ? Code::kTopValue / a : 0.0f;
  }
};

// |x| if finite, else 0: the term of a block's absmax (non-finite values have their own code).
FU_HD float finite_magnitude(float x) {
  const float a = FU_MATH::fabs(x);
  return a <= 3.40282347e38f ? a : 0.0f;  // false for NaN and Inf
}

// The full element codec of one state value, given its block's scale.
template <class Code>
FU_HD uint8_t quantize_element(float x, const BlockScale<Code>& s,
                               uint32_t rounding = Code::kNearest) {
  return FU_MATH::fabs(x) <= 3.40282347e38f ? Code::encode(x, s.inverse, rounding) : Code::kNaN;
}

// Stochastic rounding of the codes (state_rounding="stochastic"): the rounding addend of
// TinyFloat::encode from 16 uniform random bits, the midpoints of 2^16 equal steps across the
// code's last place (2^20 of float32's bits for both codes), so that y rounds up with
// probability equal to its fraction of the way to the next code (to 2^-16): between two codes
// the value is linear in float32's bits, in one binade and across the step into the next, so
// the rounded code is unbiased. Its largest value, 2^20 - 8, keeps the block's absmax element
// (y <= 1 + 2^-23, as compact_simd.h's encoder relies on) at the top code. The floor is biased
// toward zero: y below 2^-15 (signed; unsigned 2^-31) still flushes to 0, and y between that
// and the smallest code (1.125 times it) rounds as if code 0 stood for 2^-15.
FU_HD constexpr uint32_t stochastic_code_rounding(uint32_t random16) {
  static_assert(SignedCode::Magnitude::kShift == 20 && UnsignedCode::Magnitude::kShift == 20,
                "16 random bits shifted to the code's last place, 2^20");
  return (random16 << 4) | 8u;
}

}  // namespace fusedupdates
