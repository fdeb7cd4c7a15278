// The CUDA backend's host logic (tables.cpp, step_engine.cpp) against the fake runtime of
// fake_runtime.cpp: ordering of tables across streams and captures, eviction, concurrent
// misses, t and the control blocks of captured steps. Built and run by
// tests/test_cuda_host_logic.py; prints one line per failed check and exits non-zero.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../../csrc/cuda/step_engine.h"
#include "../../csrc/cuda/tables.h"
#include "fake_runtime.h"

using namespace fusedupdates;
using namespace fusedupdates::cuda;
namespace fk = fusedupdates::cuda::fake;

namespace {

int failures = 0;
#define CHECK(cond)                                               \
  do {                                                            \
    if (!(cond)) {                                                \
      std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                 \
    }                                                             \
  } while (0)

struct Allocation {
  Stream stream;
  std::size_t bytes;
};
std::vector<Allocation> allocations;
int frees = 0;
std::function<void()> on_alloc;  // a test's hook into the allocator (threads)

DeviceMemory host_alloc(std::size_t bytes, int, Stream stream) {
  if (on_alloc) on_alloc();
  {
    const std::lock_guard<std::recursive_mutex> lock(fk::lock());
    allocations.push_back({stream, bytes});
  }
  void* p = std::calloc(1, bytes);
  DeviceMemory m;
  m.ptr = reinterpret_cast<std::uintptr_t>(p);
  m.owner = std::shared_ptr<void>(p, [](void* q) {
    const std::lock_guard<std::recursive_mutex> lock(fk::lock());
    ++frees;
    std::free(q);
  });
  return m;
}

std::string bytes_of(uint64_t tag) {  // a distinct 16-byte table
  std::string s(16, '\0');
  std::memcpy(s.data(), &tag, sizeof tag);
  return s;
}

const Stream kSetup = setup_stream(0);
const Stream A = fk::stream(1), B = fk::stream(2), C = fk::stream(3);

void fresh() {
  fk::reset();
  allocations.clear();
  frees = 0;
  on_alloc = nullptr;
}

bool waited(Stream stream, Stream on) {
  for (const fk::Wait& w : fk::state().waits)
    if (w.stream == stream && w.on == on) return true;
  return false;
}

// (6) A table uploaded for stream A is ordered before its use on any other stream.
void test_upload_is_ordered_for_every_stream() {
  fresh();
  TableCache cache(0, 64);
  TablePtr t = cache.get(bytes_of(1), A, false);
  CHECK(allocations.size() == 1 && allocations[0].stream == kSetup);  // (5) setup pool
  CHECK(fk::logged("upload " + std::to_string(1000)));
  CHECK(waited(A, kSetup));
  TablePtr again = cache.get(bytes_of(1), B, false);  // a hit from another stream
  CHECK(again == t && waited(B, kSetup));
  fk::drain(kSetup);
  const size_t waits = fk::state().waits.size();
  cache.use(*t, C, false);  // complete: nobody waits any more
  CHECK(fk::state().waits.size() == waits);
}

// (5) Setup work during a capture runs outside the graph, and what a graph uses stays pinned.
void test_capture_pins_and_keeps_setup_outside() {
  fresh();
  TableCache cache(0, 2);
  fk::state().capturing.insert(A);
  TablePtr pinned = cache.get(bytes_of(7), A, true);
  CHECK(fk::logged("event_sync " + std::to_string(1000)));  // host waited for the upload
  CHECK(!waited(A, kSetup));                                // the graph has no such dependency
  CHECK(fk::state().uploads_outside_relaxed_while_capturing == 0);
  fk::state().capturing.clear();
  pinned.reset();
  for (uint64_t k = 10; k < 20; ++k) {  // fill far beyond capacity with idle tables
    cache.get(bytes_of(k), B, false);
    fk::drain(kSetup);
    fk::drain(B);
  }
  CHECK(cache.find(bytes_of(7)) != nullptr);  // never evicted
  CHECK(cache.size() <= 3);                   // the others were (capacity 2 + the pinned one)
}

// (5) A table still read by queued work (its stream's fence not reached) is never freed.
void test_in_flight_tables_are_not_evicted() {
  fresh();
  TableCache cache(0, 1);
  TablePtr t = cache.get(bytes_of(1), A, false);
  launch_sum_partials(nullptr, nullptr, A);  // a launch on A reads it; A has not finished
  cache.mark_used({t.get()}, A);
  t.reset();
  fk::drain(kSetup);
  cache.get(bytes_of(2), B, false);
  CHECK(cache.find(bytes_of(1)) != nullptr);  // in flight: kept above capacity
  fk::drain(A);
  fk::drain(kSetup);
  fk::drain(B);
  cache.get(bytes_of(3), B, false);
  CHECK(cache.find(bytes_of(1)) == nullptr);  // idle now: the least recently used goes
  CHECK(frees >= 1);
}

// (7) Two threads missing on the same bytes keep one entry and both use it.
void test_concurrent_misses_keep_one_entry() {
  fresh();
  TableCache cache(0, 64);
  std::atomic<int> inside{0};
  on_alloc = [&] {  // both threads allocate before either inserts
    ++inside;
    while (inside.load() < 2) std::this_thread::yield();
  };
  TablePtr first, second;
  std::thread t1([&] { first = cache.get(bytes_of(42), A, false); });
  std::thread t2([&] { second = cache.get(bytes_of(42), B, false); });
  t1.join();
  t2.join();
  on_alloc = nullptr;
  CHECK(first && first == second);
  CHECK(cache.size() == 1 && cache.find(bytes_of(42)) == first);
  CHECK(allocations.size() == 2 && frees == 1);  // the loser's copy was freed, not returned
}

struct Engines {
  std::shared_ptr<StepCore> core;
  std::unique_ptr<StepEngine> inner, wrapper;
  std::vector<double> memory = std::vector<double>(64, 0.0);
  const void* grads[2];
};

std::unique_ptr<Engines> make_engines(bool functional = false) {
  auto e = std::make_unique<Engines>();
  e->core = std::make_shared<StepCore>(0, functional);
  std::vector<TensorDesc> tensors(2);
  for (int i = 0; i < 2; ++i) {
    tensors[i] = TensorDesc{&e->memory[8 * i],
                            {&e->memory[8 * i + 2], &e->memory[8 * i + 4]},
                            2,
                            DType::kFloat32,
                            false};
    e->grads[i] = &e->memory[32 + 8 * i];
  }
  e->inner = std::make_unique<StepEngine>(e->core, RuleId::kAdam, Modifier::kNone, tensors);
  tensors[1].with_momentum = true;
  tensors[1].state[2] = &e->memory[20];
  e->wrapper = std::make_unique<StepEngine>(e->core, RuleId::kAdam, Modifier::kMomentum, tensors);
  e->inner->set_hyperparameters([](HyperParams& h, double&) { h.learning_rate = 0.1; });
  e->wrapper->set_hyperparameters([](HyperParams&, double& m) { m = 0.7; });
  return e;
}

StepRequest request(Engines& e, Stream s) {
  StepRequest r;
  r.grads = e.grads;
  r.stream.stream = s;
  return r;
}

// (1) t counts the updates applied, replays included; (4) reading it synchronises the stream
// the steps ran on and never writes a value back.
void test_t_counts_replays_and_reads_the_home_stream() {
  fresh();
  auto e = make_engines();
  e->inner->step(request(*e, A));  // warm-up, eager: t from the host
  CHECK(e->inner->t() == 1 && !fk::logged("read"));
  fk::state().capturing.insert(A);
  CHECK(e->inner->step(request(*e, A)));  // captured: recorded, not applied
  fk::state().capturing.clear();
  for (int k = 0; k < 5; ++k) fk::replay(A);
  const size_t uploads = fk::state().log.size();
  CHECK(e->inner->t() == 6);
  CHECK(fk::logged("read " + std::to_string(1)) && !fk::logged("read " + std::to_string(2)));
  for (size_t k = uploads; k < fk::state().log.size(); ++k)
    CHECK(fk::state().log[k].rfind("upload", 0) != 0);  // no stale t written back
  std::vector<double> steps;
  for (const fk::Launch& l : fk::state().launches) steps.push_back(l.step);
  CHECK((steps == std::vector<double>{1, 2, 3, 4, 5, 6}));
  e->inner->step(request(*e, A));  // eager after replays continues the device t
  CHECK(fk::state().launches.back().step == 7 && e->inner->t() == 7);
  e->inner->set_t(2);  // setting t writes the device copy
  e->inner->step(request(*e, A));
  CHECK(fk::state().launches.back().step == 3);
}

// (3) The inner stepper's changes never touch the wrapper's momentum, and a graph captured
// from the wrapper keeps it while seeing the new rule fields.
void test_wrapper_momentum_survives_inner_changes() {
  fresh();
  auto e = make_engines();
  fk::state().capturing.insert(A);
  e->wrapper->step(request(*e, A));
  fk::state().capturing.clear();
  e->inner->set_hyperparameters([](HyperParams& h, double&) { h.learning_rate = 0.02; });
  fk::replay(A);
  for (const fk::Launch& l : fk::state().launches) {
    CHECK(l.learning_rate == 0.02 && l.control);
    if (l.modifier == Modifier::kMomentum) CHECK(l.momentum == 0.7);
  }
  CHECK(e->wrapper->hyperparameters().momentum == 0.7);
  CHECK(e->inner->hyperparameters().learning_rate == 0.02);
  e->wrapper->set_hyperparameters([](HyperParams&, double& m) { m = 0.5; });
  fk::replay(A);
  CHECK(fk::state().launches.back().momentum == 0.5);
  e->inner->step(request(*e, A));  // the inner's eager step: its own launches, no momentum
  CHECK(fk::state().launches.back().modifier == Modifier::kNone);
}

// (8) Plain and momentum tensors run separate launches; the last one advances t.
void test_launches_split_by_modifier() {
  fresh();
  auto e = make_engines();
  CHECK(e->inner->launches().size() == 1);
  CHECK(e->wrapper->launches().size() == 2);
  e->wrapper->step(request(*e, A));
  const auto& l = fk::state().launches;
  CHECK(l.size() == 2 && l[0].modifier == Modifier::kNone && l[1].modifier == Modifier::kMomentum);
}

// Changing a value while the home stream captures throws and changes nothing.
void test_no_device_write_while_capturing() {
  fresh();
  auto e = make_engines();
  fk::state().capturing.insert(A);
  e->inner->step(request(*e, A));
  bool threw = false;
  try {
    e->inner->set_hyperparameters([](HyperParams& h, double&) { h.learning_rate = 0.5; });
  } catch (const std::runtime_error&) {
    threw = true;
  }
  CHECK(threw && e->inner->hyperparameters().learning_rate == 0.1);
  threw = false;
  try {
    (void)e->inner->t();
  } catch (const std::runtime_error&) {
    threw = true;
  }
  CHECK(threw);
  fk::state().capturing.clear();
  e->inner->set_hyperparameters([](HyperParams& h, double&) { h.learning_rate = 0.5; });
  fk::replay(A);
  CHECK(fk::state().launches.back().learning_rate == 0.5);
}

// A step on another stream than the previous one is ordered after it.
void test_stream_switch_waits_for_the_previous_step() {
  fresh();
  auto e = make_engines();
  e->inner->step(request(*e, A));
  e->inner->step(request(*e, B));
  CHECK(waited(B, A));
}

// The functional API's captured step replays its own t and values.
void test_functional_capture_bakes_its_arguments() {
  fresh();
  auto e = make_engines(/*functional=*/true);
  e->inner->set_t(3);
  fk::state().capturing.insert(A);
  e->inner->step(request(*e, A));
  fk::state().capturing.clear();
  for (int k = 0; k < 3; ++k) fk::replay(A);
  for (const fk::Launch& l : fk::state().launches) CHECK(l.step == 4 && !l.control);
}

// Parameter groups: one launch per (dtype, group, modifier), each with its group's values,
// eagerly and in a captured graph; a group's change reaches only its launches; t is the
// core's single counter, advanced once per step (not per group).
void test_parameter_groups_launch_with_their_own_values() {
  fresh();
  std::vector<double> memory(64, 0.0);
  auto core = std::make_shared<StepCore>(0, false, 2);
  std::vector<TensorDesc> tensors(3);
  const uint32_t group_of[3] = {1, 0, 1};
  const void* grads[3];
  for (int i = 0; i < 3; ++i) {
    tensors[i] = TensorDesc{
        &memory[8 * i], {&memory[8 * i + 2], &memory[8 * i + 4]}, 2, DType::kFloat32, i == 2,
        group_of[i]};
    if (i == 2) tensors[i].state[2] = &memory[30];
    grads[i] = &memory[40 + 4 * i];
  }
  StepEngine engine(core, RuleId::kAdam, Modifier::kMomentum, tensors);
  const auto& launches = engine.launches();
  CHECK(launches.size() == 3);  // group 0 plain, group 1 plain, group 1 momentum
  CHECK(launches[0].group == 0 && launches[1].group == 1 && launches[2].group == 1);
  CHECK(!launches[1].with_momentum && launches[2].with_momentum);
  engine.set_hyperparameters([](HyperParams& h, double& m) {
    h.learning_rate = 0.1;
    m = 0.5;
  });
  engine.set_hyperparameters(
      [](HyperParams& h, double& m) {
        h.learning_rate = 0.2;
        m = 0.6;
      },
      1);
  CHECK(engine.hyperparameters(0).learning_rate == 0.1 &&
        engine.hyperparameters(1).momentum == 0.6);
  StepRequest r;
  r.grads = grads;
  r.stream.stream = A;
  engine.step(r);  // eager
  const auto& l = fk::state().launches;
  CHECK(l.size() == 3 && l[0].learning_rate == 0.1 && l[1].learning_rate == 0.2);
  CHECK(l[2].learning_rate == 0.2 && l[2].momentum == 0.6 && l[0].step == 1 && l[2].step == 1);
  fk::state().capturing.insert(A);
  engine.step(r);  // captured: the control block holds both groups
  fk::state().capturing.clear();
  engine.set_hyperparameters(
      [](HyperParams& h, double& m) {
        h.learning_rate = 0.3;
        m = 0.7;
      },
      1);
  fk::state().launches.clear();
  fk::replay(A);
  fk::replay(A);
  CHECK(l.size() == 6 && l[0].control && l[0].learning_rate == 0.1);
  CHECK(l[1].learning_rate == 0.3 && l[2].learning_rate == 0.3 && l[2].momentum == 0.7);
  CHECK(l[0].step == 2 && l[2].step == 2 && l[3].step == 3 && l[5].step == 3);
  CHECK(engine.t() == 3);
  bool threw = false;
  try {
    engine.set_hyperparameters([](HyperParams&, double&) {}, 2);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
}

// Loss scaling: a step with skip_nonfinite moves t to the device (a control block, created
// outside any graph), passes the scale and the applied-flag pointer to every launch, and a
// non-finite sum of squares leaves t where it was, without any host synchronisation.
void test_skip_nonfinite_keeps_t_on_the_device() {
  fresh();
  auto e = make_engines();
  std::vector<double> norm_buffer(kNormBufferDoubles, 0.0);
  StepRequest r = request(*e, A);
  r.skip_nonfinite = true;
  r.inverse_scale = 0.25;
  r.norm_buffer = norm_buffer.data();
  const auto applied = [&] {
    return reinterpret_cast<const unsigned char*>(&norm_buffer[kFlagsOffset])[0];
  };
  norm_buffer[kPartialsOffset] = 1.0;  // finite grads
  e->inner->step(r);
  CHECK(e->core->control.ptr != 0 && applied() == 1);
  CHECK(fk::state().launches.back().grad_scale == 0.25 && !fk::state().launches.back().skipped);
  CHECK(!fk::logged("read"));                   // nothing read back from the device during a step
  norm_buffer[kPartialsOffset] = std::nan("");  // a NaN grad
  e->inner->step(r);
  CHECK(fk::state().launches.back().skipped && applied() == 0);
  CHECK(e->inner->t() == 1);  // the skipped step did not count (read from the device)
  norm_buffer[kPartialsOffset] = 4.0;
  const float device_scale = 8.0f;
  r.scale_device = &device_scale;
  e->inner->step(r);
  CHECK(applied() == 1 && fk::state().launches.back().grad_scale == 0.125);
  CHECK(fk::state().launches.back().step == 2 && e->inner->t() == 2);
  StepRequest plain = request(*e, A);  // a plain step after them still counts on the device
  e->inner->step(plain);
  CHECK(e->inner->t() == 3);
}

}  // namespace

int main() {
  set_device_allocator(&host_alloc);
  test_upload_is_ordered_for_every_stream();
  test_capture_pins_and_keeps_setup_outside();
  test_in_flight_tables_are_not_evicted();
  test_concurrent_misses_keep_one_entry();
  test_t_counts_replays_and_reads_the_home_stream();
  test_wrapper_momentum_survives_inner_changes();
  test_launches_split_by_modifier();
  test_no_device_write_while_capturing();
  test_stream_switch_waits_for_the_previous_step();
  test_functional_capture_bakes_its_arguments();
  test_parameter_groups_launch_with_their_own_values();
  test_skip_nonfinite_keeps_t_on_the_device();
  std::printf("%s (%d failed checks)\n", failures ? "FAILED" : "OK", failures);
  return failures ? 1 : 0;
}
