// AVX-512 forms of the 8-bit block codec of csrc/rules/quantize.h, for full blocks whose values
// are all finite (the common case): the same integer operations on float32's bits, 16 lanes at
// a time, giving the same bytes as the per-element functors (tested bit for bit). Blocks with
// a non-finite value or a NaN code, partial blocks and the other instruction sets take the
// element-wise loops of compact_codec.h.
// Why by hand: GCC 12 vectorises those loops, but spends twice as many instructions as these
// (the NaN and zero selects on every element, a scalar-width absmax), and with two or three
// 8-bit states the int8 adam step ran at 2.5x the float32 step's time in cache.
#pragma once
#include <cstdint>

#include "../rules/quantize.h"

#ifndef FU_ISA_NS
#error "included only by the per-instruction-set kernels (FU_ISA_NS names their namespace)"
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#define FU_COMPACT_SIMD 1
#endif

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

constexpr int kLanes = 16;
static_assert(kQuantBlock % 64 == 0, "the SIMD codec works on whole 64-byte lines of codes");

// Whether any of the block's kQuantBlock codes is `code` (the code's NaN).
[[gnu::always_inline]] inline bool block_has_code(const uint8_t* codes, uint8_t code) {
  const __m512i needle = _mm512_set1_epi8(static_cast<char>(code));
  __mmask64 any = 0;
  for (int64_t i = 0; i < kQuantBlock; i += 64)
    any |= _mm512_cmpeq_epi8_mask(_mm512_loadu_si512(codes + i), needle);
  return any != 0;
}

// |x| * inverse (non-negative, finite, scaled so that it is <= top) to magnitude codes as
// TinyFloat::encode: to nearest, ties away, as int32. The offset is subtracted before the
// (arithmetic) shift, which is the same as after it (it is a multiple of 2^shift); below the
// smallest code the result is negative, which the saturating pack to bytes makes 0. No clamp
// at kTop: the block's own absmax A scales every |x| <= A to at most fl(A * fl(1/A)) <=
// 1 + 2^-23, which rounds to the top code itself.
template <class Magnitude>
[[gnu::always_inline]] inline __m512i magnitude_codes(__m512i magnitude_bits, __m512 inverse) {
  constexpr int32_t kRoundedOffset =
      int32_t(1u << (Magnitude::kShift - 1)) - int32_t(Magnitude::kOffset << Magnitude::kShift);
  const __m512 y = _mm512_mul_ps(_mm512_castsi512_ps(magnitude_bits), inverse);
  return _mm512_srai_epi32(
      _mm512_add_epi32(_mm512_castps_si512(y), _mm512_set1_epi32(kRoundedOffset)),
      Magnitude::kShift);
}

// 64 int32 codes (4 vectors, each 0..255 or negative) to 64 bytes in order: the saturating
// packs make a negative code 0 and work within 128-bit lanes, so that lane i then holds
// dwords i of a, b, c, d; one permutation puts them back in order.
[[gnu::always_inline]] inline void store_codes64(uint8_t* out, __m512i a, __m512i b, __m512i c,
                                                 __m512i d) {
  const __m512i bytes = _mm512_packus_epi16(_mm512_packus_epi32(a, b), _mm512_packus_epi32(c, d));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  _mm512_storeu_si512(out, _mm512_permutexvar_epi32(order, bytes));
}

template <class Code>
struct SimdCodec;

// Signed code (first moments, the velocity): sign bit + E4M3 magnitude.
template <>
struct SimdCodec<SignedCode> {
  using M = SignedCode::Magnitude;
  static_assert(M::kShift == 20 && (M::kOffset << M::kShift) == 0x38000000u,
                "the decoder below spells out E4M3's exponent offset");
  // 16 codes, sign-extended to int32 (for decode).
  [[gnu::always_inline]] static __m512i load(const uint8_t* codes) {
    return _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes)));
  }
  // Sign-extended, c << 20 holds the magnitude's 7 bits in 20..26 and the sign in 27..31. The
  // value's bits are ((magnitude + kOffset) << 20) | sign << 31, and kOffset << 20 is
  // 0x38000000, exactly the exponent bits 27..30 as 0111 (no carries: the magnitude's exponent
  // part is below 16), so one bitwise select makes them: bits 27..30 from 0x38000000, the rest
  // from c << 20. Code 0 decodes to 0 (the mask); the NaN code 0x80 is not passed here.
  [[gnu::always_inline]] static __m512 decode(__m512i c, __m512 multiplier) {
    const __m512i bits =
        _mm512_ternarylogic_epi32(_mm512_slli_epi32(c, 20), _mm512_set1_epi32(0x78000000),
                                  _mm512_set1_epi32(0x38000000), 0xB8);  // B ? C : A
    return _mm512_maskz_mul_ps(_mm512_test_epi32_mask(c, c), _mm512_castsi512_ps(bits), multiplier);
  }
  // |x| as float32 bits: the term of the block's absmax and the encoder's input.
  [[gnu::always_inline]] static __m512i magnitude(__m512i bits) {
    return _mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff));
  }
  // x's sign where the magnitude code is nonzero ("-0" would read as NaN); a negative
  // (flushed) code stays negative, which the pack makes 0.
  [[gnu::always_inline]] static __m512i encode(__m512i bits, __m512i magnitude_bits,
                                               __m512 inverse) {
    const __m512i c = magnitude_codes<M>(magnitude_bits, inverse);
    const __mmask16 nonzero = _mm512_test_epi32_mask(c, c);
    return _mm512_mask_ternarylogic_epi32(c, nonzero, _mm512_srli_epi32(bits, 24),
                                          _mm512_set1_epi32(0x80), 0xF8);  // A | (B & C)
  }
};

