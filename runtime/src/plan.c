/* plan.c: from shapes to a runnable plan.
 *
 * 1. Fusion, where a value has exactly one reader and is not an output:
 *      FullyConnected -> activation            one kiln_dense_f32 call with its act
 *      Convolution -> BatchNorm (axis 1)       BatchNorm folded into per-filter scale and shift
 *                  -> add(residual)            the kernel's residual argument (same shape, and
 *                                              the residual computed before the convolution)
 *                  -> activation               the kernel's act
 *    (the kernels' fused epilogues exist for exactly these: kiln_kernels.h).
 * 2. Liveness: each value that needs memory lives from its producer to its last reader; ops
 *    that only change the shape (reshape, flatten, identity ...) share their input's memory.
 * 3. Placement: values (and per-node workspaces) go into one arena, first fit by lifetime;
 *    memory is reused as soon as a value is dead. Everything is checked against the memory
 *    limit before anything is allocated.
 * Control-flow bodies are graphs of their own, laid out while their node's shapes are inferred
 * (cf_exec.c: plan_layout, nothing allocated); the root counts their memory (sub_bytes) in its
 * check, then plan_alloc allocates every arena, the bodies' included.
 */
#include "graph.h"
#include "cf.h"
#include "extra_kernels.h"
#include "conv_packed.h"

#include "../kernels/kiln_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int root_of(const kiln_model *m, int v) {
    int guard = m->n_values;
    while (m->values[v].alias >= 0 && guard-- > 0) v = m->values[v].alias;
    return v;
}

/* The only reader of value v, or -1 (several readers, or an output of the graph). */
static int sole_reader(const kiln_model *m, int v) {
    return m->values[v].uses == 1 ? m->consumer[v] : -1;
}

/* a parameter (its data known before any run), possibly through reshape-like aliases */
static int is_const(const kiln_model *m, int v) {
    return m->values[root_of(m, v)].kind == VAL_PARAM;
}

static const float *const_data(const kiln_model *m, int v) {
    return m->values[root_of(m, v)].data;
}

static int is_add(const rt_node *n) { return n->op == OP_BINARY && n->sub == B_ADD; }

static int kernel_act(const rt_node *n) {
    if (n->op == OP_UNARY && n->sub >= U_RELU && n->sub <= U_SOFTSIGN) return n->sub + 1;
    return KILN_ACT_NONE;
}

/* scale[f] = gamma / sqrt(var + eps), shift[f] = beta - mean * scale (+ the conv bias) */
static kiln_status fold_bn(kiln_model *m, rt_node *conv, const rt_node *bn) {
    int64_t f = conv->a.conv.num_filter;
    if (!conv->fold) {
        uint64_t bytes = (uint64_t)f * 2 * sizeof(float);
        conv->fold = (float *)malloc((size_t)bytes);
        if (!conv->fold) return rt_fail(KILN_ERR_NOMEM, "out of memory");
        m->fold_bytes += bytes;
    }
    const float *gamma = const_data(m, bn->in[1]), *beta = const_data(m, bn->in[2]);
    const float *mean = const_data(m, bn->in[3]), *var = const_data(m, bn->in[4]);
    const float *bias = conv->a.conv.no_bias ? NULL : const_data(m, conv->in[2]);
    for (int64_t i = 0; i < f; i++) {
        float inv = (float)(1.0 / sqrt((double)var[i] + bn->a.bn.eps));
        float s = bn->a.bn.fix_gamma ? inv : gamma[i] * inv;
        conv->fold[i] = s;
        conv->fold[f + i] = beta[i] - mean[i] * s + (bias ? bias[i] * s : 0.0f);
    }
    return KILN_OK;
}

