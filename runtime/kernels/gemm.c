/* gemm.c: matrix products (kiln_sgemm), the BLAS hook, and dense-layer kernels.
 *
 * Built-in kernels:
 *   - dot:     C[i, j] = <A[i, :], B[j, :]> for op(B) = B^T stored row-major (dense layers):
 *              4 rows of B at a time against up to 4 rows of A, B streamed once. For a batch
 *              of one this is the GEMV that bounds small MLPs (memory bound: W read once).
 *   - rows:    C = A B for few rows of A: each row of B read once, broadcast A scalars.
 *   - direct:  C = A B without packing (gemm_direct.c), for the other untransposed products.
 *   - blocked: the general case (transposed operands, any alpha and beta): B packed in panels of NR columns, A in panels of MR rows,
 *              an MR x NR register tile; row blocks in parallel.
 * Large products go to the installed BLAS when there is one (kiln_blas_use_*).
 */
#include "kiln_kernels.h"
#include "kk_act.h"
#include "kk_gemm.h"
#include "kk_simd.h"
#include "kiln_math.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif

/* ---------------------------------------------------------------------------------------------
 * BLAS hook
 * ------------------------------------------------------------------------------------------- */

typedef void (*cblas64_fn)(int, int, int, long long, long long, long long, float, const float *,
                           long long, const float *, long long, float, float *, long long);
typedef void (*cblas32_fn)(int, int, int, int, int, int, float, const float *, int,
                           const float *, int, float, float *, int);
typedef void (*f77_fn)(const char *, const char *, const int *, const int *, const int *,
                       const float *, const float *, const int *, const float *, const int *,
                       const float *, float *, const int *);

static void *g_blas;
static int g_blas_kind;
static double g_blas_threshold = 64.0 * 64.0 * 64.0;

void kiln_blas_use_cblas64(void *fn) { g_blas = fn; g_blas_kind = fn ? 1 : 0; }
void kiln_blas_use_cblas(void *fn) { g_blas = fn; g_blas_kind = fn ? 2 : 0; }
void kiln_blas_use_f77(void *fn) { g_blas = fn; g_blas_kind = fn ? 3 : 0; }
void kiln_blas_set_threshold(double mnk) { g_blas_threshold = mnk; }
int kiln_blas_kind(void) { return g_blas_kind; }

enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };

static void blas_call(int ta, int tb, long m, long n, long k, float alpha, const float *a,
                      long lda, const float *b, long ldb, float beta, float *c, long ldc) {
    if (g_blas_kind == 1) {
        ((cblas64_fn)g_blas)(CBLAS_ROW_MAJOR, ta ? CBLAS_TRANS : CBLAS_NO_TRANS,
                             tb ? CBLAS_TRANS : CBLAS_NO_TRANS, m, n, k, alpha, a, lda, b, ldb,
                             beta, c, ldc);
    } else if (g_blas_kind == 2) {
        ((cblas32_fn)g_blas)(CBLAS_ROW_MAJOR, ta ? CBLAS_TRANS : CBLAS_NO_TRANS,
                             tb ? CBLAS_TRANS : CBLAS_NO_TRANS, (int)m, (int)n, (int)k, alpha, a,
                             (int)lda, b, (int)ldb, beta, c, (int)ldc);
    } else {
        /* Column-major Fortran: C^T = op(B)^T op(A)^T, i.e. swap the operands. */
        int im = (int)n, in = (int)m, ik = (int)k, ila = (int)ldb, ilb = (int)lda, ilc = (int)ldc;
        const char *tra = tb ? "T" : "N", *trb = ta ? "T" : "N";
        ((f77_fn)g_blas)(tra, trb, &im, &in, &ik, &alpha, b, &ila, a, &ilb, &beta, c, &ilc);
    }
}

/* ---------------------------------------------------------------------------------------------
 * helpers
 * ------------------------------------------------------------------------------------------- */

