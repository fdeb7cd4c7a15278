// Norm reductions and scaling (total_norm_constraint, step(max_norm), norm_constraint),
// compiled once per instruction set like kernels.cpp (split from it to keep both readable).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../rules/norm.h"
#include "element_ranges.h"
#include "isa_kernels.h"
#include "prefetch.h"
#include "storage.h"

#ifndef FU_ISA_NS
#error "FU_ISA_NS must name the instruction-set namespace"
#endif

namespace fusedupdates::cpu::FU_ISA_NS {
namespace {

// Squares are summed in double. float16 and bfloat16 go through float tiles with widen() /
// narrow(), as apply_piece_16bit does: GCC cannot vectorise _Float16 conversions, and the scalar
// loops ran ~10x slower than float32 instead of at the byte ratio.
//
// One read-only stream per thread is limited by how many cache lines are in flight, not by the
// arithmetic: the `omp simd` reduction streamed ~15 GB/s on the 2-core Xeon where the update
// (four streams) reaches ~38 (bench/results/step-options-*.md), and independent accumulators
// alone did not change that (measured). Prefetching ahead (prefetch.h) is what raised it.
// Element i of a piece goes to accumulator i % kSumLanes and the lanes are added in lane order:
// the summation order is fixed by the piece alone (not by alignment, vector width or thread
// count), with enough independent chains to hide the FMA latency at any vector width.
constexpr int kSumLanes = 32;
// 8 KB ahead: 4, 8 and 16 KB streamed alike on the 2-core Xeon (read pass between updates of
// 16M float32 elements), 32 KB a little slower.
constexpr uintptr_t kSumPrefetchBytes = 8192;

// lanes[j] += x[i]^2 for every i = j (mod kSumLanes) of [0, n); n % kSumLanes lanes get one
// element fewer. kPrefetch: x is the array in memory (not a widened tile).
template <bool kPrefetch, class T>
void add_squares(double* __restrict lanes, const T* __restrict x, int64_t n) {
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes) {
    if constexpr (kPrefetch) prefetch_ahead(x + i, kSumLanes * sizeof(T), kSumPrefetchBytes);
    for (int j = 0; j < kSumLanes; ++j) {
      const double v = static_cast<double>(x[i + j]);
      lanes[j] += v * v;
    }
  }
  for (int j = 0; i < n; ++i, ++j) {
    const double v = static_cast<double>(x[i]);
    lanes[j] += v * v;
  }
}

// Sum of squares of x[0, n).
template <class S>
double sum_squares_contiguous(const S* x, int64_t n) {
  double lanes[kSumLanes] = {};
  if constexpr (kIs16Bit<S>) {
    static_assert(kHalfTile % kSumLanes == 0, "every tile must start at lane 0");
    alignas(64) float tile[kHalfTile];
    for (int64_t i = 0; i < n; i += kHalfTile) {
      const int64_t w = std::min(n - i, kHalfTile);
      prefetch_ahead(x + i, w * static_cast<int64_t>(sizeof(S)), kSumPrefetchBytes);
      widen(x + i, tile, w);
      add_squares<false>(lanes, tile, w);
    }
  } else {
    add_squares<true>(lanes, x, n);
  }
  double acc = 0.0;
  for (int j = 0; j < kSumLanes; ++j) acc += lanes[j];
  return acc;
}

// out[i] = x[i] * f[i or 0] in T. x and out are the same array (in place) or disjoint
// (validated): the in-place case gets its own loop so that __restrict stays truthful.
template <class T, bool kPerElement>
void multiply(const T* x, T* out, const T* f, int64_t n) {
  const T f0 = f[0];
  if (static_cast<const void*>(x) == static_cast<void*>(out)) {
    T* __restrict o = out;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) o[i] *= kPerElement ? f[i] : f0;
  } else {
    const T* __restrict in = x;
    T* __restrict o = out;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) o[i] = in[i] * (kPerElement ? f[i] : f0);
  }
}

// out[i] = S(T(x[i]) * f[i or 0]) for i in [0, n).
template <class S, bool kPerElement>
void scale_contiguous(const S* x, S* out, const compute_t<S>* f, int64_t n) {
  if constexpr (kIs16Bit<S>) {
    alignas(64) float tile[kHalfTile];
    for (int64_t i = 0; i < n; i += kHalfTile) {
      const int64_t w = std::min(n - i, kHalfTile);
      widen(x + i, tile, w);
      multiply<float, kPerElement>(tile, tile, kPerElement ? f + i : f, w);
      narrow(tile, out + i, w);
    }
  } else {
    multiply<S, kPerElement>(x, out, f, n);
  }
}

