// Plain data shared by the CUDA kernels (nvcc) and the binding (host compiler): the device
// tables that describe one multi-tensor launch, the per-updater control block and the kernel
// argument structs. No CUDA header is included, so the binding builds with the host compiler
// alone and only the .cu files see the CUDA runtime.
#pragma once
#include <cstdint>

#include "../rules/common.h"

namespace fusedupdates::cuda {

using Stream = void*;  // a cudaStream_t (CuPy's stream.ptr)

// Every tensor is cut into chunks of this many elements, a chunk never spans two tensors, and
// blocks take whole chunks grid-stride: one launch covers any number of tensors, and every
// chunk start keeps the 16-byte alignment of its tensor.
constexpr int64_t kChunkElements = int64_t{1} << 15;
constexpr int kThreads = 256;  // every multi-tensor kernel; block_sum assumes it
// The deterministic reductions always run exactly this many blocks (whatever the GPU), so
// the partial sums, and their fixed-order total, depend only on the inputs.
constexpr int kNormPartials = 512;
// A norm buffer (float64): [result, multiplier, partials...].
constexpr int kNormBufferDoubles = 2 + kNormPartials;
constexpr int kPartialsOffset = 2;

// Per tensor, in the updater's parameter order.
struct TensorMeta {
  int64_t numel;
  int32_t dtype;          // DType of the param / list entry
  int32_t with_momentum;  // 1: velocity is state[rule states] (WithMomentum), 0: plain rule
};
struct TensorPtrs {
  void* param;
  void* state[kMaxStates];  // the rule's states, then the velocity
};
// Chunk c covers elements [index * kChunkElements, ...) of tensor `tensor`.
struct ChunkRef {
  int32_t tensor;
  int32_t index;
};

// The device-resident state of an updater. hyper.step counts the steps taken ON THE DEVICE:
// the update kernel uses step + 1 and its last block stores it back, so a replayed CUDA
// graph advances t by itself; the other fields are written only by set_control (hyperparameter
// changes), which is why a graph replay sees a new learning rate.
struct Control {
  HyperParams hyper;
  unsigned int blocks_done;  // last-block detection of the update launch; 0 between launches
  unsigned int unused;
};

struct UpdateArgs {
  const TensorMeta* meta;
  const TensorPtrs* ptrs;
  const void* const* grads;  // per tensor: kept apart so that new grads re-upload only these
  const ChunkRef* chunks;
  int64_t chunk_begin, chunk_end;  // the chunks of this launch (one storage dtype)
  Control* control;                // updater: hyperparameters and t from the device
  HyperParams hyper;               // functional API (control == nullptr): used as given
  const double* partials;          // clipping: the kNormPartials sums of squares, else null
  double* norm_out;                // clipping: [norm, multiplier], written by block 0
  double max_norm, clip_epsilon;
  int advance;     // this launch ends the step: its last block stores t
  int write_norm;  // this launch writes norm_out
};

struct ReduceArgs {
  const TensorMeta* meta;
  const void* const* ptrs;
  const ChunkRef* chunks;
  int64_t num_chunks;
  double* partials;  // kNormPartials outputs
};

struct ScaleArgs {
  const TensorMeta* meta;
  const void* const* inputs;
  void* const* outputs;
  const ChunkRef* chunks;
  int64_t num_chunks;
  double factor;           // used when partials is null
  const double* partials;  // total_norm_constraint: factor = norm_multiplier(sqrt(sum))
  double* norm_out;        // [norm, multiplier] when partials is set
  double max_norm, epsilon;
};

// Bandwidth probe: rw[k][i] += 1e-7 * (ro[0][i] + ...), the CPU backend's stream().
struct StreamArgs {
  void* rw[4];
  const void* ro[2];
  int64_t numel;
};

static_assert(sizeof(TensorMeta) == 16 && sizeof(TensorPtrs) == 8 * (1 + kMaxStates) &&
                  sizeof(ChunkRef) == 8,
              "device tables are uploaded as raw bytes: keep their layout fixed");
// The control block is uploaded as raw bytes too: HyperParams is all doubles, no padding.
static_assert(sizeof(HyperParams) % sizeof(double) == 0, "HyperParams must be all doubles");

}  // namespace fusedupdates::cuda
