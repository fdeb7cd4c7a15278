// Norm reductions and scaling: the deterministic sum of squares over many tensors (the total
// norm of a clipped step and of total_norm_constraint), the scaling pass and norm_constraint
// over [outer, reduce, inner]. Every sum uses a fixed assignment of elements to threads and a
// fixed combination order, so the same inputs give the same bits on every run.
#include "../common/dtype_dispatch.h"
#include "../rules/norm.h"
#include "device_util.cuh"
#include "launch.h"

namespace fusedupdates::cuda {
namespace {

// This thread's share of the sum of squares of x[0, n), in float64.
template <class S>
__device__ __forceinline__ double chunk_sum_squares(const S* __restrict__ x, int64_t n) {
  constexpr int V = kPackElements<S>;
  const bool vector = is_aligned(x);
  const int64_t packs = n / V;
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < packs; i += kThreads) {
    const Pack<S, V> v = load_pack<S, V>(x, i, vector);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const double d = to_double<S>(v.v[j]);
      acc += d * d;
    }
  }
  for (int64_t i = packs * V + threadIdx.x; i < n; i += kThreads) {
    const double d = to_double<S>(x[i]);
    acc += d * d;
  }
  return acc;
}

// Exactly kNormPartials blocks; block b takes chunks begin + b, begin + b + kNormPartials, ...
// of one storage dtype. A step mixing dtypes runs one launch per dtype, each adding to the
// partials of the one before, in a fixed dtype order: still deterministic.
template <class S>
__global__ void __launch_bounds__(kThreads) sum_squares_kernel(const ReduceArgs a) {
  double acc = 0.0;
  for (int64_t c = a.chunk_begin + blockIdx.x; c < a.chunk_end; c += gridDim.x) {
    const ChunkRef ref = a.chunks[c];
    const auto* x = static_cast<const S*>(a.ptrs[ref.tensor]);
    if (x == nullptr) continue;  // a frozen param's grad (None) counts as zero
    int64_t lo, n;
    chunk_range(ref, a.meta[ref.tensor].numel, lo, n);
    acc += chunk_sum_squares(x + lo, n);
  }
  const double total = block_sum(acc);
  if (threadIdx.x == 0)
    a.partials[blockIdx.x] = (a.accumulate ? a.partials[blockIdx.x] : 0.0) + total;
}

__global__ void __launch_bounds__(kThreads)
    sum_partials_kernel(const double* partials, double* out) {
  const double total = sum_partials(partials);
  if (threadIdx.x == 0) *out = total;
}

template <class S>
__global__ void __launch_bounds__(kThreads) scale_kernel(const ScaleArgs a) {
  using T = compute_t<S>;
  constexpr int V = kPackElements<S>;
  __shared__ double shared_factor;
  const double sum = sum_partials(a.partials);
  if (threadIdx.x == 0) {
    const double norm = FU_MATH::sqrt(sum);
    const double factor = norm_multiplier(norm, a.max_norm, a.epsilon);
    if (blockIdx.x == 0) {
      a.norm_out[0] = norm;
      a.norm_out[1] = factor;
    }
    shared_factor = factor;
  }
  __syncthreads();
  const T f = static_cast<T>(shared_factor);
  for (int64_t c = blockIdx.x; c < a.num_chunks; c += gridDim.x) {
    const ChunkRef ref = a.chunks[c];
    int64_t lo, n;
    chunk_range(ref, a.meta[ref.tensor].numel, lo, n);
    // x and out are the same array (in place) or disjoint (validated): each element is read
    // before it is written, by the same thread.
    const S* x = static_cast<const S*>(a.inputs[ref.tensor]) + lo;
    S* out = static_cast<S*>(a.outputs[ref.tensor]) + lo;
    int64_t done = 0;
    if (is_aligned(x) && is_aligned(out)) {
      const int64_t packs = n / V;
      for (int64_t i = threadIdx.x; i < packs; i += kThreads) {
        Pack<S, V> v = load_pack<S, V>(x, i, true);
#pragma unroll
        for (int j = 0; j < V; ++j) v.v[j] = to_storage<S>(to_compute<S>(v.v[j]) * f);
        store_pack<S, V>(out, i, v);
      }
      done = packs * V;
    }
    for (int64_t i = done + threadIdx.x; i < n; i += kThreads)
      out[i] = to_storage<S>(to_compute<S>(x[i]) * f);
  }
}

// norm_constraint, inner > 1: a block takes 32 adjacent inner positions (coalesced) of one
// outer index; its 8 thread rows split the reduced axis, then row 0 adds the 8 partial sums
// in order. The column is read again to scale it, after the whole column has been summed.
constexpr int kColumns = 32;
constexpr int kRows = kThreads / kColumns;

