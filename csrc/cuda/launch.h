// Host entry points of the CUDA backend, defined in the .cu files and called by the host code
// (tables.cpp, step_engine.cpp, the binding). No CUDA header is needed to call them. Every
// function launches asynchronously on `stream` (no host synchronisation) unless its comment
// says otherwise, and throws std::runtime_error when the CUDA runtime reports an error.
// tests/native/fake_runtime.cpp implements the runtime part on the host for the native tests.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../common/dtype.h"
#include "layout.h"

namespace fusedupdates::cuda {

// --- the runtime ------------------------------------------------------------------------------
// Checks once that the driver supports the CUDA runtime this module was built with (CUDA 13
// needs an R580+ driver) and throws a RuntimeError naming both versions otherwise. Called
// before the first CUDA call of every entry point; nothing calls CUDA before a launch is needed,
// so a stepper can be built and validated on a machine without a driver.
void ensure_runtime();
int runtime_version();  // CUDART_VERSION of the build, e.g. 13000
int driver_version();   // cudaDriverGetVersion (0 without a driver); no check

// Makes `device` current for its lifetime and restores the previous device afterwards, so a
// call never changes the caller's (CuPy's) current device.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_;
  bool switched_;
};

// Lets this thread make "potentially unsafe" calls (cudaMalloc, event synchronisation) while a
// stream it captures with cudaStreamCaptureModeGlobal is open; setup work never goes to the
// capturing stream itself. Restores the previous mode.
class RelaxedCaptureMode {
 public:
  RelaxedCaptureMode();
  ~RelaxedCaptureMode();
  RelaxedCaptureMode(const RelaxedCaptureMode&) = delete;
  RelaxedCaptureMode& operator=(const RelaxedCaptureMode&) = delete;

 private:
  int previous_;
};

bool stream_is_capturing(Stream stream);
// A non-blocking stream of `device` owned by the backend: tables and control blocks are
// allocated and uploaded there. Never destroyed.
Stream setup_stream(int device);
void stream_synchronize(Stream stream);  // host sync: reading t, never a step
int current_device();
int pointer_device(std::uintptr_t ptr);  // device owning a device pointer, or -1

Event event_create();  // timing disabled; never destroyed by the backend (pooled by owners)
void event_record(Event event, Stream stream);
bool event_done(Event event);         // cudaEventQuery: true once everything recorded finished
void event_synchronize(Event event);  // host sync: setup work during a capture only
void stream_wait_event(Stream stream, Event event);

// Copies `bytes` (a multiple of 4) host bytes to device memory `dst` through kernel parameters:
// unlike cudaMemcpyAsync from pageable memory this never waits for the stream, and a copy
// queued while the stream is being captured is safe to replay.
void upload_bytes(void* dst, const void* src, std::size_t bytes, Stream stream);
// Device-to-host copy ordered after the work queued on `stream`; waits for it (host sync).
void copy_to_host(void* dst, const void* src, std::size_t bytes, Stream stream);

// --- the update -------------------------------------------------------------------------------
// One launch over args.chunk_begin..chunk_end, all of storage dtype `dtype` and all with the
// same modifier: a separate instantiation per modifier keeps the plain rule's register count
// low (no momentum path compiled into it).
void launch_update(RuleId rule, DType dtype, Modifier modifier, const UpdateArgs& args, int device,
                   Stream stream);

// --- reductions and scaling ---------------------------------------------------------------------
// kNormPartials blocks over chunks [chunk_begin, chunk_end) of storage dtype `dtype`:
// partials[b] (+)= sum of squares of chunks begin + b, begin + b + kNormPartials, ... (float64,
// fixed order: deterministic for given inputs).
void launch_sum_squares(DType dtype, const ReduceArgs& args, Stream stream);
// One block: *out = sum of partials[0..kNormPartials) in a fixed order.
void launch_sum_partials(const double* partials, double* out, Stream stream);
// outputs = inputs * norm_multiplier(sqrt(sum partials)), all of `dtype`.
void launch_scale(DType dtype, const ScaleArgs& args, int device, Stream stream);
// x viewed as [outer, reduce, inner]: per (outer, inner) column, out = x * min(n, max)/(eps + n).
void launch_norm_constraint(DType dtype, const void* x, void* out, int64_t outer, int64_t reduce,
                            int64_t inner, double max_norm, double epsilon, Stream stream);

// --- benchmark probes (probe_kernels.cu): not used by any update ---------------------------------
void launch_bandwidth_probe(DType dtype, const BandwidthProbeArgs& args, int n_rw, int n_ro,
                            int device, Stream stream);
void launch_copy_probe(void* dst, const void* src, std::size_t bytes, Stream stream);

}  // namespace fusedupdates::cuda
