/* exec.c: run a planned model node by node through the kernels.
 *
 * Shapes were checked by infer.c and memory placed by plan.c, so each case here only views
 * its tensors the way its kernel wants them ((outer, n, inner) for axis ops, NCHW for images)
 * and calls it. The kernels' thread-local scratch is reserved up front (a failed allocation is
 * an error here rather than a crash inside a kernel).
 */
#include "graph.h"
#include "cf.h"
#include "extra_kernels.h"
#include "conv_packed.h"

#include "../kernels/kiln_kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define IN(i) (m->values[n->in[i]].data)
#define INSHAPE(i) (&m->values[n->in[i]].shape)

static long prod(const rt_shape *s, int from, int to) {
    long p = 1;
    for (int i = from; i < to; i++) p *= (long)s->d[i];
    return p;
}

static int axis_of(int64_t axis, int ndim) { return (int)(axis < 0 ? axis + ndim : axis); }

static void run_fc(const kiln_model *m, const rt_node *n, float *y) {
    const rt_shape *x = INSHAPE(0);
    long k = n->a.fc.flatten ? prod(x, 1, x->ndim) : (long)x->d[x->ndim - 1];
    long rows = prod(x, 0, x->ndim) / k;
    /* the kernel applies relu in its epilogue; other activations are vectorised here */
    int in_kernel = n->act == KILN_ACT_RELU || n->act == KILN_ACT_NONE;
    kiln_dense_f32(IN(0), IN(1), n->a.fc.no_bias ? NULL : IN(2), y, rows,
                   (long)n->a.fc.num_hidden, k, in_kernel ? n->act : KILN_ACT_NONE);
    if (!in_kernel) rtk_act_f32(n->act, y, y, rows * (long)n->a.fc.num_hidden);
}

void rt_conv_geometry(const kiln_model *m, const rt_node *n, kiln_conv2d *p) {
    const rt_shape *x = INSHAPE(0);
    int two = n->a.conv.nd == 2;
    memset(p, 0, sizeof *p);
    p->n = 1;
    p->c = (long)x->d[1];
    p->h = two ? (long)x->d[2] : 1;
    p->w = (long)x->d[two ? 3 : 2];
    p->f = (long)n->a.conv.num_filter;
    p->kh = two ? (long)n->a.conv.kernel[0] : 1;
    p->kw = (long)n->a.conv.kernel[two ? 1 : 0];
    p->sh = two ? (long)n->a.conv.stride[0] : 1;
    p->sw = (long)n->a.conv.stride[two ? 1 : 0];
    p->ph = two ? (long)n->a.conv.pad[0] : 0;
    p->pw = (long)n->a.conv.pad[two ? 1 : 0];
    p->dh = two ? (long)n->a.conv.dilate[0] : 1;
    p->dw = (long)n->a.conv.dilate[two ? 1 : 0];
    p->groups = (long)n->a.conv.num_group;
    kiln_conv2d_init(p);
}

static kiln_status run_conv(const kiln_model *m, const rt_node *n, float *y) {
    const rt_shape *x = INSHAPE(0);
    int two = n->a.conv.nd == 2;
    kiln_conv2d p;
    rt_conv_geometry(m, n, &p);
    const rt_shape *ys = &m->values[n->out].shape;
    if (p.oh != (two ? (long)ys->d[2] : 1) ||
        p.ow != (long)ys->d[two ? 3 : 2])
        return rt_fail(KILN_ERR_SHAPE, "convolution geometry the kernel refuses");
    const float *scale = n->fold, *bias = n->fold ? n->fold + p.f
                                                  : (n->a.conv.no_bias ? NULL : IN(2));
    const float *res = n->residual >= 0 ? m->values[n->residual].data : NULL;
    long in_size = p.c * p.h * p.w, out_size = p.f * p.oh * p.ow;
    if (!n->packed) { /* depthwise: the shared kernel's direct loop (no scratch) */
        for (long i = 0; i < (long)x->d[0]; i++)
            kiln_conv2d_f32(&p, IN(0) + i * in_size, IN(1), scale, bias,
                            res ? res + i * out_size : NULL, y + i * out_size, n->act);
        return KILN_OK;
    }
    /* packed weights (scale folded in), one image at a time; activations the epilogue does
     * not have (softrelu, softsign) run after */
    int in_epilogue = n->act <= KILN_ACT_TANH;
    void *ws = (char *)m->arena + n->ws_off;
    for (long i = 0; i < (long)x->d[0]; i++)
        rtk_conv2d_f32(&p, IN(0) + i * in_size, n->packed, bias, res ? res + i * out_size : NULL,
                       y + i * out_size, in_epilogue ? n->act : KILN_ACT_NONE, ws);
    if (!in_epilogue) rtk_act_f32(n->act, y, y, out_size * (long)x->d[0]);
    return KILN_OK;
}

