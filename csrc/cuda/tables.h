// The device tables of the multi-tensor launches (per-tensor pointers, sizes and the chunk ->
// tensor map): building them on the host and caching their device copies, one cache per device.
//
// Tables are immutable and content-addressed: a table is the exact bytes the kernels read, and
// the cache maps those bytes to one device copy. A step therefore uploads nothing while its
// arrays stay the same, uploads only the small grad-pointer table when new grad arrays arrive,
// and a captured CUDA graph can never see a table rewritten under it.
//
// Ordering, for every stream that uses a table:
// * memory comes from the allocator on the setup stream (CuPy's pool for that stream, never
//   the pool of a stream being captured), the upload is queued there and an event (`ready`) is
//   recorded after it; a user on any other stream waits for that event once (device side), or,
//   while its stream is capturing, the host waits for it (setup work stays out of the graph);
// * after the launches of an eager step, the stream's fence (one event per stream) is recorded
//   and attached to the tables they read; a table is freed only when it is not pinned, nobody
//   holds it, and every fence attached to it has completed. Tables used by a captured step are
//   pinned: a graph may replay them at any time, so they are never freed;
// * the cache lock is never held while the allocator or a deleter runs (they may need the
//   GIL), and two threads missing on the same bytes keep one entry (try_emplace) and both use
//   the kept one.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "../common/validate.h"
#include "layout.h"

namespace fusedupdates::cuda {

// Device memory and whatever keeps it allocated (the binding: a CuPy array). Dropping the
// owner frees the memory into the pool of the stream it was allocated for.
struct DeviceMemory {
  std::uintptr_t ptr = 0;
  std::shared_ptr<void> owner;
};
// `bytes` of device memory on `device`, stream-ordered on `stream`. Implemented by the binding
// with CuPy; may call into Python, so it is never called with a cache lock held.
using DeviceAllocator = std::function<DeviceMemory(std::size_t bytes, int device, Stream stream)>;
void set_device_allocator(DeviceAllocator allocator);
// Memory for tables and control blocks: from the setup stream's pool, with this thread in
// relaxed capture mode (the caller's stream may be capturing).
DeviceMemory allocate_setup_memory(std::size_t bytes, int device);

// The point up to which a stream's eager work read some tables: re-recorded after each step.
struct Fence {
  Stream stream;
  Event event;
};

class Table {
 public:
  std::uintptr_t ptr() const { return memory_.ptr; }
  const std::string& bytes() const { return bytes_; }

 private:
  friend class TableCache;
  std::string bytes_;
  DeviceMemory memory_;
  Event ready_ = nullptr;  // recorded on the setup stream after the upload
  std::atomic<bool> ready_done_{false};
  bool pinned_ = false;
  uint64_t last_use_ = 0;
  std::vector<Fence*> fences_;  // the streams whose eager work read this table
};
using TablePtr = std::shared_ptr<Table>;

class TableCache {
 public:
  // The cache of `device`, created on first use and never destroyed (it outlives every graph).
  static TableCache& for_device(int device);
  TableCache(int device, std::size_t capacity);

  // The device copy of `bytes` (a non-empty multiple of 8), uploaded on a miss, ordered before
  // the work queued next on `stream` (see use()).
  TablePtr get(const std::string& bytes, Stream stream, bool capturing);
  // Host-only lookup (no CUDA call): the cached table of `bytes`, or null.
  TablePtr find(const std::string& bytes);
  // Orders `stream` after the upload of `table` and, while capturing, pins it. Cheap once the
  // upload is known to be complete (an atomic flag), so a held table is used through this.
  void use(Table& table, Stream stream, bool capturing);
  // After an eager launch on `stream` that read `tables`: records the stream's fence and
  // attaches it to them. Returns the fence (the step's "last use" point on that stream).
  Fence* mark_used(std::initializer_list<Table*> tables, Stream stream);
  // The stream's fence, recorded now: everything queued on `stream` so far (not capturing).
  Fence* record_fence(Stream stream) { return mark_used({}, stream); }

  int device() const { return device_; }
  std::size_t size();

 private:
  Fence* fence_locked(Stream stream);
  bool idle_locked(const TablePtr& table) const;
  void evict_locked(std::vector<TablePtr>& victims);
  Event take_event_locked();

  const int device_;
  const std::size_t capacity_;  // unpinned tables kept when idle
  std::mutex mutex_;
  uint64_t clock_ = 0;
  std::unordered_map<std::string, TablePtr> entries_;
  std::unordered_map<Stream, std::unique_ptr<Fence>> fences_;
  std::vector<Event> spare_events_;  // of freed tables, reused
};

// One tensor of a stepper, validated by the binding.
struct TensorDesc {
  void* param;
  void* state[kMaxStates];  // the rule's states, then the velocity when with_momentum
  int64_t numel;
  DType dtype;
  bool with_momentum;
  uint32_t group = 0;      // its parameter group: which hyperparameters its launch uses
  void* master = nullptr;  // 16-bit params with master weights: the float32 copy
  StateFormat format = StateFormat::kFull;  // how its states are stored
  float* scales[kMaxStates] = {};           // kInt8: each state's block absmax values
};

// The fixed table of a stepper and the launches of each of its steps. Chunks are ordered by
// storage dtype, then parameter group, then state format, then plain before momentum, so that
// each (dtype, group, format, modifier) is one contiguous chunk range: one launch each (with
// that group's values and that format's kernel), and one reduction launch per dtype.
struct StepLayout {
  std::string fixed;  // meta[N] | ptrs[N] | chunks[C]
  std::size_t ptrs_offset = 0, chunks_offset = 0;
  int64_t num_chunks = 0;
  struct Launch {
    DType dtype;
    bool with_momentum;
    int64_t begin, end;
    uint32_t group = 0;
    StateFormat format = StateFormat::kFull;
  };
  std::vector<Launch> launches;
  uint32_t num_groups = 1;  // 1 + the largest group index
  struct Reduction {
    DType dtype;
    int64_t begin, end;
  };
  std::vector<Reduction> reductions;
};
StepLayout build_step_layout(const std::vector<TensorDesc>& tensors);

// A list of arrays of one dtype (sum_squares, total_norm_constraint):
// meta[N] | inputs[N] | outputs[N] | chunks[C].
struct ListTables {
  std::string bytes;
  std::size_t inputs_offset = 0, outputs_offset = 0, chunks_offset = 0;
  int64_t num_chunks = 0;
};
ListTables build_list_tables(const ArrayGroup& inputs, const ArrayGroup* outputs);

}  // namespace fusedupdates::cuda
