/* pool.c: 2-D max / average / sum pooling (NCHW) and its gradient, with MXNet's conventions:
 *
 *   - padding holds -FLT_MAX for max pooling (it wins only in a window of nothing else) and 0
 *     for the others; a window running past the padded input ('full' rounding) reads nothing
 *     there;
 *   - average pooling divides by the window clipped to the padded input (count_include_pad)
 *     or by the number of real elements it covers (at least 1);
 *   - max pooling's gradient goes to the first position, in row-major window order, that holds
 *     the window's maximum (padding positions included, whose gradient is dropped).
 */
#include "kiln_kernels.h"
#include "kk_conv.h"   /* kk_deinterleave */
#include "kk_simd.h"
#include "kiln_math.h"

#include <float.h>
#include <string.h>

typedef struct {
    const kiln_pool2d *p;
    const float *x, *y, *dy;
    float *out;
} pool_job;

/* the window of output (oy, ox): rows [y0, y1) x cols [x0, x1) of the input that it reads,
 * and whether it also covers padding */
typedef struct {
    long y0, y1, x0, x1;
    long sy, sx;      /* window start, in input coordinates (may be negative) */
    int padded;       /* the window covers positions outside the input */
    float div;        /* average pooling's divisor */
} window;

static inline window window_of(const kiln_pool2d *p, long oy, long ox) {
    window w;
    w.sy = oy * p->sh - p->ph;
    w.sx = ox * p->sw - p->pw;
    long ey = w.sy + p->kh, ex = w.sx + p->kw;
    w.y0 = KK_MAX(w.sy, 0);
    w.y1 = KK_MIN(ey, p->h);
    w.x0 = KK_MAX(w.sx, 0);
    w.x1 = KK_MIN(ex, p->w);
    /* positions inside the padded input [-ph, h + ph) that are not real */
    long py1 = KK_MIN(ey, p->h + p->ph), px1 = KK_MIN(ex, p->w + p->pw);
    long padded_area = (py1 - w.sy) * (px1 - w.sx);
    long real = KK_MAX(w.y1 - w.y0, 0) * KK_MAX(w.x1 - w.x0, 0);
    w.padded = padded_area > real;
    long cnt = p->count_include_pad ? padded_area : real;
    w.div = (float)(cnt > 0 ? cnt : 1);
    return w;
}

/* 2x2 stride 2 windows without padding: the common case, vectorisable per row pair */
static void pool_planes_2x2(void *ctx, long lo, long hi) {
    const pool_job *d = (const pool_job *)ctx;
    const kiln_pool2d *p = d->p;
    for (long plane = lo; plane < hi; plane++) {
        const float *x = d->x + plane * p->h * p->w;
        float *y = d->out + plane * p->oh * p->ow;
        for (long oy = 0; oy < p->oh; oy++) {
            const float *r0 = x + 2 * oy * p->w, *r1 = r0 + p->w;
            float *yr = y + oy * p->ow;
            if (p->type == KILN_POOL_MAX) {
                for (long ox = 0; ox < p->ow; ox++)
                    yr[ox] = kiln_maxf(kiln_maxf(kiln_maxf(r0[2 * ox], r0[2 * ox + 1]),
                                                 r1[2 * ox]), r1[2 * ox + 1]);
            } else {
                float scale = p->type == KILN_POOL_AVG ? 0.25f : 1.0f;
                for (long ox = 0; ox < p->ow; ox++)
                    yr[ox] = (r0[2 * ox] + r0[2 * ox + 1] + r1[2 * ox] + r1[2 * ox + 1]) * scale;
            }
        }
    }
}

/* Any window: separable. For each output row, a vertical pass reduces the kh input rows of its
 * window elementwise (contiguous, vectorised), then a horizontal pass reduces that row over the
 * kernel's width with the stride: the strided part works on one row per output row only. */
