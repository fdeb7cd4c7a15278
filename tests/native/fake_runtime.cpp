#include "fake_runtime.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>

namespace fusedupdates::cuda {
namespace fake {

std::recursive_mutex& lock() {
  static std::recursive_mutex m;
  return m;
}

namespace {

struct FakeEvent {
  Stream stream = nullptr;
  uint64_t seq = 0;  // done once the stream has completed this many operations
};

uint64_t enqueue(Stream s) { return ++state().queued[s]; }

void execute(const UpdateArgs& a, Stream s, DType dtype, Modifier modifier) {
  Launch l{s,   dtype, modifier, a.chunk_begin, a.chunk_end, 0, 0, 0, a.control != nullptr,
           1.0, false};
  HyperParams h = a.hyper;
  if (a.control != nullptr) {
    const double momentum = h.momentum;
    h = a.group_control->hyper;
    h.momentum = momentum;
    h.step = a.control->hyper.step + 1.0;
  }
  if (a.momentum != nullptr) h.momentum = *a.momentum;
  // The fake reduction writes nothing: a test puts the sum of squares it wants in partials[0].
  const double sum = a.partials != nullptr ? a.partials[0] : 0.0;
  l.skipped = a.skip_nonfinite && !std::isfinite(sum);
  l.grad_scale = a.scale_device != nullptr ? 1.0 / *static_cast<const float*>(a.scale_device)
                                           : a.inverse_scale;
  l.step = h.step;
  l.learning_rate = h.learning_rate;
  l.momentum = h.momentum;
  state().launches.push_back(l);
  if (a.applied_out != nullptr && a.write_norm) *a.applied_out = l.skipped ? 0 : 1;
  if (a.control != nullptr && a.advance && !l.skipped) a.control->hyper.step = h.step;
}

}  // namespace

State& state() {
  static State s;
  return s;
}

void reset() {
  const std::lock_guard<std::recursive_mutex> guard(lock());
  state() = State();
}

void drain(Stream s) {
  const std::lock_guard<std::recursive_mutex> guard(lock());
  state().done[s] = state().queued[s];
}

void replay(Stream capture_on) {
  const std::lock_guard<std::recursive_mutex> guard(lock());
  const auto& args = state().graph[capture_on];
  const auto& kinds = state().graph_kinds[capture_on];
  for (size_t k = 0; k < args.size(); ++k)
    execute(args[k], capture_on, kinds[k].first, kinds[k].second);
}

Stream stream(int k) { return reinterpret_cast<Stream>(static_cast<std::uintptr_t>(k)); }

bool logged(const std::string& prefix) {
  for (const std::string& line : state().log)
    if (line.rfind(prefix, 0) == 0) return true;
  return false;
}

}  // namespace fake

using fake::state;
#define FAKE_LOCK const std::lock_guard<std::recursive_mutex> fake_lock(fake::lock())

std::string name_of(Stream s) { return std::to_string(reinterpret_cast<std::uintptr_t>(s)); }

void ensure_runtime() {}
int runtime_version() { return 13000; }
int driver_version() { return 13000; }
DeviceGuard::DeviceGuard(int) : previous_(0), switched_(false) {}
DeviceGuard::~DeviceGuard() {}
RelaxedCaptureMode::RelaxedCaptureMode() : previous_(0) {
  FAKE_LOCK;
  ++state().relaxed_depth;
}
RelaxedCaptureMode::~RelaxedCaptureMode() {
  FAKE_LOCK;
  --state().relaxed_depth;
}

bool stream_is_capturing(Stream s) {
  FAKE_LOCK;
  return state().capturing.count(s) > 0;
}
Stream setup_stream(int device) { return fake::stream(1000 + device); }
void stream_synchronize(Stream s) {
  FAKE_LOCK;
  state().log.push_back("sync " + name_of(s));
  fake::drain(s);
}
int current_device() { return 0; }
int pointer_device(std::uintptr_t) { return 0; }

Event event_create() {
  FAKE_LOCK;
  return new fake::FakeEvent();
}
void event_record(Event e, Stream s) {
  FAKE_LOCK;
  auto* ev = static_cast<fake::FakeEvent*>(e);
  ev->stream = s;
  ev->seq = state().queued[s];
}
bool event_done(Event e) {
  FAKE_LOCK;
  const auto* ev = static_cast<const fake::FakeEvent*>(e);
  return ev->stream == nullptr || state().done[ev->stream] >= ev->seq;
}
void event_synchronize(Event e) {
  FAKE_LOCK;
  const auto* ev = static_cast<const fake::FakeEvent*>(e);
  state().log.push_back("event_sync " + name_of(ev->stream));
  if (ev->stream != nullptr) state().done[ev->stream] = std::max(state().done[ev->stream], ev->seq);
}
void stream_wait_event(Stream s, Event e) {
  FAKE_LOCK;
  const auto* ev = static_cast<const fake::FakeEvent*>(e);
  state().waits.push_back(fake::Wait{s, ev->stream});
}

void upload_bytes(void* dst, const void* src, std::size_t bytes, Stream s) {
  FAKE_LOCK;
  if (bytes % 4 != 0) throw std::invalid_argument("upload_bytes: size must be a multiple of 4");
  if (stream_is_capturing(s)) throw std::logic_error("an upload was recorded into a graph");
  if (!state().capturing.empty() && state().relaxed_depth == 0)
    ++state().uploads_outside_relaxed_while_capturing;
  std::memcpy(dst, src, bytes);
  fake::enqueue(s);
  state().log.push_back("upload " + name_of(s) + " " + std::to_string(bytes));
}

void copy_to_host(void* dst, const void* src, std::size_t bytes, Stream s) {
  FAKE_LOCK;
  std::memcpy(dst, src, bytes);
  state().log.push_back("read " + name_of(s));
  stream_synchronize(s);
}

void launch_update(RuleId, DType dtype, Modifier modifier, const UpdateArgs& args, int, Stream s) {
  FAKE_LOCK;
  if (stream_is_capturing(s)) {
    state().graph[s].push_back(args);
    state().graph_kinds[s].emplace_back(dtype, modifier);
    return;
  }
  fake::enqueue(s);
  fake::execute(args, s, dtype, modifier);
}

void launch_sum_squares(DType, const ReduceArgs&, Stream s) {
  FAKE_LOCK;
  if (!stream_is_capturing(s)) fake::enqueue(s);
  state().log.push_back("sum_squares " + name_of(s));
}
void launch_sum_partials(const double*, double*, Stream s) { fake::enqueue(s); }
void launch_scale(DType, const ScaleArgs&, int, Stream s) { fake::enqueue(s); }
void launch_norm_constraint(DType, const void*, void*, int64_t, int64_t, int64_t, double, double,
                            Stream) {}
void launch_bandwidth_probe(DType, const BandwidthProbeArgs&, int, int, int, Stream) {}
void launch_copy_probe(void*, const void*, std::size_t, Stream) {}

}  // namespace fusedupdates::cuda
