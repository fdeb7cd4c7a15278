// The multi-tensor update with compact state (state_dtype="bfloat16" / "int8"): the same
// single fused pass as update_kernel.cuh (whose body, run_update, it reuses: step values,
// clipping, skipping, t on the device), with states decoded before update_element and encoded
// after it. Included only by the compact_<rule>.cu files, which instantiate it.
//
// * bfloat16 state: one element per thread, grid-stride inside the chunk; stored rounded to
//   nearest even by bfloat16_bits (csrc/rules/quantize.h), the CPU's recipe, NaN kept quiet.
// * int8 state (csrc/rules/quantize.h): one warp per kQuantBlock-element block, taken as
//   pieces of 128 elements (kPieceElements), 4 consecutive elements of each piece per lane (the
//   4 codes of a state moved as one 32-bit word when aligned, so that a warp reads a piece's
//   128 codes as one coalesced 128-byte line). The lanes
//   decode with the block's scale, run update_element, take the block's new absmax as a warp
//   max of finite_magnitude (on the float bits: non-negative floats order as their bits), and
//   encode with the same BlockScale / quantize_element functors as the CPU. A chunk
//   (kChunkElements) is a whole number of blocks, so a block never spans two chunks or two
//   blocks of threads; lanes past the end of a tensor's last block do nothing and add 0 to
//   its max.
//
// The CPU loop (csrc/cpu/compact_kernels.cpp) stores the same codes and scales for the same
// float32 values: the codec is the same functors; only the rule's float math may round
// differently (nvcc contracts to FMA).
#pragma once
#include <cstdint>

#include "../rules/quantize.h"
#include "update_kernel.cuh"