static void pool_planes_separable(void *ctx, long lo, long hi) {
    const pool_job *d = (const pool_job *)ctx;
    const kiln_pool2d *p = d->p;
    long h = p->h, w = p->w, oh = p->oh, ow = p->ow, kw = p->kw, sw = p->sw;
    int is_max = p->type == KILN_POOL_MAX;
    float *row = (float *)kiln_scratch(2, (size_t)(w + 2 * ow + 2 * oh) * sizeof(float));
    float *col_cnt = row + w, *col_pad = col_cnt + ow, *row_cnt = col_pad + ow;
    float *row_pad = row_cnt + oh;
    long ox_lo = 0, ox_hi = 0;    /* outputs whose window lies inside [0, w) */
    for (long ox = 0; ox < ow; ox++) {
        long sx = ox * sw - p->pw, ex = sx + kw;
        long real = KK_MIN(ex, w) - KK_MAX(sx, 0);
        long padded = KK_MIN(ex, w + p->pw) - sx;
        col_cnt[ox] = (float)KK_MAX(p->count_include_pad ? padded : real, 1);
        col_pad[ox] = padded > real;
        if (sx < 0) ox_lo = ox + 1;
        if (ex <= w) ox_hi = ox + 1;
    }
    if (ox_hi < ox_lo) ox_hi = ox_lo;
    for (long oy = 0; oy < oh; oy++) {
        long sy = oy * p->sh - p->ph, ey = sy + p->kh;
        long real = KK_MIN(ey, h) - KK_MAX(sy, 0);
        long padded = KK_MIN(ey, h + p->ph) - sy;
        row_cnt[oy] = (float)KK_MAX(p->count_include_pad ? padded : real, 1);
        row_pad[oy] = padded > real;
    }
    float init = is_max ? -INFINITY : 0.0f;
    for (long plane = lo; plane < hi; plane++) {
        const float *xp = d->x + plane * h * w;
        float *yp = d->out + plane * oh * ow;
        for (long oy = 0; oy < oh; oy++) {
            long sy = oy * p->sh - p->ph;
            long k0 = sy < 0 ? -sy : 0, k1 = KK_MIN(p->kh, h - sy);
            long ix;
            if (k1 - k0 == 1) {
                memcpy(row, xp + (sy + k0) * w, (size_t)w * sizeof(float));
            } else {
                for (ix = 0; ix < w; ix++) row[ix] = init;
                for (long ki = k0; ki < k1; ki++) {
                    const float *xr = xp + (sy + ki) * w;
                    if (is_max)
                        for (ix = 0; ix < w; ix++) row[ix] = kiln_maxf(row[ix], xr[ix]);
                    else
                        for (ix = 0; ix < w; ix++) row[ix] += xr[ix];
                }
            }
            float *yr = yp + oy * ow;
            long ox;
            for (ox = 0; ox < ow; ox++) {
                if (ox == ox_lo && ox_hi > ox_lo) {   /* interior: no bounds checks */
                    if (is_max && kw == 3 && sw == 2) {  /* ResNet's stem: vectorisable */
                        const float *r = row - p->pw;
                        for (; ox < ox_hi; ox++)
                            yr[ox] = kiln_maxf(kiln_maxf(r[2 * ox], r[2 * ox + 1]), r[2 * ox + 2]);
                    }
                    for (; ox < ox_hi; ox++) {
                        const float *r = row + ox * sw - p->pw;
                        float acc = r[0];
                        if (is_max)
                            for (long kj = 1; kj < kw; kj++) acc = kiln_maxf(acc, r[kj]);
                        else
                            for (long kj = 1; kj < kw; kj++) acc += r[kj];
                        yr[ox] = acc;
                    }
                    if (ox >= ow) break;
                }
                long sx = ox * sw - p->pw;
                long j0 = sx < 0 ? -sx : 0, j1 = KK_MIN(kw, w - sx);
                float acc = init;
                for (long kj = j0; kj < j1; kj++)
                    acc = is_max ? kiln_maxf(acc, row[sx + kj]) : acc + row[sx + kj];
                yr[ox] = acc;
            }
            if (is_max) {
                if (row_pad[oy] != 0.0f) {
                    for (ox = 0; ox < ow; ox++) yr[ox] = kiln_maxf(yr[ox], -FLT_MAX);
                } else {
                    for (ox = 0; ox < ow; ox++)
                        if (col_pad[ox] != 0.0f) yr[ox] = kiln_maxf(yr[ox], -FLT_MAX);
                }
            } else if (p->type == KILN_POOL_AVG) {
                for (ox = 0; ox < ow; ox++) yr[ox] /= row_cnt[oy] * col_cnt[ox];
            }
        }
    }
}