static void run_pool(const kiln_model *m, const rt_node *n, float *y) {
    const rt_shape *x = INSHAPE(0), *ys = &m->values[n->out].shape;
    int two = x->ndim == 4;
    kiln_pool2d p;
    memset(&p, 0, sizeof p);
    p.n = (long)x->d[0];
    p.c = (long)x->d[1];
    p.h = two ? (long)x->d[2] : 1;
    p.w = (long)x->d[two ? 3 : 2];
    if (n->a.pool.global) {
        p.kh = p.h;
        p.kw = p.w;
        p.sh = p.sw = 1;
    } else {
        p.kh = two ? (long)n->a.pool.kernel[0] : 1;
        p.kw = (long)n->a.pool.kernel[two ? 1 : 0];
        p.sh = two ? (long)n->a.pool.stride[0] : 1;
        p.sw = (long)n->a.pool.stride[two ? 1 : 0];
        p.ph = two ? (long)n->a.pool.pad[0] : 0;
        p.pw = (long)n->a.pool.pad[two ? 1 : 0];
    }
    p.oh = two ? (long)ys->d[2] : 1;
    p.ow = (long)ys->d[two ? 3 : 2];
    p.type = n->a.pool.type;
    p.count_include_pad = n->a.pool.count_include_pad;
    kiln_pool2d_f32(&p, IN(0), y);
}

static void run_softmax(const kiln_model *m, const rt_node *n, float *y) {
    const rt_shape *x = INSHAPE(0);
    long outer, len, inner;
    if (n->sub == 2) { /* SoftmaxActivation */
        outer = (long)x->d[0];
        len = n->a.softmax.axis ? (long)x->d[1] : prod(x, 1, x->ndim);
        inner = n->a.softmax.axis ? prod(x, 2, x->ndim) : 1;
    } else {
        int ax = axis_of(n->a.softmax.axis, x->ndim);
        outer = prod(x, 0, ax);
        len = (long)x->d[ax];
        inner = prod(x, ax + 1, x->ndim);
    }
    kiln_softmax_f32(IN(0), y, outer, len, inner, (float)(1.0 / n->a.softmax.temperature),
                     n->sub == 1);
}

static void run_concat(const kiln_model *m, const rt_node *n, float *y) {
    const rt_shape *ys = &m->values[n->out].shape;
    long outer = 1;
    if (!n->a.concat.flat) outer = prod(ys, 0, axis_of(n->a.concat.axis, ys->ndim));
    float *dst = y;
    for (long o = 0; o < outer; o++)
        for (int i = 0; i < n->n_in; i++) {
            long block = prod(INSHAPE(i), 0, INSHAPE(i)->ndim) / outer;
            memcpy(dst, IN(i) + o * block, (size_t)block * sizeof(float));
            dst += block;
        }
}

static void run_transpose(const kiln_model *m, const rt_node *n, float *y) {
    const rt_shape *x = INSHAPE(0);
    long dims[RT_MAX_DIMS];
    int perm[RT_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        dims[i] = (long)x->d[i];
        perm[i] = n->a.transpose.n ? axis_of(n->a.transpose.axes[i], x->ndim) : x->ndim - 1 - i;
    }
    rtk_transpose_f32(IN(0), y, x->ndim, dims, perm);
}

static void run_reduce(const kiln_model *m, const rt_node *n, float *y) {
    const rt_shape *x = INSHAPE(0);
    long dims[RT_MAX_DIMS];
    int red[RT_MAX_DIMS] = {0};
    if (x->ndim == 0) {
        y[0] = IN(0)[0];
        return;
    }
    for (int k = 0; k < n->a.reduce.n; k++) red[axis_of(n->a.reduce.axes[k], x->ndim)] = 1;
    for (int i = 0; i < x->ndim; i++) {
        dims[i] = (long)x->d[i];
        if (n->a.reduce.all) red[i] = !n->a.reduce.exclude;
        else if (n->a.reduce.exclude) red[i] = !red[i];
    }
    double *acc = (double *)((char *)m->arena + n->ws_off);
    rtk_reduce_f32(n->sub, IN(0), y, x->ndim, dims, red, acc);
}

/* NumPy broadcasting as strides, with adjacent axes merged where both operands allow (so a
 * bias add (N, C) + (C,) is 2-D and equal shapes are 1-D). */
