/* ops.c: MXNet operator names -> the runtime's op kinds, and each op's attributes.
 *
 * The table lists every name the runtime runs, legacy (MXNet 1.x symbol API) and numpy-mode
 * (`_npi_*`, `_np_*`, `_npx_*`) alike; it is sorted once and searched by bisection. Attribute
 * parsing follows MXNet's defaults (e.g. BatchNorm's fix_gamma defaults to True, Concat's dim to
 * 1 but _npi_concatenate's axis to 0); attributes an op does not use are ignored, as MXNet's own
 * reader ignores unknown `__*__` hints.
 */
#include "graph.h"
#include "cf.h"
#include "extra_kernels.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int op, sub;
} opname;

#define REV (1 << 8) /* scalar ops: fn(s, x) */
#define DROPOUT 1    /* OP_IDENTITY sub: Dropout counts a hidden mask output */
#define CAST 2       /* OP_IDENTITY sub: Cast (dtype decides what it does) */
#define CONCAT_DIM0 3 /* OP_CONCAT sub: _rnn_param_concat (key "dim", default 0) */
#define FILL_ZEROS 0 /* OP_FILL subs: the value; LIKE when the shape is the input's */
#define FILL_ONES 1
#define FILL_VALUE 2
#define FILL_LIKE 4