/* Max pooling 3x3, stride 2, padding 1, windows inside the padded input (ResNet's pooling after
 * its stem). Per output row: the elementwise maximum of its two or three input rows in one
 * pass, split into even and odd columns, then output ox = max(even[ox], odd[ox], odd[ox - 1]):
 * every step a contiguous vector loop. The separable loop below read and wrote its row buffer
 * once per input row and took the strided maxima one output at a time: 1.4x slower on
 * 64x112x112 (one thread and two, old and new interleaved). Padding counts as -FLT_MAX, as
 * there. */
static int is_max3s2(const kiln_pool2d *p) {
    return p->type == KILN_POOL_MAX && p->kh == 3 && p->kw == 3 && p->sh == 2 && p->sw == 2 &&
           p->ph == 1 && p->pw == 1 && p->oh == (p->h - 1) / 2 + 1 &&
           p->ow == (p->w - 1) / 2 + 1 && p->w >= 2;
}

static void pool_planes_max3s2(void *ctx, long lo, long hi) {
    const pool_job *d = (const pool_job *)ctx;
    const kiln_pool2d *p = d->p;
    long h = p->h, w = p->w, oh = p->oh, ow = p->ow, half = (w + 1) / 2;
    float *v = (float *)kiln_scratch(2, (size_t)(w + 2 * half + 3 * KK_VLEN) * sizeof(float));
    if (!v) {   /* no memory for the rows: the general loop needs only a little less */
        pool_planes_separable(ctx, lo, hi);
        return;
    }
    float *even = v + w + KK_VLEN, *odd = even + half + KK_VLEN;
    odd[-1] = -FLT_MAX;                 /* the left padding column */
    odd[half - 1] = -FLT_MAX;           /* the right one, read when w is odd */
    for (long plane = lo; plane < hi; plane++) {
        const float *x = d->x + plane * h * w;
        float *y = d->out + plane * oh * ow;
        for (long oy = 0; oy < oh; oy++) {
            const float *mid = x + 2 * oy * w;
            const float *up = oy > 0 ? mid - w : NULL, *down = 2 * oy + 1 < h ? mid + w : NULL;
            long ix;
            if (up && down)
                for (ix = 0; ix < w; ix++)
                    v[ix] = kiln_maxf(kiln_maxf(up[ix], mid[ix]), down[ix]);
            else if (up || down) {      /* a padding row: -FLT_MAX joins the window */
                const float *other = up ? up : down;
                for (ix = 0; ix < w; ix++)
                    v[ix] = kiln_maxf(kiln_maxf(other[ix], mid[ix]), -FLT_MAX);
            } else {
                for (ix = 0; ix < w; ix++) v[ix] = kiln_maxf(mid[ix], -FLT_MAX);
            }
            kk_deinterleave(v, w, even, odd);
            float *yr = y + oy * ow;
            for (long ox = 0; ox < ow; ox++)
                yr[ox] = kiln_maxf(kiln_maxf(even[ox], odd[ox]), odd[ox - 1]);
        }
    }
}

void kiln_pool2d_f32(const kiln_pool2d *p, const float *x, float *y) {
    pool_job d = {p, x, NULL, NULL, y};
    long planes = p->n * p->c;
    long grain = KK_MAX(1, 32768 / (p->h * p->w + 1));
    int simple = p->kh == 2 && p->kw == 2 && p->sh == 2 && p->sw == 2 && p->ph == 0 &&
                 p->pw == 0 && 2 * p->oh <= p->h && 2 * p->ow <= p->w;
    kiln_range_fn fn = simple ? pool_planes_2x2 : is_max3s2(p) ? pool_planes_max3s2
                                                             : pool_planes_separable;
    kiln_parallel_for(fn, &d, planes, grain);
}

