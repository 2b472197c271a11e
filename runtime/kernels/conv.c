/* conv.c: 2-D convolution (NCHW) through im2col + GEMM, its two gradients, and a direct
 * depthwise kernel.
 *
 * A batch of several images runs one image per thread, each with the single-threaded built-in
 * GEMM (the products are small); a single image runs its (larger) products through kiln_sgemm,
 * which may use an external multi-threaded BLAS. Scratch slots 2 and 3 hold column matrices
 * (slots 0 and 1 belong to the GEMM).
 */
#include "kiln_kernels.h"
#include "kk_conv.h"
#include "kk_gemm.h"
#include "kk_simd.h"
#include "kiln_math.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

int kiln_conv2d_init(kiln_conv2d *p) {
    if (p->groups < 1 || p->c % p->groups || p->f % p->groups) return -1;
    if (p->sh < 1 || p->sw < 1 || p->dh < 1 || p->dw < 1) return -1;
    long eh = p->dh * (p->kh - 1) + 1, ew = p->dw * (p->kw - 1) + 1;
    /* a kernel wider than the padded input has no output (the division below would round
     * a negative numerator up to 0 and claim one) */
    if (p->h + 2 * p->ph < eh || p->w + 2 * p->pw < ew) return -1;
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
        for (long oy = 0; oy < p->oh; oy++)
            for (long ox = 0; ox < p->ow; ox++)
                yc[oy * p->ow + ox] = kk_window_acc(p, xc, wc, oy, ox, 0.0f);
    }
}

/* ---------------------------------------------------------------------------------------------
 * stride-1 convolutions without im2col
 *
 * The image is copied once into a zero-padded buffer whose rows are Wp = w + 2 pw wide; row
 * (c, ki, kj) of the GEMM's B is then that buffer shifted by ki dh rows and kj dw columns (a
 * pointer offset), so the column matrix is never written. The product covers oh rows of Wp
 * columns; the last Wp - ow columns of each row are discarded when the output is written.
 * ------------------------------------------------------------------------------------------- */

static int implicit_ok(const kiln_conv2d *p) {
    if (p->sh != 1 || p->sw != 1 || is_pointwise(p) || (is_depthwise(p) && p->c == p->groups))
        return 0;
    /* measured: better than im2col + BLAS while the discarded columns are few and the product
     * wide (ResNet's 56x56 and 28x28 layers, LeNet), worse on 14x14 and 7x7 maps */
    long wp = p->w + 2 * p->pw;
    long kdim = (p->c / p->groups) * p->kh * p->kw;
    if (p->n > 1 || (p->oh * p->ow <= 256 && kdim <= 1024))   /* small images (LeNet) */
        return 2 * p->ow >= wp;
    return 5 * p->ow >= 4 * wp && p->oh * wp >= 512;
}

static long padded_plane(const kiln_conv2d *p) {
    long wp = p->w + 2 * p->pw;
    long plane = (p->h + 2 * p->ph) * wp + (p->kw - 1) * p->dw;
    return (plane + 15) & ~15L;
}

/* B's row offsets, (c, ki, kj) in the weight's order */
static void implicit_offsets(const kiln_conv2d *p, long *off) {
    long cg = p->c / p->groups, wp = p->w + 2 * p->pw, plane = padded_plane(p);
    for (long c = 0; c < cg; c++)
        for (long ki = 0; ki < p->kh; ki++)
            for (long kj = 0; kj < p->kw; kj++)
                *off++ = c * plane + ki * p->dh * wp + kj * p->dw;
}

static void pad_image(const kiln_conv2d *p, long c, const float *x, float *xp) {
    long wp = p->w + 2 * p->pw, plane = padded_plane(p);
    for (long ch = 0; ch < c; ch++) {
        float *dst = xp + ch * plane;
        const float *src = x + ch * p->h * p->w;
        memset(dst, 0, (size_t)(p->ph * wp + p->pw) * sizeof(float));
        float *row = dst + p->ph * wp + p->pw;
        for (long iy = 0; iy < p->h; iy++, row += wp) {
            memcpy(row, src + iy * p->w, (size_t)p->w * sizeof(float));
            if (iy + 1 < p->h) memset(row + p->w, 0, (size_t)2 * p->pw * sizeof(float));
        }
        float *end = dst + plane;
        float *tail = dst + (p->ph + p->h - 1) * wp + p->pw + p->w;
        memset(tail, 0, (size_t)(end - tail) * sizeof(float));
    }
}

