#include "tables.h"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <utility>

#include "../common/errors.h"
#include "launch.h"

namespace fusedupdates::cuda {
namespace {

template <class T>
void append(std::string& out, const std::vector<T>& items) {
  out.append(reinterpret_cast<const char*>(items.data()), items.size() * sizeof(T));
}

int64_t chunks_of(int64_t numel) { return (numel + kChunkElements - 1) / kChunkElements; }

// Appends the chunks of tensor i; the kernels index tensors and chunks with 32-bit ints.
void push_chunks(std::vector<ChunkRef>& chunks, size_t i, int64_t numel) {
  const int64_t count = chunks_of(numel);
  if (count > std::numeric_limits<int32_t>::max())
    throw ArgValueError("array of " + std::to_string(numel) + " elements is too large");
  for (int64_t c = 0; c < count; ++c)
    chunks.push_back(ChunkRef{static_cast<int32_t>(i), static_cast<int32_t>(c)});
}

void check_count(size_t n) {
  if (n > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
    throw ArgValueError("too many arrays in one call");
}

}  // namespace

TableCache::TableCache(py::function alloc, int device, size_t capacity)
    : alloc_(std::move(alloc)), device_(device), capacity_(capacity) {}

DeviceBuffer TableCache::allocate(size_t bytes) {
  DeviceBuffer buffer;
  buffer.owner = alloc_(bytes);
  buffer.ptr = buffer.owner.attr("data").attr("ptr").cast<std::uintptr_t>();
  return buffer;
}

void TableCache::evict_one() {
  auto victim = entries_.end();
  for (auto it = entries_.begin(); it != entries_.end(); ++it)
    if (!it->second.pinned &&
        (victim == entries_.end() || it->second.last_use < victim->second.last_use))
      victim = it;
  // Dropping the CuPy array returns it to CuPy's pool for its stream: a kernel still reading
  // the table on that stream finishes before the memory is handed out again.
  if (victim != entries_.end()) entries_.erase(victim);
}

std::uintptr_t TableCache::get(const std::string& bytes, Stream stream, bool capturing) {
  if (bytes.empty()) return 0;  // no tensors: the kernels never read the table
  const auto hit = entries_.find(bytes);
  if (hit != entries_.end()) {
    hit->second.last_use = ++clock_;
    hit->second.pinned = hit->second.pinned || capturing;
    return hit->second.buffer.ptr;
  }
  size_t unpinned = 0;
  for (const auto& [key, entry] : entries_) unpinned += entry.pinned ? 0 : 1;
  if (unpinned >= capacity_) evict_one();
  DeviceBuffer buffer = allocate(bytes.size());
  const Stream target = capturing ? setup_stream(device_) : stream;
  upload_bytes(reinterpret_cast<void*>(buffer.ptr), bytes.data(), bytes.size(), target);
  if (capturing) synchronize_stream(target);  // one-time setup, outside the graph
  const std::uintptr_t ptr = buffer.ptr;
  entries_.emplace(bytes, Entry{std::move(buffer), ++clock_, capturing});
  return ptr;
}

ControlBlock::ControlBlock(py::object buffer, int device) : device_(device) {
  if (buffer.attr("nbytes").cast<size_t>() < sizeof(Control))
    throw ArgValueError("control buffer must hold " + std::to_string(sizeof(Control)) + " bytes");
  buffer_.ptr = buffer.attr("data").attr("ptr").cast<std::uintptr_t>();
  buffer_.owner = std::move(buffer);
}

bool ControlBlock::same_hyper(const HyperParams& h) const {
  return h.learning_rate == written_.learning_rate && h.beta1 == written_.beta1 &&
         h.beta2 == written_.beta2 && h.epsilon == written_.epsilon &&
         h.momentum == written_.momentum;
}

void ControlBlock::write(const HyperParams& h, bool write_step, bool reset, Stream stream,
                         bool capturing) {
  HyperParams device_values = h;
  device_values.step = h.step - 1.0;  // the device stores the count of steps taken
  // The first write of a block created inside a capture goes to the setup stream: nothing
  // can be reading the new block yet, and recording it would reset t at every replay.
  const Stream target = capturing ? setup_stream(device_) : stream;
  launch_set_control(reinterpret_cast<Control*>(buffer_.ptr), device_values, write_step, reset,
                     target);
  if (capturing) synchronize_stream(target);
  written_ = h;
}

void ControlBlock::prepare_step(const HyperParams& h, Stream stream, bool capturing) {
  if (!initialized_) {
    write(h, true, true, stream, capturing);
    initialized_ = true;
  } else {
    const bool step_moved = h.step != host_steps_ + 1.0;
    if (!same_hyper(h) || step_moved) {
      if (capturing)
        throw std::runtime_error(
            "fusedupdates: hyperparameters or t changed since the last write to the device and "
            "cannot be written while the stream is capturing a CUDA graph (the write would be "
            "replayed); run one eager step, or change them before begin_capture()");
      write(h, step_moved, false, stream, false);
    }
  }
  host_steps_ = h.step;
}

void ControlBlock::hyper_changed(const HyperParams& h, std::optional<bool> reset_step,
                                 Stream stream, bool capturing) {
  const double values[] = {h.learning_rate, h.beta1, h.beta2, h.epsilon, h.momentum, h.step};
  for (double v : values)
    if (!std::isfinite(v)) throw ArgValueError("hyperparameters must be finite");
  if (h.step < 1.0) throw ArgValueError("step must be >= 1 (t is incremented before use)");
  if (!initialized_) return;  // the first step writes everything
  const bool step_moved = reset_step.has_value() ? *reset_step : h.step != host_steps_ + 1.0;
  if (same_hyper(h) && !step_moved) return;
  if (capturing)
    throw std::runtime_error(
        "fusedupdates: cannot change hyperparameters while the current stream is capturing a "
        "CUDA graph; change them before begin_capture() or after end_capture()");
  write(h, step_moved, false, stream, false);
  if (step_moved) host_steps_ = h.step - 1.0;
}

StepTables build_step_tables(const ArrayGroup& params, const ArrayGroup& grads,
                             const std::vector<const ArrayGroup*>& states, bool has_velocity) {
  const size_t n = params.arrays.size();
  check_count(n);
  const size_t rule_states = states.size() - (has_velocity ? 1 : 0);
  std::vector<TensorMeta> meta(n);
  std::vector<TensorPtrs> ptrs(n);
  std::vector<const void*> grad_ptrs(n);
  for (size_t i = 0; i < n; ++i) {
    const ArrayDesc& p = params.arrays[i];
    meta[i] = TensorMeta{p.numel, static_cast<int32_t>(p.dtype), 0};
    ptrs[i].param = reinterpret_cast<void*>(p.ptr);
    for (int k = 0; k < kMaxStates; ++k) ptrs[i].state[k] = nullptr;
    for (size_t k = 0; k < rule_states; ++k)
      ptrs[i].state[k] = reinterpret_cast<void*>(states[k]->arrays[i].ptr);
    if (has_velocity && states.back()->arrays[i].present) {
      meta[i].with_momentum = 1;
      ptrs[i].state[rule_states] = reinterpret_cast<void*>(states.back()->arrays[i].ptr);
    }
    grad_ptrs[i] = reinterpret_cast<const void*>(grads.arrays[i].ptr);
  }
  StepTables t;
  std::vector<ChunkRef> chunks;
  for (DType dtype : {DType::kFloat16, DType::kFloat32, DType::kFloat64}) {
    const auto begin = static_cast<int64_t>(chunks.size());
    for (size_t i = 0; i < n; ++i)
      if (params.arrays[i].dtype == dtype) push_chunks(chunks, i, params.arrays[i].numel);
    const auto end = static_cast<int64_t>(chunks.size());
    if (end > begin) t.ranges.push_back(StepTables::Range{dtype, begin, end});
  }
  t.num_chunks = static_cast<int64_t>(chunks.size());
  append(t.fixed, meta);
  t.ptrs_offset = t.fixed.size();
  append(t.fixed, ptrs);
  t.chunks_offset = t.fixed.size();
  append(t.fixed, chunks);
  append(t.grads, grad_ptrs);
  return t;
}

ListTables build_list_tables(const ArrayGroup& inputs, const ArrayGroup* outputs) {
  const size_t n = inputs.arrays.size();
  check_count(n);
  std::vector<TensorMeta> meta(n);
  std::vector<const void*> in(n);
  std::vector<void*> out(n, nullptr);
  std::vector<ChunkRef> chunks;
  for (size_t i = 0; i < n; ++i) {
    const ArrayDesc& x = inputs.arrays[i];
    meta[i] = TensorMeta{x.numel, static_cast<int32_t>(x.dtype), 0};
    in[i] = reinterpret_cast<const void*>(x.ptr);
    if (outputs) out[i] = reinterpret_cast<void*>(outputs->arrays[i].ptr);
    push_chunks(chunks, i, x.numel);
  }
  ListTables t;
  t.num_chunks = static_cast<int64_t>(chunks.size());
  append(t.bytes, meta);
  t.inputs_offset = t.bytes.size();
  append(t.bytes, in);
  t.outputs_offset = t.bytes.size();
  append(t.bytes, out);
  t.chunks_offset = t.bytes.size();
  append(t.bytes, chunks);
  return t;
}

}  // namespace fusedupdates::cuda