namespace fusedupdates::cuda {

static_assert(kChunkElements % kQuantBlock == 0, "an 8-bit block must never span two chunks");
constexpr int kLaneElements = 4;  // int8 state: elements per lane and piece, one 32-bit word
constexpr int kPieceElements = 32 * kLaneElements;         // one warp's elements of a piece
constexpr int kLanePieces = kQuantBlock / kPieceElements;  // pieces per block
static_assert(kQuantBlock == kLanePieces * kPieceElements, "one warp per 8-bit block");
constexpr int kWarps = kThreads / 32;

template <class Rule>
__device__ __forceinline__ bool signed_state(int k) {
  return ((Rule::kSignedStates >> k) & 1u) != 0;  // constant once the state loop is unrolled
}

// The param side of one element of a chunk: x is the master copy (kMaster) or the param,
// computed in float32; the new value goes back to both.
template <class S, bool kMaster>
struct ParamStreams {
  S* __restrict__ p;
  float* __restrict__ m;
  const S* __restrict__ g;
  __device__ __forceinline__ float x(int64_t i) const {
    if constexpr (kMaster) return m[i];
    return to_compute<S>(p[i]);
  }
  __device__ __forceinline__ float grad(int64_t i) const { return to_compute<S>(g[i]); }
  __device__ __forceinline__ void store(int64_t i, float y) const {
    if constexpr (kMaster) m[i] = y;
    p[i] = to_storage<S>(y);
  }
};

template <class S, bool kMaster>
__device__ __forceinline__ ParamStreams<S, kMaster> param_streams(const TensorPtrs& t,
                                                                  const S* grad, int64_t lo) {
  float* m = kMaster ? static_cast<float*>(t.master) + lo : nullptr;
  return ParamStreams<S, kMaster>{static_cast<S*>(t.param) + lo, m, grad + lo};
}

// Elements [lo, lo + n) of one tensor with bfloat16 state.
template <class S, class Rule, bool kMaster>
__device__ __forceinline__ void apply_chunk_bf16(const Rule& rule,
                                                 const ElementScalars<float>& scalars,
                                                 const TensorPtrs& t, const S* grad, int64_t lo,
                                                 int64_t n) {
  constexpr int K = Rule::kNumStates;
  const ParamStreams<S, kMaster> ps = param_streams<S, kMaster>(t, grad, lo);
  uint16_t* s[K > 0 ? K : 1];
#pragma unroll
  for (int k = 0; k < K; ++k) s[k] = static_cast<uint16_t*>(t.state[k]) + lo;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {
    StateVec<float, K> e;
#pragma unroll
    for (int k = 0; k < K; ++k) e[k] = bfloat16_value(s[k][i]);
    ps.store(i, update_element(rule, scalars, ps.x(i), ps.grad(i), e));
#pragma unroll
    for (int k = 0; k < K; ++k) s[k][i] = bfloat16_bits(e[k]);
  }
}

// The w (0..4) codes of one lane at `codes`, zero-filled past w.
__device__ __forceinline__ uint32_t load_codes(const uint8_t* codes, int w) {
  if (w == kLaneElements && reinterpret_cast<std::uintptr_t>(codes) % 4 == 0)
    return *reinterpret_cast<const uint32_t*>(codes);
  uint32_t word = 0;
  for (int j = 0; j < w; ++j) word |= static_cast<uint32_t>(codes[j]) << (8 * j);
  return word;
}
__device__ __forceinline__ void store_codes(uint8_t* codes, int w, uint32_t word) {
  if (w == kLaneElements && reinterpret_cast<std::uintptr_t>(codes) % 4 == 0) {
    *reinterpret_cast<uint32_t*>(codes) = word;
    return;
  }
  for (int j = 0; j < w; ++j) codes[j] = static_cast<uint8_t>(word >> (8 * j));
}

// One lane's values of one state to codes (w[h] of piece h, at codes + at[h]), with the
// block's new absmax (a warp max: every lane of the warp calls this); lane 0 stores the absmax
// as BlockScale keeps it.
template <class Code>
__device__ __forceinline__ void encode_lane(const float (&x)[kLanePieces][kLaneElements],
                                            const int (&w)[kLanePieces], uint8_t* codes,
                                            const int64_t (&at)[kLanePieces], float* scale) {
  float a = 0.0f;
#pragma unroll
  for (int h = 0; h < kLanePieces; ++h)
#pragma unroll
    for (int j = 0; j < kLaneElements; ++j)
      if (j < w[h]) a = fmaxf(a, finite_magnitude(x[h][j]));
  const float absmax = __uint_as_float(__reduce_max_sync(0xffffffffu, __float_as_uint(a)));
  const BlockScale<Code> s(absmax);
#pragma unroll
  for (int h = 0; h < kLanePieces; ++h) {
    uint32_t word = 0;
#pragma unroll
    for (int j = 0; j < kLaneElements; ++j)
      word |= static_cast<uint32_t>(quantize_element(x[h][j], s)) << (8 * j);
    store_codes(codes + at[h], w[h], word);
  }
  if ((threadIdx.x & 31) == 0) *scale = s.absmax;
}

template <class Code>
__device__ __forceinline__ void decode_lane(uint32_t word, float scale, float (&x)[kLaneElements]) {
  const float multiplier = BlockScale<Code>(scale).multiplier;
#pragma unroll
  for (int j = 0; j < kLaneElements; ++j)
    x[j] = Code::decode(static_cast<uint8_t>(word >> (8 * j)), multiplier);
}

// Elements [lo, lo + n) of one tensor with 8-bit state; lo is a multiple of kQuantBlock.
template <class S, class Rule, bool kMaster>
__device__ __forceinline__ void apply_chunk_int8(const Rule& rule,
                                                 const ElementScalars<float>& scalars,
                                                 const TensorPtrs& t, const S* grad, int64_t lo,
                                                 int64_t n) {
  constexpr int K = Rule::kNumStates;
  constexpr int KS = K > 0 ? K : 1;
  const ParamStreams<S, kMaster> ps = param_streams<S, kMaster>(t, grad, lo);
  uint8_t* c[KS];
  float* scales[KS];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    c[k] = static_cast<uint8_t*>(t.state[k]) + lo;
    scales[k] = t.scales[k] + lo / kQuantBlock;
  }
  const int lane = threadIdx.x & 31;
  const int64_t blocks = (n + kQuantBlock - 1) / kQuantBlock;  // the last may be partial
  // Warp-uniform loop: every lane of a warp takes the same blocks (the warp max needs them all).
  for (int64_t b = threadIdx.x / 32; b < blocks; b += kWarps) {
    int64_t at[kLanePieces];  // this lane's first element of each piece
    int w[kLanePieces];       // and how many of its kLaneElements are in the tensor
#pragma unroll
    for (int h = 0; h < kLanePieces; ++h) {
      at[h] = b * kQuantBlock + h * kPieceElements + lane * kLaneElements;
      w[h] = at[h] >= n                  ? 0
             : n - at[h] < kLaneElements ? static_cast<int>(n - at[h])
                                         : kLaneElements;
    }
    float v[KS][kLanePieces][kLaneElements];
#pragma unroll
    for (int k = 0; k < K; ++k)
#pragma unroll
      for (int h = 0; h < kLanePieces; ++h) {
        const uint32_t word = load_codes(c[k] + at[h], w[h]);
        if (signed_state<Rule>(k))
          decode_lane<SignedCode>(word, scales[k][b], v[k][h]);
        else
          decode_lane<UnsignedCode>(word, scales[k][b], v[k][h]);
      }
#pragma unroll
    for (int h = 0; h < kLanePieces; ++h)
#pragma unroll
      for (int j = 0; j < kLaneElements; ++j) {
        if (j >= w[h]) break;
        const int64_t i = at[h] + j;
        StateVec<float, K> e;
#pragma unroll
        for (int k = 0; k < K; ++k) e[k] = v[k][h][j];
        ps.store(i, update_element(rule, scalars, ps.x(i), ps.grad(i), e));
#pragma unroll
        for (int k = 0; k < K; ++k) v[k][h][j] = e[k];
      }
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (signed_state<Rule>(k))
        encode_lane<SignedCode>(v[k], w, c[k], at, scales[k] + b);
      else
        encode_lane<UnsignedCode>(v[k], w, c[k], at, scales[k] + b);
    }
  }
}

