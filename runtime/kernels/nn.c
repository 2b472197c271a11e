/* nn.c: softmax, axis sums and batch normalisation. */
#include "kiln_kernels.h"
#include "kk_simd.h"
#include "kiln_math.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * softmax / log-softmax over the middle axis of (outer, n, inner)
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    const float *x;
    float *y;
    long n, inner;
    float scale;
    int log;
} softmax_job;

static void softmax_rows(void *ctx, long r0, long r1) {
    const softmax_job *d = (const softmax_job *)ctx;
    long n = d->n, j;
    float s = d->scale;
    float *e = d->log ? (float *)kiln_scratch(2, (size_t)n * sizeof(float)) : NULL;
    for (long r = r0; r < r1; r++) {
        const float *x = d->x + r * n;
        float *y = d->y + r * n;
        float mx = kk_max_scaled(x, n, s);
        for (j = 0; j < n; j++) y[j] = x[j] * s - mx;
        if (d->log) {
            for (j = 0; j < n; j++) e[j] = kiln_expf(y[j]);
            float lse = kiln_logf(kk_sum(e, n));
            for (j = 0; j < n; j++) y[j] -= lse;
        } else {
            for (j = 0; j < n; j++) y[j] = kiln_expf(y[j]);
            float inv = 1.0f / kk_sum(y, n);
            for (j = 0; j < n; j++) y[j] *= inv;
        }
    }
}

/* inner == 1 with few classes (a classifier's 10 logits): a row is shorter than a vector, so
 * row by row every loop is a scalar tail. Instead, blocks of SMALL_ROWS rows are transposed
 * into scratch (class-major) and the loops run across the rows in vector lanes, as
 * softmax_slabs runs across `inner`. */
#define SMALL_ROWS 16
static void softmax_rows_small(void *ctx, long r0, long r1) {
    const softmax_job *d = (const softmax_job *)ctx;
    long n = d->n, j, r;
    float s = d->scale;
    /* t: the scaled inputs, then less their row's max; e: their exponentials; class-major */
    float *t = (float *)kiln_scratch(2, (size_t)n * SMALL_ROWS * 2 * sizeof(float));
    float *e = t + n * SMALL_ROWS;
    float mx[SMALL_ROWS], sum[SMALL_ROWS];
    for (long b = r0; b < r1; b += SMALL_ROWS) {
        long rows = KK_MIN(SMALL_ROWS, r1 - b);
        const float *x = d->x + b * n;
        float *y = d->y + b * n;
        if (rows < SMALL_ROWS) {   /* idle lanes compute on zeros */
            for (long k = 0; k < n * SMALL_ROWS; k++) t[k] = 0.0f;
            for (j = 0; j < n; j++)
                for (r = 0; r < rows; r++) t[j * SMALL_ROWS + r] = x[r * n + j] * s;
        } else {
            /* flat loops (GCC unrolls constant 16-trip loops into scalar code): gathers */
            for (long k = 0; k < n * SMALL_ROWS; k++)
                t[k] = x[(k % SMALL_ROWS) * n + k / SMALL_ROWS] * s;
        }
        for (r = 0; r < SMALL_ROWS; r++) mx[r] = t[r];
        for (j = 1; j < n; j++)
            for (r = 0; r < SMALL_ROWS; r++) mx[r] = kiln_maxf(mx[r], t[j * SMALL_ROWS + r]);
        for (j = 0; j < n; j++)
            for (r = 0; r < SMALL_ROWS; r++) t[j * SMALL_ROWS + r] -= mx[r];
        for (long k = 0; k < n * SMALL_ROWS; k++) e[k] = kiln_expf(t[k]);
        for (r = 0; r < SMALL_ROWS; r++) sum[r] = e[r];
        for (j = 1; j < n; j++)
            for (r = 0; r < SMALL_ROWS; r++) sum[r] += e[j * SMALL_ROWS + r];
        const float *src = d->log ? t : e;
        if (d->log) {
            for (r = 0; r < SMALL_ROWS; r++) sum[r] = -kiln_logf(sum[r]);
        } else {
            for (r = 0; r < SMALL_ROWS; r++) sum[r] = 1.0f / sum[r];
        }
        for (r = 0; r < rows; r++)
            for (j = 0; j < n; j++)
                y[r * n + j] = d->log ? src[j * SMALL_ROWS + r] + sum[r]
                                      : src[j * SMALL_ROWS + r] * sum[r];
    }
}

