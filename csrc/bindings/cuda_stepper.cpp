#include "cuda_stepper.h"

#include <cmath>
#include <utility>

#include "../cuda/launch.h"
#include "cuda_desc.h"
#include "cuda_hooks.h"
#include "hyper_binding.h"
#include "numpy_desc.h"

namespace fusedupdates::bindings {
namespace {

const char* format_name(StateFormat f) {
  return f == StateFormat::kInt8 ? "int8" : f == StateFormat::kBFloat16 ? "bfloat16" : "full";
}

cuda::Modifier modifier_of(bool has_velocity, bool nesterov) {
  if (!has_velocity) return cuda::Modifier::kNone;
  return nesterov ? cuda::Modifier::kNesterov : cuda::Modifier::kMomentum;
}

}  // namespace

CudaStepper::CudaStepper(int rule, const py::sequence& params, const py::sequence& states,
                         const std::vector<std::string>& state_names,
                         const py::object& group_indices, bool functional,
                         const py::object& scales) {
  if (rule < 0 || rule >= kNumRules) throw ArgValueError("unknown rule id " + std::to_string(rule));
  if (py::len(states) != state_names.size())
    throw ArgValueError("states and state_names differ in length");
  rule_ = static_cast<RuleId>(rule);
  state_names_ = state_names;
  const py::tuple p = hold_items(params, "params");
  group_of_ = parse_group_indices(group_indices, p.size(), num_groups_);
  if (functional && num_groups_ != 1)
    throw ArgValueError("a functional stepper has one parameter group");
  for (const py::handle a : p) arrays_.push_back(py::reinterpret_borrow<py::object>(a));
  ShapeStore shapes;
  std::vector<ArrayGroup> groups;
  groups.push_back(describe_cuda_list(p, "params", true, shapes));
  for (size_t k = 0; k < state_names.size(); ++k) {
    const std::string name = "state '" + state_names[k] + "'";
    const py::tuple s = hold_items(states[k], name.c_str());
    groups.push_back(describe_cuda_list(s, name, true, shapes, false, /*allow_codes=*/true));
    for (const py::handle a : s) arrays_.push_back(py::reinterpret_borrow<py::object>(a));
  }
  const size_t rule_states = state_names.size() - (has_master_state(state_names) ? 1 : 0);
  for (size_t k = 0; k < rule_states; ++k) scale_names_.push_back(state_names[k]);
  hold_scales(scale_arrays_, scales, rule_states, p.size(), "scales");
  const int device = p.size() == 0 ? -1 : groups[0].arrays[0].device;
  build(groups, describe_scales(shapes), false,
        std::make_shared<cuda::StepCore>(device, functional, num_groups_));
}

// The block scales as validator groups, one per state with scales (the rule's, the velocity).
std::vector<ArrayGroup> CudaStepper::describe_scales(ShapeStore& shapes) const {
  std::vector<ArrayGroup> out;
  const size_t count = scale_names_.size();
  const size_t per = count ? scale_arrays_.size() / count : 0;
  for (size_t k = 0; k < count; ++k) {
    py::tuple items(per);
    for (size_t i = 0; i < per; ++i) items[i] = scale_arrays_[k * per + i];
    out.push_back(describe_cuda_list(items, "state '" + scale_names_[k] + "_absmax'", true, shapes,
                                     /*optional_items=*/true));
  }
  return out;
}

std::shared_ptr<CudaStepper> CudaStepper::with_momentum(const py::sequence& velocity, bool nesterov,
                                                        const py::object& velocity_scales) const {
  if (has_velocity_)
    throw ArgValueError(
        "this stepper already has a momentum modifier; stacking two is not "
        "supported by the fused kernels");
  std::shared_ptr<CudaStepper> w(new CudaStepper());
  w->rule_ = rule_;
  w->nesterov_ = nesterov;
  w->state_names_ = state_names_;
  w->num_groups_ = num_groups_;
  w->group_of_ = group_of_;
  w->arrays_ = arrays_;
  const py::tuple v = hold_items(velocity, "velocity");
  for (const py::handle a : v) w->arrays_.push_back(py::reinterpret_borrow<py::object>(a));
  const size_t n = size();
  ShapeStore shapes;
  std::vector<ArrayGroup> groups;
  for (size_t k = 0; k <= state_names_.size(); ++k) {
    py::tuple items(n);
    for (size_t i = 0; i < n; ++i) items[i] = arrays_[k * n + i];
    groups.push_back(describe_cuda_list(items,
                                        k == 0 ? "params" : "state '" + state_names_[k - 1] + "'",
                                        true, shapes, false, /*allow_codes=*/true));
  }
  groups.push_back(describe_cuda_list(v, "state 'velocity'", true, shapes,
                                      /*optional_items=*/true, /*allow_codes=*/true));
  w->scale_arrays_ = scale_arrays_;
  w->scale_names_ = scale_names_;
  w->scale_names_.push_back("velocity");
  hold_optional_scale_list(w->scale_arrays_, velocity_scales, n, "velocity_scales");
  w->build(groups, w->describe_scales(shapes), true, engine_->core());
  return w;
}

// groups: params, the rule's states, [master], [velocity]; scale_groups: one per rule state,
// then one for the velocity when has_velocity. Validated as by _cpu.Stepper (FixedArrays).
void CudaStepper::build(const std::vector<ArrayGroup>& groups,
                        const std::vector<ArrayGroup>& scale_groups, bool has_velocity,
                        std::shared_ptr<cuda::StepCore> core) {
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
  const size_t n = params.arrays.size();
  const auto scales_at = [&](size_t k, size_t i) {
    const ArrayDesc& a = scale_groups[k].arrays[i];
    return a.present ? reinterpret_cast<float*>(a.ptr) : nullptr;
  };
  std::vector<cuda::TensorDesc> tensors(n);
  for (size_t i = 0; i < n; ++i) {
    cuda::TensorDesc& t = tensors[i];
    t.param = reinterpret_cast<void*>(params.arrays[i].ptr);
    for (int k = 0; k < kMaxStates; ++k) t.state[k] = nullptr;
    for (size_t k = 0; k < rule_states; ++k) {
      t.state[k] = reinterpret_cast<void*>(groups[1 + k].arrays[i].ptr);
      t.scales[k] = scales_at(k, i);
    }
    t.format = state_format_of(fixed_.state_storage(i));
    t.numel = params.arrays[i].numel;
    t.dtype = params.arrays[i].dtype;
    if (with_master) {
      check_master_dtype(i, t.dtype);
      t.master = reinterpret_cast<void*>(groups[1 + rule_states].arrays[i].ptr);
    }
    t.group = group_of_[i];
    t.with_momentum = has_velocity && groups.back().arrays[i].present;
    if (t.with_momentum) {
      t.state[rule_states] = reinterpret_cast<void*>(groups.back().arrays[i].ptr);
      t.scales[rule_states] = scales_at(rule_states, i);
    }
  }
  engine_ = std::make_shared<cuda::StepEngine>(std::move(core), rule_,
                                               modifier_of(has_velocity, nesterov_), tensors);
}

const std::vector<const void*>& CudaStepper::describe_grads(const py::tuple& held) const {
  const size_t n = size();
  fixed_.check_grad_count(held.size());
  thread_local std::vector<const void*> grad_ptrs;
  thread_local std::vector<int64_t> shape;  // of the grad being checked
  grad_ptrs.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const ArrayDesc g =
        describe_cuda(PyTuple_GET_ITEM(held.ptr(), i), "grads", i, /*optional=*/true, shape);
    if (!g.present) {  // None: this param (and its state) is left untouched by the step
      grad_ptrs[i] = nullptr;
      continue;
    }
    fixed_.check_grad(g, i);
    grad_ptrs[i] = reinterpret_cast<const void*>(g.ptr);
  }
  return grad_ptrs;
}

