/* lstm.c: one direction of an LSTM layer over a sequence, forward (keeping what the backward
 * reads) and exact backward, for training.
 *
 * Layout and equations are MXNet's (and cuDNN's): gates [i, f, c~, o] of H units each,
 * w_ih (4H, I), w_hh (4H, H), biases (4H,);
 *     i, f, o = sigmoid(.), c~ = tanh(.);  c' = f*c + i*c~;  h' = o*tanh(c').
 *
 * Forward: one GEMM projects every step's input at once into `gates` (T, N, 4H); each step
 * then adds h @ w_hh^T into its slice (one GEMM, accumulating) and one pass over the rows turns
 * the pre-activations into the activations in place, writing the cell state and the output.
 * Backward: one reverse pass per step (the gates' gradient from the activations, summed into
 * the bias gradient by row, then one GEMM for the gradient of the previous state), then three
 * large GEMMs for dx, dW_ih, dW_hh with every step at once. Every GEMM is kiln_sgemm (BLAS
 * blocks or the built-in kernels on the pool); the row passes run on the pool too. A batch of
 * 8 rows per thread or more runs the steps of both passes per block of rows instead, one block
 * per thread (fwd_sequence, bwd_sequence): two pool jobs per pass instead of two per step.
 * Measured on bench/lstm.py's sizes (batch 32, two threads) against two jobs per step: 1-4%
 * faster, at the minimum and by round.
 */
#include "kiln_kernels.h"
#include "kiln_math.h"
#include "kk_gemm.h"
#include "kk_threads.h"

#include <string.h>

typedef struct {
    long h;
    const float *b_ih, *b_hh;
    const float *c_prev;     /* (N, H) */
    float *gates;            /* (N, 4H): pre-activations in, activations out */
    float *c, *y;            /* (N, H) */
} fwd_job;

static void fwd_rows(void *ctx, long r0, long r1) {
    const fwd_job *d = (const fwd_job *)ctx;
    const long h = d->h;
    /* restrict-qualified locals: the loop below vectorises only when the compiler knows the
     * rows it writes are not the biases or the previous cell it reads */
    const float *restrict bi = d->b_ih, *restrict bh = d->b_hh;
    for (long r = r0; r < r1; r++) {
        float *restrict gi = d->gates + r * 4 * h, *restrict gf = gi + h;
        float *restrict gu = gi + 2 * h, *restrict go = gi + 3 * h;
        const float *restrict cp = d->c_prev + r * h;
        float *restrict c = d->c + r * h, *restrict y = d->y + r * h;
#pragma omp simd
        for (long j = 0; j < h; j++) {
            float i = kiln_sigmoidf(gi[j] + bi[j] + bh[j]);
            float f = kiln_sigmoidf(gf[j] + bi[h + j] + bh[h + j]);
            float u = kiln_tanhf(gu[j] + bi[2 * h + j] + bh[2 * h + j]);
            float o = kiln_sigmoidf(go[j] + bi[3 * h + j] + bh[3 * h + j]);
            float cn = f * cp[j] + i * u;
            gi[j] = i;
            gf[j] = f;
            gu[j] = u;
            go[j] = o;
            c[j] = cn;
            y[j] = o * kiln_tanhf(cn);
        }
    }
}

/* Rows per pool range: about 4096 elements of gate work each. */
static long row_grain(long h) {
    long g = 4096 / (h > 0 ? h : 1);
    return g > 0 ? g : 1;
}

/* The batch's rows are independent through the whole sequence. With BATCH_ROWS rows or more
 * per thread, each thread runs its block of rows through every step (its own products and
 * gate passes, no synchronisation between steps, its gates staying in its cache); with fewer,
 * each step's product and gate pass are split over the pool instead. */
#define BATCH_ROWS 8

static int by_rows(long n) {
    int threads = kiln_get_num_threads();
    return threads > 1 && n >= BATCH_ROWS * threads;
}

typedef struct {
    long t_len, n, h;
    int reverse;
    const float *w_t, *w_hh;    /* W_hh^T (H, 4H), or NULL: then w_hh read transposed */
    const float *b_ih, *b_hh, *h0, *c0;
    float *gates, *cells, *y;
} seq_job;

/* Rows [r0, r1) of the batch through every step (the pool splits each step's work when the
 * call covers the whole batch from outside the pool). */