/* inner > 1: the axis is strided; work on one (outer) slab at a time, vectorised over inner */
static void softmax_slabs(void *ctx, long o0, long o1) {
    const softmax_job *d = (const softmax_job *)ctx;
    long n = d->n, in = d->inner;
    float s = d->scale;
    float *acc = (float *)kiln_scratch(2, (size_t)in * 2 * sizeof(float));
    float *mx = acc, *sum = acc + in;
    for (long o = o0; o < o1; o++) {
        const float *x = d->x + o * n * in;
        float *y = d->y + o * n * in;
        long i, j;
        for (i = 0; i < in; i++) { mx[i] = -INFINITY; sum[i] = 0.0f; }
        for (j = 0; j < n; j++)
            for (i = 0; i < in; i++) mx[i] = kiln_maxf(mx[i], x[j * in + i] * s);
        for (j = 0; j < n; j++)
            for (i = 0; i < in; i++) sum[i] += kiln_expf(x[j * in + i] * s - mx[i]);
        if (d->log) {
            for (i = 0; i < in; i++) mx[i] += kiln_logf(sum[i]);
            for (j = 0; j < n; j++)
                for (i = 0; i < in; i++) y[j * in + i] = x[j * in + i] * s - mx[i];
        } else {
            for (i = 0; i < in; i++) sum[i] = 1.0f / sum[i];
            for (j = 0; j < n; j++)
                for (i = 0; i < in; i++)
                    y[j * in + i] = kiln_expf(x[j * in + i] * s - mx[i]) * sum[i];
        }
    }
}

void kiln_softmax_f32(const float *x, float *y, long outer, long n, long inner, float scale,
                      int log) {
    softmax_job d = {x, y, n, inner, scale, log};
    long grain = KK_MAX(1, 32768 / (n * inner + 1));
    if (inner == 1 && n < 16 && outer >= 8)
        kiln_parallel_for(softmax_rows_small, &d, outer, grain);
    else if (inner == 1) kiln_parallel_for(softmax_rows, &d, outer, grain);
    else kiln_parallel_for(softmax_slabs, &d, outer, grain);
}

/* ---------------------------------------------------------------------------------------------
 * sums over the middle axis of (outer, n, inner)
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    const float *x;
    float *y;
    long outer, n, inner;
    int accumulate;
} sum_job;

/* inner == 1: one dot-like reduction per row */
static void sum_rows(void *ctx, long r0, long r1) {
    const sum_job *d = (const sum_job *)ctx;
    for (long r = r0; r < r1; r++) {
        float s = kk_sum(d->x + r * d->n, d->n);
        d->y[r] = d->accumulate ? d->y[r] + s : s;
    }
}

/* inner > 1: add rows of length inner; parallel over column ranges of the output */
static void sum_cols(void *ctx, long c0, long c1) {
    const sum_job *d = (const sum_job *)ctx;
    long in = d->inner;
    for (long o = 0; o < d->outer; o++) {
        const float *x = d->x + o * d->n * in;
        float *y = d->y + o * in;
        long i;
        if (!d->accumulate)
            for (i = c0; i < c1; i++) y[i] = 0.0f;
        for (long j = 0; j < d->n; j++) {
            const float *xj = x + j * in;
            for (i = c0; i < c1; i++) y[i] += xj[i];
        }
    }
}

void kiln_sum_axis_f32(const float *x, float *y, long outer, long n, long inner,
                       int accumulate) {
    sum_job d = {x, y, outer, n, inner, accumulate};
    if (inner == 1) {
        kiln_parallel_for(sum_rows, &d, outer, KK_MAX(1, 65536 / (n + 1)));
    } else {
        long grain = KK_MAX(64, 65536 / (outer * n + 1));
        kiln_parallel_for(sum_cols, &d, inner, grain);
    }
}

