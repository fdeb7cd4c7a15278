// The multi-tensor update kernel: one launch applies a rule (optionally with the momentum
// modifier, per tensor) to every chunk of every tensor of one storage dtype. Included only by
// the update_<rule>.cu files, which instantiate it, so that each rule compiles in its own
// translation unit (parallel builds) and the rest of the backend never sees this template.
#pragma once
#include <new>

#include "../rules/rules.h"
#include "device_util.cuh"
#include "update_launch.h"

namespace fusedupdates::cuda {

// Load, update_element, store over elements [lo, lo + n) of one tensor. 16-byte packs when
// every stream of the tensor is aligned, scalar otherwise and for the tail.
template <class S, class Rule>
__device__ __forceinline__ void apply_chunk(const Rule& rule,
                                            const ElementScalars<compute_t<S>>& k,
                                            const TensorPtrs& t, const S* __restrict__ grad,
                                            int64_t lo, int64_t n) {
  using T = compute_t<S>;
  constexpr int K = Rule::kNumStates;
  constexpr int KS = K > 0 ? K : 1;
  constexpr int V = kPackElements<S>;
  S* __restrict__ p = static_cast<S*>(t.param) + lo;
  const S* __restrict__ g = grad + lo;
  T* s[KS];
  bool aligned = is_aligned(p) && is_aligned(g);
#pragma unroll
  for (int k = 0; k < K; ++k) {
    s[k] = static_cast<T*>(t.state[k]) + lo;
    aligned = aligned && is_aligned(s[k]);
  }
  int64_t done = 0;
  if (aligned) {
    const int64_t packs = n / V;
    for (int64_t i = threadIdx.x; i < packs; i += kThreads) {
      Pack<S, V> pv = load_pack<S, V>(p, i, true);
      const Pack<S, V> gv = load_pack<S, V>(g, i, true);
      Pack<T, V> sv[KS];
#pragma unroll
      for (int k = 0; k < K; ++k) sv[k] = load_pack<T, V>(s[k], i, true);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        StateVec<T, K> e;
#pragma unroll
        for (int k = 0; k < K; ++k) e[k] = sv[k].v[j];
        pv.v[j] = to_storage<S>(
            update_element(rule, k, to_compute<S>(pv.v[j]), to_compute<S>(gv.v[j]), e));
#pragma unroll
        for (int k = 0; k < K; ++k) sv[k].v[j] = e[k];
      }
      store_pack<S, V>(p, i, pv);
#pragma unroll
      for (int k = 0; k < K; ++k) store_pack<T, V>(s[k], i, sv[k]);
    }
    done = packs * V;
  }
  for (int64_t i = done + threadIdx.x; i < n; i += kThreads) {
    StateVec<T, K> e;
#pragma unroll
    for (int k = 0; k < K; ++k) e[k] = s[k][i];
    p[i] = to_storage<S>(
        update_element(rule, k, to_compute<S>(p[i]), to_compute<S>(g[i]), e));
#pragma unroll
    for (int k = 0; k < K; ++k) s[k][i] = e[k];
  }
}

// The rule functors are built once per block, by thread 0, from the hyperparameters in device
// memory (or the launch's own for the functional API): building them in every thread would
// repeat the double-precision pow() of the bias corrections 256 times per block.
template <class S, template <class> class R, bool kNesterov>
__global__ void __launch_bounds__(kThreads) update_kernel(const UpdateArgs a) {
  using T = compute_t<S>;
  using Plain = R<T>;
  using Modified = WithMomentum<Plain, kNesterov>;
  __shared__ alignas(16) unsigned char plain_bytes[sizeof(Plain)];
  __shared__ alignas(16) unsigned char modified_bytes[sizeof(Modified)];
  __shared__ alignas(16) unsigned char scalar_bytes[sizeof(ElementScalars<T>)];

  // Clipping: every block sums the same partials in the same order, so every block derives
  // the same multiplier without a grid-wide barrier or an extra launch.
  const double sum = a.partials != nullptr ? sum_partials(a.partials) : 0.0;
  double step = 0.0;  // thread 0: the t this step uses
  if (threadIdx.x == 0) {
    HyperParams h = a.hyper;
    if (a.control != nullptr) {
      h = a.control->hyper;
      h.step += 1.0;  // the device counts steps taken; this step uses t + 1
    }
    h.grad_scale = 1.0;
    if (a.partials != nullptr) {
      const double norm = FU_MATH::sqrt(sum);
      h.grad_scale = norm_multiplier(norm, a.max_norm, a.clip_epsilon);
      if (a.write_norm && blockIdx.x == 0) {
        a.norm_out[0] = norm;
        a.norm_out[1] = h.grad_scale;
      }
    }
    new (plain_bytes) Plain(h);
    new (modified_bytes) Modified(h);
    new (scalar_bytes) ElementScalars<T>(h);
    step = h.step;
  }
  __syncthreads();
  const Plain plain = *reinterpret_cast<const Plain*>(plain_bytes);
  const Modified modified = *reinterpret_cast<const Modified*>(modified_bytes);
  const ElementScalars<T> scalars = *reinterpret_cast<const ElementScalars<T>*>(scalar_bytes);

  for (int64_t c = a.chunk_begin + blockIdx.x; c < a.chunk_end; c += gridDim.x) {
    const ChunkRef ref = a.chunks[c];
    const TensorMeta meta = a.meta[ref.tensor];
    const TensorPtrs ptrs = a.ptrs[ref.tensor];
    const S* grad = static_cast<const S*>(a.grads[ref.tensor]);
    int64_t lo, n;
    chunk_range(ref, meta.numel, lo, n);
    if (meta.with_momentum)
      apply_chunk<S>(modified, scalars, ptrs, grad, lo, n);
    else
      apply_chunk<S>(plain, scalars, ptrs, grad, lo, n);
  }

  // t on the device: the last block to finish stores the t this step used. Every block read
  // it (thread 0, above) before its own atomicAdd, so no block can see the new value.
  if (a.advance && threadIdx.x == 0) {
    __threadfence();
    const unsigned int finished = atomicAdd(&a.control->blocks_done, 1u);
    if (finished == gridDim.x - 1) {
      a.control->hyper.step = step;
      a.control->blocks_done = 0u;
    }
  }
}

template <class S, template <class> class R, bool kNesterov>
void launch_update_typed(const UpdateArgs& args, int device, Stream stream) {
  const auto kernel = update_kernel<S, R, kNesterov>;
  const int grid =
      grid_for(args.chunk_end - args.chunk_begin, reinterpret_cast<const void*>(kernel), device);
  kernel<<<grid, kThreads, 0, as_cuda(stream)>>>(args);
  check_launch("update kernel");
}

// Instantiates rule R for every storage dtype, with both momentum forms.
#define FU_INSTANTIATE_UPDATE(R)                                                       \
  template void launch_update_typed<__half, R, false>(const UpdateArgs&, int, Stream); \
  template void launch_update_typed<__half, R, true>(const UpdateArgs&, int, Stream);  \
  template void launch_update_typed<float, R, false>(const UpdateArgs&, int, Stream);  \
  template void launch_update_typed<float, R, true>(const UpdateArgs&, int, Stream);   \
  template void launch_update_typed<double, R, false>(const UpdateArgs&, int, Stream); \
  template void launch_update_typed<double, R, true>(const UpdateArgs&, int, Stream);

}  // namespace fusedupdates::cuda