static void act_range(float *y, long n, int act) {
    long i;
    switch (act) {
    case KILN_ACT_NONE: break;
    case KILN_ACT_RELU: for (i = 0; i < n; i++) y[i] = kiln_reluf(y[i]); break;
    case KILN_ACT_SIGMOID: for (i = 0; i < n; i++) y[i] = kiln_sigmoidf(y[i]); break;
    case KILN_ACT_TANH: for (i = 0; i < n; i++) y[i] = kiln_tanhf(y[i]); break;
    case KILN_ACT_SOFTRELU: for (i = 0; i < n; i++) y[i] = kiln_softreluf(y[i]); break;
    case KILN_ACT_SOFTSIGN: for (i = 0; i < n; i++) y[i] = kiln_softsignf(y[i]); break;
    }
}

/* C = alpha * T + beta * C for one row segment of length n. */
static inline void store_row(float *c, const float *t, long n, float alpha, float beta) {
    long j;
    if (beta == 0.0f) {
        if (alpha == 1.0f) for (j = 0; j < n; j++) c[j] = t[j];
        else for (j = 0; j < n; j++) c[j] = alpha * t[j];
    } else if (beta == 1.0f) {
        for (j = 0; j < n; j++) c[j] += alpha * t[j];
    } else {
        for (j = 0; j < n; j++) c[j] = alpha * t[j] + beta * c[j];
    }
}

static void scale_c(long m, long n, float beta, float *c, long ldc) {
    for (long i = 0; i < m; i++) {
        float *ci = c + i * ldc;
        if (beta == 0.0f) memset(ci, 0, (size_t)n * sizeof(float));
        else for (long j = 0; j < n; j++) ci[j] *= beta;
    }
}

/* ---------------------------------------------------------------------------------------------
 * dot kernel: C[i, j] = alpha * <A[i, :k], B[j, :k]> + beta * C[i, j], rows contiguous
 * ------------------------------------------------------------------------------------------- */

/* Leading elements to handle one by one so that vector loads from b are aligned (when every
 * row of b has the same alignment). Misaligned 64-byte loads straddle two cache lines, which
 * costs a third of the bandwidth of a memory-bound GEMV. */
static inline long align_peel(const float *b, long ldb, long k) {
    if (ldb % KK_VLEN != 0) return 0;
    long mis = (long)(((uintptr_t)b / sizeof(float)) % KK_VLEN);
    long peel = mis ? KK_VLEN - mis : 0;
    return peel < k ? peel : 0;
}

/* 1.0 in lanes [lo, hi), 0.0 elsewhere */
static inline kk_vf lane_mask(long lo, long hi) {
    kk_vf m;
    for (int i = 0; i < KK_VLEN; i++) m[i] = (i >= lo && i < hi) ? 1.0f : 0.0f;
    return m;
}

/* Up to 4 rows of A against nb (4 or 8) rows of B; out[r nb + q]. The loads from B are
 * aligned (after a head of `peel` elements); the head and the ragged tail are whole vectors
 * with the lanes outside them zeroed, so no scalar loop runs (except when k is under a vector).
 * A batch-1 dense layer takes eight rows of B: eight independent sums keep both FMA units busy
 * and eight loads in flight, where four sums for one row of A wait on the FMA latency. The seed
 * MLP's three layers, in C beside the floor program's loop: 5-12% faster when the machine ran
 * at full speed, 25-30% in its slow stretches. */