/* ---------------------------------------------------------------------------------------------
 * batch normalisation of (n, c, s) per channel
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    const float *x, *gamma, *beta, *mean_in, *var_in;
    float *y, *mean_out, *var_out;
    long n, c, s;
    float eps;
    int fix_gamma, training;
} bn_job;

static void bn_channels(void *ctx, long c0, long c1) {
    const bn_job *d = (const bn_job *)ctx;
    long n = d->n, c = d->c, s = d->s;
    for (long ch = c0; ch < c1; ch++) {
        double mean, var;
        if (d->training) {
            double acc = 0.0;
            for (long i = 0; i < n; i++) {
                acc += kk_sum(d->x + (i * c + ch) * s, s);
            }
            mean = acc / (double)(n * s);
            float m = (float)mean;
            double acc2 = 0.0;
            for (long i = 0; i < n; i++) {
                acc2 += kk_sum_sq_dev(d->x + (i * c + ch) * s, s, m);
            }
            var = acc2 / (double)(n * s);
        } else {
            mean = d->mean_in[ch];
            var = d->var_in[ch];
        }
        if (d->mean_out) d->mean_out[ch] = (float)mean;
        if (d->var_out) d->var_out[ch] = (float)var;
        float inv_std = (float)(1.0 / sqrt((double)(float)var + (double)d->eps));
        float scale = d->fix_gamma ? inv_std : d->gamma[ch] * inv_std;
        float shift = d->beta[ch] - (float)mean * scale;
        for (long i = 0; i < n; i++) {
            const float *x = d->x + (i * c + ch) * s;
            float *y = d->y + (i * c + ch) * s;
            for (long j = 0; j < s; j++) y[j] = x[j] * scale + shift;
        }
    }
}

/* s == 1 (a (n, c) matrix): channels are contiguous, so work row by row */
static void bn_matrix(const bn_job *d) {
    long n = d->n, c = d->c;
    float *mean = (float *)kiln_scratch(2, (size_t)c * 4 * sizeof(float));
    float *var = mean + c, *scale = var + c, *shift = scale + c;
    long i, j;
    if (d->training) {
        for (j = 0; j < c; j++) mean[j] = 0.0f;
        for (i = 0; i < n; i++)
            for (j = 0; j < c; j++) mean[j] += d->x[i * c + j];
        for (j = 0; j < c; j++) mean[j] /= (float)n;
        for (j = 0; j < c; j++) var[j] = 0.0f;
        for (i = 0; i < n; i++)
            for (j = 0; j < c; j++) {
                float t = d->x[i * c + j] - mean[j];
                var[j] += t * t;
            }
        for (j = 0; j < c; j++) var[j] /= (float)n;
    } else {
        memcpy(mean, d->mean_in, (size_t)c * sizeof(float));
        memcpy(var, d->var_in, (size_t)c * sizeof(float));
    }
    for (j = 0; j < c; j++) {
        float inv_std = (float)(1.0 / sqrt((double)var[j] + (double)d->eps));
        scale[j] = d->fix_gamma ? inv_std : d->gamma[j] * inv_std;
        shift[j] = d->beta[j] - mean[j] * scale[j];
    }
    if (d->mean_out) memcpy(d->mean_out, mean, (size_t)c * sizeof(float));
    if (d->var_out) memcpy(d->var_out, var, (size_t)c * sizeof(float));
    for (i = 0; i < n; i++)
        for (j = 0; j < c; j++) d->y[i * c + j] = d->x[i * c + j] * scale[j] + shift[j];
}

void kiln_batch_norm_f32(const float *x, const float *gamma, const float *beta,
                         const float *mean_in, const float *var_in, float *y, float *mean_out,
                         float *var_out, long n, long c, long s, float eps, int fix_gamma,
                         int training) {
    bn_job d = {x, gamma, beta, mean_in, var_in, y, mean_out, var_out, n, c, s, eps, fix_gamma,
                training};
    if (s == 1) {
        bn_matrix(&d);
        return;
    }
    long grain = KK_MAX(1, 65536 / (n * s + 1));
    kiln_parallel_for(bn_channels, &d, c, grain);
}
