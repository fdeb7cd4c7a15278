/* Bandwidth probe for the benchmark ceiling (compiled at run time by bench/ceiling.py).
 *
 * One pass over n elements of n_rw read-and-written streams and n_ro read-only streams, each
 * float32 (type 0) or float16 (type 1), exactly the access pattern of an update rule:
 *     in = sum_j ro[j][i];   rw[k][i] += 1e-7f * in
 * The pass is split into L1-sized blocks; within a block every stream is walked by its own
 * vectorisable loop (known type, restrict pointers), blocks are shared out statically over
 * OpenMP threads, so each thread streams one contiguous stretch of every array. float16 goes
 * through F16C conversions when the compiler targets them. */
#include <stdint.h>
#if defined(__F16C__) && defined(__AVX__)
#include <immintrin.h>
#define FUB_F16C 1
#endif

#ifndef BLK
#define BLK 512
#endif

static void add_in(float* restrict acc, const void* src, int type, int64_t lo, int64_t len) {
  int64_t i = 0;
  if (type == 0) {
    const float* restrict x = (const float*)src + lo;
    for (; i < len; ++i) acc[i] += x[i];
    return;
  }
  const uint16_t* restrict x = (const uint16_t*)src + lo;
#ifdef FUB_F16C
  for (; i + 8 <= len; i += 8) {
    __m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(x + i)));
    _mm256_storeu_ps(acc + i, _mm256_add_ps(_mm256_loadu_ps(acc + i), v));
  }
#endif
  for (; i < len; ++i) acc[i] += (float)((const _Float16*)x)[i];
}

static void update(void* dst, int type, const float* restrict acc, int64_t lo, int64_t len) {
  const float c = 1e-7f;
  int64_t i = 0;
  if (type == 0) {
    float* restrict y = (float*)dst + lo;
    for (; i < len; ++i) y[i] = y[i] + c * acc[i];
    return;
  }
  uint16_t* restrict y = (uint16_t*)dst + lo;
#ifdef FUB_F16C
  const __m256 cv = _mm256_set1_ps(c);
  for (; i + 8 <= len; i += 8) {
    __m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(y + i)));
    v = _mm256_add_ps(v, _mm256_mul_ps(cv, _mm256_loadu_ps(acc + i)));
    _mm_storeu_si128((__m128i*)(y + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
#endif
  for (; i < len; ++i) {
    _Float16* h = (_Float16*)y;
    h[i] = (_Float16)((float)h[i] + c * acc[i]);
  }
}

void fub_stream(int64_t n, int n_rw, void* const* rw, const int* rw_type, int n_ro,
                const void* const* ro, const int* ro_type, int num_threads) {
  const int64_t n_blocks = (n + BLK - 1) / BLK;
  /* Like the library's kernels: no threads below 32K elements (forking costs more). */
#pragma omp parallel num_threads(num_threads) if (n >= 32768)
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
