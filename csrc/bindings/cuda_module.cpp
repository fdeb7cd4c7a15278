// fusedupdates._cuda: the CUDA backend. Like the CPU module, each function describes its
// arguments, validates all of them with the shared validator (nothing is launched on error),
// then launches asynchronously on the caller's stream (CuPy's current stream): no function
// here waits for the GPU. Device memory (tables, control blocks, norm buffers) is allocated by
// the Python side with CuPy; see python/fusedupdates/_cuda_backend.py.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "../cuda/cuda_desc.h"
#include "../cuda/launch.h"
#include "../cuda/tables.h"
#include "module_common.h"

namespace py = pybind11;
using namespace fusedupdates;
using fusedupdates::bindings::hyper_from;
using namespace fusedupdates::cuda;

namespace {

Stream as_stream(std::uintptr_t ptr) { return reinterpret_cast<Stream>(ptr); }

// Every array of a list on the device of its first one (validate_step does this for steps).
int common_device(const ArrayGroup& g, int fallback) {
  if (g.arrays.empty()) return fallback;
  const int device = g.arrays[0].device;
  for (size_t i = 1; i < g.arrays.size(); ++i)
    if (g.arrays[i].present && g.arrays[i].device != device)
      throw ArgValueError(g.name + "[" + std::to_string(i) + "]: is on device " +
                          std::to_string(g.arrays[i].device) + " but " + g.name +
                          "[0] is on device " + std::to_string(device));
  return device;
}

void check_table_device(const TableCache& tables, int device) {
  if (tables.device() != device)
    throw ArgValueError("arrays are on device " + std::to_string(device) +
                        " but the table cache is for device " + std::to_string(tables.device()));
}

// The float64 norm buffer the Python side allocates: [result, multiplier, partials...].
double* norm_buffer_ptr(const py::object& buffer, int device) {
  ShapeStore shapes;
  const ArrayDesc d = describe_cuda(buffer, "norm buffer", false, shapes);
  if (d.dtype != DType::kFloat64 || !d.contiguous || d.numel < kNormBufferDoubles ||
      d.device != device)
    throw ArgValueError("norm buffer must be a contiguous float64 array of " +
                        std::to_string(kNormBufferDoubles) + " elements on device " +
                        std::to_string(device));
  return reinterpret_cast<double*>(d.ptr);
}

// One fused step over every parameter: the arguments of _cpu.step, plus the device table
// cache, the updater's control block (None: functional API, t and hyperparameters as given),
// the stream, and the norm buffer when max_norm is given (the norm lands in its element 0).
void step(TableCache& tables, const py::object& control, std::uintptr_t stream_ptr, int rule,
          bool nesterov, const py::list& params, const py::list& grads, const py::list& states,
          const std::vector<std::string>& state_names, const py::object& velocity,
          const std::vector<double>& hyper, const py::object& max_norm, double clip_epsilon,
          const py::object& norm_buffer) {
  if (rule < 0 || rule >= kNumRules) throw ArgValueError("unknown rule id " + std::to_string(rule));
  if (states.size() != state_names.size())
    throw ArgValueError("states and state_names differ in length");
  ShapeStore shapes;
  const ArrayGroup p = describe_cuda_list(params, "params", true, shapes);
  const ArrayGroup g = describe_cuda_list(grads, "grads", false, shapes);
  std::vector<ArrayGroup> s;
  s.reserve(states.size() + 1);
  for (size_t k = 0; k < states.size(); ++k)
    s.push_back(describe_cuda_list(states[k], "state '" + state_names[k] + "'", true, shapes));
  const bool has_velocity = !velocity.is_none();
  if (has_velocity)
    s.push_back(describe_cuda_list(velocity, "state 'velocity'", true, shapes, true));
  std::vector<const ArrayGroup*> sp;
  std::vector<bool> allow_missing;
  for (const ArrayGroup& x : s) {
    sp.push_back(&x);
    allow_missing.push_back(false);
  }
  if (has_velocity) allow_missing.back() = true;
  validate_step(p, g, sp, allow_missing);

  const HyperParams h = hyper_from(hyper);
  const int device = p.arrays.empty() ? tables.device() : p.arrays[0].device;
  check_table_device(tables, device);
  ControlBlock* ctl = control.is_none() ? nullptr : &control.cast<ControlBlock&>();
  if (ctl != nullptr && ctl->device() != device)
    throw ArgValueError("params[0]: is on device " + std::to_string(device) +
                        " but the updater's state is on device " + std::to_string(ctl->device()));
  const bool clip = !max_norm.is_none();
  double* norm_out = clip ? norm_buffer_ptr(norm_buffer, device) : nullptr;

  set_device(device);
  const Stream stream = as_stream(stream_ptr);
  const bool capturing = stream_is_capturing(stream);
  const StepTables t = build_step_tables(p, g, sp, has_velocity);
  const std::uintptr_t fixed = tables.get(t.fixed, stream, capturing);
  const std::uintptr_t grad_table = tables.get(t.grads, stream, capturing);
  if (ctl != nullptr) ctl->prepare_step(h, stream, capturing);

  UpdateArgs args{};
  args.meta = reinterpret_cast<const TensorMeta*>(fixed);
  args.ptrs = reinterpret_cast<const TensorPtrs*>(fixed + t.ptrs_offset);
  args.chunks = reinterpret_cast<const ChunkRef*>(fixed + t.chunks_offset);
  args.grads = reinterpret_cast<const void* const*>(grad_table);
  args.control = ctl != nullptr ? reinterpret_cast<Control*>(ctl->ptr()) : nullptr;
  args.hyper = h;
  if (clip) {
    // Launch 1 of 2: the fixed-block partial sums of squares of every grad.
    launch_sum_squares(
        ReduceArgs{args.meta, args.grads, args.chunks, t.num_chunks, norm_out + kPartialsOffset},
        stream);
    args.partials = norm_out + kPartialsOffset;
    args.norm_out = norm_out;
    args.max_norm = max_norm.cast<double>();
    args.clip_epsilon = clip_epsilon;
  }
  // One update launch per storage dtype present (one for a single-dtype model); with no
  // chunks at all, one empty launch still advances t and writes the norm.
  std::vector<StepTables::Range> ranges = t.ranges;
  if (ranges.empty()) ranges.push_back(StepTables::Range{DType::kFloat32, 0, 0});
  for (size_t r = 0; r < ranges.size(); ++r) {
    args.chunk_begin = ranges[r].begin;
    args.chunk_end = ranges[r].end;
    args.advance = ctl != nullptr && r + 1 == ranges.size() ? 1 : 0;
    args.write_norm = r == 0 ? 1 : 0;
    launch_update(static_cast<RuleId>(rule), ranges[r].dtype, nesterov, args, device, stream);
  }
}

void hyper_changed(ControlBlock& control, std::uintptr_t stream_ptr,
                   const std::vector<double>& hyper, std::optional<bool> reset_step) {
  set_device(control.device());
  const Stream stream = as_stream(stream_ptr);
  control.hyper_changed(hyper_from(hyper), reset_step, stream, stream_is_capturing(stream));
}

void check_params(const py::list& params) {
  ShapeStore shapes;
  const ArrayGroup p = describe_cuda_list(params, "params", true, shapes);
  validate_params(p);
  common_device(p, -1);
}

// A validated list of one dtype on one device, and its device table.
struct DeviceList {
  ArrayGroup in, out;
  DType dtype = DType::kFloat32;
  int device = -1;
};

DeviceList describe_lists(const TableCache& tables, const py::list& xs, const py::list* outs,
                          ShapeStore& shapes) {
  DeviceList l;
  l.in = describe_cuda_list(xs, "xs", false, shapes);
  if (outs != nullptr) l.out = describe_cuda_list(*outs, "out", true, shapes);
  validate_inputs_outputs(l.in, outs != nullptr ? &l.out : nullptr);
  if (!l.in.arrays.empty()) l.dtype = l.in.arrays[0].dtype;
  for (size_t i = 0; i < l.in.arrays.size(); ++i)
    if (l.in.arrays[i].dtype != l.dtype)
      throw ArgTypeError("xs[" + std::to_string(i) + "]: dtype " +
                         dtype_name(l.in.arrays[i].dtype) + " differs from xs[0] dtype " +
                         dtype_name(l.dtype));
  l.device = common_device(l.in, tables.device());
  check_table_device(tables, l.device);
  return l;
}

ScaleArgs scale_args(std::uintptr_t table, const ListTables& t) {
  ScaleArgs a{};
  a.meta = reinterpret_cast<const TensorMeta*>(table);
  a.inputs = reinterpret_cast<const void* const*>(table + t.inputs_offset);
  a.outputs = reinterpret_cast<void* const*>(table + t.outputs_offset);
  a.chunks = reinterpret_cast<const ChunkRef*>(table + t.chunks_offset);
  a.num_chunks = t.num_chunks;
  return a;
}

// out[0] = sum of squares of every element of xs (deterministic); out is a norm buffer.
void sum_squares(TableCache& tables, std::uintptr_t stream_ptr, const py::list& xs,
                 const py::object& out) {
  ShapeStore shapes;
  const DeviceList l = describe_lists(tables, xs, nullptr, shapes);
  double* result = norm_buffer_ptr(out, l.device);
  set_device(l.device);
  const Stream stream = as_stream(stream_ptr);
  const ListTables t = build_list_tables(l.in, nullptr);
  const ScaleArgs a = scale_args(tables.get(t.bytes, stream, stream_is_capturing(stream)), t);
  launch_sum_squares(ReduceArgs{a.meta, a.inputs, a.chunks, a.num_chunks, result + kPartialsOffset},
                     stream);
  launch_sum_partials(result + kPartialsOffset, result, stream);
}

void scale(TableCache& tables, std::uintptr_t stream_ptr, const py::list& xs, const py::list& outs,
           double factor) {
  ShapeStore shapes;
  const DeviceList l = describe_lists(tables, xs, &outs, shapes);
  set_device(l.device);
  const Stream stream = as_stream(stream_ptr);
  const ListTables t = build_list_tables(l.in, &l.out);
  ScaleArgs a = scale_args(tables.get(t.bytes, stream, stream_is_capturing(stream)), t);
  a.factor = factor;
  launch_scale(l.dtype, a, l.device, stream);
}

// outs = xs * norm_multiplier(total norm); norm buffer element 0 = the total norm.
void total_norm_constraint(TableCache& tables, std::uintptr_t stream_ptr, const py::list& xs,
                           const py::list& outs, double max_norm, double epsilon,
                           const py::object& norm_buffer) {
  ShapeStore shapes;
  const DeviceList l = describe_lists(tables, xs, &outs, shapes);
  double* norm = norm_buffer_ptr(norm_buffer, l.device);
  set_device(l.device);
  const Stream stream = as_stream(stream_ptr);
  const ListTables t = build_list_tables(l.in, &l.out);
  ScaleArgs a = scale_args(tables.get(t.bytes, stream, stream_is_capturing(stream)), t);
  launch_sum_squares(ReduceArgs{a.meta, a.inputs, a.chunks, a.num_chunks, norm + kPartialsOffset},
                     stream);
  a.partials = norm + kPartialsOffset;
  a.norm_out = norm;
  a.max_norm = max_norm;
  a.epsilon = epsilon;
  launch_scale(l.dtype, a, l.device, stream);
}

void norm_constraint(std::uintptr_t stream_ptr, const py::object& x, const py::object& out,
                     int64_t outer, int64_t reduce, int64_t inner, double max_norm,
                     double epsilon) {
  ShapeStore shapes;
  ArrayGroup in{"x", {describe_cuda(x, "x", false, shapes)}, false};
  ArrayGroup o{"out", {describe_cuda(out, "out", false, shapes)}, true};
  validate_inputs_outputs(in, &o);
  if (outer * reduce * inner != in.arrays[0].numel)
    throw ArgValueError("norm_constraint: [outer, reduce, inner] does not cover the array");
  set_device(in.arrays[0].device);
  launch_norm_constraint(in.arrays[0].dtype, reinterpret_cast<const void*>(in.arrays[0].ptr),
                         reinterpret_cast<void*>(o.arrays[0].ptr), outer, reduce, inner, max_norm,
                         epsilon, as_stream(stream_ptr));
}

void stream_probe(std::uintptr_t stream_ptr, const py::list& rw, const py::list& ro) {
  ShapeStore shapes;
  const ArrayGroup w = describe_cuda_list(rw, "rw", true, shapes);
  const ArrayGroup r = describe_cuda_list(ro, "ro", false, shapes);
  if (w.arrays.empty() || w.arrays.size() > 4 || r.arrays.size() > 2)
    throw ArgValueError("stream: needs 1..4 written and 0..2 read-only arrays");
  StreamArgs args{};
  const ArrayDesc& first = w.arrays[0];
  for (const ArrayGroup* grp : {&w, &r})
    for (size_t i = 0; i < grp->arrays.size(); ++i) {
      const ArrayDesc& a = grp->arrays[i];
      if (a.dtype != first.dtype || a.numel != first.numel || !a.contiguous ||
          a.device != first.device || (grp == &w && !a.writeable))
        throw ArgValueError(
            "stream: every array must be contiguous with the same dtype, size and device");
      if (grp == &w)
        args.rw[i] = reinterpret_cast<void*>(a.ptr);
      else
        args.ro[i] = reinterpret_cast<const void*>(a.ptr);
    }
  if (first.dtype == DType::kUnsupported) throw ArgTypeError("stream: unsupported dtype");
  args.numel = first.numel;
  set_device(first.device);
  launch_stream(first.dtype, args, static_cast<int>(w.arrays.size()),
                static_cast<int>(r.arrays.size()), first.device, as_stream(stream_ptr));
}

void copy_probe(std::uintptr_t stream_ptr, const py::object& dst, const py::object& src) {
  ShapeStore shapes;
  const ArrayDesc d = describe_cuda(dst, "dst", false, shapes);
  const ArrayDesc s = describe_cuda(src, "src", false, shapes);
  if (!d.contiguous || !s.contiguous || !d.writeable || d.nbytes() != s.nbytes() ||
      d.device != s.device || d.dtype == DType::kUnsupported)
    throw ArgValueError("copy: dst and src must be contiguous arrays of the same size and device");
  set_device(d.device);
  launch_copy(reinterpret_cast<void*>(d.ptr), reinterpret_cast<const void*>(s.ptr),
              static_cast<size_t>(d.nbytes()), as_stream(stream_ptr));
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fusedupdates CUDA backend (internal: use the fusedupdates package with CuPy arrays)";
  bindings::register_error_translator();
  m.attr("NORM_BUFFER_DOUBLES") = kNormBufferDoubles;
  m.attr("CONTROL_BYTES") = static_cast<int>(sizeof(Control));
  m.attr("CONTROL_STEP_INDEX") = static_cast<int>(offsetof(HyperParams, step) / sizeof(double));
  m.attr("CHUNK_ELEMENTS") = kChunkElements;
  m.attr("NORM_PARTIALS") = kNormPartials;

  m.def("set_array_type", [](const py::object& type) {
    if (cupy_ndarray_type() == nullptr) cupy_ndarray_type() = type.inc_ref().ptr();
  });
  py::class_<TableCache>(m, "TableCache")
      .def(py::init<py::function, int, size_t>(), py::arg("alloc"), py::arg("device"),
           py::arg("capacity") = 64)
      .def_property_readonly("device", &TableCache::device)
      .def("__len__", &TableCache::size);
  py::class_<ControlBlock>(m, "ControlBlock")
      .def(py::init<py::object, int>(), py::arg("buffer"), py::arg("device"))
      .def_property_readonly("device", &ControlBlock::device);

  m.def("step", &step, py::arg("tables"), py::arg("control"), py::arg("stream"), py::arg("rule"),
        py::arg("nesterov"), py::arg("params"), py::arg("grads"), py::arg("states"),
        py::arg("state_names"), py::arg("velocity"), py::arg("hyper"), py::arg("max_norm"),
        py::arg("clip_epsilon"), py::arg("norm_buffer"));
  m.def("hyper_changed", &hyper_changed, py::arg("control"), py::arg("stream"), py::arg("hyper"),
        py::arg("reset_step") = py::none());
  m.def("check_params", &check_params, py::arg("params"));
  m.def("sum_squares", &sum_squares, py::arg("tables"), py::arg("stream"), py::arg("xs"),
        py::arg("out"));
  m.def("scale", &scale, py::arg("tables"), py::arg("stream"), py::arg("xs"), py::arg("out"),
        py::arg("factor"));
  m.def("total_norm_constraint", &total_norm_constraint, py::arg("tables"), py::arg("stream"),
        py::arg("xs"), py::arg("out"), py::arg("max_norm"), py::arg("epsilon"),
        py::arg("norm_buffer"));
  m.def("norm_constraint", &norm_constraint, py::arg("stream"), py::arg("x"), py::arg("out"),
        py::arg("outer"), py::arg("reduce"), py::arg("inner"), py::arg("max_norm"),
        py::arg("epsilon"));
  m.def("stream", &stream_probe, py::arg("stream"), py::arg("rw"), py::arg("ro"),
        "Bandwidth probe for benchmarks: rw[k] += 1e-7 * sum(ro), same streams as a rule.");
  m.def("copy", &copy_probe, py::arg("stream"), py::arg("dst"), py::arg("src"),
        "Bandwidth probe for benchmarks: a device-to-device memcpy of src into dst.");
}
