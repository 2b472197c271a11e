/* conv_packed.c: 2-D convolution of one image as im2col + a register-tiled product whose
 * epilogue (shift, residual, activation) runs on the tile while it is in registers.
 *
 * Why beside kiln_conv2d_f32: for the small convolutions of a batch-one inference (LeNet:
 * 6 or 16 filters, 25 to 150 taps, 100 to 784 positions) the shared kernels' path spends most
 * of its time outside the arithmetic: a blocked GEMM that packs both operands on every call,
 * then a separate scalar activation pass (see vec_math.h). Here the weights are packed once,
 * when the model is planned (with a folded BatchNorm's scale multiplied in), the column matrix
 * is built with inline copies, and each MR x NR tile of the output is finished in
 * registers. Candidate for the shared kernel library.
 *
 * Layout: packed weights, per group, per panel of MR filters: [tap][MR] (filters past the
 * group's count are zero). The output tile is MR filters x NR positions.
 */
#include "conv_packed.h"
#include "vec_math.h"
#include "extra_kernels.h"

#include <string.h>

#if KK_VLEN >= 16
#define MR 8
#else
#define MR 4
#endif
#define NR (2 * KK_VLEN)

long rtk_conv_packed_size(long f, long groups, long kdim) {
    long fg = f / groups, panels = (fg + MR - 1) / MR;
    return groups * panels * MR * kdim;
}

static int stride_one(const kiln_conv2d *p) { return p->sh == 1 && p->sw == 1; }

/* stride 1: the padded input, its slack, tap offsets and the flattened output of a group */
static long padded_floats(const kiln_conv2d *p) {
    long hp = p->h + 2 * p->ph, wp = p->w + 2 * p->pw;
    return (p->c / p->groups) * hp * wp + (p->kw - 1) * p->dw + NR;
}

static long flat_tiles(const kiln_conv2d *p) {
    return (p->oh * (p->w + 2 * p->pw) + NR - 1) / NR;
}

long rtk_conv_workspace_bytes(const kiln_conv2d *p) {
    long cg = p->c / p->groups, fg = p->f / p->groups, kdim = cg * p->kh * p->kw;
    if (stride_one(p))
        return (padded_floats(p) + fg * flat_tiles(p) * NR) * (long)sizeof(float) +
               kdim * (long)sizeof(long);
    return (kdim * p->oh * p->ow + kdim * NR) * (long)sizeof(float);
}

void rtk_conv_pack(const float *w, const float *scale, long f, long groups, long kdim,
                   float *packed) {
    long fg = f / groups, panels = (fg + MR - 1) / MR;
    for (long g = 0; g < groups; g++)
        for (long pn = 0; pn < panels; pn++) {
            float *dst = packed + (g * panels + pn) * MR * kdim;
            for (long p = 0; p < kdim; p++)
                for (long r = 0; r < MR; r++) {
                    long fi = pn * MR + r, row = g * fg + fi;
                    dst[p * MR + r] = fi < fg ? w[row * kdim + p] * (scale ? scale[row] : 1.0f)
                                              : 0.0f;
                }
        }
}

/* The column matrix (c * kh * kw, oh * ow) of one image. The same as the shared
 * kiln_im2col_f32, with inline copies: at LeNet's sizes (rows of 10 to 28 floats) its memcpy
 * per output row costs more than the product that follows. */
static void im2col(const kiln_conv2d *p, long c, const float *x, float *col) {
    long ohw = p->oh * p->ow;
    for (long ch = 0; ch < c; ch++) {
        const float *xc = x + ch * p->h * p->w;
        for (long ki = 0; ki < p->kh; ki++)
            for (long kj = 0; kj < p->kw; kj++) {
                float *row = col + ((ch * p->kh + ki) * p->kw + kj) * ohw;
                long dx = kj * p->dw - p->pw;
                /* output columns whose input column ox * sw + dx lies in [0, w) */
                long lo = dx >= 0 ? 0 : (-dx + p->sw - 1) / p->sw;
                long hi = p->w - dx > 0 ? (p->w - dx + p->sw - 1) / p->sw : 0;
                if (hi > p->ow) hi = p->ow;
                if (lo > hi) lo = hi;
                for (long oy = 0; oy < p->oh; oy++) {
                    long iy = oy * p->sh - p->ph + ki * p->dh;
                    float *r = row + oy * p->ow;
                    long ox;
                    if (iy < 0 || iy >= p->h) {
                        for (ox = 0; ox < p->ow; ox++) r[ox] = 0.0f;
                        continue;
                    }
                    const float *xr = xc + iy * p->w + dx;
                    for (ox = 0; ox < lo; ox++) r[ox] = 0.0f;
                    if (p->sw == 1)
                        for (ox = lo; ox < hi; ox++) r[ox] = xr[ox];
                    else
                        for (ox = lo; ox < hi; ox++) r[ox] = xr[ox * p->sw];
                    for (ox = hi; ox < p->ow; ox++) r[ox] = 0.0f;
                }
            }
    }
}

