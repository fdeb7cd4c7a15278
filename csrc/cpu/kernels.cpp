// The CPU kernels, compiled once per instruction set (FU_ISA_NS names the namespace, the
// build adds the matching -march flags). Only loops, loads and stores live here: the math
// comes from csrc/rules.
#include <cmath>
#include <stdexcept>
#include <utility>

#include "../rules/rules.h"
#include "element_ranges.h"
#include "step_plan.h"
#include "storage.h"

#ifndef FU_ISA_NS
#error "FU_ISA_NS must name the instruction-set namespace"
#endif

namespace fusedupdates::cpu::FU_ISA_NS {
namespace {

// The inner loop over one contiguous piece. Separate __restrict pointers per stream (not an
// array of pointers) let the compiler prove the streams independent and vectorise.
template <class S, class Rule>
void apply_piece(const Rule& rule, const ElementScalars<compute_t<S>>& k, S* __restrict p,
                 const S* __restrict g,
                 compute_t<S>* __restrict s0, compute_t<S>* __restrict s1,
                 compute_t<S>* __restrict s2, compute_t<S>* __restrict s3, int64_t n) {
  using T = compute_t<S>;
  constexpr int K = Rule::kNumStates;
#pragma GCC ivdep
  for (int64_t i = 0; i < n; ++i) {
    StateVec<T, K> s;
    if constexpr (K > 0) s[0] = s0[i];
    if constexpr (K > 1) s[1] = s1[i];
    if constexpr (K > 2) s[2] = s2[i];
    if constexpr (K > 3) s[3] = s3[i];
    p[i] = static_cast<S>(
        update_element(rule, k, static_cast<T>(p[i]), static_cast<T>(g[i]), s));
    if constexpr (K > 0) s0[i] = s[0];
    if constexpr (K > 1) s1[i] = s[1];
    if constexpr (K > 2) s2[i] = s[2];
    if constexpr (K > 3) s3[i] = s[3];
  }
}

// float16 storage: widen a tile of p and g to float, run the float loop, narrow p back.
template <class Rule>
void apply_piece_half(const Rule& rule, const ElementScalars<float>& k, half_t* p, const half_t* g,
                      float* const* s, int64_t n) {
  alignas(64) float p32[kHalfTile];
  alignas(64) float g32[kHalfTile];
  for (int64_t i = 0; i < n; i += kHalfTile) {
    const int64_t w = n - i < kHalfTile ? n - i : kHalfTile;
    widen(p + i, p32, w);
    widen(g + i, g32, w);
    const auto at = [&](int k) { return s[k] ? s[k] + i : nullptr; };
    apply_piece<float>(rule, k, p32, g32, at(0), at(1), at(2), at(3), w);
    narrow(p32, p + i, w);
  }
}

template <class S, class Rule>
void apply_any_piece(const Rule& rule, const ElementScalars<compute_t<S>>& k, S* p, const S* g,
                     compute_t<S>* const* s, int64_t n) {
  if constexpr (std::is_same_v<S, half_t>)
    apply_piece_half(rule, k, p, g, s, n);
  else
    apply_piece<S>(rule, k, p, g, s[0], s[1], s[2], s[3], n);
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
    const int64_t n = hi - lo;
    if (!slot.with_momentum)
      apply_any_piece<S>(plain, scalars, p, g, s, n);
    else if (plan.nesterov)
      apply_any_piece<S>(nesterov, scalars, p, g, s, n);
    else
      apply_any_piece<S>(heavy_ball, scalars, p, g, s, n);
  });
}

// The shared dispatch (csrc/common/dtype_dispatch.h) with this backend's 16-bit type; it
// throws on an unknown dtype instead of silently doing nothing.
template <class F>
void dispatch_dtype(DType dtype, F&& f) {
  dispatch_storage<half_t>(dtype, std::forward<F>(f));
}

void apply_step(const StepPlan& plan, int num_threads) {
  dispatch_dtype(plan.dtype, [&](auto tag) {
    using S = decltype(tag);
    if (!dispatch_rule(plan.rule, [&]<template <class> class R>() {
          apply_step_typed<S, R>(plan, num_threads);
        }))
      throw std::invalid_argument("fusedupdates: unknown rule id");
  });
}

template <class S>
double sum_squares_piece(const S* __restrict x, int64_t n) {
  double acc = 0.0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) {
    const double v = static_cast<double>(x[i]);
    acc += v * v;
  }
  return acc;
}

