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

static void pool_planes(void *ctx, long lo, long hi) {
    const pool_job *d = (const pool_job *)ctx;
    const kiln_pool2d *p = d->p;
    for (long plane = lo; plane < hi; plane++) {
        const float *x = d->x + plane * p->h * p->w;
        float *y = d->out + plane * p->oh * p->ow;
        for (long oy = 0; oy < p->oh; oy++) {
            for (long ox = 0; ox < p->ow; ox++) {
                window w = window_of(p, oy, ox);
                float acc;
                if (p->type == KILN_POOL_MAX) {
                    acc = w.padded ? -FLT_MAX : -INFINITY;
                    for (long iy = w.y0; iy < w.y1; iy++)
                        for (long ix = w.x0; ix < w.x1; ix++)
                            acc = kiln_maxf(acc, x[iy * p->w + ix]);
                } else {
                    acc = 0.0f;
                    for (long iy = w.y0; iy < w.y1; iy++)
                        for (long ix = w.x0; ix < w.x1; ix++) acc += x[iy * p->w + ix];
                    if (p->type == KILN_POOL_AVG) acc /= w.div;
                }
                y[oy * p->ow + ox] = acc;
            }
        }
    }
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

void kiln_pool2d_f32(const kiln_pool2d *p, const float *x, float *y) {
    pool_job d = {p, x, NULL, NULL, y};
    long planes = p->n * p->c;
    long grain = KK_MAX(1, 32768 / (p->h * p->w + 1));
    int simple = p->kh == 2 && p->kw == 2 && p->sh == 2 && p->sw == 2 && p->ph == 0 &&
                 p->pw == 0 && 2 * p->oh <= p->h && 2 * p->ow <= p->w;
    kiln_parallel_for(simple ? pool_planes_2x2 : pool_planes, &d, planes, grain);
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

void kiln_pool2d_backward_f32(const kiln_pool2d *p, const float *dy, const float *x,
                              const float *y, float *dx) {
    pool_job d = {p, x, y, dy, dx};
    long grain = KK_MAX(1, 32768 / (p->h * p->w + 1));
    kiln_parallel_for(pool_backward_planes, &d, p->n * p->c, grain);
}
