/* kk_conv.h: internal convolution entry points and helpers shared by conv.c, conv_shift.c and
 * conv_winograd.c (not part of the API). */
#ifndef KK_CONV_H
#define KK_CONV_H

#include "kiln_kernels.h"
#include "kk_act.h"
#include "kk_simd.h"

/* kiln_conv2d_f32 without a column matrix (conv_shift.c): any stride, dilation, padding and
 * grouping. Returns 0, or -1 when its scratch memory could not be allocated (nothing written). */
int kk_conv2d_shift(const kiln_conv2d *p, const float *x, const float *w, const float *scale,
                    const float *bias, const float *residual, float *y, int act);

/* kiln_conv2d_f32 for 3x3, stride 1, undilated, ungrouped convolutions by Winograd's
 * F(2x2, 3x3) (conv_winograd.c). Returns 0, or -1 with y untouched when the geometry is not
 * one it takes, when it would not be faster, when the input or the weights hold an inf or a
 * NaN, or when scratch memory runs out: then the caller runs another kernel. */
int kk_conv2d_winograd(const kiln_conv2d *p, const float *x, const float *w, const float *scale,
                       const float *bias, const float *residual, float *y, int act);

/* The same for image `img` of the batch by the definition (a plain loop, no memory): the
 * fallback when scratch memory runs out. */
void kk_conv2d_reference(const kiln_conv2d *p, const float *x, const float *w,
                         const float *scale, const float *bias, const float *residual, float *y,
                         int act, long img);

/* even[t] = src[2 t] for 2 t < n, odd[t] = src[2 t + 1] for 2 t + 1 < n (nothing else of even
 * and odd is written); odd may be NULL: the even elements only */
void kk_deinterleave(const float *src, long n, float *even, float *odd);

/* acc plus the products of one channel's window at output (oy, ox): xc[iy, ix] wc[ki, kj] over
 * the kernel's taps, in order, those outside the input skipped (the definition, for the
 * depthwise kernel and the fallbacks) */
static inline float kk_window_acc(const kiln_conv2d *p, const float *xc, const float *wc,
                                  long oy, long ox, float acc) {
    for (long ki = 0; ki < p->kh; ki++) {
        long iy = oy * p->sh - p->ph + ki * p->dh;
        if (iy < 0 || iy >= p->h) continue;
        for (long kj = 0; kj < p->kw; kj++) {
            long ix = ox * p->sw - p->pw + kj * p->dw;
            if (ix < 0 || ix >= p->w) continue;
            acc += xc[iy * p->w + ix] * wc[ki * p->kw + kj];
        }
    }
    return acc;
}

static inline kk_vf kk_relu_vec(kk_vf v) {
    return (kk_vf)((kk_vi)v & ~(kk_vi)(v < kk_splat(0.0f)));    /* NaN stays NaN */
}

/* One run of outputs, the convolutions' epilogue: y[i] = act(t[i] s + b (+ res[i])) for
 * i < n, vectorised (a masked last vector); y may be res (an in-place residual add: each
 * element is read before it is written). */
static inline void kk_conv_finish(float *y, const float *t, const float *res, long n, float s,
                                  float b, int act) {
    kk_vf sv = kk_splat(s), bv = kk_splat(b);
    long i = 0;
    for (; i + KK_VLEN <= n; i += KK_VLEN) {
        kk_vf v = kk_load(t + i) * sv + bv;
        if (res) v += kk_load(res + i);
        kk_store(y + i, act == KILN_ACT_RELU ? kk_relu_vec(v) : v);
    }
    if (i < n) {
        kk_vf v = kk_load_n(t + i, n - i) * sv + bv;
        if (res) v += kk_load_n(res + i, n - i);
        kk_store_n(y + i, act == KILN_ACT_RELU ? kk_relu_vec(v) : v, n - i);
    }
    if (act != KILN_ACT_NONE && act != KILN_ACT_RELU)
        for (i = 0; i < n; i++) y[i] = kk_act1(y[i], act);
}

#endif
