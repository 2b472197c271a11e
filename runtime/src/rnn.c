/* rnn.c: MXNet's fused RNN operator (what gluon.rnn.RNN/LSTM/GRU export), inference.
 *
 * Inputs: data (T, N, C), the flat parameter vector, the initial state (L*D, N, H) and for LSTM
 * the initial cell state (same shape); L layers, D directions (2 when bidirectional), H units.
 * Outputs: (T, N, D*H), and with state_outputs the final states (L*D, N, H) (LSTM: and cells).
 *
 * The parameter vector (MXNet's and cuDNN's layout): for each layer, for each direction, the
 * input weights (G*H, C_l) then the recurrent weights (G*H, H), C_l = C for layer 0 and D*H
 * after; then, in the same order, the input biases (G*H) and the recurrent biases (G*H). G gates:
 *
 *   lstm      [i, f, c, o]  c' = sig(f)*c + sig(i)*tanh(c~);  h' = sig(o)*tanh(c')
 *   gru       [r, z, n]     n = tanh(x_n + sig(r)*(W_hn h + b_hn));  h' = (1-z)*n + z*h
 *   rnn_tanh, rnn_relu      h' = act(W_ih x + b_ih + W_hh h + b_hh)
 *
 * Per layer and direction: one GEMM projects every step's input at once (kiln_dense_f32), then
 * each step adds h @ W_hh^T (one kiln_sgemm) and applies the gates in place. The reverse
 * direction runs from the last step and writes its outputs at their own time step. Dropout
 * between layers (p) does nothing in inference.
 */
#include "cf.h"
#include "extra_kernels.h"

#include "../kernels/kiln_kernels.h"

#include <string.h>

#define X(i) (&m->values[n->in[i]].shape)

static const int GATES[] = {1, 1, 4, 3}; /* enum rt_rnn_mode */
static const char *const MODES[] = {"rnn_relu", "rnn_tanh", "lstm", "gru"};

typedef struct {
    long t, n, c, h, g, layers, dirs;
} rnn_dims;

static rnn_dims dims_of(const kiln_model *m, const rt_node *n) {
    const rt_shape *x = X(0);
    rnn_dims d;
    d.t = (long)x->d[0];
    d.n = (long)x->d[1];
    d.c = (long)x->d[2];
    d.h = (long)n->a.rnn.state_size;
    d.g = GATES[n->a.rnn.mode];
    d.layers = n->a.rnn.layers;
    d.dirs = n->a.rnn.dirs;
    return d;
}

/* a * b + c, or -1 on overflow */
static int mad(uint64_t a, uint64_t b, uint64_t c, uint64_t *out) {
    return rt_mul_u64(a, b, out) || rt_add_u64(*out, c, out) ? -1 : 0;
}

/* The parameter vector's length; -1 on overflow. */
static int param_count(const rnn_dims *d, uint64_t *out) {
    uint64_t total = 0, gh, per;
    if (rt_mul_u64((uint64_t)d->g, (uint64_t)d->h, &gh)) return -1;
    for (long l = 0; l < d->layers; l++) {
        uint64_t in = l ? (uint64_t)(d->dirs * d->h) : (uint64_t)d->c;
        if (rt_add_u64(in, (uint64_t)d->h, &per) || mad(gh, per, 2 * gh, &per) ||
            mad(per, (uint64_t)d->dirs, total, &total))
            return -1; /* per direction: G*H*(C_l + H) weights and 2*G*H biases */
    }
    *out = total;
    return 0;
}

/* Workspace offsets (floats, each a multiple of 16): summed biases (G*H), the input projection
 * (T*N*G*H), the previous layer's output (T*N*D*H, two layers or more), h and c (N*H each), the
 * recurrent product (N*G*H, GRU). Returns the total in bytes, or 0 on overflow. */
enum { WS_BIAS, WS_PROJ, WS_LAYER, WS_H, WS_C, WS_HH, WS_N };

static uint64_t ws_layout(const rnn_dims *d, int mode, uint64_t off[WS_N]) {
    uint64_t tn, gh, nh, size[WS_N], total = 0;
    if (rt_mul_u64((uint64_t)d->t, (uint64_t)d->n, &tn) ||
        rt_mul_u64((uint64_t)d->g, (uint64_t)d->h, &gh) ||
        rt_mul_u64((uint64_t)d->n, (uint64_t)d->h, &nh))
        return 0;
    size[WS_BIAS] = gh;
    size[WS_H] = size[WS_C] = nh;
    size[WS_HH] = mode == RNN_GRU ? (uint64_t)d->g * nh : 0;
    if (rt_mul_u64(tn, gh, &size[WS_PROJ])) return 0;
    size[WS_LAYER] = 0;
    if (d->layers > 1 && rt_mul_u64(tn, (uint64_t)(d->dirs * d->h), &size[WS_LAYER]))
        return 0;
    for (int i = 0; i < WS_N; i++) {
        uint64_t bytes;
        off[i] = total / 4;
        if (rt_mul_u64(size[i], 4, &bytes) || rt_align_up(bytes, &bytes) ||
            rt_add_u64(total, bytes, &total))
            return 0;
    }
    return total;
}