typedef struct {
    const float *a;        /* this group's packed panels */
    const long *off;       /* stride 1: tap p reads b + off[p] + position; else NULL */
    const float *b;        /* column matrix (kdim x ohw, row stride ohw), or padded input */
    const float *tail;     /* the last, partial column tile, zero padded (kdim x NR) */
    const float *shift;    /* per filter of the group, or NULL */
    const float *res;      /* residual of the group (fg x ohw), or NULL */
    float *y;              /* output of the group (fg x ohw) */
    long fg, kdim, ohw, ntiles;
    int act;
} job;

static void tile(const job *d, const float *ap, long f0, long j) {
    long w = d->ohw - j < NR ? d->ohw - j : NR, h = d->fg - f0 < MR ? d->fg - f0 : MR;
    kk_vf acc[MR][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = kk_splat(0.0f);
    if (d->off) { /* implicit im2col: tap p's row is the padded input shifted by off[p] */
        const float *b = d->b + j;
        for (long p = 0; p < d->kdim; p++) {
            kk_vf b0 = kk_load(b + d->off[p]), b1 = kk_load(b + d->off[p] + KK_VLEN);
            const float *a = ap + p * MR;
            for (int r = 0; r < MR; r++) {
                acc[r][0] += a[r] * b0;
                acc[r][1] += a[r] * b1;
            }
        }
        w = NR; /* the flattened output is padded to whole tiles */
    } else {
        const float *b = w == NR ? d->b + j : d->tail;
        long ldb = w == NR ? d->ohw : NR;
        for (long p = 0; p < d->kdim; p++) {
            kk_vf b0 = kk_load(b + p * ldb), b1 = kk_load(b + p * ldb + KK_VLEN);
            const float *a = ap + p * MR;
            for (int r = 0; r < MR; r++) {
                acc[r][0] += a[r] * b0;
                acc[r][1] += a[r] * b1;
            }
        }
    }
    for (long r = 0; r < h; r++) {
        long f = f0 + r;
        float *y = d->y + f * (d->off ? d->ntiles * NR : d->ohw) + j;
        kk_vf s = kk_splat(d->shift ? d->shift[f] : 0.0f);
        kk_vf v0 = acc[r][0] + s, v1 = acc[r][1] + s;
        float t[NR];
        if (d->res) {
            const float *res = d->res + f * d->ohw + j;
            if (w == NR) {
                v0 += kk_load(res);
                v1 += kk_load(res + KK_VLEN);
            } else {
                memset(t, 0, sizeof t);
                memcpy(t, res, (size_t)w * sizeof(float));
                v0 += kk_load(t);
                v1 += kk_load(t + KK_VLEN);
            }
        }
        v0 = vm_act(v0, d->act);
        v1 = vm_act(v1, d->act);
        if (w == NR) {
            kk_store(y, v0);
            kk_store(y + KK_VLEN, v1);
        } else {
            kk_store(t, v0);
            kk_store(t + KK_VLEN, v1);
            memcpy(y, t, (size_t)w * sizeof(float));
        }
    }
}

static void tiles(void *ctx, long t0, long t1) {
    const job *d = (const job *)ctx;
    long panels = (d->fg + MR - 1) / MR;
    for (long t = t0; t < t1; t++)
        for (long pn = 0; pn < panels; pn++) tile(d, d->a + pn * MR * d->kdim, pn * MR, t * NR);
}

/* Stride 1 without a column matrix: with the input padded to hp x wp, output position
 * (oy, ox) read at flattened index oy * wp + ox is, for tap (c, ki, kj), the input at that
 * index plus c * hp * wp + ki * dh * wp + kj * dw. So every tap's row of the product is a
 * contiguous slice of the padded input; the product runs over oh x wp positions (the columns
 * ox >= ow are computed and dropped) and is then compacted, with the residual and the
 * activation, into y. */
static void conv_stride_one(const kiln_conv2d *p, const float *x, const float *packed,
                            const float *shift, const float *residual, float *y, int act,
                            char *ws) {
    long cg = p->c / p->groups, fg = p->f / p->groups, ohw = p->oh * p->ow;
    long kdim = cg * p->kh * p->kw, panels = (fg + MR - 1) / MR;
    long hp = p->h + 2 * p->ph, wp = p->w + 2 * p->pw, ntiles = flat_tiles(p);
    float *xpad = (float *)ws;
    float *flat = xpad + padded_floats(p);
    long *off = (long *)(flat + fg * ntiles * NR);
    for (long c = 0, k = 0; c < cg; c++)
        for (long ki = 0; ki < p->kh; ki++)
            for (long kj = 0; kj < p->kw; kj++)
                off[k++] = c * hp * wp + ki * p->dh * wp + kj * p->dw;
    for (long g = 0; g < p->groups; g++) {
        const float *xg = x + g * cg * p->h * p->w;
        memset(xpad, 0, (size_t)padded_floats(p) * sizeof(float));
        for (long c = 0; c < cg; c++)
            for (long i = 0; i < p->h; i++)
                memcpy(xpad + c * hp * wp + (i + p->ph) * wp + p->pw, xg + (c * p->h + i) * p->w,
                       (size_t)p->w * sizeof(float));
        job d = {packed + g * panels * MR * kdim, off, xpad, NULL,
                 shift ? shift + g * fg : NULL, NULL, flat, fg, kdim, ntiles * NR, ntiles,
                 KILN_ACT_NONE};
        long grain = (1L << 18) / (fg * kdim * NR + 1) + 1;
        kiln_parallel_for(tiles, &d, ntiles, grain);
        /* compact the rows, add the residual, then the activation over the group's output */
        float *yg = y + g * fg * ohw;
        const float *rg = residual ? residual + g * fg * ohw : NULL;
        for (long f = 0; f < fg; f++)
            for (long oy = 0; oy < p->oh; oy++) {
                const float *src = flat + f * ntiles * NR + oy * wp;
                float *dst = yg + f * ohw + oy * p->ow;
                if (rg) {
                    const float *r = rg + f * ohw + oy * p->ow;
                    for (long ox = 0; ox < p->ow; ox++) dst[ox] = src[ox] + r[ox];
                } else {
                    memcpy(dst, src, (size_t)p->ow * sizeof(float));
                }
            }
        if (act != KILN_ACT_NONE) rtk_act_f32(act, yg, yg, fg * ohw);
    }
}

void rtk_conv2d_f32(const kiln_conv2d *p, const float *x, const float *packed,
                    const float *shift, const float *residual, float *y, int act, void *ws) {
    if (stride_one(p)) {
        conv_stride_one(p, x, packed, shift, residual, y, act, (char *)ws);
        return;
    }
    long cg = p->c / p->groups, fg = p->f / p->groups, ohw = p->oh * p->ow;
    long kdim = cg * p->kh * p->kw, panels = (fg + MR - 1) / MR;
    int pointwise = p->kh == 1 && p->kw == 1 && p->sh == 1 && p->sw == 1 && p->ph == 0 &&
                    p->pw == 0;
    float *col = pointwise ? NULL : (float *)ws;
    float *tail = (float *)ws + (pointwise ? 0 : kdim * ohw);
    long ntiles = (ohw + NR - 1) / NR, rem = ohw % NR;
    for (long g = 0; g < p->groups; g++) {
        const float *xg = x + g * cg * p->h * p->w, *b = xg;
        if (col) {
            im2col(p, cg, xg, col);
            b = col;
        }
        if (rem) { /* the partial last tile, zero padded to NR columns */
            for (long k = 0; k < kdim; k++) {
                memcpy(tail + k * NR, b + k * ohw + (ntiles - 1) * NR,
                       (size_t)rem * sizeof(float));
                memset(tail + k * NR + rem, 0, (size_t)(NR - rem) * sizeof(float));
            }
        }
        job d = {packed + g * panels * MR * kdim, NULL, b, tail, shift ? shift + g * fg : NULL,
                 residual ? residual + g * fg * ohw : NULL, y + g * fg * ohw, fg, kdim, ohw,
                 ntiles, act};
        /* threads only for products big enough to pay for the hand-off (~256k MACs each) */
        long grain = (1L << 18) / (fg * kdim * NR + 1) + 1;
        kiln_parallel_for(tiles, &d, ntiles, grain);
    }
}
