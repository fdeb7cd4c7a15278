// The 8-bit state's loop over full blocks with AVX-512 or AVX2 (compact_simd.h),
// software-pipelined: one block is decoded, updated and measured (its new absmax)
// Vec::update_width elements at a time (one vector with AVX-512, 32 or 64 with AVX2), and
// between those steps the previous block's codes are written under the scale it now has.
// Why interleave by hand: the update's sqrt and division occupy the divider, and the codec is
// integer work for the other ports; next to the divisions in program order, the out-of-order
// core can run both at once (decode all, update all, encode all leaves the codec queued behind
// a block's divisions). Measured in cache on the 2-core Zen 4 VM (bench/native, adam, 16K
// elements, one thread, best of runs): int8 ~0.65-0.69 ns/element before; the interleaving alone
// no measurable change; with the shorter signed decoder and unsigned magnitudes
// (compact_simd.h) ~0.63; with the rule's constants kept in registers (pipelined_block)
// ~0.56-0.58. float32 state: ~0.34-0.39. On that machine the codec's integer work, not the
// divider, bounds the int8 step. AVX2 on the 2-core Zen 3 VM (same driver): int8 ~0.93
// ns/element (~2.4 with GCC's vectorisation of the element-wise codec), float32 ~0.46.
#pragma once
#include <cstdint>
#include <type_traits>
#include <utility>

#include "compact_codec.h"
#include "element_loop.h"
#include "stochastic_rounding.h"

// Lambdas of the block loops inlined like the rest of it (GCC otherwise kept some as calls,
// one per state per vector).
#define FU_INLINE_LAMBDA __attribute__((always_inline))

namespace fusedupdates::cpu {
inline namespace FU_ISA_NS {  // see storage.h

template <class Rule>
constexpr bool is_signed_state(int j) {
  return ((Rule::kSignedStates >> j) & 1u) != 0;
}

// The 8-bit code of state j of Rule: signed for first moments, unsigned for never-negative
// states.
template <class Rule, int j>
using StateCode = std::conditional_t<is_signed_state<Rule>(j), SignedCode, UnsignedCode>;

// f(std::integral_constant<int, j>) for every state j of Rule, in order. The inner lambda is
// inlined too: GCC had kept some as calls (PendingBlock::measured's, once per block), and
// around a call in the block loop every value in a vector register is saved or made again
// (all of them are caller-saved). Inlined, adam int8 took ~11% less time in cache on the
// 2-core Zen 4 VM, amsgrad ~17% (bench/native); finish() stays a call on purpose.
// Not under AddressSanitizer (CI's second build, which checks memory, not speed): inlined
// with its instrumentation, each SIMD instruction set's compact_kernels.cpp took 20-24 min to
// compile on the 2-core VM (two or three compiling at once).
#if defined(__SANITIZE_ADDRESS__)
#define FU_INLINE_STATE_LAMBDA
#else
#define FU_INLINE_STATE_LAMBDA FU_INLINE_LAMBDA
#endif
template <class Rule, class F>
[[gnu::always_inline]] inline void for_each_state(F&& f) {
  [&]<int... j>(std::integer_sequence<int, j...>) FU_INLINE_STATE_LAMBDA {
    (f(std::integral_constant<int, j>{}), ...);
  }(std::make_integer_sequence<int, Rule::kNumStates>{});
}

}  // namespace FU_ISA_NS
}  // namespace fusedupdates::cpu

#if defined(FU_COMPACT_SIMD)