template <class GetPtr>
double sum_squares(DType dtype, size_t count, const int64_t* numel_of, GetPtr ptr_of,
                   int num_threads) {
  double result = 0.0;
  dispatch_dtype(dtype, [&](auto tag) {
    using S = decltype(tag);
    const ElementRanges ranges(count, [&](size_t i) { return numel_of[i]; });
    result = ranges.deterministic_sum(num_threads, [&](size_t t, int64_t lo, int64_t hi) {
      return sum_squares_contiguous(static_cast<const S*>(ptr_of(t)) + lo, hi - lo);
    });
  });
  return result;
}

// A storage type's bits as an unsigned integer: |x| is the bits without the sign, and every
// non-finite value (Inf, NaN) has magnitude bits >= those of Inf.
template <class S>
struct FloatBits;
template <>
struct FloatBits<float> {
  using U = uint32_t;
  static constexpr U kMagnitude = 0x7fffffffu, kInf = 0x7f800000u;
};
template <>
struct FloatBits<double> {
  using U = uint64_t;
  static constexpr U kMagnitude = 0x7fffffffffffffffull, kInf = 0x7ff0000000000000ull;
};
template <>
struct FloatBits<half_t> {
  using U = uint16_t;
  static constexpr U kMagnitude = 0x7fff, kInf = 0x7c00;
};
template <>
struct FloatBits<bfloat16_t> {
  using U = uint16_t;
  static constexpr U kMagnitude = 0x7fff, kInf = 0x7f80;
};

// The largest magnitude bits of n values: integer max and and, no widening and no
// arithmetic, so that even 16-bit grads are checked at the speed memory delivers them (the
// sum of squares widens them to double: ~28 GB/s for bfloat16 against ~55 for float32).
template <class S>
typename FloatBits<S>::U max_magnitude_bits(const S* x, int64_t n) {
  using B = FloatBits<S>;
  using U = typename B::U;
  const U* __restrict u = reinterpret_cast<const U*>(x);
  constexpr int64_t kChunk = 64 / sizeof(U) * 4;  // 4 cache lines per prefetch group
  U m = 0;
  int64_t i = 0;
  for (; i + kChunk <= n; i += kChunk) {
    prefetch_ahead(u + i, 4 * 64, kSumPrefetchBytes);
#pragma omp simd reduction(max : m)
    for (int64_t j = i; j < i + kChunk; ++j) m = std::max<U>(m, u[j] & B::kMagnitude);
  }
  for (; i < n; ++i) m = std::max<U>(m, u[i] & B::kMagnitude);
  return m;
}

}  // namespace

bool plan_all_finite(const StepPlan& plan, int num_threads) {
  bool finite = true;
  dispatch_dtype(plan.dtype, [&](auto tag) {
    using S = decltype(tag);
    using B = FloatBits<S>;
    const ElementRanges ranges(plan.tensors.size(),
                               [&](size_t i) { return plan.tensors[i].numel; });
    // Order does not matter for a max: each thread checks its own stretch.
    std::atomic<bool> any_nonfinite{false};
    ranges.parallel_for_pieces(num_threads, [&](size_t t, int64_t lo, int64_t hi) {
      const S* g = static_cast<const S*>(plan.tensors[t].grad) + lo;
      if (max_magnitude_bits(g, hi - lo) >= B::kInf)
        any_nonfinite.store(true, std::memory_order_relaxed);
    });
    finite = !any_nonfinite.load();
  });
  return finite;
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
    const compute_t<S> f = static_cast<compute_t<S>>(factor);
    const ElementRanges ranges(list.numel.size(), [&](size_t i) { return list.numel[i]; });
    ranges.parallel_for_pieces(num_threads, [&](size_t t, int64_t lo, int64_t hi) {
      scale_contiguous<S, false>(static_cast<const S*>(list.inputs[t]) + lo,
                                 static_cast<S*>(list.outputs[t]) + lo, &f, hi - lo);
    });
  });
}