static inline __attribute__((always_inline)) void dot_block(int nb, const float *a, long lda,
                                                            int mr, const float *b, long ldb,
                                                            long k, float *out) {
    kk_vf acc[4][8];
    for (int r = 0; r < 4; r++)
        for (int q = 0; q < nb; q++) acc[r][q] = kk_splat(0.0f);
    long peel = k >= KK_VLEN ? align_peel(b, ldb, k) : 0;
    long p = peel;
    for (; p + KK_VLEN <= k; p += KK_VLEN) {
        kk_vf w[8];
        for (int q = 0; q < nb; q++) w[q] = kk_load(b + q * ldb + p);
        for (int r = 0; r < mr; r++) {
            kk_vf x = kk_load(a + r * lda + p);
            for (int q = 0; q < nb; q++) acc[r][q] += x * w[q];
        }
    }
    long rem = k - p;
    if (k >= KK_VLEN && (peel || rem)) {
        /* head [0, peel) and tail [p, k) as masked whole vectors */
        kk_vf hm = lane_mask(0, peel), tm = lane_mask(KK_VLEN - rem, KK_VLEN);
        long t0 = k - KK_VLEN;
        kk_vf head[8], tail[8];
        for (int q = 0; q < nb; q++) {
            head[q] = kk_load(b + q * ldb);
            tail[q] = kk_load(b + q * ldb + t0);
        }
        for (int r = 0; r < mr; r++) {
            kk_vf xh = kk_load(a + r * lda) * hm, xt = kk_load(a + r * lda + t0) * tm;
            for (int q = 0; q < nb; q++) acc[r][q] += xh * head[q] + xt * tail[q];
        }
        rem = 0;
    }
    for (int r = 0; r < mr; r++) {
        for (int q = 0; q < nb; q += 4)
            kk_hsum4(acc[r][q], acc[r][q + 1], acc[r][q + 2], acc[r][q + 3], out + r * nb + q);
        for (long e = k - rem; e < k; e++) {   /* k < one vector only */
            float x = a[r * lda + e];
            for (int q = 0; q < nb; q++) out[r * nb + q] += x * b[q * ldb + e];
        }
    }
}

static inline void dot_tile(const float *a, long lda, int mr, const float *b, long ldb, long k,
                            float *out) {
    dot_block(4, a, lda, mr, b, ldb, k, out);
}

static inline void dot_row8(const float *a, const float *b, long ldb, long k, float *out) {
    dot_block(8, a, 0, 1, b, ldb, k, out);
}

/* One row of A against one row of B. */
static inline float dot1(const float *a, const float *b, long k) {
    kk_vf acc0 = kk_splat(0.0f), acc1 = kk_splat(0.0f);
    long p = 0;
    for (; p + 2 * KK_VLEN <= k; p += 2 * KK_VLEN) {
        acc0 += kk_load(a + p) * kk_load(b + p);
        acc1 += kk_load(a + p + KK_VLEN) * kk_load(b + p + KK_VLEN);
    }
    for (; p + KK_VLEN <= k; p += KK_VLEN) acc0 += kk_load(a + p) * kk_load(b + p);
    float s = kk_hsum(acc0 + acc1);
    for (; p < k; p++) s += a[p] * b[p];
    return s;
}

typedef struct {
    const float *a, *b;
    long lda, ldb, m, k;
    float *c;
    long ldc;
    float alpha, beta;
    const float *bias;   /* per column j (dense layers), or NULL */
    int act;
    long n;
} dot_job;

/* columns [j0, j1) of C for all rows */
static void dot_columns(void *ctx, long j0, long j1) {
    const dot_job *d = (const dot_job *)ctx;
    float out[16];
    long j = j0;
    if (d->m == 1)
        for (; j + 8 <= j1; j += 8) {
            dot_row8(d->a, d->b + j * d->ldb, d->ldb, d->k, out);
            for (int q = 0; q < 8; q++) {
                float v = d->alpha * out[q];
                if (d->beta != 0.0f) v += d->beta * d->c[j + q];
                if (d->bias) v += d->bias[j + q];
                d->c[j + q] = kk_act1(v, d->act);
            }
        }
    for (; j + 4 <= j1; j += 4) {
        for (long i = 0; i < d->m; i += 4) {
            int mr = (int)KK_MIN(4, d->m - i);
            dot_tile(d->a + i * d->lda, d->lda, mr, d->b + j * d->ldb, d->ldb, d->k, out);
            for (int r = 0; r < mr; r++) {
                float *c = d->c + (i + r) * d->ldc + j;
                for (int q = 0; q < 4; q++) {
                    float v = d->alpha * out[r * 4 + q];
                    if (d->beta != 0.0f) v += d->beta * c[q];
                    if (d->bias) v += d->bias[j + q];
                    c[q] = kk_act1(v, d->act);
                }
            }
        }
    }
    for (; j < j1; j++) {
        for (long i = 0; i < d->m; i++) {
            float v = d->alpha * dot1(d->a + i * d->lda, d->b + j * d->ldb, d->k);
            float *c = d->c + i * d->ldc + j;
            if (d->beta != 0.0f) v += d->beta * *c;
            if (d->bias) v += d->bias[j];
            *c = kk_act1(v, d->act);
        }
    }
}