kiln_status rnn_infer(kiln_model *m, rt_node *n) {
    const rt_shape *x = X(0);
    char sa[160], sb[160];
    if (x->ndim != 3)
        return rt_fail(KILN_ERR_SHAPE, "RNN takes data of shape (T, N, C) (time steps, batch, "
                                       "features), not %s",
                       rt_shape_str(x, sa, sizeof sa));
    rnn_dims d = dims_of(m, n);
    uint64_t want, off[WS_N];
    if (param_count(&d, &want) != 0 || want > (uint64_t)RT_MAX_DIM)
        return rt_fail(KILN_ERR_LIMIT, "RNN: the parameter count overflows");
    if ((uint64_t)rt_shape_count(X(1)) != want)
        return rt_fail(KILN_ERR_SHAPE, "RNN: the parameter vector '%s' has %lld values; a "
                                       "%ld-layer %s%s of %ld units over %ld features needs %llu",
                       rt_shorten(m->nodes[m->values[n->in[1]].node].name, 0),
                       (long long)rt_shape_count(X(1)), d.layers,
                       d.dirs == 2 ? "bidirectional " : "", MODES[n->a.rnn.mode], d.h, d.c,
                       (unsigned long long)want);
    rt_shape state;
    state.ndim = 3;
    state.d[0] = (int64_t)(d.layers * d.dirs);
    state.d[1] = d.n;
    state.d[2] = d.h;
    static const char *const what[] = {"", "", "initial state", "initial cell state"};
    for (int i = 2; i < n->n_in; i++)
        if (!rt_shape_equal(X(i), &state))
            return rt_fail(KILN_ERR_SHAPE, "RNN: the %s has shape %s; (layers * directions, "
                                           "batch, units) is %s",
                           what[i], rt_shape_str(X(i), sa, sizeof sa),
                           rt_shape_str(&state, sb, sizeof sb));
    uint64_t ws = ws_layout(&d, n->a.rnn.mode, off);
    if (ws == 0 || ws > m->max_memory)
        return rt_fail(KILN_ERR_LIMIT, "RNN: its workspace exceeds the memory limit");
    rt_shape *y = &m->values[n->out0].shape;
    y->ndim = 3;
    y->d[0] = d.t;
    y->d[1] = d.n;
    y->d[2] = d.dirs * d.h; /* h <= 2^40 */
    for (int k = 1; k < n->n_out; k++) m->values[n->out0 + k].shape = state;
    return KILN_OK;
}

void rnn_workspace(kiln_model *m, rt_node *n) {
    rnn_dims d = dims_of(m, n);
    uint64_t off[WS_N];
    n->ws_bytes = ws_layout(&d, n->a.rnn.mode, off); /* checked by rnn_infer */
}

/* ---------------------------------------------------------------------------------------------
 * one layer, one direction
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    int mode, reverse;
    rnn_dims d;
    long in_size;              /* features of this layer's input */
    const float *x;            /* (T, N, in_size) */
    const float *w_ih, *w_hh, *b_ih, *b_hh;
    float *y;                  /* (T, N, D*H): this direction writes columns col..col+H-1 */
    long col;
    float *h, *c;              /* the state, (N, H), initialised by the caller */
    float *bias, *proj, *hh;   /* workspace */
} rnn_dir;

static void lstm_gates(const rnn_dir *r, float *g) {
    long n = r->d.n, h = r->d.h;
    for (long i = 0; i < n; i++) {
        float *row = g + i * 4 * h, *c = r->c + i * h;
        rtk_act_f32(KILN_ACT_SIGMOID, row, row, 2 * h);         /* i, f */
        rtk_act_f32(KILN_ACT_TANH, row + 2 * h, row + 2 * h, h); /* c~ */
        rtk_act_f32(KILN_ACT_SIGMOID, row + 3 * h, row + 3 * h, h); /* o */
        for (long j = 0; j < h; j++) c[j] = row[h + j] * c[j] + row[j] * row[2 * h + j];
    }
    rtk_act_f32(KILN_ACT_TANH, r->c, r->h, n * h);
    for (long i = 0; i < n; i++)
        for (long j = 0; j < h; j++) r->h[i * h + j] *= g[i * 4 * h + 3 * h + j];
}

