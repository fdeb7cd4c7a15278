// The few vector operations the 8-bit block codec (compact_simd.h) and its pipelined loop
// (compact_pipeline.h) are written in, for the two instruction sets that have them: AVX-512
// (16 lanes, with masks and ternary logic) and AVX2 (8 lanes, the masks spelt as compares and
// and-nots). The codec is written once over Vec; each operation here is the one or two
// instructions the AVX-512 codec used before Vec (objdump of its adam int8 kernel: the same
// instruction mix, apart from moves, register allocation and order).
#pragma once
#include <cstdint>

#ifndef FU_ISA_NS
#error "included only by the per-instruction-set kernels (FU_ISA_NS names their namespace)"
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#define FU_COMPACT_SIMD 512
#elif defined(__AVX2__)
#include <immintrin.h>
#define FU_COMPACT_SIMD 256
#endif

#if defined(FU_COMPACT_SIMD)

namespace fusedupdates::cpu {
inline namespace FU_ISA_NS {  // see storage.h

#define FU_VEC_OP [[gnu::always_inline]] static

#if FU_COMPACT_SIMD == 512
struct Vec {
  using F = __m512;
  using I = __m512i;
  static constexpr int kLanes = 16;
  // Elements per call of the rule's loop in compact_pipeline.h (for a rule of `states` 8-bit
  // states): one vector.
  static constexpr int update_width(int /*states*/) { return kLanes; }

  // kLanes codes, sign- or zero-extended to int32.
  FU_VEC_OP I load_codes_signed(const uint8_t* c) {
    return _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c)));
  }
  FU_VEC_OP I load_codes_unsigned(const uint8_t* c) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c)));
  }
  FU_VEC_OP I load_bits(const float* x) { return _mm512_loadu_si512(x); }
  FU_VEC_OP I load_aligned_bits(const float* x) { return _mm512_load_si512(x); }
  FU_VEC_OP void store_aligned(float* x, F v) { _mm512_store_ps(x, v); }
  FU_VEC_OP void store(float* x, F v) { _mm512_storeu_ps(x, v); }

  FU_VEC_OP I set1(int32_t a) { return _mm512_set1_epi32(a); }
  FU_VEC_OP F set1(float a) { return _mm512_set1_ps(a); }
  FU_VEC_OP I zero() { return _mm512_setzero_si512(); }
  FU_VEC_OP F as_float(I a) { return _mm512_castsi512_ps(a); }
  FU_VEC_OP I as_int(F a) { return _mm512_castps_si512(a); }

  template <int n>
  FU_VEC_OP I shift_left(I a) {
    return _mm512_slli_epi32(a, n);
  }
  template <int n>
  FU_VEC_OP I shift_right_logical(I a) {
    return _mm512_srli_epi32(a, n);
  }
  template <int n>
  FU_VEC_OP I shift_right_arithmetic(I a) {
    return _mm512_srai_epi32(a, n);
  }
  FU_VEC_OP I add(I a, I b) { return _mm512_add_epi32(a, b); }
  FU_VEC_OP I bit_and(I a, I b) { return _mm512_and_si512(a, b); }
  FU_VEC_OP F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  FU_VEC_OP I max_unsigned(I a, I b) { return _mm512_max_epu32(a, b); }
  FU_VEC_OP uint32_t reduce_max_unsigned(I a) {
    return static_cast<uint32_t>(_mm512_reduce_max_epu32(a));
  }

  // Bits of `from` where `mask` has them, the rest from `otherwise`.
  FU_VEC_OP I select_bits(I mask, I from, I otherwise) {
    return _mm512_ternarylogic_epi32(otherwise, mask, from, 0xB8);  // B ? C : A
  }
  // c != 0 ? c + addend : 0, per lane.
  FU_VEC_OP I add_where_nonzero(I c, I addend) {
    return _mm512_maskz_add_epi32(_mm512_test_epi32_mask(c, c), c, addend);
  }
  // c != 0 ? x * m : 0, per lane.
  FU_VEC_OP F mul_where_nonzero(I c, F x, F m) {
    return _mm512_maskz_mul_ps(_mm512_test_epi32_mask(c, c), x, m);
  }
  // c != 0 ? c | (b & bits) : c, per lane.
  FU_VEC_OP I or_masked_where_nonzero(I c, I b, I bits) {
    return _mm512_mask_ternarylogic_epi32(c, _mm512_test_epi32_mask(c, c), b, bits,
                                          0xF8);  // A | (B & C)
  }

  // 64 int32 codes (kLanes per vector, each 0..255 or negative) to 64 bytes in order: the
  // saturating packs make a negative code 0 and work within 128-bit lanes, so that lane i
  // then holds dwords i of v[0..3]; one permutation puts them back in order.
  static constexpr int kVectorsPerLine = 64 / kLanes;
  FU_VEC_OP void store_codes64(uint8_t* out, const I (&v)[kVectorsPerLine]) {
    const __m512i bytes =
        _mm512_packus_epi16(_mm512_packus_epi32(v[0], v[1]), _mm512_packus_epi32(v[2], v[3]));
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_storeu_si512(out, _mm512_permutexvar_epi32(order, bytes));
  }
  // Whether any of the n (a multiple of 64) bytes is `code`.
  FU_VEC_OP bool any_byte_is(const uint8_t* bytes, int64_t n, uint8_t code) {
    const __m512i needle = _mm512_set1_epi8(static_cast<char>(code));
    __mmask64 any = 0;
    for (int64_t i = 0; i < n; i += 64)
      any |= _mm512_cmpeq_epi8_mask(_mm512_loadu_si512(bytes + i), needle);
    return any != 0;
  }
};
#else   // AVX2
struct Vec {
  using F = __m256;
  using I = __m256i;
  static constexpr int kLanes = 8;
  // Elements per call of the rule's loop in compact_pipeline.h (for a rule of `states` 8-bit
  // states). GCC 12 left the rule's loop over one 8-lane vector scalar (in cache, adam int8
  // ~3.6 ns/element); over 16, 32 and 64 elements it vectorised it. Measured with bench/native
  // (16K elements, one thread, the 2-core Zen 3 VM), ns/element for 16 / 32 / 64: adam
  // ~1.05 / ~0.95 / ~0.98, adadelta ~1.06 / ~1.02 / ~1.04, adagrad ~0.49 all three, amsgrad
  // (three states) ~1.52 / ~1.5-1.9 / ~1.36.
  static constexpr int update_width(int states) { return states >= 3 ? 64 : 32; }

