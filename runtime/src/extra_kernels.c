/* extra_kernels.c: see extra_kernels.h. Written for clarity first: the switch on the function
 * sits outside each loop so the loops stay simple enough to vectorise. The activations reuse
 * kiln_math.h (the shared kernels' float32 exp/log/tanh) so that results agree with them.
 */
#include "extra_kernels.h"
#include "vec_math.h"

#include "../kernels/kiln_kernels.h"

#include "../kernels/kiln_math.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define SELU_ALPHA 1.6732632423543772848170429916717f
#define SELU_LAMBDA 1.0507009873554804934193349852946f

static float round_half_even_to_f16(float x) {
    /* float32 -> nearest float16 -> float32 (the value a Cast to float16 leaves) */
    if (!(x == x) || isinf(x)) return x;
    float a = fabsf(x);
    if (a >= 65520.0f) return x > 0 ? INFINITY : -INFINITY;
    int e;
    frexpf(a, &e);                  /* a = m 2^e, m in [0.5, 1) */
    int q = e - 11;                 /* float16 keeps 11 significant bits */
    if (q < -24) q = -24;           /* subnormal float16 spacing 2^-24 */
    float step = ldexpf(1.0f, q);
    float r = rintf(a / step) * step;
    return x < 0 ? -r : r;
}

static float unary1(int fn, float v) {
    switch (fn) {
    case U_RELU: return kiln_reluf(v);
    case U_SIGMOID: return kiln_sigmoidf(v);
    case U_TANH: return kiln_tanhf(v);
    case U_SOFTRELU: return kiln_softreluf(v);
    case U_SOFTSIGN: return kiln_softsignf(v);
    case U_LOG_SIGMOID: return -kiln_softreluf(-v);
    case U_MISH: return v * kiln_tanhf(kiln_softreluf(v));
    case U_NEG: return -v;
    case U_ABS: return fabsf(v);
    case U_EXP: return expf(v);
    case U_EXPM1: return expm1f(v);
    case U_LOG: return logf(v);
    case U_LOG1P: return log1pf(v);
    case U_LOG2: return log2f(v);
    case U_LOG10: return log10f(v);
    case U_SQRT: return sqrtf(v);
    case U_RSQRT: return 1.0f / sqrtf(v);
    case U_SQUARE: return v * v;
    case U_CBRT: return cbrtf(v);
    case U_RCBRT: return 1.0f / cbrtf(v);
    case U_RECIP: return 1.0f / v;
    case U_SIN: return sinf(v);
    case U_COS: return cosf(v);
    case U_TAN: return tanf(v);
    case U_ASIN: return asinf(v);
    case U_ACOS: return acosf(v);
    case U_ATAN: return atanf(v);
    case U_SINH: return sinhf(v);
    case U_COSH: return coshf(v);
    case U_ASINH: return asinhf(v);
    case U_ACOSH: return acoshf(v);
    case U_ATANH: return atanhf(v);
    case U_SIGN: return kiln_signf(v);
    case U_FLOOR: return floorf(v);
    case U_CEIL: return ceilf(v);
    case U_RINT: return rintf(v);
    case U_TRUNC: return truncf(v);
    case U_ROUND: return roundf(v);
    case U_ERF: return erff(v);
    case U_LOGICAL_NOT: return v == 0.0f ? 1.0f : 0.0f;
    case U_TO_F16: return round_half_even_to_f16(v);
    case U_TO_BOOL: return v != 0.0f ? 1.0f : 0.0f;
    case U_DEGREES: return v * (float)(180.0 / 3.14159265358979323846);
    case U_RADIANS: return v * (float)(3.14159265358979323846 / 180.0);
    default: return v;
    }
}

void rtk_unary_f32(int fn, const float *x, float *y, long n) {
    long i;
    switch (fn) { /* the hot ones get their own loops */
    case U_RELU: for (i = 0; i < n; i++) y[i] = kiln_reluf(x[i]); return;
    case U_NEG: for (i = 0; i < n; i++) y[i] = -x[i]; return;
    case U_SQUARE: for (i = 0; i < n; i++) y[i] = x[i] * x[i]; return;
    case U_ABS: for (i = 0; i < n; i++) y[i] = fabsf(x[i]); return;
    case U_SQRT: for (i = 0; i < n; i++) y[i] = sqrtf(x[i]); return;
    case U_SIGMOID: for (i = 0; i < n; i++) y[i] = kiln_sigmoidf(x[i]); return;
    case U_TANH: for (i = 0; i < n; i++) y[i] = kiln_tanhf(x[i]); return;
    default: for (i = 0; i < n; i++) y[i] = unary1(fn, x[i]); return;
    }
}

