/* kk_simd.h: portable SIMD vectors for the kernels (internal, not part of the API).
 *
 * GCC and Clang vector extensions: one `kk_vf` holds KK_VLEN floats, 16 with AVX-512, 8 with
 * AVX, 4 otherwise; the compiler maps arithmetic on it to the widest instructions the build
 * targets (-march=native). Loads and stores are unaligned.
 */
#ifndef KK_SIMD_H
#define KK_SIMD_H

#include <math.h>
#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif

#if defined(__AVX512F__)
#define KK_VBYTES 64
#elif defined(__AVX__)
#define KK_VBYTES 32
#else
#define KK_VBYTES 16
#endif
#define KK_VLEN (KK_VBYTES / 4)

typedef float kk_vf __attribute__((vector_size(KK_VBYTES)));
typedef float kk_vf_u __attribute__((vector_size(KK_VBYTES), aligned(4), may_alias));

typedef int kk_vi __attribute__((vector_size(KK_VBYTES)));

static inline kk_vf kk_load(const float *p) { return *(const kk_vf_u *)p; }
static inline void kk_store(float *p, kk_vf v) { *(kk_vf_u *)p = v; }
static inline kk_vf kk_splat(float x) { return (kk_vf){0} + x; }

/* The first n (0 < n <= KK_VLEN) floats at p as a vector (the other lanes zero), and the first
 * n lanes of v stored at p; the memory past p + n is not touched (masked instructions with
 * AVX-512 and AVX, a copy otherwise). */
#if defined(__AVX512F__)
static inline kk_vf kk_load_n(const float *p, long n) {
    return (kk_vf)_mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1u), p);
}
static inline void kk_store_n(float *p, kk_vf v, long n) {
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), (__m512)v);
}
#elif defined(__AVX__)
static inline __m256i kk_mask_n(long n) {   /* lanes i < n set (AVX has no integer compare) */
    __m256 lane = _mm256_setr_ps(0.0f, 1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f, 7.0f);
    return _mm256_castps_si256(_mm256_cmp_ps(lane, _mm256_set1_ps((float)n), _CMP_LT_OQ));
}
static inline kk_vf kk_load_n(const float *p, long n) {
    return (kk_vf)_mm256_maskload_ps(p, kk_mask_n(n));
}
static inline void kk_store_n(float *p, kk_vf v, long n) {
    _mm256_maskstore_ps(p, kk_mask_n(n), (__m256)v);
}
#else
static inline kk_vf kk_load_n(const float *p, long n) {
    kk_vf v = kk_splat(0.0f);
    for (long i = 0; i < n; i++) v[i] = p[i];
    return v;
}
static inline void kk_store_n(float *p, kk_vf v, long n) {
    for (long i = 0; i < n; i++) p[i] = v[i];
}
#endif

static inline float kk_hsum(kk_vf v) {
    float s = 0.0f;
    for (int i = 0; i < KK_VLEN; i++) s += v[i];
    return s;
}

/* The sums of four vectors, as four floats. */
static inline void kk_hsum4(kk_vf a0, kk_vf a1, kk_vf a2, kk_vf a3, float *out) {
#if defined(__AVX512F__)
    __m512 x0 = _mm512_add_ps(_mm512_unpacklo_ps((__m512)a0, (__m512)a1),
                              _mm512_unpackhi_ps((__m512)a0, (__m512)a1));
    __m512 x1 = _mm512_add_ps(_mm512_unpacklo_ps((__m512)a2, (__m512)a3),
                              _mm512_unpackhi_ps((__m512)a2, (__m512)a3));
    __m512 y = _mm512_add_ps(_mm512_shuffle_ps(x0, x1, 0x44), _mm512_shuffle_ps(x0, x1, 0xEE));
    __m128 s = _mm_add_ps(_mm_add_ps(_mm512_extractf32x4_ps(y, 0), _mm512_extractf32x4_ps(y, 1)),
                          _mm_add_ps(_mm512_extractf32x4_ps(y, 2), _mm512_extractf32x4_ps(y, 3)));
    _mm_storeu_ps(out, s);
#elif defined(__AVX__)
    __m256 x0 = _mm256_hadd_ps((__m256)a0, (__m256)a1);
    __m256 x1 = _mm256_hadd_ps((__m256)a2, (__m256)a3);
    __m256 y = _mm256_hadd_ps(x0, x1);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(y), _mm256_extractf128_ps(y, 1));
    _mm_storeu_ps(out, s);
#else
    out[0] = kk_hsum(a0);
    out[1] = kk_hsum(a1);
    out[2] = kk_hsum(a2);
    out[3] = kk_hsum(a3);
#endif
}

/* sum of x[0:n] with 2 vector accumulators */
static inline float kk_sum(const float *x, long n) {
    kk_vf a0 = kk_splat(0.0f), a1 = kk_splat(0.0f);
    long j = 0;
    for (; j + 2 * KK_VLEN <= n; j += 2 * KK_VLEN) {
        a0 += kk_load(x + j);
        a1 += kk_load(x + j + KK_VLEN);
    }
    float s = kk_hsum(a0 + a1);
    for (; j < n; j++) s += x[j];
    return s;
}

/* sum of (x - m)^2 over x[0:n] */
static inline float kk_sum_sq_dev(const float *x, long n, float m) {
    kk_vf a0 = kk_splat(0.0f), a1 = kk_splat(0.0f), mv = kk_splat(m);
    long j = 0;
    for (; j + 2 * KK_VLEN <= n; j += 2 * KK_VLEN) {
        kk_vf t0 = kk_load(x + j) - mv, t1 = kk_load(x + j + KK_VLEN) - mv;
        a0 += t0 * t0;
        a1 += t1 * t1;
    }
    float s = kk_hsum(a0 + a1);
    for (; j < n; j++) s += (x[j] - m) * (x[j] - m);
    return s;
}

/* max of x[0:n] * scale (NaN if any is NaN, -inf for n == 0) */
static inline float kk_max_scaled(const float *x, long n, float scale) {
    kk_vf m = kk_splat(-INFINITY), sv = kk_splat(scale);
    long j = 0;
    for (; j + KK_VLEN <= n; j += KK_VLEN) {
        kk_vf v = kk_load(x + j) * sv;
        kk_vi take = (v > m) | (v != v);
        m = (kk_vf)(((kk_vi)v & take) | ((kk_vi)m & ~take));
    }
    float r = -INFINITY;
    for (int i = 0; i < KK_VLEN; i++) r = (m[i] != m[i] || m[i] > r) ? m[i] : r;
    for (; j < n; j++) {
        float v = x[j] * scale;
        r = (v != v || v > r) ? v : r;
    }
    return r;
}

#define KK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define KK_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif /* KK_SIMD_H */
