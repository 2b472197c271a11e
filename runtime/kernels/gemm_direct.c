/* gemm_direct.c: C = A B without packing either operand (see kk_gemm.h).
 *
 * The register tile is DMR rows x DNR columns (8 x 32 with AVX-512): per step of k it loads
 * two vectors of a row of B and broadcasts eight scalars of A (one per row), 16 FMAs. The k
 * loop is blocked (DKC) so that a DKC x DNR block of B stays in L1 while every row block of A
 * streams past it from L2. Ragged edges run the same kernel on zero-padded copies.
 */
#include "kiln_kernels.h"
#include "kk_gemm.h"
#include "kk_simd.h"

#include <string.h>

#define DMR 8
#define DNR (2 * KK_VLEN)
#define DKC 256

/* acc += A[rows, :kc] B[:kc, 0:DNR]; rows are the pointers in a[] */
static inline void tile(long kc, const float *const *a, const float *b, long ldb,
                        const long *boff, int h, float *c, long ldc, int accumulate, int w) {
    kk_vf acc[DMR][2];
    for (int r = 0; r < DMR; r++) acc[r][0] = acc[r][1] = kk_splat(0.0f);
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5],
                *a6 = a[6], *a7 = a[7];
    for (long p = 0; p < kc; p++) {
        const float *bp = boff ? b + boff[p] : b + p * ldb;
        kk_vf b0 = kk_load(bp), b1 = kk_load(bp + KK_VLEN);
        float s;
        s = a0[p]; acc[0][0] += s * b0; acc[0][1] += s * b1;
        s = a1[p]; acc[1][0] += s * b0; acc[1][1] += s * b1;
        s = a2[p]; acc[2][0] += s * b0; acc[2][1] += s * b1;
        s = a3[p]; acc[3][0] += s * b0; acc[3][1] += s * b1;
        s = a4[p]; acc[4][0] += s * b0; acc[4][1] += s * b1;
        s = a5[p]; acc[5][0] += s * b0; acc[5][1] += s * b1;
        s = a6[p]; acc[6][0] += s * b0; acc[6][1] += s * b1;
        s = a7[p]; acc[7][0] += s * b0; acc[7][1] += s * b1;
    }
    if (w == DNR) {
        for (int r = 0; r < h; r++) {
            float *cr = c + r * ldc;
            if (accumulate) {
                kk_store(cr, kk_load(cr) + acc[r][0]);
                kk_store(cr + KK_VLEN, kk_load(cr + KK_VLEN) + acc[r][1]);
            } else {
                kk_store(cr, acc[r][0]);
                kk_store(cr + KK_VLEN, acc[r][1]);
            }
        }
    } else {
        float t[DNR];
        for (int r = 0; r < h; r++) {
            float *cr = c + r * ldc;
            kk_store(t, acc[r][0]);
            kk_store(t + KK_VLEN, acc[r][1]);
            if (accumulate)
                for (int j = 0; j < w; j++) cr[j] += t[j];
            else
                for (int j = 0; j < w; j++) cr[j] = t[j];
        }
    }
}

/* The blocked loops; B's row p is at b + boff[p] when boff is given, else b + p * ldb. */
static inline void direct_block(long k, const float *a, long lda, const float *b, long ldb,
                                const long *boff, float *c, long ldc, long i0, long i1, long j0,
                                long j1, int accumulate) {
    float pad[DKC * DNR];
    /* k blocks outermost: an (i1 - i0) x DKC block of A stays in L2 across the column panels */
    for (long p0 = 0; p0 < k; p0 += DKC) {
        long kc = KK_MIN(DKC, k - p0);
        int acc = accumulate || p0 > 0;
        for (long j = j0; j < j1; j += DNR) {
            int w = (int)KK_MIN(DNR, j1 - j);
            const float *bp = boff ? b + j : b + p0 * ldb + j;
            const long *bo = boff ? boff + p0 : NULL;
            long bld = ldb;
            if (w < DNR) {   /* ragged right edge: a zero-padded copy of the block */
                for (long p = 0; p < kc; p++) {
                    const float *src = bo ? bp + bo[p] : bp + p * ldb;
                    memcpy(pad + p * DNR, src, (size_t)w * sizeof(float));
                    memset(pad + p * DNR + w, 0, (size_t)(DNR - w) * sizeof(float));
                }
                bp = pad;
                bo = NULL;
                bld = DNR;
            }
            for (long i = i0; i < i1; i += DMR) {
                int h = (int)KK_MIN(DMR, i1 - i);
                const float *rows[DMR];
                for (int r = 0; r < DMR; r++)
                    rows[r] = a + (i + (r < h ? r : h - 1)) * lda + p0;
                if (bo)
                    tile(kc, rows, bp, 0, bo, h, c + i * ldc + j, ldc, acc, w);
                else
                    tile(kc, rows, bp, bld, NULL, h, c + i * ldc + j, ldc, acc, w);
            }
        }
    }
}

