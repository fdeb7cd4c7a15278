// fusedupdates._cuda: the CUDA backend. The Stepper (cuda_stepper.h) is what updaters and the
// functional API step with; the functions here are the norm constraints, the sum of squares
// and the benchmark probes. Each describes its arguments, validates all of them with the
// shared validator (nothing is launched on error), then launches asynchronously on CuPy's
// current stream of the arrays' device: no function here waits for the GPU.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <string>
#include <vector>

#include "../cuda/launch.h"
#include "../cuda/tables.h"
#include "../rules/norm.h"
#include "cuda_desc.h"
#include "cuda_hooks.h"
#include "cuda_stepper.h"
#include "hyper_binding.h"
#include "module_common.h"

namespace py = pybind11;
using namespace fusedupdates;
using namespace fusedupdates::bindings;

namespace {

// Every array of a list on the device of its first one; an empty list: the current device.
int common_device(const ArrayGroup& g) {
  if (g.arrays.empty()) return cuda::current_device();
  const int device = g.arrays[0].device;
  for (size_t i = 1; i < g.arrays.size(); ++i)
    if (g.arrays[i].present && g.arrays[i].device != device)
      throw ArgValueError(g.name + "[" + std::to_string(i) + "]: is on device " +
                          std::to_string(g.arrays[i].device) + " but " + g.name +
                          "[0] is on device " + std::to_string(device));
  return device;
}

// A validated list of one dtype (and its outputs), with its device.
struct DeviceList {
  ArrayGroup in, out;
  bool has_out = false;
  DType dtype = DType::kFloat32;
  int device = -1;
};

DeviceList describe_lists(const py::handle& xs, const py::handle* outs, ShapeStore& shapes) {
  DeviceList l;
  l.in = describe_cuda_list(xs, "xs", false, shapes);
  l.has_out = outs != nullptr;
  if (l.has_out) l.out = describe_cuda_list(*outs, "out", true, shapes);
  validate_inputs_outputs(l.in, outs != nullptr ? &l.out : nullptr);
  if (!l.in.arrays.empty()) l.dtype = l.in.arrays[0].dtype;
  for (size_t i = 0; i < l.in.arrays.size(); ++i)
    if (l.in.arrays[i].dtype != l.dtype)
      throw ArgTypeError("xs[" + std::to_string(i) + "]: dtype " +
                         dtype_name(l.in.arrays[i].dtype) + " differs from xs[0] dtype " +
                         dtype_name(l.dtype));
  cuda::ensure_runtime();  // validated: the first CUDA call follows
  l.device = common_device(l.in);
  return l;
}

// The list's table and its scale/reduce arguments; `table` keeps it alive until marked used.
cuda::ScaleArgs list_args(const DeviceList& l, cuda::Stream stream, bool capturing,
                          cuda::TablePtr& table, int64_t& num_chunks) {
  cuda::ScaleArgs a{};
  const cuda::ListTables t = cuda::build_list_tables(l.in, l.has_out ? &l.out : nullptr);
  num_chunks = t.num_chunks;
  if (t.bytes.empty()) return a;
  table = cuda::TableCache::for_device(l.device).get(t.bytes, stream, capturing);
  const std::uintptr_t base = table->ptr();
  a.meta = reinterpret_cast<const cuda::TensorMeta*>(base);
  a.inputs = reinterpret_cast<const void* const*>(base + t.inputs_offset);
  a.outputs = reinterpret_cast<void* const*>(base + t.outputs_offset);
  a.chunks = reinterpret_cast<const cuda::ChunkRef*>(base + t.chunks_offset);
  a.num_chunks = t.num_chunks;
  return a;
}

// Sum of squares of the list into the norm buffer's partials; returns the 0-d result array.
py::object reduce_list(const DeviceList& l, bool scale, double max_norm, double epsilon) {
  const cuda::StreamRef stream = current_stream(l.device);
  const NormBuffer buffer = new_norm_buffer(l.device);
  double* const norm = buffer.ptr;
  const py::object& result = buffer.norm;
  const cuda::DeviceGuard guard(l.device);
  const bool capturing = cuda::stream_is_capturing(stream.stream);
  cuda::TablePtr table;
  int64_t num_chunks = 0;
  cuda::ScaleArgs a = list_args(l, stream.stream, capturing, table, num_chunks);
  double* partials = norm + cuda::kPartialsOffset;
  cuda::launch_sum_squares(l.dtype,
                           cuda::ReduceArgs{a.meta, a.inputs, a.chunks, 0, num_chunks, partials, 0},
                           stream.stream);
  if (scale) {
    a.partials = partials;
    a.norm_out = norm;
    a.max_norm = max_norm;
    a.epsilon = epsilon;
    cuda::launch_scale(l.dtype, a, l.device, stream.stream);
  } else {
    cuda::launch_sum_partials(partials, norm, stream.stream);
  }
  if (capturing) {
    keep_forever(result);  // the graph writes the buffer at every replay
  } else if (table) {
    cuda::TableCache::for_device(l.device).mark_used({table.get()}, stream.stream);
  }
  return result;
}

// 0-d float64 array: the sum of squares of every element of xs (deterministic).
py::object sum_squares(const py::list& xs) {
  ShapeStore shapes;
  const DeviceList l = describe_lists(xs, nullptr, shapes);
  return reduce_list(l, false, 0.0, 0.0);
}

// outs = xs * norm_multiplier(total norm); returns the total norm as a 0-d float64 array.
py::object total_norm_constraint(const py::list& xs, const py::list& outs, double max_norm,
                                 double epsilon) {
  ShapeStore shapes;
  const py::handle out_handle = outs;
  const DeviceList l = describe_lists(xs, &out_handle, shapes);
  return reduce_list(l, true, max_norm, epsilon);
}

void norm_constraint(const py::object& x, const py::object& out, int64_t outer, int64_t reduce,
                     int64_t inner, double max_norm, double epsilon) {
  ShapeStore shapes(2);
  ArrayGroup in{"x", {describe_cuda(x.ptr(), "x", 0, false, shapes[0])}, false};
  ArrayGroup o{"out", {describe_cuda(out.ptr(), "out", 0, false, shapes[1])}, true};
  validate_inputs_outputs(in, &o);
  int64_t covered = 0;
  if (outer < 0 || reduce < 0 || inner < 0 || __builtin_mul_overflow(outer, reduce, &covered) ||
      __builtin_mul_overflow(covered, inner, &covered) || covered != in.arrays[0].numel)
    throw ArgValueError("norm_constraint: [outer, reduce, inner] does not cover the array");
  cuda::ensure_runtime();
  const int device = in.arrays[0].device;
  const cuda::StreamRef stream = current_stream(device);
  const cuda::DeviceGuard guard(device);
  cuda::launch_norm_constraint(in.arrays[0].dtype, reinterpret_cast<const void*>(in.arrays[0].ptr),
                               reinterpret_cast<void*>(o.arrays[0].ptr), outer, reduce, inner,
                               max_norm, epsilon, stream.stream);
}

void bandwidth_probe(const py::list& rw, const py::list& ro) {
  ShapeStore shapes;
  const ArrayGroup w = describe_cuda_list(rw, "rw", true, shapes);
  const ArrayGroup r = describe_cuda_list(ro, "ro", false, shapes);
  if (w.arrays.empty() || w.arrays.size() > 4 || r.arrays.size() > 2)
    throw ArgValueError("bandwidth_probe: needs 1..4 written and 0..2 read-only arrays");
  cuda::BandwidthProbeArgs args{};
  const ArrayDesc& first = w.arrays[0];
  for (const ArrayGroup* grp : {&w, &r})
    for (size_t i = 0; i < grp->arrays.size(); ++i) {
      const ArrayDesc& a = grp->arrays[i];
      if (a.dtype != first.dtype || a.numel != first.numel || !a.contiguous ||
          a.device != first.device || (grp == &w && !a.writeable))
        throw ArgValueError(
            "bandwidth_probe: every array must be contiguous with the same dtype, size and "
            "device");
      if (grp == &w)
        args.rw[i] = reinterpret_cast<void*>(a.ptr);
      else
        args.ro[i] = reinterpret_cast<const void*>(a.ptr);
    }
  if (first.dtype == DType::kUnsupported) throw ArgTypeError("bandwidth_probe: unsupported dtype");
  args.numel = first.numel;
  cuda::ensure_runtime();
  const cuda::StreamRef stream = current_stream(first.device);
  const cuda::DeviceGuard guard(first.device);
  cuda::launch_bandwidth_probe(first.dtype, args, static_cast<int>(w.arrays.size()),
                               static_cast<int>(r.arrays.size()), first.device, stream.stream);
}

void copy_probe(const py::object& dst, const py::object& src) {
  ShapeStore shapes(2);
  const ArrayDesc d = describe_cuda(dst.ptr(), "dst", 0, false, shapes[0]);
  const ArrayDesc s = describe_cuda(src.ptr(), "src", 0, false, shapes[1]);
  if (!d.contiguous || !s.contiguous || !d.writeable || d.nbytes() != s.nbytes() ||
      d.device != s.device || d.dtype == DType::kUnsupported)
    throw ArgValueError(
        "copy_probe: dst and src must be contiguous arrays of the same size and device");
  cuda::ensure_runtime();
  const cuda::StreamRef stream = current_stream(d.device);
  const cuda::DeviceGuard guard(d.device);
  cuda::launch_copy_probe(reinterpret_cast<void*>(d.ptr), reinterpret_cast<const void*>(s.ptr),
                          static_cast<size_t>(d.nbytes()), stream.stream);
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fusedupdates CUDA backend (internal: use the fusedupdates package with CuPy arrays)";
  register_error_translator();
  py::class_<CudaStepper, std::shared_ptr<CudaStepper>>(m, "Stepper", R"doc(
The native object behind one updater on CUDA arrays: validated params and states, t, the
hyperparameters and every device resource (tables, control block). Built once; step(grads)
checks only the grads and launches on CuPy's current stream. t counts the updates applied,
CUDA graph replays included. Internal: use the fusedupdates factories.)doc")
      .def(py::init<int, const py::sequence&, const py::sequence&, const std::vector<std::string>&,
                    const py::object&, bool, const py::object&>(),
           py::arg("rule"), py::arg("params"), py::arg("states"), py::arg("state_names"),
           py::arg("groups") = py::none(), py::kw_only(), py::arg("functional") = false,
           py::arg("scales") = py::none())
      .def("with_momentum", &CudaStepper::with_momentum, py::arg("velocity"), py::arg("nesterov"),
           py::kw_only(), py::arg("velocity_scales") = py::none())
      .def("step", &CudaStepper::step, py::arg("grads"), py::arg("max_norm") = py::none(),
           py::arg("grad_scale") = py::none(), py::arg("skip_nonfinite") = false)
      .def("prepare_step", &CudaStepper::prepare_step, py::arg("grads"))
      .def("set_hyperparameters", [](CudaStepper& s, py::kwargs kw) { s.set_hyperparameters(kw); })
      .def("hyperparameters", &CudaStepper::hyperparameters, py::arg("group") = 0)
      .def_property("t", &CudaStepper::t, &CudaStepper::set_t)
      .def_property_readonly("has_momentum", &CudaStepper::has_momentum)
      .def_property_readonly("num_groups", &CudaStepper::num_groups)
      .def_property_readonly("last_step_applied", &CudaStepper::last_step_applied,
                             "True, or after a step with skip_nonfinite (or grad_scale) a 0-d "
                             "bool CuPy array written by that step: reading it does not "
                             "synchronise.")
      .def("__len__", &CudaStepper::size);
  m.attr("HYPER_FIELDS") = py::str(hyper_field_names());
  m.attr("CLIP_EPSILON") = kClipEpsilon;
  m.attr("NORM_BUFFER_DOUBLES") = cuda::kNormBufferDoubles;
  m.attr("NORM_PARTIALS") = cuda::kNormPartials;
  m.attr("RUNTIME_VERSION") = cuda::runtime_version();
  m.def("driver_version", &cuda::driver_version,
        "cudaDriverGetVersion: the CUDA version the installed driver supports (0: no driver).");
  m.def("set_cupy_hooks", &set_cupy_hooks, py::arg("ndarray_type"), py::arg("alloc"),
        py::arg("current_stream"), py::arg("norm_buffer"));
  m.def("sum_squares", &sum_squares, py::arg("xs"));
  m.def("total_norm_constraint", &total_norm_constraint, py::arg("xs"), py::arg("out"),
        py::arg("max_norm"), py::arg("epsilon"));
  m.def("norm_constraint", &norm_constraint, py::arg("x"), py::arg("out"), py::arg("outer"),
        py::arg("reduce"), py::arg("inner"), py::arg("max_norm"), py::arg("epsilon"));
  m.def("bandwidth_probe", &bandwidth_probe, py::arg("rw"), py::arg("ro"),
        "Bandwidth probe for benchmarks: rw[k] += 1e-7 * sum(ro), the streams of a rule.");
  m.def("copy_probe", &copy_probe, py::arg("dst"), py::arg("src"),
        "Bandwidth probe for benchmarks: a device-to-device memcpy of src into dst.");
}
