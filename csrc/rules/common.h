// Shared vocabulary of the rule functors: the host/device qualifier, the per-step
// hyperparameters and the small fixed-size state vector a rule updates in place.
#pragma once

// Always inlined on the host too, as nvcc's __forceinline__ does: the CPU kernels compile these
// headers once per instruction set (-march=x86-64-v4, ...), and an out-of-line copy would be a
// weak symbol of the same name in every such object file, one of which the linker keeps for
// all of them (an AVX-512 copy called from the baseline kernels would fault on an older CPU).
#if defined(__CUDACC__)
#define FU_HD __host__ __device__ __forceinline__
#else
#define FU_HD [[gnu::always_inline]] inline
#endif

#if defined(__CUDACC__)
#include <cuda/std/cmath>
#define FU_MATH ::cuda::std
#else
#include <cmath>
#define FU_MATH ::std
#endif

namespace fusedupdates {

// The hyperparameters a user sets, by name: the ONE definition of their fields. The struct
// below, the binding's set_hyperparameters(**kwargs) and the checks all expand this list.
// X(field, meaning)
#define FU_HYPER_FIELDS(X)                                        \
  X(learning_rate, "step size")                                   \
  X(beta1, "beta1 of the adam family, rho of rmsprop / adadelta") \
  X(beta2, "beta2 of the adam family")                            \
  X(epsilon, "stability constant")                                \
  X(momentum, "mu of the momentum modifier")                      \
  X(weight_decay, "L2 weight decay: g <- g + weight_decay * p")   \
  X(decoupled_weight_decay, "decoupled (AdamW): p <- p (1 - lr wd)")

// Everything a rule may need for one step, as doubles. The user's fields are set through
// set_hyperparameters; step and grad_scale are filled by the backend for each step (on the GPU
// from device memory, so that CUDA graph replays see new values).
struct HyperParams {
#define FU_DECLARE_FIELD(name, doc) double name = 0.0;
  FU_HYPER_FIELDS(FU_DECLARE_FIELD)
#undef FU_DECLARE_FIELD
  double step = 1.0;        // t, 1-based: the counter is incremented before use
  double grad_scale = 1.0;  // total-norm multiplier applied to every gradient
};

// Rule ids shared with Python (fusedupdates/_rules.py) and both backends.
enum class RuleId : int {
  kSgd = 0,
  kAdagrad = 1,
  kRmsprop = 2,
  kAdadelta = 3,
  kAdam = 4,
  kAdamax = 5,
  kAmsgrad = 6,
};
constexpr int kNumRules = 7;
constexpr int kMaxStates = 4;  // amsgrad (3) + velocity

// Every rule also says which of its states may be negative, as a bit mask
// (kSignedStates, bit k for state k): compact 8-bit state (quantize.h) stores those with a
// signed code and the never-negative ones (second moments, accumulators) with an unsigned
// code that spends the sign bit on range. fusedupdates/_rules.py repeats it (tested).

// Per-element state of a rule. Always at least one slot so that stateless rules
// (sgd) still have a valid array type; the unused slot is never read or written.
template <typename T, int K>
struct StateVec {
  T v[K > 0 ? K : 1];
  FU_HD T& operator[](int i) { return v[i]; }
  FU_HD const T& operator[](int i) const { return v[i]; }
};

}  // namespace fusedupdates