static void gemm_dot(long m, long n, long k, float alpha, const float *a, long lda,
                     const float *b, long ldb, float beta, float *c, long ldc, const float *bias,
                     int act, int parallel) {
    dot_job d = {a, b, lda, ldb, m, k, c, ldc, alpha, beta, bias, act, n};
    /* a thread gets at least ~256 KB of B: below that the hand-off costs more than it saves */
    long grain = KK_MAX(4, (long)(65536 / (k > 0 ? k : 1)) & ~3L);
    if (parallel) kiln_parallel_for(dot_columns, &d, n, grain);
    else dot_columns(&d, 0, n);
}

/* ---------------------------------------------------------------------------------------------
 * rows kernel: C = alpha * A B + beta * C with few rows of A (A may be transposed)
 * ------------------------------------------------------------------------------------------- */

#define ROWS_MAX 4

typedef struct {
    const float *a, *b;
    long lda, ldb, m, k;
    int ta;
    float *c;
    long ldc;
    float alpha, beta;
} rows_job;

static void rows_columns(void *ctx, long j0, long j1) {
    const rows_job *d = (const rows_job *)ctx;
    const long NB = 2 * KK_VLEN;
    for (long i0 = 0; i0 < d->m; i0 += ROWS_MAX) {
        int mr = (int)KK_MIN(ROWS_MAX, d->m - i0);
        long j = j0;
        for (; j + NB <= j1; j += NB) {
            kk_vf acc[ROWS_MAX][2];
            for (int r = 0; r < ROWS_MAX; r++) acc[r][0] = acc[r][1] = kk_splat(0.0f);
            for (long p = 0; p < d->k; p++) {
                const float *bp = d->b + p * d->ldb + j;
                kk_vf b0 = kk_load(bp), b1 = kk_load(bp + KK_VLEN);
                for (int r = 0; r < mr; r++) {
                    float av = d->ta ? d->a[p * d->lda + i0 + r] : d->a[(i0 + r) * d->lda + p];
                    acc[r][0] += av * b0;
                    acc[r][1] += av * b1;
                }
            }
            for (int r = 0; r < mr; r++) {
                float t[2 * KK_VLEN];
                kk_store(t, acc[r][0]);
                kk_store(t + KK_VLEN, acc[r][1]);
                store_row(d->c + (i0 + r) * d->ldc + j, t, NB, d->alpha, d->beta);
            }
        }
        if (j < j1) {
            long w = j1 - j;
            float t[ROWS_MAX][2 * KK_VLEN];
            memset(t, 0, sizeof(t));
            for (long p = 0; p < d->k; p++) {
                const float *bp = d->b + p * d->ldb + j;
                for (int r = 0; r < mr; r++) {
                    float av = d->ta ? d->a[p * d->lda + i0 + r] : d->a[(i0 + r) * d->lda + p];
                    for (long q = 0; q < w; q++) t[r][q] += av * bp[q];
                }
            }
            for (int r = 0; r < mr; r++)
                store_row(d->c + (i0 + r) * d->ldc + j, t[r], w, d->alpha, d->beta);
        }
    }
}

