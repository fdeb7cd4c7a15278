#include "tables.h"

#include <algorithm>
#include <limits>
#include <map>
#include <stdexcept>
#include <utility>

#include "../common/errors.h"
#include "launch.h"

namespace fusedupdates::cuda {
namespace {

std::mutex& allocator_mutex() {
  static std::mutex mutex;
  return mutex;
}

DeviceAllocator& allocator() {
  static DeviceAllocator* alloc = new DeviceAllocator();  // never destroyed (outlives graphs)
  return *alloc;
}

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

void set_device_allocator(DeviceAllocator alloc) {
  const std::lock_guard<std::mutex> lock(allocator_mutex());
  allocator() = std::move(alloc);
}

DeviceMemory allocate_setup_memory(std::size_t bytes, int device) {
  DeviceAllocator alloc;
  {
    const std::lock_guard<std::mutex> lock(allocator_mutex());
    alloc = allocator();
  }
  if (!alloc) throw std::runtime_error("fusedupdates: no device allocator (import CuPy first)");
  const Stream setup = setup_stream(device);
  const RelaxedCaptureMode relaxed;  // the pool may cudaMalloc while our stream captures
  DeviceMemory memory = alloc(bytes, device, setup);
  if (memory.ptr == 0 && bytes > 0) throw std::runtime_error("fusedupdates: allocation failed");
  return memory;
}

TableCache& TableCache::for_device(int device) {
  static std::mutex mutex;
  static auto* caches = new std::map<int, std::unique_ptr<TableCache>>();  // never destroyed
  const std::lock_guard<std::mutex> lock(mutex);
  std::unique_ptr<TableCache>& cache = (*caches)[device];
  if (!cache) cache = std::make_unique<TableCache>(device, 64);
  return *cache;
}

TableCache::TableCache(int device, std::size_t capacity) : device_(device), capacity_(capacity) {}

std::size_t TableCache::size() {
  const std::lock_guard<std::mutex> lock(mutex_);
  return entries_.size();
}

TablePtr TableCache::find(const std::string& bytes) {
  const std::lock_guard<std::mutex> lock(mutex_);
  const auto hit = entries_.find(bytes);
  return hit == entries_.end() ? nullptr : hit->second;
}

Event TableCache::take_event_locked() {
  if (spare_events_.empty()) return event_create();
  const Event event = spare_events_.back();
  spare_events_.pop_back();
  return event;
}

Fence* TableCache::fence_locked(Stream stream) {
  std::unique_ptr<Fence>& fence = fences_[stream];
  if (!fence) fence = std::make_unique<Fence>(Fence{stream, event_create()});
  return fence.get();
}

// Not pinned, held by nobody but the cache, and no stream's work that read it still pending.
bool TableCache::idle_locked(const TablePtr& table) const {
  if (table->pinned_ || table.use_count() > 1) return false;
  if (!table->ready_done_.load(std::memory_order_acquire) && !event_done(table->ready_))
    return false;
  return std::all_of(table->fences_.begin(), table->fences_.end(),
                     [](const Fence* f) { return event_done(f->event); });
}

// Least recently used idle tables first, until at most `capacity_` unpinned ones remain; a
// table in use is never freed, so the cache may stay above capacity for a while.
void TableCache::evict_locked(std::vector<TablePtr>& victims) {
  size_t unpinned = 0;
  std::vector<std::unordered_map<std::string, TablePtr>::iterator> candidates;
  for (auto it = entries_.begin(); it != entries_.end(); ++it)
    if (!it->second->pinned_) {
      ++unpinned;
      candidates.push_back(it);
    }
  if (unpinned < capacity_) return;
  std::sort(candidates.begin(), candidates.end(), [](const auto& a, const auto& b) {
    return a->second->last_use_ < b->second->last_use_;
  });
  for (const auto& it : candidates) {
    if (unpinned < capacity_) break;
    if (!idle_locked(it->second)) continue;
    spare_events_.push_back(it->second->ready_);
    it->second->ready_ = nullptr;
    victims.push_back(std::move(it->second));
    entries_.erase(it);
    --unpinned;
  }
}

TablePtr TableCache::get(const std::string& bytes, Stream stream, bool capturing) {
  if (bytes.empty() || bytes.size() % 8 != 0)
    throw std::invalid_argument("fusedupdates: a table is a non-empty multiple of 8 bytes");
  TablePtr table;
  std::vector<TablePtr> victims;  // freed after the lock is released (their deleters may need
                                  // the GIL)
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    const auto hit = entries_.find(bytes);
    if (hit != entries_.end()) {
      table = hit->second;
      table->last_use_ = ++clock_;
    } else {
      evict_locked(victims);
    }
  }
  victims.clear();
  if (!table) {
    auto fresh = std::make_shared<Table>();
    fresh->bytes_ = bytes;
    fresh->memory_ = allocate_setup_memory(bytes.size(), device_);
    const Stream setup = setup_stream(device_);
    {
      const RelaxedCaptureMode relaxed;
      upload_bytes(reinterpret_cast<void*>(fresh->memory_.ptr), bytes.data(), bytes.size(), setup);
      {
        const std::lock_guard<std::mutex> lock(mutex_);
        fresh->ready_ = take_event_locked();
      }
      event_record(fresh->ready_, setup);
    }
    TablePtr loser;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      // Another thread may have uploaded the same bytes meanwhile: keep its entry and use it
      // (never return a table the map did not keep). Ours is freed below, into the setup
      // stream's pool, where its queued upload orders any reuse.
      const auto [it, inserted] = entries_.try_emplace(bytes, fresh);
      table = it->second;
      table->last_use_ = ++clock_;
      if (!inserted) {
        spare_events_.push_back(fresh->ready_);
        fresh->ready_ = nullptr;
        loser = std::move(fresh);
      }
    }
  }
  use(*table, stream, capturing);
  return table;
}

