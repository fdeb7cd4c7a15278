#include "cpu_stepper.h"

#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "../cpu/dispatch.h"
#include "../rules/norm.h"
#include "numpy_desc.h"

namespace fusedupdates::bindings {
namespace {

// The plans restricted to the slots that have a grad this step (into `out`, reused).
std::vector<cpu::StepPlan>& without_frozen(const std::vector<cpu::StepPlan>& plans,
                                           std::vector<cpu::StepPlan>& out) {
  out.resize(plans.size());
  for (size_t p = 0; p < plans.size(); ++p) {
    out[p].rule = plans[p].rule;
    out[p].dtype = plans[p].dtype;
    out[p].nesterov = plans[p].nesterov;
    out[p].stochastic_rounding = plans[p].stochastic_rounding;
    out[p].stochastic_state_rounding = plans[p].stochastic_state_rounding;
    out[p].state_format = plans[p].state_format;
    out[p].hyper = plans[p].hyper;
    out[p].tensors.clear();
    for (const cpu::TensorSlot& slot : plans[p].tensors)
      if (slot.grad != nullptr) out[p].tensors.push_back(slot);
  }
  return out;
}

// Takes the core's lock with the GIL released: a thread holding the lock may need the GIL to
// finish, so waiting for the lock while holding the GIL could deadlock.
std::unique_lock<std::mutex> lock_core(StepperCore& core) {
  py::gil_scoped_release release;
  return std::unique_lock<std::mutex>(core.mutex);
}

}  // namespace

CpuStepper::CpuStepper(int rule, const py::sequence& params, const py::sequence& states,
                       const std::vector<std::string>& state_names, const py::object& group_indices,
                       bool stochastic_rounding, bool stochastic_state_rounding,
                       const py::object& scales) {
  if (rule < 0 || rule >= kNumRules) throw ArgValueError("unknown rule id " + std::to_string(rule));
  if (py::len(states) != state_names.size())
    throw ArgValueError("states and state_names differ in length");
  core_ = std::make_shared<StepperCore>();
  rule_ = static_cast<RuleId>(rule);
  state_names_ = state_names;
  stochastic_rounding_ = stochastic_rounding;
  stochastic_state_rounding_ = stochastic_state_rounding;
  const py::tuple p = hold_items(params, "params");
  group_of_ = parse_group_indices(group_indices, p.size(), num_groups_);
  core_->hyper.assign(num_groups_, HyperParams{});
  momentum_.assign(num_groups_, 0.0);
  for (const py::handle a : p) arrays_.push_back(py::reinterpret_borrow<py::object>(a));
  std::vector<ArrayGroup> groups;
  groups.push_back(describe_list(p, "params", true));
  for (size_t k = 0; k < state_names.size(); ++k) {
    const std::string name = "state '" + state_names[k] + "'";
    const py::tuple s = hold_items(states[k], name.c_str());
    groups.push_back(describe_list(s, name, true, false, /*allow_codes=*/true));
    for (const py::handle a : s) arrays_.push_back(py::reinterpret_borrow<py::object>(a));
  }
  const size_t rule_states = state_names.size() - (has_master_state(state_names) ? 1 : 0);
  for (size_t k = 0; k < rule_states; ++k) scale_names_.push_back(state_names[k]);
  hold_scales(scale_arrays_, scales, rule_states, p.size(), "scales");
  build(groups, describe_scales(), false);
}

// The block scales as validator groups, one per state with scales (the rule's, the velocity).
std::vector<ArrayGroup> CpuStepper::describe_scales() const {
  std::vector<ArrayGroup> out;
  const size_t count = scale_names_.size();
  const size_t per = count ? scale_arrays_.size() / count : 0;
  for (size_t k = 0; k < count; ++k) {
    py::tuple items(per);
    for (size_t i = 0; i < per; ++i) items[i] = scale_arrays_[k * per + i];
    out.push_back(describe_list(items, "state '" + scale_names_[k] + "_absmax'", true,
                                /*optional_items=*/true));
  }
  return out;
}

std::shared_ptr<CpuStepper> CpuStepper::with_momentum(const py::sequence& velocity, bool nesterov,
                                                      const py::object& velocity_scales) const {
  if (has_velocity_)
    throw ArgValueError(
        "this stepper already has a momentum modifier; stacking two is not "
        "supported by the fused kernels");
  std::shared_ptr<CpuStepper> w(new CpuStepper());
  w->core_ = core_;
  w->rule_ = rule_;
  w->nesterov_ = nesterov;
  w->stochastic_rounding_ = stochastic_rounding_;
  w->stochastic_state_rounding_ = stochastic_state_rounding_;
  w->state_names_ = state_names_;
  w->num_groups_ = num_groups_;
  w->group_of_ = group_of_;
  w->momentum_.assign(num_groups_, 0.0);
  w->arrays_ = arrays_;
  const py::tuple v = hold_items(velocity, "velocity");
  for (const py::handle a : v) w->arrays_.push_back(py::reinterpret_borrow<py::object>(a));
  const size_t n = size();
  std::vector<ArrayGroup> groups;
  for (size_t k = 0; k <= state_names_.size(); ++k) {
    py::tuple items(n);
    for (size_t i = 0; i < n; ++i) items[i] = arrays_[k * n + i];
    groups.push_back(describe_list(items, k == 0 ? "params" : "state '" + state_names_[k - 1] + "'",
                                   true, false, true));
  }
  groups.push_back(describe_list(v, "state 'velocity'", true, /*optional_items=*/true, true));
  w->scale_arrays_ = scale_arrays_;
  w->scale_names_ = scale_names_;
  w->scale_names_.push_back("velocity");
  hold_optional_scale_list(w->scale_arrays_, velocity_scales, n, "velocity_scales");
  w->build(groups, w->describe_scales(), true);
  return w;
}

// groups: params, the rule's states, [master], [velocity]; scale_groups: one per rule state,
// then one for the velocity when has_velocity.
void CpuStepper::build(const std::vector<ArrayGroup>& groups,
                       const std::vector<ArrayGroup>& scale_groups, bool has_velocity) {
  has_velocity_ = has_velocity;
  const ArrayGroup& params = groups[0];
  // A last state named "master" is the float32 master copy of 16-bit params, not a rule state.
  const bool with_master = has_master_state(state_names_);
  const size_t rule_states = state_names_.size() - (with_master ? 1 : 0);
  const ArrayGroup no_scales{"no scales", std::vector<ArrayDesc>(params.arrays.size()), true};
  std::vector<const ArrayGroup*> states, scales;
  std::vector<bool> allow_missing, full_only;
  for (size_t k = 1; k < groups.size(); ++k) {
    const bool is_master = with_master && k == 1 + rule_states;
    const bool is_velocity = has_velocity && k + 1 == groups.size();
    states.push_back(&groups[k]);
    allow_missing.push_back(is_velocity);
    full_only.push_back(is_master);
    scales.push_back(is_master ? &no_scales : &scale_groups[is_velocity ? rule_states : k - 1]);
  }
  fixed_ = FixedArrays(params, states, allow_missing, scales, full_only);
  for (const ArrayGroup& g : groups)
    for (const ArrayDesc& a : g.arrays) array_ptrs_.push_back(a.present ? a.ptr : 0);
  for (const ArrayGroup& g : scale_groups)
    for (const ArrayDesc& a : g.arrays) scale_ptrs_.push_back(a.present ? a.ptr : 0);

  const size_t n = params.arrays.size();
  for (size_t i = 0; i < n; ++i) {
    const DType dtype = params.arrays[i].dtype;
    if (stochastic_rounding_ && (with_master || !is_16bit(dtype)))
      throw ArgValueError("params[" + std::to_string(i) + "]: stochastic rounding is for " +
                          "float16 and bfloat16 params without master weights");
    if (with_master) check_master_dtype(i, dtype);
    const uint32_t group = group_of_[i];
    const StateFormat format = state_format_of(fixed_.state_storage(i));
    // (stochastic_state_rounding leaves float32 states alone: the small tensors under 8-bit
    // state keep theirs exactly; the Python layer refuses it without compact state)
    size_t plan = 0;
    while (plan < plans_.size() && (plans_[plan].dtype != dtype || plan_group_[plan] != group ||
                                    plans_[plan].state_format != format))
      ++plan;
    if (plan == plans_.size()) {
      plans_.push_back(
          cpu::StepPlan{rule_, dtype, nesterov_, stochastic_rounding_, format, {}, {}});
      plans_.back().stochastic_state_rounding = stochastic_state_rounding_;
      plan_group_.push_back(group);
    }
    cpu::TensorSlot slot{reinterpret_cast<void*>(params.arrays[i].ptr),
                         nullptr,
                         {},
                         nullptr,
                         {},
                         params.arrays[i].numel,
                         false,
                         static_cast<uint32_t>(i)};
    const auto scales_at = [&](size_t k) {
      const ArrayDesc& a = scale_groups[k].arrays[i];
      return a.present ? reinterpret_cast<float*>(a.ptr) : nullptr;
    };
    for (size_t k = 0; k < rule_states; ++k) {
      slot.state[k] = reinterpret_cast<void*>(groups[1 + k].arrays[i].ptr);
      slot.scales[k] = scales_at(k);
    }
    if (with_master) slot.master = reinterpret_cast<void*>(groups[1 + rule_states].arrays[i].ptr);
    if (has_velocity && groups.back().arrays[i].present) {
      slot.with_momentum = true;
      slot.state[rule_states] = reinterpret_cast<void*>(groups.back().arrays[i].ptr);
      slot.scales[rule_states] = scales_at(rule_states);
    }
    slot_of_.push_back(
        SlotRef{static_cast<uint32_t>(plan), static_cast<uint32_t>(plans_[plan].tensors.size())});
    plans_[plan].tensors.push_back(slot);
  }
}

// A param or state made read-only (arr.flags.writeable = False) after the stepper was built
// must not be written: a per-array flag read, no Python call.
void CpuStepper::check_fixed_unchanged() const {
  const size_t n = size();
  for (size_t j = 0; j < arrays_.size(); ++j) {
    if (array_ptrs_[j] == 0 || still_writeable_at(arrays_[j], array_ptrs_[j])) continue;
    const size_t group = j / n, i = j % n;
    const std::string name = group == 0 ? "params"
                             : group <= state_names_.size()
                                 ? "state '" + state_names_[group - 1] + "'"
                                 : "state 'velocity'";
    throw ArgValueError(name + "[" + std::to_string(i) +
                        "]: the array was made read-only after the updater was built");
  }
  for (size_t j = 0; j < scale_arrays_.size(); ++j) {
    if (scale_ptrs_[j] == 0 || still_writeable_at(scale_arrays_[j], scale_ptrs_[j])) continue;
    throw ArgValueError("state '" + scale_names_[j / n] + "_absmax'[" + std::to_string(j % n) +
                        "]: the array was made read-only after the updater was built");
  }
}

py::object CpuStepper::step(const py::handle& grads, const py::object& max_norm,
                            const py::object& grad_scale, bool skip_nonfinite) {
  const py::tuple held = hold_items(grads, "grads");  // keeps every grad alive until we return
  const size_t n = size();
  fixed_.check_grad_count(held.size());
  thread_local std::vector<const void*> grad_ptrs;
  grad_ptrs.resize(n);
  size_t frozen = 0;  // params whose grad is None: they and their state are left untouched
  for (size_t i = 0; i < n; ++i) {
    const ArrayDesc g = describe_numpy(held[i], "grads", i, /*optional=*/true);
    if (!g.present) {
      grad_ptrs[i] = nullptr;
      ++frozen;
      continue;
    }
    fixed_.check_grad(g, i);
    grad_ptrs[i] = reinterpret_cast<const void*>(g.ptr);
  }
  check_fixed_unchanged();
  const bool clip = !max_norm.is_none();
  const double bound = clip ? max_norm_value(max_norm) : 0.0;
  const bool loss_scaled = !grad_scale.is_none();
  const double inverse_scale = loss_scaled ? 1.0 / grad_scale_value(grad_scale) : 1.0;
  skip_nonfinite = skip_nonfinite || loss_scaled;  // a loss-scaled step always checks
  double norm = std::numeric_limits<double>::quiet_NaN();
  {
    py::gil_scoped_release release;
    const std::lock_guard<std::mutex> lock(core_->mutex);
    for (size_t p = 0; p < plans_.size(); ++p) {
      HyperParams& h = plans_[p].hyper;
      h = core_->hyper[plan_group_[p]];
      h.momentum = momentum_[plan_group_[p]];
      h.step = static_cast<double>(core_->t + 1);
      h.grad_scale = 1.0;
    }
    for (size_t i = 0; i < n; ++i)
      plans_[slot_of_[i].plan].tensors[slot_of_[i].slot].grad = grad_ptrs[i];
    // With frozen params, a copy of the plans without them (the common case copies nothing).
    thread_local std::vector<cpu::StepPlan> active;
    std::vector<cpu::StepPlan>& plans = frozen == 0 ? plans_ : without_frozen(plans_, active);
    const cpu::KernelTable& k = cpu::kernels();
    const int threads = cpu::num_threads();
    // At most one read of the grads before the update. Clipping: the sum of squares serves
    // both the norm and the non-finite check (a float16/32 square cannot overflow a double,
    // so the sum is finite exactly when every grad is; a float64 grad above ~1e154 in
    // magnitude also counts as non-finite). Only checking: the cheaper test of the bits.
    double multiplier = inverse_scale;
    bool finite = true;
    if (clip) {
      double sum = 0.0;
      for (const cpu::StepPlan& plan : plans) sum += k.plan_sum_squares(plan, threads);
      finite = std::isfinite(sum);
      norm = std::sqrt(sum) * inverse_scale;  // the norm of the unscaled grads
      multiplier = norm_multiplier(norm, bound, kClipEpsilon) * inverse_scale;
    } else if (skip_nonfinite) {
      for (const cpu::StepPlan& plan : plans) finite = finite && k.plan_all_finite(plan, threads);
    }
    core_->last_applied = finite || !skip_nonfinite;
    if (core_->last_applied) {
      for (cpu::StepPlan& plan : plans) plan.hyper.grad_scale = multiplier;
      for (const cpu::StepPlan& plan : plans) k.apply_step(plan, threads);
      core_->t += 1;
    }
  }
  if (!clip) return py::none();
  return py::float_(norm);
}

void CpuStepper::set_hyperparameters(py::kwargs kwargs) {
  const auto [first, last] = pop_group_kwarg(kwargs, num_groups_);
  const HyperUpdate update = parse_hyper_kwargs(kwargs);
  if (update.has(kField_momentum) && !has_velocity_)
    throw ArgTypeError("momentum: this stepper has no momentum modifier");
  const auto lock = lock_core(*core_);
  for (size_t g = first; g < last; ++g) {
    update.apply_to(core_->hyper[g], /*with_momentum=*/false);
    if (update.has(kField_momentum)) momentum_[g] = update.values.momentum;
  }
}

py::dict CpuStepper::hyperparameters(int64_t group) const {
  check_group_index(group, num_groups_);
  HyperParams h;
  {
    const auto lock = lock_core(*core_);
    h = core_->hyper[group];
    h.momentum = momentum_[group];
  }
  return hyper_to_dict(h);
}

bool CpuStepper::last_step_applied() const {
  const auto lock = lock_core(*core_);
  return core_->last_applied;
}

int64_t CpuStepper::t() const {
  const auto lock = lock_core(*core_);
  return core_->t;
}

void CpuStepper::set_t(int64_t t) {
  // t + 1 is used as a double (the bias corrections): keep it exact.
  if (t < 0 || t >= (int64_t{1} << 53))
    throw ArgValueError("t must be an integer in [0, 2**53), got " + std::to_string(t));
  const auto lock = lock_core(*core_);
  core_->t = t;
}

}  // namespace fusedupdates::bindings
