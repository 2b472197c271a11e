/* optim.c: fused optimizer updates (MXNet's formulas), one pass over each weight.
 *
 * A weight of 64K floats or more is split over the thread pool (grain 32K): the gradient a
 * threaded matrix product just wrote is half in each core's cache, and the update is
 * memory-bound. Measured on the MLP 784-256-128-10 training step (first weight 200K floats,
 * two cores): Trainer.step 215 -> 165 us at the minimum, against a grain of 128K, which left
 * that weight on one thread. */
#include "kiln_kernels.h"
#include "kk_simd.h"

#include <math.h>

#define GRAIN (1L << 15)

typedef struct {
    float *w, *mom, *m, *v;
    const float *g;
    float lr, momentum, wd, rescale, clip, beta1, beta2, eps;
    float c1, c2;   /* 1 - beta1, 1 - beta2, rounded from double */
} opt_job;

static inline float prep(float g, float w, const opt_job *d) {
    g *= d->rescale;
    if (d->clip > 0.0f) g = g > d->clip ? d->clip : (g < -d->clip ? -d->clip : g);
    return g + d->wd * w;
}

static void sgd_range(void *ctx, long lo, long hi) {
    const opt_job *d = (const opt_job *)ctx;
    float *w = d->w, *mom = d->mom;
    const float *g = d->g;
    if (mom) {
        for (long i = lo; i < hi; i++) {
            float gi = prep(g[i], w[i], d);
            mom[i] = d->momentum * mom[i] - d->lr * gi;
            w[i] += mom[i];
        }
    } else {
        for (long i = lo; i < hi; i++) w[i] -= d->lr * prep(g[i], w[i], d);
    }
}

void kiln_sgd_update_f32(float *w, const float *g, float *mom, long n, float lr, float momentum,
                         float wd, float rescale, float clip) {
    opt_job d = {w, mom, NULL, NULL, g, lr, momentum, wd, rescale, clip, 0, 0, 0, 0, 0};
    kiln_parallel_for(sgd_range, &d, n, GRAIN);
}

static void adam_range(void *ctx, long lo, long hi) {
    const opt_job *d = (const opt_job *)ctx;
    float *w = d->w, *m = d->m, *v = d->v;
    const float *g = d->g;
    float b1 = d->beta1, b2 = d->beta2, c1 = d->c1, c2 = d->c2;
    for (long i = lo; i < hi; i++) {
        float gi = prep(g[i], w[i], d);
        m[i] = b1 * m[i] + c1 * gi;
        v[i] = b2 * v[i] + c2 * gi * gi;
        w[i] -= d->lr * (m[i] / (sqrtf(v[i]) + d->eps));
    }
}

void kiln_adam_update_f32(float *w, const float *g, float *m, float *v, long n, float lr,
                          double beta1, double beta2, float eps, float wd, float rescale,
                          float clip) {
    opt_job d = {w, NULL, m, v, g, lr, 0, wd, rescale, clip, (float)beta1, (float)beta2, eps,
                 (float)(1.0 - beta1), (float)(1.0 - beta2)};
    kiln_parallel_for(adam_range, &d, n, GRAIN);
}