void rtk_act_f32(int act, const float *x, float *y, long n) {
    if (act < KILN_ACT_RELU || act > KILN_ACT_TANH) {
        if (act != KILN_ACT_NONE) kiln_act_f32(x, y, n, act);
        else if (x != y) memmove(y, x, (size_t)n * sizeof(float));
        return;
    }
    long i = 0;
    for (; i + KK_VLEN <= n; i += KK_VLEN) kk_store(y + i, vm_act(kk_load(x + i), act));
    if (i < n) { /* the tail through a padded vector */
        float t[KK_VLEN] = {0};
        memcpy(t, x + i, (size_t)(n - i) * sizeof(float));
        kk_store(t, vm_act(kk_load(t), act));
        memcpy(y + i, t, (size_t)(n - i) * sizeof(float));
    }
}

static inline float binary1(int fn, float a, float b) {
    switch (fn) {
    case B_ADD: return a + b;
    case B_SUB: return a - b;
    case B_MUL: return a * b;
    case B_DIV: return a / b;
    case B_POW: return b == 2.0f ? a * a : powf(a, b);
    case B_MOD: return b == 0.0f ? NAN : kiln_modf_py(a, b);
    case B_MAX: return kiln_maxf(a, b);
    case B_MIN: return kiln_minf(a, b);
    case B_HYPOT: return hypotf(a, b);
    case B_ATAN2: return atan2f(a, b);
    case B_EQ: return a == b ? 1.0f : 0.0f;
    case B_NE: return a != b ? 1.0f : 0.0f;
    case B_GT: return a > b ? 1.0f : 0.0f;
    case B_GE: return a >= b ? 1.0f : 0.0f;
    case B_LT: return a < b ? 1.0f : 0.0f;
    case B_LE: return a <= b ? 1.0f : 0.0f;
    case B_AND: return (a != 0.0f && b != 0.0f) ? 1.0f : 0.0f;
    case B_OR: return (a != 0.0f || b != 0.0f) ? 1.0f : 0.0f;
    case B_XOR: return ((a != 0.0f) != (b != 0.0f)) ? 1.0f : 0.0f;
    default: return 0.0f;
    }
}

/* One row: n outputs, operand strides 0 or 1 (or anything: the general loop). */
#define ROW_LOOPS(EXPR)                                                                      \
    if (sa == 1 && sb == 1) {                                                                \
        for (long i = 0; i < n; i++) { float a = pa[i], b = pb[i]; y[i] = EXPR; }           \
    } else if (sa == 1 && sb == 0) {                                                         \
        float b = pb[0];                                                                     \
        for (long i = 0; i < n; i++) { float a = pa[i]; y[i] = EXPR; }                      \
    } else if (sa == 0 && sb == 1) {                                                         \
        float a = pa[0];                                                                     \
        for (long i = 0; i < n; i++) { float b = pb[i]; y[i] = EXPR; }                      \
    } else {                                                                                 \
        for (long i = 0; i < n; i++) { float a = pa[i * sa], b = pb[i * sb]; y[i] = EXPR; } \
    }

static void binary_row(int fn, const float *pa, long sa, const float *pb, long sb, float *y,
                       long n) {
    switch (fn) {
    case B_ADD: ROW_LOOPS(a + b) break;
    case B_SUB: ROW_LOOPS(a - b) break;
    case B_MUL: ROW_LOOPS(a * b) break;
    case B_DIV: ROW_LOOPS(a / b) break;
    case B_MAX: ROW_LOOPS(kiln_maxf(a, b)) break;
    case B_MIN: ROW_LOOPS(kiln_minf(a, b)) break;
    default: ROW_LOOPS(binary1(fn, a, b)) break;
    }
}