static void pool_backward_planes(void *ctx, long lo, long hi) {
    const pool_job *d = (const pool_job *)ctx;
    const kiln_pool2d *p = d->p;
    for (long plane = lo; plane < hi; plane++) {
        const float *x = d->x + plane * p->h * p->w;
        const float *y = d->y + plane * p->oh * p->ow;
        const float *dy = d->dy + plane * p->oh * p->ow;
        float *dx = d->out + plane * p->h * p->w;
        memset(dx, 0, (size_t)p->h * p->w * sizeof(float));
        for (long oy = 0; oy < p->oh; oy++) {
            for (long ox = 0; ox < p->ow; ox++) {
                window w = window_of(p, oy, ox);
                float g = dy[oy * p->ow + ox];
                if (p->type == KILN_POOL_MAX) {
                    float m = y[oy * p->ow + ox];
                    /* the first position in window order equal to the maximum; padding
                     * positions (value -FLT_MAX) take part but receive nothing */
                    int done = 0;
                    for (long iy = w.sy; iy < w.sy + p->kh && !done; iy++) {
                        for (long ix = w.sx; ix < w.sx + p->kw; ix++) {
                            int inside = iy >= 0 && iy < p->h && ix >= 0 && ix < p->w;
                            int in_pad = iy < p->h + p->ph && ix < p->w + p->pw;
                            if (!inside && !in_pad) continue;   /* past the padded input */
                            float v = inside ? x[iy * p->w + ix] : -FLT_MAX;
                            if (v == m) {
                                if (inside) dx[iy * p->w + ix] += g;
                                done = 1;
                                break;
                            }
                        }
                    }
                } else {
                    if (p->type == KILN_POOL_AVG) g /= w.div;
                    for (long iy = w.y0; iy < w.y1; iy++)
                        for (long ix = w.x0; ix < w.x1; ix++) dx[iy * p->w + ix] += g;
                }
            }
        }
    }
}

/* average / sum pooling over windows that tile the input (stride == kernel, no padding):
 * each input position receives its window's gradient, divided by the window size */
static void pool_backward_tiled(void *ctx, long lo, long hi) {
    const pool_job *d = (const pool_job *)ctx;
    const kiln_pool2d *p = d->p;
    float scale = p->type == KILN_POOL_AVG ? 1.0f / (float)(p->kh * p->kw) : 1.0f;
    for (long plane = lo; plane < hi; plane++) {
        const float *dy = d->dy + plane * p->oh * p->ow;
        float *dx = d->out + plane * p->h * p->w;
        memset(dx, 0, (size_t)p->h * p->w * sizeof(float));
        for (long oy = 0; oy < p->oh; oy++) {
            for (long ki = 0; ki < p->kh; ki++) {
                float *row = dx + (oy * p->kh + ki) * p->w;
                const float *g = dy + oy * p->ow;
                if (p->kw == 2) {
                    for (long ox = 0; ox < p->ow; ox++) row[2 * ox] = row[2 * ox + 1] = g[ox] * scale;
                } else {
                    for (long ox = 0; ox < p->ow; ox++)
                        for (long kj = 0; kj < p->kw; kj++) row[ox * p->kw + kj] = g[ox] * scale;
                }
            }
        }
    }
}

void kiln_pool2d_backward_f32(const kiln_pool2d *p, const float *dy, const float *x,
                              const float *y, float *dx) {
    pool_job d = {p, x, y, dy, dx};
    long grain = KK_MAX(1, 32768 / (p->h * p->w + 1));
    int tiled = p->type != KILN_POOL_MAX && p->sh == p->kh && p->sw == p->kw && p->ph == 0 &&
                p->pw == 0 && p->oh * p->kh <= p->h && p->ow * p->kw <= p->w;
    kiln_parallel_for(tiled ? pool_backward_tiled : pool_backward_planes, &d, p->n * p->c,
                      grain);
}
