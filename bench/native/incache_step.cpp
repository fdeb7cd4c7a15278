// In-cache timing of one CPU kernel step, with no Python in the way: the per-element cost
// (ns/element, best of 15 rounds) of a rule on a tensor small enough to stay in L1/L2, for
// float32, bfloat16 and int8 state. It shows compute cost, which the streaming benchmarks
// (bench/compact_state.py) hide behind memory; use it to compare kernel variants, not to
// claim speed-ups (those are measured by the benchmarks in bench/ and committed).
// Build and run: bench/native/build.sh (see bench/README.md).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "../rules/quantize.h"
#include "step_plan.h"

namespace fusedupdates::cpu::FU_DRIVER_ISA_NS {
const KernelTable& kernel_table();
}

using namespace fusedupdates;
using namespace fusedupdates::cpu;

namespace {

StateFormat format_named(const char* name) {
  if (!std::strcmp(name, "float32")) return StateFormat::kFull;
  if (!std::strcmp(name, "bfloat16")) return StateFormat::kBFloat16;
  if (!std::strcmp(name, "int8")) return StateFormat::kInt8;
  std::fprintf(stderr, "unknown state dtype %s (float32, bfloat16, int8)\n", name);
  std::exit(2);
}

size_t state_bytes(StateFormat f) {
  return f == StateFormat::kFull ? 4 : f == StateFormat::kBFloat16 ? 2 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s STATE_DTYPE [numel=65536] [steps=3000] [threads=1] [rule=4]\n",
                 argv[0]);
    return 2;
  }
  const StateFormat format = format_named(argv[1]);
  const int64_t n = argc > 2 ? std::atoll(argv[2]) : 65536;
  const int steps = argc > 3 ? std::atoi(argv[3]) : 3000;
  const int threads = argc > 4 ? std::atoi(argv[4]) : 1;
  const int rule = argc > 5 ? std::atoi(argv[5]) : static_cast<int>(RuleId::kAdam);
  if (n < 1 || steps < 1 || threads < 1 || rule < 0 || rule >= kNumRules) {
    std::fprintf(stderr, "numel, steps and threads must be positive, rule in 0..%d\n",
                 kNumRules - 1);
    return 2;
  }

  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> param(n), grad(n);
  for (float& x : param) x = normal(rng);
  for (float& x : grad) x = 0.01f * normal(rng);
  // Zeroed states, as a new updater's; the warm-up steps give them non-zero values.
  std::vector<std::vector<uint8_t>> states(kMaxStates,
                                           std::vector<uint8_t>(n * state_bytes(format)));
  std::vector<std::vector<float>> scales(kMaxStates, std::vector<float>(quant_blocks(n)));

  StepPlan plan{};
  plan.rule = static_cast<RuleId>(rule);
  plan.dtype = DType::kFloat32;
  plan.state_format = format;
  plan.hyper.learning_rate = 1e-3;
  plan.hyper.beta1 = 0.9;
  plan.hyper.beta2 = 0.999;
  plan.hyper.epsilon = 1e-8;
  TensorSlot slot{};
  slot.param = param.data();
  slot.grad = grad.data();
  slot.numel = n;
  for (int j = 0; j < kMaxStates; ++j) {
    slot.state[j] = states[j].data();
    slot.scales[j] = scales[j].data();
  }
  plan.tensors.push_back(slot);

  const KernelTable& kernels = FU_DRIVER_ISA_NS::kernel_table();
  for (int i = 0; i < 50; ++i) {
    plan.hyper.step += 1;
    kernels.apply_step(plan, threads);
  }
  double best_ns = 1e30;
  for (int round = 0; round < 15; ++round) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i) {
      plan.hyper.step += 1;
      kernels.apply_step(plan, threads);
    }
    const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
    best_ns = std::min(best_ns, seconds.count() / steps / n * 1e9);
  }
  double checksum = 0;  // also keeps the compiler from dropping the steps
  for (float x : param) checksum += x;
  std::printf("%s %s state, rule %d, %lld elements, %d thread(s): %.3f ns/element (sum %.6f)\n",
              kernels.isa, argv[1], rule, static_cast<long long>(n), threads, best_ns, checksum);
  return 0;
}
