/* conv.c: 2-D convolution (NCHW) through im2col + GEMM, its two gradients, and a direct
 * depthwise kernel.
 *
 * A batch of several images runs one image per thread, each with the single-threaded built-in
 * GEMM (the products are small); a single image runs its (larger) products through kiln_sgemm,
 * which may use an external multi-threaded BLAS. Scratch slots 2 and 3 hold column matrices
 * (slots 0 and 1 belong to the GEMM).
 */
#include "kiln_kernels.h"
#include "kk_simd.h"
#include "kiln_math.h"

#include <float.h>
#include <string.h>

int kiln_conv2d_init(kiln_conv2d *p) {
    if (p->groups < 1 || p->c % p->groups || p->f % p->groups) return -1;
    if (p->sh < 1 || p->sw < 1 || p->dh < 1 || p->dw < 1) return -1;
    long eh = p->dh * (p->kh - 1) + 1, ew = p->dw * (p->kw - 1) + 1;
    p->oh = (p->h + 2 * p->ph - eh) / p->sh + 1;
    p->ow = (p->w + 2 * p->pw - ew) / p->sw + 1;
    return (p->oh < 1 || p->ow < 1) ? -1 : 0;
}

static int is_pointwise(const kiln_conv2d *p) {
    return p->kh == 1 && p->kw == 1 && p->sh == 1 && p->sw == 1 && p->ph == 0 && p->pw == 0;
}

static int is_depthwise(const kiln_conv2d *p) {
    return p->groups == p->c && p->f == p->c && p->groups > 1;
}

/* ---------------------------------------------------------------------------------------------
 * im2col / col2im for one image of c channels
 * ------------------------------------------------------------------------------------------- */

void kiln_im2col_f32(const kiln_conv2d *p, long c, const float *x, float *col) {
    long ohw = p->oh * p->ow;
    for (long ch = 0; ch < c; ch++) {
        const float *xc = x + ch * p->h * p->w;
        for (long ki = 0; ki < p->kh; ki++) {
            for (long kj = 0; kj < p->kw; kj++) {
                float *row = col + ((ch * p->kh + ki) * p->kw + kj) * ohw;
                long dx = kj * p->dw - p->pw;
                /* output columns whose input column ox * sw + dx lies inside [0, w) */
                long lo = dx >= 0 ? 0 : (-dx + p->sw - 1) / p->sw;
                long hi = (p->w - dx + p->sw - 1) / p->sw;
                if (hi > p->ow) hi = p->ow;
                if (lo > hi) lo = hi;
                for (long oy = 0; oy < p->oh; oy++) {
                    long iy = oy * p->sh - p->ph + ki * p->dh;
                    float *r = row + oy * p->ow;
                    if (iy < 0 || iy >= p->h) {
                        memset(r, 0, (size_t)p->ow * sizeof(float));
                        continue;
                    }
                    const float *xr = xc + iy * p->w + dx;
                    long ox;
                    for (ox = 0; ox < lo; ox++) r[ox] = 0.0f;
                    if (p->sw == 1) {
                        memcpy(r + lo, xr + lo, (size_t)(hi - lo) * sizeof(float));
                    } else {
                        for (ox = lo; ox < hi; ox++) r[ox] = xr[ox * p->sw];
                    }
                    for (ox = hi; ox < p->ow; ox++) r[ox] = 0.0f;
                }
            }
        }
    }
}

