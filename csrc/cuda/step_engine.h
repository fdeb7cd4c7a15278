// The device side of one stepper (the binding's _cuda.Stepper): its tables, its launches, and,
// shared with the momentum steppers wrapping the same rule, t and the rule's hyperparameters.
//
// t and the hyperparameters: while no step of a core has been captured, the host values are
// the truth and every step passes them as kernel arguments (no device copy, no extra launch,
// reading t never synchronises). The first captured step creates the core's control block
// (rule fields and t, layout.h Control) from the host values, outside the graph; from then on
// every step of the core reads the rule fields and t there, its last block stores t + 1 (so a
// replay advances t), setting a rule field or t writes it there, and reading t synchronises the
// core's home stream (the stream of its last step) and reads the device. A momentum stepper
// keeps its momentum in its own slot, created when it is first captured: the inner stepper's
// writes never touch it, so a graph captured from the wrapper keeps its momentum.
//
// Threads: every method takes the core's mutex; callers must not hold the GIL while calling
// (the device allocator may need it).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "layout.h"
#include "tables.h"

namespace fusedupdates::cuda {

// A CUDA stream and whatever keeps it alive (the binding: CuPy's Stream object).
struct StreamRef {
  Stream stream = nullptr;
  std::shared_ptr<void> owner;
};

// What a rule stepper and the momentum steppers wrapping it share.
struct StepCore {
  StepCore(int device, bool functional, size_t num_groups = 1)
      : hyper(num_groups), device(device), functional(functional) {}
  ~StepCore();  // a control block is never freed: a graph may replay it at any time
  StepCore(const StepCore&) = delete;
  StepCore& operator=(const StepCore&) = delete;

  std::mutex mutex;
  std::vector<HyperParams> hyper;  // per parameter group: the rule's fields (not momentum)
  int64_t t = 0;  // updates applied: the truth until a step is captured (then the device's)
  int device;     // -1 until the first step when there are no arrays
  // Functional API: t and the hyperparameters are the caller's, baked into a captured step
  // (its replays repeat that one update); no control block is ever created.
  const bool functional;
  DeviceMemory control;         // Control[groups], once a step of this core was captured
  StreamRef home;               // the stream of the last step: where t is read and written
  bool has_home = false;        // a step has run (home.stream 0 is the legacy default stream)
  Fence* home_fence = nullptr;  // that stream's fence after the last eager step
};

struct StepRequest {
  const void* const* grads = nullptr;  // one per tensor, validated
  bool clip = false;
  double max_norm = 0.0;
  // Loss scaling: the grads are multiplied by inverse_scale, or by 1 / the float32 (float64
  // when scale_is_double) at scale_device when it is set, inside the kernel.
  double inverse_scale = 1.0;
  const void* scale_device = nullptr;
  bool scale_is_double = false;
  // A non-finite grad skips the whole step, decided on the device: the core's t moves to the
  // device (a control block, as after a capture) so that only applied steps advance it, and
  // the applied flag is written into the norm buffer (kFlagsOffset).
  bool skip_nonfinite = false;
  double* norm_buffer = nullptr;  // kNormBufferDoubles on the device, when clip or skip
  StreamRef stream;               // the caller's (CuPy's current) stream
};

class StepEngine {
 public:
  StepEngine(std::shared_ptr<StepCore> core, RuleId rule, Modifier modifier,
             const std::vector<TensorDesc>& tensors);
  ~StepEngine();
  StepEngine(const StepEngine&) = delete;
  StepEngine& operator=(const StepEngine&) = delete;

  const std::shared_ptr<StepCore>& core() const { return core_; }
  const std::vector<StepLayout::Launch>& launches() const { return layout_.launches; }

  // One step. Returns true when `stream` was capturing (the norm buffer must then outlive the
  // graph). Throws before anything is launched for a bad driver.
  bool step(const StepRequest& request);
  // The host part of a step without any CUDA call: the grad-pointer table and its lookup in
  // the cache. For benchmarks of the per-step host overhead.
  void prepare(const void* const* grads);

  size_t num_groups() const { return core_->hyper.size(); }
  // Applies `edit` to copies of the rule fields and this stepper's momentum of `group` (every
  // group when kAllGroups); writes the changed ones to their device copies (on the home
  // stream) if there are any, then commits. Throws, changing nothing, while the home stream is
  // capturing (the write would be recorded). `group` must be < num_groups().
  static constexpr size_t kAllGroups = static_cast<size_t>(-1);
  void set_hyperparameters(const std::function<void(HyperParams&, double&)>& edit,
                           size_t group = kAllGroups);
  HyperParams hyperparameters(size_t group = 0);  // the rule fields and this stepper's momentum
  int64_t t();  // synchronises the home stream once there is a control block
  void set_t(int64_t t);

 private:
  void build_grad_bytes(const void* const* grads);
  void create_control();
  void create_momentum_slot();
  void check_home_not_capturing(const char* what) const;
  void set_home(const StreamRef& stream);

  std::shared_ptr<StepCore> core_;
  const RuleId rule_;
  const Modifier modifier_;
  const size_t num_tensors_;
  const StepLayout layout_;
  std::vector<double> momentum_;  // per group
  DeviceMemory momentum_slot_;    // double[groups], once this momentum stepper was captured
  TablePtr fixed_;                // held: never freed while this stepper lives
  TablePtr grads_table_;          // the last grad-pointer table (a loop reuses a few)
  std::string grad_bytes_;
};

}  // namespace fusedupdates::cuda
