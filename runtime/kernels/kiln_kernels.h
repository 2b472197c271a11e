/* kiln_kernels.h: the compute kernels of kiln, a C99 library with no dependencies beyond libc,
 * libm and POSIX threads.
 *
 * kiln's native backend compiles each hybridized graph to C that calls these kernels; a C runtime
 * that runs exported models without Python is built on the same kernels. Nothing here knows about
 * Python, graphs or NumPy.
 *
 * Conventions
 *   - float32 data, dense and row-major (C order); images are NCHW, convolution weights
 *     (num_filter, channels / groups, kh, kw), as in MXNet.
 *   - sizes and strides are `long` (elements, not bytes); pointers to inputs are `const`.
 *   - outputs never alias inputs unless a function says so.
 *   - every function is thread-safe for distinct outputs; kernels that parallelise do so
 *     through the library's own thread pool (`kiln_parallel_for`), one pool per process.
 *
 * Matrix products go through `kiln_sgemm`, which uses an external BLAS when one is installed
 * with `kiln_blas_use_*` (kiln's Python side installs NumPy's or SciPy's OpenBLAS) and the
 * library's own kernels otherwise, and for shapes where they are measured faster (few rows).
 *
 * Build:  cc -std=gnu99 -O3 -march=native -fPIC -shared -pthread *.c -lm -o libkiln_kernels.so
 */
#ifndef KILN_KERNELS_H
#define KILN_KERNELS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped when a declaration below changes incompatibly. */
#define KILN_KERNELS_ABI 1

/* ============================================================================================
 * Threads
 * ========================================================================================== */

/* Number of threads the kernels may use (the caller included). n <= 0 restores the default:
 * $KILN_NUM_THREADS, else $OMP_NUM_THREADS, else the CPUs this process may run on. */
void kiln_set_num_threads(int n);
int kiln_get_num_threads(void);

/* fn(ctx, lo, hi) over [0, n) split into contiguous ranges, one per thread, each at least
 * `grain` long (so n < 2 * grain runs on the calling thread alone, starting no thread). Blocks
 * until every range is done. Nested calls (from inside fn) run serially. Worker threads start
 * at the first call that needs them, spin briefly after each job, then sleep. */
typedef void (*kiln_range_fn)(void *ctx, long lo, long hi);
void kiln_parallel_for(kiln_range_fn fn, void *ctx, long n, long grain);

/* Scratch memory owned by the calling thread, at least `bytes` long, 64-byte aligned, valid
 * until that thread asks again for slot `slot` (0..3). NULL if out of memory. */
void *kiln_scratch(int slot, size_t bytes);

/* ============================================================================================
 * Matrix products
 * ========================================================================================== */

/* Row-major SGEMM: C = alpha * op(A) * op(B) + beta * C, with op(X) = X or X^T (trans != 0).
 * op(A) is m x k, op(B) is k x n, C is m x n; lda/ldb/ldc are row strides. beta == 0 ignores
 * C's contents (NaN included). */
void kiln_sgemm(int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a,
                long lda, const float *b, long ldb, float beta, float *c, long ldc);

/* The same product with the library's own kernels only (no BLAS). */
void kiln_sgemm_builtin(int trans_a, int trans_b, long m, long n, long k, float alpha,
                        const float *a, long lda, const float *b, long ldb, float beta, float *c,
                        long ldc);

/* Install an external BLAS for large products, given its sgemm's address:
 *   kiln_blas_use_cblas64  cblas_sgemm with 64-bit integers (NumPy's scipy_cblas_sgemm64_)
 *   kiln_blas_use_cblas    cblas_sgemm with 32-bit integers
 *   kiln_blas_use_f77      Fortran sgemm_ (all arguments by pointer; SciPy's cython_blas)
 * NULL removes it. Products smaller than `kiln_blas_threshold` flops (m*n*k), and those with
 * few rows, use the built-in kernels. */
void kiln_blas_use_cblas64(void *cblas_sgemm64);
void kiln_blas_use_cblas(void *cblas_sgemm);
void kiln_blas_use_f77(void *sgemm_f77);
void kiln_blas_set_threshold(double mnk);

/* Optional: the BLAS's `int get_num_threads(void)` and `void set_num_threads(int)` (OpenBLAS's
 * openblas_get/set_num_threads). With them, large products run as blocks on kiln's thread pool,
 * each a single-threaded BLAS call (the BLAS's own setting is restored after each product), so
 * that one pool owns the cores. Without them the BLAS threads its calls itself. */