static void run_binary(const kiln_model *m, const rt_node *n, float *y) {
    const rt_shape *a = INSHAPE(0), *b = INSHAPE(1), *ys = &m->values[n->out].shape;
    long dims[RT_MAX_DIMS], sa[RT_MAX_DIMS], sb[RT_MAX_DIMS];
    long ta = 1, tb = 1;
    int nd = ys->ndim, k = 0;
    long fa[RT_MAX_DIMS], fb[RT_MAX_DIMS];
    for (int i = nd - 1; i >= 0; i--) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        long da = ia >= 0 ? (long)a->d[ia] : 1, db = ib >= 0 ? (long)b->d[ib] : 1;
        fa[i] = da == 1 ? 0 : ta;
        fb[i] = db == 1 ? 0 : tb;
        ta *= da;
        tb *= db;
    }
    for (int i = 0; i < nd; i++) {
        long d = (long)ys->d[i];
        if (d == 1) continue;
        if (k > 0 && ((sa[k - 1] == 0 && fa[i] == 0) || (sa[k - 1] == fa[i] * d && fa[i])) &&
            ((sb[k - 1] == 0 && fb[i] == 0) || (sb[k - 1] == fb[i] * d && fb[i]))) {
            dims[k - 1] *= d;
            sa[k - 1] = fa[i];
            sb[k - 1] = fb[i];
            continue;
        }
        dims[k] = d;
        sa[k] = fa[i];
        sb[k] = fb[i];
        k++;
    }
    if (k == 0) {
        dims[0] = 1;
        sa[0] = sb[0] = 0;
        k = 1;
    }
    rtk_binary_f32(n->sub, IN(0), IN(1), y, k, dims, sa, sb);
}

/* dot: one GEMM over a viewed as (M, K) (or (K, M) transposed) and b as (K, N) (or (N, K)) */
static void run_dot(const kiln_model *m, const rt_node *n, float *y) {
    const rt_shape *a = INSHAPE(0), *b = INSHAPE(1);
    int ta = n->a.dot.ta && a->ndim == 2, tb = n->a.dot.tb && b->ndim == 2;
    long k = ta ? (long)a->d[0] : (long)a->d[a->ndim - 1];
    long rows = prod(a, 0, a->ndim) / k, cols = prod(b, 0, b->ndim) / k;
    kiln_sgemm(ta, tb, rows, cols, k, 1.0f, IN(0), ta ? rows : k, IN(1), tb ? k : cols, 0.0f, y,
               cols);
}

static void run_flip(const kiln_model *m, const rt_node *n, float *y) {
    const rt_shape *x = INSHAPE(0);
    const float *src = IN(0);
    int done[RT_MAX_DIMS] = {0};
    for (int k = 0; k < n->a.flip.n; k++) {
        int ax = axis_of(n->a.flip.axes[k], x->ndim);
        if (done[ax]++) continue; /* an axis named twice flips once, as MXNet does */
        rtk_flip_f32(src, y, prod(x, 0, ax), (long)x->d[ax], prod(x, ax + 1, x->ndim));
        src = y; /* further axes flip in place */
    }
    if (src != y) memcpy(y, src, (size_t)prod(x, 0, x->ndim) * sizeof(float));
}

static void run_slice(const kiln_model *m, const rt_node *n, float *y) {
    int64_t offset, stride[RT_MAX_DIMS];
    rt_shape ys;
    long dims[RT_MAX_DIMS], st[RT_MAX_DIMS];
    rt_slice_ranges(n, INSHAPE(0), &offset, stride, &ys); /* succeeded in infer.c */
    for (int i = 0; i < ys.ndim; i++) {
        dims[i] = (long)ys.d[i];
        st[i] = (long)stride[i];
    }
    rtk_strided_copy_f32(IN(0) + offset, y, ys.ndim, dims, st);
}