static opname g_names[] = {
    {"FullyConnected", OP_FC, 0}, {"_npx_fully_connected", OP_FC, 0},
    {"Convolution", OP_CONV, 0}, {"_npx_convolution", OP_CONV, 0},
    {"Pooling", OP_POOL, 0}, {"_npx_pooling", OP_POOL, 0},
    {"BatchNorm", OP_BN, 0}, {"_npx_batch_norm", OP_BN, 0},
    {"LayerNorm", OP_LN, 0}, {"_npx_layer_norm", OP_LN, 0},
    {"Activation", OP_ACT, 0}, {"_npx_activation", OP_ACT, 0},
    {"LeakyReLU", OP_LEAKY, 0}, {"_npx_leaky_relu", OP_LEAKY, 0},
    {"softmax", OP_SOFTMAX, 0}, {"_npx_softmax", OP_SOFTMAX, 0},
    {"log_softmax", OP_SOFTMAX, 1}, {"_npx_log_softmax", OP_SOFTMAX, 1},
    {"SoftmaxActivation", OP_SOFTMAX, 2},
    {"Dropout", OP_IDENTITY, DROPOUT}, {"_npx_dropout", OP_IDENTITY, DROPOUT},
    {"BlockGrad", OP_IDENTITY, 0}, {"stop_gradient", OP_IDENTITY, 0},
    {"_npx_stop_gradient", OP_IDENTITY, 0}, {"_copy", OP_IDENTITY, 0},
    {"identity", OP_IDENTITY, 0}, {"_np_copy", OP_IDENTITY, 0}, {"_npi_copy", OP_IDENTITY, 0},
    {"Cast", OP_IDENTITY, CAST}, {"cast", OP_IDENTITY, CAST}, {"_npi_cast", OP_IDENTITY, CAST},
    {"_npx_cast", OP_IDENTITY, CAST}, {"amp_cast", OP_IDENTITY, CAST},
    {"Flatten", OP_FLATTEN, 0}, {"flatten", OP_FLATTEN, 0}, {"_npx_batch_flatten", OP_FLATTEN, 0},
    {"Reshape", OP_RESHAPE, RESHAPE_LEGACY}, {"reshape", OP_RESHAPE, RESHAPE_LEGACY},
    {"_np_reshape", OP_RESHAPE, RESHAPE_NP}, {"_npx_reshape", OP_RESHAPE, RESHAPE_NPX},
    {"expand_dims", OP_EXPAND_DIMS, 0}, {"_npi_expand_dims", OP_EXPAND_DIMS, 0},
    {"squeeze", OP_SQUEEZE, 0}, {"_np_squeeze", OP_SQUEEZE, 0}, {"_npi_squeeze", OP_SQUEEZE, 0},
    {"transpose", OP_TRANSPOSE, 0}, {"_np_transpose", OP_TRANSPOSE, 0},
    {"_npi_transpose", OP_TRANSPOSE, 0},
    {"Concat", OP_CONCAT, 0}, {"concat", OP_CONCAT, 0}, {"_npi_concatenate", OP_CONCAT, 2},
    {"stack", OP_CONCAT, 1}, {"_npi_stack", OP_CONCAT, 1},
    {"sum", OP_REDUCE, RED_SUM}, {"sum_axis", OP_REDUCE, RED_SUM}, {"_np_sum", OP_REDUCE, RED_SUM},
    {"mean", OP_REDUCE, RED_MEAN}, {"_npi_mean", OP_REDUCE, RED_MEAN},
    {"max", OP_REDUCE, RED_MAX}, {"max_axis", OP_REDUCE, RED_MAX}, {"_np_max", OP_REDUCE, RED_MAX},
    {"_np_amax", OP_REDUCE, RED_MAX},
    {"min", OP_REDUCE, RED_MIN}, {"min_axis", OP_REDUCE, RED_MIN}, {"_np_min", OP_REDUCE, RED_MIN},
    {"_np_amin", OP_REDUCE, RED_MIN},
    {"prod", OP_REDUCE, RED_PROD}, {"_np_prod", OP_REDUCE, RED_PROD},
    {"_np_product", OP_REDUCE, RED_PROD},
    /* unary math */
    {"relu", OP_UNARY, U_RELU}, {"_npx_relu", OP_UNARY, U_RELU},
    {"sigmoid", OP_UNARY, U_SIGMOID}, {"_npx_sigmoid", OP_UNARY, U_SIGMOID},
    {"tanh", OP_UNARY, U_TANH}, {"_npi_tanh", OP_UNARY, U_TANH},
    {"softsign", OP_UNARY, U_SOFTSIGN}, {"_npx_softsign", OP_UNARY, U_SOFTSIGN},
    {"log_sigmoid", OP_UNARY, U_LOG_SIGMOID}, {"_npx_log_sigmoid", OP_UNARY, U_LOG_SIGMOID},
    {"mish", OP_UNARY, U_MISH}, {"_npx_mish", OP_UNARY, U_MISH},
    {"negative", OP_UNARY, U_NEG}, {"_npi_negative", OP_UNARY, U_NEG},
    {"abs", OP_UNARY, U_ABS}, {"_npi_absolute", OP_UNARY, U_ABS}, {"_npi_abs", OP_UNARY, U_ABS},
    {"exp", OP_UNARY, U_EXP}, {"_npi_exp", OP_UNARY, U_EXP},
    {"expm1", OP_UNARY, U_EXPM1}, {"_npi_expm1", OP_UNARY, U_EXPM1},
    {"log", OP_UNARY, U_LOG}, {"_npi_log", OP_UNARY, U_LOG},
    {"log1p", OP_UNARY, U_LOG1P}, {"_npi_log1p", OP_UNARY, U_LOG1P},
    {"log2", OP_UNARY, U_LOG2}, {"_npi_log2", OP_UNARY, U_LOG2},
    {"log10", OP_UNARY, U_LOG10}, {"_npi_log10", OP_UNARY, U_LOG10},
    {"sqrt", OP_UNARY, U_SQRT}, {"_npi_sqrt", OP_UNARY, U_SQRT}, {"rsqrt", OP_UNARY, U_RSQRT},
    {"square", OP_UNARY, U_SQUARE}, {"_npi_square", OP_UNARY, U_SQUARE},
    {"cbrt", OP_UNARY, U_CBRT}, {"_npi_cbrt", OP_UNARY, U_CBRT}, {"rcbrt", OP_UNARY, U_RCBRT},
    {"reciprocal", OP_UNARY, U_RECIP}, {"_npi_reciprocal", OP_UNARY, U_RECIP},
    {"sin", OP_UNARY, U_SIN}, {"_npi_sin", OP_UNARY, U_SIN},
    {"cos", OP_UNARY, U_COS}, {"_npi_cos", OP_UNARY, U_COS},
    {"tan", OP_UNARY, U_TAN}, {"_npi_tan", OP_UNARY, U_TAN},
    {"arcsin", OP_UNARY, U_ASIN}, {"_npi_arcsin", OP_UNARY, U_ASIN},
    {"arccos", OP_UNARY, U_ACOS}, {"_npi_arccos", OP_UNARY, U_ACOS},
    {"arctan", OP_UNARY, U_ATAN}, {"_npi_arctan", OP_UNARY, U_ATAN},
    {"sinh", OP_UNARY, U_SINH}, {"_npi_sinh", OP_UNARY, U_SINH},
    {"cosh", OP_UNARY, U_COSH}, {"_npi_cosh", OP_UNARY, U_COSH},
    {"arcsinh", OP_UNARY, U_ASINH}, {"_npi_arcsinh", OP_UNARY, U_ASINH},
    {"arccosh", OP_UNARY, U_ACOSH}, {"_npi_arccosh", OP_UNARY, U_ACOSH},
    {"arctanh", OP_UNARY, U_ATANH}, {"_npi_arctanh", OP_UNARY, U_ATANH},
    {"sign", OP_UNARY, U_SIGN}, {"_npi_sign", OP_UNARY, U_SIGN},
    {"floor", OP_UNARY, U_FLOOR}, {"_npi_floor", OP_UNARY, U_FLOOR},
    {"ceil", OP_UNARY, U_CEIL}, {"_npi_ceil", OP_UNARY, U_CEIL},
    {"rint", OP_UNARY, U_RINT}, {"_npi_rint", OP_UNARY, U_RINT},
    {"trunc", OP_UNARY, U_TRUNC}, {"_npi_trunc", OP_UNARY, U_TRUNC}, {"fix", OP_UNARY, U_TRUNC},
    {"_npi_fix", OP_UNARY, U_TRUNC}, {"round", OP_UNARY, U_ROUND},
    {"erf", OP_UNARY, U_ERF}, {"_npx_erf", OP_UNARY, U_ERF}, {"_npi_erf", OP_UNARY, U_ERF},
    {"logical_not", OP_UNARY, U_LOGICAL_NOT}, {"_npi_logical_not", OP_UNARY, U_LOGICAL_NOT},
    {"degrees", OP_UNARY, U_DEGREES}, {"_npi_degrees", OP_UNARY, U_DEGREES},
    {"radians", OP_UNARY, U_RADIANS}, {"_npi_radians", OP_UNARY, U_RADIANS},
    /* binary, NumPy broadcasting */
    {"broadcast_add", OP_BINARY, B_ADD}, {"broadcast_plus", OP_BINARY, B_ADD},
    {"elemwise_add", OP_BINARY, B_ADD}, {"_plus", OP_BINARY, B_ADD}, {"_Plus", OP_BINARY, B_ADD},
    {"_add", OP_BINARY, B_ADD}, {"_npi_add", OP_BINARY, B_ADD},
    {"broadcast_sub", OP_BINARY, B_SUB}, {"broadcast_minus", OP_BINARY, B_SUB},
    {"elemwise_sub", OP_BINARY, B_SUB}, {"_minus", OP_BINARY, B_SUB},
    {"_Minus", OP_BINARY, B_SUB}, {"_sub", OP_BINARY, B_SUB}, {"_npi_subtract", OP_BINARY, B_SUB},
    {"broadcast_mul", OP_BINARY, B_MUL}, {"elemwise_mul", OP_BINARY, B_MUL},
    {"_mul", OP_BINARY, B_MUL}, {"_Mul", OP_BINARY, B_MUL}, {"_npi_multiply", OP_BINARY, B_MUL},
    {"broadcast_div", OP_BINARY, B_DIV}, {"elemwise_div", OP_BINARY, B_DIV},
    {"_div", OP_BINARY, B_DIV}, {"_Div", OP_BINARY, B_DIV},
    {"_npi_true_divide", OP_BINARY, B_DIV},
    {"broadcast_power", OP_BINARY, B_POW}, {"_power", OP_BINARY, B_POW},
    {"_Power", OP_BINARY, B_POW}, {"_npi_power", OP_BINARY, B_POW},
    {"broadcast_mod", OP_BINARY, B_MOD}, {"_mod", OP_BINARY, B_MOD},
    {"_npi_mod", OP_BINARY, B_MOD},
    {"broadcast_maximum", OP_BINARY, B_MAX}, {"_maximum", OP_BINARY, B_MAX},
    {"_Maximum", OP_BINARY, B_MAX}, {"_npi_maximum", OP_BINARY, B_MAX},
    {"broadcast_minimum", OP_BINARY, B_MIN}, {"_minimum", OP_BINARY, B_MIN},
    {"_Minimum", OP_BINARY, B_MIN}, {"_npi_minimum", OP_BINARY, B_MIN},
    {"broadcast_hypot", OP_BINARY, B_HYPOT}, {"_hypot", OP_BINARY, B_HYPOT},
    {"_npi_hypot", OP_BINARY, B_HYPOT},
    {"broadcast_arctan2", OP_BINARY, B_ATAN2}, {"_npi_arctan2", OP_BINARY, B_ATAN2},
    {"broadcast_equal", OP_BINARY, B_EQ}, {"_equal", OP_BINARY, B_EQ},
    {"_npi_equal", OP_BINARY, B_EQ},
    {"broadcast_not_equal", OP_BINARY, B_NE}, {"_not_equal", OP_BINARY, B_NE},
    {"_npi_not_equal", OP_BINARY, B_NE},
    {"broadcast_greater", OP_BINARY, B_GT}, {"_greater", OP_BINARY, B_GT},
    {"_npi_greater", OP_BINARY, B_GT},
    {"broadcast_greater_equal", OP_BINARY, B_GE}, {"_greater_equal", OP_BINARY, B_GE},
    {"_npi_greater_equal", OP_BINARY, B_GE},
    {"broadcast_lesser", OP_BINARY, B_LT}, {"_lesser", OP_BINARY, B_LT},
    {"_npi_less", OP_BINARY, B_LT},
    {"broadcast_lesser_equal", OP_BINARY, B_LE}, {"_lesser_equal", OP_BINARY, B_LE},
    {"_npi_less_equal", OP_BINARY, B_LE},
    {"broadcast_logical_and", OP_BINARY, B_AND}, {"_logical_and", OP_BINARY, B_AND},
    {"_npi_logical_and", OP_BINARY, B_AND},
    {"broadcast_logical_or", OP_BINARY, B_OR}, {"_logical_or", OP_BINARY, B_OR},
    {"_npi_logical_or", OP_BINARY, B_OR},
    {"broadcast_logical_xor", OP_BINARY, B_XOR}, {"_logical_xor", OP_BINARY, B_XOR},
    {"_npi_logical_xor", OP_BINARY, B_XOR},
    /* scalar forms */
    {"_plus_scalar", OP_SCALAR, B_ADD}, {"_PlusScalar", OP_SCALAR, B_ADD},
    {"_npi_add_scalar", OP_SCALAR, B_ADD},
    {"_minus_scalar", OP_SCALAR, B_SUB}, {"_MinusScalar", OP_SCALAR, B_SUB},
    {"_npi_subtract_scalar", OP_SCALAR, B_SUB},
    {"_rminus_scalar", OP_SCALAR, B_SUB | REV}, {"_RMinusScalar", OP_SCALAR, B_SUB | REV},
    {"_npi_rsubtract_scalar", OP_SCALAR, B_SUB | REV},
    {"_mul_scalar", OP_SCALAR, B_MUL}, {"_MulScalar", OP_SCALAR, B_MUL},
    {"_npi_multiply_scalar", OP_SCALAR, B_MUL},
    {"_div_scalar", OP_SCALAR, B_DIV}, {"_DivScalar", OP_SCALAR, B_DIV},
    {"_npi_true_divide_scalar", OP_SCALAR, B_DIV},
    {"_rdiv_scalar", OP_SCALAR, B_DIV | REV}, {"_RDivScalar", OP_SCALAR, B_DIV | REV},
    {"_npi_rtrue_divide_scalar", OP_SCALAR, B_DIV | REV},
    {"_power_scalar", OP_SCALAR, B_POW}, {"_PowerScalar", OP_SCALAR, B_POW},
    {"_npi_power_scalar", OP_SCALAR, B_POW},
    {"_rpower_scalar", OP_SCALAR, B_POW | REV}, {"_RPowerScalar", OP_SCALAR, B_POW | REV},
    {"_npi_rpower_scalar", OP_SCALAR, B_POW | REV},
    {"_mod_scalar", OP_SCALAR, B_MOD}, {"_ModScalar", OP_SCALAR, B_MOD},
    {"_npi_mod_scalar", OP_SCALAR, B_MOD},
    {"_rmod_scalar", OP_SCALAR, B_MOD | REV}, {"_RModScalar", OP_SCALAR, B_MOD | REV},
    {"_npi_rmod_scalar", OP_SCALAR, B_MOD | REV},
    {"_maximum_scalar", OP_SCALAR, B_MAX}, {"_MaximumScalar", OP_SCALAR, B_MAX},
    {"_npi_maximum_scalar", OP_SCALAR, B_MAX},
    {"_minimum_scalar", OP_SCALAR, B_MIN}, {"_MinimumScalar", OP_SCALAR, B_MIN},
    {"_npi_minimum_scalar", OP_SCALAR, B_MIN},
    {"_equal_scalar", OP_SCALAR, B_EQ}, {"_npi_equal_scalar", OP_SCALAR, B_EQ},
    {"_not_equal_scalar", OP_SCALAR, B_NE}, {"_npi_not_equal_scalar", OP_SCALAR, B_NE},
    {"_greater_scalar", OP_SCALAR, B_GT}, {"_npi_greater_scalar", OP_SCALAR, B_GT},
    {"_greater_equal_scalar", OP_SCALAR, B_GE}, {"_npi_greater_equal_scalar", OP_SCALAR, B_GE},
    {"_lesser_scalar", OP_SCALAR, B_LT}, {"_npi_less_scalar", OP_SCALAR, B_LT},
    {"_lesser_equal_scalar", OP_SCALAR, B_LE}, {"_npi_less_equal_scalar", OP_SCALAR, B_LE},
    {"_hypot_scalar", OP_SCALAR, B_HYPOT},
    {"clip", OP_CLIP, 0}, {"_npi_clip", OP_CLIP, 0},
    {"add_n", OP_ADDN, 0}, {"ElementWiseSum", OP_ADDN, 0}, {"_npi_add_n", OP_ADDN, 0},
    /* creation, products, flips */
    {"_zeros", OP_FILL, FILL_ZEROS}, {"_npi_zeros", OP_FILL, FILL_ZEROS},
    {"_ones", OP_FILL, FILL_ONES}, {"_npi_ones", OP_FILL, FILL_ONES},
    {"_full", OP_FILL, FILL_VALUE}, {"_npi_full", OP_FILL, FILL_VALUE},
    {"zeros_like", OP_FILL, FILL_ZEROS | FILL_LIKE},
    {"_np_zeros_like", OP_FILL, FILL_ZEROS | FILL_LIKE},
    {"ones_like", OP_FILL, FILL_ONES | FILL_LIKE},
    {"_np_ones_like", OP_FILL, FILL_ONES | FILL_LIKE},
    {"dot", OP_DOT, 0}, {"_np_dot", OP_DOT, 1},
    {"reverse", OP_FLIP, 0}, {"_npi_flip", OP_FLIP, 0},
    {"slice", OP_SLICE, 0}, {"crop", OP_SLICE, 0}, {"_npi_slice", OP_SLICE, 0},
    {"slice_axis", OP_SLICE, 1},
    /* recurrent layers and control flow */
    {"RNN", OP_RNN, 0}, {"_npx_rnn", OP_RNN, 0},
    {"_rnn_param_concat", OP_CONCAT, CONCAT_DIM0},
    {"_npi_rnn_param_concat", OP_CONCAT, CONCAT_DIM0},
    {"_foreach", OP_FOREACH, 0}, {"_while_loop", OP_WHILE, 0}, {"_cond", OP_COND, 0},
};