void TableCache::use(Table& table, Stream stream, bool capturing) {
  if (!table.ready_done_.load(std::memory_order_acquire)) {
    if (event_done(table.ready_)) {
      table.ready_done_.store(true, std::memory_order_release);
    } else if (capturing) {
      // The graph must not depend on setup work: finish it now, outside the capture.
      const RelaxedCaptureMode relaxed;
      event_synchronize(table.ready_);
      table.ready_done_.store(true, std::memory_order_release);
    } else {
      stream_wait_event(stream, table.ready_);  // device-side wait, once per stream in practice
    }
  }
  if (capturing) {
    const std::lock_guard<std::mutex> lock(mutex_);
    table.pinned_ = true;
  }
}

Fence* TableCache::mark_used(std::initializer_list<Table*> tables, Stream stream) {
  const std::lock_guard<std::mutex> lock(mutex_);
  Fence* fence = fence_locked(stream);
  event_record(fence->event, stream);
  for (Table* table : tables) {
    if (table == nullptr) continue;
    auto& fences = table->fences_;
    if (std::find(fences.begin(), fences.end(), fence) == fences.end()) fences.push_back(fence);
  }
  return fence;
}

StepLayout build_step_layout(const std::vector<TensorDesc>& tensors) {
  const size_t n = tensors.size();
  check_count(n);
  std::vector<TensorMeta> meta(n);
  std::vector<TensorPtrs> ptrs(n);
  for (size_t i = 0; i < n; ++i) {
    const TensorDesc& t = tensors[i];
    meta[i] = TensorMeta{t.numel, static_cast<int32_t>(t.dtype), t.with_momentum ? 1 : 0};
    ptrs[i].param = t.param;
    for (int k = 0; k < kMaxStates; ++k) ptrs[i].state[k] = t.state[k];
    ptrs[i].master = t.master;
    for (int k = 0; k < kMaxStates; ++k)
      ptrs[i].scales[k] = t.format == StateFormat::kInt8 ? t.scales[k] : nullptr;
  }
  StepLayout layout;
  for (const TensorDesc& t : tensors) layout.num_groups = std::max(layout.num_groups, t.group + 1);
  std::vector<ChunkRef> chunks;
  for (DType dtype : {DType::kFloat16, DType::kBFloat16, DType::kFloat32, DType::kFloat64}) {
    const auto dtype_begin = static_cast<int64_t>(chunks.size());
    for (uint32_t group = 0; group < layout.num_groups; ++group) {
      for (StateFormat format : {StateFormat::kFull, StateFormat::kBFloat16, StateFormat::kInt8}) {
        for (bool with_momentum : {false, true}) {
          const auto begin = static_cast<int64_t>(chunks.size());
          for (size_t i = 0; i < n; ++i)
            if (tensors[i].dtype == dtype && tensors[i].group == group &&
                tensors[i].format == format && tensors[i].with_momentum == with_momentum)
              push_chunks(chunks, i, tensors[i].numel);
          const auto end = static_cast<int64_t>(chunks.size());
          if (end > begin)
            layout.launches.push_back(
                StepLayout::Launch{dtype, with_momentum, begin, end, group, format});
        }
      }
    }
    const auto dtype_end = static_cast<int64_t>(chunks.size());
    if (dtype_end > dtype_begin)
      layout.reductions.push_back(StepLayout::Reduction{dtype, dtype_begin, dtype_end});
  }
  layout.num_chunks = static_cast<int64_t>(chunks.size());
  append(layout.fixed, meta);
  layout.ptrs_offset = layout.fixed.size();
  append(layout.fixed, ptrs);
  layout.chunks_offset = layout.fixed.size();
  append(layout.fixed, chunks);
  return layout;
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