static kiln_status fuse(kiln_model *m) {
    for (int i = 0; i < m->n_nodes; i++) {
        rt_node *n = &m->nodes[i];
        n->skip = n->op == OP_VAR || ops_is_alias(n);
        n->out = n->out0;
        n->act = KILN_ACT_NONE;
        n->residual = -1;
        n->ws_bytes = 0;
    }
    for (int i = 0; i < m->n_nodes; i++) {
        rt_node *n = &m->nodes[i];
        if ((n->op != OP_FC && n->op != OP_CONV) || n->skip) continue;
        int cur = n->out0, r;
        if (n->op == OP_CONV) {
            int b = sole_reader(m, cur);
            int64_t bn_axis = b >= 0 ? m->nodes[b].a.bn.axis : 0;
            if (bn_axis < 0) bn_axis += n->a.conv.nd + 2;
            int consts = b >= 0 && m->nodes[b].op == OP_BN &&
                         (n->a.conv.no_bias || is_const(m, n->in[2]));
            for (int k = 1; consts && k <= 4; k++) consts = is_const(m, m->nodes[b].in[k]);
            if (consts && m->nodes[b].in[0] == cur && bn_axis == 1) {
                kiln_status st = fold_bn(m, n, &m->nodes[b]);
                if (st) return st;
                m->nodes[b].skip = 1;
                cur = m->nodes[b].out0;
            } else if (n->fold) {
                free(n->fold); /* a previous plan folded: this one does not */
                n->fold = NULL;
                m->fold_bytes -= (uint64_t)n->a.conv.num_filter * 2 * sizeof(float);
            }
            int a = sole_reader(m, cur);
            if (a >= 0 && is_add(&m->nodes[a])) {
                rt_node *add = &m->nodes[a];
                int other = add->in[0] == cur ? add->in[1] : add->in[0];
                r = root_of(m, other);
                /* the residual must exist before the convolution runs: its producer (or the
                 * last node of the fused chain that writes it) comes earlier */
                if (other != cur && rt_shape_equal(&m->values[other].shape,
                                                   &m->values[cur].shape) &&
                    rt_shape_equal(&m->values[add->out0].shape, &m->values[cur].shape) &&
                    m->values[r].node < i) {
                    n->residual = other;
                    add->skip = 1;
                    cur = add->out0;
                }
            }
        }
        int a = sole_reader(m, cur);
        if (a >= 0 && kernel_act(&m->nodes[a]) != KILN_ACT_NONE) {
            n->act = kernel_act(&m->nodes[a]);
            m->nodes[a].skip = 1;
            cur = m->nodes[a].out0;
        }
        n->out = cur;
    }
    return KILN_OK;
}

/* Weights packed for conv_packed.c (all but depthwise convolutions), a folded BatchNorm's
 * scale multiplied in. Redone at every plan: cheap next to planning, and fusion may differ. */
