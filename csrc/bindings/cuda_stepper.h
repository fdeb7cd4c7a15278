// _cuda.Stepper: the native object behind one updater on CuPy arrays, with the Python API of
// _cpu.Stepper (cpu_stepper.h). Built once from the rule, the params, the states and (for a
// momentum wrapper) the velocity, it validates those fixed arrays once (FixedArrays), holds a
// reference to each of them, and owns t, the hyperparameters and every device resource of the
// updater through its StepEngine (csrc/cuda/step_engine.h). A step describes and checks only
// the grads, then launches asynchronously on CuPy's current stream.
//
// No CUDA call is made before the first launch, and none at all for a rejected call, so a
// stepper can be built and validated on stand-in arrays on a machine without a GPU.
//
// Threads: the engine's methods take the core's lock; they are always called with the GIL
// released (the device allocator may need the GIL).
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../common/validate.h"
#include "../cuda/step_engine.h"
#include "cuda_desc.h"

namespace fusedupdates::bindings {

namespace py = pybind11;

class CudaStepper {
 public:
  // states: one list per rule state (in the rule's order), each as long as params.
  // groups: the parameter group of each param (None: one group), numbered 0..G-1; each
  // group's tensors run their own launches with that group's hyperparameters.
  // functional: t and the hyperparameters belong to the caller (fusedupdates.functional): a
  // captured step replays that one update instead of advancing t.
  // scales: None, or one list per rule state: the float32 block absmax array of each uint8
  // (8-bit compact) state array, None for the others, as for _cpu.Stepper. A param's states
  // are its compute dtype, bfloat16 or uint8 (compact state; float16/32 and bfloat16 params).
  CudaStepper(int rule, const py::sequence& params, const py::sequence& states,
              const std::vector<std::string>& state_names, const py::object& groups,
              bool functional, const py::object& scales = py::none());

  // A stepper applying Lasagne's (Nesterov) momentum on top of this one's rule: it shares this
  // stepper's core (t, rule hyperparameters, lock, control block) and state arrays. velocity:
  // one entry per param, None where the modifier does not apply. velocity_scales: as scales
  // above, for the velocity (None: no uint8 velocity).
  std::shared_ptr<CudaStepper> with_momentum(const py::sequence& velocity, bool nesterov,
                                             const py::object& velocity_scales = py::none()) const;

  // One fused update of every param; with max_norm, the total norm as a 0-d float64 CuPy
  // array (no host sync). A grad may be None: that param and its state are left untouched.
  // grad_scale (a float, or a 0-d float32/float64 CuPy array on the params' device, read by
  // the kernel): the grads are divided by it inside the kernel; it implies skip_nonfinite: a
  // NaN or Inf in any grad skips the whole step on the device (params, states and t
  // unchanged), and last_step_applied() is then a 0-d bool array written by the step. The
  // first such step moves t to the device (reading t then synchronises, as after a capture).
  py::object step(const py::handle& grads, const py::object& max_norm, const py::object& grad_scale,
                  bool skip_nonfinite);
  py::object last_step_applied() const { return last_applied_; }
  // The host part of step() without any CUDA call: describes and checks the grads, builds the
  // grad-pointer table and looks it up. Returns the launches a step makes, as
  // (dtype, with_momentum, first_chunk, end_chunk, group). For benchmarks and tests.
  py::list prepare_step(const py::handle& grads);
  // kwargs: fields of HyperParams, and group=None (every group) or a group index.
  void set_hyperparameters(py::kwargs kwargs);
  py::dict hyperparameters(int64_t group) const;
  size_t num_groups() const { return num_groups_; }
  int64_t t() const;
  void set_t(int64_t t);
  size_t size() const { return fixed_.size(); }
  bool has_momentum() const { return has_velocity_; }

 private:
  CudaStepper() = default;
  void build(const std::vector<ArrayGroup>& groups, const std::vector<ArrayGroup>& scale_groups,
             bool has_velocity, std::shared_ptr<cuda::StepCore> core);
  std::vector<ArrayGroup> describe_scales(ShapeStore& shapes) const;
  // Describes and checks grads (held by `held`) into the calling thread's pointer list.
  const std::vector<const void*>& describe_grads(const py::tuple& held) const;

  RuleId rule_ = RuleId::kSgd;
  bool nesterov_ = false;
  bool has_velocity_ = false;
  size_t num_groups_ = 1;
  std::vector<uint32_t> group_of_;  // param i -> its group
  std::vector<std::string> state_names_;
  // The arrays the stepper writes, with a reference held for its whole life: param i, then
  // state k of param i at [(1 + k) * n + i], then the velocity (None where absent).
  std::vector<py::object> arrays_;
  // The block scales of 8-bit states, held the same way: [k * n + i] for state k (the rule's,
  // then the velocity), None where the state is not uint8.
  std::vector<py::object> scale_arrays_;
  std::vector<std::string> scale_names_;  // per state k, for messages
  FixedArrays fixed_;
  std::shared_ptr<cuda::StepEngine> engine_;
  // True, or the applied flag of the last step with skip_nonfinite (a 0-d bool CuPy array).
  py::object last_applied_ = py::bool_(true);
};

}  // namespace fusedupdates::bindings
