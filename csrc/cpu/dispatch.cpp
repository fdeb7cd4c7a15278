#include "dispatch.h"

#include <omp.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace fusedupdates::cpu {

#define FU_DECLARE_ISA(ns)           \
  namespace ns {                     \
  const KernelTable& kernel_table(); \
  }
FU_DECLARE_ISA(isa_baseline)
#if defined(FU_HAVE_ISA_X86)
FU_DECLARE_ISA(isa_avx2)
FU_DECLARE_ISA(isa_avx512)
FU_DECLARE_ISA(isa_avx512_bf16)
#endif

namespace {

// Highest instruction set the CPU (and the OS, for the AVX register state) supports,
// capped by FUSEDUPDATES_SIMD=baseline|avx2|avx512|avx512_bf16 so every path can be tested
// anywhere (avx512_bf16 differs from avx512 only in how float32 is narrowed to bfloat16).
const KernelTable& select_kernels() {
  const char* forced = std::getenv("FUSEDUPDATES_SIMD");
  const auto allowed = [&](const char* name) {
    return !forced || !*forced || std::strcmp(forced, name) == 0;
  };
#if defined(FU_HAVE_ISA_X86)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("bmi2");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512dq");
  const bool avx512_bf16 = avx512 && __builtin_cpu_supports("avx512bf16");
  if (avx512_bf16 && allowed("avx512_bf16")) return isa_avx512_bf16::kernel_table();
  if (avx512 && (allowed("avx512") || (forced && std::strcmp(forced, "avx512_bf16") == 0)))
    return isa_avx512::kernel_table();
  if (avx2 && (allowed("avx2") || (forced && std::strncmp(forced, "avx512", 6) == 0)))
    return isa_avx2::kernel_table();
#endif
  return isa_baseline::kernel_table();
}

std::atomic<int> g_num_threads{0};

}  // namespace

const KernelTable& kernels() {
  static const KernelTable& table = select_kernels();
  return table;
}

int num_threads() {
  int n = g_num_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : omp_get_max_threads();  // omp_get_max_threads honours OMP_NUM_THREADS
}

int max_threads() {
  const int procs = omp_get_num_procs();
  return procs * 8 > 64 ? procs * 8 : 64;
}

void set_num_threads(int n) { g_num_threads.store(n, std::memory_order_relaxed); }

bool openmp_enabled() {
#if defined(_OPENMP)
  return true;
#else
  return false;
#endif
}

}  // namespace fusedupdates::cpu