void rtk_scalar_f32(int fn, const float *x, float s, int rev, float *y, long n) {
    if (rev) binary_row(fn, &s, 0, x, 1, y, n);
    else binary_row(fn, x, 1, &s, 0, y, n);
}

void rtk_binary_f32(int fn, const float *a, const float *b, float *y, int ndim,
                    const long *dims, const long *sa, const long *sb) {
    long idx[16] = {0};
    long inner = dims[ndim - 1];
    long outer = 1;
    for (int i = 0; i < ndim - 1; i++) outer *= dims[i];
    const float *pa = a, *pb = b;
    for (long o = 0; o < outer; o++) {
        binary_row(fn, pa, sa[ndim - 1], pb, sb[ndim - 1], y + o * inner, inner);
        /* odometer over the outer axes */
        for (int k = ndim - 2; k >= 0; k--) {
            idx[k]++;
            pa += sa[k];
            pb += sb[k];
            if (idx[k] < dims[k]) break;
            pa -= sa[k] * dims[k];
            pb -= sb[k] * dims[k];
            idx[k] = 0;
        }
    }
}

void rtk_transpose_f32(const float *x, float *y, int ndim, const long *dims, const int *perm) {
    long xs[16] = {0}, ys_dims[16] = {0}, st[16] = {0}, idx[16] = {0};
    long s = 1;
    if (ndim <= 0) { y[0] = x[0]; return; }
    for (int i = ndim - 1; i >= 0; i--) { xs[i] = s; s *= dims[i]; }
    for (int i = 0; i < ndim; i++) { ys_dims[i] = dims[perm[i]]; st[i] = xs[perm[i]]; }
    long inner = ys_dims[ndim - 1], istride = st[ndim - 1];
    long outer = s / (inner ? inner : 1);
    const float *px = x;
    for (long o = 0; o < outer; o++) {
        float *py = y + o * inner;
        if (istride == 1) memcpy(py, px, (size_t)inner * sizeof(float));
        else for (long i = 0; i < inner; i++) py[i] = px[i * istride];
        for (int k = ndim - 2; k >= 0; k--) {
            idx[k]++;
            px += st[k];
            if (idx[k] < ys_dims[k]) break;
            px -= st[k] * ys_dims[k];
            idx[k] = 0;
        }
    }
}

void rtk_reduce_f32(int kind, const float *x, float *y, int ndim, const long *dims,
                    const int *reduced, double *acc) {
    /* output strides of each input axis (0 on reduced axes) */
    long ostride[16], idx[16] = {0}, total = 1, out_n = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        ostride[i] = reduced[i] ? 0 : out_n;
        if (!reduced[i]) out_n *= dims[i];
        total *= dims[i];
    }
    long count = total / (out_n ? out_n : 1);
    if (kind == RTK_MAX || kind == RTK_MIN) {
        for (long j = 0; j < out_n; j++) y[j] = kind == RTK_MAX ? -INFINITY : INFINITY;
    } else {
        for (long j = 0; j < out_n; j++) acc[j] = kind == RTK_PROD ? 1.0 : 0.0;
    }
    long inner = ndim ? dims[ndim - 1] : 1, is = ndim ? ostride[ndim - 1] : 0;
    long off = 0;
    for (long base = 0; base < total; base += inner) {
        const float *px = x + base;
        switch (kind) {
        case RTK_MAX:
            for (long i = 0; i < inner; i++) y[off + i * is] = kiln_maxf(y[off + i * is], px[i]);
            break;
        case RTK_MIN:
            for (long i = 0; i < inner; i++) y[off + i * is] = kiln_minf(y[off + i * is], px[i]);
            break;
        case RTK_PROD:
            for (long i = 0; i < inner; i++) acc[off + i * is] *= px[i];
            break;
        default:
            if (is == 0) {
                double s = 0.0;
                for (long i = 0; i < inner; i++) s += px[i];
                acc[off] += s;
            } else {
                for (long i = 0; i < inner; i++) acc[off + i * is] += px[i];
            }
        }
        for (int k = ndim - 2; k >= 0; k--) {
            idx[k]++;
            off += ostride[k];
            if (idx[k] < dims[k]) break;
            off -= ostride[k] * dims[k];
            idx[k] = 0;
        }
    }
    if (kind == RTK_SUM || kind == RTK_PROD)
        for (long j = 0; j < out_n; j++) y[j] = (float)acc[j];
    else if (kind == RTK_MEAN)
        for (long j = 0; j < out_n; j++) y[j] = (float)(acc[j] / (double)count);
}

