// The CPU kernels, compiled once per instruction set (FU_ISA_NS names the namespace, the
// build adds the matching -march flags). Only loops, loads and stores live here: the math
// comes from csrc/rules.
#include <cmath>
#include <stdexcept>
#include <utility>

#include "../rules/rules.h"
#include "element_loop.h"
#include "element_ranges.h"
#include "isa_kernels.h"
#include "prefetch.h"
#include "step_plan.h"
#include "stochastic_rounding.h"
#include "storage.h"

#ifndef FU_ISA_NS
#error "FU_ISA_NS must name the instruction-set namespace"
#endif

namespace fusedupdates::cpu::FU_ISA_NS {
namespace {

// Prefetch hints for the next tiles (prefetch.h), kPrefetchElements ahead of tile i: p, g (two
// bytes each), the float32 master copy and states, whichever are given. Always inlined: GCC
// deems a function that only prefetches free of side effects and deleted the out-of-line calls
// (no prefetch was left in the object file).
template <class S16>
[[gnu::always_inline]] inline void prefetch_tile(const S16* p, const S16* g, const float* master,
                                                 float* const* s, int64_t i, int64_t w) {
  constexpr uintptr_t k16 = kPrefetchElements * sizeof(S16), k32 = kPrefetchElements * 4;
  prefetch_ahead(p + i, w * int64_t{sizeof(S16)}, k16);
  prefetch_ahead(g + i, w * int64_t{sizeof(S16)}, k16);
  if (master) prefetch_ahead(master + i, w * 4, k32);
  for (int k = 0; k < kMaxStates; ++k)
    if (s[k]) prefetch_ahead(s[k] + i, w * 4, k32);
}

// 16-bit storage (float16, bfloat16): widen a tile of p and g to float, run the float loop,
// narrow p back (to nearest even, or stochastically when sr is given).
template <class Rule, class S16>
void apply_piece_16bit(const Rule& rule, const ElementScalars<float>& k, S16* p, const S16* g,
                       float* const* s, int64_t n, const StochasticRounding* sr) {
  alignas(64) float p32[kHalfTile];
  alignas(64) float g32[kHalfTile];
  for (int64_t i = 0; i < n; i += kHalfTile) {
    const int64_t w = n - i < kHalfTile ? n - i : kHalfTile;
    prefetch_tile(p, g, nullptr, s, i, w);
    widen(p + i, p32, w);
    widen(g + i, g32, w);
    const auto at = [&](int k) { return s[k] ? s[k] + i : nullptr; };
    apply_piece<float>(rule, k, p32, g32, at(0), at(1), at(2), at(3), w);
    if (sr)
      perturb_for_stochastic_rounding<std::is_same_v<S16, bfloat16_t>>(
          p32, w, StochasticRounding{sr->key, sr->first + i});
    narrow(p32, p + i, w);
  }
}

// Master weights: the float32 master copy is the parameter the rule updates (in place, no
// widening); the 16-bit param is only written, as the rounded master.
template <class Rule, class S16>
void apply_piece_master(const Rule& rule, const ElementScalars<float>& k, S16* p, float* master,
                        const S16* g, float* const* s, int64_t n) {
  alignas(64) float g32[kHalfTile];
  for (int64_t i = 0; i < n; i += kHalfTile) {
    const int64_t w = n - i < kHalfTile ? n - i : kHalfTile;
    prefetch_tile(p, g, master, s, i, w);
    widen(g + i, g32, w);
    const auto at = [&](int k) { return s[k] ? s[k] + i : nullptr; };
    apply_piece<float>(rule, k, master + i, g32, at(0), at(1), at(2), at(3), w);
    narrow(master + i, p + i, w);
  }
}

template <class S, class Rule>
void apply_any_piece(const Rule& rule, const ElementScalars<compute_t<S>>& k, S* p, float* master,
                     const S* g, compute_t<S>* const* s, int64_t n, const StochasticRounding* sr) {
  if constexpr (kIs16Bit<S>) {
    if (master)
      apply_piece_master(rule, k, p, master, g, s, n);
    else
      apply_piece_16bit(rule, k, p, g, s, n, sr);
  } else {
    apply_piece<S>(rule, k, p, g, s[0], s[1], s[2], s[3], n);
  }
}

template <class S, template <class> class R>
void apply_step_typed(const StepPlan& plan, int num_threads) {
  using T = compute_t<S>;
  const R<T> plain(plan.hyper);
  const WithMomentum<R<T>, false> heavy_ball(plan.hyper);
  const WithMomentum<R<T>, true> nesterov(plan.hyper);
  const ElementScalars<T> scalars(plan.hyper);
  const ElementRanges ranges(plan.tensors.size(), [&](size_t i) { return plan.tensors[i].numel; });
  ranges.parallel_for_pieces(num_threads, [&](size_t t, int64_t lo, int64_t hi) {
    const TensorSlot& slot = plan.tensors[t];
    T* s[kMaxStates];
    for (int k = 0; k < kMaxStates; ++k)
      s[k] = slot.state[k] ? static_cast<T*>(slot.state[k]) + lo : nullptr;
    S* p = static_cast<S*>(slot.param) + lo;
    const S* g = static_cast<const S*>(slot.grad) + lo;
    float* master = slot.master ? static_cast<float*>(slot.master) + lo : nullptr;
    const StochasticRounding sr{rounding_key(plan.hyper.step, slot.index), lo};
    const StochasticRounding* rounding = plan.stochastic_rounding ? &sr : nullptr;
    const int64_t n = hi - lo;
    if (!slot.with_momentum)
      apply_any_piece<S>(plain, scalars, p, master, g, s, n, rounding);
    else if (plan.nesterov)
      apply_any_piece<S>(nesterov, scalars, p, master, g, s, n, rounding);
    else
      apply_any_piece<S>(heavy_ball, scalars, p, master, g, s, n, rounding);
  });
}

void apply_step(const StepPlan& plan, int num_threads) {
  if (plan.state_format != StateFormat::kFull) return apply_step_compact(plan, num_threads);
  dispatch_dtype(plan.dtype, [&](auto tag) {
    using S = decltype(tag);
    if (!dispatch_rule(plan.rule, [&]<template <class> class R>() {
          apply_step_typed<S, R>(plan, num_threads);
        }))
      throw std::invalid_argument("fusedupdates: unknown rule id");
  });
}

template <class S, int kRw, int kRo>
void stream_typed(void* const* rw, const void* const* ro, int64_t numel, int num_threads) {
  using T = compute_t<S>;
  const int64_t count[1] = {numel};
  const ElementRanges ranges(1, [&](size_t) { return count[0]; });
  ranges.parallel_for_pieces(num_threads, [&](size_t, int64_t lo, int64_t hi) {
    S* __restrict w0 = static_cast<S*>(rw[0]) + lo;
    S* __restrict w1 = kRw > 1 ? static_cast<S*>(rw[1]) + lo : nullptr;
    S* __restrict w2 = kRw > 2 ? static_cast<S*>(rw[2]) + lo : nullptr;
    S* __restrict w3 = kRw > 3 ? static_cast<S*>(rw[3]) + lo : nullptr;
    const S* __restrict r0 = kRo > 0 ? static_cast<const S*>(ro[0]) + lo : nullptr;
    const S* __restrict r1 = kRo > 1 ? static_cast<const S*>(ro[1]) + lo : nullptr;
    const T c = static_cast<T>(1e-7);
#pragma omp simd
    for (int64_t i = 0; i < hi - lo; ++i) {
      T in = T(0);
      if constexpr (kRo > 0) in += static_cast<T>(r0[i]);
      if constexpr (kRo > 1) in += static_cast<T>(r1[i]);
      w0[i] = static_cast<S>(static_cast<T>(w0[i]) + c * in);
      if constexpr (kRw > 1) w1[i] = static_cast<S>(static_cast<T>(w1[i]) + c * in);
      if constexpr (kRw > 2) w2[i] = static_cast<S>(static_cast<T>(w2[i]) + c * in);
      if constexpr (kRw > 3) w3[i] = static_cast<S>(static_cast<T>(w3[i]) + c * in);
    }
  });
}

void stream(DType dtype, void* const* rw, int n_rw, const void* const* ro, int n_ro, int64_t numel,
            int num_threads) {
  dispatch_dtype(dtype, [&](auto tag) {
    using S = decltype(tag);
    const int code = n_rw * 10 + n_ro;  // validated by the binding: 1..4 written, 0..2 read
    switch (code) {
      case 10: stream_typed<S, 1, 0>(rw, ro, numel, num_threads); break;
      case 11: stream_typed<S, 1, 1>(rw, ro, numel, num_threads); break;
      case 12: stream_typed<S, 1, 2>(rw, ro, numel, num_threads); break;
      case 20: stream_typed<S, 2, 0>(rw, ro, numel, num_threads); break;
      case 21: stream_typed<S, 2, 1>(rw, ro, numel, num_threads); break;
      case 22: stream_typed<S, 2, 2>(rw, ro, numel, num_threads); break;
      case 30: stream_typed<S, 3, 0>(rw, ro, numel, num_threads); break;
      case 31: stream_typed<S, 3, 1>(rw, ro, numel, num_threads); break;
      case 32: stream_typed<S, 3, 2>(rw, ro, numel, num_threads); break;
      case 40: stream_typed<S, 4, 0>(rw, ro, numel, num_threads); break;
      case 41: stream_typed<S, 4, 1>(rw, ro, numel, num_threads); break;
      case 42: stream_typed<S, 4, 2>(rw, ro, numel, num_threads); break;
      default: break;
    }
  });
}

}  // namespace

#define FU_STR2(x) #x
#define FU_STR(x) FU_STR2(x)

const KernelTable& kernel_table() {
  static const KernelTable table{.isa = FU_STR(FU_ISA_NAME),
                                 .apply_step = apply_step,
                                 .plan_sum_squares = plan_sum_squares,
                                 .plan_all_finite = plan_all_finite,
                                 .list_sum_squares = list_sum_squares,
                                 .list_scale = list_scale,
                                 .norm_constraint = norm_constraint,
                                 .stream = stream,
                                 .quantize = quantize,
                                 .dequantize = dequantize};
  return table;
}

}  // namespace fusedupdates::cpu::FU_ISA_NS