void kiln_col2im_f32(const kiln_conv2d *p, long c, const float *col, float *x) {
    long ohw = p->oh * p->ow;
    for (long ch = 0; ch < c; ch++) {
        float *xc = x + ch * p->h * p->w;
        for (long ki = 0; ki < p->kh; ki++) {
            for (long kj = 0; kj < p->kw; kj++) {
                const float *row = col + ((ch * p->kh + ki) * p->kw + kj) * ohw;
                long dx = kj * p->dw - p->pw;
                long lo = dx >= 0 ? 0 : (-dx + p->sw - 1) / p->sw;
                long hi = (p->w - dx + p->sw - 1) / p->sw;
                if (hi > p->ow) hi = p->ow;
                if (lo > hi) lo = hi;
                for (long oy = 0; oy < p->oh; oy++) {
                    long iy = oy * p->sh - p->ph + ki * p->dh;
                    if (iy < 0 || iy >= p->h) continue;
                    const float *r = row + oy * p->ow;
                    float *xr = xc + iy * p->w + dx;
                    if (p->sw == 1) {
                        for (long ox = lo; ox < hi; ox++) xr[ox] += r[ox];
                    } else {
                        for (long ox = lo; ox < hi; ox++) xr[ox * p->sw] += r[ox];
                    }
                }
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * forward
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    const kiln_conv2d *p;
    const float *x, *w, *scale, *bias, *residual;
    float *y;
    int act;
    int serial_gemm;   /* 1: one image per thread, built-in GEMM */
} conv_job;

static void epilogue(float *y, const float *res, const float *scale, const float *bias, long f,
                     long ohw, int act) {
    if (!res) {
        kiln_bias_act_f32(y, scale, bias, f, ohw, 1, act);
        return;
    }
    for (long i = 0; i < f; i++) {
        float s = scale ? scale[i] : 1.0f, b = bias ? bias[i] : 0.0f;
        float *yi = y + i * ohw;
        const float *ri = res + i * ohw;
        if (act == KILN_ACT_RELU) {
            for (long j = 0; j < ohw; j++) yi[j] = kiln_reluf(yi[j] * s + b + ri[j]);
        } else {
            for (long j = 0; j < ohw; j++) yi[j] = yi[j] * s + b + ri[j];
            if (act != KILN_ACT_NONE) kiln_act_f32(yi, yi, ohw, act);
        }
    }
}

static void depthwise_image(const kiln_conv2d *p, const float *x, const float *w, float *y) {
    for (long ch = 0; ch < p->c; ch++) {
        const float *xc = x + ch * p->h * p->w;
        const float *wc = w + ch * p->kh * p->kw;
        float *yc = y + ch * p->oh * p->ow;
        for (long oy = 0; oy < p->oh; oy++) {
            for (long ox = 0; ox < p->ow; ox++) {
                float acc = 0.0f;
                for (long ki = 0; ki < p->kh; ki++) {
                    long iy = oy * p->sh - p->ph + ki * p->dh;
                    if (iy < 0 || iy >= p->h) continue;
                    for (long kj = 0; kj < p->kw; kj++) {
                        long ix = ox * p->sw - p->pw + kj * p->dw;
                        if (ix < 0 || ix >= p->w) continue;
                        acc += xc[iy * p->w + ix] * wc[ki * p->kw + kj];
                    }
                }
                yc[oy * p->ow + ox] = acc;
            }
        }
    }
}

static void conv_image(const conv_job *d, long img) {
    const kiln_conv2d *p = d->p;
    long cg = p->c / p->groups, fg = p->f / p->groups, ohw = p->oh * p->ow;
    long kdim = cg * p->kh * p->kw;
    const float *x = d->x + img * p->c * p->h * p->w;
    float *y = d->y + img * p->f * ohw;
    if (is_depthwise(p) && cg == 1) {
        depthwise_image(p, x, d->w, y);
    } else {
        float *col = is_pointwise(p) ? NULL : (float *)kiln_scratch(2, (size_t)kdim * ohw * 4);
        for (long g = 0; g < p->groups; g++) {
            const float *xg = x + g * cg * p->h * p->w;
            const float *b = xg;
            if (col) {
                kiln_im2col_f32(p, cg, xg, col);
                b = col;
            }
            const float *wg = d->w + g * fg * kdim;
            float *yg = y + g * fg * ohw;
            if (d->serial_gemm)
                kiln_sgemm_builtin(0, 0, fg, ohw, kdim, 1.0f, wg, kdim, b, ohw, 0.0f, yg, ohw);
            else
                kiln_sgemm(0, 0, fg, ohw, kdim, 1.0f, wg, kdim, b, ohw, 0.0f, yg, ohw);
        }
    }
    epilogue(y, d->residual ? d->residual + img * p->f * ohw : NULL, d->scale, d->bias, p->f,
             ohw, d->act);
}

static void conv_images(void *ctx, long lo, long hi) {
    for (long i = lo; i < hi; i++) conv_image((const conv_job *)ctx, i);
}

void kiln_conv2d_f32(const kiln_conv2d *p, const float *x, const float *w, const float *scale,
                     const float *bias, const float *residual, float *y, int act) {
    conv_job d = {p, x, w, scale, bias, residual, y, act, 0};
    if (p->n > 1 && kiln_get_num_threads() > 1) {
        d.serial_gemm = 1;
        kiln_parallel_for(conv_images, &d, p->n, 1);
    } else {
        for (long i = 0; i < p->n; i++) conv_image(&d, i);
    }
}

/* ---------------------------------------------------------------------------------------------
 * gradient of the input
 * ------------------------------------------------------------------------------------------- */

static void data_grad_image(const conv_job *d, long img) {
    const kiln_conv2d *p = d->p;
    long cg = p->c / p->groups, fg = p->f / p->groups, ohw = p->oh * p->ow;
    long kdim = cg * p->kh * p->kw;
    const float *dy = d->x + img * p->f * ohw;    /* conv_job.x carries dy here */
    float *dx = d->y + img * p->c * p->h * p->w;
    int pointwise = is_pointwise(p);
    float *col = pointwise ? NULL : (float *)kiln_scratch(3, (size_t)kdim * ohw * 4);
    if (!pointwise) memset(dx, 0, (size_t)p->c * p->h * p->w * sizeof(float));
    for (long g = 0; g < p->groups; g++) {
        const float *wg = d->w + g * fg * kdim;
        const float *dyg = dy + g * fg * ohw;
        float *out = pointwise ? dx + g * cg * p->h * p->w : col;
        /* (kdim, ohw) = W_g^T (kdim, fg) @ dy_g (fg, ohw) */
        if (d->serial_gemm)
            kiln_sgemm_builtin(1, 0, kdim, ohw, fg, 1.0f, wg, kdim, dyg, ohw, 0.0f, out, ohw);
        else
            kiln_sgemm(1, 0, kdim, ohw, fg, 1.0f, wg, kdim, dyg, ohw, 0.0f, out, ohw);
        if (!pointwise) kiln_col2im_f32(p, cg, col, dx + g * cg * p->h * p->w);
    }
}

static void data_grad_images(void *ctx, long lo, long hi) {
    for (long i = lo; i < hi; i++) data_grad_image((const conv_job *)ctx, i);
}

void kiln_conv2d_backward_data_f32(const kiln_conv2d *p, const float *dy, const float *w,
                                   float *dx) {
    conv_job d = {p, dy, w, NULL, NULL, NULL, dx, KILN_ACT_NONE, 0};
    if (p->n > 1 && kiln_get_num_threads() > 1) {
        d.serial_gemm = 1;
        kiln_parallel_for(data_grad_images, &d, p->n, 1);
    } else {
        for (long i = 0; i < p->n; i++) data_grad_image(&d, i);
    }
}

/* ---------------------------------------------------------------------------------------------
 * gradient of the weight: dW_g = sum over images of dy_g (fg, ohw) @ col^T (ohw, kdim)
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    const kiln_conv2d *p;
    const float *x, *dy;
    float *partial;    /* parts x (f * kdim) */
    long parts;
} wgrad_job;

static void wgrad_part(void *ctx, long t0, long t1) {
    const wgrad_job *d = (const wgrad_job *)ctx;
    const kiln_conv2d *p = d->p;
    long cg = p->c / p->groups, fg = p->f / p->groups, ohw = p->oh * p->ow;
    long kdim = cg * p->kh * p->kw;
    int pointwise = is_pointwise(p);
    int serial = d->parts > 1;
    for (long t = t0; t < t1; t++) {
        float *dw = d->partial + t * p->f * kdim;
        long i0 = p->n * t / d->parts, i1 = p->n * (t + 1) / d->parts;
        float *col = pointwise ? NULL : (float *)kiln_scratch(3, (size_t)kdim * ohw * 4);
        for (long img = i0; img < i1; img++) {
            const float *x = d->x + img * p->c * p->h * p->w;
            const float *dy = d->dy + img * p->f * ohw;
            for (long g = 0; g < p->groups; g++) {
                const float *b = x + g * cg * p->h * p->w;
                if (!pointwise) {
                    kiln_im2col_f32(p, cg, b, col);
                    b = col;
                }
                float beta = img == i0 ? 0.0f : 1.0f;
                float *dwg = dw + g * fg * kdim;
                const float *dyg = dy + g * fg * ohw;
                if (serial)
                    kiln_sgemm_builtin(0, 1, fg, kdim, ohw, 1.0f, dyg, ohw, b, ohw, beta, dwg,
                                       kdim);
                else
                    kiln_sgemm(0, 1, fg, kdim, ohw, 1.0f, dyg, ohw, b, ohw, beta, dwg, kdim);
            }
        }
    }
}

void kiln_conv2d_backward_weight_f32(const kiln_conv2d *p, const float *x, const float *dy,
                                     float *dw) {
    long kdim = (p->c / p->groups) * p->kh * p->kw;
    long size = p->f * kdim;
    long parts = KK_MIN((long)kiln_get_num_threads(), p->n);
    if (parts <= 1) {
        wgrad_job d = {p, x, dy, dw, 1};
        wgrad_part(&d, 0, 1);
        return;
    }
    /* per-thread partial sums (slot 2: wgrad_part uses slot 3 for its columns) */
    float *own = (float *)kiln_scratch(2, (size_t)parts * size * sizeof(float));
    wgrad_job d = {p, x, dy, own, parts};
    kiln_parallel_for(wgrad_part, &d, parts, 1);
    for (long j = 0; j < size; j++) {
        float s = own[j];
        for (long t = 1; t < parts; t++) s += own[t * size + j];
        dw[j] = s;
    }
}
