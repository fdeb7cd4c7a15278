// Compact optimizer state: the 8-bit blockwise code (state_dtype="int8"), its per-element
// math only. Loops, tiles and the block scales' storage live in the backends.
//
// A block of kQuantBlock consecutive elements of one state shares one float32 scale, its
// absmax A (the largest finite |x|; Dettmers et al., "8-bit Optimizers via Block-wise
// Quantization", 2022). Each element is stored as one byte of a non-linear code: a tiny float
// format whose largest value stands for A, so that the absmax element is exact and smaller
// values keep a constant relative precision down to a floor far below A:
//   signed code (first moments, velocity): sign bit + E3M4 (bias 7): 4 mantissa bits, values
//     from A down to A * 2^-10 / 1.9375, then 0;
//   unsigned code (second moments and other never-negative states): E5M3 (bias 31): values
//     from A down to A * 2^-33 / 1.75.
// Why these and not the paper's dynamic tree code: both encode with a few integer operations
// (no search of a 256-entry table), which keeps the update at memory speed; and the unsigned
// range (2^-33) covers the square of the signed range (2^-10), so where adam's m is still
// nonzero its v is too (a v that rounded to 0 under a nonzero m would step by m / eps).
// A non-finite value (NaN, +-Inf) is stored as the code's NaN and ignored by the block's
// absmax, so it stays in its own element instead of spoiling the block. A block whose absmax is
// below FLT_MIN stores scale 0: all its finite values become 0.
#pragma once
#include <cstdint>
#include <cstring>

#include "common.h"

namespace fusedupdates {

// Elements per block scale: 4 bytes per 256 elements is 1.6% on top of the 1-byte codes.
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

// One tiny float format: kMantissa bits of mantissa, exponent bias kBias, magnitude codes
// 0..kTop (an E-bit exponent field fills the rest of the code).
template <int kMantissa, int kBias, uint32_t kTop>
struct TinyFloat {
  static constexpr uint32_t kMantissaMask = (1u << kMantissa) - 1;
  // Smallest normal magnitude, 2^(1 - bias): below it the code is linear (subnormal).
  static constexpr float kMinNormal = 1.0f / float(1ull << (kBias - 1));
  // Scale of the subnormal codes: value = f * 2^(1 - bias - mantissa).
  static constexpr float kSubnormalStep = kMinNormal / float(1u << kMantissa);

  // The magnitude of code c (0..kTop), exactly representable in float32.
  FU_HD static float value(uint32_t c) {
    const uint32_t e = c >> kMantissa, f = c & kMantissaMask;
    const float normal = bits_float(((e + 127u - uint32_t(kBias)) << 23) | (f << (23 - kMantissa)));
    const float subnormal = float(f) * kSubnormalStep;
    return e == 0 ? subnormal : normal;
  }
  static constexpr float kTopValue =
      (kTop >> kMantissa) == 0
          ? 0.0f
          : float((1u << kMantissa) + (kTop & kMantissaMask)) / float(1u << kMantissa) *
                float(1ull << ((kTop >> kMantissa) - 1)) / float(1ull << (kBias - 1));

  // The code of y in [0, kTopValue] (finite), rounded to nearest, ties to even.
  FU_HD static uint32_t encode(float y) {
    // Subnormal range: y * 2^(bias - 1 + mantissa) < 2^mantissa is exact; adding and
    // subtracting 2^23 rounds it to an integer, to nearest even. (y is clamped first so that
    // the unused lanes of a vector never convert an out-of-range float.)
    const float scaled = (y < kMinNormal ? y : kMinNormal) * (1.0f / kSubnormalStep);
    const uint32_t sub = uint32_t((scaled + 8388608.0f) - 8388608.0f);
    // Normal range: round the float32 mantissa to kMantissa bits in integer arithmetic (a
    // carry moves into the exponent, as it should), then rebias the exponent.
    const uint32_t u = float_bits(y);
    const uint32_t rounded = u + ((1u << (22 - kMantissa)) - 1u) + ((u >> (23 - kMantissa)) & 1u);
    const uint32_t normal = (rounded >> (23 - kMantissa)) - ((127u - uint32_t(kBias)) << kMantissa);
    const uint32_t c = y < kMinNormal ? sub : normal;
    return c < kTop ? c : kTop;
  }
};

// Signed code: bit 7 sign, bits 0-6 E3M4 magnitude; 0x80 ("-0") is NaN.
struct SignedCode {
  using Magnitude = TinyFloat<4, 7, 127>;
  static constexpr uint8_t kNaN = 0x80;
  static constexpr float kTopValue = Magnitude::kTopValue;  // 1.9375
  FU_HD static float decode(uint8_t code, float multiplier) {
    const float m = Magnitude::value(code & 0x7fu) * multiplier;
    return code == kNaN ? bits_float(0x7fc00000u) : (code & 0x80u) ? -m : m;
  }
  // x finite; inverse = kTopValue / absmax (0 for a zero block).
  FU_HD static uint8_t encode(float x, float inverse) {
    const uint32_t c = Magnitude::encode(FU_MATH::fabs(x) * inverse);
    const uint32_t sign = (x < 0.0f && c != 0) ? 0x80u : 0u;  // -0 would read as NaN
    return uint8_t(c | sign);
  }
};

// Unsigned code: E5M3 magnitude of the (never negative) value; 0xff is NaN.
struct UnsignedCode {
  using Magnitude = TinyFloat<3, 31, 254>;
  static constexpr uint8_t kNaN = 0xff;
  static constexpr float kTopValue = Magnitude::kTopValue;  // 1.75
  FU_HD static float decode(uint8_t code, float multiplier) {
    const float m = Magnitude::value(code) * multiplier;
    return code == kNaN ? bits_float(0x7fc00000u) : m;
  }
  FU_HD static uint8_t encode(float x, float inverse) {
    return uint8_t(Magnitude::encode(FU_MATH::fabs(x) * inverse));
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
FU_HD uint8_t quantize_element(float x, const BlockScale<Code>& s) {
  return FU_MATH::fabs(x) <= 3.40282347e38f ? Code::encode(x, s.inverse) : Code::kNaN;
}

}  // namespace fusedupdates
