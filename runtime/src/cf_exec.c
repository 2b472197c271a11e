/* cf_exec.c: control-flow nodes planned and run (cf.h describes them).
 *
 * Planning (from infer.c, while the enclosing graph's shapes are inferred): each body's input
 * shapes come from the node's inputs (a foreach's data without its first axis), then the body
 * is laid out like any graph (plan_layout: shapes, fusion, its own arena), its memory added to
 * the enclosing graph's. The node's outputs are ordinary values of the enclosing graph: stacked
 * step outputs, final states. Its workspace holds a second buffer per state, so that a step
 * reads the current states from one set of buffers and writes the new ones into the other
 * (states may be swapped or copied into each other by the body).
 *
 * Running: the body's inputs are pointed at the node's memory (plan_bind), the body runs, and
 * its outputs are copied into their row of the stacked outputs and into the state buffers.
 * Bodies never write their inputs, so captured values (parameters, the data) are read in place.
 */
#include "cf.h"

#include <string.h>

#define NODE_IN(i) (&m->values[n->in[i]])

static kiln_status shape_fail(const char *fmt, const rt_shape *a, const rt_shape *b, int k) {
    char sa[160], sb[160];
    rt_shape_str(a, sa, sizeof sa);
    rt_shape_str(b, sb, sizeof sb);
    return rt_fail(KILN_ERR_SHAPE, fmt, k, sa, sb);
}

static const rt_shape *head_shape(const kiln_model *b, int k) {
    return &b->values[b->heads[k]].shape;
}

static void set_body_input(kiln_model *b, int i, const rt_shape *s) {
    b->input_shape[i] = *s;
    b->input_set[i] = 1;
}

/* the body's shapes and layout, once its inputs' shapes are set */
static kiln_status layout_body(rt_node *n, int k) {
    kiln_model *b = n->cf->body[k];
    kiln_status st = plan_layout(b);
    if (st) {
        rt_error_prefix("subgraph %d (%s)", k, cf_body_name(n, k));
        return st;
    }
    rt_cf *cf = n->cf;
    uint64_t bytes = b->arena_bytes + b->fold_bytes; /* each at most the memory limit */
    if (rt_add_u64(bytes, b->sub_bytes, &bytes) ||
        rt_add_u64(cf->body_bytes, bytes, &cf->body_bytes))
        return rt_fail(KILN_ERR_LIMIT, "the bodies' memory overflows");
    if (b->scratch_bytes > cf->scratch_bytes) cf->scratch_bytes = b->scratch_bytes;
    if (b->gemm_scratch) cf->gemm_scratch = 1;
    return KILN_OK;
}

/* (rows, *row) as an output shape */
static kiln_status stacked(rt_shape *y, int64_t rows, const rt_shape *row) {
    if (row->ndim + 1 > RT_MAX_DIMS)
        return rt_fail(KILN_ERR_UNSUPPORTED, "a stacked output of more than %d dimensions",
                       RT_MAX_DIMS);
    y->ndim = row->ndim + 1;
    y->d[0] = rows;
    for (int i = 0; i < row->ndim; i++) y->d[i + 1] = row->d[i];
    return KILN_OK;
}

/* a condition's value must be one element */
static kiln_status one_value(const rt_node *n, int k) {
    const rt_shape *s = head_shape(n->cf->body[k], 0);
    if (rt_shape_count(s) == 1) return KILN_OK;
    char b[160];
    return rt_fail(KILN_ERR_SHAPE, "subgraph %d (%s) gives shape %s; a condition is one value", k,
                   cf_body_name(n, k), rt_shape_str(s, b, sizeof b));
}