void rtk_layer_norm_f32(const float *x, const float *gamma, const float *beta, float *y,
                        long outer, long n, long inner, float eps) {
    for (long o = 0; o < outer; o++) {
        for (long i = 0; i < inner; i++) {
            const float *px = x + o * n * inner + i;
            float *py = y + o * n * inner + i;
            double s = 0.0, s2 = 0.0;
            for (long j = 0; j < n; j++) s += px[j * inner];
            double mean = s / (double)n;
            for (long j = 0; j < n; j++) {
                double d = px[j * inner] - mean;
                s2 += d * d;
            }
            float inv = (float)(1.0 / sqrt(s2 / (double)n + (double)eps));
            float m = (float)mean;
            for (long j = 0; j < n; j++)
                py[j * inner] = (px[j * inner] - m) * inv * gamma[j] + beta[j];
        }
    }
}

void rtk_leaky_f32(int type, const float *x, const float *gamma, long gamma_len, float *y,
                   long outer, long c, long inner, float slope) {
    long n = outer * c * inner;
    long i;
    switch (type) {
    case RTK_LEAKY:
        for (i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : x[i] * slope;
        break;
    case RTK_ELU:
        for (i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : slope * expm1f(x[i]);
        break;
    case RTK_SELU:
        for (i = 0; i < n; i++)
            y[i] = SELU_LAMBDA * (x[i] > 0.0f ? x[i] : SELU_ALPHA * expm1f(x[i]));
        break;
    case RTK_GELU:
        for (i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
        break;
    default: /* prelu: one slope per channel, or one for all */
        for (long o = 0; o < outer; o++)
            for (long ch = 0; ch < c; ch++) {
                float g = gamma[gamma_len == 1 ? 0 : ch];
                const float *px = x + (o * c + ch) * inner;
                float *py = y + (o * c + ch) * inner;
                for (long j = 0; j < inner; j++) py[j] = px[j] > 0.0f ? px[j] : px[j] * g;
            }
    }
}

void rtk_clip_f32(const float *x, float *y, long n, float lo, float hi) {
    for (long i = 0; i < n; i++) {
        float v = x[i];
        v = v < lo ? lo : v;
        y[i] = v > hi ? hi : v;
    }
}

void rtk_flip_f32(const float *x, float *y, long outer, long len, long inner) {
    for (long o = 0; o < outer; o++) {
        const float *px = x + o * len * inner;
        float *py = y + o * len * inner;
        if (px != py) {
            for (long j = 0; j < len; j++)
                memcpy(py + (len - 1 - j) * inner, px + j * inner, (size_t)inner * sizeof(float));
            continue;
        }
        for (long j = 0; j < len / 2; j++) { /* in place: swap the rows pairwise */
            float *a = py + j * inner, *b = py + (len - 1 - j) * inner;
            for (long i = 0; i < inner; i++) {
                float t = a[i];
                a[i] = b[i];
                b[i] = t;
            }
        }
    }
}

void rtk_fill_f32(float *y, long n, float value) {
    for (long i = 0; i < n; i++) y[i] = value;
}

void rtk_strided_copy_f32(const float *x, float *y, int ndim, const long *dims,
                          const long *stride) {
    long idx[8] = {0}, count = 1;
    for (int i = 0; i < ndim; i++) count *= dims[i];
    long inner = ndim ? dims[ndim - 1] : 1, step = ndim ? stride[ndim - 1] : 0;
    const float *row = x;
    for (long done = 0; done < count; done += inner) {
        for (long j = 0; j < inner; j++) *y++ = row[j * step];
        /* the next row: carry through the outer counters */
        int k = ndim - 2;
        for (; k >= 0; k--) {
            row += stride[k];
            if (++idx[k] < dims[k]) break;
            row -= stride[k] * dims[k];
            idx[k] = 0;
        }
    }
}
