// fusedupdates._cpu: the OpenMP backend. The Stepper (cpu_stepper.h) is what updaters and the
// functional API step with; the functions here are the norm constraints and the probes. Each
// describes its arguments, validates all of them (nothing is written on error), then releases
// the GIL and runs one kernel call while holding references to every array it touches.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "../cpu/dispatch.h"
#include "../rules/norm.h"
#include "../rules/quantize.h"
#include "cpu_stepper.h"
#include "module_common.h"
#include "numpy_desc.h"

namespace py = pybind11;
using namespace fusedupdates;
using fusedupdates::bindings::CpuStepper;
using fusedupdates::bindings::describe_list;
using fusedupdates::bindings::describe_numpy;
using fusedupdates::bindings::hold_items;

namespace {

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
  const py::tuple xs_held = hold_items(xs, "xs"), outs_held = hold_items(outs, "out");
  const ArrayGroup in = describe_list(xs_held, "xs", false);
  const ArrayGroup out = describe_list(outs_held, "out", true);
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
  int64_t covered = 0;
  if (outer < 0 || reduce < 0 || inner < 0 || __builtin_mul_overflow(outer, reduce, &covered) ||
      __builtin_mul_overflow(covered, inner, &covered) || covered != in.arrays[0].numel)
    throw ArgValueError("norm_constraint: [outer, reduce, inner] does not cover the array");
  const DType dtype = in.arrays[0].dtype;
  const void* src = reinterpret_cast<const void*>(in.arrays[0].ptr);
  void* dst = reinterpret_cast<void*>(o.arrays[0].ptr);
  py::gil_scoped_release release;
  cpu::kernels().norm_constraint(dtype, src, dst, outer, reduce, inner, max_norm, epsilon,
                                 cpu::num_threads());
}