static kiln_status infer_foreach(kiln_model *m, rt_node *n) {
    rt_cf *cf = n->cf;
    kiln_model *b = cf->body[0];
    int nd = cf->n_locs[CF_DATA], ns = cf->n_locs[CF_STATE];
    const rt_shape *first = &NODE_IN(0)->shape;
    kiln_status st;
    for (int i = 0; i < nd; i++) {
        const rt_shape *x = &NODE_IN(i)->shape;
        if (x->ndim < 1 || x->d[0] != first->d[0])
            return shape_fail("data input %d has shape %s; the loop runs over the first axis "
                              "of %s",
                              x, first, i);
        rt_shape slice;
        slice.ndim = x->ndim - 1;
        for (int k = 1; k < x->ndim; k++) slice.d[k - 1] = x->d[k];
        set_body_input(b, cf->locs[CF_DATA][i], &slice);
    }
    for (int j = 0; j < ns; j++)
        set_body_input(b, cf->locs[CF_STATE][j], &NODE_IN(nd + j)->shape);
    for (int i = 0; i < cf->n_locs[CF_REST]; i++)
        set_body_input(b, cf->locs[CF_REST][i], &NODE_IN(nd + ns + i)->shape);
    if ((st = layout_body(n, 0))) return st;
    for (int j = 0; j < ns; j++) {
        const rt_shape *init = &NODE_IN(nd + j)->shape;
        const rt_shape *next = head_shape(b, (int)cf->num_out_data + j);
        if (!rt_shape_equal(init, next))
            return shape_fail("the body's new state %d has shape %s, the state %s: a loop state "
                              "keeps its shape from step to step",
                              next, init, j);
    }
    for (int k = 0; k < cf->num_out_data; k++)
        if ((st = stacked(&m->values[n->out0 + k].shape, first->d[0], head_shape(b, k))))
            return st;
    for (int j = 0; j < ns; j++)
        m->values[n->out0 + cf->num_out_data + j].shape = NODE_IN(nd + j)->shape;
    return KILN_OK;
}

static kiln_status infer_while(kiln_model *m, rt_node *n) {
    rt_cf *cf = n->cf;
    kiln_status st;
    for (int k = 0; k < 2; k++) {
        int which = k == 0 ? CF_COND_IN : CF_FUNC_IN;
        for (int p = 0; p < cf->n_locs[which]; p++)
            set_body_input(cf->body[k], p, &NODE_IN(cf->locs[which][p])->shape);
        if ((st = layout_body(n, k))) return st;
    }
    if ((st = one_value(n, 0))) return st;
    const kiln_model *func = cf->body[1];
    for (int v = 0; v < cf->n_state; v++) {
        const rt_shape *init = &NODE_IN(cf->var_input[v])->shape;
        const rt_shape *next = head_shape(func, (int)cf->num_out_data + v);
        if (!rt_shape_equal(init, next))
            return shape_fail("func's new loop variable %d has shape %s, the variable %s: a loop "
                              "variable keeps its shape from step to step",
                              next, init, v);
        m->values[n->out0 + cf->num_out_data + v].shape = *init;
    }
    for (int k = 0; k < cf->num_out_data; k++)
        if ((st = stacked(&m->values[n->out0 + k].shape, cf->max_iterations,
                          head_shape(func, k))))
            return st;
    return KILN_OK;
}

static kiln_status infer_cond(kiln_model *m, rt_node *n) {
    rt_cf *cf = n->cf;
    kiln_status st;
    for (int k = 0; k < 3; k++) {
        for (int p = 0; p < cf->n_locs[k]; p++)
            set_body_input(cf->body[k], p, &NODE_IN(cf->locs[k][p])->shape);
        if ((st = layout_body(n, k))) return st;
    }
    if ((st = one_value(n, 0))) return st;
    for (int k = 0; k < cf->num_outputs; k++) {
        const rt_shape *a = head_shape(cf->body[1], k), *b = head_shape(cf->body[2], k);
        if (!rt_shape_equal(a, b))
            return shape_fail("output %d: then gives shape %s, else %s (both branches must "
                              "give the same shapes)",
                              a, b, k);
        m->values[n->out0 + k].shape = *a;
    }
    return KILN_OK;
}

