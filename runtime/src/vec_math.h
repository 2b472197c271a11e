/* vec_math.h: exp, sigmoid and tanh on whole SIMD vectors (kk_simd.h's kk_vf), for the
 * runtime's activation epilogues.
 *
 * Why: kiln_math.h's scalar functions are written to be auto-vectorised, but GCC 12 does not
 * vectorise loops over them (floorf and the memcpy bit casts stop it: `-fopt-info-vec-missed`
 * says "no vectype"), so a sigmoid over 4704 floats takes ~40 us. These are the same Cephes
 * polynomials written with vector operations: ~0.3 ns per element. Same special cases: NaN in,
 * NaN out; exp overflows to inf above 88.72 and is 0 below -87.34.
 */
#ifndef KILN_VEC_MATH_H
#define KILN_VEC_MATH_H

#include "../kernels/kk_simd.h"

static inline kk_vf vm_select(kk_vi mask, kk_vf a, kk_vf b) {
    return (kk_vf)(((kk_vi)a & mask) | ((kk_vi)b & ~mask));
}

static inline kk_vf vm_exp(kk_vf x) {
    const kk_vf hi = kk_splat(88.72283f), lo = kk_splat(-87.33654f);
    kk_vi nan = x != x;
    kk_vf xc = vm_select(x > hi, hi, x);
    xc = vm_select(xc < lo, lo, xc);
    xc = vm_select(nan, kk_splat(0.0f), xc);
    /* n = round(x / ln 2) by the 1.5 * 2^23 trick (exact for |x / ln 2| < 2^22) */
    const kk_vf magic = kk_splat(12582912.0f);
    kk_vf fn = (xc * 1.44269504088896341f + magic) - magic;
    kk_vf r = xc - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    kk_vf p = kk_splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    kk_vi n = __builtin_convertvector(fn, kk_vi);
    kk_vi n1 = n >> 1, n2 = n - n1; /* 2^n in two halves so that n = 128 stays finite */
    kk_vf y = p * (kk_vf)((n1 + 127) << 23) * (kk_vf)((n2 + 127) << 23);
    y = vm_select(x > hi, kk_splat(__builtin_inff()), y);
    y = vm_select(x < lo, kk_splat(0.0f), y);
    return vm_select(nan, x, y);
}

static inline kk_vf vm_sigmoid(kk_vf x) { return 1.0f / (1.0f + vm_exp(-x)); }

static inline kk_vf vm_tanh(kk_vf x) {
    kk_vi neg = x < 0.0f;
    kk_vf a = vm_select(neg, -x, x);
    kk_vf z = x * x;
    kk_vf p = kk_splat(-5.70498872745e-3f);
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    kk_vf small = x + x * z * p;
    kk_vf big = 1.0f - 2.0f / (vm_exp(a + a) + 1.0f);
    big = vm_select(neg, -big, big);
    kk_vf r = vm_select(a < 0.625f, small, big);
    return vm_select(x != x, x, r);
}

static inline kk_vf vm_relu(kk_vf x) { return vm_select(x < 0.0f, kk_splat(0.0f), x); }

/* act: enum kiln_act (0 none, 1 relu, 2 sigmoid, 3 tanh); others are not handled here */
static inline kk_vf vm_act(kk_vf x, int act) {
    switch (act) {
    case 1: return vm_relu(x);
    case 2: return vm_sigmoid(x);
    case 3: return vm_tanh(x);
    default: return x;
    }
}

#endif /* KILN_VEC_MATH_H */