static void gru_gates(const rnn_dir *r, float *g) {
    long n = r->d.n, h = r->d.h;
    kiln_dense_f32(r->h, r->w_hh, r->b_hh, r->hh, n, 3 * h, h, KILN_ACT_NONE);
    for (long i = 0; i < n; i++) {
        float *row = g + i * 3 * h, *hh = r->hh + i * 3 * h, *state = r->h + i * h;
        for (long j = 0; j < 2 * h; j++) row[j] += hh[j];
        rtk_act_f32(KILN_ACT_SIGMOID, row, row, 2 * h); /* r, z */
        for (long j = 0; j < h; j++) row[2 * h + j] += row[j] * hh[2 * h + j];
        rtk_act_f32(KILN_ACT_TANH, row + 2 * h, row + 2 * h, h); /* n */
        for (long j = 0; j < h; j++) {
            float z = row[h + j];
            state[j] = (1.0f - z) * row[2 * h + j] + z * state[j];
        }
    }
}

static void run_direction(const rnn_dir *r) {
    long t_len = r->d.t, n = r->d.n, h = r->d.h, gh = r->d.g * h, stride = r->d.dirs * h;
    const float *bias = r->b_ih;
    if (r->mode != RNN_GRU) { /* both biases once, in the projection */
        for (long j = 0; j < gh; j++) r->bias[j] = r->b_ih[j] + r->b_hh[j];
        bias = r->bias;
    }
    kiln_dense_f32(r->x, r->w_ih, bias, r->proj, t_len * n, gh, r->in_size, KILN_ACT_NONE);
    for (long s = 0; s < t_len; s++) {
        long t = r->reverse ? t_len - 1 - s : s;
        float *g = r->proj + t * n * gh;
        if (r->mode == RNN_GRU) {
            gru_gates(r, g);
        } else {
            kiln_sgemm(0, 1, n, gh, h, 1.0f, r->h, h, r->w_hh, h, 1.0f, g, gh);
            if (r->mode == RNN_LSTM) lstm_gates(r, g);
            else rtk_act_f32(r->mode == RNN_RELU ? KILN_ACT_RELU : KILN_ACT_TANH, g, r->h, n * h);
        }
        for (long i = 0; i < n; i++)
            memcpy(r->y + (t * n + i) * stride + r->col, r->h + i * h, (size_t)h * sizeof(float));
    }
}

void rnn_run(kiln_model *m, const rt_node *n) {
    rnn_dims d = dims_of(m, n);
    int mode = n->a.rnn.mode, lstm = mode == RNN_LSTM;
    uint64_t off[WS_N];
    ws_layout(&d, mode, off);
    float *ws = (float *)((char *)m->arena + n->ws_off);
    float *y = m->values[n->out0].data;
    float *hy = n->n_out > 1 ? m->values[n->out0 + 1].data : NULL;
    float *cy = n->n_out > 2 ? m->values[n->out0 + 2].data : NULL;
    const float *flat = m->values[n->in[1]].data, *h0 = m->values[n->in[2]].data;
    const float *c0 = lstm ? m->values[n->in[3]].data : NULL;
    long gh = d.g * d.h, nh = d.n * d.h, weights = 0;
    for (long l = 0; l < d.layers; l++) /* the biases follow every weight */
        weights += d.dirs * gh * ((l ? d.dirs * d.h : d.c) + d.h);
    const float *x = m->values[n->in[0]].data, *w = flat, *b = flat + weights;
    rnn_dir r;
    r.mode = mode;
    r.d = d;
    r.h = ws + off[WS_H];
    r.c = ws + off[WS_C];
    r.bias = ws + off[WS_BIAS];
    r.proj = ws + off[WS_PROJ];
    r.hh = ws + off[WS_HH];
    for (long l = 0; l < d.layers; l++) {
        /* layers alternate between y and the workspace so that the last one writes y */
        float *out = (d.layers - 1 - l) % 2 == 0 ? y : ws + off[WS_LAYER];
        r.in_size = l ? d.dirs * d.h : d.c;
        r.x = x;
        r.y = out;
        for (long k = 0; k < d.dirs; k++) {
            long idx = l * d.dirs + k;
            r.reverse = k == 1;
            r.col = k * d.h;
            r.w_ih = w;
            r.w_hh = w + gh * r.in_size;
            w += gh * (r.in_size + d.h);
            r.b_ih = b;
            r.b_hh = b + gh;
            b += 2 * gh;
            memcpy(r.h, h0 + idx * nh, (size_t)nh * sizeof(float));
            if (lstm) memcpy(r.c, c0 + idx * nh, (size_t)nh * sizeof(float));
            run_direction(&r);
            if (hy) memcpy(hy + idx * nh, r.h, (size_t)nh * sizeof(float));
            if (cy) memcpy(cy + idx * nh, r.c, (size_t)nh * sizeof(float));
        }
        x = out;
    }
}