void kk_gemm_nn_direct(long k, const float *a, long lda, const float *b, long ldb, float *c,
                       long ldc, long i0, long i1, long j0, long j1, int accumulate) {
    direct_block(k, a, lda, b, ldb, NULL, c, ldc, i0, i1, j0, j1, accumulate);
}

void kk_gemm_nn_rows(long k, const float *a, long lda, const float *b, const long *boff,
                     float *c, long ldc, long i0, long i1, long j0, long j1, int accumulate) {
    direct_block(k, a, lda, b, 0, boff, c, ldc, i0, i1, j0, j1, accumulate);
}

typedef struct {
    long m, n, k, lda, ldb, ldc, row_blocks, col_blocks, rows_per, cols_per;
    const float *a, *b;
    float *c;
    int accumulate;
    const long *boff;
} direct_job;

static void direct_tasks(void *ctx, long t0, long t1) {
    const direct_job *d = (const direct_job *)ctx;
    for (long t = t0; t < t1; t++) {
        long bi = t / d->col_blocks, bj = t % d->col_blocks;
        long i0 = bi * d->rows_per, i1 = KK_MIN(d->m, i0 + d->rows_per);
        long j0 = bj * d->cols_per, j1 = KK_MIN(d->n, j0 + d->cols_per);
        if (d->boff)
            kk_gemm_nn_rows(d->k, d->a, d->lda, d->b, d->boff, d->c, d->ldc, i0, i1, j0, j1,
                            d->accumulate);
        else
            kk_gemm_nn_direct(d->k, d->a, d->lda, d->b, d->ldb, d->c, d->ldc, i0, i1, j0, j1,
                              d->accumulate);
    }
}

static void direct_par(long m, long n, long k, const float *a, long lda, const float *b,
                       long ldb, const long *boff, float *c, long ldc, int accumulate,
                       int parallel);

void kk_gemm_nn_direct_par(long m, long n, long k, const float *a, long lda, const float *b,
                           long ldb, float *c, long ldc, int accumulate, int parallel) {
    direct_par(m, n, k, a, lda, b, ldb, NULL, c, ldc, accumulate, parallel);
}

void kk_gemm_nn_rows_par(long m, long n, long k, const float *a, long lda, const float *b,
                         const long *boff, float *c, long ldc, int accumulate, int parallel) {
    direct_par(m, n, k, a, lda, b, 0, boff, c, ldc, accumulate, parallel);
}

static void direct_par(long m, long n, long k, const float *a, long lda, const float *b,
                       long ldb, const long *boff, float *c, long ldc, int accumulate,
                       int parallel) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        if (!accumulate)
            for (long i = 0; i < m; i++) memset(c + i * ldc, 0, (size_t)n * sizeof(float));
        return;
    }
    int threads = parallel ? kiln_get_num_threads() : 1;
    if (threads <= 1 || (double)m * n * k < 4e5) {
        direct_block(k, a, lda, b, ldb, boff, c, ldc, 0, m, 0, n, accumulate);
        return;
    }
    /* split the columns (whole panels) when there are enough, else the rows */
    direct_job d = {m, n, k, lda, ldb, ldc, 1, 1, m, n, a, b, c, accumulate, boff};
    long panels = (n + DNR - 1) / DNR;
    if (panels >= 2 * threads) {
        d.col_blocks = KK_MIN(panels, 4L * threads);
        d.cols_per = (panels + d.col_blocks - 1) / d.col_blocks * DNR;
        d.col_blocks = (n + d.cols_per - 1) / d.cols_per;
    } else {
        long rb = (m + DMR - 1) / DMR;
        d.row_blocks = KK_MIN(rb, 4L * threads);
        d.rows_per = (rb + d.row_blocks - 1) / d.row_blocks * DMR;
        d.row_blocks = (m + d.rows_per - 1) / d.rows_per;
    }
    kiln_parallel_for(direct_tasks, &d, d.row_blocks * d.col_blocks, 1);
}