#define N_NAMES ((int)(sizeof g_names / sizeof g_names[0]))

static pthread_once_t g_sorted = PTHREAD_ONCE_INIT;

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const opname *)a)->name, ((const opname *)b)->name);
}

static void sort_names(void) { qsort(g_names, N_NAMES, sizeof(opname), cmp_name); }

int ops_lookup(const char *name, int *op, int *sub) {
    pthread_once(&g_sorted, sort_names);
    opname key = {name, 0, 0};
    const opname *hit = (const opname *)bsearch(&key, g_names, N_NAMES, sizeof(opname), cmp_name);
    if (!hit) return -1;
    *op = hit->op;
    *sub = hit->sub;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * attribute helpers: each reports "attribute KEY=...: problem" (graph.c adds the node)
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    const jdoc *doc;
    const jval *attrs;
} attrs_t;

static const char *get(const attrs_t *at, const char *key) {
    const jval *v = json_get(at->doc, at->attrs, key);
    return v ? v->str : NULL; /* graph.c checked every value is a string */
}

static kiln_status bad(const char *key, const char *text) {
    rt_error_prefix("attribute %s=\"%s\"", key, rt_shorten(text, 1));
    return KILN_ERR_ATTRIBUTE;
}

static kiln_status req_missing(const char *key) {
    return rt_fail(KILN_ERR_ATTRIBUTE, "missing attribute '%s'", key);
}