static kiln_status pack_convolutions(kiln_model *m) {
    for (int i = 0; i < m->n_nodes; i++) {
        rt_node *n = &m->nodes[i];
        if (n->op != OP_CONV) continue;
        free(n->packed);
        m->fold_bytes -= n->packed_bytes;
        n->packed = NULL;
        n->packed_bytes = 0;
        if (n->skip) continue;
        const rt_shape *x = &m->values[n->in[0]].shape;
        int64_t c = x->d[1], g = n->a.conv.num_group, f = n->a.conv.num_filter;
        if (g == c && f == c && g > 1) continue; /* depthwise: kiln_conv2d_f32 */
        if (!is_const(m, n->in[1])) continue;   /* a computed weight: kiln_conv2d_f32 */
        int64_t kdim = (c / g) * n->a.conv.kernel[0] *
                       (n->a.conv.nd == 2 ? n->a.conv.kernel[1] : 1);
        uint64_t bytes = (uint64_t)rtk_conv_packed_size((long)f, (long)g, (long)kdim) * 4;
        if (m->params.bytes + m->fold_bytes + bytes > m->max_memory)
            return rt_fail(KILN_ERR_LIMIT, "%s: packed weights exceed the memory limit",
                           node_desc(m, i));
        void *p = NULL;
        if (posix_memalign(&p, RT_ALIGN, (size_t)bytes) != 0)
            return rt_fail(KILN_ERR_NOMEM, "out of memory packing weights");
        n->packed = (float *)p;
        n->packed_bytes = bytes;
        m->fold_bytes += bytes;
        rtk_conv_pack(const_data(m, n->in[1]), n->fold, (long)f, (long)g, (long)kdim,
                      n->packed);
    }
    return KILN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * workspaces and kernel scratch
 * ------------------------------------------------------------------------------------------- */

static void workspaces(kiln_model *m) {
    m->scratch_bytes = 0;
    m->gemm_scratch = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        rt_node *n = &m->nodes[i];
        if (n->skip) continue;
        const rt_shape *x = n->n_in ? &m->values[n->in[0]].shape : NULL;
        const rt_shape *y = &m->values[n->out].shape;
        uint64_t s = 0;
        switch (n->op) {
        case OP_REDUCE: /* double accumulators */
            n->ws_bytes = (uint64_t)rt_shape_count(y) * sizeof(double);
            break;
        case OP_CONV: {
            int64_t c = x->d[1], g = n->a.conv.num_group, k = n->a.conv.kernel[0], ohw = y->d[2];
            if (n->a.conv.nd == 2) { k *= n->a.conv.kernel[1]; ohw *= y->d[3]; }
            int pointwise = k == 1 && n->a.conv.stride[0] == 1 && n->a.conv.pad[0] == 0 &&
                            (n->a.conv.nd == 1 ||
                             (n->a.conv.stride[1] == 1 && n->a.conv.pad[1] == 0));
            int depthwise = g == c && n->a.conv.num_filter == c && g > 1;
            if (n->packed) { /* conv_packed.c's workspace, in the arena */
                kiln_conv2d geo;
                rt_conv_geometry(m, n, &geo);
                /* an upper bound in double first: hostile padding must not overflow a long */
                double cgd = (double)(c / g), hp = (double)(geo.h + 2 * geo.ph),
                       wp = (double)(geo.w + 2 * geo.pw);
                double fg = (double)(n->a.conv.num_filter / g), kd = cgd * (double)k;
                double bound = 4.0 * (cgd * hp * wp + (double)geo.kw * geo.dw +
                                      fg * ((double)geo.oh * wp + 64) + kd * ((double)ohw + 64)) +
                               8.0 * kd + 256.0;
                if (bound > (double)m->max_memory) {
                    m->scratch_bytes = UINT64_MAX / 4; /* reported by check_memory */
                    break;
                }
                n->ws_bytes = (uint64_t)rtk_conv_workspace_bytes(&geo);
            } else if (!depthwise) { /* kiln_conv2d_f32's own scratch and GEMM */
                s = pointwise ? 0 : (uint64_t)(c / g) * (uint64_t)k * (uint64_t)ohw * 4;
                m->gemm_scratch = 1;
            }
            break;
        }
        case OP_FC:
            if (rt_shape_count(y) / n->a.fc.num_hidden > 4) m->gemm_scratch = 1;
            break;
        case OP_BN:
            s = (uint64_t)m->values[n->in[1]].shape.d[0] * 16;
            break;
        case OP_SOFTMAX: {
            int64_t c = rt_shape_count(x);
            s = (uint64_t)c * 8; /* at most 2 floats per element of one row or slab */
            break;
        }
        case OP_DOT: m->gemm_scratch = 1; break;
        case OP_RNN:
            rnn_workspace(m, n);
            m->gemm_scratch = 1;
            break;
        case OP_FOREACH: case OP_WHILE: case OP_COND:
            cf_workspace(m, n);
            s = n->cf->scratch_bytes;
            if (n->cf->gemm_scratch) m->gemm_scratch = 1;
            break;
        default: break;
        }
        if (s > m->scratch_bytes) m->scratch_bytes = s;
    }
}