static kiln_status run_node(kiln_model *m, const rt_node *n) {
    float *y = m->values[n->out].data;
    const rt_shape *x = n->n_in ? INSHAPE(0) : NULL;
    long count = x ? prod(x, 0, x->ndim) : 0;
    switch (n->op) {
    case OP_FC: run_fc(m, n, y); break;
    case OP_CONV: return run_conv(m, n, y);
    case OP_POOL: run_pool(m, n, y); break;
    case OP_BN: {
        int ax = axis_of(n->a.bn.axis, x->ndim);
        kiln_batch_norm_f32(IN(0), IN(1), IN(2), IN(3), IN(4), y, NULL, NULL, prod(x, 0, ax),
                            (long)x->d[ax], prod(x, ax + 1, x->ndim), (float)n->a.bn.eps,
                            n->a.bn.fix_gamma, 0);
        break;
    }
    case OP_LN: {
        int ax = axis_of(n->a.ln.axis, x->ndim);
        rtk_layer_norm_f32(IN(0), IN(1), IN(2), y, prod(x, 0, ax), (long)x->d[ax],
                           prod(x, ax + 1, x->ndim), (float)n->a.ln.eps);
        break;
    }
    case OP_UNARY:
        if (n->sub <= U_SOFTSIGN) rtk_act_f32(n->sub + 1, IN(0), y, count);
        else rtk_unary_f32(n->sub, IN(0), y, count);
        break;
    case OP_LEAKY: {
        long c = x->ndim >= 2 ? (long)x->d[1] : 1;
        long outer = x->ndim >= 1 ? (long)x->d[0] : 1;
        const rt_shape *g = n->sub == LEAKY_PRELU ? INSHAPE(1) : NULL;
        rtk_leaky_f32(n->sub, IN(0), g ? IN(1) : NULL, g ? prod(g, 0, g->ndim) : 0, y, outer, c,
                      count / (outer * c), (float)n->a.leaky.slope);
        break;
    }
    case OP_SOFTMAX: run_softmax(m, n, y); break;
    case OP_TRANSPOSE: run_transpose(m, n, y); break;
    case OP_CONCAT: run_concat(m, n, y); break;
    case OP_REDUCE: run_reduce(m, n, y); break;
    case OP_BINARY: run_binary(m, n, y); break;
    case OP_SCALAR:
        rtk_scalar_f32(n->sub, IN(0), (float)n->a.scalar.value, n->a.scalar.rev, y, count);
        break;
    case OP_CLIP:
        rtk_clip_f32(IN(0), y, count, (float)n->a.clip.lo, (float)n->a.clip.hi);
        break;
    case OP_ADDN: {
        long one = 1;
        if (n->n_in == 1) { memcpy(y, IN(0), (size_t)count * sizeof(float)); break; }
        rtk_binary_f32(B_ADD, IN(0), IN(1), y, 1, &count, &one, &one);
        for (int i = 2; i < n->n_in; i++) rtk_binary_f32(B_ADD, y, IN(i), y, 1, &count, &one, &one);
        break;
    }
    case OP_FILL:
        rtk_fill_f32(y, prod(&m->values[n->out].shape, 0, m->values[n->out].shape.ndim),
                     (float)n->a.fill.value);
        break;
    case OP_DOT: run_dot(m, n, y); break;
    case OP_FLIP: run_flip(m, n, y); break;
    case OP_SLICE: run_slice(m, n, y); break;
    case OP_RNN: rnn_run(m, n); break;
    case OP_FOREACH: case OP_WHILE: case OP_COND: return cf_run(m, n);
    default:
        return rt_fail(KILN_ERR_UNSUPPORTED, "no kernel for this operator");
    }
    return KILN_OK;
}

/* KILN_RT_PROFILE=1: each node's time on stderr after every run (for finding slow nodes) */
static int profiling(void) {
    static int flag = -1;
    if (flag < 0) {
        const char *s = getenv("KILN_RT_PROFILE");
        flag = s && *s && *s != '0';
    }
    return flag;
}

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

kiln_status exec_model(kiln_model *m) {
    if (m->scratch_bytes && !kiln_scratch(2, (size_t)m->scratch_bytes))
        return rt_fail(KILN_ERR_NOMEM, "out of memory for %llu bytes of kernel scratch",
                       (unsigned long long)m->scratch_bytes);
    if (m->gemm_scratch && (!kiln_scratch(0, (size_t)2 << 20) || !kiln_scratch(1, (size_t)1 << 20)))
        return rt_fail(KILN_ERR_NOMEM, "out of memory for the GEMM's scratch");
    for (int i = 0; i < m->n_nodes; i++) {
        const rt_node *n = &m->nodes[i];
        if (n->skip) continue;
        int profile = profiling() && !m->is_body; /* a loop's nodes would flood stderr */
        double t0 = profile ? seconds() : 0.0;
        kiln_status st = run_node(m, n);
        if (profile)
            fprintf(stderr, "kiln-rt profile: %8.2f us  %s%s\n", (seconds() - t0) * 1e6,
                    node_desc(m, i), n->out != n->out0 ? " (fused)" : "");
        if (st) {
            rt_error_prefix("%s", node_desc(m, i));
            return st;
        }
    }
    return KILN_OK;
}