kiln_status cf_infer(kiln_model *m, rt_node *n) {
    rt_cf *cf = n->cf;
    kiln_status st;
    cf->body_bytes = 0;
    cf->scratch_bytes = 0;
    cf->gemm_scratch = 0;
    st = n->op == OP_FOREACH ? infer_foreach(m, n)
         : n->op == OP_WHILE ? infer_while(m, n)
                             : infer_cond(m, n);
    if (st) return st;
    if (rt_add_u64(m->sub_bytes, cf->body_bytes, &m->sub_bytes))
        return rt_fail(KILN_ERR_LIMIT, "the bodies' memory overflows");
    return KILN_OK;
}

/* the states' second buffers */
static const rt_shape *state_shape(const kiln_model *m, const rt_node *n, int j) {
    return &m->values[n->out0 + n->cf->num_out_data + j].shape;
}

void cf_workspace(kiln_model *m, rt_node *n) {
    rt_cf *cf = n->cf;
    uint64_t total = 0, bytes;
    for (int j = 0; j < cf->n_state; j++) {
        cf->state_off[j] = total;
        /* each state is an output already placed: well below 2^62 bytes */
        rt_align_up((uint64_t)rt_shape_count(state_shape(m, n, j)) * 4, &bytes);
        total += bytes;
    }
    n->ws_bytes = total;
}

/* ---------------------------------------------------------------------------------------------
 * running
 * ------------------------------------------------------------------------------------------- */

static size_t bytes_of(const rt_shape *s) { return (size_t)rt_shape_count(s) * sizeof(float); }

/* run body k, its inputs already in body->input_data */
static kiln_status run_body(kiln_model *m, const rt_node *n, int k, long step) {
    kiln_model *root = m->root;
    if (++root->loop_steps > root->max_loop_steps)
        return rt_fail(KILN_ERR_LIMIT, "more than %llu control-flow steps in one run (the limit "
                                       "on loop steps and branches: "
                                       "kiln_model_set_max_loop_steps, KILN_MAX_LOOP_STEPS)",
                       (unsigned long long)root->max_loop_steps);
    kiln_model *b = n->cf->body[k];
    plan_bind(b);
    kiln_status st = exec_model(b);
    if (st) {
        if (step >= 0) rt_error_prefix("subgraph %d (%s), step %ld", k, cf_body_name(n, k), step);
        else rt_error_prefix("subgraph %d (%s)", k, cf_body_name(n, k));
    }
    return st;
}

/* bodies read their inputs and never write them: the const is dropped only to store them */
static void feed(kiln_model *b, int i, const float *data) { b->input_data[i] = (float *)data; }

static const float *head_data(const kiln_model *b, int k) { return b->values[b->heads[k]].data; }

/* the new states (body outputs first.. first + n_state - 1) into the buffer set that does not
 * hold the current ones: the node's outputs (to_outputs) or its workspace */
static void store_states(kiln_model *m, const rt_node *n, const kiln_model *b, int first,
                         int to_outputs) {
    rt_cf *cf = n->cf;
    for (int j = 0; j < cf->n_state; j++) {
        float *dst = to_outputs ? m->values[n->out0 + cf->num_out_data + j].data
                                : (float *)((char *)m->arena + n->ws_off + cf->state_off[j]);
        memcpy(dst, head_data(b, first + j), bytes_of(state_shape(m, n, j)));
        cf->cur[j] = dst;
    }
}

/* the final states into the node's outputs, where they are not already */
static void final_states(kiln_model *m, const rt_node *n) {
    rt_cf *cf = n->cf;
    for (int j = 0; j < cf->n_state; j++) {
        float *dst = m->values[n->out0 + cf->num_out_data + j].data;
        if (cf->cur[j] != dst) memcpy(dst, cf->cur[j], bytes_of(state_shape(m, n, j)));
    }
}

/* step outputs 0 .. num_out_data - 1 into row `row` of the stacked outputs */
static void store_rows(kiln_model *m, const rt_node *n, const kiln_model *b, long row) {
    for (int k = 0; k < n->cf->num_out_data; k++) {
        size_t size = bytes_of(head_shape(b, k));
        memcpy((char *)m->values[n->out0 + k].data + (size_t)row * size, head_data(b, k), size);
    }
}

