// Device-side helpers shared by the kernels: storage <-> compute conversions, 16-byte packed
// loads, the deterministic block reduction, launch checks and grid sizing. Loads and stores
// only: the math lives in csrc/rules.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../common/dtype.h"
#include "../common/dtype_dispatch.h"
#include "layout.h"

namespace fusedupdates::cuda {

// Round-to-nearest conversions between a storage type and its compute_t (the common one of
// csrc/common/dtype_dispatch.h: float for float16 and bfloat16, never upcast); the
// constructors of __half and __nv_bfloat16 from float round to nearest even.
template <typename S>
__device__ __forceinline__ compute_t<S> to_compute(S x) {
  return static_cast<compute_t<S>>(x);
}
template <typename S>
__device__ __forceinline__ S to_storage(compute_t<S> x) {
  return static_cast<S>(x);
}
template <typename S>
__device__ __forceinline__ double to_double(S x) {
  return static_cast<double>(to_compute<S>(x));
}

// V elements of T moved as 16-byte words: one vector load per 16 bytes.
constexpr int kPackBytes = 16;
template <typename S>
constexpr int kPackElements = kPackBytes / static_cast<int>(sizeof(S));

template <typename T, int V>
struct alignas(kPackBytes) Pack {
  T v[V];
};

template <typename T>
__device__ __forceinline__ bool is_aligned(const T* p) {
  return (reinterpret_cast<std::uintptr_t>(p) % kPackBytes) == 0;
}

// Pack i of x: elements [i * V, i * V + V). `vector` selects one wide load (x 16-byte aligned)
// or V scalar loads; both visit the same elements, so sums do not depend on the alignment.
template <typename T, int V>
__device__ __forceinline__ Pack<T, V> load_pack(const T* __restrict__ x, int64_t i, bool vector) {
  if (vector) return reinterpret_cast<const Pack<T, V>*>(x)[i];
  Pack<T, V> out;
#pragma unroll
  for (int j = 0; j < V; ++j) out.v[j] = x[i * V + j];
  return out;
}
template <typename T, int V>
__device__ __forceinline__ void store_pack(T* __restrict__ x, int64_t i, const Pack<T, V>& value) {
  reinterpret_cast<Pack<T, V>*>(x)[i] = value;
}

// Sum over the block in a fixed order (warp tree, then warps 0, 1, ...): deterministic.
// The result is valid in thread 0 only. Every thread of the block must call it.
__device__ __forceinline__ double block_sum(double v) {
  static_assert(kThreads % 32 == 0, "whole warps");
  __shared__ double warp_sums[kThreads / 32];
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = v;
  __syncthreads();
  double total = 0.0;
  if (threadIdx.x == 0)
    for (int w = 0; w < kThreads / 32; ++w) total += warp_sums[w];
  __syncthreads();  // warp_sums may be reused by the next call
  return total;
}

// The fixed-order total of the kNormPartials partial sums; every block that calls it gets the
// same bits. Valid in thread 0 only.
__device__ __forceinline__ double sum_partials(const double* partials) {
  double v = 0.0;
  for (int i = threadIdx.x; i < kNormPartials; i += kThreads) v += partials[i];
  return block_sum(v);
}

// The part of chunk `ref` inside a tensor of `numel` elements.
__device__ __forceinline__ void chunk_range(const ChunkRef& ref, int64_t numel, int64_t& lo,
                                            int64_t& n) {
  lo = static_cast<int64_t>(ref.index) * kChunkElements;
  n = numel - lo < kChunkElements ? numel - lo : kChunkElements;
}

// --- host side --------------------------------------------------------------------------------
// Throws std::runtime_error naming `what` when the last launch (or call) failed. Launch errors
// are reported by cudaGetLastError without waiting for the GPU.
void check_cuda(cudaError_t status, const char* what);
inline void check_launch(const char* what) { check_cuda(cudaGetLastError(), what); }

// Blocks of `kernel` (kThreads each) that fill `device` once: SMs x resident blocks per SM.
// Cached per (kernel, device).
int resident_blocks(const void* kernel, int device);

inline int grid_for(int64_t chunks, const void* kernel, int device) {
  const int64_t cap = resident_blocks(kernel, device);
  const int64_t blocks = chunks < cap ? chunks : cap;
  return static_cast<int>(blocks > 0 ? blocks : 1);
}

inline cudaStream_t as_cuda(Stream s) { return static_cast<cudaStream_t>(s); }

}  // namespace fusedupdates::cuda
