/* Bandwidth probe for the benchmark ceiling (compiled at run time by bench/ceiling.py).
 *
 * One pass over n elements of n_rw read-and-written streams and n_ro read-only streams, each
 * float32 (type 0) or float16 (type 1), exactly the access pattern of an update rule:
 *     in = sum_j ro[j][i];   rw[k][i] += 1e-7f * in
 * The pass is split into L1-sized blocks; within a block every stream is walked by its own
 * vectorisable loop (known type, restrict pointers), blocks are shared out statically over
 * OpenMP threads, so each thread streams one contiguous stretch of every array. */
#include <stdint.h>

#define BLK 1024

static void add_in(float* restrict acc, const void* src, int type, int64_t lo, int64_t len) {
  if (type == 0) {
    const float* restrict x = (const float*)src + lo;
    for (int64_t i = 0; i < len; ++i) acc[i] += x[i];
  } else {
    const _Float16* restrict x = (const _Float16*)src + lo;
    for (int64_t i = 0; i < len; ++i) acc[i] += (float)x[i];
  }
}

static void update(void* dst, int type, const float* restrict acc, int64_t lo, int64_t len) {
  const float c = 1e-7f;
  if (type == 0) {
    float* restrict y = (float*)dst + lo;
    for (int64_t i = 0; i < len; ++i) y[i] = y[i] + c * acc[i];
  } else {
    _Float16* restrict y = (_Float16*)dst + lo;
    for (int64_t i = 0; i < len; ++i) y[i] = (_Float16)((float)y[i] + c * acc[i]);
  }
}

void fub_stream(int64_t n, int n_rw, void* const* rw, const int* rw_type, int n_ro,
                const void* const* ro, const int* ro_type, int num_threads) {
  const int64_t n_blocks = (n + BLK - 1) / BLK;
#pragma omp parallel num_threads(num_threads)
  {
    float acc[BLK] __attribute__((aligned(64)));
#pragma omp for schedule(static)
    for (int64_t b = 0; b < n_blocks; ++b) {
      const int64_t lo = b * BLK;
      const int64_t len = (n - lo) < BLK ? (n - lo) : BLK;
      for (int64_t i = 0; i < len; ++i) acc[i] = 0.0f;
      for (int j = 0; j < n_ro; ++j) add_in(acc, ro[j], ro_type[j], lo, len);
      for (int k = 0; k < n_rw; ++k) update(rw[k], rw_type[k], acc, lo, len);
    }
  }
}
