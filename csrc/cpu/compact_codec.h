// Tiles of compact state to float and back: the loops around the 8-bit code of
// csrc/rules/quantize.h (one block = one tile) and around the bfloat16 conversions.
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../rules/quantize.h"
#include "compact_simd.h"
#include "step_plan.h"
#include "storage.h"

#ifndef FU_ISA_NS
#error "included only by the per-instruction-set kernels (FU_ISA_NS names their namespace)"
#endif

namespace fusedupdates::cpu {
inline namespace FU_ISA_NS {  // see storage.h

// One block of codes (w <= kQuantBlock) with its absmax to floats.
template <class Code>
[[gnu::always_inline]] inline void decode_block(const uint8_t* __restrict codes, float absmax,
                                                float* __restrict out, int64_t w) {
#if defined(FU_COMPACT_SIMD)
  if (w == kQuantBlock && decode_full_block_simd<Code>(codes, absmax, out)) return;
#endif
  const float multiplier = BlockScale<Code>(absmax).multiplier;
#pragma omp simd
  for (int64_t i = 0; i < w; ++i) out[i] = Code::decode(codes[i], multiplier);
}

// w floats to one block of codes with the block's new absmax; returns the absmax as stored
// (0 for a block of zeros, or of values too small for a float32 scale). Rounded to nearest,
// or (rounding not null) by the w stochastic_code_rounding addends at `rounding`.
template <class Code>
[[gnu::always_inline]] inline float encode_block(const float* __restrict x,
                                                 uint8_t* __restrict codes, int64_t w,
                                                 const uint32_t* __restrict rounding = nullptr) {
#if defined(FU_COMPACT_SIMD)
  float stored;
  if (w == kQuantBlock && encode_full_block_simd<Code>(x, codes, &stored, rounding)) return stored;
#endif
  float absmax = 0.0f;
#pragma omp simd reduction(max : absmax)
  for (int64_t i = 0; i < w; ++i) absmax = std::max(absmax, finite_magnitude(x[i]));
  const BlockScale<Code> scale(absmax);
#ifndef FU_NO_CODES
  if (rounding == nullptr) {  // (a constant where inlined: one of the loops folds away)
#pragma omp simd
    for (int64_t i = 0; i < w; ++i) codes[i] = quantize_element(x[i], scale);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < w; ++i) codes[i] = quantize_element(x[i], scale, rounding[i]);
  }
#endif
  return scale.absmax;
}

[[gnu::always_inline]] inline void decode_block_signed(const uint8_t* codes, float absmax,
                                                       float* out, int64_t w, bool is_signed) {
  if (is_signed)
    decode_block<SignedCode>(codes, absmax, out, w);
  else
    decode_block<UnsignedCode>(codes, absmax, out, w);
}

[[gnu::always_inline]] inline float encode_block_signed(const float* x, uint8_t* codes, int64_t w,
                                                        bool is_signed,
                                                        const uint32_t* rounding = nullptr) {
  return is_signed ? encode_block<SignedCode>(x, codes, w, rounding)
                   : encode_block<UnsignedCode>(x, codes, w, rounding);
}

// One state of one tensor in a compact format: its stored elements and (8-bit) block scales.
template <StateFormat F>
struct CompactState {
  using Raw = std::conditional_t<F == StateFormat::kInt8, uint8_t, uint16_t>;
  Raw* data;
  float* scales;  // kInt8 only

  // Decoding one element inside the fused loop: the block's multiplier, then decode(raw).
  template <bool kSigned>
  float multiplier(int64_t at) const {
    if constexpr (F == StateFormat::kInt8) {
      using Code = std::conditional_t<kSigned, SignedCode, UnsignedCode>;
      return BlockScale<Code>(scales[at / kQuantBlock]).multiplier;
    } else {
      return 0.0f;
    }
  }
  template <bool kSigned>
  static float decode(Raw raw, float multiplier) {
    if constexpr (F == StateFormat::kInt8) {
      using Code = std::conditional_t<kSigned, SignedCode, UnsignedCode>;
      return Code::decode(raw, multiplier);
    } else {
      return bf16_bits_to_float(raw);
    }
  }
  // A tile of new values back into storage at element `at` (kInt8: with its new absmax, the
  // codes rounded as encode_block's `rounding` says).
  template <bool kSigned>
  [[gnu::always_inline]] void store(int64_t at, const float* tile, int64_t w,
                                    const uint32_t* rounding = nullptr) const {
    if constexpr (F == StateFormat::kInt8) {
      using Code = std::conditional_t<kSigned, SignedCode, UnsignedCode>;
      scales[at / kQuantBlock] = encode_block<Code>(tile, data + at, w, rounding);
    } else {
      narrow(tile, reinterpret_cast<bfloat16_t*>(data + at), w);
    }
  }
};

}  // namespace FU_ISA_NS
}  // namespace fusedupdates::cpu