void bandwidth_probe(const py::list& rw, const py::list& ro) {
  const py::tuple rw_held = hold_items(rw, "rw"), ro_held = hold_items(ro, "ro");
  const ArrayGroup w = describe_list(rw_held, "rw", true);
  const ArrayGroup r = describe_list(ro_held, "ro", false);
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

// The one array of `name` (numel elements of `dtype`, contiguous, aligned, writeable if written).
ArrayDesc one_array(const py::handle& obj, const char* name, DType dtype, int64_t numel,
                    bool written) {
  const ArrayDesc a = describe_numpy(obj, name, 0, false, /*allow_codes=*/true);
  if (a.dtype != dtype)
    throw ArgTypeError(std::string(name) + ": dtype " +
                       (a.dtype == DType::kUnsupported ? a.dtype_str : dtype_name(a.dtype)) +
                       ", expected " + dtype_name(dtype));
  if (a.numel != numel)
    throw ArgValueError(std::string(name) + ": " + std::to_string(a.numel) +
                        " elements, expected " + std::to_string(numel));
  if (!a.contiguous || !a.aligned)
    throw ArgValueError(std::string(name) + ": array is not C-contiguous and aligned");
  if (written && !a.writeable) throw ArgValueError(std::string(name) + ": array is read-only");
  return a;
}

// x (float32) <-> 8-bit codes (uint8) and one float32 absmax per kQuantBlock elements, with
// the kernels' own code (checkpoint conversion and tests). The three arrays must be disjoint.
// stochastic: None, or (t, param index, state index), the stream of a state that the step
// rounds stochastically (tests compare the codec with the reference's through it).
cpu::StateRoundingStream rounding_stream(const py::object& stochastic) {
  const auto fail = [] {
    return ArgValueError(
        "stochastic must be None or (t, param index, state index): "
        "ints, 1 <= t < 2**53, 0 <= index < 2**32, 0 <= state index < 4");
  };
  if (!py::isinstance<py::tuple>(stochastic)) throw fail();
  const py::tuple parts = stochastic;
  if (parts.size() != 3) throw fail();
  const int64_t limits[3][2] = {{1, int64_t{1} << 53}, {0, int64_t{1} << 32}, {0, 4}};
  int64_t values[3];
  for (size_t k = 0; k < 3; ++k) {
    const py::object v = parts[k];
    if (!py::isinstance<py::int_>(v) || py::isinstance<py::bool_>(v) ||
        v < py::int_(limits[k][0]) || !(v < py::int_(limits[k][1])))
      throw fail();
    values[k] = v.cast<int64_t>();
  }
  return {static_cast<double>(values[0]), static_cast<uint32_t>(values[1]),
          static_cast<int>(values[2])};
}

void quantize_blockwise(const py::object& x, const py::object& codes, const py::object& absmax,
                        bool is_signed, bool forward, const py::object& stochastic = py::none()) {
  const bool rounded = !stochastic.is_none();
  const cpu::StateRoundingStream stream =
      rounded ? rounding_stream(stochastic) : cpu::StateRoundingStream{0.0, 0u, 0};
  const ArrayDesc xd = describe_numpy(x, "x", 0, false);
  const int64_t n = xd.numel;
  one_array(x, "x", DType::kFloat32, n, !forward);
  const ArrayDesc cd = one_array(codes, "codes", DType::kUInt8, n, forward);
  const ArrayDesc ad = one_array(absmax, "absmax", DType::kFloat32, quant_blocks(n), forward);
  const ArrayGroup all{"arrays", {xd, cd, ad}, true};
  for (size_t i = 0; i < 3; ++i)
    for (size_t j = i + 1; j < 3; ++j) {
      const ArrayDesc &a = all.arrays[i], &b = all.arrays[j];
      if (a.nbytes() && b.nbytes() && a.ptr < b.ptr + b.nbytes() && b.ptr < a.ptr + a.nbytes())
        throw ArgValueError("x, codes and absmax must not overlap");
    }
  auto* xp = reinterpret_cast<float*>(xd.ptr);
  auto* cp = reinterpret_cast<uint8_t*>(cd.ptr);
  auto* ap = reinterpret_cast<float*>(ad.ptr);
  py::gil_scoped_release release;
  if (forward)
    cpu::kernels().quantize(xp, cp, ap, n, is_signed, cpu::num_threads(),
                            rounded ? &stream : nullptr);
  else
    cpu::kernels().dequantize(cp, ap, xp, n, is_signed, cpu::num_threads());
}

}  // namespace

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "fusedupdates OpenMP backend (internal: use the fusedupdates package)";
  bindings::register_error_translator();
  py::class_<CpuStepper, std::shared_ptr<CpuStepper>>(m, "Stepper", R"doc(
The native object behind one updater: validated params and states, t and the hyperparameters.
Built once; step(grads) checks only the grads. Internal: use the fusedupdates factories.)doc")
      .def(py::init<int, const py::sequence&, const py::sequence&, const std::vector<std::string>&,
                    const py::object&, bool, bool, const py::object&>(),
           py::arg("rule"), py::arg("params"), py::arg("states"), py::arg("state_names"),
           py::arg("groups") = py::none(), py::kw_only(), py::arg("stochastic_rounding") = false,
           py::arg("stochastic_state_rounding") = false, py::arg("scales") = py::none())
      .def("with_momentum", &CpuStepper::with_momentum, py::arg("velocity"), py::arg("nesterov"),
           py::kw_only(), py::arg("velocity_scales") = py::none())
      .def("step", &CpuStepper::step, py::arg("grads"), py::arg("max_norm") = py::none(),
           py::arg("grad_scale") = py::none(), py::arg("skip_nonfinite") = false)
      .def_property_readonly("last_step_applied", &CpuStepper::last_step_applied)
      .def("set_hyperparameters", [](CpuStepper& s, py::kwargs kw) { s.set_hyperparameters(kw); })
      .def("hyperparameters", &CpuStepper::hyperparameters, py::arg("group") = 0)
      .def_property_readonly("num_groups", &CpuStepper::num_groups)
      .def_property("t", &CpuStepper::t, &CpuStepper::set_t)
      .def_property_readonly("has_momentum", &CpuStepper::has_momentum)
      .def("__len__", &CpuStepper::size);
  m.attr("HYPER_FIELDS") = py::str(bindings::hyper_field_names());
  m.attr("CLIP_EPSILON") = kClipEpsilon;
  m.attr("QUANT_BLOCK") = kQuantBlock;
  m.def(
      "quantize_blockwise",
      [](const py::object& x, const py::object& codes, const py::object& absmax, bool is_signed,
         const py::object& stochastic) {
        quantize_blockwise(x, codes, absmax, is_signed, true, stochastic);
      },
      py::arg("x"), py::arg("codes"), py::arg("absmax"), py::arg("signed"), py::kw_only(),
      py::arg("stochastic") = py::none(),
      "x (float32) -> codes (uint8) and absmax (float32, one per QUANT_BLOCK), in place; "
      "stochastic=(t, param index, state index): rounded as the step rounds that state.");
  m.def(
      "dequantize_blockwise",
      [](const py::object& codes, const py::object& absmax, const py::object& out, bool is_signed) {
        quantize_blockwise(out, codes, absmax, is_signed, false);
      },
      py::arg("codes"), py::arg("absmax"), py::arg("out"), py::arg("signed"),
      "codes and absmax -> out (float32), in place.");
  m.def("total_norm_constraint", &total_norm_constraint, py::arg("xs"), py::arg("out"),
        py::arg("max_norm"), py::arg("epsilon"));
  m.def("norm_constraint", &norm_constraint, py::arg("x"), py::arg("out"), py::arg("outer"),
        py::arg("reduce"), py::arg("inner"), py::arg("max_norm"), py::arg("epsilon"));
  m.def("bandwidth_probe", &bandwidth_probe, py::arg("rw"), py::arg("ro"),
        "Bandwidth probe for benchmarks: rw[k] += 1e-7 * sum(ro), same streams as a rule.");
  m.def("simd", []() { return std::string(cpu::kernels().isa); });
  m.def("openmp", &cpu::openmp_enabled);
  m.def("num_threads", &cpu::num_threads);
  m.def("max_threads", &cpu::max_threads);
  m.def("set_num_threads", [](int n) {
    if (n < 0 || n > cpu::max_threads())
      throw ArgValueError("set_num_threads: n must be in [1, " +
                          std::to_string(cpu::max_threads()) + "], or 0 for the default; got " +
                          std::to_string(n));
    cpu::set_num_threads(n);
  });
}