/* y[f] (oh x ow) = the first ow of every wp columns of cb[f] (oh x wp), then the epilogue */
static void crop_epilogue(const conv_job *d, long f0, long f1, const float *cb, long wp,
                          float *y, const float *res) {
    const kiln_conv2d *p = d->p;
    long ohw = p->oh * p->ow, np = p->oh * wp;
    for (long f = f0; f < f1; f++) {
        float s = d->scale ? d->scale[f] : 1.0f, b = d->bias ? d->bias[f] : 0.0f;
        const float *src = cb + (f - f0) * np;
        float *yf = y + f * ohw;
        const float *rf = res ? res + f * ohw : NULL;
        for (long oy = 0; oy < p->oh; oy++) {
            const float *sr = src + oy * wp;
            float *yr = yf + oy * p->ow;
            if (rf) {
                const float *rr = rf + oy * p->ow;
                for (long ox = 0; ox < p->ow; ox++) yr[ox] = sr[ox] * s + b + rr[ox];
            } else {
                for (long ox = 0; ox < p->ow; ox++) yr[ox] = sr[ox] * s + b;
            }
            if (d->act == KILN_ACT_RELU)
                for (long ox = 0; ox < p->ow; ox++) yr[ox] = kiln_reluf(yr[ox]);
        }
        if (d->act != KILN_ACT_NONE && d->act != KILN_ACT_RELU) kiln_act_f32(yf, yf, ohw, d->act);
    }
}

static void implicit_image(const conv_job *d, long img, const long *off) {
    const kiln_conv2d *p = d->p;
    long cg = p->c / p->groups, fg = p->f / p->groups, ohw = p->oh * p->ow;
    long kdim = cg * p->kh * p->kw, wp = p->w + 2 * p->pw, np = p->oh * wp;
    const float *x = d->x + img * p->c * p->h * p->w;
    float *y = d->y + img * p->f * ohw;
    const float *res = d->residual ? d->residual + img * p->f * ohw : NULL;
    float *xp = (float *)kiln_scratch(2, (size_t)cg * padded_plane(p) * sizeof(float));
    float *cb = (float *)kiln_scratch(3, (size_t)fg * np * sizeof(float));
    for (long g = 0; g < p->groups; g++) {
        pad_image(p, cg, x + g * cg * p->h * p->w, xp);
        kk_gemm_nn_rows_par(fg, np, kdim, d->w + g * fg * kdim, kdim, xp, off, cb, np, 0,
                            !d->serial_gemm);
        crop_epilogue(d, g * fg, (g + 1) * fg, cb, wp, y, res);
    }
}

/* ---------------------------------------------------------------------------------------------
 * stride-2 convolutions with large kernels (ResNet's 7x7 stem), as stride-1 convolutions
 *
 * With ki = 2a + alpha and kj = 2b + beta, x_pad[2 oy + ki][2 ox + kj] is element (oy + a,
 * ox + b) of the phase (alpha, beta) of the padded image (its even/odd rows and columns). So
 * the convolution is a stride-1 convolution of the 4 c phases with a ceil(k/2)-sized kernel
 * (zero where 2a + alpha >= k), run without im2col as above: 31% more multiply-adds for a 7x7
 * kernel, but no column matrix (which for the stem is 147 rows of 12544 columns).
 * ------------------------------------------------------------------------------------------- */

static int polyphase_ok(const kiln_conv2d *p) {
    return p->sh == 2 && p->sw == 2 && p->dh == 1 && p->dw == 1 && p->groups == 1 &&
           p->kh >= 5 && p->kw >= 5;
}

typedef struct {
    long ph_h, ph_w, plane, ka, kb, kdim;
    float *w2;     /* (f, 4c, ka, kb) */
    long *off;
} polyphase;