py::object CudaStepper::step(const py::handle& grads, const py::object& max_norm,
                             const py::object& grad_scale, bool skip_nonfinite) {
  const py::tuple held = hold_items(grads, "grads");  // keeps every grad alive until launched
  // A copy: the Python calls below (max_norm's __float__, the CuPy hooks) could step another
  // stepper on this thread and reuse the thread's list.
  const std::vector<const void*> grad_ptrs = describe_grads(held);
  cuda::StepRequest request;
  request.grads = grad_ptrs.data();
  request.clip = !max_norm.is_none();
  if (request.clip) request.max_norm = max_norm_value(max_norm);
  const int device = size() > 0 ? fixed_.device() : -1;
  if (!grad_scale.is_none()) {
    skip_nonfinite = true;  // a loss-scaled step always checks, as on the CPU
    if (PyObject_HasAttrString(grad_scale.ptr(), "__cuda_array_interface__")) {
      std::vector<int64_t> shape;
      const ArrayDesc s = describe_cuda(grad_scale.ptr(), "grad_scale", 0, false, shape);
      if (s.numel != 1 || (s.dtype != DType::kFloat32 && s.dtype != DType::kFloat64))
        throw ArgTypeError("grad_scale: a device scale must be one float32 or float64 element");
      if (!s.aligned) throw ArgValueError("grad_scale: the device scale is misaligned");
      if (device >= 0 && s.device != device)
        throw ArgValueError("grad_scale: is on device " + std::to_string(s.device) +
                            " but the params are on device " + std::to_string(device));
      request.scale_device = reinterpret_cast<const void*>(s.ptr);
      request.scale_is_double = s.dtype == DType::kFloat64;
    } else {
      request.inverse_scale = 1.0 / grad_scale_value(grad_scale);
    }
  }
  if (skip_nonfinite && engine_->core()->functional)
    throw ArgValueError("skip_nonfinite: a functional stepper never skips a step");
  request.skip_nonfinite = skip_nonfinite;
  cuda::ensure_runtime();  // the first CUDA call of this step
  const int step_device = device >= 0 ? device : cuda::current_device();
  request.stream = current_stream(step_device);
  py::object norm = py::none(), applied = py::bool_(true);
  if (request.clip || skip_nonfinite) {
    NormBuffer buffer = new_norm_buffer(step_device);
    request.norm_buffer = buffer.ptr;
    if (request.clip) norm = std::move(buffer.norm);
    if (skip_nonfinite) applied = std::move(buffer.applied);
  }
  bool captured = false;
  {
    py::gil_scoped_release release;
    captured = engine_->step(request);
  }
  if (captured && (request.clip || skip_nonfinite)) {
    keep_forever(norm);  // the graph writes the buffer at every replay
    keep_forever(applied);
  }
  last_applied_ = std::move(applied);
  return norm;
}

