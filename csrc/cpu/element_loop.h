// The inner loop of every CPU update: one contiguous piece of one tensor, the rule applied
// element by element in the compute type. kernels.cpp (full-precision state) and
// compact_kernels.cpp (bfloat16 / 8-bit state, through float tiles) both run it.
#pragma once
#include <cstdint>

#include "../common/dtype_dispatch.h"
#include "../rules/rules.h"

#ifndef FU_ISA_NS
#error "included only by the per-instruction-set kernels (FU_ISA_NS names their namespace)"
#endif

namespace fusedupdates::cpu {
inline namespace FU_ISA_NS {  // see storage.h

// The inner loop over one contiguous piece. Separate __restrict pointers per stream (not an
// array of pointers) let the compiler prove the streams independent and vectorise. Always
// inlined, so that a std::integral_constant width (one vector's lanes, say) gives a loop of
// fixed trip count in its caller; apply_piece is the same loop as a function of its own.
template <class S, class Rule, class Width>
[[gnu::always_inline]] inline void apply_elements(
    const Rule& rule, const ElementScalars<compute_t<S>>& k, S* __restrict p, const S* __restrict g,
    compute_t<S>* __restrict s0, compute_t<S>* __restrict s1, compute_t<S>* __restrict s2,
    compute_t<S>* __restrict s3, Width n) {
  using T = compute_t<S>;
  constexpr int K = Rule::kNumStates;
  // No `#pragma GCC ivdep`: the __restrict pointers already let GCC vectorise without alias
  // checks (kernels.cpp's code was byte for byte the same without it), and with a fixed width
  // the loop is unrolled before the annotation applies (GCC warned "ignoring loop annotation"
  // once per instantiation). Not split into a per-element function either: the restrict
  // pointers of an inlined call only disambiguate within that call, and the unrolled int8
  // loop ran ~12% slower in cache.
  for (int64_t i = 0; i < n; ++i) {
    StateVec<T, K> s;
    if constexpr (K > 0) s[0] = s0[i];
    if constexpr (K > 1) s[1] = s1[i];
    if constexpr (K > 2) s[2] = s2[i];
    if constexpr (K > 3) s[3] = s3[i];
    p[i] = static_cast<S>(update_element(rule, k, static_cast<T>(p[i]), static_cast<T>(g[i]), s));
    if constexpr (K > 0) s0[i] = s[0];
    if constexpr (K > 1) s1[i] = s[1];
    if constexpr (K > 2) s2[i] = s[2];
    if constexpr (K > 3) s3[i] = s[3];
  }
}

template <class S, class Rule>
void apply_piece(const Rule& rule, const ElementScalars<compute_t<S>>& k, S* __restrict p,
                 const S* __restrict g, compute_t<S>* __restrict s0, compute_t<S>* __restrict s1,
                 compute_t<S>* __restrict s2, compute_t<S>* __restrict s3, int64_t n) {
  apply_elements<S>(rule, k, p, g, s0, s1, s2, s3, n);
}

}  // namespace FU_ISA_NS
}  // namespace fusedupdates::cpu