  FU_VEC_OP I load_codes_signed(const uint8_t* c) {
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c)));
  }
  FU_VEC_OP I load_codes_unsigned(const uint8_t* c) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c)));
  }
  FU_VEC_OP I load_bits(const float* x) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
  }
  FU_VEC_OP I load_aligned_bits(const float* x) {
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(x));
  }
  FU_VEC_OP void store_aligned(float* x, F v) { _mm256_store_ps(x, v); }
  FU_VEC_OP void store(float* x, F v) { _mm256_storeu_ps(x, v); }

  FU_VEC_OP I set1(int32_t a) { return _mm256_set1_epi32(a); }
  FU_VEC_OP F set1(float a) { return _mm256_set1_ps(a); }
  FU_VEC_OP I zero() { return _mm256_setzero_si256(); }
  FU_VEC_OP F as_float(I a) { return _mm256_castsi256_ps(a); }
  FU_VEC_OP I as_int(F a) { return _mm256_castps_si256(a); }

  template <int n>
  FU_VEC_OP I shift_left(I a) {
    return _mm256_slli_epi32(a, n);
  }
  template <int n>
  FU_VEC_OP I shift_right_logical(I a) {
    return _mm256_srli_epi32(a, n);
  }
  template <int n>
  FU_VEC_OP I shift_right_arithmetic(I a) {
    return _mm256_srai_epi32(a, n);
  }
  FU_VEC_OP I add(I a, I b) { return _mm256_add_epi32(a, b); }
  FU_VEC_OP I bit_and(I a, I b) { return _mm256_and_si256(a, b); }
  FU_VEC_OP F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  FU_VEC_OP I max_unsigned(I a, I b) { return _mm256_max_epu32(a, b); }
  FU_VEC_OP uint32_t reduce_max_unsigned(I a) {
    __m128i m = _mm_max_epu32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    m = _mm_max_epu32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(1, 0, 3, 2)));
    m = _mm_max_epu32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(2, 3, 0, 1)));
    return static_cast<uint32_t>(_mm_cvtsi128_si32(m));
  }

  // The constant operands fold (from & mask is computed at compile time): and-not, or.
  FU_VEC_OP I select_bits(I mask, I from, I otherwise) {
    return _mm256_or_si256(_mm256_andnot_si256(mask, otherwise), _mm256_and_si256(mask, from));
  }
  FU_VEC_OP I is_zero(I c) { return _mm256_cmpeq_epi32(c, _mm256_setzero_si256()); }
  FU_VEC_OP I add_where_nonzero(I c, I addend) {
    return _mm256_andnot_si256(is_zero(c), _mm256_add_epi32(c, addend));
  }
  FU_VEC_OP F mul_where_nonzero(I c, F x, F m) {
    return _mm256_andnot_ps(_mm256_castsi256_ps(is_zero(c)), _mm256_mul_ps(x, m));
  }
  FU_VEC_OP I or_masked_where_nonzero(I c, I b, I bits) {
    return _mm256_or_si256(c, _mm256_andnot_si256(is_zero(c), _mm256_and_si256(b, bits)));
  }

  // 64 int32 codes (8 vectors, each 0..255 or negative) to 64 bytes in order, 32 at a time:
  // the saturating packs (negative codes to 0) work within 128-bit lanes and leave dwords in
  // the order a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7; one permutation restores it.
  static constexpr int kVectorsPerLine = 64 / kLanes;
  FU_VEC_OP void store_codes64(uint8_t* out, const I (&v)[kVectorsPerLine]) {
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int h = 0; h < 2; ++h) {
      const I* q = v + 4 * h;
      const __m256i bytes =
          _mm256_packus_epi16(_mm256_packus_epi32(q[0], q[1]), _mm256_packus_epi32(q[2], q[3]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 32 * h),
                          _mm256_permutevar8x32_epi32(bytes, order));
    }
  }
  FU_VEC_OP bool any_byte_is(const uint8_t* bytes, int64_t n, uint8_t code) {
    const __m256i needle = _mm256_set1_epi8(static_cast<char>(code));
    __m256i any = _mm256_setzero_si256();
    for (int64_t i = 0; i < n; i += 32)
      any = _mm256_or_si256(
          any, _mm256_cmpeq_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(bytes + i)),
                                 needle));
    return _mm256_movemask_epi8(any) != 0;
  }
};
#endif  // AVX2

#undef FU_VEC_OP

}  // namespace FU_ISA_NS
}  // namespace fusedupdates::cpu

#endif  // FU_COMPACT_SIMD
