/* kk_conv.h: internal convolution entry points and helpers shared by conv.c, conv_shift.c,
 * conv_winograd.c and conv_winograd4.c (not part of the API). */
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

/* The same by F(4x4, 3x3) (conv_winograd4.c), for a batch of one on the maps where it pays
 * (kk_conv2d_winograd4_pays: 1 or 0); a panel of filters with a non-finite weight goes to
 * kk_conv2d_shift. */
int kk_conv2d_winograd4(const kiln_conv2d *p, const float *x, const float *w,
                        const float *scale, const float *bias, const float *residual, float *y,
                        int act);
int kk_conv2d_winograd4_pays(const kiln_conv2d *p);

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

/* The Winograd kernels' shared pieces (conv_winograd.c, conv_winograd4.c). */

/* 0 when x[0:n] is finite, NaN otherwise */
static inline float kk_finite_probe(const float *x, long n) {
    kk_vf acc = kk_splat(0.0f);
    long i = 0;
    for (; i + KK_VLEN <= n; i += KK_VLEN) acc += kk_load(x + i) * 0.0f;
    if (i < n) acc += kk_load_n(x + i, n - i) * 0.0f;
    return kk_hsum(acc);
}

/* g[k] = tap k of the 3x3 weights of channels [c, c + n) of one filter (wf: its c x 9
 * weights), a lane per channel, lanes past n zero: one gather per tap with AVX-512, lane by
 * lane otherwise. */
static inline void kk_gather_taps(const float *wf, long c, long n, kk_vf g[9]) {
#if defined(__AVX512F__)
    const __m512i taps = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(9));
    for (int k = 0; k < 9; k++)
        g[k] = (kk_vf)_mm512_mask_i32gather_ps(_mm512_setzero_ps(), (__mmask16)((1u << n) - 1u),
                                               taps, wf + c * 9 + k, 4);
#else
    for (int k = 0; k < 9; k++) {
        g[k] = kk_splat(0.0f);
        for (long i = 0; i < n; i++) g[k][i] = wf[(c + i) * 9 + k];
    }
#endif
}

/* The runs of tile rows (tw tiles each) that tiles [j0, j1) make up, as lanes of one vector:
 * lanes [lo, hi) of run r are tiles tx0 + (lane - lo) of tile row ty. A Winograd kernel
 * gathers a vector of tiles' patch columns from each run's split rows (kk_load_lanes) and
 * stores each element of their V as one whole vector: stored a tile row at a time, part of a
 * line each, V's lines were read back from L2 to be completed, and the transform ran 2-5x
 * slower. Returns the number of runs. */
typedef struct {
    long ty, tx0, lo, hi;
} kk_tile_run;

static inline int kk_tile_runs(long j0, long j1, long tw, kk_tile_run run[KK_VLEN]) {
    int n = 0;
    for (long j = j0; j < j1;) {
        long ty = j / tw, tx = j - ty * tw, len = KK_MIN(tw - tx, j1 - j);
        run[n++] = (kk_tile_run){ty, tx, j - j0, j - j0 + len};
        j += len;
    }
    return n;
}

/* v with lanes [lo, hi) from p[lo:hi] (p may point before its row: the other lanes are not
 * read) */
static inline kk_vf kk_load_lanes(kk_vf v, const float *p, long lo, long hi) {
#if defined(__AVX512F__)
    __mmask16 m = (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
    return (kk_vf)_mm512_mask_loadu_ps((__m512)v, m, p);
#else
    for (long l = lo; l < hi; l++) v[l] = p[l];
    return v;
#endif
}

/* Filters per panel, `big` or `alt`, for f filters in panels shared by `threads` threads that
 * each take whole panels: whichever leaves the fewest rows of products on zero weights in the
 * busiest thread, that is the panels per thread, rounded up, times the panel's rows (128
 * filters on two threads: three panels of 24 each, 72 rows, or four of 16, 64 rows). Ties keep
 * the bigger tile, which loads fewer operands per multiply-add. */
static inline long kk_panel_rows(long f, long threads, long big, long alt) {
    long rows_big = ((f + big - 1) / big + threads - 1) / threads * big;
    long rows_alt = ((f + alt - 1) / alt + threads - 1) / threads * alt;
    return rows_alt < rows_big ? alt : big;
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
