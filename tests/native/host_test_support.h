// What the native host tests share (test_cuda_host.cpp, test_cuda_host_steps.cpp): the check
// macro and failure count, a host allocator that records what it gives out, fake streams, and
// a rule stepper with a momentum wrapper over two small float32 tensors.
#pragma once
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

namespace host_test {

inline int failures = 0;
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
inline std::vector<Allocation> allocations;
inline int frees = 0;
inline std::function<void()> on_alloc;  // a test's hook into the allocator (threads)

inline DeviceMemory host_alloc(std::size_t bytes, int, Stream stream) {
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

inline std::string bytes_of(uint64_t tag) {  // a distinct 16-byte table
  std::string s(16, '\0');
  std::memcpy(s.data(), &tag, sizeof tag);
  return s;
}

inline const Stream kSetup = setup_stream(0);
inline const Stream A = fk::stream(1), B = fk::stream(2), C = fk::stream(3);

inline void fresh() {
  fk::reset();
  allocations.clear();
  frees = 0;
  on_alloc = nullptr;
}

inline bool waited(Stream stream, Stream on) {
  for (const fk::Wait& w : fk::state().waits)
    if (w.stream == stream && w.on == on) return true;
  return false;
}

struct Engines {
  std::shared_ptr<StepCore> core;
  std::unique_ptr<StepEngine> inner, wrapper;
  std::vector<double> memory = std::vector<double>(64, 0.0);
  const void* grads[2];
};

inline std::unique_ptr<Engines> make_engines(bool functional = false) {
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

inline StepRequest request(Engines& e, Stream s) {
  StepRequest r;
  r.grads = e.grads;
  r.stream.stream = s;
  return r;
}

// test_cuda_host_steps.cpp
void test_parameter_groups_launch_with_their_own_values();
void test_skip_nonfinite_keeps_t_on_the_device();

}  // namespace host_test