template <class GetPtr>
double sum_squares(DType dtype, size_t count, const int64_t* numel_of, GetPtr ptr_of,
                   int num_threads) {
  double result = 0.0;
  dispatch_dtype(dtype, [&](auto tag) {
    using S = decltype(tag);
    const ElementRanges ranges(count, [&](size_t i) { return numel_of[i]; });
    result = ranges.deterministic_sum(num_threads, [&](size_t t, int64_t lo, int64_t hi) {
      return sum_squares_piece(static_cast<const S*>(ptr_of(t)) + lo, hi - lo);
    });
  });
  return result;
}

double plan_sum_squares(const StepPlan& plan, int num_threads) {
  thread_local std::vector<int64_t> numel;
  numel.clear();
  for (const TensorSlot& t : plan.tensors) numel.push_back(t.numel);
  return sum_squares(
      plan.dtype, numel.size(), numel.data(), [&](size_t t) { return plan.tensors[t].grad; },
      num_threads);
}

double list_sum_squares(const ArrayList& list, int num_threads) {
  return sum_squares(
      list.dtype, list.numel.size(), list.numel.data(), [&](size_t t) { return list.inputs[t]; },
      num_threads);
}

void list_scale(const ArrayList& list, double factor, int num_threads) {
  dispatch_dtype(list.dtype, [&](auto tag) {
    using S = decltype(tag);
    using T = compute_t<S>;
    const T f = static_cast<T>(factor);
    const ElementRanges ranges(list.numel.size(), [&](size_t i) { return list.numel[i]; });
    ranges.parallel_for_pieces(num_threads, [&](size_t t, int64_t lo, int64_t hi) {
      const S* __restrict x = static_cast<const S*>(list.inputs[t]) + lo;
      S* __restrict out = static_cast<S*>(list.outputs[t]) + lo;
      // x and out are either the same array (in place) or disjoint (validated).
      if (static_cast<const void*>(x) == static_cast<void*>(out)) {
        for (int64_t i = 0; i < hi - lo; ++i) out[i] = static_cast<S>(static_cast<T>(out[i]) * f);
      } else {
        for (int64_t i = 0; i < hi - lo; ++i) out[i] = static_cast<S>(static_cast<T>(x[i]) * f);
      }
    });
  });
}

// x viewed as [outer, reduce, inner]; one norm per (outer, inner) position.
template <class S>
void norm_constraint_typed(const S* x, S* out, int64_t outer, int64_t reduce, int64_t inner,
                           double max_norm, double epsilon, int num_threads) {
  using T = compute_t<S>;
  constexpr int64_t kInnerBlock = 256;
  const int64_t inner_blocks = (inner + kInnerBlock - 1) / kInnerBlock;
  const int64_t tasks = outer * inner_blocks;
  const bool parallel = outer * reduce * inner >= kParallelMinElements && num_threads > 1;
#pragma omp parallel for schedule(static) num_threads(num_threads) if (parallel)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t o = task / inner_blocks;
    const int64_t i0 = (task % inner_blocks) * kInnerBlock;
    const int64_t width = inner - i0 < kInnerBlock ? inner - i0 : kInnerBlock;
    double acc[kInnerBlock] = {};
    const S* base = x + o * reduce * inner + i0;
    for (int64_t r = 0; r < reduce; ++r)
      for (int64_t j = 0; j < width; ++j) {
        const double v = static_cast<double>(base[r * inner + j]);
        acc[j] += v * v;
      }
    T factor[kInnerBlock];
    for (int64_t j = 0; j < width; ++j)
      factor[j] = static_cast<T>(norm_multiplier(std::sqrt(acc[j]), max_norm, epsilon));
    S* dst = out + o * reduce * inner + i0;
    for (int64_t r = 0; r < reduce; ++r)
      for (int64_t j = 0; j < width; ++j)
        dst[r * inner + j] = static_cast<S>(static_cast<T>(base[r * inner + j]) * factor[j]);
  }
}

void norm_constraint(DType dtype, const void* x, void* out, int64_t outer, int64_t reduce,
                     int64_t inner, double max_norm, double epsilon, int num_threads) {
  dispatch_dtype(dtype, [&](auto tag) {
    using S = decltype(tag);
    norm_constraint_typed(static_cast<const S*>(x), static_cast<S*>(out), outer, reduce, inner,
                          max_norm, epsilon, num_threads);
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
  static const KernelTable table{
      FU_STR(FU_ISA_NAME), apply_step, plan_sum_squares, list_sum_squares, list_scale,
      norm_constraint,     stream};
  return table;
}

}  // namespace fusedupdates::cpu::FU_ISA_NS