namespace fusedupdates::cpu {
inline namespace FU_ISA_NS {

// 8-bit states of one updated full block whose codes are written one block later: the new
// values (tile), and per state the scale's inverse and whether the block is finite (a block
// with an Inf or a NaN is encoded element-wise by finish()). Codes rounded stochastically
// (state_rounding="stochastic") also keep each state's rounding addends, hashed while the
// block is updated.
template <class Rule>
struct PendingBlock {
  static constexpr int K = Rule::kNumStates > 0 ? Rule::kNumStates : 1;
  template <int j>
  using Code = StateCode<Rule, j>;
  alignas(64) float tile[K][kQuantBlock];
  alignas(64) uint32_t rounding[K][kQuantBlock];  // stochastic codes only
  float inverse[K];
  bool finite[K];
  int64_t at = -1;                 // the block's first element; -1: nothing pending
  const uint32_t* keys = nullptr;  // each state's stream key; null: codes rounded to nearest

  // Stochastic codes: the addends of every state for the block at element i, all at once.
  void hash_rounding(int64_t i) {
    for (int j = 0; j < Rule::kNumStates; ++j)
      code_rounding_block(rounding[j], kQuantBlock, keys[j], i);
  }

  // The block at element i now holds its new values: per state, the largest |x| as float32
  // bits (>= 0x7f800000: an Inf or a NaN). Stores each finite state's new absmax.
  [[gnu::always_inline]] void measured(const CompactState<StateFormat::kInt8>* states, int64_t i,
                                       const uint32_t* max_bits) {
    at = i;
    for_each_state<Rule>([&](auto j) FU_INLINE_LAMBDA {
      finite[j] = max_bits[j] < 0x7f800000u;
      const BlockScale<Code<j>> scale(bits_float(max_bits[j]));
      inverse[j] = scale.inverse;
      if (finite[j]) states[j].scales[at / kQuantBlock] = scale.absmax;
    });
  }
  // measured(), the largest |x| read from the tile.
  [[gnu::always_inline]] void measure(const CompactState<StateFormat::kInt8>* states, int64_t i) {
    uint32_t max_bits[K];
    for_each_state<Rule>(
        [&](auto j) FU_INLINE_LAMBDA { max_bits[j] = full_block_max_bits<Code<j>>(tile[j]); });
    measured(states, i, max_bits);
  }
  bool all_finite() const {
    for (int j = 0; j < Rule::kNumStates; ++j)
      if (!finite[j]) return false;
    return true;
  }
  // The 64 codes of every state from element q of the block (finite states only).
  template <bool kStochastic>
  [[gnu::always_inline]] void encode_line(const CompactState<StateFormat::kInt8>* states,
                                          int q) const {
    for_each_state<Rule>([&](auto j) FU_INLINE_LAMBDA {
      cpu::encode_line<Code<j>, true>(tile[j] + q, states[j].data + at + q, Vec::set1(inverse[j]),
                                      kStochastic ? rounding[j] + q : nullptr);
    });
  }
  // Writes the codes of every state (element-wise where a state is not finite). Once per piece
  // and after a block with an Inf or a NaN: kept out of line, for the size of its element-wise
  // encoders.
  [[gnu::noinline]] void finish(const CompactState<StateFormat::kInt8>* states) {
    if (at < 0) return;
    for_each_state<Rule>([&](auto j) FU_INLINE_LAMBDA {
      uint8_t* codes = states[j].data + at;
      const uint32_t* r = keys == nullptr ? nullptr : rounding[j];
      if (finite[j])
        encode_full_block_codes<Code<j>>(tile[j], codes, inverse[j], r);
      else
        states[j].scales[at / kQuantBlock] = encode_block<Code<j>>(tile[j], codes, kQuantBlock, r);
    });
    at = -1;
  }
};

// Whether every state's codes of the block at element i are free of the code's NaN (then the
// SIMD decoder applies).
template <class Rule>
[[gnu::always_inline]] inline bool block_decodable(const CompactState<StateFormat::kInt8>* states,
                                                   int64_t i) {
  bool ok = true;
  for_each_state<Rule>([&](auto j) FU_INLINE_LAMBDA {
    ok = ok && !block_has_code(states[j].data + i, StateCode<Rule, j>::kNaN);
  });
  return ok;
}

// One full block at element i: decode, update p[0..kQuantBlock) (g alongside), measure the new
// absmax into `now`; with kEncodePrevious, the codes of `previous` (all finite) written in
// between, one 64-element line per 64 / kLanes vectors. kStochastic: the block's rounding
// addends are hashed into `now` alongside the update of the first line of each of its
// 128-element random units (one hash serves an element of each of the unit's two lines), and
// `previous` is encoded with its own. The block's codes must be decodable.
template <bool kEncodePrevious, bool kStochastic, class Rule>
[[gnu::always_inline]] inline void pipelined_block(const Rule& shared_rule,
                                                   const ElementScalars<float>& shared_k,
                                                   float* __restrict p, const float* __restrict g,
                                                   const CompactState<StateFormat::kInt8>* states,
                                                   int64_t i, PendingBlock<Rule>& now,
                                                   PendingBlock<Rule>& previous) {
  constexpr int K = Rule::kNumStates;
  // Copies that no store through p or the tiles can alias, so that the rule's constants stay in
  // registers (read through the references, GCC reloaded them for every vector).
  const Rule rule = shared_rule;
  const ElementScalars<float> k = shared_k;
  Vec::F multiplier[K];
  Vec::I max_bits[K];
  for_each_state<Rule>([&](auto j) FU_INLINE_LAMBDA {
    using Code = StateCode<Rule, j>;
    multiplier[j] = Vec::set1(BlockScale<Code>(states[j].scales[i / kQuantBlock]).multiplier);
    max_bits[j] = Vec::zero();
  });
  constexpr int kStep = Vec::update_width(K);
  for (int q = 0; q < kQuantBlock; q += 64) {
#pragma GCC unroll 4
    for (int v = q; v < q + 64; v += kStep) {
      for_each_state<Rule>([&](auto j) FU_INLINE_LAMBDA {
        using Code = StateCode<Rule, j>;
        for (int u = v; u < v + kStep; u += kLanes)
          Vec::store_aligned(now.tile[j] + u,
                             SimdCodec<Code>::decode(SimdCodec<Code>::load(states[j].data + i + u),
                                                     multiplier[j]));
      });
      apply_elements<float>(rule, k, p + v, g + v, now.tile[0] + v,
                            K > 1 ? now.tile[1] + v : nullptr, K > 2 ? now.tile[2] + v : nullptr,
                            K > 3 ? now.tile[3] + v : nullptr,
                            std::integral_constant<int64_t, kStep>{});
      for_each_state<Rule>([&](auto j) FU_INLINE_LAMBDA {
        using Code = StateCode<Rule, j>;
        for (int u = v; u < v + kStep; u += kLanes)
          max_bits[j] = Vec::max_unsigned(
              max_bits[j], SimdCodec<Code>::magnitude(Vec::load_aligned_bits(now.tile[j] + u)));
        if constexpr (kStochastic)  // the first line of each 128-element unit: both its lines
          if (q % kRandomUnit == 0)
            code_rounding_pair(now.rounding[j] + q, v - q, kStep, now.keys[j], i + q);
      });
    }
    if constexpr (kEncodePrevious) previous.template encode_line<kStochastic>(states, q);
  }
  uint32_t block_max[K];
  for_each_state<Rule>(
      [&](auto j) FU_INLINE_LAMBDA { block_max[j] = Vec::reduce_max_unsigned(max_bits[j]); });
  now.measured(states, i, block_max);
  if constexpr (kEncodePrevious) previous.at = -1;
}

}  // namespace FU_ISA_NS
}  // namespace fusedupdates::cpu

#endif  // FU_COMPACT_SIMD