static void gemm_rows(int ta, long m, long n, long k, float alpha, const float *a, long lda,
                      const float *b, long ldb, float beta, float *c, long ldc, int parallel) {
    rows_job d = {a, b, lda, ldb, m, k, ta, c, ldc, alpha, beta};
    long grain = KK_MAX(2 * KK_VLEN, (long)(32768 / (k * (m < 4 ? m : 4) + 1)));
    grain = (grain + 2 * KK_VLEN - 1) / (2 * KK_VLEN) * (2 * KK_VLEN);
    if (parallel) kiln_parallel_for(rows_columns, &d, n, grain);
    else rows_columns(&d, 0, n);
}

/* ---------------------------------------------------------------------------------------------
 * blocked kernel
 * ------------------------------------------------------------------------------------------- */

#if KK_VLEN >= 16
#define MR 12
#else
#define MR 6
#endif
#define NR (2 * KK_VLEN)
#define KC 256
#define MC (MR * 16)
#define NC 1536

/* op(X)[i, p] for X stored row-major with leading dimension ld */
#define OPX(x, t, ld, i, p) ((t) ? (x)[(p) * (ld) + (i)] : (x)[(i) * (ld) + (p)])

/* Pack op(B)[p0:p0+kc, j0:j0+nc] as panels of NR columns: panel q holds rows p, NR each,
 * zero padded. */
static void pack_b(const float *b, long ldb, int tb, long p0, long kc, long j0, long nc,
                   float *dst) {
    for (long q = 0; q < nc; q += NR) {
        long w = KK_MIN(NR, nc - q);
        float *d = dst + q * kc;
        for (long p = 0; p < kc; p++) {
            if (!tb && w == NR) {
                memcpy(d + p * NR, b + (p0 + p) * ldb + j0 + q, NR * sizeof(float));
            } else {
                long jj;
                for (jj = 0; jj < w; jj++) d[p * NR + jj] = OPX(b, tb, ldb, p0 + p, j0 + q + jj);
                for (; jj < NR; jj++) d[p * NR + jj] = 0.0f;
            }
        }
    }
}

/* Pack op(A)[i0:i0+mc, p0:p0+kc] as panels of MR rows: panel holds column p, MR each. */
static void pack_a(const float *a, long lda, int ta, long i0, long mc, long p0, long kc,
                   float *dst) {
    for (long r0 = 0; r0 < mc; r0 += MR) {
        long h = KK_MIN(MR, mc - r0);
        float *d = dst + r0 * kc;
        for (long p = 0; p < kc; p++) {
            long r;
            for (r = 0; r < h; r++) d[p * MR + r] = OPX(a, ta, lda, i0 + r0 + r, p0 + p);
            for (; r < MR; r++) d[p * MR + r] = 0.0f;
        }
    }
}