static void fwd_sequence(void *ctx, long r0, long r1) {
    const seq_job *d = (const seq_job *)ctx;
    const long h = d->h, g4 = 4 * h, n = d->n, nh = n * h, rows = r1 - r0;
    const float *hp = d->h0, *cp = d->c0;
    for (long s = 0; s < d->t_len; s++) {
        long t = d->reverse ? d->t_len - 1 - s : s;
        float *g = d->gates + t * n * g4;
        if (d->w_t)
            kiln_sgemm(0, 0, rows, g4, h, 1.0f, hp + r0 * h, h, d->w_t, g4, 1.0f, g + r0 * g4,
                       g4);
        else
            kiln_sgemm(0, 1, rows, g4, h, 1.0f, hp + r0 * h, h, d->w_hh, h, 1.0f, g + r0 * g4,
                       g4);
        fwd_job fj = {h, d->b_ih, d->b_hh, cp, g, d->cells + t * nh, d->y + t * nh};
        if (rows == n)
            kiln_parallel_for(fwd_rows, &fj, n, row_grain(h));
        else
            fwd_rows(&fj, r0, r1);
        hp = d->y + t * nh;
        cp = d->cells + t * nh;
    }
}

void kiln_lstm_forward_f32(long t_len, long n, long in, long h, const float *x,
                           const float *w_ih, const float *w_hh, const float *b_ih,
                           const float *b_hh, const float *h0, const float *c0, int reverse,
                           float *y, float *h_last, float *c_last, float *gates, float *cells) {
    const long g4 = 4 * h, nh = n * h;
    if (t_len == 0 || n == 0) {
        memcpy(h_last, h0, (size_t)nh * sizeof(float));
        memcpy(c_last, c0, (size_t)nh * sizeof(float));
        return;
    }
    kiln_sgemm(0, 1, t_len * n, g4, in, 1.0f, x, in, w_ih, in, 0.0f, gates, g4);
    /* the per-step products read W_hh^T (H, 4H) row by row: transposed once here, they run
     * 1.3-1.6x faster than reading w_hh transposed in every step */
    float *w_t = (float *)kiln_scratch(3, (size_t)(h * g4) * sizeof(float));
    if (w_t) kk_transpose(w_t, w_hh, g4, h, h);
    seq_job d = {t_len, n, h, reverse, w_t, w_hh, b_ih, b_hh, h0, c0, gates, cells, y};
    if (by_rows(n))
        kk_parallel_for_chunks(fwd_sequence, &d, n, BATCH_ROWS, 1);
    else
        fwd_sequence(&d, 0, n);
    long last = reverse ? 0 : t_len - 1;
    memcpy(h_last, y + last * nh, (size_t)nh * sizeof(float));
    memcpy(c_last, cells + last * nh, (size_t)nh * sizeof(float));
}

typedef struct {
    long h;
    const float *gates, *c, *c_prev, *dy;   /* this step's rows */
    const float *dh;                         /* (N, H): the state's gradient */
    float *dc;                               /* (N, H): the cell's, in and out */
    float *d_pre;                            /* (N, 4H) */
    float *db;                               /* (N, 4H): each row's d_pre summed over steps */
} bwd_job;

static void bwd_rows(void *ctx, long r0, long r1) {
    const bwd_job *d = (const bwd_job *)ctx;
    const long h = d->h;
    for (long r = r0; r < r1; r++) {
        const float *restrict gi = d->gates + r * 4 * h, *restrict gf = gi + h;
        const float *restrict gu = gi + 2 * h, *restrict go = gi + 3 * h;
        const float *restrict c = d->c + r * h, *restrict cp = d->c_prev + r * h;
        const float *restrict dy = d->dy + r * h;
        const float *restrict dh = d->dh + r * h;
        float *restrict dc = d->dc + r * h;
        float *restrict di = d->d_pre + r * 4 * h, *restrict df = di + h;
        float *restrict du = di + 2 * h, *restrict dout = di + 3 * h;
        float *restrict bi = d->db + r * 4 * h, *restrict bf = bi + h;
        float *restrict bu = bi + 2 * h, *restrict bo = bi + 3 * h;
#pragma omp simd
        for (long j = 0; j < h; j++) {
            float i = gi[j], f = gf[j], u = gu[j], o = go[j];
            float tc = kiln_tanhf(c[j]);
            float dhj = dh[j] + dy[j];
            float dcj = dc[j] + dhj * o * (1.0f - tc * tc);
            float gi_ = dcj * u * i * (1.0f - i), gf_ = dcj * cp[j] * f * (1.0f - f);
            float gu_ = dcj * i * (1.0f - u * u), go_ = dhj * tc * o * (1.0f - o);
            di[j] = gi_;
            df[j] = gf_;
            du[j] = gu_;
            dout[j] = go_;
            bi[j] += gi_;
            bf[j] += gf_;
            bu[j] += gu_;
            bo[j] += go_;
            dc[j] = dcj * f;
        }
    }
}

typedef struct {
    long t_len, n, h;
    int reverse;
    const float *w_hh, *c0, *dy, *gates, *cells;
    float *dh, *dc, *d_pre;    /* dh0 and dc0: the running gradients of the state */
    float *db;                 /* (N, 4H), zero: the bias gradient by row (see bwd_job) */
} bwd_seq_job;

