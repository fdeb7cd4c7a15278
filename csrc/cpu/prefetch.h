// Software prefetch for the streaming loops. On the 2-core Xeon the hardware prefetchers alone
// did not keep enough cache lines in flight for a single read-only stream (the sum of squares)
// or for the mixed 2- and 4-byte streams of 16-bit params with float32 state: both streamed at
// ~60-80% of the float32 update's GB/s, and a hint a fixed distance ahead brought them to the
// same GB/s (bench/results/cpu-2core-xeon-16bit-prefetch-2026-12-02.md).
#pragma once
#include <cstdint>

#ifndef FU_ISA_NS
#error "included only by the per-instruction-set kernels (FU_ISA_NS names their namespace)"
#endif

namespace fusedupdates::cpu {
inline namespace FU_ISA_NS {  // see storage.h

// A hint for the cache lines of [p, p + bytes), `distance` bytes further on. The address is
// computed as an integer so that looking past the end of an array is no invalid pointer
// arithmetic; a prefetch never faults. Always inlined: GCC treats a function that only
// prefetches as free of side effects and may delete calls to it (kernels.cpp).
[[gnu::always_inline]] inline void prefetch_ahead(const void* p, int64_t bytes,
                                                  uintptr_t distance) {
  const uintptr_t ahead = reinterpret_cast<uintptr_t>(p) + distance;
  for (int64_t b = 0; b < bytes; b += 64)
    __builtin_prefetch(reinterpret_cast<const void*>(ahead + static_cast<uintptr_t>(b)));
}

}  // namespace FU_ISA_NS
}  // namespace fusedupdates::cpu