/* ---------------------------------------------------------------------------------------------
 * placement
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    uint64_t off, size;
    int last;     /* node index of the last reader */
} block;

typedef struct {
    block *b;
    int n;
    uint64_t end;
} arena_plan;

static void release_dead(arena_plan *a, int now) {
    int k = 0;
    for (int i = 0; i < a->n; i++)
        if (a->b[i].last >= now) a->b[k++] = a->b[i];
    a->n = k;
}

/* best fit among the gaps between live blocks (kept sorted by offset), else at the end */
static uint64_t place(arena_plan *a, uint64_t size, int last) {
    uint64_t best = UINT64_MAX, best_gap = UINT64_MAX, prev = 0;
    int at = a->n;
    for (int i = 0; i <= a->n; i++) {
        uint64_t start = i < a->n ? a->b[i].off : UINT64_MAX;
        if (start != UINT64_MAX && start >= prev && start - prev >= size &&
            start - prev < best_gap) {
            best_gap = start - prev;
            best = prev;
            at = i;
        }
        if (i < a->n) prev = a->b[i].off + a->b[i].size > prev ? a->b[i].off + a->b[i].size : prev;
    }
    if (best == UINT64_MAX) { best = prev; at = a->n; }
    memmove(&a->b[at + 1], &a->b[at], (size_t)(a->n - at) * sizeof(block));
    a->b[at].off = best;
    a->b[at].size = size;
    a->b[at].last = last;
    a->n++;
    if (best + size > a->end) a->end = best + size;
    return best;
}

/* outputs that get arena memory: the main one, and for control flow and RNN every one */
static int placed_outputs(const rt_node *n) { return ops_extra_outputs(n) ? n->n_out : 1; }

static kiln_status placement(kiln_model *m) {
    int nv = m->n_values;
    for (int v = 0; v < nv; v++) { m->values[v].first = -1; m->values[v].last = -1; }
    /* lifetimes of the values that need arena memory (roots of kind VAL_TEMP) */
    for (int i = 0; i < m->n_nodes; i++) {
        rt_node *n = &m->nodes[i];
        if (n->skip) continue;
        for (int k = 0; k < placed_outputs(n); k++) {
            rt_value *out = &m->values[k ? n->out0 + k : n->out];
            out->first = i;
            if (out->last < i) out->last = i;
        }
        for (int k = 0; k <= n->n_in; k++) {
            int v = k < n->n_in ? n->in[k] : n->residual;
            if (v < 0) continue;
            rt_value *r = &m->values[root_of(m, v)];
            if (r->last < i) r->last = i;
        }
    }
    for (int k = 0; k < m->n_heads; k++) m->values[root_of(m, m->heads[k])].last = m->n_nodes;
    arena_plan a = {NULL, 0, 0};
    a.b = (block *)malloc(((size_t)m->n_values + (size_t)m->n_nodes + 2) * sizeof(block));
    if (!a.b) return rt_fail(KILN_ERR_NOMEM, "out of memory planning");
    for (int i = 0; i < m->n_nodes; i++) {
        rt_node *n = &m->nodes[i];
        if (n->skip) continue;
        release_dead(&a, i);
        uint64_t bytes;
        for (int k = 0; k < placed_outputs(n); k++) {
            rt_value *out = &m->values[k ? n->out0 + k : n->out];
            rt_align_up((uint64_t)rt_shape_count(&out->shape) * 4, &bytes);
            out->off = place(&a, bytes, out->last);
        }
        if (n->ws_bytes) {
            rt_align_up(n->ws_bytes, &bytes);
            n->ws_off = place(&a, bytes, i);
        }
    }
    free(a.b);
    m->arena_bytes = a.end;
    return KILN_OK;
}

