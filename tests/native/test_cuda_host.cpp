// The CUDA backend's host logic (tables.cpp, step_engine.cpp) against the fake runtime of
// fake_runtime.cpp: ordering of tables across streams and captures, eviction, concurrent
// misses, t and the control blocks of captured steps. Built and run by
// tests/test_cuda_host_logic.py; prints one line per failed check and exits non-zero.
#include "host_test_support.h"

using namespace host_test;

namespace {

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