static void polyphase_setup(const kiln_conv2d *p, const float *w, polyphase *q) {
    long hp = p->h + 2 * p->ph, wp = p->w + 2 * p->pw;
    q->ph_h = (hp + 1) / 2;
    q->ph_w = (wp + 1) / 2;
    q->ka = (p->kh + 1) / 2;
    q->kb = (p->kw + 1) / 2;
    q->plane = (q->ph_h * q->ph_w + q->kb + 15) & ~15L;
    q->kdim = 4 * p->c * q->ka * q->kb;
    q->w2 = (float *)kiln_scratch(0, (size_t)p->f * q->kdim * sizeof(float));
    q->off = (long *)kiln_scratch(1, (size_t)q->kdim * sizeof(long));
    long *o = q->off;
    for (long cp = 0; cp < 4 * p->c; cp++)
        for (long a = 0; a < q->ka; a++)
            for (long b = 0; b < q->kb; b++) *o++ = cp * q->plane + a * q->ph_w + b;
    for (long f = 0; f < p->f; f++) {
        float *dst = q->w2 + f * q->kdim;
        for (long c = 0; c < p->c; c++)
            for (long ab = 0; ab < 4; ab++)
                for (long a = 0; a < q->ka; a++)
                    for (long b = 0; b < q->kb; b++) {
                        long ki = 2 * a + ab / 2, kj = 2 * b + ab % 2;
                        *dst++ = (ki < p->kh && kj < p->kw)
                                     ? w[((f * p->c + c) * p->kh + ki) * p->kw + kj] : 0.0f;
                    }
    }
}

static void polyphase_image(const conv_job *d, long img, const polyphase *q) {
    const kiln_conv2d *p = d->p;
    long ohw = p->oh * p->ow, np = p->oh * q->ph_w;
    const float *x = d->x + img * p->c * p->h * p->w;
    float *ph = (float *)kiln_scratch(2, (size_t)4 * p->c * q->plane * sizeof(float));
    float *cb = (float *)kiln_scratch(3, (size_t)p->f * np * sizeof(float));
    memset(ph, 0, (size_t)4 * p->c * q->plane * sizeof(float));
    for (long c = 0; c < p->c; c++) {
        const float *xc = x + c * p->h * p->w;
        for (long iy = 0; iy < p->h; iy++) {
            long py = iy + p->ph;            /* row in the padded image */
            const float *xr = xc + iy * p->w;
            for (long beta = 0; beta < 2; beta++) {
                float *dst = ph + (c * 4 + (py % 2) * 2 + beta) * q->plane + (py / 2) * q->ph_w;
                /* padded column px = ix + pw has phase px % 2 and index px / 2 */
                long ix0 = ((beta - p->pw) % 2 + 2) % 2;
                for (long ix = ix0; ix < p->w; ix += 2) dst[(ix + p->pw) / 2] = xr[ix];
            }
        }
    }
    kk_gemm_nn_rows_par(p->f, np, q->kdim, q->w2, q->kdim, ph, q->off, cb, np, 0,
                        !d->serial_gemm);
    crop_epilogue(d, 0, p->f, cb, q->ph_w, d->y + img * p->f * ohw,
                  d->residual ? d->residual + img * p->f * ohw : NULL);
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
            else if (kdim <= 256 && ohw >= 1024)
                /* few rows of columns, many columns (the 7x7 stem): the unpacked kernel reads
                 * the column matrix once; BLAS would pack all of it first */
                kk_gemm_nn_direct_par(fg, ohw, kdim, wg, kdim, b, ohw, yg, ohw, 0, 1);
            else
                kiln_sgemm(0, 0, fg, ohw, kdim, 1.0f, wg, kdim, b, ohw, 0.0f, yg, ohw);
        }
    }
    epilogue(y, d->residual ? d->residual + img * p->f * ohw : NULL, d->scale, d->bias, p->f,
             ohw, d->act);
}

typedef struct {
    const conv_job *job;
    const long *off;           /* implicit im2col offsets, or NULL */
    const polyphase *poly;     /* stride-2 as stride-1, or NULL */
} images_job;

static void conv_images(void *ctx, long lo, long hi) {
    const images_job *d = (const images_job *)ctx;
    for (long i = lo; i < hi; i++) {
        if (d->poly) polyphase_image(d->job, i, d->poly);
        else if (d->off) implicit_image(d->job, i, d->off);
        else conv_image(d->job, i);
    }
}

