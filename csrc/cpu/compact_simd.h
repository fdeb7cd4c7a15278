// SIMD forms of the 8-bit block codec of csrc/rules/quantize.h (AVX-512 or AVX2, through
// simd_vec.h's Vec), for full blocks whose values are all finite (the common case): the same
// integer operations on float32's bits, Vec::kLanes lanes at a time, giving the same bytes as
// the per-element functors (tested bit for bit on every instruction set). Blocks with a
// non-finite value or a NaN code, partial blocks and the baseline instruction set take the
// element-wise loops of compact_codec.h.
// Why by hand: GCC 12 vectorises those loops, but spends twice as many instructions as these
// (the NaN and zero selects on every element, a scalar-width absmax), and with two or three
// 8-bit states the int8 adam step ran at 2.5x the float32 step's time in cache.
#pragma once
#include <cstdint>

#include "../rules/quantize.h"
#include "simd_vec.h"

namespace fusedupdates::cpu {
inline namespace FU_ISA_NS {
#if defined(FU_COMPACT_SIMD)
constexpr bool kCompactSimd = true;
#else
constexpr bool kCompactSimd = false;
#endif
}  // namespace FU_ISA_NS
}  // namespace fusedupdates::cpu

#if defined(FU_COMPACT_SIMD)

namespace fusedupdates::cpu {
inline namespace FU_ISA_NS {  // see storage.h

constexpr int kLanes = Vec::kLanes;
static_assert(kQuantBlock % 64 == 0, "the SIMD codec works on whole 64-byte lines of codes");

// Whether any of the block's kQuantBlock codes is `code` (the code's NaN).
[[gnu::always_inline]] inline bool block_has_code(const uint8_t* codes, uint8_t code) {
  return Vec::any_byte_is(codes, kQuantBlock, code);
}

// |x| * inverse (non-negative, finite, scaled so that it is <= top) to magnitude codes as
// TinyFloat::encode, as int32: to nearest, ties away (rounding null), or with the kLanes
// stochastic_code_rounding addends at `rounding`. The offset is subtracted before the
// (arithmetic) shift, which is the same as after it (it is a multiple of 2^shift); below the
// smallest code the result is negative, which the saturating pack to bytes makes 0. No clamp
// at kTop: the block's own absmax A scales every |x| <= A to at most fl(A * fl(1/A)) <=
// 1 + 2^-23, which rounds to the top code itself (either addend is at most 2^shift - 8).
template <class Magnitude>
[[gnu::always_inline]] inline Vec::I magnitude_codes(Vec::I magnitude_bits, Vec::F inverse,
                                                     const uint32_t* rounding) {
  constexpr int32_t kOffsetBits = int32_t(Magnitude::kOffset << Magnitude::kShift);
  const Vec::F y = Vec::mul(Vec::as_float(magnitude_bits), inverse);
  // (a null `rounding` is a constant where this is inlined: the load folds away)
  const Vec::I addend = rounding == nullptr
                            ? Vec::set1(int32_t(Magnitude::kNearest) - kOffsetBits)
                            : Vec::add(Vec::load_bits(reinterpret_cast<const float*>(rounding)),
                                       Vec::set1(-kOffsetBits));
  return Vec::shift_right_arithmetic<Magnitude::kShift>(Vec::add(Vec::as_int(y), addend));
}

template <class Code>
struct SimdCodec;

// Signed code (first moments, the velocity): sign bit + E4M3 magnitude.
template <>
struct SimdCodec<SignedCode> {
  using M = SignedCode::Magnitude;
  static_assert(M::kShift == 20 && (M::kOffset << M::kShift) == 0x38000000u,
                "the decoder below spells out E4M3's exponent offset");
  // kLanes codes, sign-extended to int32 (for decode).
  [[gnu::always_inline]] static Vec::I load(const uint8_t* codes) {
    return Vec::load_codes_signed(codes);
  }
  // Sign-extended, c << 20 holds the magnitude's 7 bits in 20..26 and the sign in 27..31. The
  // value's bits are ((magnitude + kOffset) << 20) | sign << 31, and kOffset << 20 is
  // 0x38000000, exactly the exponent bits 27..30 as 0111 (no carries: the magnitude's exponent
  // part is below 16), so one bitwise select makes them: bits 27..30 from 0x38000000, the rest
  // from c << 20. Code 0 decodes to 0 (the mask); the NaN code 0x80 is not passed here.
  [[gnu::always_inline]] static Vec::F decode(Vec::I c, Vec::F multiplier) {
    const Vec::I bits =
        Vec::select_bits(Vec::set1(0x78000000), Vec::set1(0x38000000), Vec::shift_left<20>(c));
    return Vec::mul_where_nonzero(c, Vec::as_float(bits), multiplier);
  }
  // |x| as float32 bits: the term of the block's absmax and the encoder's input.
  [[gnu::always_inline]] static Vec::I magnitude(Vec::I bits) {
    return Vec::bit_and(bits, Vec::set1(0x7fffffff));
  }
  // x's sign where the magnitude code is nonzero ("-0" would read as NaN); a negative
  // (flushed) code stays negative, which the pack makes 0.
  [[gnu::always_inline]] static Vec::I encode(Vec::I bits, Vec::I magnitude_bits, Vec::F inverse,
                                              const uint32_t* rounding) {
    const Vec::I c = magnitude_codes<M>(magnitude_bits, inverse, rounding);
    return Vec::or_masked_where_nonzero(c, Vec::shift_right_logical<24>(bits), Vec::set1(0x80));
  }
};

// Unsigned code (second moments and other never-negative states): E5M3 magnitude.
template <>
struct SimdCodec<UnsignedCode> {
  using M = UnsignedCode::Magnitude;
  [[gnu::always_inline]] static Vec::I load(const uint8_t* codes) {
    return Vec::load_codes_unsigned(codes);
  }
  // (c + offset) << shift, 0 for code 0.
  [[gnu::always_inline]] static Vec::F decode(Vec::I c, Vec::F multiplier) {
    const Vec::I bits =
        Vec::shift_left<M::kShift>(Vec::add_where_nonzero(c, Vec::set1(int32_t(M::kOffset))));
    return Vec::mul(Vec::as_float(bits), multiplier);
  }
  // The bits themselves, no sign cleared: the states this code stores are never negative, and
  // any value with its sign bit set (-0, a negative NaN, a rule's bug) has bits >= 0x80000000,
  // so that its block reads as non-finite and takes the element-wise encoder, which stores
  // |x| as before.
  [[gnu::always_inline]] static Vec::I magnitude(Vec::I bits) { return bits; }
  [[gnu::always_inline]] static Vec::I encode(Vec::I, Vec::I magnitude_bits, Vec::F inverse,
                                              const uint32_t* rounding) {
    return magnitude_codes<M>(magnitude_bits, inverse, rounding);
  }
};

// The codes of the 64 values x[0..64) under the inverse of their block's scale, rounded to
// nearest (rounding null) or by the 64 addends at `rounding` (stochastic).
template <class Code, bool kAligned = false>
[[gnu::always_inline]] inline void encode_line(const float* __restrict x, uint8_t* __restrict codes,
                                               Vec::F inverse, const uint32_t* rounding = nullptr) {
  Vec::I c[Vec::kVectorsPerLine];
#pragma GCC unroll 8
  for (int u = 0; u < Vec::kVectorsPerLine; ++u) {
    const Vec::I bits =
        kAligned ? Vec::load_aligned_bits(x + u * kLanes) : Vec::load_bits(x + u * kLanes);
    c[u] = SimdCodec<Code>::encode(bits, SimdCodec<Code>::magnitude(bits), inverse,
                                   rounding == nullptr ? nullptr : rounding + u * kLanes);
  }
  Vec::store_codes64(codes, c);
}

// A full block of codes to floats; false (nothing written) if it holds a NaN code.
template <class Code>
[[gnu::always_inline]] inline bool decode_full_block_simd(const uint8_t* __restrict codes,
                                                          float absmax, float* __restrict out) {
  if (block_has_code(codes, Code::kNaN)) return false;
  const Vec::F multiplier = Vec::set1(BlockScale<Code>(absmax).multiplier);
  for (int64_t i = 0; i < kQuantBlock; i += kLanes)
    Vec::store(out + i, SimdCodec<Code>::decode(SimdCodec<Code>::load(codes + i), multiplier));
  return true;
}

// Encoding a full block in two halves, so that a caller can write one block's codes after it
// has started on the next block: the absmax's reduction and the division for the scale are a
// long chain of latency, and the code pass queued right behind it stalled the next block's
// update (adam int8 ~5% faster in cache with the codes one block late).
// The first half: the block's largest |x| as float32 bits. For non-negative floats the integer
// order is the float order, and a result >= 0x7f800000 means the block holds an Inf or a NaN
// (or, for the unsigned code, a value with its sign bit set), which the element-wise
// encode_block handles.
template <class Code>
[[gnu::always_inline]] inline uint32_t full_block_max_bits(const float* x) {
  Vec::I m = SimdCodec<Code>::magnitude(Vec::load_bits(x));
  for (int v = 1; v < kQuantBlock / kLanes; ++v)
    m = Vec::max_unsigned(m, SimdCodec<Code>::magnitude(Vec::load_bits(x + v * kLanes)));
  return Vec::reduce_max_unsigned(m);
}

// The second half: the codes of a full block whose full_block_max_bits is below 0x7f800000,
// under its scale's inverse (rounding: as encode_line's, for the whole block).
template <class Code>
[[gnu::always_inline]] inline void encode_full_block_codes(const float* __restrict x,
                                                           uint8_t* __restrict codes, float inverse,
                                                           const uint32_t* rounding = nullptr) {
  const Vec::F inv = Vec::set1(inverse);
  for (int q = 0; q < kQuantBlock; q += 64)
    encode_line<Code>(x + q, codes + q, inv, rounding == nullptr ? nullptr : rounding + q);
}

// Both halves at once; writes the block's absmax as stored. False (nothing written) if the
// block holds a non-finite value.
template <class Code>
[[gnu::always_inline]] inline bool encode_full_block_simd(const float* __restrict x,
                                                          uint8_t* __restrict codes, float* absmax,
                                                          const uint32_t* rounding = nullptr) {
  const uint32_t max_bits = full_block_max_bits<Code>(x);
  if (max_bits >= 0x7f800000u) return false;
  const BlockScale<Code> scale(bits_float(max_bits));
  encode_full_block_codes<Code>(x, codes, scale.inverse, rounding);
  *absmax = scale.absmax;
  return true;
}

}  // namespace FU_ISA_NS
}  // namespace fusedupdates::cpu

#endif  // FU_COMPACT_SIMD
