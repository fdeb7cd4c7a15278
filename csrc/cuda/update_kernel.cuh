// The multi-tensor update kernel: one launch applies a rule (plain, or with one momentum
// modifier) to every chunk of every tensor of one storage dtype and that modifier. Included only by
// the update_<rule>.cu files, which instantiate it, so that each rule compiles in its own
// translation unit (parallel builds) and the rest of the backend never sees this template.
#pragma once
#include <new>
#include <type_traits>

#include "../rules/rules.h"
#include "device_util.cuh"
#include "update_launch.h"

namespace fusedupdates::cuda {

// Load, update_element, store over elements [lo, lo + n) of one tensor. 16-byte packs when
// every stream of the tensor is aligned, scalar otherwise and for the tail. kMaster (16-bit
// params with float32 master weights): the rule updates the master copy, which is read and
// written in full precision, and the param is only written, rounded from it.
template <class S, class Rule, bool kMaster>
__device__ __forceinline__ void apply_chunk(const Rule& rule,
                                            const ElementScalars<compute_t<S>>& scalars,
                                            const TensorPtrs& t, const S* __restrict__ grad,
                                            int64_t lo, int64_t n) {
  using T = compute_t<S>;
  constexpr int K = Rule::kNumStates;
  constexpr int KS = K > 0 ? K : 1;
  constexpr int V = kPackElements<S>;
  S* __restrict__ p = static_cast<S*>(t.param) + lo;
  T* __restrict__ m = kMaster ? static_cast<T*>(t.master) + lo : nullptr;
  const S* __restrict__ g = grad + lo;
  T* s[KS];
  bool aligned = is_aligned(p) && is_aligned(g) && (!kMaster || is_aligned(m));
#pragma unroll
  for (int k = 0; k < K; ++k) {
    s[k] = static_cast<T*>(t.state[k]) + lo;
    aligned = aligned && is_aligned(s[k]);
  }
  int64_t done = 0;
  if (aligned) {
    const int64_t packs = n / V;
    for (int64_t i = threadIdx.x; i < packs; i += kThreads) {
      Pack<S, V> pv;
      Pack<T, V> mv;
      if constexpr (kMaster)
        mv = load_pack<T, V>(m, i, true);
      else
        pv = load_pack<S, V>(p, i, true);
      const Pack<S, V> gv = load_pack<S, V>(g, i, true);
      Pack<T, V> sv[KS];
#pragma unroll
      for (int k = 0; k < K; ++k) sv[k] = load_pack<T, V>(s[k], i, true);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        StateVec<T, K> e;
#pragma unroll
        for (int k = 0; k < K; ++k) e[k] = sv[k].v[j];
        const T x = kMaster ? mv.v[j] : to_compute<S>(pv.v[j]);
        const T y = update_element(rule, scalars, x, to_compute<S>(gv.v[j]), e);
        if constexpr (kMaster) mv.v[j] = y;
        pv.v[j] = to_storage<S>(y);
#pragma unroll
        for (int k = 0; k < K; ++k) sv[k].v[j] = e[k];
      }
      store_pack<S, V>(p, i, pv);
      if constexpr (kMaster) store_pack<T, V>(m, i, mv);
#pragma unroll
      for (int k = 0; k < K; ++k) store_pack<T, V>(s[k], i, sv[k]);
    }
    done = packs * V;
  }
  for (int64_t i = done + threadIdx.x; i < n; i += kThreads) {
    StateVec<T, K> e;
#pragma unroll
    for (int k = 0; k < K; ++k) e[k] = s[k][i];
    const T x = kMaster ? m[i] : to_compute<S>(p[i]);
    const T y = update_element(rule, scalars, x, to_compute<S>(g[i]), e);
    if constexpr (kMaster) m[i] = y;
    p[i] = to_storage<S>(y);
#pragma unroll
    for (int k = 0; k < K; ++k) s[k][i] = e[k];
  }
}

