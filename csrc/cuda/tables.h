// The host side of the multi-tensor launches: building the device tables (per-tensor
// pointers, sizes and the chunk -> tensor map), caching them on the device, and the
// per-updater control block (hyperparameters and t in device memory).
//
// Tables are immutable and content-addressed: a table is the exact bytes the kernels read, and
// the cache maps those bytes to one device copy. A step therefore uploads nothing while its
// arrays stay the same, uploads only the small grad-pointer table when new grad arrays arrive,
// and a captured CUDA graph can never see a table rewritten under it. Device memory comes from
// a Python allocator (CuPy's pool), so it is stream-ordered like every other CuPy array.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "../common/validate.h"
#include "layout.h"

namespace fusedupdates::cuda {

namespace py = pybind11;

// Device memory owned by a Python object (a CuPy uint8 array from the allocator).
struct DeviceBuffer {
  py::object owner;
  std::uintptr_t ptr = 0;
};

class TableCache {
 public:
  // alloc(nbytes) -> a CuPy array on the current device; capacity: unpinned tables kept.
  TableCache(py::function alloc, int device, size_t capacity);

  // Device address of a table holding exactly `bytes` (a multiple of 8), uploaded on first use.
  // While the stream is capturing, a new table is uploaded on the setup stream (not recorded
  // in the graph), and every table used is pinned: never evicted while the cache lives, since
  // a graph may replay it at any time.
  std::uintptr_t get(const std::string& bytes, Stream stream, bool capturing);
  DeviceBuffer allocate(size_t bytes);
  int device() const { return device_; }
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    DeviceBuffer buffer;
    uint64_t last_use;
    bool pinned;
  };
  void evict_one();
  py::function alloc_;
  int device_;
  size_t capacity_;
  uint64_t clock_ = 0;
  std::unordered_map<std::string, Entry> entries_;
};

// The device-resident state of one updater (csrc/cuda/layout.h, Control).
class ControlBlock {
 public:
  ControlBlock(py::object buffer, int device);
  int device() const { return device_; }
  std::uintptr_t ptr() const { return buffer_.ptr; }

  // Before a step that uses t = h.step: first use writes everything; later, a changed
  // hyperparameter (or a host t that moved other than by stepping) is written first.
  // Raises while capturing if a write would be needed, since it would be recorded into the
  // graph and undo later changes at every replay.
  void prepare_step(const HyperParams& h, Stream stream, bool capturing);
  // Updater.hyper_changed: h.step is the host's next t. reset_step: None = write t only if the
  // host's count moved other than by stepping; True/False = always / never.
  void hyper_changed(const HyperParams& h, std::optional<bool> reset_step, Stream stream,
                     bool capturing);

 private:
  void write(const HyperParams& h, bool write_step, bool reset, Stream stream, bool capturing);
  bool same_hyper(const HyperParams& h) const;
  DeviceBuffer buffer_;
  int device_;
  bool initialized_ = false;
  HyperParams written_{};    // the hyperparameters last written (step field unused)
  double host_steps_ = 0.0;  // t as the host counts it after its last step
};

// The tables of one update step. Chunks are ordered by storage dtype so that each dtype is one
// contiguous chunk range (one launch per dtype present; a single-dtype model is one launch).
struct StepTables {
  std::string fixed;  // meta[N] | ptrs[N] | chunks[C]: changes only with params or states
  std::string grads;  // grads[N]: changes when new grad arrays arrive
  size_t ptrs_offset = 0, chunks_offset = 0;
  int64_t num_chunks = 0;
  struct Range {
    DType dtype;
    int64_t begin, end;
  };
  std::vector<Range> ranges;
};

// states: one group per rule state, then the velocity group (entries may be absent) if any.
StepTables build_step_tables(const ArrayGroup& params, const ArrayGroup& grads,
                             const std::vector<const ArrayGroup*>& states, bool has_velocity);

// A list of arrays of one dtype (sum_squares, scale, total_norm_constraint):
// meta[N] | inputs[N] | outputs[N] | chunks[C].
struct ListTables {
  std::string bytes;
  size_t inputs_offset = 0, outputs_offset = 0, chunks_offset = 0;
  int64_t num_chunks = 0;
};
ListTables build_list_tables(const ArrayGroup& inputs, const ArrayGroup* outputs);

}  // namespace fusedupdates::cuda
