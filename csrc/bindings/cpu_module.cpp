// fusedupdates._cpu: the OpenMP backend. Each function describes its arguments, validates
// all of them (nothing is written on error), then releases the GIL and runs one kernel call.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "../cpu/dispatch.h"
#include "../rules/norm.h"
#include "module_common.h"
#include "numpy_desc.h"

namespace py = pybind11;
using namespace fusedupdates;
using fusedupdates::bindings::describe_list;
using fusedupdates::bindings::describe_numpy;
using fusedupdates::bindings::hyper_from;

namespace {

// One fused step over every parameter. states: one list per rule state, in the rule's order;
// velocity: None, or a list with None for parameters outside the momentum modifier.
// Returns the total gradient norm when max_norm is given, else None.
py::object step(int rule, bool nesterov, const py::object& params, const py::object& grads,
                const py::list& states, const std::vector<std::string>& state_names,
                const py::object& velocity, const std::vector<double>& hyper,
                const py::object& max_norm, double clip_epsilon) {
  if (rule < 0 || rule >= kNumRules) throw ArgValueError("unknown rule id " + std::to_string(rule));
  if (states.size() != state_names.size())
    throw ArgValueError("states and state_names differ in length");
  const ArrayGroup p = describe_list(params, "params", true);
  const ArrayGroup g = describe_list(grads, "grads", false);
  std::vector<ArrayGroup> s;
  s.reserve(states.size() + 1);
  for (size_t k = 0; k < states.size(); ++k)
    s.push_back(describe_list(states[k], "state '" + state_names[k] + "'", true));
  const bool has_velocity = !velocity.is_none();
  if (has_velocity) s.push_back(describe_list(velocity, "state 'velocity'", true, true));
  std::vector<const ArrayGroup*> sp;
  std::vector<bool> allow_missing;
  for (const ArrayGroup& x : s) {
    sp.push_back(&x);
    allow_missing.push_back(false);
  }
  if (has_velocity) allow_missing.back() = true;
  validate_step(p, g, sp, allow_missing);

  // One plan per storage dtype present (params may mix float16/32/64); all validated above,
  // so either every plan runs or none does.
  std::vector<cpu::StepPlan> plans;
  plans.reserve(3);
  const size_t n = p.arrays.size();
  for (size_t i = 0; i < n; ++i) {
    const DType dtype = p.arrays[i].dtype;
    cpu::StepPlan* plan = nullptr;
    for (cpu::StepPlan& candidate : plans)
      if (candidate.dtype == dtype) plan = &candidate;
    if (!plan)
      plan = &plans.emplace_back(
          cpu::StepPlan{static_cast<RuleId>(rule), dtype, nesterov, hyper_from(hyper), {}});
    cpu::TensorSlot slot{reinterpret_cast<void*>(p.arrays[i].ptr),
                         reinterpret_cast<const void*>(g.arrays[i].ptr),
                         {},
                         p.arrays[i].numel,
                         false};
    for (size_t k = 0; k < states.size(); ++k)
      slot.state[k] = reinterpret_cast<void*>(s[k].arrays[i].ptr);
    if (has_velocity && s.back().arrays[i].present) {
      slot.with_momentum = true;
      slot.state[states.size()] = reinterpret_cast<void*>(s.back().arrays[i].ptr);
    }
    plan->tensors.push_back(slot);
  }
  const bool clip = !max_norm.is_none();
  const double max_norm_value = clip ? max_norm.cast<double>() : 0.0;
  double norm = std::numeric_limits<double>::quiet_NaN();
  {
    py::gil_scoped_release release;
    const cpu::KernelTable& k = cpu::kernels();
    const int threads = cpu::num_threads();
    if (clip) {
      double sum = 0.0;
      for (const cpu::StepPlan& plan : plans) sum += k.plan_sum_squares(plan, threads);
      norm = std::sqrt(sum);
      for (cpu::StepPlan& plan : plans)
        plan.hyper.grad_scale = norm_multiplier(norm, max_norm_value, clip_epsilon);
    }
    for (const cpu::StepPlan& plan : plans) k.apply_step(plan, threads);
  }
  if (!clip) return py::none();
  return py::float_(norm);
}

cpu::ArrayList array_list(const ArrayGroup& in, const ArrayGroup* out) {
  cpu::ArrayList list{in.arrays.empty() ? DType::kFloat32 : in.arrays[0].dtype, {}, {}, {}};
  for (size_t i = 0; i < in.arrays.size(); ++i) {
    if (in.arrays[i].dtype != list.dtype)
      throw ArgTypeError(in.name + "[" + std::to_string(i) + "]: dtype " +
                         dtype_name(in.arrays[i].dtype) + " differs from " + in.name +
                         "[0] dtype " + dtype_name(list.dtype));
    list.inputs.push_back(reinterpret_cast<const void*>(in.arrays[i].ptr));
    list.outputs.push_back(out ? reinterpret_cast<void*>(out->arrays[i].ptr) : nullptr);
    list.numel.push_back(in.arrays[i].numel);
  }
  return list;
}

// Lasagne's total_norm_constraint: one deterministic norm over every array, then every
// array scaled by norm_multiplier into out (which may be the inputs themselves).
double total_norm_constraint(const py::list& xs, const py::list& outs, double max_norm,
                             double epsilon) {
  const ArrayGroup in = describe_list(xs, "xs", false);
  const ArrayGroup out = describe_list(outs, "out", true);
  validate_inputs_outputs(in, &out);
  const cpu::ArrayList list = array_list(in, &out);
  py::gil_scoped_release release;
  const cpu::KernelTable& k = cpu::kernels();
  const double norm = std::sqrt(k.list_sum_squares(list, cpu::num_threads()));
  k.list_scale(list, norm_multiplier(norm, max_norm, epsilon), cpu::num_threads());
  return norm;
}

void norm_constraint(const py::object& x, const py::object& out, int64_t outer, int64_t reduce,
                     int64_t inner, double max_norm, double epsilon) {
  ArrayGroup in{"x", {describe_numpy(x, "x", 0, false)}, false};
  ArrayGroup o{"out", {describe_numpy(out, "out", 0, false)}, true};
  validate_inputs_outputs(in, &o);
  if (outer * reduce * inner != in.arrays[0].numel)
    throw ArgValueError("norm_constraint: [outer, reduce, inner] does not cover the array");
  const DType dtype = in.arrays[0].dtype;
  const void* src = reinterpret_cast<const void*>(in.arrays[0].ptr);
  void* dst = reinterpret_cast<void*>(o.arrays[0].ptr);
  py::gil_scoped_release release;
  cpu::kernels().norm_constraint(dtype, src, dst, outer, reduce, inner, max_norm, epsilon,
                                 cpu::num_threads());
}

void check_params(const py::list& params) {
  validate_params(describe_list(params, "params", true));
}

void stream(const py::list& rw, const py::list& ro) {
  const ArrayGroup w = describe_list(rw, "rw", true);
  const ArrayGroup r = describe_list(ro, "ro", false);
  if (w.arrays.empty() || w.arrays.size() > 4 || r.arrays.size() > 2)
    throw ArgValueError("stream: needs 1..4 written and 0..2 read-only arrays");
  std::vector<void*> wp;
  std::vector<const void*> rp;
  const ArrayDesc& first = w.arrays[0];
  for (const ArrayGroup* g : {&w, &r})
    for (size_t i = 0; i < g->arrays.size(); ++i) {
      const ArrayDesc& a = g->arrays[i];
      if (a.dtype != first.dtype || a.numel != first.numel || !a.contiguous ||
          (g == &w && !a.writeable))
        throw ArgValueError("stream: every array must be contiguous with the same dtype and size");
      if (g == &w)
        wp.push_back(reinterpret_cast<void*>(a.ptr));
      else
        rp.push_back(reinterpret_cast<const void*>(a.ptr));
    }
  if (first.dtype == DType::kUnsupported) throw ArgTypeError("stream: unsupported dtype");
  py::gil_scoped_release release;
  cpu::kernels().stream(first.dtype, wp.data(), static_cast<int>(wp.size()), rp.data(),
                        static_cast<int>(rp.size()), first.numel, cpu::num_threads());
}

}  // namespace

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "fusedupdates OpenMP backend (internal: use the fusedupdates package)";
  bindings::register_error_translator();
  m.def("step", &step, py::arg("rule"), py::arg("nesterov"), py::arg("params"), py::arg("grads"),
        py::arg("states"), py::arg("state_names"), py::arg("velocity"), py::arg("hyper"),
        py::arg("max_norm"), py::arg("clip_epsilon"));
  m.def("check_params", &check_params, py::arg("params"));
  m.def("total_norm_constraint", &total_norm_constraint, py::arg("xs"), py::arg("out"),
        py::arg("max_norm"), py::arg("epsilon"));
  m.def("norm_constraint", &norm_constraint, py::arg("x"), py::arg("out"), py::arg("outer"),
        py::arg("reduce"), py::arg("inner"), py::arg("max_norm"), py::arg("epsilon"));
  m.def("stream", &stream, py::arg("rw"), py::arg("ro"),
        "Bandwidth probe for benchmarks: rw[k] += 1e-7 * sum(ro), same streams as a rule.");
  m.def("simd", []() { return std::string(cpu::kernels().isa); });
  m.def("openmp", &cpu::openmp_enabled);
  m.def("num_threads", &cpu::num_threads);
  m.def("set_num_threads", [](int n) {
    if (n < 0) throw ArgValueError("set_num_threads: n must be >= 1, or 0 for the default");
    cpu::set_num_threads(n);
  });
}
