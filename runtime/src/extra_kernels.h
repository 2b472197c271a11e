/* extra_kernels.h: float32 kernels the runtime needs that runtime/kernels does not have yet
 * (elementwise math with broadcasting, transpose, reductions over several axes, layer norm,
 * the LeakyReLU family, clip). Plain C99 loops that the compiler vectorises; candidates for
 * the shared kernel library (kiln_kernels.h), whose conventions they follow: `long` sizes in
 * elements, outputs never alias inputs unless said.
 */
#ifndef KILN_EXTRA_KERNELS_H
#define KILN_EXTRA_KERNELS_H

enum rt_unary {
    /* the first five are kiln_kernels' activations (enum kiln_act - 1) */
    U_RELU, U_SIGMOID, U_TANH, U_SOFTRELU, U_SOFTSIGN,
    U_LOG_SIGMOID, U_MISH, U_NEG, U_ABS, U_EXP, U_EXPM1, U_LOG, U_LOG1P, U_LOG2, U_LOG10,
    U_SQRT, U_RSQRT, U_SQUARE, U_CBRT, U_RCBRT, U_RECIP, U_SIN, U_COS, U_TAN, U_ASIN, U_ACOS,
    U_ATAN, U_SINH, U_COSH, U_ASINH, U_ACOSH, U_ATANH, U_SIGN, U_FLOOR, U_CEIL, U_RINT,
    U_TRUNC, U_ROUND, U_ERF, U_LOGICAL_NOT, U_TO_F16, U_TO_BOOL, U_DEGREES, U_RADIANS,
    U_COUNT
};

enum rt_binary {
    B_ADD, B_SUB, B_MUL, B_DIV, B_POW, B_MOD, B_MAX, B_MIN, B_HYPOT, B_ATAN2,
    B_EQ, B_NE, B_GT, B_GE, B_LT, B_LE, B_AND, B_OR, B_XOR,
    B_COUNT
};

/* y[i] = fn(x[i]); y may equal x. */
void rtk_unary_f32(int fn, const float *x, float *y, long n);

/* y = act(x) for enum kiln_act; relu, sigmoid and tanh on whole vectors (vec_math.h), the
 * others through kiln_act_f32. y may equal x. */
void rtk_act_f32(int act, const float *x, float *y, long n);

/* y[i] = fn(x[i], s), or fn(s, x[i]) when rev; y may equal x. */
void rtk_scalar_f32(int fn, const float *x, float s, int rev, float *y, long n);

/* y = fn(a, b) over an ndim-dimensional output (ndim >= 1) with element strides for a and b
 * (0 where the operand is broadcast). */
void rtk_binary_f32(int fn, const float *a, const float *b, float *y, int ndim,
                    const long *dims, const long *sa, const long *sb);

/* y = x transposed: y's axis i is x's axis perm[i]. */
void rtk_transpose_f32(const float *x, float *y, int ndim, const long *dims, const int *perm);

enum { RTK_SUM, RTK_MEAN, RTK_MAX, RTK_MIN, RTK_PROD };
/* Reduce x (dims) over the axes where reduced[i] is set into y (the kept axes, in order).
 * acc: workspace of count(y) doubles (sums and products accumulate in double). */
void rtk_reduce_f32(int kind, const float *x, float *y, int ndim, const long *dims,
                    const int *reduced, double *acc);

/* Layer norm of x viewed as (outer, n, inner) over the middle axis; gamma/beta of length n. */
void rtk_layer_norm_f32(const float *x, const float *gamma, const float *beta, float *y,
                        long outer, long n, long inner, float eps);

enum { RTK_LEAKY, RTK_ELU, RTK_SELU, RTK_GELU, RTK_PRELU };
/* The LeakyReLU family over x viewed as (outer, c, inner); prelu's gamma has c slopes (or 1). */
void rtk_leaky_f32(int type, const float *x, const float *gamma, long gamma_len, float *y,
                   long outer, long c, long inner, float slope);

/* y = min(max(x, lo), hi) (NaN stays NaN); y may equal x. */
void rtk_clip_f32(const float *x, float *y, long n, float lo, float hi);

/* y = x reversed along the middle axis of (outer, len, inner); y may equal x. */
void rtk_flip_f32(const float *x, float *y, long outer, long len, long inner);

/* y (dims, C order) = x's elements at sum_i index_i * stride[i] (strides in elements, possibly
 * negative or 0); ndim <= 8. */
void rtk_strided_copy_f32(const float *x, float *y, int ndim, const long *dims,
                          const long *stride);

/* y[i] = value */
void rtk_fill_f32(float *y, long n, float value);

#endif /* KILN_EXTRA_KERNELS_H */
