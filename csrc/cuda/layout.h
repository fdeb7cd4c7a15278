// Plain data shared by the CUDA kernels (nvcc) and the host code (host compiler): the device
// tables that describe one multi-tensor launch, the control block of a captured updater and the
// kernel argument structs. No CUDA header is included, so host code builds with the host
// compiler alone and only the .cu files see the CUDA runtime.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../common/dtype.h"  // StateFormat: a launch covers tensors of one state storage
#include "../rules/common.h"

namespace fusedupdates::cuda {

using Stream = void*;  // a cudaStream_t (CuPy's stream.ptr)
using Event = void*;   // a cudaEvent_t

// Every tensor is cut into chunks of this many elements, a chunk never spans two tensors, and
// blocks take whole chunks grid-stride: one launch covers any number of tensors, and every
// chunk start keeps the 16-byte alignment of its tensor.
constexpr int64_t kChunkElements = int64_t{1} << 15;
constexpr int kThreads = 256;  // every multi-tensor kernel; block_sum assumes it
// The deterministic reductions always run exactly this many blocks (whatever the GPU), so
// the partial sums, and their fixed-order total, depend only on the inputs.
constexpr int kNormPartials = 512;
// A norm buffer (float64): [result, multiplier, flags, partials...]. The first byte of `flags`
// is the applied flag of a step with skip_nonfinite (1 applied, 0 skipped), which the step
// returns as a 0-d bool array.
constexpr int kNormBufferDoubles = 3 + kNormPartials;
constexpr int kFlagsOffset = 2;
constexpr int kPartialsOffset = 3;

// Per tensor, in the stepper's parameter order.
struct TensorMeta {
  int64_t numel;
  int32_t dtype;          // DType of the param / list entry
  int32_t with_momentum;  // 1: velocity is state[rule states]; launched by the momentum kernel
};
struct TensorPtrs {
  void* param;
  void* state[kMaxStates];  // the rule's states, then the velocity
  void* master;             // 16-bit params with master weights: their float32 copy, else null
  // 8-bit (uint8) states: the float32 absmax of each kQuantBlock-element block (quantize.h)
  // of state[k]; null for every other storage.
  float* scales[kMaxStates];
};
// Chunk c covers elements [index * kChunkElements, ...) of tensor `tensor`.
struct ChunkRef {
  int32_t tensor;
  int32_t index;
};

// The device copy of a stepper core's t and rule hyperparameters, created when one of its
// steps is first captured into a CUDA graph (eager steps pass them as kernel arguments): one
// Control per parameter group, contiguous. Entry g holds group g's rule fields; entry 0 also
// holds t (hyper.step) and the last-block counter for the whole core. A kernel reading it uses
// t = control[0].hyper.step + 1 and its last block stores that t back, so every replay
// advances t; the host writes a group's rule fields when they are set (never momentum: each
// momentum stepper keeps its own, per group, in a separate slot, and never t unless t is set).
struct Control {
  HyperParams hyper;         // the rule's fields; hyper.step = updates applied
  unsigned int blocks_done;  // last-block detection of the update launch; 0 between launches
  unsigned int unused;
};
// The rule fields are the user fields before `step`: written as one block of bytes.
constexpr std::size_t kControlFieldBytes = offsetof(HyperParams, step);

enum class Modifier : int { kNone = 0, kMomentum = 1, kNesterov = 2 };

struct UpdateArgs {
  const TensorMeta* meta;
  const TensorPtrs* ptrs;
  const void* const* grads;  // per tensor: kept apart so that new grads re-upload only these
  const ChunkRef* chunks;
  int64_t chunk_begin, chunk_end;  // the chunks of this launch (one dtype, one modifier)
  Control* control;                // t from the device (entry 0), or null: use `hyper`
  const Control* group_control;    // with control: the entry of this launch's group
  const double* momentum;          // this group's momentum from the device, or null: hyper's
  HyperParams hyper;               // eager and functional steps: every value, step = t + 1
  const double* partials;          // clip or skip_nonfinite: the kNormPartials sums of squares
  double* norm_out;                // clipping: [norm, multiplier], written by block 0
  double max_norm, clip_epsilon;
  int clip;  // scale the grads by the total-norm multiplier
  // Loss scaling: every grad is multiplied by 1 / scale inside the kernel, the scale being
  // `inverse_scale`'s reciprocal or, when scale_device is set, a float32 (or float64 when
  // scale_is_double) on the device (a LossScaler's), read by the kernel: no host sync.
  double inverse_scale;
  const void* scale_device;
  int scale_is_double;
  int skip_nonfinite;          // a non-finite sum of squares skips the whole step (t too)
  unsigned char* applied_out;  // skip_nonfinite: the applied flag, written by block 0
  int advance;     // this launch ends the step: its last block stores t (with a control block)
  int write_norm;  // this launch writes norm_out
  StateFormat state_format;  // of every tensor of this launch (picks the kernel)
};

struct ReduceArgs {
  const TensorMeta* meta;
  const void* const* ptrs;
  const ChunkRef* chunks;
  int64_t chunk_begin, chunk_end;  // one storage dtype
  double* partials;                // kNormPartials outputs
  int accumulate;                  // add to the partials of an earlier launch (mixed dtypes)
};

struct ScaleArgs {
  const TensorMeta* meta;
  const void* const* inputs;
  void* const* outputs;
  const ChunkRef* chunks;
  int64_t num_chunks;
  const double* partials;  // factor = norm_multiplier(sqrt(sum of partials))
  double* norm_out;        // [norm, multiplier]
  double max_norm, epsilon;
};

// Bandwidth probe: rw[k][i] += 1e-7 * (ro[0][i] + ...), the CPU backend's probe.
struct BandwidthProbeArgs {
  void* rw[4];
  const void* ro[2];
  int64_t numel;
};

static_assert(sizeof(TensorMeta) == 16 && sizeof(TensorPtrs) == 8 * (2 + 2 * kMaxStates) &&
                  sizeof(ChunkRef) == 8,
              "device tables are uploaded as raw bytes: keep their layout fixed");
// The control block is uploaded as raw bytes too: HyperParams is all doubles, no padding.
static_assert(sizeof(HyperParams) % sizeof(double) == 0, "HyperParams must be all doubles");
static_assert(kControlFieldBytes % 4 == 0 && sizeof(Control) % 4 == 0, "uploaded in words");

}  // namespace fusedupdates::cuda
