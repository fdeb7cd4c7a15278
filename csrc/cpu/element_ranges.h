// Splitting the elements of many tensors among threads by ELEMENT count (not by tensor), so a
// step over one 16M tensor and a step over 200 small ones are both balanced, and each thread
// streams one contiguous stretch of memory.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#ifndef FU_ISA_NS
#error "included only by the per-instruction-set kernels (FU_ISA_NS names their namespace)"
#endif

// Inside the instruction set's inline namespace: each ISA's object file compiles these inline
// functions with its own -march flags, and a shared name would let the linker keep one copy
// (say the AVX-512 one) for every ISA's out-of-line calls.
namespace fusedupdates::cpu {
inline namespace FU_ISA_NS {

// Below this many elements in a whole step, forking threads costs more than it saves.
constexpr int64_t kParallelMinElements = 1 << 15;
// Thread boundaries are rounded to this many elements (a 64-byte line of float16..float64).
constexpr int64_t kBoundaryAlign = 64;

// Prefix sums of tensor sizes: tensor i holds global elements [offsets[i], offsets[i+1]).
class ElementRanges {
 public:
  // Reuses one buffer per calling thread, so a step allocates nothing once warmed up.
  // Only one ElementRanges may be alive per thread at a time.
  template <class NumelOf>
  ElementRanges(size_t count, NumelOf numel_of) : offsets_(buffer()) {
    offsets_.assign(count + 1, 0);
    for (size_t i = 0; i < count; ++i) offsets_[i + 1] = offsets_[i] + numel_of(i);
  }
  int64_t total() const { return offsets_.back(); }

  // Calls f(tensor, begin, end) for every piece of a tensor inside global range [lo, hi).
  template <class F>
  void for_each_piece(int64_t lo, int64_t hi, F&& f) const {
    if (lo >= hi) return;
    size_t t = std::upper_bound(offsets_.begin(), offsets_.end(), lo) - offsets_.begin() - 1;
    for (; t + 1 < offsets_.size() && offsets_[t] < hi; ++t) {
      const int64_t b = std::max(lo, offsets_[t]) - offsets_[t];
      const int64_t e = std::min(hi, offsets_[t + 1]) - offsets_[t];
      if (e > b) f(t, b, e);
    }
  }

  // Each thread gets one contiguous, equally sized stretch of the global element range.
  template <class F>
  void parallel_for_pieces(int num_threads, F&& f) const {
    const int64_t n = total();
    if (n < kParallelMinElements || num_threads <= 1) {
      for_each_piece(0, n, f);
      return;
    }
#pragma omp parallel num_threads(num_threads)
    {
      const int64_t nt = omp_get_num_threads(), tid = omp_get_thread_num();
      const int64_t lo =
          std::min(n, (n * tid / nt + kBoundaryAlign - 1) / kBoundaryAlign * kBoundaryAlign);
      const int64_t hi = tid + 1 == nt ? n
                                       : std::min(n, (n * (tid + 1) / nt + kBoundaryAlign - 1) /
                                                         kBoundaryAlign * kBoundaryAlign);
      for_each_piece(lo, hi, f);
    }
  }

  // Sum over fixed blocks of the global range, combined in block order: the result does not
  // depend on the thread count, so the same inputs give the same bits every run.
  template <class BlockSum>
  double deterministic_sum(int num_threads, BlockSum&& block_sum) const {
    constexpr int64_t kBlock = 1 << 16;
    const int64_t n = total();
    const int64_t blocks = (n + kBlock - 1) / kBlock;
    thread_local std::vector<double> partial_buffer;
    partial_buffer.assign(blocks, 0.0);
    double* partial = partial_buffer.data();  // not the thread_local name: workers see theirs
    const bool parallel = n >= kParallelMinElements && num_threads > 1;
#pragma omp parallel for schedule(static) num_threads(num_threads) if (parallel)
    for (int64_t b = 0; b < blocks; ++b) {
      double acc = 0.0;
      for_each_piece(b * kBlock, std::min(n, (b + 1) * kBlock),
                     [&](size_t t, int64_t lo, int64_t hi) { acc += block_sum(t, lo, hi); });
      partial[b] = acc;
    }
    double total_sum = 0.0;
    for (int64_t b = 0; b < blocks; ++b) total_sum += partial[b];
    return total_sum;
  }

 private:
  static std::vector<int64_t>& buffer() {
    thread_local std::vector<int64_t> offsets;
    return offsets;
  }
  std::vector<int64_t>& offsets_;
};

// How norm_constraint cuts x, viewed as [outer, reduce, inner], into work: one norm per
// (outer, inner) position. Positions are grouped into "columns" (one outer index and up to
// kColumnWidth adjacent inner positions; with inner == 1 a column is one contiguous row of
// `reduce` elements) and each column's reduced axis into chunks of rows_per_chunk rows; a
// "panel" is one chunk of one column. The cut depends only on the shape: partial sums per panel
// added in chunk order give the same bits for any thread count, and a single norm over a huge
// array (outer = inner = 1) is still split among threads.
struct NormPanels {
  static constexpr int64_t kColumnWidth = 256;        // inner positions reduced side by side
  static constexpr int64_t kPanelElements = 1 << 16;  // ~256 KB of float32: stays in L2

  int64_t reduce, inner;
  int64_t width;          // inner positions of a full column (1 when inner == 1)
  int64_t column_blocks;  // columns per outer index
  int64_t columns;
  int64_t rows_per_chunk;
  int64_t chunks;  // per column

  NormPanels(int64_t outer, int64_t reduce_, int64_t inner_) : reduce(reduce_), inner(inner_) {
    width = std::clamp<int64_t>(inner, 1, kColumnWidth);  // callers skip empty arrays
    column_blocks = (inner + width - 1) / width;
    columns = outer * column_blocks;
    rows_per_chunk = std::max<int64_t>(1, kPanelElements / width);
    chunks = std::max<int64_t>(1, (reduce + rows_per_chunk - 1) / rows_per_chunk);
  }
  int64_t count() const { return columns * chunks; }
  // Offset of column c's first element in x, and how many inner positions it holds.
  int64_t column_offset(int64_t c) const {
    return (c / column_blocks) * reduce * inner + (c % column_blocks) * width;
  }
  // At most kColumnWidth, visibly to the compiler: it then unrolls the column loops fully,
  // which streams ~1.6x faster than a loop of unknown bound (measured, float32, 2-core EPYC).
  int64_t column_width(int64_t c) const {
    return std::min(kColumnWidth, std::min(width, inner - (c % column_blocks) * width));
  }
  int64_t chunk_first_row(int64_t k) const { return k * rows_per_chunk; }
  int64_t chunk_rows(int64_t k) const {
    return std::min(rows_per_chunk, reduce - k * rows_per_chunk);
  }
};

}  // namespace FU_ISA_NS
}  // namespace fusedupdates::cpu