/* Rows [r0, r1) of the batch back through every step (as fwd_sequence). */
static void bwd_sequence(void *ctx, long r0, long r1) {
    const bwd_seq_job *d = (const bwd_seq_job *)ctx;
    const long h = d->h, g4 = 4 * h, n = d->n, nh = n * h, rows = r1 - r0;
    for (long s = 0; s < d->t_len; s++) {
        long t = d->reverse ? s : d->t_len - 1 - s;              /* the forward's, backwards */
        int first = d->reverse ? t == d->t_len - 1 : t == 0;      /* the forward's first step */
        long tp = d->reverse ? t + 1 : t - 1;
        const float *cp = first ? d->c0 : d->cells + tp * nh;
        float *dp = d->d_pre + t * n * g4;
        bwd_job bj = {h, d->gates + t * n * g4, d->cells + t * nh, cp, d->dy + t * nh, d->dh,
                      d->dc, dp, d->db};
        if (rows == n)
            kiln_parallel_for(bwd_rows, &bj, n, row_grain(h));
        else
            bwd_rows(&bj, r0, r1);
        kiln_sgemm(0, 0, rows, h, g4, 1.0f, dp + r0 * g4, g4, d->w_hh, h, 0.0f, d->dh + r0 * h,
                   h);
    }
}

int kiln_lstm_backward_f32(long t_len, long n, long in, long h, const float *dy,
                           const float *dh_last, const float *dc_last, const float *x,
                           const float *w_ih, const float *w_hh, const float *h0,
                           const float *c0, const float *y, const float *gates,
                           const float *cells, int reverse, float *dx, float *dw_ih,
                           float *dw_hh, float *db_ih, float *db_hh, float *dh0, float *dc0) {
    const long g4 = 4 * h, nh = n * h;
    memcpy(dh0, dh_last, (size_t)nh * sizeof(float));
    memcpy(dc0, dc_last, (size_t)nh * sizeof(float));
    if (t_len == 0 || n == 0) {
        memset(dx, 0, (size_t)(t_len * n * in) * sizeof(float));
        memset(dw_ih, 0, (size_t)(g4 * in) * sizeof(float));
        memset(dw_hh, 0, (size_t)(g4 * h) * sizeof(float));
        memset(db_ih, 0, (size_t)g4 * sizeof(float));
        memset(db_hh, 0, (size_t)g4 * sizeof(float));
        return 0;
    }
    /* the calling thread's scratch (slot 3; the GEMM owns 0 and 1): kept between calls, so
     * a training loop does not fault in fresh pages for it at every step; then the bias
     * gradient by row, summed over the steps as each step's pass computes d_pre (a separate
     * pass over d_pre afterwards took 3% of the backward, bench/lstm.py's sizes) */
    float *d_pre = (float *)kiln_scratch(3, (size_t)((t_len + 1) * n * g4) * sizeof(float));
    if (!d_pre) return -1;
    float *db_rows = d_pre + t_len * n * g4;
    memset(db_rows, 0, (size_t)(n * g4) * sizeof(float));
    /* dh0 / dc0 carry the running gradients of the state through the steps */
    bwd_seq_job bj = {t_len, n, h, reverse, w_hh, c0, dy, gates, cells, dh0, dc0, d_pre,
                      db_rows};
    if (by_rows(n))
        kk_parallel_for_chunks(bwd_sequence, &bj, n, BATCH_ROWS, 1);
    else
        bwd_sequence(&bj, 0, n);
    kiln_sgemm(0, 0, t_len * n, in, g4, 1.0f, d_pre, g4, w_ih, in, 0.0f, dx, in);
    kiln_sgemm(1, 0, g4, in, t_len * n, 1.0f, d_pre, g4, x, in, 0.0f, dw_ih, in);
    /* dW_hh = sum_t d_pre[t]^T h_prev(t): the steps whose previous state is an output of the
     * layer pair with y shifted by one step, in one product; the first step pairs with h0 */
    const float *d_rest = reverse ? d_pre : d_pre + n * g4;
    const float *y_rest = reverse ? y + nh : y;
    const float *d_first = reverse ? d_pre + (t_len - 1) * n * g4 : d_pre;
    float beta = 0.0f;
    if (t_len > 1) {
        kiln_sgemm(1, 0, g4, h, (t_len - 1) * n, 1.0f, d_rest, g4, y_rest, h, 0.0f, dw_hh, h);
        beta = 1.0f;
    }
    kiln_sgemm(1, 0, g4, h, n, 1.0f, d_first, g4, h0, h, beta, dw_hh, h);
    memcpy(db_ih, db_rows, (size_t)g4 * sizeof(float));
    for (long r = 1; r < n; r++)
        for (long j = 0; j < g4; j++) db_ih[j] += db_rows[r * g4 + j];
    memcpy(db_hh, db_ih, (size_t)g4 * sizeof(float));
    return 0;
}