static inline void micro_kernel(long kc, const float *ap, const float *bp, float *c, long ldc,
                                long h, long w, float alpha, float beta) {
    kk_vf acc[MR][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = kk_splat(0.0f);
    for (long p = 0; p < kc; p++) {
        kk_vf b0 = kk_load(bp + p * NR), b1 = kk_load(bp + p * NR + KK_VLEN);
        const float *a = ap + p * MR;
        for (int r = 0; r < MR; r++) {
            acc[r][0] += a[r] * b0;
            acc[r][1] += a[r] * b1;
        }
    }
    for (long r = 0; r < h; r++) {
        float t[NR];
        kk_store(t, acc[r][0]);
        kk_store(t + KK_VLEN, acc[r][1]);
        store_row(c + r * ldc, t, w, alpha, beta);
    }
}

typedef struct {
    const float *a;
    long lda;
    int ta;
    const float *bpack;
    long p0, kc, j0, nc, m;
    float *c;
    long ldc;
    float alpha, beta;
} blocked_job;

static void blocked_rows(void *ctx, long b0, long b1) {
    const blocked_job *d = (const blocked_job *)ctx;
    float *apack = (float *)kiln_scratch(1, (size_t)MC * KC * sizeof(float));
    for (long blk = b0; blk < b1; blk++) {
        long i0 = blk * MC, mc = KK_MIN(MC, d->m - i0);
        pack_a(d->a, d->lda, d->ta, i0, mc, d->p0, d->kc, apack);
        for (long q = 0; q < d->nc; q += NR) {
            long w = KK_MIN(NR, d->nc - q);
            for (long r0 = 0; r0 < mc; r0 += MR) {
                long h = KK_MIN(MR, mc - r0);
                micro_kernel(d->kc, apack + r0 * d->kc, d->bpack + q * d->kc,
                             d->c + (i0 + r0) * d->ldc + d->j0 + q, d->ldc, h, w, d->alpha,
                             d->beta);
            }
        }
    }
}

static void gemm_blocked(int ta, int tb, long m, long n, long k, float alpha, const float *a,
                         long lda, const float *b, long ldb, float beta, float *c, long ldc) {
    float *bpack = (float *)kiln_scratch(0, (size_t)KC * (NC + NR) * sizeof(float));
    for (long j0 = 0; j0 < n; j0 += NC) {
        long nc = KK_MIN(NC, n - j0);
        for (long p0 = 0; p0 < k; p0 += KC) {
            long kc = KK_MIN(KC, k - p0);
            pack_b(b, ldb, tb, p0, kc, j0, nc, bpack);
            blocked_job d = {a, lda, ta, bpack, p0, kc, j0, nc, m, c, ldc, alpha,
                             p0 == 0 ? beta : 1.0f};
            long blocks = (m + MC - 1) / MC;
            kiln_parallel_for(blocked_rows, &d, blocks, 1);
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * dispatch
 * ------------------------------------------------------------------------------------------- */

/* dst (cols x rows, dense) = src^T, src rows x cols with leading dimension ld; 32 x 32 tiles */
typedef struct {
    const float *src;
    float *dst;
    long rows, cols, ld;
} transpose_job;

/* Columns [c0, c1) of src become rows of dst: a thread writes whole rows of dst, each tile's
 * writes contiguous (writing down columns instead ran 4x slower on a cold 1024 x 256). */
static void transpose_cols(void *ctx, long c0, long c1) {
    const transpose_job *d = (const transpose_job *)ctx;
    for (long cb = c0; cb < c1; cb += 32)
        for (long r0 = 0; r0 < d->rows; r0 += 32) {
            long r1 = KK_MIN(r0 + 32, d->rows), ce = KK_MIN(cb + 32, c1);
            for (long c = cb; c < ce; c++)
                for (long r = r0; r < r1; r++) d->dst[c * d->rows + r] = d->src[r * d->ld + c];
        }
}

void kk_transpose(float *dst, const float *src, long rows, long cols, long ld) {
    transpose_job d = {src, dst, rows, cols, ld};
    kiln_parallel_for(transpose_cols, &d, cols, KK_MAX(32, 16384 / (rows + 1)));
}

void kiln_sgemm_builtin(int ta, int tb, long m, long n, long k, float alpha, const float *a,
                        long lda, const float *b, long ldb, float beta, float *c, long ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0.0f) {
        scale_c(m, n, beta, c, ldc);
        return;
    }
    double work = (double)m * n * k;
    int parallel = work >= 2e6;
    if (!ta && tb && m <= 16) {
        gemm_dot(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, NULL, KILN_ACT_NONE, parallel);
    } else if (!tb && m <= 2 * ROWS_MAX) {
        gemm_rows(ta, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, parallel);
    } else if (alpha == 1.0f && (beta == 0.0f || beta == 1.0f) && ((!ta && !tb) || parallel)) {
        /* transposed operands of large products: transpose them (O(mk + kn)), then the
         * unpacked NN kernel (O(mnk)) */
        if (ta) {
            float *t = (float *)kiln_scratch(0, (size_t)m * k * sizeof(float));
            kk_transpose(t, a, k, m, lda);
            a = t;
            lda = k;
        }
        if (tb) {
            float *t = (float *)kiln_scratch(1, (size_t)k * n * sizeof(float));
            kk_transpose(t, b, n, k, ldb);
            b = t;
            ldb = n;
        }
        kk_gemm_nn_direct_par(m, n, k, a, lda, b, ldb, c, ldc, beta == 1.0f, parallel);
    } else {
        gemm_blocked(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    }
}

/* BLAS threads: with the BLAS's thread-count functions installed, a large product runs as
 * column (or row) blocks on kiln's pool, each a single-threaded BLAS call; the BLAS's own count
 * is restored afterwards. One pool then owns the cores: no second set of spinning threads, and
 * blocks go to whichever thread is running (see threads.c). */
typedef int (*blas_get_threads_fn)(void);
typedef void (*blas_set_threads_fn)(int);
static blas_get_threads_fn g_blas_get_threads;
static blas_set_threads_fn g_blas_set_threads;

void kiln_blas_use_thread_control(void *get_num_threads, void *set_num_threads) {
    g_blas_get_threads = (blas_get_threads_fn)get_num_threads;
    g_blas_set_threads = (blas_set_threads_fn)set_num_threads;
}

typedef struct {
    int ta, tb, by_rows;
    long m, n, k, lda, ldb, ldc, block;
    float alpha, beta;
    const float *a, *b;
    float *c;
} split_job;

static void blas_blocks(void *ctx, long b0, long b1) {
    const split_job *d = (const split_job *)ctx;
    for (long blk = b0; blk < b1; blk++) {
        long lo = blk * d->block, len = KK_MIN(d->block, (d->by_rows ? d->m : d->n) - lo);
        if (d->by_rows) {   /* rows lo.. of op(A) and C */
            const float *a = d->ta ? d->a + lo : d->a + lo * d->lda;
            blas_call(d->ta, d->tb, len, d->n, d->k, d->alpha, a, d->lda, d->b, d->ldb, d->beta,
                      d->c + lo * d->ldc, d->ldc);
        } else {            /* columns lo.. of op(B) and C */
            const float *b = d->tb ? d->b + lo * d->ldb : d->b + lo;
            blas_call(d->ta, d->tb, d->m, len, d->k, d->alpha, d->a, d->lda, b, d->ldb, d->beta,
                      d->c + lo, d->ldc);
        }
    }
}

static void blas_split(int ta, int tb, long m, long n, long k, float alpha, const float *a,
                       long lda, const float *b, long ldb, float beta, float *c, long ldc) {
    int threads = kiln_get_num_threads();
    double work = (double)m * n * k;
    if (threads <= 1 || work < 4e6 || !g_blas_set_threads) {
        int prev = g_blas_set_threads ? g_blas_get_threads() : 0;
        if (prev > 1) g_blas_set_threads(1);
        blas_call(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        if (prev > 1) g_blas_set_threads(prev);
        return;
    }
    /* by columns, unless that would leave each block under 128 columns, or the output is at
     * least 4x taller than wide: halving a narrow width cost more than halving a tall height
     * (the LSTM's weight gradient 1024 x 256 x 1120: by rows 1.2-1.4x faster on MKL) */
    int by_rows = n < 2 * 64 * threads || m >= 4 * n;
    split_job d = {ta, tb, by_rows, m, n, k, lda, ldb, ldc, 0, alpha, beta, a, b, c};
    long extent = d.by_rows ? m : n;
    /* one block per thread: each block packs the shared operand again, so few and large */
    long blocks = KK_MIN((long)threads, extent / 16 > 0 ? extent / 16 : 1);
    d.block = ((extent + blocks - 1) / blocks + 15) & ~15L;
    blocks = (extent + d.block - 1) / d.block;
    int prev = g_blas_get_threads();
    if (prev != 1) g_blas_set_threads(1);
    kiln_parallel_for(blas_blocks, &d, blocks, 1);
    if (prev != 1) g_blas_set_threads(prev);
}

void kiln_sgemm(int ta, int tb, long m, long n, long k, float alpha, const float *a, long lda,
                const float *b, long ldb, float beta, float *c, long ldc) {
    if (m <= 0 || n <= 0) return;
    double work = (double)m * n * k;
    int few_rows = m <= 8;
    if (g_blas_kind && k > 0 && work >= g_blas_threshold && !few_rows) {
        if (g_blas_set_threads)
            blas_split(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        else
            blas_call(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    kiln_sgemm_builtin(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* ---------------------------------------------------------------------------------------------
 * dense layers and epilogues
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    float *y;
    const float *scale, *bias;
    long rows, cols;
    int per_row, act;
} bias_job;

static void bias_rows(void *ctx, long r0, long r1) {
    const bias_job *d = (const bias_job *)ctx;
    for (long i = r0; i < r1; i++) {
        float *y = d->y + i * d->cols;
        long j;
        if (d->per_row) {
            float s = d->scale ? d->scale[i] : 1.0f, b = d->bias ? d->bias[i] : 0.0f;
            if (d->act == KILN_ACT_RELU) {
                for (j = 0; j < d->cols; j++) y[j] = kiln_reluf(y[j] * s + b);
            } else {
                for (j = 0; j < d->cols; j++) y[j] = y[j] * s + b;
                act_range(y, d->cols, d->act);
            }
        } else {
            if (d->scale)
                for (j = 0; j < d->cols; j++) y[j] *= d->scale[j];
            if (d->bias && d->act == KILN_ACT_RELU) {
                for (j = 0; j < d->cols; j++) y[j] = kiln_reluf(y[j] + d->bias[j]);
            } else {
                if (d->bias)
                    for (j = 0; j < d->cols; j++) y[j] += d->bias[j];
                act_range(y, d->cols, d->act);
            }
        }
    }
}

void kiln_bias_act_f32(float *y, const float *scale, const float *bias, long rows, long cols,
                       int per_row, int act) {
    if (!scale && !bias && act == KILN_ACT_NONE) return;
    bias_job d = {y, scale, bias, rows, cols, per_row, act};
    long grain = KK_MAX(1, 65536 / (cols > 0 ? cols : 1));
    kiln_parallel_for(bias_rows, &d, rows, grain);
}

typedef struct {
    const float *x;
    float *y;
    int act;
} act_job;

static void act_chunk(void *ctx, long lo, long hi) {
    const act_job *d = (const act_job *)ctx;
    if (d->y != d->x) memmove(d->y + lo, d->x + lo, (size_t)(hi - lo) * sizeof(float));
    act_range(d->y + lo, hi - lo, d->act);
}

void kiln_act_f32(const float *x, float *y, long n, int act) {
    act_job d = {x, y, act};
    kiln_parallel_for(act_chunk, &d, n, 65536);
}

void kiln_dense_f32(const float *x, const float *w, const float *bias, float *y, long m, long n,
                    long k, int act) {
    if (m <= 0 || n <= 0) return;
    if (m <= 4 || (!kiln_blas_kind() && m <= 16)) {
        /* GEMV-like: stream W once, bias and activation in registers; no thread for a batch
         * of one unless W is about 2 MB or more: so large a layer is read from memory, which
         * two cores read faster (ResNet-18's 512x1000 classifier: 161 -> 104 us), while the
         * seed MLP's layers (0.5 MB at most) stay in cache and would only pay the hand-off */
        int parallel = (double)n * k * m >= 5e5;
        gemm_dot(m, n, k, 1.0f, x, k, w, k, 0.0f, y, n, bias, act, parallel);
        return;
    }
    kiln_sgemm(0, 1, m, n, k, 1.0f, x, k, w, k, 0.0f, y, n);
    kiln_bias_act_f32(y, NULL, bias, m, n, 0, act);
}