// The body of every update kernel (full and compact state): the step's values, the clipping
// and skip decisions, the grid-stride loop over chunks, t on the device. `apply(rule, scalars,
// ptrs, grad, lo, n)` updates elements [lo, lo + n) of one tensor (a whole chunk).
// The rule functor is built once per block, by thread 0: building it in every thread would
// repeat the double-precision pow() of the bias corrections 256 times per block. Rule is the
// plain rule or WithMomentum<rule>: one instantiation per modifier, so a launch never carries
// the registers of the path it does not take.
template <class S, class Rule, class Apply>
__device__ __forceinline__ void run_update(const UpdateArgs& a, const Apply& apply) {
  using T = compute_t<S>;
  static_assert(std::is_same_v<typename Rule::value_type, T>, "rule of the wrong compute type");
  __shared__ alignas(16) unsigned char rule_bytes[sizeof(Rule)];
  __shared__ alignas(16) unsigned char scalar_bytes[sizeof(ElementScalars<T>)];
  __shared__ int skip;  // a non-finite grad with skip_nonfinite: this step does nothing

  // Clipping and the non-finite check: every block sums the same partials in the same order,
  // so every block derives the same multiplier and the same decision to skip, without a
  // grid-wide barrier or an extra launch.
  const double sum = a.partials != nullptr ? sum_partials(a.partials) : 0.0;
  double step = 0.0;  // thread 0: the t this step uses
  if (threadIdx.x == 0) {
    HyperParams h = a.hyper;  // eager: every value as given, step = t + 1
    if (a.control != nullptr) {
      // Captured (or after a capture): the rule fields of this launch's parameter group and t
      // from the device, so a replay sees the values set since the capture and the t left by
      // the previous replay.
      const double momentum = h.momentum;
      h = a.group_control->hyper;
      h.momentum = momentum;
      h.step = a.control->hyper.step + 1.0;  // the device counts updates applied; use t + 1
    }
    if (a.momentum != nullptr) h.momentum = *a.momentum;
    double inverse_scale = a.inverse_scale;
    if (a.scale_device != nullptr)
      inverse_scale =
          1.0 / (a.scale_is_double ? *static_cast<const double*>(a.scale_device)
                                   : double(*static_cast<const float*>(a.scale_device)));
    h.grad_scale = inverse_scale;
    // A float16/32 square cannot overflow a double: the sum is finite exactly when every grad
    // is (as on the CPU).
    // A device scale is not validated on the host (that would synchronise): one that is not
    // finite and > 0 skips the step like a non-finite grad.
    const bool bad_scale = !(inverse_scale > 0.0) || !FU_MATH::isfinite(inverse_scale);
    skip = a.skip_nonfinite && (!FU_MATH::isfinite(sum) || bad_scale);
    if (a.clip) {
      const double norm = FU_MATH::sqrt(sum) * inverse_scale;  // of the unscaled grads
      h.grad_scale = norm_multiplier(norm, a.max_norm, a.clip_epsilon) * inverse_scale;
      if (a.write_norm && blockIdx.x == 0) {
        a.norm_out[0] = norm;
        a.norm_out[1] = h.grad_scale;
      }
    }
    if (a.applied_out != nullptr && a.write_norm && blockIdx.x == 0) *a.applied_out = skip ? 0 : 1;
    new (rule_bytes) Rule(h);
    new (scalar_bytes) ElementScalars<T>(h);
    step = h.step;
  }
  __syncthreads();
  const Rule rule = *reinterpret_cast<const Rule*>(rule_bytes);
  const ElementScalars<T> scalars = *reinterpret_cast<const ElementScalars<T>*>(scalar_bytes);

  for (int64_t c = skip ? a.chunk_end : a.chunk_begin + blockIdx.x; c < a.chunk_end;
       c += gridDim.x) {
    const ChunkRef ref = a.chunks[c];
    const auto* grad = static_cast<const S*>(a.grads[ref.tensor]);
    if (grad == nullptr) continue;  // a frozen param (grad None): it and its state stay as is
    int64_t lo, n;
    chunk_range(ref, a.meta[ref.tensor].numel, lo, n);
    apply(rule, scalars, a.ptrs[ref.tensor], grad, lo, n);
  }

  // t on the device: the last block to finish stores the t this step used. Every block read
  // it (thread 0, above) before its own atomicAdd, so no block can see the new value.
  if (a.advance && a.control != nullptr && threadIdx.x == 0) {
    __threadfence();
    const unsigned int finished = atomicAdd(&a.control->blocks_done, 1u);
    if (finished == gridDim.x - 1) {
      if (!skip) a.control->hyper.step = step;  // a skipped step leaves t as it was
      a.control->blocks_done = 0u;
    }
  }
}

template <class S, class Rule>
__global__ void __launch_bounds__(kThreads) update_kernel(const UpdateArgs a) {
  run_update<S, Rule>(a, [](const Rule& rule, const ElementScalars<compute_t<S>>& scalars,
                            const TensorPtrs& ptrs, const S* grad, int64_t lo, int64_t n) {
    if constexpr (sizeof(S) == 2) {  // only 16-bit params have master weights
      if (ptrs.master != nullptr) {
        apply_chunk<S, Rule, true>(rule, scalars, ptrs, grad, lo, n);
        return;
      }
    }
    apply_chunk<S, Rule, false>(rule, scalars, ptrs, grad, lo, n);
  });
}

template <class S, class Rule>
void launch_update_typed(const UpdateArgs& args, int device, Stream stream) {
  const auto kernel = update_kernel<S, Rule>;
  const int grid =
      grid_for(args.chunk_end - args.chunk_begin, reinterpret_cast<const void*>(kernel), device);
  kernel<<<grid, kThreads, 0, as_cuda(stream)>>>(args);
  check_launch("update kernel");
}

// Instantiates rule template R for every storage dtype: plain, with momentum, with Nesterov.
#define FU_INSTANTIATE_STORAGE(S, R)                                                            \
  template void launch_update_typed<S, R<compute_t<S>>>(const UpdateArgs&, int, Stream);        \
  template void launch_update_typed<S, WithMomentum<R<compute_t<S>>, false>>(const UpdateArgs&, \
                                                                             int, Stream);      \
  template void launch_update_typed<S, WithMomentum<R<compute_t<S>>, true>>(const UpdateArgs&,  \
                                                                            int, Stream);
#define FU_INSTANTIATE_UPDATE(R)           \
  FU_INSTANTIATE_STORAGE(__half, R)        \
  FU_INSTANTIATE_STORAGE(__nv_bfloat16, R) \
  FU_INSTANTIATE_STORAGE(float, R)         \
  FU_INSTANTIATE_STORAGE(double, R)

}  // namespace fusedupdates::cuda
