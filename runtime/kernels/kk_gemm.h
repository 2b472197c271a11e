/* kk_gemm.h: internal GEMM entry points shared by the kernels (not part of the API). */
#ifndef KK_GEMM_H
#define KK_GEMM_H

/* C[i0:i1, j0:j1] (=|+=) A[i0:i1, :k] B[:k, j0:j1], row-major, operands read in place (no
 * packing): for products whose operands were just written (im2col columns, activations), the
 * convolutions' GEMM. `accumulate` adds to C. Runs on the calling thread. */
void kk_gemm_nn_direct(long k, const float *a, long lda, const float *b, long ldb, float *c,
                       long ldc, long i0, long i1, long j0, long j1, int accumulate);

/* The same over the whole m x n product, split over the thread pool when `parallel`. */
void kk_gemm_nn_direct_par(long m, long n, long k, const float *a, long lda, const float *b,
                           long ldb, float *c, long ldc, int accumulate, int parallel);

/* The same with B's row p at b + boff[p] (an implicit im2col: the rows are shifted views of
 * a padded image). */
void kk_gemm_nn_rows(long k, const float *a, long lda, const float *b, const long *boff,
                     float *c, long ldc, long i0, long i1, long j0, long j1, int accumulate);
void kk_gemm_nn_rows_par(long m, long n, long k, const float *a, long lda, const float *b,
                         const long *boff, float *c, long ldc, int accumulate, int parallel);

/* dst (cols x rows, dense) = src^T for src rows x cols with leading dimension ld, in 32 x 32
 * tiles over the thread pool (gemm.c). */
void kk_transpose(float *dst, const float *src, long rows, long cols, long ld);

#endif