static kiln_status get_int(const attrs_t *at, const char *key, int64_t dflt, int required,
                           int64_t lo, int64_t hi, int64_t *out) {
    const char *s = get(at, key);
    if (!s) {
        if (required) return req_missing(key);
        *out = dflt;
        return KILN_OK;
    }
    if (attr_int(s, out) != 0) return bad(key, s);
    if (*out < lo || *out > hi)
        return rt_fail(KILN_ERR_ATTRIBUTE, "attribute %s=%lld is outside [%lld, %lld]", key,
                       (long long)*out, (long long)lo, (long long)hi);
    return KILN_OK;
}

static kiln_status get_float(const attrs_t *at, const char *key, double dflt, double *out) {
    const char *s = get(at, key);
    if (!s) { *out = dflt; return KILN_OK; }
    if (strcmp(s, "None") == 0) { *out = dflt; return KILN_OK; }
    if (attr_float(s, out) != 0) return bad(key, s);
    return KILN_OK;
}

static kiln_status get_bool(const attrs_t *at, const char *key, int dflt, int *out) {
    const char *s = get(at, key);
    if (!s) { *out = dflt; return KILN_OK; }
    if (attr_bool(s, out) != 0) return bad(key, s);
    return KILN_OK;
}

/* A tuple attribute: *n elements (0 when absent, "()" or "None"), each within [lo, hi]. */
static kiln_status get_ints(const attrs_t *at, const char *key, int64_t *vals, int max, int *n,
                            int64_t lo, int64_t hi) {
    const char *s = get(at, key);
    int none;
    *n = 0;
    if (!s) return KILN_OK;
    if (attr_ints(s, vals, max, n, &none, 0) != 0) return bad(key, s);
    for (int i = 0; i < *n; i++)
        if (vals[i] < lo || vals[i] > hi)
            return rt_fail(KILN_ERR_ATTRIBUTE, "attribute %s=\"%s\": %lld is outside [%lld, %lld]",
                           key, rt_shorten(s, 1), (long long)vals[i], (long long)lo,
                           (long long)hi);
    return KILN_OK;
}

static kiln_status get_choice(const attrs_t *at, const char *key, const char *const *choices,
                              int dflt, int *out) {
    const char *s = get(at, key);
    if (!s) { *out = dflt; return KILN_OK; }
    *out = attr_choice(s, choices);
    if (*out < 0) {
        char list[200] = "";
        for (int i = 0; choices[i]; i++) {
            strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
            strncat(list, choices[i], sizeof list - strlen(list) - 1);
        }
        return rt_fail(KILN_ERR_UNSUPPORTED, "attribute %s=\"%s\" is not supported (the runtime "
                                             "knows %s)",
                       key, rt_shorten(s, 1), list);
    }
    return KILN_OK;
}