py::list CudaStepper::prepare_step(const py::handle& grads) {
  const py::tuple held = hold_items(grads, "grads");
  const void* const* ptrs = describe_grads(held).data();
  {
    py::gil_scoped_release release;
    engine_->prepare(ptrs);
  }
  py::list out;
  for (const cuda::StepLayout::Launch& l : engine_->launches())
    out.append(py::make_tuple(dtype_name(l.dtype), l.with_momentum, l.begin, l.end, l.group,
                              format_name(l.format)));
  return out;
}

void CudaStepper::set_hyperparameters(py::kwargs kwargs) {
  const auto [first, last] = pop_group_kwarg(kwargs, num_groups_);
  const size_t group = last - first == num_groups_ ? cuda::StepEngine::kAllGroups : first;
  const HyperUpdate update = parse_hyper_kwargs(kwargs);
  if (update.has(kField_momentum) && !has_velocity_)
    throw ArgTypeError("momentum: this stepper has no momentum modifier");
  py::gil_scoped_release release;
  engine_->set_hyperparameters(
      [&update](HyperParams& rule, double& momentum) {
        update.apply_to(rule, /*with_momentum=*/false);
        if (update.has(kField_momentum)) momentum = update.values.momentum;
      },
      group);
}

py::dict CudaStepper::hyperparameters(int64_t group) const {
  check_group_index(group, num_groups_);
  HyperParams h;
  {
    py::gil_scoped_release release;
    h = engine_->hyperparameters(static_cast<size_t>(group));
  }
  return hyper_to_dict(h);
}

int64_t CudaStepper::t() const {
  py::gil_scoped_release release;
  return engine_->t();
}

void CudaStepper::set_t(int64_t t) {
  // t + 1 is used as a double (the bias corrections): keep it exact.
  if (t < 0 || t >= (int64_t{1} << 53))
    throw ArgValueError("t must be an integer in [0, 2**53), got " + std::to_string(t));
  py::gil_scoped_release release;
  engine_->set_t(t);
}

}  // namespace fusedupdates::bindings