namespace {

// The sums of squares of one panel (NormPanels, element_ranges.h) into acc[0, column width).
template <class S>
void panel_sum_squares(const NormPanels& panels, const S* x, int64_t c, int64_t k, double* acc) {
  const S* base = x + panels.column_offset(c) + panels.chunk_first_row(k) * panels.inner;
  const int64_t rows = panels.chunk_rows(k), width = panels.column_width(c);
  if (panels.inner == 1) {  // the reduced elements are contiguous
    acc[0] = sum_squares_contiguous(base, rows);
    return;
  }
  // Side by side: sums[j] += x[r, j]^2 row by row, vectorised along the row.
  double sums[NormPanels::kColumnWidth] = {};
  for (int64_t r = 0; r < rows; ++r) {
    const S* row = base + r * panels.inner;
    if constexpr (kIs16Bit<S>) {
      alignas(64) float tile[NormPanels::kColumnWidth];
      widen(row, tile, width);
      for (int64_t j = 0; j < width; ++j) {
        const double v = tile[j];
        sums[j] += v * v;
      }
    } else {
      for (int64_t j = 0; j < width; ++j) {
        const double v = static_cast<double>(row[j]);
        sums[j] += v * v;
      }
    }
  }
  std::copy(sums, sums + width, acc);
}

// Scales one panel by its column's multipliers factor[0, column width).
template <class S>
void panel_scale(const NormPanels& panels, const S* x, S* out, int64_t c, int64_t k,
                 const compute_t<S>* factor) {
  using T = compute_t<S>;
  const int64_t offset = panels.column_offset(c) + panels.chunk_first_row(k) * panels.inner;
  const int64_t rows = panels.chunk_rows(k), width = panels.column_width(c);
  if (panels.inner == 1) {
    scale_contiguous<S, false>(x + offset, out + offset, factor, rows);
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const S* row = x + offset + r * panels.inner;
    S* dst = out + offset + r * panels.inner;  // == row in place, else disjoint (validated)
    if constexpr (kIs16Bit<S>) {
      alignas(64) float tile[NormPanels::kColumnWidth];
      widen(row, tile, width);
      for (int64_t j = 0; j < width; ++j) tile[j] *= factor[j];
      narrow(tile, dst, width);
    } else {
      for (int64_t j = 0; j < width; ++j)
        dst[j] = static_cast<S>(static_cast<T>(row[j]) * factor[j]);
    }
  }
}

// x viewed as [outer, reduce, inner]; one norm per (outer, inner) position. Every norm is the
// sum of its panels' sums (NormPanels: cut by shape alone) added in chunk order, whichever
// schedule runs, so the result does not depend on the thread count.
template <class S>
void norm_constraint_typed(const S* x, S* out, int64_t outer, int64_t reduce, int64_t inner,
                           double max_norm, double epsilon, int num_threads) {
  using T = compute_t<S>;
  constexpr int64_t W = NormPanels::kColumnWidth;
  const NormPanels panels(outer, reduce, inner);
  const bool parallel = outer * reduce * inner >= kParallelMinElements && num_threads > 1;
  const auto factor_of = [&](double sum_squares) {
    return static_cast<T>(norm_multiplier(std::sqrt(sum_squares), max_norm, epsilon));
  };
  if (!parallel || panels.columns >= 4 * num_threads) {
    // Enough columns to share out: a task sums one column, then scales it, from cache when
    // the column fits there.
#pragma omp parallel for schedule(static) num_threads(num_threads) if (parallel)
    for (int64_t c = 0; c < panels.columns; ++c) {
      const int64_t width = panels.column_width(c);
      double sums[W] = {}, part[W];
      for (int64_t k = 0; k < panels.chunks; ++k) {
        panel_sum_squares(panels, x, c, k, part);
        for (int64_t j = 0; j < width; ++j) sums[j] += part[j];
      }
      T factor[W];
      for (int64_t j = 0; j < width; ++j) factor[j] = factor_of(sums[j]);
      for (int64_t k = 0; k < panels.chunks; ++k) panel_scale(panels, x, out, c, k, factor);
    }
    return;
  }
  // Few long columns (e.g. one norm over a whole vector): every panel's sums in parallel, then
  // each column's added in chunk order, then every panel scaled.
  const int64_t stride = panels.width;
  std::vector<double> partial(panels.count() * stride);
  std::vector<T> factors(panels.columns * stride);
#pragma omp parallel num_threads(num_threads)
  {
#pragma omp for schedule(static)
    for (int64_t p = 0; p < panels.count(); ++p)
      panel_sum_squares(panels, x, p / panels.chunks, p % panels.chunks, &partial[p * stride]);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < panels.columns; ++c)
      for (int64_t j = 0; j < panels.column_width(c); ++j) {
        double sum = 0.0;
        for (int64_t k = 0; k < panels.chunks; ++k)
          sum += partial[(c * panels.chunks + k) * stride + j];
        factors[c * stride + j] = factor_of(sum);
      }
#pragma omp for schedule(static)
    for (int64_t p = 0; p < panels.count(); ++p)
      panel_scale(panels, x, out, p / panels.chunks, p % panels.chunks,
                  &factors[p / panels.chunks * stride]);
  }
}

}  // namespace

void norm_constraint(DType dtype, const void* x, void* out, int64_t outer, int64_t reduce,
                     int64_t inner, double max_norm, double epsilon, int num_threads) {
  if (outer <= 0 || reduce <= 0 || inner <= 0) return;  // an empty array: nothing to do
  dispatch_dtype(dtype, [&](auto tag) {
    using S = decltype(tag);
    norm_constraint_typed(static_cast<const S*>(x), static_cast<S*>(out), outer, reduce, inner,
                          max_norm, epsilon, num_threads);
  });
}

}  // namespace fusedupdates::cpu::FU_ISA_NS
