/* kiln_math.h: float32 elementary functions written so that compilers vectorise loops over them
 * (no branches, only selects), accurate to about 2 ulp, with IEEE special cases (NaN in, NaN
 * out; overflow to inf; underflow to 0 below the smallest normal number).
 *
 * Part of kiln's C kernels (see kiln_kernels.h); header-only, static inline, C99.
 */
#ifndef KILN_MATH_H
#define KILN_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float kiln_bits_to_f(int32_t i) { float f; memcpy(&f, &i, 4); return f; }
static inline int32_t kiln_f_to_bits(float f) { int32_t i; memcpy(&i, &f, 4); return i; }

/* exp(x): x = n ln2 + r, |r| <= ln2 / 2, exp(r) by a degree-6 polynomial (Cephes), 2^n built in
 * the exponent bits in two halves so that n = 128 stays finite. */
static inline float kiln_expf(float x) {
    float xc = x > 88.72283f ? 88.72283f : x;
    xc = xc < -87.33654f ? -87.33654f : xc;
    xc = x != x ? 0.0f : xc;   /* NaN: converting it to int below would be undefined */
    float fn = floorf(xc * 1.44269504088896341f + 0.5f);
    float r = xc - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t n = (int32_t)fn;
    int32_t n1 = n / 2;
    int32_t n2 = n - n1;
    /* n is in [-126, 128], so both exponents are positive before the shift */
    float y = p * kiln_bits_to_f((int32_t)((uint32_t)(n1 + 127) << 23)) *
              kiln_bits_to_f((int32_t)((uint32_t)(n2 + 127) << 23));
    y = x > 88.72283f ? INFINITY : y;
    y = x < -87.33654f ? 0.0f : y;
    return x != x ? x : y;
}

/* log(x): x = 2^e m, m in [sqrt(1/2), sqrt(2)), log(m) by Cephes' polynomial. */
static inline float kiln_logf(float x) {
    int tiny = x < 1.17549435e-38f;            /* denormal: scale up first */
    float xs = tiny ? x * 8388608.0f : x;      /* 2^23 */
    int32_t bits = kiln_f_to_bits(xs);
    int32_t e = ((bits >> 23) & 0xff) - 126 - (tiny ? 23 : 0);
    float m = kiln_bits_to_f((bits & 0x007fffff) | 0x3f000000); /* [0.5, 1) */
    int small = m < 0.707106781186547524f;
    e = small ? e - 1 : e;
    m = small ? m + m - 1.0f : m - 1.0f;
    float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    float fe = (float)e;
    y += fe * -2.12194440e-4f;
    y += -0.5f * z;
    float r = m + y + fe * 0.693359375f;
    r = x == 0.0f ? -INFINITY : r;
    r = x < 0.0f ? NAN : r;
    r = x == INFINITY ? x : r;
    return x != x ? x : r;
}

/* tanh(x): odd polynomial below 0.625, 1 - 2 / (exp(2|x|) + 1) above (Cephes). */
static inline float kiln_tanhf(float x) {
    float a = fabsf(x);
    float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    float small = x + x * z * p;
    float big = 1.0f - 2.0f / (kiln_expf(a + a) + 1.0f);
    big = x < 0.0f ? -big : big;
    float r = a < 0.625f ? small : big;
    return x != x ? x : r;
}

/* 1 / (1 + exp(-x)), as NumPy computes it in kiln's reference. */
static inline float kiln_sigmoidf(float x) { return 1.0f / (1.0f + kiln_expf(-x)); }

/* NumPy's maximum/minimum: NaN in either operand gives NaN. */
static inline float kiln_maxf(float a, float b) {
    float m = a >= b ? a : b;     /* two selects, no short circuit: compilers vectorise it */
    return a != a ? a : m;
}
static inline float kiln_minf(float a, float b) {
    float m = a <= b ? a : b;
    return a != a ? a : m;
}
static inline double kiln_max(double a, double b) { return (a != a || a >= b) ? a : b; }
static inline double kiln_min(double a, double b) { return (a != a || a <= b) ? a : b; }

/* max(x, 0) with NaN kept (NumPy's maximum(x, 0)). */
static inline float kiln_reluf(float x) { return x < 0.0f ? 0.0f : x; }

/* log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)) (NumPy's logaddexp(x, 0)). */
static inline float kiln_softreluf(float x) {
    return kiln_maxf(x, 0.0f) + log1pf(kiln_expf(-fabsf(x)));
}

static inline float kiln_softsignf(float x) { return x / (1.0f + fabsf(x)); }

/* float64 versions of the activations (libm's exp/log1p; rarely on a hot path) */
static inline double kiln_max0(double x) { return x < 0.0 ? 0.0 : x; }
static inline double kiln_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static inline double kiln_softrelu(double x) {
    return (x != x || x >= 0.0 ? x : 0.0) + log1p(exp(-fabs(x)));
}
static inline double kiln_softsign(double x) { return x / (1.0 + fabs(x)); }

/* NumPy's sign: -1, 0 or 1, NaN for NaN. */
static inline float kiln_signf(float x) {
    return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x);
}
static inline double kiln_sign(double x) { return x > 0.0 ? 1.0 : (x < 0.0 ? -1.0 : x); }

/* NumPy's remainder (floored modulo: the result takes the divisor's sign). */
static inline float kiln_modf_py(float a, float b) {
    float r = fmodf(a, b);
    return (r != 0.0f && ((r < 0.0f) != (b < 0.0f))) ? r + b : r;
}
static inline double kiln_mod_py(double a, double b) {
    double r = fmod(a, b);
    return (r != 0.0 && ((r < 0.0) != (b < 0.0))) ? r + b : r;
}
static inline long long kiln_mod_int(long long a, long long b) {
    if (b == 0) return 0;
    long long r = a % b;
    return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}
static inline long long kiln_floordiv_int(long long a, long long b) {
    if (b == 0) return 0;
    long long q = a / b;
    return (q * b != a && ((a < 0) != (b < 0))) ? q - 1 : q;
}

#endif /* KILN_MATH_H */