void kiln_conv2d_f32(const kiln_conv2d *p, const float *x, const float *w, const float *scale,
                     const float *bias, const float *residual, float *y, int act) {
    /* 3x3 stride 1 on maps large enough: Winograd, F(4x4, 3x3) where it pays
     * (conv_winograd4.c), else F(2x2, 3x3) (conv_winograd.c); everything but
     * depthwise: without a column matrix (conv_shift.c); the paths below remain for depthwise
     * and for when their scratch memory cannot be had */
    if (kk_conv2d_winograd4(p, x, w, scale, bias, residual, y, act) == 0) return;
    if (kk_conv2d_winograd(p, x, w, scale, bias, residual, y, act) == 0) return;
    if (!(is_depthwise(p) && p->c == p->groups) &&
        kk_conv2d_shift(p, x, w, scale, bias, residual, y, act) == 0)
        return;
    conv_job d = {p, x, w, scale, bias, residual, y, act, 0};
    images_job id = {&d, NULL, NULL};
    polyphase q;
    if (polyphase_ok(p)) {
        polyphase_setup(p, w, &q);
        id.poly = &q;
    } else if (implicit_ok(p)) {
        long kdim = (p->c / p->groups) * p->kh * p->kw;
        long *off = (long *)kiln_scratch(1, (size_t)kdim * sizeof(long));
        implicit_offsets(p, off);
        id.off = off;
    }
    if (p->n > 1 && kiln_get_num_threads() > 1) {
        d.serial_gemm = 1;
        kiln_parallel_for(conv_images, &id, p->n, 1);
    } else {
        conv_images(&id, 0, p->n);
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

/* For stride 1 the input gradient is itself a stride-1 convolution: of dy, padded by
 * d (k - 1) - p, with the weights flipped and their two channel axes swapped. */
static int data_grad_as_conv(const kiln_conv2d *p, kiln_conv2d *q) {
    if (p->sh != 1 || p->sw != 1 || p->groups != 1) return 0;
    long ph = p->dh * (p->kh - 1) - p->ph, pw = p->dw * (p->kw - 1) - p->pw;
    if (ph < 0 || pw < 0) return 0;
    kiln_conv2d t = {p->n, p->f, p->oh, p->ow, p->c, p->kh, p->kw, 1, 1, ph, pw, p->dh, p->dw,
                     1, 0, 0};
    if (kiln_conv2d_init(&t) != 0 || t.oh != p->h || t.ow != p->w || !implicit_ok(&t)) return 0;
    *q = t;
    return 1;
}

void kiln_conv2d_backward_data_f32(const kiln_conv2d *p, const float *dy, const float *w,
                                   float *dx) {
    kiln_conv2d q;
    if (data_grad_as_conv(p, &q)) {
        long kk = p->kh * p->kw;
        float *wt = (float *)malloc((size_t)p->f * p->c * kk * sizeof(float));
        if (wt) {
            for (long f = 0; f < p->f; f++)
                for (long c = 0; c < p->c; c++)
                    for (long k = 0; k < kk; k++)
                        wt[(c * p->f + f) * kk + (kk - 1 - k)] = w[(f * p->c + c) * kk + k];
            kiln_conv2d_f32(&q, dy, wt, NULL, NULL, NULL, dx, KILN_ACT_NONE);
            free(wt);
            return;
        }
    }
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
    const long *off;   /* stride 1: implicit im2col offsets */
} wgrad_job;

#define WG_CHUNK 16   /* images whose sums share one horizontal reduction */

/* dW_g (+)= sum over images of dy_g (fg x oh*wp, zero in the discarded columns) . B^T, B's rows
 * being shifted rows of each padded image (see implicit_image): no column matrix. A chunk of
 * images is padded first, so each 4 x 4 tile of dot products runs over all of them before its
 * sums are reduced across vector lanes. */
static void wgrad_implicit_images(const kiln_conv2d *p, const float *x, const float *dy,
                                  long count, float *dw, const long *off, int first) {
    long cg = p->c / p->groups, fg = p->f / p->groups, ohw = p->oh * p->ow;
    long kdim = cg * p->kh * p->kw, wp = p->w + 2 * p->pw;
    long np = (p->oh * wp + KK_VLEN - 1) / KK_VLEN * KK_VLEN;
    long xs = cg * padded_plane(p) + np;          /* one padded image, with a finite tail */
    float *xp = (float *)kiln_scratch(2, (size_t)count * xs * sizeof(float));
    float *gp = (float *)kiln_scratch(3, (size_t)count * fg * np * sizeof(float));
    for (long g = 0; g < p->groups; g++) {
        for (long i = 0; i < count; i++) {
            float *xi = xp + i * xs, *gi = gp + i * fg * np;
            pad_image(p, cg, x + i * p->c * p->h * p->w + g * cg * p->h * p->w, xi);
            memset(xi + cg * padded_plane(p), 0, (size_t)np * sizeof(float));
            memset(gi, 0, (size_t)fg * np * sizeof(float));
            for (long f = 0; f < fg; f++)
                for (long oy = 0; oy < p->oh; oy++)
                    memcpy(gi + f * np + oy * wp, dy + i * p->f * ohw + (g * fg + f) * ohw +
                           oy * p->ow, (size_t)p->ow * sizeof(float));
        }
        float *dwg = dw + g * fg * kdim;
        for (long k = 0; k < kdim; k += 4) {
            int nk = (int)KK_MIN(4, kdim - k);
            long o[4];
            for (int q = 0; q < 4; q++) o[q] = off[k + (q < nk ? q : 0)];
            for (long f = 0; f < fg; f += 4) {
                int mr = (int)KK_MIN(4, fg - f);
                kk_vf acc[4][4];
                for (int r = 0; r < 4; r++)
                    for (int q = 0; q < 4; q++) acc[r][q] = kk_splat(0.0f);
                for (long i = 0; i < count; i++) {
                    const float *xi = xp + i * xs, *a = gp + (i * fg + f) * np;
                    const float *b0 = xi + o[0], *b1 = xi + o[1], *b2 = xi + o[2],
                                *b3 = xi + o[3];
                    for (long j = 0; j < np; j += KK_VLEN) {
                        kk_vf w0 = kk_load(b0 + j), w1 = kk_load(b1 + j), w2 = kk_load(b2 + j),
                              w3 = kk_load(b3 + j);
                        for (int r = 0; r < mr; r++) {
                            kk_vf v = kk_load(a + r * np + j);
                            acc[r][0] += v * w0;
                            acc[r][1] += v * w1;
                            acc[r][2] += v * w2;
                            acc[r][3] += v * w3;
                        }
                    }
                }
                for (int r = 0; r < mr; r++)
                    for (int q = 0; q < nk; q++) {
                        float *t = dwg + (f + r) * kdim + k + q;
                        float v = kk_hsum(acc[r][q]);
                        *t = first ? v : *t + v;
                    }
            }
        }
    }
}

static void wgrad_part(void *ctx, long t0, long t1) {
    const wgrad_job *d = (const wgrad_job *)ctx;
    const kiln_conv2d *p = d->p;
    if (d->off) {
        long ohw = p->oh * p->ow, kdim = (p->c / p->groups) * p->kh * p->kw;
        for (long t = t0; t < t1; t++) {
            long i0 = p->n * t / d->parts, i1 = p->n * (t + 1) / d->parts;
            for (long img = i0; img < i1; img += WG_CHUNK)
                wgrad_implicit_images(p, d->x + img * p->c * p->h * p->w,
                                      d->dy + img * p->f * ohw, KK_MIN(WG_CHUNK, i1 - img),
                                      d->partial + t * p->f * kdim, d->off, img == i0);
        }
        return;
    }
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
    long *off = NULL;
    if (implicit_ok(p)) {
        off = (long *)malloc((size_t)kdim * sizeof(long));
        if (off) implicit_offsets(p, off);
    }
    if (parts <= 1) {
        wgrad_job d = {p, x, dy, dw, 1, off};
        wgrad_part(&d, 0, 1);
        free(off);
        return;
    }
    /* per-thread partial sums, in a buffer of their own (the parts use slots 2 and 3) */
    float *own = (float *)malloc((size_t)parts * size * sizeof(float));
    if (!own) {
        wgrad_job d = {p, x, dy, dw, 1, off};
        wgrad_part(&d, 0, 1);
        free(off);
        return;
    }
    wgrad_job d = {p, x, dy, own, parts, off};
    kiln_parallel_for(wgrad_part, &d, parts, 1);
    for (long j = 0; j < size; j++) {
        float s = own[j];
        for (long t = 1; t < parts; t++) s += own[t * size + j];
        dw[j] = s;
    }
    free(own);
    free(off);
}