/* Kernel/stride/dilate/pad: nd values, or a default when absent. */
static kiln_status window(const attrs_t *at, const char *key, int nd, int64_t dflt, int64_t lo,
                          int64_t *out) {
    int n;
    int64_t v[RT_MAX_DIMS];
    kiln_status st = get_ints(at, key, v, RT_MAX_DIMS, &n, lo, RT_MAX_WINDOW);
    if (st) return st;
    if (n == 0) {
        for (int i = 0; i < nd; i++) out[i] = dflt;
        return KILN_OK;
    }
    if (n != nd)
        return rt_fail(KILN_ERR_ATTRIBUTE, "attribute %s has %d values for a %d-D window", key,
                       n, nd);
    for (int i = 0; i < nd; i++) out[i] = v[i];
    return KILN_OK;
}

static kiln_status layout_ok(const attrs_t *at) {
    const char *s = get(at, "layout");
    if (!s || strcmp(s, "None") == 0 || strcmp(s, "NCHW") == 0 || strcmp(s, "NCW") == 0)
        return KILN_OK;
    return rt_fail(KILN_ERR_UNSUPPORTED, "layout \"%s\" is not supported (NCHW or NCW only)",
                   rt_shorten(s, 1));
}

/* "axis" as MXNet's reductions read it: None/"()" all axes, an int, or a tuple */
static kiln_status get_axes(const attrs_t *at, const char *key, int64_t *axes, int *n,
                            int *all) {
    const char *s = get(at, key);
    int none;
    *n = 0;
    *all = 1;
    if (!s) return KILN_OK;
    if (attr_ints(s, axes, RT_MAX_DIMS, n, &none, 0) != 0) return bad(key, s);
    for (int i = 0; i < *n; i++)
        if (axes[i] < -RT_MAX_DIMS || axes[i] >= RT_MAX_DIMS)
            return rt_fail(KILN_ERR_ATTRIBUTE, "attribute %s=\"%s\": axis out of range", key,
                           rt_shorten(s, 1));
    *all = *n == 0;
    return KILN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * per op
 * ------------------------------------------------------------------------------------------- */

static const char *const ACT_TYPES[] = {"relu", "sigmoid", "tanh", "softrelu", "softsign",
                                        "log_sigmoid", "mish", NULL};
static const int ACT_FN[] = {U_RELU, U_SIGMOID, U_TANH, U_SOFTRELU, U_SOFTSIGN, U_LOG_SIGMOID,
                             U_MISH};
static const char *const LEAKY_TYPES[] = {"leaky", "elu", "selu", "gelu", "prelu", "rrelu",
                                          NULL};
static const char *const POOL_TYPES[] = {"max", "avg", "sum", NULL};
static const int POOL_KIND[] = {0 /* KILN_POOL_MAX */, 1 /* AVG */, 2 /* SUM */};
static const char *const CONVENTIONS[] = {"valid", "full", NULL};
static const char *const SOFTMAX_MODES[] = {"instance", "channel", NULL};

static kiln_status parse_conv(rt_node *n, const attrs_t *at) {
    int64_t k[RT_MAX_DIMS];
    int nk;
    kiln_status st = get_ints(at, "kernel", k, RT_MAX_DIMS, &nk, 1, RT_MAX_WINDOW);
    if (st) return st;
    if (!get(at, "kernel")) return req_missing("kernel");
    if (nk < 1 || nk > 2)
        return rt_fail(KILN_ERR_UNSUPPORTED, "%d-D convolution is not supported (1-D and 2-D)",
                       nk);
    n->a.conv.nd = nk;
    for (int i = 0; i < nk; i++) n->a.conv.kernel[i] = k[i];
    if ((st = window(at, "stride", nk, 1, 1, n->a.conv.stride)) ||
        (st = window(at, "dilate", nk, 1, 1, n->a.conv.dilate)) ||
        (st = window(at, "pad", nk, 0, 0, n->a.conv.pad)) ||
        (st = get_int(at, "num_filter", 0, 1, 1, RT_MAX_DIM, &n->a.conv.num_filter)) ||
        (st = get_int(at, "num_group", 1, 0, 1, RT_MAX_DIM, &n->a.conv.num_group)) ||
        (st = get_bool(at, "no_bias", 0, &n->a.conv.no_bias)))
        return st;
    return layout_ok(at);
}

static kiln_status parse_pool(rt_node *n, const attrs_t *at) {
    int64_t k[RT_MAX_DIMS];
    int nk, type;
    kiln_status st;
    const char *conv = get(at, "pooling_convention");
    if (conv && strcmp(conv, "same") == 0)
        return rt_fail(KILN_ERR_UNSUPPORTED, "pooling_convention 'same' is not supported");
    const char *pt = get(at, "pool_type");
    if (pt && strcmp(pt, "lp") == 0)
        return rt_fail(KILN_ERR_UNSUPPORTED, "pool_type 'lp' is not supported");
    if ((st = get_choice(at, "pool_type", POOL_TYPES, 0, &type)) ||
        (st = get_bool(at, "global_pool", 0, &n->a.pool.global)) ||
        (st = get_choice(at, "pooling_convention", CONVENTIONS, 0, &n->a.pool.full)) ||
        (st = get_bool(at, "count_include_pad", 1, &n->a.pool.count_include_pad)) ||
        (st = get_ints(at, "kernel", k, RT_MAX_DIMS, &nk, 1, RT_MAX_WINDOW)))
        return st;
    n->a.pool.type = POOL_KIND[type];
    if (nk > 2)
        return rt_fail(KILN_ERR_UNSUPPORTED, "%d-D pooling is not supported (1-D and 2-D)", nk);
    if (nk == 0 && !n->a.pool.global)
        return rt_fail(KILN_ERR_ATTRIBUTE, "Pooling needs a kernel unless global_pool is set");
    n->a.pool.nd = nk; /* 0 for global pooling without a kernel: the input decides */
    for (int i = 0; i < nk; i++) n->a.pool.kernel[i] = k[i];
    if (nk) {
        if ((st = window(at, "stride", nk, 1, 1, n->a.pool.stride)) ||
            (st = window(at, "pad", nk, 0, 0, n->a.pool.pad)))
            return st;
    }
    return layout_ok(at);
}

static kiln_status parse_reshape(rt_node *n, const attrs_t *at) {
    int none = 0;
    const char *key = n->sub == RESHAPE_LEGACY ? "shape" : "newshape";
    const char *s = get(at, key);
    if (n->sub == RESHAPE_LEGACY && (!s || strcmp(s, "()") == 0)) {
        key = "target_shape"; /* MXNet's deprecated spelling */
        s = get(at, key);
    }
    if (!s) return req_missing(n->sub == RESHAPE_LEGACY ? "shape" : "newshape");
    if (attr_ints(s, n->a.reshape.codes, RT_MAX_CODES, &n->a.reshape.n, &none, 0) != 0)
        return bad(key, s);
    if (none) return rt_fail(KILN_ERR_ATTRIBUTE, "attribute %s is None", key);
    for (int i = 0; i < n->a.reshape.n; i++)
        if (n->a.reshape.codes[i] < -6 || n->a.reshape.codes[i] > RT_MAX_DIM)
            return rt_fail(KILN_ERR_ATTRIBUTE, "attribute %s=\"%s\": code %lld out of range", key,
                           rt_shorten(s, 1), (long long)n->a.reshape.codes[i]);
    const char *order = get(at, "order");
    if (order && strcmp(order, "C") != 0)
        return rt_fail(KILN_ERR_UNSUPPORTED, "reshape order \"%s\" is not supported (C only)",
                       rt_shorten(order, 1));
    return get_bool(at, "reverse", 0, &n->a.reshape.reverse);
}

static kiln_status parse_cast(rt_node *n, const attrs_t *at) {
    const char *s = get(at, "dtype");
    if (!s) return req_missing("dtype");
    static const char *const same[] = {"float32", "float64", NULL};
    static const char *const ints[] = {"int8", "int16", "int32", "int64", "uint8", "uint16",
                                       "uint32", "uint64", NULL};
    if (attr_choice(s, same) >= 0) return KILN_OK;
    n->op = OP_UNARY;
    if (strcmp(s, "float16") == 0) n->sub = U_TO_F16;
    else if (strcmp(s, "bool") == 0) n->sub = U_TO_BOOL;
    else if (attr_choice(s, ints) >= 0) n->sub = U_TRUNC; /* values kept in float32 */
    else return rt_fail(KILN_ERR_UNSUPPORTED, "cast to dtype \"%s\" is not supported",
                        rt_shorten(s, 1));
    return KILN_OK;
}

static kiln_status parse_softmax(rt_node *n, const attrs_t *at) {
    kiln_status st;
    if (n->sub == 2) {
        int mode;
        if ((st = get_choice(at, "mode", SOFTMAX_MODES, 0, &mode))) return st;
        n->a.softmax.axis = mode; /* 0: instance (flattened), 1: channel (axis 1) */
        n->a.softmax.temperature = 1.0;
        return KILN_OK;
    }
    int use_length;
    if ((st = get_bool(at, "use_length", 0, &use_length))) return st;
    if (use_length)
        return rt_fail(KILN_ERR_UNSUPPORTED, "softmax with use_length=True is not supported");
    const char *dt = get(at, "dtype");
    if (dt && strcmp(dt, "None") != 0 && strcmp(dt, "float32") != 0 && strcmp(dt, "float64"))
        return rt_fail(KILN_ERR_UNSUPPORTED, "softmax dtype \"%s\" is not supported",
                       rt_shorten(dt, 1));
    if ((st = get_int(at, "axis", -1, 0, -RT_MAX_DIMS, RT_MAX_DIMS - 1, &n->a.softmax.axis)) ||
        (st = get_float(at, "temperature", 1.0, &n->a.softmax.temperature)))
        return st;
    double t = n->a.softmax.temperature;
    if (!(t > 0.0) || isinf(t))
        return rt_fail(KILN_ERR_ATTRIBUTE, "softmax temperature %g is not a positive number", t);
    return KILN_OK;
}

static kiln_status parse_concat(rt_node *n, const attrs_t *at) {
    kiln_status st;
    int64_t num_args;
    if ((st = get_int(at, "num_args", -1, 0, 1, RT_MAX_INPUTS_PER_NODE, &num_args))) return st;
    if (num_args >= 1 && num_args != n->n_in)
        return rt_fail(KILN_ERR_GRAPH, "num_args=%lld but the node has %d inputs",
                       (long long)num_args, n->n_in);
    int64_t dflt = n->sub == 0 ? 1 : 0;
    if (n->sub == CONCAT_DIM0) n->sub = 0;
    const char *key = n->sub == 0 ? "dim" : "axis";
    const char *s = get(at, key);
    if (n->sub == 2 && s && strcmp(s, "None") == 0) {
        n->a.concat.flat = 1; /* np.concatenate(axis=None): flatten, then join */
        n->a.concat.axis = 0;
        return KILN_OK;
    }
    if (n->sub == 2) n->sub = 0;
    return get_int(at, key, dflt, 0, -RT_MAX_DIMS, RT_MAX_DIMS - 1, &n->a.concat.axis);
}

static kiln_status parse_reduce(rt_node *n, const attrs_t *at) {
    kiln_status st;
    double initial;
    if ((st = get_axes(at, "axis", n->a.reduce.axes, &n->a.reduce.n, &n->a.reduce.all)) ||
        (st = get_bool(at, "keepdims", 0, &n->a.reduce.keepdims)) ||
        (st = get_bool(at, "exclude", 0, &n->a.reduce.exclude)) ||
        (st = get_float(at, "initial", NAN, &initial)))
        return st;
    if (initial == initial)
        return rt_fail(KILN_ERR_UNSUPPORTED, "a reduction with 'initial' is not supported");
    return KILN_OK;
}

static kiln_status parse_fill(rt_node *n, const attrs_t *at) {
    int kind = n->sub & ~FILL_LIKE;
    n->a.fill.value = kind == FILL_ONES ? 1.0 : 0.0;
    if (kind == FILL_VALUE) {
        kiln_status st = get_float(at, "value", 0.0, &n->a.fill.value);
        if (st) return st;
    }
    if (n->sub & FILL_LIKE) return KILN_OK;
    const char *s = get(at, "shape");
    int none = 0;
    rt_shape *shape = &n->a.fill.shape;
    shape->ndim = 0;
    if (s && attr_ints(s, shape->d, RT_MAX_DIMS, &shape->ndim, &none, 0) != 0)
        return bad("shape", s);
    for (int i = 0; i < shape->ndim; i++)
        if (shape->d[i] < 1 || shape->d[i] > RT_MAX_DIM)
            return rt_fail(KILN_ERR_UNSUPPORTED, "attribute shape=\"%s\": dimension %lld (unknown "
                                                 "or zero-size dimensions are not supported)",
                           rt_shorten(s, 1), (long long)shape->d[i]);
    return KILN_OK;
}

/* slice: begin, end (step) tuples with None entries; slice_axis: axis, begin, end */
static kiln_status parse_slice(rt_node *n, const attrs_t *at) {
    static const char *const keys[] = {"begin", "end", "step"};
    int64_t *lists[] = {n->a.slice.begin, n->a.slice.end, n->a.slice.step};
    int count[3], none;
    kiln_status st;
    if (n->sub == 1) {
        if ((st = get_int(at, "axis", 0, 1, -RT_MAX_DIMS, RT_MAX_DIMS - 1, &n->a.slice.axis)))
            return st;
    }
    for (int k = 0; k < 3; k++) {
        const char *s = get(at, keys[k]);
        count[k] = 0;
        if (!s) {
            if (k < 2) return req_missing(keys[k]);
            continue;
        }
        if (attr_ints(s, lists[k], RT_MAX_DIMS, &count[k], &none, 1) != 0) return bad(keys[k], s);
        if (none) { /* slice_axis's end=None */
            count[k] = 1;
            lists[k][0] = INT64_MIN;
        }
        for (int i = 0; i < count[k]; i++)
            if (lists[k][i] != INT64_MIN && (lists[k][i] < -RT_MAX_DIM || lists[k][i] > RT_MAX_DIM))
                return rt_fail(KILN_ERR_ATTRIBUTE, "attribute %s=\"%s\": out of range", keys[k],
                               rt_shorten(s, 1));
    }
    if (count[0] != count[1] || count[2] > count[0] || (n->sub == 1 && count[0] != 1))
        return rt_fail(KILN_ERR_ATTRIBUTE, "slice: begin, end and step differ in length");
    for (int i = 0; i < count[2]; i++)
        if (n->a.slice.step[i] == 0)
            return rt_fail(KILN_ERR_ATTRIBUTE, "slice: a step of 0");
    for (int i = count[2]; i < count[0]; i++) n->a.slice.step[i] = INT64_MIN;
    n->a.slice.n = count[0];
    return KILN_OK;
}

static const char *const RNN_MODES[] = {"rnn_relu", "rnn_tanh", "lstm", "gru", NULL};

/* MXNet's RNN: what inference computes (p, the dropout between layers, does nothing) */
static kiln_status parse_rnn(rt_node *n, const attrs_t *at) {
    kiln_status st;
    int64_t layers;
    int bidir, seq_len;
    double p;
    if (!get(at, "mode")) return req_missing("mode");
    if ((st = get_choice(at, "mode", RNN_MODES, 0, &n->a.rnn.mode)) ||
        (st = get_int(at, "state_size", 0, 1, 1, RT_MAX_DIM, &n->a.rnn.state_size)) ||
        (st = get_int(at, "num_layers", 1, 0, 1, 4096, &layers)) ||
        (st = get_bool(at, "bidirectional", 0, &bidir)) ||
        (st = get_bool(at, "state_outputs", 0, &n->a.rnn.state_outputs)) ||
        (st = get_float(at, "p", 0.0, &p)) ||
        (st = get_bool(at, "use_sequence_length", 0, &seq_len)))
        return st;
    n->a.rnn.layers = (int)layers;
    n->a.rnn.dirs = bidir ? 2 : 1;
    static const char *const unsupported[] = {"projection_size", "lstm_state_clip_min",
                                              "lstm_state_clip_max"};
    for (int i = 0; i < 3; i++) {
        const char *s = get(at, unsupported[i]);
        if (s && strcmp(s, "None") != 0)
            return rt_fail(KILN_ERR_UNSUPPORTED, "RNN with %s=%s is not supported (LSTM "
                                                 "projections and state clipping)",
                           unsupported[i], rt_shorten(s, 1));
    }
    if (seq_len)
        return rt_fail(KILN_ERR_UNSUPPORTED, "RNN with use_sequence_length=True is not supported "
                                             "(every sequence runs all its steps)");
    return KILN_OK;
}

kiln_status ops_parse(rt_node *n, const jdoc *doc, const jval *attrs) {
    attrs_t at = {doc, attrs};
    kiln_status st = KILN_OK;
    int k;
    switch (n->op) {
    case OP_FC:
        if ((st = get_int(&at, "num_hidden", 0, 1, 1, RT_MAX_DIM, &n->a.fc.num_hidden)) ||
            (st = get_bool(&at, "no_bias", 0, &n->a.fc.no_bias)) ||
            (st = get_bool(&at, "flatten", 1, &n->a.fc.flatten)))
            return st;
        return KILN_OK;
    case OP_CONV: return parse_conv(n, &at);
    case OP_POOL: return parse_pool(n, &at);
    case OP_BN:
        if ((st = get_float(&at, "eps", 1e-3, &n->a.bn.eps)) ||
            (st = get_bool(&at, "fix_gamma", 1, &n->a.bn.fix_gamma)) ||
            (st = get_int(&at, "axis", 1, 0, -RT_MAX_DIMS, RT_MAX_DIMS - 1, &n->a.bn.axis)))
            return st;
        if (!(n->a.bn.eps >= 0.0))
            return rt_fail(KILN_ERR_ATTRIBUTE, "BatchNorm eps %g is negative", n->a.bn.eps);
        return KILN_OK;
    case OP_LN:
        if ((st = get_float(&at, "eps", 1e-5, &n->a.ln.eps)) ||
            (st = get_int(&at, "axis", -1, 0, -RT_MAX_DIMS, RT_MAX_DIMS - 1, &n->a.ln.axis)))
            return st;
        if (!(n->a.ln.eps >= 0.0))
            return rt_fail(KILN_ERR_ATTRIBUTE, "LayerNorm eps %g is negative", n->a.ln.eps);
        return KILN_OK;
    case OP_ACT:
        if (!get(&at, "act_type")) return req_missing("act_type");
        if ((st = get_choice(&at, "act_type", ACT_TYPES, 0, &k))) return st;
        n->op = OP_UNARY; /* Activation(act_type=relu) runs as relu */
        n->sub = ACT_FN[k];
        return KILN_OK;
    case OP_LEAKY: {
        double lo, hi;
        if ((st = get_choice(&at, "act_type", LEAKY_TYPES, 0, &k)) ||
            (st = get_float(&at, "slope", 0.25, &n->a.leaky.slope)) ||
            (st = get_float(&at, "lower_bound", 0.125, &lo)) ||
            (st = get_float(&at, "upper_bound", 0.334, &hi)))
            return st;
        n->sub = k;
        if (k == LEAKY_RRELU) { /* its inference form: leaky with the mean slope */
            n->sub = LEAKY_LEAKY;
            n->a.leaky.slope = (lo + hi) / 2;
        }
        return KILN_OK;
    }
    case OP_SOFTMAX: return parse_softmax(n, &at);
    case OP_IDENTITY: return n->sub == CAST ? parse_cast(n, &at) : KILN_OK;
    case OP_RESHAPE: return parse_reshape(n, &at);
    case OP_EXPAND_DIMS:
        return get_int(&at, "axis", 0, 1, -RT_MAX_DIMS - 1, RT_MAX_DIMS, &n->a.expand.axis);
    case OP_SQUEEZE: {
        int all;
        return get_axes(&at, "axis", n->a.squeeze.axes, &n->a.squeeze.n, &all);
    }
    case OP_TRANSPOSE: {
        int none;
        const char *s = get(&at, "axes");
        n->a.transpose.n = 0;
        if (s && attr_ints(s, n->a.transpose.axes, RT_MAX_DIMS, &n->a.transpose.n, &none, 0))
            return bad("axes", s);
        return KILN_OK;
    }
    case OP_CONCAT: return parse_concat(n, &at);
    case OP_REDUCE: return parse_reduce(n, &at);
    case OP_SCALAR: {
        const char *s = get(&at, "scalar");
        if (!s) return req_missing("scalar");
        if (attr_float(s, &n->a.scalar.value) != 0) return bad("scalar", s);
        n->a.scalar.rev = (n->sub & REV) != 0;
        n->sub &= ~REV;
        return KILN_OK;
    }
    case OP_CLIP:
        if ((st = get_float(&at, "a_min", -HUGE_VAL, &n->a.clip.lo)) ||
            (st = get_float(&at, "a_max", HUGE_VAL, &n->a.clip.hi)))
            return st;
        return KILN_OK;
    case OP_FILL: return parse_fill(n, &at);
    case OP_DOT:
        if ((st = get_bool(&at, "transpose_a", 0, &n->a.dot.ta)) ||
            (st = get_bool(&at, "transpose_b", 0, &n->a.dot.tb)))
            return st;
        return KILN_OK;
    case OP_FLIP: {
        int all;
        if ((st = get_axes(&at, "axis", n->a.flip.axes, &n->a.flip.n, &all))) return st;
        if (all) return req_missing("axis");
        return KILN_OK;
    }
    case OP_SLICE: return parse_slice(n, &at);
    case OP_RNN: return parse_rnn(n, &at);
    case OP_FOREACH: case OP_WHILE: case OP_COND: return cf_parse(n, doc, attrs);
    default:
        return KILN_OK;
    }
}

int ops_num_outputs(const rt_node *n) {
    switch (n->op) {
    case OP_BN: case OP_LN: return 3;
    case OP_POOL: return n->a.pool.type == 0 ? 2 : 1; /* MXNet 1.9's max-pool workspace */
    case OP_IDENTITY: return n->sub == DROPOUT ? 2 : 1;
    case OP_RNN:
        if (!n->a.rnn.state_outputs) return 1;
        return n->a.rnn.mode == RNN_LSTM ? 3 : 2;
    case OP_FOREACH: case OP_WHILE: case OP_COND: return (int)n->cf->num_outputs;
    default: return 1;
    }
}

int ops_extra_outputs(const rt_node *n) {
    return n->op == OP_RNN || n->op == OP_FOREACH || n->op == OP_WHILE || n->op == OP_COND;
}

void ops_arity(const rt_node *n, int *lo, int *hi) {
    *lo = *hi = 1;
    switch (n->op) {
    case OP_FC: *lo = *hi = n->a.fc.no_bias ? 2 : 3; break;
    case OP_CONV: *lo = *hi = n->a.conv.no_bias ? 2 : 3; break;
    case OP_BN: *lo = *hi = 5; break;
    case OP_LN: *lo = *hi = 3; break;
    case OP_LEAKY: *lo = *hi = n->sub == LEAKY_PRELU ? 2 : 1; break;
    case OP_BINARY: *lo = *hi = 2; break;
    case OP_CONCAT: case OP_ADDN: *lo = 1; *hi = RT_MAX_INPUTS_PER_NODE; break;
    case OP_FILL: *lo = *hi = n->sub & FILL_LIKE ? 1 : 0; break;
    case OP_DOT: *lo = *hi = 2; break;
    case OP_RNN: *lo = *hi = n->a.rnn.mode == RNN_LSTM ? 4 : 3; break;
    case OP_FOREACH: case OP_WHILE: case OP_COND: *lo = 1; *hi = RT_MAX_INPUTS_PER_NODE; break;
    default: break;
    }
}

int ops_param_input(const rt_node *n, int i) {
    switch (n->op) {
    case OP_FC: case OP_CONV: case OP_LN: return i >= 1;
    case OP_BN: return i >= 1;
    case OP_LEAKY: return i == 1;
    default: return 0;
    }
}

int ops_is_alias(const rt_node *n) {
    switch (n->op) {
    case OP_IDENTITY: case OP_FLATTEN: case OP_RESHAPE: case OP_EXPAND_DIMS: case OP_SQUEEZE:
        return 1;
    default:
        return 0;
    }
}
