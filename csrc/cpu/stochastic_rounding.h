// Stochastic rounding of float32 tiles to a 16-bit format, with a counter-based generator: the
// random bits of an element are a hash of (step, tensor index, element index), so a result is
// reproducible and does not depend on the thread count or the tiling. The value is perturbed
// in place by adding uniform random bits below the 16-bit format's last place and truncating
// them; it is then exactly representable, and the ordinary narrow() stores it unchanged. The
// same bit arithmetic is in python/fusedupdates/reference_mixed.py (stochastic_round).
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../rules/quantize.h"

#ifndef FU_ISA_NS
#error "included only by the per-instruction-set kernels (FU_ISA_NS names their namespace)"
#endif

// Inside the instruction set's inline namespace: each ISA's object file compiles these inline
// functions with its own -march flags, and a shared name would let the linker keep one copy
// (say the AVX-512 one) for every ISA's out-of-line calls.
namespace fusedupdates::cpu {
inline namespace FU_ISA_NS {

// A well-mixing 32-bit integer hash (Wellons' lowbias32).
inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

// The generator key of one tensor in one step (step = t, 1-based, below 2^53). t is taken
// modulo 2^32 through uint64 (a double >= 2^32 converted to uint32 directly is undefined).
inline uint32_t rounding_key(double step, uint32_t tensor_index) {
  const auto t = static_cast<uint32_t>(static_cast<uint64_t>(step));
  return mix32(mix32(t) ^ (tensor_index * 0x9e3779b9u));
}

// The key of state j of one tensor in one step (bfloat16 state): a stream of its own, apart
// from the param's (rounding_key) and from the tensor's other states.
inline uint32_t state_rounding_key(double step, uint32_t tensor_index, int state_index) {
  return mix32(rounding_key(step, tensor_index) ^
               (static_cast<uint32_t>(state_index + 1) * 0x85ebca6bu));
}

// Where the random bits of a piece of a tensor start: its key and its first element's index.
struct StochasticRounding {
  uint32_t key;
  int64_t first;
};

// Adds uniform random bits below the last place of the 16-bit format to x[0, n) (elements
// first .. first + n - 1 of their tensor) and clears them. kIsBFloat16: drop 16 bits, always
// (bfloat16 has float32's exponent range). float16: drop 13 bits, more below its smallest
// normal 2^-14 (at most the 23 mantissa bits); below 2^-24 the result is 0 or 2^-24 with
// probability |x| / 2^-24.
template <bool kIsBFloat16>
void perturb_for_stochastic_rounding(float* __restrict x, int64_t n, StochasticRounding sr) {
  // The element counter in 32 bits (the hash takes it modulo 2^32 anyway): a 64-bit one made
  // GCC widen and narrow every vector of indices (7 of the loop's 25 AVX2 instructions).
  const uint32_t first = static_cast<uint32_t>(sr.first);
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, &x[i], sizeof u);
    const uint32_t r = mix32(sr.key ^ (first + static_cast<uint32_t>(i)));
    const uint32_t biased_exponent = (u >> 23) & 0xffu;
    uint32_t out = u;
    if (kIsBFloat16) {
      out = (u + (r & 0xffffu)) & 0xffff0000u;
    } else if (biased_exponent >= 103) {  // |x| >= 2^-24: the dropped bits are mantissa bits
      const uint32_t below_normal = biased_exponent < 113 ? 113 - biased_exponent : 0;
      const uint32_t mask = (1u << (13 + below_normal)) - 1u;
      out = (u + (r & mask)) & ~mask;
    } else {  // tinier: round to 0 or to the smallest float16 subnormal, 2^-24
      float magnitude;
      const uint32_t abs_bits = u & 0x7fffffffu;
      std::memcpy(&magnitude, &abs_bits, sizeof magnitude);
      const float uniform = static_cast<float>(r >> 8) * 0x1p-24f;  // [0, 1), 24 bits
      const uint32_t smallest = 0x33800000u;                        // 2^-24 as float32
      out = (u & 0x80000000u) | (uniform < magnitude * 0x1p24f ? smallest : 0u);
    }
    if (biased_exponent == 0xffu) out = u;  // Inf and NaN: unchanged (narrow() keeps NaN NaN)
    std::memcpy(&x[i], &out, sizeof out);
  }
}

