// Tiles of compact state to float and back: the loops around the 8-bit code of
// csrc/rules/quantize.h (one block = one tile) and around the bfloat16 conversions.
#pragma once
#include <algorithm>
#include <cstdint>

#include "../rules/quantize.h"
#include "step_plan.h"
#include "storage.h"

#ifndef FU_ISA_NS
#error "included only by the per-instruction-set kernels (FU_ISA_NS names their namespace)"
#endif

namespace fusedupdates::cpu {
inline namespace FU_ISA_NS {  // see storage.h

// One block of codes (w <= kQuantBlock) with its absmax to floats.
template <class Code>
void decode_block(const uint8_t* __restrict codes, float absmax, float* __restrict out, int64_t w) {
  const float multiplier = BlockScale<Code>(absmax).multiplier;
#pragma omp simd
  for (int64_t i = 0; i < w; ++i) out[i] = Code::decode(codes[i], multiplier);
}

// w floats to one block of codes; returns the block's absmax as stored (0 for a block of
// zeros, or of values too small for a float32 scale).
template <class Code>
float encode_block(const float* __restrict x, uint8_t* __restrict codes, int64_t w) {
  float absmax = 0.0f;
#pragma omp simd reduction(max : absmax)
  for (int64_t i = 0; i < w; ++i) absmax = std::max(absmax, finite_magnitude(x[i]));
  const BlockScale<Code> scale(absmax);
#pragma omp simd
  for (int64_t i = 0; i < w; ++i) codes[i] = quantize_element(x[i], scale);
  return scale.absmax;
}

inline void decode_block_signed(const uint8_t* codes, float absmax, float* out, int64_t w,
                                bool is_signed) {
  if (is_signed)
    decode_block<SignedCode>(codes, absmax, out, w);
  else
    decode_block<UnsignedCode>(codes, absmax, out, w);
}

inline float encode_block_signed(const float* x, uint8_t* codes, int64_t w, bool is_signed) {
  return is_signed ? encode_block<SignedCode>(x, codes, w)
                   : encode_block<UnsignedCode>(x, codes, w);
}

// One state of one tensor in a compact format, seen from a tile starting at element `at`
// (a multiple of kQuantBlock for the 8-bit format).
template <StateFormat F>
struct CompactState {
  void* data;
  float* scales;  // kInt8 only
  bool is_signed;

  void load(int64_t at, float* out, int64_t w) const {
    if constexpr (F == StateFormat::kBFloat16) {
      widen(static_cast<const bfloat16_t*>(data) + at, out, w);
    } else {
      decode_block_signed(static_cast<const uint8_t*>(data) + at, scales[at / kQuantBlock], out, w,
                          is_signed);
    }
  }
  void store(int64_t at, const float* in, int64_t w) const {
    if constexpr (F == StateFormat::kBFloat16) {
      narrow(in, static_cast<bfloat16_t*>(data) + at, w);
    } else {
      scales[at / kQuantBlock] =
          encode_block_signed(in, static_cast<uint8_t*>(data) + at, w, is_signed);
    }
  }
};

}  // namespace FU_ISA_NS
}  // namespace fusedupdates::cpu
