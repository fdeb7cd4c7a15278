// What the CPU backend is asked to do in one call: plain pointers and sizes, already
// validated by the binding. No Python, no math.
#pragma once
#include <cstdint>
#include <vector>

#include "../common/dtype.h"
#include "../rules/common.h"

namespace fusedupdates::cpu {

struct TensorSlot {
  void* param;
  const void* grad;
  void* state[kMaxStates];  // the rule's states, then the velocity when with_momentum
  // 16-bit params with master weights: their float32 copy, which the rule updates in place of
  // the param (the param is then only written, rounded); nullptr otherwise.
  void* master;
  float* scales[kMaxStates];  // kInt8 format: each state's block absmax values
  int64_t numel;
  bool with_momentum;
  uint32_t index;  // the param's index: with the step, it keys stochastic rounding
};

struct StepPlan {
  RuleId rule;
  DType dtype;  // storage dtype of params and grads
  bool nesterov;
  bool stochastic_rounding;  // 16-bit params: round stochastically instead of to nearest even
  StateFormat state_format;  // of every tensor of the plan (float16/32 and bfloat16 params)
  HyperParams hyper;         // grad_scale is filled by the backend when clipping
  std::vector<TensorSlot> tensors;
  // kBFloat16 state: round the new state stochastically instead of to nearest even (keyed by
  // the step, the param's index and the state's index)
  bool stochastic_state_rounding = false;
};

// A read-only or written list of equally typed arrays (norm reductions and scaling).
struct ArrayList {
  DType dtype;
  std::vector<const void*> inputs;
  std::vector<void*> outputs;  // may equal inputs (in place)
  std::vector<int64_t> numel;
};

// The random stream of one stochastically rounded state (state_rounding="stochastic"): the
// step t, the param's index in its updater and the state's index in its slot.
struct StateRoundingStream {
  double step;
  uint32_t tensor_index;
  int state_index;
};

// The per-ISA kernel table; one instance is compiled for each instruction set.
struct KernelTable {
  const char* isa;
  void (*apply_step)(const StepPlan&, int num_threads);
  // Sum of squares of every element of every grad of the plan (deterministic order).
  double (*plan_sum_squares)(const StepPlan&, int num_threads);
  // Whether every grad of the plan is finite (no NaN, no Inf): the check of a step that skips
  // non-finite grads but does not clip.
  bool (*plan_all_finite)(const StepPlan&, int num_threads);
  double (*list_sum_squares)(const ArrayList&, int num_threads);
  void (*list_scale)(const ArrayList&, double factor, int num_threads);
  // x viewed as [outer, reduce, inner]: norms over the middle axis, then x*min(n,max)/(eps+n).
  void (*norm_constraint)(DType dtype, const void* x, void* out, int64_t outer, int64_t reduce,
                          int64_t inner, double max_norm, double epsilon, int num_threads);
  // Bandwidth ceiling for benchmarks: rw[k][i] += c * (ro[0][i] + ...), the same streams
  // (n_rw read and written, n_ro only read) as an update rule but no math to speak of.
  void (*stream)(DType dtype, void* const* rw, int n_rw, const void* const* ro, int n_ro,
                 int64_t numel, int num_threads);
  // The 8-bit blockwise code on its own (checkpoint conversion, tests): x (float32, n) to
  // codes and one absmax per block, and back; rounded to nearest, or (stochastic not null)
  // as the step rounds that state's codes.
  void (*quantize)(const float* x, uint8_t* codes, float* absmax, int64_t n, bool is_signed,
                   int num_threads, const StateRoundingStream* stochastic);
  void (*dequantize)(const uint8_t* codes, const float* absmax, float* x, int64_t n, bool is_signed,
                     int num_threads);
};

}  // namespace fusedupdates::cpu
