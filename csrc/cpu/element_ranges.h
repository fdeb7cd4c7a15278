// Splitting the elements of many tensors among threads by ELEMENT count (not by tensor), so a
// step over one 16M tensor and a step over 200 small ones are both balanced, and each thread
// streams one contiguous stretch of memory.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace fusedupdates::cpu {

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

}  // namespace fusedupdates::cpu