static kiln_status check_memory(const kiln_model *m) {
    uint64_t total = m->params.bytes, gemm = m->gemm_scratch ? ((uint64_t)5 << 20) : 0;
    if (rt_add_u64(total, m->input_bytes, &total) || rt_add_u64(total, m->arena_bytes, &total) ||
        rt_add_u64(total, m->fold_bytes, &total) || rt_add_u64(total, m->sub_bytes, &total) ||
        rt_add_u64(total, m->scratch_bytes + m->scratch_bytes / 4, &total) ||
        rt_add_u64(total, gemm, &total) || total > m->max_memory)
        return rt_fail(KILN_ERR_LIMIT, "running the model with these input shapes needs more "
                                       "than the memory limit (%llu bytes: parameters %llu, "
                                       "intermediate values %llu, control-flow bodies %llu, "
                                       "kernel scratch %llu)",
                       (unsigned long long)m->max_memory, (unsigned long long)m->params.bytes,
                       (unsigned long long)m->arena_bytes, (unsigned long long)m->sub_bytes,
                       (unsigned long long)(m->scratch_bytes + gemm));
    return KILN_OK;
}

static int has_bodies(const rt_node *n) { return n->cf != NULL; }

void plan_release(kiln_model *m) {
    free(m->arena);
    m->arena = NULL;
    m->arena_bytes = 0;
    m->sub_bytes = 0;
    m->planned = 0;
    m->ran = 0;
    for (int i = 0; i < m->n_nodes && m->nodes; i++)
        if (has_bodies(&m->nodes[i]))
            for (int k = 0; k < m->nodes[i].cf->n_bodies; k++)
                if (m->nodes[i].cf->body[k]) plan_release(m->nodes[i].cf->body[k]);
}

kiln_status plan_layout(kiln_model *m) {
    kiln_status st;
    plan_release(m);
    if (!m->consumer) {
        m->consumer = (int *)malloc((size_t)m->n_values * sizeof(int));
        if (!m->consumer) return rt_fail(KILN_ERR_NOMEM, "out of memory");
    }
    for (int v = 0; v < m->n_values; v++) m->consumer[v] = -1;
    for (int i = 0; i < m->n_nodes; i++)
        for (int k = 0; k < m->nodes[i].n_in; k++) m->consumer[m->nodes[i].in[k]] = i;
    /* infer_shapes lays out the bodies (cf_infer), adding their memory to sub_bytes */
    if ((st = infer_shapes(m)) || (st = fuse(m)) || (st = pack_convolutions(m))) return st;
    workspaces(m);
    if ((st = placement(m)) || (st = check_memory(m))) return st;
    return KILN_OK;
}

void plan_bind(kiln_model *m) {
    /* every value's address: arena values, inputs, then aliases (which point backwards) */
    for (int v = 0; v < m->n_values; v++) {
        rt_value *x = &m->values[v];
        if (x->kind == VAL_INPUT) x->data = m->input_data[x->input];
        else if (x->kind == VAL_TEMP && x->alias < 0)
            x->data = x->first >= 0 && m->arena ? (float *)((char *)m->arena + x->off) : NULL;
    }
    for (int v = 0; v < m->n_values; v++)
        if (m->values[v].alias >= 0) m->values[v].data = m->values[root_of(m, v)].data;
}

kiln_status plan_alloc(kiln_model *m) {
    kiln_status st;
    if (m->arena_bytes) {
        void *p = NULL;
        if (posix_memalign(&p, RT_ALIGN, (size_t)m->arena_bytes) != 0)
            return rt_fail(KILN_ERR_NOMEM, "out of memory for a %llu-byte arena",
                           (unsigned long long)m->arena_bytes);
        m->arena = p;
    }
    for (int i = 0; i < m->n_nodes; i++)
        if (has_bodies(&m->nodes[i]))
            for (int k = 0; k < m->nodes[i].cf->n_bodies; k++)
                if ((st = plan_alloc(m->nodes[i].cf->body[k]))) return st;
    plan_bind(m);
    m->planned = 1;
    return KILN_OK;
}

kiln_status plan_model(kiln_model *m) {
    kiln_status st = plan_layout(m);
    return st ? st : plan_alloc(m);
}