static kiln_status run_foreach(kiln_model *m, const rt_node *n) {
    rt_cf *cf = n->cf;
    kiln_model *b = cf->body[0];
    int nd = cf->n_locs[CF_DATA], ns = cf->n_state;
    long steps = (long)NODE_IN(0)->shape.d[0];
    for (int j = 0; j < ns; j++) cf->cur[j] = NODE_IN(nd + j)->data;
    for (int i = 0; i < cf->n_locs[CF_REST]; i++)
        feed(b, cf->locs[CF_REST][i], NODE_IN(nd + ns + i)->data);
    for (long t = 0; t < steps; t++) {
        for (int i = 0; i < nd; i++) {
            const rt_value *x = NODE_IN(i);
            long slice = (long)(rt_shape_count(&x->shape) / x->shape.d[0]);
            feed(b, cf->locs[CF_DATA][i], x->data + t * slice);
        }
        for (int j = 0; j < ns; j++) feed(b, cf->locs[CF_STATE][j], cf->cur[j]);
        kiln_status st = run_body(m, n, 0, t);
        if (st) return st;
        store_rows(m, n, b, t);
        /* alternate buffer sets so that the last step writes the node's outputs */
        store_states(m, n, b, (int)cf->num_out_data, (steps - 1 - t) % 2 == 0);
    }
    return KILN_OK;
}

/* the current value of node input i: a loop variable's, or the input itself */
static const float *while_value(const kiln_model *m, const rt_node *n, int i) {
    int v = n->cf->var_of_input[i];
    return v >= 0 ? n->cf->cur[v] : NODE_IN(i)->data;
}

static kiln_status run_while(kiln_model *m, const rt_node *n) {
    rt_cf *cf = n->cf;
    kiln_model *cond = cf->body[0], *func = cf->body[1];
    kiln_status st;
    for (int v = 0; v < cf->n_state; v++) cf->cur[v] = NODE_IN(cf->var_input[v])->data;
    for (int k = 0; k < cf->num_out_data; k++) {
        const rt_value *y = &m->values[n->out0 + k];
        memset(y->data, 0, bytes_of(&y->shape)); /* rows past the last step */
    }
    for (long step = 0; step < (long)cf->max_iterations; step++) {
        for (int p = 0; p < cf->n_locs[CF_COND_IN]; p++)
            feed(cond, p, while_value(m, n, cf->locs[CF_COND_IN][p]));
        if ((st = run_body(m, n, 0, step))) return st;
        if (head_data(cond, 0)[0] == 0.0f) break; /* NaN counts as true, as in Python */
        for (int p = 0; p < cf->n_locs[CF_FUNC_IN]; p++)
            feed(func, p, while_value(m, n, cf->locs[CF_FUNC_IN][p]));
        if ((st = run_body(m, n, 1, step))) return st;
        store_rows(m, n, func, step);
        store_states(m, n, func, (int)cf->num_out_data, step % 2);
    }
    final_states(m, n);
    return KILN_OK;
}

static kiln_status run_cond(kiln_model *m, const rt_node *n) {
    rt_cf *cf = n->cf;
    kiln_status st;
    for (int p = 0; p < cf->n_locs[CF_PRED_IN]; p++)
        feed(cf->body[0], p, NODE_IN(cf->locs[CF_PRED_IN][p])->data);
    if ((st = run_body(m, n, 0, -1))) return st;
    int k = head_data(cf->body[0], 0)[0] != 0.0f ? 1 : 2;
    kiln_model *b = cf->body[k];
    for (int p = 0; p < cf->n_locs[k]; p++) feed(b, p, NODE_IN(cf->locs[k][p])->data);
    if ((st = run_body(m, n, k, -1))) return st;
    for (int i = 0; i < cf->num_outputs; i++) {
        const rt_value *y = &m->values[n->out0 + i];
        memcpy(y->data, head_data(b, i), bytes_of(&y->shape));
    }
    return KILN_OK;
}

kiln_status cf_run(kiln_model *m, const rt_node *n) {
    if (n->op == OP_FOREACH) return run_foreach(m, n);
    if (n->op == OP_WHILE) return run_while(m, n);
    return run_cond(m, n);
}
