// _cpu.Stepper: the native object behind one updater. Built once from the rule, the params,
// the states and (for a momentum wrapper) the velocity, it validates those fixed arrays once,
// holds a reference to each of them, and owns the step counter t and the hyperparameters.
// A step describes and checks only the grads, then releases the GIL and runs one kernel call.
//
// Threads: a step, a change of t or of the hyperparameters each run under the lock of the
// stepper's core (shared with its momentum wrappers, which share its t and states), taken
// with the GIL released, so concurrent calls are serialised, never interleaved.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../common/validate.h"
#include "../cpu/step_plan.h"
#include "hyper_binding.h"

namespace fusedupdates::bindings {

namespace py = pybind11;

// What a rule stepper and the momentum steppers wrapping it share: one t, the rule
// hyperparameters of each parameter group, one lock.
struct StepperCore {
  std::mutex mutex;
  std::vector<HyperParams> hyper;  // per group; each momentum stepper keeps its own momentum
  int64_t t = 0;                   // updates applied
  bool last_applied = true;        // false after a step skipped for a non-finite grad
};

class CpuStepper {
 public:
  // states: one list per rule state (in the rule's order), each as long as params, then
  // optionally the master weights (state name kMasterState).
  // groups: the parameter group of each param (None: one group), numbered 0..G-1.
  // stochastic_rounding: round the 16-bit params stochastically (keyed by t and param index).
  // stochastic_state_rounding: the same for compact states, bfloat16 values and 8-bit codes
  // (keyed by t, param and state); float32 states are left as they are.
  // scales: None, or one list per rule state: the float32 block absmax array of each uint8
  // (8-bit compact) state array, None for the others (bfloat16 state needs none).
  CpuStepper(int rule, const py::sequence& params, const py::sequence& states,
             const std::vector<std::string>& state_names, const py::object& groups,
             bool stochastic_rounding = false, bool stochastic_state_rounding = false,
             const py::object& scales = py::none());

  // A stepper applying Lasagne's (Nesterov) momentum on top of this one's rule: it shares
  // this stepper's core (t, rule hyperparameters, lock) and state arrays. velocity: one
  // entry per param, None where the modifier does not apply.
  // velocity_scales: as scales above, for the velocity (None: no uint8 velocity).
  std::shared_ptr<CpuStepper> with_momentum(const py::sequence& velocity, bool nesterov,
                                            const py::object& velocity_scales = py::none()) const;

  // One fused update of every param; returns the total norm (a float) when max_norm is given.
  // grad_scale: the grads are divided by it inside the kernel (loss scaling); it implies
  // skip_nonfinite: a NaN or Inf in any grad skips the whole step (params, states and t
  // unchanged; last_step_applied() tells). The norm is that of the unscaled grads.
  py::object step(const py::handle& grads, const py::object& max_norm, const py::object& grad_scale,
                  bool skip_nonfinite);
  bool last_step_applied() const;
  // kwargs: fields of HyperParams, and group=None (every group) or a group index.
  void set_hyperparameters(py::kwargs kwargs);
  py::dict hyperparameters(int64_t group) const;
  size_t num_groups() const { return num_groups_; }
  int64_t t() const;
  void set_t(int64_t t);
  size_t size() const { return fixed_.size(); }
  bool has_momentum() const { return has_velocity_; }

 private:
  CpuStepper() = default;
  void build(const std::vector<ArrayGroup>& groups, const std::vector<ArrayGroup>& scale_groups,
             bool has_velocity);
  std::vector<ArrayGroup> describe_scales() const;
  void check_fixed_unchanged() const;

  std::shared_ptr<StepperCore> core_;
  RuleId rule_ = RuleId::kSgd;
  bool nesterov_ = false;
  bool stochastic_rounding_ = false;        // 16-bit params without master weights only
  bool stochastic_state_rounding_ = false;  // bfloat16 state only
  bool has_velocity_ = false;
  size_t num_groups_ = 1;
  std::vector<uint32_t> group_of_;  // param i -> its group
  std::vector<double> momentum_;    // per group (momentum steppers only)
  std::vector<std::string> state_names_;
  // The arrays the stepper writes, with a reference held for its whole life: param i, then
  // state k of param i at [(1 + k) * n + i], then the velocity (None where absent).
  std::vector<py::object> arrays_;
  std::vector<std::uintptr_t> array_ptrs_;  // their data pointers, as validated
  // The block scales of 8-bit states, held the same way: [k * n + i] for state k (the rule's,
  // then the velocity), None where the state is not uint8; empty without any.
  std::vector<py::object> scale_arrays_;
  std::vector<std::string> scale_names_;  // per state k, for messages
  std::vector<std::uintptr_t> scale_ptrs_;
  FixedArrays fixed_;
  std::vector<cpu::StepPlan> plans_;  // one per (storage dtype, group); grads set per step
  std::vector<uint32_t> plan_group_;  // plan -> its group
  struct SlotRef {
    uint32_t plan, slot;
  };
  std::vector<SlotRef> slot_of_;  // param i -> its slot
};

}  // namespace fusedupdates::bindings
