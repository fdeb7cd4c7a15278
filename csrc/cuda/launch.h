// Host entry points of the CUDA backend, defined in the .cu files and called by the binding.
// Every function launches asynchronously on `stream` (no host synchronisation) unless its
// comment says otherwise, and throws std::runtime_error when the CUDA runtime reports an error.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../common/dtype.h"
#include "layout.h"

namespace fusedupdates::cuda {

// --- the update -------------------------------------------------------------------------------
// One launch over args.chunk_begin..chunk_end, all of storage dtype `dtype`: the rule, and the
// momentum modifier for tensors whose meta says so.
void launch_update(RuleId rule, DType dtype, bool nesterov, const UpdateArgs& args, int device,
                   Stream stream);

// --- reductions and scaling ----------------------------------------------------------------------
// kNormPartials blocks: partials[b] = sum of squares of the chunks b, b + kNormPartials, ...
// (float64 accumulation, fixed order: deterministic for given inputs).
void launch_sum_squares(const ReduceArgs& args, Stream stream);
// One block: *out = sum of partials[0..kNormPartials) in a fixed order.
void launch_sum_partials(const double* partials, double* out, Stream stream);
// outputs = inputs * factor (all of `dtype`), or * norm_multiplier(sqrt(sum partials)).
void launch_scale(DType dtype, const ScaleArgs& args, int device, Stream stream);
// x viewed as [outer, reduce, inner]: per (outer, inner) column, out = x * min(n, max)/(eps + n).
void launch_norm_constraint(DType dtype, const void* x, void* out, int64_t outer, int64_t reduce,
                            int64_t inner, double max_norm, double epsilon, Stream stream);

// --- benchmarks
// ------------------------------------------------------------------------------------
void launch_stream(DType dtype, const StreamArgs& args, int n_rw, int n_ro, int device,
                   Stream stream);
void launch_copy(void* dst, const void* src, std::size_t bytes, Stream stream);

// --- small writes and the runtime
// ------------------------------------------------------------------ Copies `bytes` (a multiple of
// 4) host bytes to device memory `dst` through kernel parameters: unlike cudaMemcpyAsync from
// pageable memory this never waits for the stream, and a copy made while the stream is being
// captured is safe to replay.
void upload_bytes(void* dst, const void* src, std::size_t bytes, Stream stream);
// Writes the hyperparameters of `h` into the control block; t as well when write_step (then
// control->hyper.step = h.step, the count of steps taken), and zeroes the block counter if reset.
void launch_set_control(Control* control, const HyperParams& h, bool write_step, bool reset,
                        Stream stream);

bool stream_is_capturing(Stream stream);
// A non-blocking stream of `device` owned by the backend: one-time setup work (tables, the
// control block) goes there while the caller's stream is capturing, so that it is not recorded
// into the graph. Never destroyed.
Stream setup_stream(int device);
void synchronize_stream(Stream stream);  // setup stream only (host sync: setup, never a step)
void set_device(int device);
int current_device();
int pointer_device(std::uintptr_t ptr);  // device owning a device pointer, or -1

}  // namespace fusedupdates::cuda