template <class S, class Rule, StateFormat F, bool kMaster>
__device__ __forceinline__ void apply_compact_chunk(const Rule& rule,
                                                    const ElementScalars<float>& scalars,
                                                    const TensorPtrs& t, const S* grad, int64_t lo,
                                                    int64_t n) {
  if constexpr (F == StateFormat::kInt8)
    apply_chunk_int8<S, Rule, kMaster>(rule, scalars, t, grad, lo, n);
  else
    apply_chunk_bf16<S, Rule, kMaster>(rule, scalars, t, grad, lo, n);
}

template <class S, class Rule, StateFormat F>
__global__ void __launch_bounds__(kThreads) compact_update_kernel(const UpdateArgs a) {
  static_assert(std::is_same_v<compute_t<S>, float>, "compact state is for 16/32-bit params");
  run_update<S, Rule>(a, [](const Rule& rule, const ElementScalars<float>& scalars,
                            const TensorPtrs& ptrs, const S* grad, int64_t lo, int64_t n) {
    if constexpr (sizeof(S) == 2) {  // only 16-bit params have master weights
      if (ptrs.master != nullptr) {
        apply_compact_chunk<S, Rule, F, true>(rule, scalars, ptrs, grad, lo, n);
        return;
      }
    }
    apply_compact_chunk<S, Rule, F, false>(rule, scalars, ptrs, grad, lo, n);
  });
}

template <class S, class Rule, StateFormat F>
void launch_compact_typed(const UpdateArgs& args, int device, Stream stream) {
  const auto kernel = compact_update_kernel<S, Rule, F>;
  const int grid =
      grid_for(args.chunk_end - args.chunk_begin, reinterpret_cast<const void*>(kernel), device);
  kernel<<<grid, kThreads, 0, as_cuda(stream)>>>(args);
  check_launch("compact update kernel");
}

// Instantiates rule template R with compact state for every 16/32-bit storage dtype, both
// compact formats, plain, with momentum and with Nesterov momentum.
#define FU_INSTANTIATE_COMPACT_FORMAT(S, R, F)                                                    \
  template void launch_compact_typed<S, R<float>, F>(const UpdateArgs&, int, Stream);             \
  template void launch_compact_typed<S, WithMomentum<R<float>, false>, F>(const UpdateArgs&, int, \
                                                                          Stream);                \
  template void launch_compact_typed<S, WithMomentum<R<float>, true>, F>(const UpdateArgs&, int,  \
                                                                         Stream);
#define FU_INSTANTIATE_COMPACT_STORAGE(S, R)                  \
  FU_INSTANTIATE_COMPACT_FORMAT(S, R, StateFormat::kBFloat16) \
  FU_INSTANTIATE_COMPACT_FORMAT(S, R, StateFormat::kInt8)
#define FU_INSTANTIATE_COMPACT(R)                  \
  FU_INSTANTIATE_COMPACT_STORAGE(__half, R)        \
  FU_INSTANTIATE_COMPACT_STORAGE(__nv_bfloat16, R) \
  FU_INSTANTIATE_COMPACT_STORAGE(float, R)

}  // namespace fusedupdates::cuda