template <class S>
__global__ void __launch_bounds__(kThreads)
    norm_columns_kernel(const S* x, S* out, int64_t outer, int64_t reduce, int64_t inner,
                        double max_norm, double epsilon) {
  using T = compute_t<S>;
  __shared__ double partial[kRows][kColumns];
  __shared__ T factor[kColumns];
  const int tx = threadIdx.x % kColumns, ty = threadIdx.x / kColumns;
  const int64_t tiles_per_outer = (inner + kColumns - 1) / kColumns;
  for (int64_t tile = blockIdx.x; tile < outer * tiles_per_outer; tile += gridDim.x) {
    const int64_t o = tile / tiles_per_outer;
    const int64_t i = (tile % tiles_per_outer) * kColumns + tx;
    const int64_t base = o * reduce * inner + i;
    double acc = 0.0;
    if (i < inner)
      for (int64_t r = ty; r < reduce; r += kRows) {
        const double v = to_double<S>(x[base + r * inner]);
        acc += v * v;
      }
    partial[ty][tx] = acc;
    __syncthreads();
    if (ty == 0) {
      double total = 0.0;
      for (int row = 0; row < kRows; ++row) total += partial[row][tx];
      factor[tx] = static_cast<T>(norm_multiplier(FU_MATH::sqrt(total), max_norm, epsilon));
    }
    __syncthreads();
    if (i < inner)
      for (int64_t r = ty; r < reduce; r += kRows)
        out[base + r * inner] = to_storage<S>(to_compute<S>(x[base + r * inner]) * factor[tx]);
    __syncthreads();  // partial and factor are reused by the next tile
  }
}

// norm_constraint, inner == 1: the reduced elements of a row are contiguous; one block per row.
template <class S>
__global__ void __launch_bounds__(kThreads)
    norm_rows_kernel(const S* x, S* out, int64_t outer, int64_t reduce, double max_norm,
                     double epsilon) {
  using T = compute_t<S>;
  __shared__ T factor;
  for (int64_t o = blockIdx.x; o < outer; o += gridDim.x) {
    const S* row = x + o * reduce;
    double acc = 0.0;
    for (int64_t r = threadIdx.x; r < reduce; r += kThreads) {
      const double v = to_double<S>(row[r]);
      acc += v * v;
    }
    const double total = block_sum(acc);
    if (threadIdx.x == 0)
      factor = static_cast<T>(norm_multiplier(FU_MATH::sqrt(total), max_norm, epsilon));
    __syncthreads();
    const T f = factor;
    S* dst = out + o * reduce;
    for (int64_t r = threadIdx.x; r < reduce; r += kThreads)
      dst[r] = to_storage<S>(to_compute<S>(row[r]) * f);
    __syncthreads();  // factor is reused by the next row
  }
}

template <class S>
void norm_constraint_typed(const void* x, void* out, int64_t outer, int64_t reduce, int64_t inner,
                           double max_norm, double epsilon, Stream stream) {
  constexpr int64_t kMaxGrid = 1 << 20;  // grid-stride beyond this; far above any GPU's fill
  if (inner > 1) {
    const int64_t tiles = outer * ((inner + kColumns - 1) / kColumns);
    const int grid = static_cast<int>(tiles < kMaxGrid ? tiles : kMaxGrid);
    norm_columns_kernel<S><<<grid, kThreads, 0, as_cuda(stream)>>>(
        static_cast<const S*>(x), static_cast<S*>(out), outer, reduce, inner, max_norm, epsilon);
  } else {
    const int grid = static_cast<int>(outer < kMaxGrid ? outer : kMaxGrid);
    norm_rows_kernel<S><<<grid, kThreads, 0, as_cuda(stream)>>>(
        static_cast<const S*>(x), static_cast<S*>(out), outer, reduce, max_norm, epsilon);
  }
  check_launch("norm_constraint kernel");
}

}  // namespace

void launch_sum_squares(DType dtype, const ReduceArgs& args, Stream stream) {
  dispatch_storage<__half, __nv_bfloat16>(dtype, [&](auto storage) {
    sum_squares_kernel<decltype(storage)><<<kNormPartials, kThreads, 0, as_cuda(stream)>>>(args);
  });
  check_launch("sum of squares kernel");
}

void launch_sum_partials(const double* partials, double* out, Stream stream) {
  sum_partials_kernel<<<1, kThreads, 0, as_cuda(stream)>>>(partials, out);
  check_launch("sum of partials kernel");
}

void launch_scale(DType dtype, const ScaleArgs& args, int device, Stream stream) {
  dispatch_storage<__half, __nv_bfloat16>(dtype, [&](auto storage) {
    const auto kernel = scale_kernel<decltype(storage)>;
    const int grid = grid_for(args.num_chunks, reinterpret_cast<const void*>(kernel), device);
    kernel<<<grid, kThreads, 0, as_cuda(stream)>>>(args);
  });
  check_launch("scale kernel");
}

void launch_norm_constraint(DType dtype, const void* x, void* out, int64_t outer, int64_t reduce,
                            int64_t inner, double max_norm, double epsilon, Stream stream) {
  if (outer <= 0 || reduce <= 0 || inner <= 0) return;  // an empty array: nothing to do
  dispatch_storage<__half, __nv_bfloat16>(dtype, [&](auto storage) {
    norm_constraint_typed<decltype(storage)>(x, out, outer, reduce, inner, max_norm, epsilon,
                                             stream);
  });
}

}  // namespace fusedupdates::cuda
