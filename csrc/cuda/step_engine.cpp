#include "step_engine.h"

#include <cstring>
#include <stdexcept>
#include <utility>

#include "../rules/norm.h"
#include "launch.h"

namespace fusedupdates::cuda {
namespace {

// A graph captured from a stepper may replay after the stepper is gone: its control block and
// momentum slot are handed here instead of being freed (a few bytes per captured updater).
void keep_forever(DeviceMemory&& memory) {
  if (memory.ptr != 0) new DeviceMemory(std::move(memory));  // deliberately leaked
}

bool same_rule_fields(const HyperParams& a, const HyperParams& b) {
  return std::memcmp(&a, &b, kControlFieldBytes) == 0;
}

}  // namespace

StepCore::~StepCore() { keep_forever(std::move(control)); }

StepEngine::StepEngine(std::shared_ptr<StepCore> core, RuleId rule, Modifier modifier,
                       const std::vector<TensorDesc>& tensors)
    : core_(std::move(core)),
      rule_(rule),
      modifier_(modifier),
      num_tensors_(tensors.size()),
      layout_(build_step_layout(tensors)),
      momentum_(core_->hyper.size(), 0.0) {
  if (layout_.num_groups > core_->hyper.size())
    throw std::invalid_argument("a tensor's parameter group is out of range");
  grad_bytes_.resize(num_tensors_ * sizeof(void*));
}

StepEngine::~StepEngine() { keep_forever(std::move(momentum_slot_)); }

void StepEngine::build_grad_bytes(const void* const* grads) {
  if (num_tensors_ > 0) std::memcpy(grad_bytes_.data(), grads, num_tensors_ * sizeof(void*));
}

void StepEngine::prepare(const void* const* grads) {
  const std::lock_guard<std::mutex> lock(core_->mutex);
  build_grad_bytes(grads);
  if (num_tensors_ == 0 || core_->device < 0) return;
  if (grads_table_ && grads_table_->bytes() == grad_bytes_) return;
  (void)TableCache::for_device(core_->device).find(grad_bytes_);
}

// First captured step of the core: its t and rule fields move to the device. The upload runs
// on the setup stream and is waited for here, so the graph does not contain it (a replay must
// not reset t) and the captured kernels find the block initialised.
void StepEngine::create_control() {
  StepCore& core = *core_;
  std::vector<Control> init(core.hyper.size());
  for (size_t g = 0; g < init.size(); ++g) {
    init[g].hyper = core.hyper[g];
    init[g].hyper.momentum = 0.0;                      // unused: momentum comes from the stepper
    init[g].hyper.step = static_cast<double>(core.t);  // read from entry 0 only
    init[g].hyper.grad_scale = 1.0;
    init[g].blocks_done = 0;
  }
  const std::size_t bytes = init.size() * sizeof(Control);
  DeviceMemory memory = allocate_setup_memory(bytes, core.device);
  const Stream setup = setup_stream(core.device);
  const RelaxedCaptureMode relaxed;
  upload_bytes(reinterpret_cast<void*>(memory.ptr), init.data(), bytes, setup);
  stream_synchronize(setup);
  core.control = std::move(memory);
}

void StepEngine::create_momentum_slot() {
  const int device = core_->device;
  const std::size_t bytes = momentum_.size() * sizeof(double);
  DeviceMemory memory = allocate_setup_memory(bytes, device);
  const Stream setup = setup_stream(device);
  const RelaxedCaptureMode relaxed;
  upload_bytes(reinterpret_cast<void*>(memory.ptr), momentum_.data(), bytes, setup);
  stream_synchronize(setup);
  momentum_slot_ = std::move(memory);
}

void StepEngine::set_home(const StreamRef& stream) {
  StepCore& core = *core_;
  if (!core.has_home || core.home.stream != stream.stream) core.home = stream;
  core.has_home = true;
}

bool StepEngine::step(const StepRequest& r) {
  ensure_runtime();
  const std::lock_guard<std::mutex> lock(core_->mutex);
  StepCore& core = *core_;
  if (core.device < 0) core.device = current_device();  // no arrays: the current device
  const DeviceGuard guard(core.device);
  const Stream stream = r.stream.stream;
  const bool capturing = stream_is_capturing(stream);
  TableCache& cache = TableCache::for_device(core.device);

  if (num_tensors_ > 0) {
    build_grad_bytes(r.grads);
    if (fixed_)
      cache.use(*fixed_, stream, capturing);
    else
      fixed_ = cache.get(layout_.fixed, stream, capturing);
    if (grads_table_ && grads_table_->bytes() == grad_bytes_)
      cache.use(*grads_table_, stream, capturing);
    else
      grads_table_ = cache.get(grad_bytes_, stream, capturing);
  }
  // The previous step of this core ran on another stream: this one comes after everything
  // queued there so far (the step, and any replays of it launched there since), since both
  // read and write the params, the states and the control block.
  if (!capturing && core.has_home && core.home.stream != stream) {
    Fence* previous = core.home_fence;
    if (!stream_is_capturing(core.home.stream)) previous = cache.record_fence(core.home.stream);
    if (previous != nullptr) stream_wait_event(stream, previous->event);
  }
  if (r.skip_nonfinite && !core.functional && core.control.ptr == 0) create_control();
  if (capturing && !core.functional) {
    if (core.control.ptr == 0) create_control();
    if (modifier_ != Modifier::kNone && momentum_slot_.ptr == 0) create_momentum_slot();
  }

  UpdateArgs args{};
  if (num_tensors_ > 0) {
    const std::uintptr_t fixed = fixed_->ptr();
    args.meta = reinterpret_cast<const TensorMeta*>(fixed);
    args.ptrs = reinterpret_cast<const TensorPtrs*>(fixed + layout_.ptrs_offset);
    args.chunks = reinterpret_cast<const ChunkRef*>(fixed + layout_.chunks_offset);
    args.grads = reinterpret_cast<const void* const*>(grads_table_->ptr());
  }
  auto* const control = reinterpret_cast<Control*>(core.control.ptr);
  const auto* const momentum_slot = reinterpret_cast<const double*>(momentum_slot_.ptr);
  args.control = control;
  // Eager and functional steps: every value as a kernel argument (set per group below).
  const auto use_group = [&](uint32_t g) {
    args.hyper = core.hyper[g];
    args.hyper.momentum = momentum_[g];
    args.hyper.step = static_cast<double>(core.t + 1);
    args.hyper.grad_scale = 1.0;
    args.group_control = control != nullptr ? control + g : nullptr;
    args.momentum = momentum_slot != nullptr ? momentum_slot + g : nullptr;
  };
  use_group(0);
  args.clip = r.clip ? 1 : 0;
  args.inverse_scale = r.inverse_scale;
  args.scale_device = r.scale_device;
  args.scale_is_double = r.scale_is_double ? 1 : 0;
  args.skip_nonfinite = r.skip_nonfinite ? 1 : 0;
  if (r.clip || r.skip_nonfinite) {
    // The fixed-block partial sums of squares of every grad, one launch per storage dtype.
    double* partials = r.norm_buffer + kPartialsOffset;
    ReduceArgs reduce{args.meta, args.grads, args.chunks, 0, 0, partials, 0};
    if (layout_.reductions.empty()) launch_sum_squares(DType::kFloat32, reduce, stream);
    for (const StepLayout::Reduction& red : layout_.reductions) {
      reduce.chunk_begin = red.begin;
      reduce.chunk_end = red.end;
      launch_sum_squares(red.dtype, reduce, stream);
      reduce.accumulate = 1;
    }
    args.partials = partials;
    args.norm_out = r.norm_buffer;
    args.max_norm = r.max_norm;
    args.clip_epsilon = kClipEpsilon;
    if (r.skip_nonfinite)
      args.applied_out = reinterpret_cast<unsigned char*>(r.norm_buffer + kFlagsOffset);
  }
  // One update launch per (storage dtype, group, modifier) present; with no chunks, one empty
  // launch still advances the device t and writes the norm.
  std::vector<StepLayout::Launch> launches = layout_.launches;
  if (launches.empty() && (args.control != nullptr || r.clip || r.skip_nonfinite))
    launches.push_back(StepLayout::Launch{DType::kFloat32, false, 0, 0});
  for (size_t k = 0; k < launches.size(); ++k) {
    args.chunk_begin = launches[k].begin;
    args.chunk_end = launches[k].end;
    args.advance = k + 1 == launches.size() ? 1 : 0;
    args.write_norm = k == 0 ? 1 : 0;
    use_group(launches[k].group);
    args.state_format = launches[k].format;
    const Modifier modifier = launches[k].with_momentum ? modifier_ : Modifier::kNone;
    launch_update(rule_, launches[k].dtype, modifier, args, core.device, stream);
  }
  if (!capturing) core.home_fence = cache.mark_used({fixed_.get(), grads_table_.get()}, stream);
  set_home(r.stream);
  if (core.control.ptr == 0) core.t += 1;  // else the device counts (replays too)
  return capturing;
}

void StepEngine::check_home_not_capturing(const char* what) const {
  if (stream_is_capturing(core_->home.stream))
    throw std::runtime_error(
        std::string("fusedupdates: ") + what +
        " while the stream of this updater's steps is capturing a CUDA graph (the device write "
        "would be recorded into the graph and repeated at every replay); do it before "
        "begin_capture() or after end_capture()");
}

void StepEngine::set_hyperparameters(const std::function<void(HyperParams&, double&)>& edit,
                                     size_t group) {
  const std::lock_guard<std::mutex> lock(core_->mutex);
  StepCore& core = *core_;
  const size_t groups = core.hyper.size();
  if (group != kAllGroups && group >= groups)
    throw std::invalid_argument("parameter group out of range");
  const size_t first = group == kAllGroups ? 0 : group;
  const size_t last = group == kAllGroups ? groups : group + 1;
  // Edit copies; nothing is committed until every device write is queued.
  std::vector<HyperParams> rule(core.hyper.begin(), core.hyper.end());
  std::vector<double> momentum = momentum_;
  for (size_t g = first; g < last; ++g) edit(rule[g], momentum[g]);
  std::vector<size_t> rule_writes;
  for (size_t g = first; g < last; ++g)
    if (core.control.ptr != 0 && !same_rule_fields(rule[g], core.hyper[g]))
      rule_writes.push_back(g);
  const bool write_momentum = momentum_slot_.ptr != 0 && momentum != momentum_;
  if (!rule_writes.empty() || write_momentum) {
    const DeviceGuard guard(core.device);
    check_home_not_capturing("hyperparameters cannot be changed");
    const Stream home = core.home.stream;
    auto* control = reinterpret_cast<Control*>(core.control.ptr);
    for (size_t g : rule_writes) {
      HyperParams fields = rule[g];
      fields.momentum = 0.0;  // the core's copy is unused: never a stepper's momentum
      upload_bytes(&control[g].hyper, &fields, kControlFieldBytes, home);
    }
    if (write_momentum)
      upload_bytes(reinterpret_cast<void*>(momentum_slot_.ptr), momentum.data(),
                   momentum.size() * sizeof(double), home);
  }
  core.hyper = std::move(rule);
  momentum_ = std::move(momentum);
}

HyperParams StepEngine::hyperparameters(size_t group) {
  const std::lock_guard<std::mutex> lock(core_->mutex);
  if (group >= core_->hyper.size()) throw std::invalid_argument("parameter group out of range");
  HyperParams h = core_->hyper[group];
  h.momentum = momentum_[group];
  return h;
}

int64_t StepEngine::t() {
  const std::lock_guard<std::mutex> lock(core_->mutex);
  StepCore& core = *core_;
  if (core.control.ptr == 0) return core.t;
  // Replays advance t on the device only: wait for the home stream (where the steps and,
  // normally, the replays ran; not CuPy's current stream) and read it. The host copy is only
  // ever refreshed from the device, never written back.
  const DeviceGuard guard(core.device);
  check_home_not_capturing("t cannot be read");
  double device_t = 0.0;
  const auto* control = reinterpret_cast<const Control*>(core.control.ptr);
  copy_to_host(&device_t, &control->hyper.step, sizeof(double), core.home.stream);
  core.t = static_cast<int64_t>(device_t);
  return core.t;
}

void StepEngine::set_t(int64_t t) {
  const std::lock_guard<std::mutex> lock(core_->mutex);
  StepCore& core = *core_;
  if (core.control.ptr != 0) {
    const DeviceGuard guard(core.device);
    check_home_not_capturing("t cannot be set");
    const double value = static_cast<double>(t);
    auto* control = reinterpret_cast<Control*>(core.control.ptr);
    upload_bytes(&control->hyper.step, &value, sizeof(double), core.home.stream);
  }
  core.t = t;
}

}  // namespace fusedupdates::cuda