void kiln_blas_use_thread_control(void *get_num_threads, void *set_num_threads);
/* 0: none installed; 1: cblas64; 2: cblas; 3: f77 */
int kiln_blas_kind(void);

/* Activations applied by fused kernels (dense, convolution, bias). */
enum kiln_act {
    KILN_ACT_NONE = 0,
    KILN_ACT_RELU = 1,
    KILN_ACT_SIGMOID = 2,
    KILN_ACT_TANH = 3,
    KILN_ACT_SOFTRELU = 4, /* log(1 + exp(x)) */
    KILN_ACT_SOFTSIGN = 5  /* x / (1 + |x|) */
};

/* A dense layer: y = act(x W^T + bias), x (m, k), W (n, k) (MXNet's layout), bias (n,) or
 * NULL, y (m, n). Few rows (a batch of one) use a GEMV that streams W once. */
void kiln_dense_f32(const float *x, const float *w, const float *bias, float *y, long m, long n,
                    long k, int act);

/* y[i, j] = act(y[i, j] * scale[?] + bias[?]) in place over `rows` x `cols`:
 * per_row = 0: scale/bias indexed by j (dense layers); per_row = 1: by i (channels of one
 * NCHW sample). scale and bias may be NULL. */
void kiln_bias_act_f32(float *y, const float *scale, const float *bias, long rows, long cols,
                       int per_row, int act);

/* act(x) elementwise, out of place (y may equal x). */
void kiln_act_f32(const float *x, float *y, long n, int act);

/* ============================================================================================
 * Softmax
 * ========================================================================================== */

/* Softmax (or log-softmax when `log`) of x viewed as (outer, n, inner) along the middle axis,
 * after multiplying by `scale` (1 / temperature). y may equal x. */
void kiln_softmax_f32(const float *x, float *y, long outer, long n, long inner, float scale,
                      int log);

/* ============================================================================================
 * Reductions
 * ========================================================================================== */

/* Sum of x viewed as (outer, n, inner) over the middle axis into y (outer, inner). With
 * `accumulate` the sums are added to y. */
void kiln_sum_axis_f32(const float *x, float *y, long outer, long n, long inner,
                       int accumulate);

/* ============================================================================================
 * Normalisation
 * ========================================================================================== */

/* Batch normalisation of x viewed as (n, c, s) over n and s, per channel c:
 *   training: mean/var = statistics of this batch (written to mean_out/var_out)
 *   otherwise: mean_in/var_in are used (and copied to mean_out/var_out when given)
 *   y = (x - mean) / sqrt(var + eps) * (fix_gamma ? 1 : gamma) + beta
 * var is the biased variance. mean_out/var_out may be NULL. y may equal x. */
void kiln_batch_norm_f32(const float *x, const float *gamma, const float *beta,
                         const float *mean_in, const float *var_in, float *y, float *mean_out,
                         float *var_out, long n, long c, long s, float eps, int fix_gamma,
                         int training);

/* ============================================================================================
 * Convolution (2-D, NCHW) and pooling
 * ========================================================================================== */

typedef struct kiln_conv2d {
    long n, c, h, w;       /* input: batch, channels, height, width */
    long f;                /* output channels (num_filter) */
    long kh, kw;           /* kernel */
    long sh, sw;           /* stride */
    long ph, pw;           /* zero padding */
    long dh, dw;           /* dilation */
    long groups;           /* num_group: c and f are multiples of it */
    long oh, ow;           /* output size (kiln_conv2d_init computes it) */
} kiln_conv2d;

/* Fill oh/ow from the other fields; returns 0, or -1 for an impossible geometry. */
int kiln_conv2d_init(kiln_conv2d *p);

/* y = act(conv(x, w) * scale[f] + bias[f]) (+ residual before the activation when given),
 * x (n, c, h, w), w (f, c/groups, kh, kw), y (n, f, oh, ow). scale, bias, residual may be
 * NULL. Uses im2col + GEMM, a plain GEMM for 1x1 kernels, a direct loop for depthwise. */
void kiln_conv2d_f32(const kiln_conv2d *p, const float *x, const float *w, const float *scale,
                     const float *bias, const float *residual, float *y, int act);

/* dx = the gradient of conv2d's input for output gradient dy (also: transposed convolution).
 * dx (n, c, h, w) is overwritten. */