// The random bits of a stochastically rounded state (state_rounding="stochastic", bfloat16
// values and 8-bit codes alike), in units of 128 elements of a tensor (a unit at element `at`,
// a multiple of 128; an 8-bit block is a whole number of units): 16 bits per element, so one
// hash serves two. Element i < 64 of unit u takes the low half of mix32(key ^ (64 u + i)),
// element i + 64 the high half (half the hashing of perturb_for_stochastic_rounding<true>, and
// two contiguous streams that GCC vectorises). The same bits are in
// reference_mixed.state_random_bits; the unit is not the block size, so that they stay the
// same whatever kQuantBlock is.
constexpr int64_t kRandomUnit = 128;
static_assert(kQuantBlock % kRandomUnit == 0, "an 8-bit block is a whole number of units");

// f(i, random16) for elements i in [lo, lo + n) of a full unit and the same elements of its
// second half (lo + n <= 64); the pipelined loop (compact_pipeline.h) takes a piece at a time.
template <class F>
[[gnu::always_inline]] inline void for_each_random16_pair(int64_t lo, int64_t n, uint32_t key,
                                                          int64_t at, F&& f) {
  constexpr int64_t kHalf = kRandomUnit / 2;
  const uint32_t base = static_cast<uint32_t>(at / 2);  // 64 hashes per unit
  for (int64_t i = lo; i < lo + n; ++i) {
    const uint32_t h = mix32(key ^ (base + static_cast<uint32_t>(i)));
    f(i, h & 0xffffu);
    f(i + kHalf, h >> 16);
  }
}

// f(i, random16) for the w <= kQuantBlock elements of one block at element `at`.
template <class F>
[[gnu::always_inline]] inline void for_each_random16(int64_t w, uint32_t key, int64_t at, F&& f) {
  constexpr int64_t kHalf = kRandomUnit / 2;
  int64_t u = 0;
  for (; u + kRandomUnit <= w; u += kRandomUnit)
    for_each_random16_pair(0, kHalf, key, at + u, [&](int64_t i, uint32_t r) { f(u + i, r); });
  const uint32_t base = static_cast<uint32_t>((at + u) / 2);
  for (int64_t i = 0; i < w - u; ++i) {  // the tensor's last, partial unit
    const uint32_t h = mix32(key ^ (base + static_cast<uint32_t>(i % kHalf)));
    f(u + i, i < kHalf ? h & 0xffffu : h >> 16);
  }
}

// float32 bits u with 16 random bits below bfloat16's last place added and cut off.
inline uint32_t perturbed_bfloat16_bits(uint32_t u, uint32_t random16) {
  const uint32_t out = (u + random16) & 0xffff0000u;
  return ((u >> 23) & 0xffu) == 0xffu ? u : out;  // Inf and NaN unchanged
}

// Element i of x, perturbed with random16 (bit patterns through memcpy, which GCC turns into
// plain vector loads and stores; a memcpy of the whole block became a slow `rep movsq`).
inline void perturb_bfloat16_element(float* __restrict x, int64_t i, uint32_t random16) {
  uint32_t u;
  std::memcpy(&u, &x[i], sizeof u);
  u = perturbed_bfloat16_bits(u, random16);
  std::memcpy(&x[i], &u, sizeof u);
}

// bfloat16 state: x[0, w), elements [at, at + w) of a tensor, perturbed with its random bits.
inline void perturb_bfloat16_block(float* __restrict x, int64_t w, uint32_t key, int64_t at) {
  for_each_random16(w, key, at, [&](int64_t i, uint32_t r) { perturb_bfloat16_element(x, i, r); });
}

// 8-bit state: the codes' rounding addends (stochastic_code_rounding) of one block, or of a
// piece of a full unit and its second half (as for_each_random16_pair).
inline void code_rounding_block(uint32_t* __restrict out, int64_t w, uint32_t key, int64_t at) {
  for_each_random16(w, key, at,
                    [&](int64_t i, uint32_t r) { out[i] = stochastic_code_rounding(r); });
}
[[gnu::always_inline]] inline void code_rounding_pair(uint32_t* __restrict out, int64_t lo,
                                                      int64_t n, uint32_t key, int64_t at) {
  for_each_random16_pair(lo, n, key, at,
                         [&](int64_t i, uint32_t r) { out[i] = stochastic_code_rounding(r); });
}

}  // namespace FU_ISA_NS
}  // namespace fusedupdates::cpu
