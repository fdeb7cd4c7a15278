// The update with compact state (bfloat16 or 8-bit blockwise), compiled once per instruction
// set like kernels.cpp. Still one pass over memory: per tile of kQuantBlock elements, the
// states are decoded to float tiles (in L1), the ordinary float loop runs the rule, and the
// states are encoded back, each 8-bit block with its new absmax.
#include <algorithm>
#include <stdexcept>
#include <type_traits>

#include "compact_codec.h"
#include "element_loop.h"
#include "element_ranges.h"
#include "isa_kernels.h"
#include "stochastic_rounding.h"
#include "storage.h"

#ifndef FU_ISA_NS
#error "FU_ISA_NS must name the instruction-set namespace"
#endif

namespace fusedupdates::cpu::FU_ISA_NS {
namespace {

// Elements [lo, hi) of one tensor; lo is a multiple of kQuantBlock (the caller aligns pieces).
template <StateFormat F, class S, class Rule>
void apply_piece_compact(const Rule& rule, const ElementScalars<float>& k, const TensorSlot& slot,
                         int64_t lo, int64_t hi, bool stochastic, double step) {
  constexpr int K = Rule::kNumStates;
  CompactState<F> states[K > 0 ? K : 1];
  for (int j = 0; j < K; ++j)
    states[j] =
        CompactState<F>{slot.state[j], slot.scales[j], ((Rule::kSignedStates >> j) & 1u) != 0};
  S* p = static_cast<S*>(slot.param);
  const S* g = static_cast<const S*>(slot.grad);
  float* master = static_cast<float*>(slot.master);
  alignas(64) float tile[K > 0 ? K : 1][kQuantBlock];
  alignas(64) float p32[kQuantBlock];
  alignas(64) float g32[kQuantBlock];
  const auto at = [&](int j) { return j < K ? tile[j] : nullptr; };
  for (int64_t i = lo; i < hi; i += kQuantBlock) {
    const int64_t w = std::min(kQuantBlock, hi - i);
    for (int j = 0; j < K; ++j) states[j].load(i, tile[j], w);
    if constexpr (kIs16Bit<S>) {
      widen(g + i, g32, w);
      float* target = master ? master + i : p32;
      if (!master) widen(p + i, p32, w);
      apply_piece<float>(rule, k, target, g32, at(0), at(1), at(2), at(3), w);
      if (!master && stochastic)
        perturb_for_stochastic_rounding<std::is_same_v<S, bfloat16_t>>(
            p32, w, StochasticRounding{rounding_key(step, slot.index), i});
      narrow(target, p + i, w);
    } else {
      apply_piece<float>(rule, k, p + i, g + i, at(0), at(1), at(2), at(3), w);
    }
    for (int j = 0; j < K; ++j) states[j].store(i, tile[j], w);
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
    if constexpr (F == StateFormat::kInt8) {
      // A block belongs to one thread: both ends of a piece move down to a block boundary
      // (the tensor's end excepted), the same way on either side of every boundary.
      lo -= lo % kQuantBlock;
      if (hi != slot.numel) hi -= hi % kQuantBlock;
      if (lo >= hi) return;
    }
    const bool sr = plan.stochastic_rounding;
    const double step = plan.hyper.step;
    if (!slot.with_momentum)
      apply_piece_compact<F, S>(plain, scalars, slot, lo, hi, sr, step);
    else if (plan.nesterov)
      apply_piece_compact<F, S>(nesterov, scalars, slot, lo, hi, sr, step);
    else
      apply_piece_compact<F, S>(heavy_ball, scalars, slot, lo, hi, sr, step);
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

// Blocks are independent, so any split among threads gives the same bytes.
void quantize(const float* x, uint8_t* codes, float* absmax, int64_t n, bool is_signed,
              int num_threads) {
  const int64_t blocks = quant_blocks(n);
  const bool parallel = n >= kParallelMinElements && num_threads > 1;
#pragma omp parallel for schedule(static) num_threads(num_threads) if (parallel)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t at = b * kQuantBlock, w = std::min(kQuantBlock, n - at);
    absmax[b] = encode_block_signed(x + at, codes + at, w, is_signed);
  }
}

void dequantize(const uint8_t* codes, const float* absmax, float* x, int64_t n, bool is_signed,
                int num_threads) {
  const int64_t blocks = quant_blocks(n);
  const bool parallel = n >= kParallelMinElements && num_threads > 1;
#pragma omp parallel for schedule(static) num_threads(num_threads) if (parallel)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t at = b * kQuantBlock, w = std::min(kQuantBlock, n - at);
    decode_block_signed(codes + at, absmax[b], x + at, w, is_signed);
  }
}

}  // namespace fusedupdates::cpu::FU_ISA_NS