void kiln_conv2d_backward_data_f32(const kiln_conv2d *p, const float *dy, const float *w,
                                   float *dx);

/* dw = the gradient of conv2d's weight, (f, c/groups, kh, kw), overwritten. */
void kiln_conv2d_backward_weight_f32(const kiln_conv2d *p, const float *x, const float *dy,
                                     float *dw);

/* Column matrix of one image (c, h, w) for the kernel geometry of p:
 * col (c * kh * kw, oh * ow); and its adjoint, which adds col into the image. */
void kiln_im2col_f32(const kiln_conv2d *p, long c, const float *x, float *col);
void kiln_col2im_f32(const kiln_conv2d *p, long c, const float *col, float *x);

enum kiln_pool { KILN_POOL_MAX = 0, KILN_POOL_AVG = 1, KILN_POOL_SUM = 2 };

typedef struct kiln_pool2d {
    long n, c, h, w;          /* input */
    long kh, kw, sh, sw, ph, pw;
    long oh, ow;              /* output size (given: it depends on the rounding convention) */
    int type;                 /* enum kiln_pool */
    int count_include_pad;    /* average: divide by the window clipped to the padded input */
} kiln_pool2d;

/* y (n, c, oh, ow) = pooling of x (n, c, h, w). Windows may run past the padded input (the
 * 'full' convention); what lies outside counts for nothing. */
void kiln_pool2d_f32(const kiln_pool2d *p, const float *x, float *y);

/* dx = gradient of kiln_pool2d_f32 for output gradient dy; max pooling sends each window's
 * gradient to the first position holding the maximum (x and y are the forward's input and
 * output). dx is overwritten. */
void kiln_pool2d_backward_f32(const kiln_pool2d *p, const float *dy, const float *x,
                              const float *y, float *dx);

/* ============================================================================================
 * Recurrent layers (lstm.c)
 * ========================================================================================== */

/* One direction of an LSTM layer (MXNet's gate order i, f, c~, o) over x (T, N, I), from the
 * last step down with `reverse`; w_ih (4H, I), w_hh (4H, H), b_ih and b_hh (4H,), h0 and c0
 * (N, H). Writes y (T, N, H) in time order, the last state and cell (N, H), and for the
 * backward the gate activations (T, N, 4H) and cell states (T, N, H). */
void kiln_lstm_forward_f32(long t_len, long n, long in, long h, const float *x,
                           const float *w_ih, const float *w_hh, const float *b_ih,
                           const float *b_hh, const float *h0, const float *c0, int reverse,
                           float *y, float *h_last, float *c_last, float *gates, float *cells);

/* Its gradient, given the cotangents of y, the last state and the last cell and what the
 * forward wrote: dx, dW_ih, dW_hh, db_ih, db_hh (equal), dh0, dc0 (all overwritten).
 * Returns -1 when its scratch memory (T * N * 4H floats) cannot be had, else 0. */
int kiln_lstm_backward_f32(long t_len, long n, long in, long h, const float *dy,
                           const float *dh_last, const float *dc_last, const float *x,
                           const float *w_ih, const float *w_hh, const float *h0,
                           const float *c0, const float *y, const float *gates,
                           const float *cells, int reverse, float *dx, float *dw_ih,
                           float *dw_hh, float *db_ih, float *db_hh, float *dh0, float *dc0);

/* ============================================================================================
 * Optimizer updates (in place, one pass over the weights)
 * ========================================================================================== */

/* g' = clip(rescale * g, clip) + wd * w       (clip <= 0: no clipping)
 * SGD:      mom = momentum * mom - lr * g';  w += mom     (mom == NULL: w -= lr * g')   */
void kiln_sgd_update_f32(float *w, const float *g, float *mom, long n, float lr, float momentum,
                         float wd, float rescale, float clip);

/* Adam (MXNet): m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2;
 *               w -= lr * m / (sqrt(v) + eps)
 * lr is the bias-corrected rate lr * sqrt(1 - b2^t) / (1 - b1^t). The betas are double:
 * 1 - b2 computed from a float b2 = 0.999 would be off by 1e-5. */
void kiln_adam_update_f32(float *w, const float *g, float *m, float *v, long n, float lr,
                          double beta1, double beta2, float eps, float wd, float rescale,
                          float clip);

#ifdef __cplusplus
}
#endif
#endif /* KILN_KERNELS_H */