// Unsigned code (second moments and other never-negative states): E5M3 magnitude.
template <>
struct SimdCodec<UnsignedCode> {
  using M = UnsignedCode::Magnitude;
  [[gnu::always_inline]] static __m512i load(const uint8_t* codes) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes)));
  }
  // (c + offset) << shift, 0 for code 0.
  [[gnu::always_inline]] static __m512 decode(__m512i c, __m512 multiplier) {
    const __mmask16 nonzero = _mm512_test_epi32_mask(c, c);
    const __m512i bits = _mm512_slli_epi32(
        _mm512_maskz_add_epi32(nonzero, c, _mm512_set1_epi32(M::kOffset)), M::kShift);
    return _mm512_mul_ps(_mm512_castsi512_ps(bits), multiplier);
  }
  // The bits themselves, no sign cleared: the states this code stores are never negative, and
  // any value with its sign bit set (-0, a negative NaN, a rule's bug) has bits >= 0x80000000,
  // so that its block reads as non-finite and takes the element-wise encoder, which stores
  // |x| as before.
  [[gnu::always_inline]] static __m512i magnitude(__m512i bits) { return bits; }
  [[gnu::always_inline]] static __m512i encode(__m512i, __m512i magnitude_bits, __m512 inverse) {
    return magnitude_codes<M>(magnitude_bits, inverse);
  }
};

// A block's 128 values as float32 bits and as the code's magnitudes (kept in registers
// between the absmax and the codes).
template <class Code>
struct BlockMagnitudes {
  static constexpr int kVectors = kQuantBlock / kLanes;
  __m512i bits[kVectors];
  [[gnu::always_inline]] explicit BlockMagnitudes(const float* x) {
    for (int v = 0; v < kVectors; ++v) bits[v] = _mm512_loadu_si512(x + v * kLanes);
  }
  [[gnu::always_inline]] __m512i magnitude(int v) const {
    return SimdCodec<Code>::magnitude(bits[v]);
  }
  // The largest: for non-negative floats the integer order is the float order, and a result
  // >= 0x7f800000 means the block holds an Inf or a NaN (or, for the unsigned code, a value
  // with its sign bit set).
  [[gnu::always_inline]] uint32_t max_bits() const {
    __m512i m = magnitude(0);
    for (int v = 1; v < kVectors; ++v) m = _mm512_max_epu32(m, magnitude(v));
    return static_cast<uint32_t>(_mm512_reduce_max_epu32(m));
  }
};

// A full block of codes to floats; false (nothing written) if it holds a NaN code.
template <class Code>
[[gnu::always_inline]] inline bool decode_full_block_simd(const uint8_t* __restrict codes,
                                                          float absmax, float* __restrict out) {
  if (block_has_code(codes, Code::kNaN)) return false;
  const __m512 multiplier = _mm512_set1_ps(BlockScale<Code>(absmax).multiplier);
  for (int64_t i = 0; i < kQuantBlock; i += kLanes)
    _mm512_storeu_ps(out + i,
                     SimdCodec<Code>::decode(SimdCodec<Code>::load(codes + i), multiplier));
  return true;
}

// Encoding a full block in two halves, so that a caller can write one block's codes after it
// has started on the next block: the absmax's reduction and the division for the scale are a
// long chain of latency, and the code pass queued right behind it stalled the next block's
// update (adam int8 ~5% faster in cache with the codes one block late).
// The first half: the block's largest |x| as float32 bits; >= 0x7f800000 means the block
// holds a value the SIMD encoder does not take (BlockMagnitudes::max_bits), and the
// element-wise encode_block handles it.
template <class Code>
[[gnu::always_inline]] inline uint32_t full_block_max_bits(const float* x) {
  return BlockMagnitudes<Code>(x).max_bits();
}

// The second half: the codes of a full block whose full_block_max_bits is below 0x7f800000,
// under its scale's inverse.
template <class Code>
[[gnu::always_inline]] inline void encode_full_block_codes(const float* __restrict x,
                                                           uint8_t* __restrict codes,
                                                           float inverse) {
  const BlockMagnitudes<Code> block(x);
  const __m512 inv = _mm512_set1_ps(inverse);
  for (int v = 0; v < BlockMagnitudes<Code>::kVectors; v += 4) {
    const auto codes_of = [&](int u) {
      return SimdCodec<Code>::encode(block.bits[u], block.magnitude(u), inv);
    };
    store_codes64(codes + v * kLanes, codes_of(v), codes_of(v + 1), codes_of(v + 2),
                  codes_of(v + 3));
  }
}

// Both halves at once; writes the block's absmax as stored. False (nothing written) if the
// block holds a non-finite value.
template <class Code>
[[gnu::always_inline]] inline bool encode_full_block_simd(const float* __restrict x,
                                                          uint8_t* __restrict codes,
                                                          float* absmax) {
  const uint32_t max_bits = full_block_max_bits<Code>(x);
  if (max_bits >= 0x7f800000u) return false;
  const BlockScale<Code> scale(bits_float(max_bits));
  encode_full_block_codes<Code>(x, codes, scale.inverse);
  *absmax = scale.absmax;
  return true;
}

}  // namespace FU_ISA_NS
}  // namespace fusedupdates::cpu

#endif  // AVX-512
