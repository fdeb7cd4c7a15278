// The update with compact state (bfloat16 or 8-bit blockwise), compiled once per instruction
// set like kernels.cpp. Still one pass over memory: per tile (kTileElements), the
// states are decoded to float tiles (in L1), the ordinary float loop runs the rule, and the
// states are encoded back, each 8-bit block with its new absmax.
#include <algorithm>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "compact_codec.h"
#include "compact_pipeline.h"
#include "element_loop.h"
#include "element_ranges.h"
#include "isa_kernels.h"
#include "prefetch.h"
#include "stochastic_rounding.h"
#include "storage.h"

#ifndef FU_ISA_NS
#error "FU_ISA_NS must name the instruction-set namespace"
#endif

namespace fusedupdates::cpu::FU_ISA_NS {
namespace {

template <class Rule, int j>
constexpr bool kSignedState = is_signed_state<Rule>(j);

// Elements per tile of the loop: one 8-bit block (kQuantBlock, 256), or for bfloat16 state,
// which has no blocks, 128 as before the block grew. Measured on the 2-core Zen 3 VM (AVX2,
// adam; bench/results/block-size-cpu-2core-zen3-2026-12-06.md): bfloat16 state in 256-element
// tiles was ~2% faster in cache; at 16M and on the model the paired rounds of bench/ab_step.py
// gave 1.02-1.06x slower and bench/native 16M runs no clear difference (a noisy shared VM), so
// no case for changing it.
template <StateFormat F>
constexpr int64_t kTileElements = F == StateFormat::kInt8 ? kQuantBlock : 128;
static_assert(kQuantBlock % 128 == 0, "a block-aligned piece starts on a bfloat16 tile boundary");

// One tile (w <= kTileElements<F> elements, starting at element `at` of the tensor, a block
// start for kInt8) in one loop: decode each state element, run the rule, keep the new state in a
// float tile (in L1). Encoding is a separate pass (store_states): it needs the block's new
// absmax first. (Folding the absmax into this loop stopped GCC 12 from vectorising it.)
template <StateFormat F, class Rule>
[[gnu::always_inline]] inline void apply_tile(const Rule& rule, const ElementScalars<float>& k,
                                              float* __restrict p, const float* __restrict g,
                                              const CompactState<F>* states, int64_t at,
                                              float (*tile)[kTileElements<F>], int64_t w) {
  constexpr int K = Rule::kNumStates;
  if constexpr (F == StateFormat::kInt8 && (K >= 3 || kCompactSimd)) {
    // Decode into the tiles first, then the float loop. Where compact_simd.h applies (AVX-512,
    // AVX2) its block decoder is cheaper than decoding inside the loop (measured with AVX-512:
    // adam ~6% faster in cache), and
    // GCC 12 vectorises no fused loop over three or more uint8 streams (amsgrad ran ~6x
    // slower than with this separate pass).
    for (int j = 0; j < K; ++j)
      decode_block_signed(states[j].data + at, states[j].scales[at / kQuantBlock], tile[j], w,
                          is_signed_state<Rule>(j));
    apply_piece<float>(rule, k, p, g, tile[0], K > 1 ? tile[1] : nullptr, K > 2 ? tile[2] : nullptr,
                       K > 3 ? tile[3] : nullptr, w);
    return;
  }
  using Raw = typename CompactState<F>::Raw;
  using State = CompactState<F>;
  const auto raw = [&](int j) -> const Raw* { return j < K ? states[j].data + at : nullptr; };
  const Raw* __restrict r0 = raw(0);
  const Raw* __restrict r1 = raw(1);
  const Raw* __restrict r2 = raw(2);
  const Raw* __restrict r3 = raw(3);
  float* __restrict t0 = tile[0];
  float* __restrict t1 = K > 1 ? tile[1] : nullptr;
  float* __restrict t2 = K > 2 ? tile[2] : nullptr;
  float* __restrict t3 = K > 3 ? tile[3] : nullptr;
  float m0 = 0, m1 = 0, m2 = 0, m3 = 0;
  if constexpr (K > 0) m0 = states[0].template multiplier<kSignedState<Rule, 0>>(at);
  if constexpr (K > 1) m1 = states[1].template multiplier<kSignedState<Rule, 1>>(at);
  if constexpr (K > 2) m2 = states[2].template multiplier<kSignedState<Rule, 2>>(at);
  if constexpr (K > 3) m3 = states[3].template multiplier<kSignedState<Rule, 3>>(at);
#pragma GCC ivdep
  for (int64_t i = 0; i < w; ++i) {
    StateVec<float, K> s;
    if constexpr (K > 0) s[0] = State::template decode<kSignedState<Rule, 0>>(r0[i], m0);
    if constexpr (K > 1) s[1] = State::template decode<kSignedState<Rule, 1>>(r1[i], m1);
    if constexpr (K > 2) s[2] = State::template decode<kSignedState<Rule, 2>>(r2[i], m2);
    if constexpr (K > 3) s[3] = State::template decode<kSignedState<Rule, 3>>(r3[i], m3);
    p[i] = update_element(rule, k, p[i], g[i], s);
    if constexpr (K > 0) t0[i] = s[0];
    if constexpr (K > 1) t1[i] = s[1];
    if constexpr (K > 2) t2[i] = s[2];
    if constexpr (K > 3) t3[i] = s[3];
  }
}

// bfloat16 state rounded stochastically: uniform random bits below bfloat16's last place are
// added to each state's new values (elements at.. of the tensor) and cut off, so that the
// narrowing in store_states then keeps them exactly.
template <class Rule>
void perturb_states(float (*tile)[kTileElements<StateFormat::kBFloat16>], int64_t w, double step,
                    uint32_t index, int64_t at) {
  for (int j = 0; j < Rule::kNumStates; ++j)
    perturb_bfloat16_block(tile[j], w, state_rounding_key(step, index, j), at);
}

template <StateFormat F, class Rule, int j = 0>
[[gnu::always_inline]] inline void store_states(const CompactState<F>* states, int64_t at,
                                                const float (*tile)[kTileElements<F>], int64_t w) {
  if constexpr (j < Rule::kNumStates) {
    states[j].template store<kSignedState<Rule, j>>(at, tile[j], w);
    store_states<F, Rule, j + 1>(states, at, tile, w);
  }
}

// 8-bit state rounded stochastically: each state's codes of the tile at element `at` (a block
// start) rounded by random addends from its own stream (stochastic_rounding.h).
template <class Rule>
[[gnu::always_inline]] inline void store_states_rounded(
    const CompactState<StateFormat::kInt8>* states, int64_t at, const float (*tile)[kQuantBlock],
    int64_t w, double step, uint32_t index) {
  alignas(64) uint32_t rounding[kQuantBlock];
  for_each_state<Rule>([&](auto j) FU_INLINE_LAMBDA {
    code_rounding_block(rounding, w, state_rounding_key(step, index, j), at);
    states[j].template store<kSignedState<Rule, j>>(at, tile[j], w, rounding);
  });
}

// Elements [lo, hi) of one tensor; lo is a multiple of kQuantBlock (the caller aligns pieces).
template <StateFormat F, class S, class Rule>
void apply_piece_compact(const Rule& rule, const ElementScalars<float>& k, const TensorSlot& slot,
                         int64_t lo, int64_t hi, bool stochastic, bool stochastic_state,
                         double step) {
  constexpr int K = Rule::kNumStates;
  using Raw = typename CompactState<F>::Raw;
  CompactState<F> states[K > 0 ? K : 1];
  for (int j = 0; j < K; ++j)
    states[j] = CompactState<F>{static_cast<Raw*>(slot.state[j]), slot.scales[j]};
  S* p = static_cast<S*>(slot.param);
  const S* g = static_cast<const S*>(slot.grad);
  float* master = static_cast<float*>(slot.master);
  constexpr int64_t kTile = kTileElements<F>;
  alignas(64) float p32[kTile];
  alignas(64) float g32[kTile];
  // The update of one tile by compute(float params, float grads) after the prefetches and
  // (16-bit params) the widening, before the narrowing.
  const auto update_tile = [&](int64_t i, int64_t w, auto&& compute) {
    // Hints kPrefetchElements ahead, as for 16-bit params (kernels.cpp): streams of several
    // widths kept too few cache lines in flight on their own. The params and grads are hinted
    // for 8-bit state only: on the 2-core Zen 4 VM (bench/native, adam, 16M elements, 2
    // threads, medians of 10 and 4 runs) their hints made the int8 step ~17% faster but the
    // bfloat16 one ~7-20% slower (bfloat16 with them removed was as fast as with no hints).
    constexpr auto sz = [](auto* q) { return int64_t{sizeof(*q)}; };
    if constexpr (F == StateFormat::kInt8) {
      prefetch_ahead(p + i, w * sz(p), kPrefetchElements * sz(p));
      prefetch_ahead(g + i, w * sz(g), kPrefetchElements * sz(g));
      if (master) prefetch_ahead(master + i, w * 4, kPrefetchElements * 4);
    }
    for (int j = 0; j < K; ++j)
      prefetch_ahead(states[j].data + i, w * sz(states[j].data),
                     kPrefetchElements * sz(states[j].data));
    if constexpr (kIs16Bit<S>) {
      widen(g + i, g32, w);
      float* target = master ? master + i : p32;
      if (!master) widen(p + i, p32, w);
      compute(target, g32);
      if (!master && stochastic)
        perturb_for_stochastic_rounding<std::is_same_v<S, bfloat16_t>>(
            p32, w, StochasticRounding{rounding_key(step, slot.index), i});
      narrow(target, p + i, w);
    } else {
      compute(p + i, g + i);
    }
  };
  // The update of one tile, the new states left in `tile`. Full tiles pass their width as a
  // compile-time constant, so that the (inlined) tile loops have a fixed trip count: no
  // peeling or remainder code per block.
  const auto update_plain_tile = [&](int64_t i, auto width, float (*tile)[kTile]) {
    update_tile(i, width, [&](float* pt, const float* gt) {
      apply_tile<F>(rule, k, pt, gt, states, i, tile, width);
    });
  };
  constexpr std::integral_constant<int64_t, kTile> kFull{};
  alignas(64) float tile[K > 0 ? K : 1][kTile];
  // The new states of the tile at element i, w wide, back into storage.
  const auto store_tile = [&](int64_t i, int64_t w) {
    if constexpr (F == StateFormat::kInt8) {
      if (stochastic_state) return store_states_rounded<Rule>(states, i, tile, w, step, slot.index);
    } else if (stochastic_state) {
      perturb_states<Rule>(tile, w, step, slot.index, i);
    }
    store_states<F, Rule>(states, i, tile, w);
  };
  int64_t i = lo;
  if constexpr (F == StateFormat::kInt8 && kCompactSimd) {
#if defined(FU_COMPACT_SIMD)
    // Full blocks software-pipelined (compact_pipeline.h): each block's codes are written
    // while the next block is updated, rounded to nearest or (a second instantiation, so that
    // the nearest loop loads no addends) stochastically.
    PendingBlock<Rule> blocks[2];  // the block being updated and the one before it
    uint32_t keys[K > 0 ? K : 1];
    if (stochastic_state) {
      for (int j = 0; j < K; ++j) keys[j] = state_rounding_key(step, slot.index, j);
      blocks[0].keys = blocks[1].keys = keys;
    }
    const auto pipeline = [&](auto stochastic_codes) FU_INLINE_LAMBDA {
      constexpr bool kStochastic = decltype(stochastic_codes)::value;
      for (int cur = 0; i + kQuantBlock <= hi; i += kQuantBlock, cur ^= 1) {
        PendingBlock<Rule>& now = blocks[cur];
        PendingBlock<Rule>& previous = blocks[cur ^ 1];
        update_tile(i, kQuantBlock, [&](float* pt, const float* gt) {
          if (!block_decodable<Rule>(states, i)) {  // a NaN code: the element-wise decoder
            previous.finish(states);
            apply_tile<F>(rule, k, pt, gt, states, i, now.tile, kQuantBlock);
            now.measure(states, i);
            if (kStochastic) now.hash_rounding(i);
          } else if (previous.at >= 0 && previous.all_finite()) {
            pipelined_block<true, kStochastic>(rule, k, pt, gt, states, i, now, previous);
          } else {
            previous.finish(states);
            pipelined_block<false, kStochastic>(rule, k, pt, gt, states, i, now, previous);
          }
        });
      }
    };
    if (stochastic_state)
      pipeline(std::true_type{});
    else
      pipeline(std::false_type{});
    blocks[0].finish(states);
    blocks[1].finish(states);
#endif
  } else {
    for (; i + kTile <= hi; i += kTile) {
      update_plain_tile(i, kFull, tile);
      store_tile(i, kTile);
    }
  }
  if (i < hi) {
    update_plain_tile(i, hi - i, tile);
    store_tile(i, hi - i);
  }
}

template <StateFormat F, class S, template <class> class R>
void apply_compact_typed(const StepPlan& plan, int num_threads) {
  const R<float> plain(plan.hyper);
  const WithMomentum<R<float>, false> heavy_ball(plan.hyper);
  const WithMomentum<R<float>, true> nesterov(plan.hyper);
  const ElementScalars<float> scalars(plan.hyper);
  const ElementRanges ranges(plan.tensors.size(), [&](size_t i) { return plan.tensors[i].numel; });
  ranges.parallel_for_pieces(num_threads, [&](size_t t, int64_t lo, int64_t hi) {
    const TensorSlot& slot = plan.tensors[t];
    if (F == StateFormat::kInt8 || plan.stochastic_state_rounding) {
      // A block belongs to one thread: both ends of a piece move down to a block boundary
      // (the tensor's end excepted), the same way on either side of every boundary. (For
      // stochastically rounded bfloat16 state too: its random bits come per 128 elements.)
      lo -= lo % kQuantBlock;
      if (hi != slot.numel) hi -= hi % kQuantBlock;
      if (lo >= hi) return;
    }
    const bool sr = plan.stochastic_rounding;
    const bool ssr = plan.stochastic_state_rounding;
    const double step = plan.hyper.step;
    if (!slot.with_momentum)
      apply_piece_compact<F, S>(plain, scalars, slot, lo, hi, sr, ssr, step);
    else if (plan.nesterov)
      apply_piece_compact<F, S>(nesterov, scalars, slot, lo, hi, sr, ssr, step);
    else
      apply_piece_compact<F, S>(heavy_ball, scalars, slot, lo, hi, sr, ssr, step);
  });
}

template <StateFormat F>
void apply_compact_format(const StepPlan& plan, int num_threads) {
  dispatch_dtype(plan.dtype, [&](auto tag) {
    using S = decltype(tag);
    if constexpr (std::is_same_v<S, double>) {
      throw std::invalid_argument("fusedupdates: compact state is not for float64 params");
    } else if (!dispatch_rule(plan.rule, [&]<template <class> class R>() {
                 apply_compact_typed<F, S, R>(plan, num_threads);
               })) {
      throw std::invalid_argument("fusedupdates: unknown rule id");
    }
  });
}

}  // namespace

void apply_step_compact(const StepPlan& plan, int num_threads) {
  if (plan.state_format == StateFormat::kBFloat16)
    apply_compact_format<StateFormat::kBFloat16>(plan, num_threads);
  else
    apply_compact_format<StateFormat::kInt8>(plan, num_threads);
}

namespace {

// f(first element, width, block index) for every block of n elements. Blocks are independent,
// so any split among threads gives the same bytes.
template <class F>
void for_each_block(int64_t n, int num_threads, F&& f) {
  const int64_t blocks = quant_blocks(n);
  const bool parallel = n >= kParallelMinElements && num_threads > 1;
#pragma omp parallel for schedule(static) num_threads(num_threads) if (parallel)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t at = b * kQuantBlock;
    f(at, std::min(kQuantBlock, n - at), b);
  }
}

}  // namespace

void quantize(const float* x, uint8_t* codes, float* absmax, int64_t n, bool is_signed,
              int num_threads, const StateRoundingStream* stochastic) {
  const uint32_t key =
      stochastic == nullptr
          ? 0u
          : state_rounding_key(stochastic->step, stochastic->tensor_index, stochastic->state_index);
  for_each_block(n, num_threads, [&](int64_t at, int64_t w, int64_t b) {
    if (stochastic == nullptr) {
      absmax[b] = encode_block_signed(x + at, codes + at, w, is_signed);
    } else {
      alignas(64) uint32_t rounding[kQuantBlock];
      code_rounding_block(rounding, w, key, at);
      absmax[b] = encode_block_signed(x + at, codes + at, w, is_signed, rounding);
    }
  });
}

void dequantize(const uint8_t* codes, const float* absmax, float* x, int64_t n, bool is_signed,
                int num_threads) {
  for_each_block(n, num_threads, [&](int64_t at, int64_t w, int64_t b) {
    decode_block_signed(codes + at, absmax[b], x + at, w, is_signed);
  });
}

}  // namespace fusedupdates::cpu::FU_ISA_NS
