#include "validate.h"

#include <algorithm>
#include <sstream>

#include "../rules/quantize.h"
#include "errors.h"

namespace fusedupdates {
namespace {

std::string at(const ArrayGroup& g, size_t i) { return g.name + "[" + std::to_string(i) + "]"; }

void check_one(const ArrayGroup& g, size_t i, bool must_write) {
  const ArrayDesc& a = g.arrays[i];
  if (a.dtype == DType::kUnsupported)
    throw ArgTypeError(at(g, i) + ": unsupported dtype " + a.dtype_str +
                       " (expected float16, float32 or float64)");
  if (!a.contiguous) throw ArgValueError(at(g, i) + ": array is not C-contiguous");
  if (!a.aligned)
    throw ArgValueError(at(g, i) + ": array data is not aligned to its " + dtype_name(a.dtype) +
                        " elements (NumPy's ALIGNED flag is False); np.array(x) makes an "
                        "aligned copy");
  if (must_write && !a.writeable) throw ArgValueError(at(g, i) + ": array is read-only");
}

std::string dtype_of(const ArrayDesc& a) {
  return a.dtype == DType::kUnsupported ? a.dtype_str : dtype_name(a.dtype);
}

// The most common mistake (float64 grads from float64 data into float32 params) gets a fix.
std::string grad_dtype_message(const ArrayGroup& grads, size_t i, const ArrayDesc& g, DType param) {
  return at(grads, i) + ": dtype " + dtype_of(g) + " does not match params[" + std::to_string(i) +
         "] dtype " + dtype_name(param) +
         " (grads must have their param's dtype: convert with g.astype(p.dtype), or compute "
         "the gradient in " +
         dtype_name(param) + ")";
}

bool same_shape(const ArrayDesc& a, const ArrayDesc& b) {
  return a.ndim == b.ndim && std::equal(a.shape, a.shape + a.ndim, b.shape);
}

struct Span {
  std::uintptr_t begin, end;
  const ArrayGroup* group;
  size_t index;
};

// Any two arrays whose bytes overlap, where at least one of them is written, is an error:
// the fused pass would read values it has already overwritten.
void check_overlaps(const std::vector<const ArrayGroup*>& groups) {
  std::vector<Span> spans;
  for (const ArrayGroup* g : groups)
    for (size_t i = 0; i < g->arrays.size(); ++i) {
      const ArrayDesc& a = g->arrays[i];
      if (a.present && a.nbytes() > 0)
        spans.push_back({a.ptr, a.ptr + static_cast<std::uintptr_t>(a.nbytes()), g, i});
    }
  std::sort(spans.begin(), spans.end(),
            [](const Span& x, const Span& y) { return x.begin < y.begin; });
  // Sweep keeping the furthest-reaching written span and the furthest-reaching span.
  const Span* open_any = nullptr;
  const Span* open_written = nullptr;
  for (const Span& s : spans) {
    const Span* clash = nullptr;
    if (open_written && open_written->end > s.begin)
      clash = open_written;
    else if (s.group->writeable && open_any && open_any->end > s.begin)
      clash = open_any;
    if (clash) {
      const bool same = clash->begin == s.begin && clash->end == s.end;
      throw ArgValueError(at(*s.group, s.index) +
                          (same ? " is the same array as " : " shares memory with ") +
                          at(*clash->group, clash->index) +
                          (s.group == clash->group && s.group->name == "params"
                               ? ": every parameter must appear once"
                               : ": arrays written by the step must not overlap any other array"));
    }
    if (!open_any || s.end > open_any->end) open_any = &s;
    if (s.group->writeable && (!open_written || s.end > open_written->end)) open_written = &s;
  }
}

}  // namespace

std::string shape_str(const ArrayDesc& a) {
  std::ostringstream o;
  o << "(";
  for (int d = 0; d < a.ndim; ++d)
    o << a.shape[d] << (a.ndim == 1 ? "," : d + 1 < a.ndim ? ", " : "");
  o << ")";
  return o.str();
}

void validate_inputs_outputs(const ArrayGroup& inputs, const ArrayGroup* outputs) {
  const size_t n = inputs.arrays.size();
  for (size_t i = 0; i < n; ++i) check_one(inputs, i, false);
  if (!outputs) return;
  if (outputs->arrays.size() != n)
    throw ArgValueError("got " + std::to_string(outputs->arrays.size()) + " outputs for " +
                        std::to_string(n) + " inputs");
  for (size_t i = 0; i < n; ++i) {
    const ArrayDesc& x = inputs.arrays[i];
    const ArrayDesc& o = outputs->arrays[i];
    check_one(*outputs, i, true);
    if (o.dtype != x.dtype)
      throw ArgTypeError(at(*outputs, i) + ": dtype " + dtype_name(o.dtype) + " does not match " +
                         at(inputs, i) + " dtype " + dtype_name(x.dtype));
    if (!same_shape(o, x))
      throw ArgValueError(at(*outputs, i) + ": shape " + shape_str(o) + " does not match " +
                          at(inputs, i) + " shape " + shape_str(x));
    if (o.device != x.device)
      throw ArgValueError(at(*outputs, i) + ": is on another device than " + at(inputs, i));
  }
  // An output may be exactly its own input (in place); any other overlap is an error.
  ArrayGroup outs{outputs->name, {}, true};
  ArrayGroup ins{inputs.name, {}, false};
  for (size_t i = 0; i < n; ++i) {
    const ArrayDesc& x = inputs.arrays[i];
    ArrayDesc o = outputs->arrays[i];
    ins.arrays.push_back(x);
    if (o.ptr == x.ptr && o.numel == x.numel) ins.arrays.back().present = false;
    outs.arrays.push_back(o);
  }
  check_overlaps({&ins, &outs});
}

namespace {

// The storage of param p's state s, or a TypeError: the compute dtype, or compact.
void check_state_dtype(const ArrayGroup& sg, size_t i, const ArrayDesc& s, const ArrayDesc& p,
                       DType& storage) {
  const DType full = state_dtype(p.dtype);
  const bool compact =
      p.dtype != DType::kFloat64 && (s.dtype == DType::kBFloat16 || s.dtype == DType::kUInt8);
  if (s.dtype != full && !compact)
    throw ArgTypeError(at(sg, i) + ": dtype " + dtype_of(s) + " but " + dtype_name(p.dtype) +
                       " params need " + dtype_name(full) + " state" +
                       (p.dtype == DType::kFloat64 ? "" : " (or bfloat16 / uint8 compact state)"));
  if (storage == DType::kUnsupported) storage = s.dtype;
  if (s.dtype != storage)
    throw ArgTypeError(at(sg, i) + ": dtype " + dtype_of(s) + " but the param's other states are " +
                       dtype_name(storage) + ": a param's states share one storage (" +
                       dtype_name(full) + " state, or bfloat16 / uint8 compact state)");
}

// The block scales of 8-bit state s (present exactly when s is uint8).
void check_scales(const ArrayGroup& scales, size_t i, const ArrayDesc& s, const ArrayGroup& sg) {
  const ArrayDesc& a = scales.arrays[i];
  if (s.dtype != DType::kUInt8) {
    if (a.present)
      throw ArgValueError(at(scales, i) + ": block scales are only for uint8 (8-bit) state, " +
                          at(sg, i) + " is " + dtype_of(s));
    return;
  }
  if (!a.present) throw ArgValueError(at(scales, i) + ": missing block scales of uint8 state");
  if (a.dtype != DType::kFloat32)
    throw ArgTypeError(at(scales, i) + ": dtype " + dtype_of(a) + ", block scales are float32");
  if (a.numel != quant_blocks(s.numel))
    throw ArgValueError(at(scales, i) + ": " + std::to_string(a.numel) + " block scales for " +
                        std::to_string(s.numel) + " elements (need " +
                        std::to_string(quant_blocks(s.numel)) + ", one per " +
                        std::to_string(kQuantBlock) + ")");
  check_one(scales, i, true);
}

}  // namespace

FixedArrays::FixedArrays(const ArrayGroup& params, const std::vector<const ArrayGroup*>& states,
                         const std::vector<bool>& allow_missing,
                         const std::vector<const ArrayGroup*>& scales,
                         const std::vector<bool>& full_only) {
  const size_t n = params.arrays.size();
  for (const ArrayGroup* s : states)
    if (s->arrays.size() != n)
      throw ArgValueError("got " + std::to_string(s->arrays.size()) + " arrays in " + s->name +
                          " for " + std::to_string(n) + " params");
  if (!scales.empty() && scales.size() != states.size())
    throw ArgValueError("got " + std::to_string(scales.size()) + " lists of block scales for " +
                        std::to_string(states.size()) + " states");
  for (const ArrayGroup* s : scales)
    if (s->arrays.size() != n)
      throw ArgValueError("got " + std::to_string(s->arrays.size()) + " arrays in " + s->name +
                          " for " + std::to_string(n) + " params");
  device_ = n ? params.arrays[0].device : -1;
  for (size_t i = 0; i < n; ++i) {
    const ArrayDesc& p = params.arrays[i];
    check_one(params, i, true);
    if (p.dtype == DType::kUInt8)
      throw ArgTypeError(at(params, i) + ": unsupported dtype uint8 (expected a float dtype)");
    if (p.device != device_)
      throw ArgValueError(at(params, i) + ": is on device " + std::to_string(p.device) +
                          " but params[0] is on device " + std::to_string(device_));
    DType storage = DType::kUnsupported;
    for (size_t k = 0; k < states.size(); ++k) {
      const ArrayGroup& sg = *states[k];
      const ArrayDesc& s = sg.arrays[i];
      if (!s.present) {
        if (!scales.empty() && scales[k]->arrays[i].present)
          throw ArgValueError(at(*scales[k], i) + ": block scales of a missing state");
        if (allow_missing[k]) continue;
        throw ArgValueError(at(sg, i) + ": missing state array");
      }
      if (k < full_only.size() && full_only[k]) {
        if (s.dtype != state_dtype(p.dtype))
          throw ArgTypeError(at(sg, i) + ": dtype " + dtype_of(s) + " but " + dtype_name(p.dtype) +
                             " params need it in " + dtype_name(state_dtype(p.dtype)));
      } else {
        check_state_dtype(sg, i, s, p, storage);
      }
      if (!same_shape(s, p))
        throw ArgValueError(at(sg, i) + ": shape " + shape_str(s) + " does not match " +
                            at(params, i) + " shape " + shape_str(p));
      check_one(sg, i, true);
      if (s.device != p.device)
        throw ArgValueError(at(sg, i) + ": is on device " + std::to_string(s.device) + " but " +
                            at(params, i) + " is on device " + std::to_string(p.device));
      if (scales.empty()) {
        if (s.dtype == DType::kUInt8)
          throw ArgValueError(at(sg, i) + ": uint8 (8-bit) state needs its block scales");
      } else {
        check_scales(*scales[k], i, s, sg);
        if (scales[k]->arrays[i].present && scales[k]->arrays[i].device != p.device)
          throw ArgValueError(at(*scales[k], i) + ": is on a different device than " +
                              at(params, i));
      }
    }
    state_storage_.push_back(storage == DType::kUnsupported ? state_dtype(p.dtype) : storage);
    dtypes_.push_back(p.dtype);
    numel_.push_back(p.numel);
    shapes_.emplace_back(p.shape, p.shape + p.ndim);
  }
  std::vector<const ArrayGroup*> all{&params};
  all.insert(all.end(), states.begin(), states.end());
  all.insert(all.end(), scales.begin(), scales.end());
  check_overlaps(all);
  names_.push_back(params.name);
  for (const ArrayGroup* g : all) {
    if (g != &params) names_.push_back(g->name);
    const int group = static_cast<int>(names_.size()) - 1;
    for (size_t i = 0; i < g->arrays.size(); ++i) {
      const ArrayDesc& a = g->arrays[i];
      if (a.present && a.nbytes() > 0)
        spans_.push_back({a.ptr, a.ptr + static_cast<std::uintptr_t>(a.nbytes()), group, i});
    }
  }
  std::sort(spans_.begin(), spans_.end(),
            [](const Span& x, const Span& y) { return x.begin < y.begin; });
}

void FixedArrays::check_grad_count(size_t count) const {
  if (count != size())
    throw ArgValueError("got " + std::to_string(count) + " grads for " + std::to_string(size()) +
                        " params");
}

void FixedArrays::check_grad(const ArrayDesc& g, size_t i) const {
  const ArrayGroup grads{"grads", {}, false};
  if (g.dtype != dtypes_[i]) throw ArgTypeError(grad_dtype_message(grads, i, g, dtypes_[i]));
  const std::vector<int64_t>& shape = shapes_[i];
  if (g.ndim != static_cast<int>(shape.size()) ||
      !std::equal(shape.begin(), shape.end(), g.shape)) {
    ArrayDesc p;
    p.shape = shape.data();
    p.ndim = static_cast<int>(shape.size());
    throw ArgValueError(at(grads, i) + ": shape " + shape_str(g) + " does not match params[" +
                        std::to_string(i) + "] shape " + shape_str(p));
  }
  if (!g.contiguous) throw ArgValueError(at(grads, i) + ": array is not C-contiguous");
  if (!g.aligned) {
    ArrayGroup one{"grads", {}, false};
    one.arrays.resize(i + 1);
    one.arrays[i] = g;
    check_one(one, i, false);
  }
  if (g.device != device_)
    throw ArgValueError(at(grads, i) + ": is on device " + std::to_string(g.device) +
                        " but params[0] is on device " + std::to_string(device_));
  const int64_t bytes = g.nbytes();
  if (bytes == 0 || spans_.empty()) return;
  // Spans are disjoint and sorted, so their ends are sorted too: the first span ending after
  // the grad begins is the only candidate for an overlap.
  const std::uintptr_t begin = g.ptr, end = g.ptr + static_cast<std::uintptr_t>(bytes);
  const auto it = std::upper_bound(spans_.begin(), spans_.end(), begin,
                                   [](std::uintptr_t b, const Span& s) { return b < s.end; });
  if (it == spans_.end() || it->begin >= end) return;
  const bool same = it->begin == begin && it->end == end;
  throw ArgValueError(at(grads, i) + (same ? " is the same array as " : " shares memory with ") +
                      names_[it->group] + "[" + std::to_string(it->index) +
                      "]: arrays written by the step must not overlap any other array");
}

}  // namespace fusedupdates
