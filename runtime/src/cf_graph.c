/* cf_graph.c: control-flow nodes from the symbol file: their attributes, their bodies (each a
 * graph built by graph.c, nested at most RT_MAX_SUBGRAPH_DEPTH deep) and every *_locs entry
 * checked against the bodies' inputs and outputs and the node's inputs. cf.h describes the
 * nodes.
 */
#include "cf.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * attributes
 * ------------------------------------------------------------------------------------------- */

static const char *attr_text(const jdoc *doc, const jval *attrs, const char *key) {
    const jval *v = json_get(doc, attrs, key);
    return v ? v->str : NULL; /* graph.c checked that every value is a string */
}

static kiln_status req_int(const jdoc *doc, const jval *attrs, const char *key, int64_t lo,
                           int64_t hi, int64_t *out) {
    const char *s = attr_text(doc, attrs, key);
    if (!s) return rt_fail(KILN_ERR_ATTRIBUTE, "missing attribute '%s'", key);
    if (attr_int(s, out) != 0) {
        rt_error_prefix("attribute %s", key);
        return KILN_ERR_ATTRIBUTE;
    }
    if (*out < lo || *out > hi)
        return rt_fail(KILN_ERR_ATTRIBUTE, "attribute %s=%lld is outside [%lld, %lld]", key,
                       (long long)*out, (long long)lo, (long long)hi);
    return KILN_OK;
}

/* A list of node-input or body-input positions: "[0, 2]", "(1,)", "[]". */
static kiln_status req_locs(const jdoc *doc, const jval *attrs, const char *key, int *n,
                            int **out) {
    const char *s = attr_text(doc, attrs, key);
    if (!s) return rt_fail(KILN_ERR_ATTRIBUTE, "missing attribute '%s'", key);
    int64_t *vals = (int64_t *)malloc(RT_MAX_INPUTS_PER_NODE * sizeof(int64_t));
    if (!vals) return rt_fail(KILN_ERR_NOMEM, "out of memory");
    int count = 0, none = 0;
    kiln_status st = KILN_OK;
    if (attr_ints(s, vals, RT_MAX_INPUTS_PER_NODE, &count, &none, 0) != 0) {
        rt_error_prefix("attribute %s", key);
        st = KILN_ERR_ATTRIBUTE;
    } else if (none) {
        st = rt_fail(KILN_ERR_ATTRIBUTE, "attribute %s is None, not a list", key);
    }
    for (int i = 0; !st && i < count; i++)
        if (vals[i] < 0 || vals[i] >= RT_MAX_INPUTS_PER_NODE)
            st = rt_fail(KILN_ERR_ATTRIBUTE, "attribute %s: position %lld is out of range", key,
                         (long long)vals[i]);
    if (!st) {
        *out = (int *)malloc((size_t)(count ? count : 1) * sizeof(int));
        if (!*out) st = rt_fail(KILN_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; !st && i < count; i++) (*out)[i] = (int)vals[i];
    if (!st) *n = count;
    free(vals);
    return st;
}

static const char *const LOC_KEYS[3][3] = {
    {"in_data_locs", "in_state_locs", "remain_locs"},          /* _foreach */
    {"cond_input_locs", "func_input_locs", "func_var_locs"},   /* _while_loop */
    {"cond_input_locs", "then_input_locs", "else_input_locs"}, /* _cond */
};

static int kind_of(const rt_node *n) { return n->op - OP_FOREACH; }

kiln_status cf_parse(rt_node *n, const jdoc *doc, const jval *attrs) {
    rt_cf *cf = (rt_cf *)calloc(1, sizeof *cf);
    if (!cf) return rt_fail(KILN_ERR_NOMEM, "out of memory");
    n->cf = cf; /* freed with the node, whatever happens below */
    int kind = kind_of(n);
    cf->n_bodies = kind + 1; /* foreach 1, while_loop 2, cond 3 */
    kiln_status st;
    if ((st = req_int(doc, attrs, "num_args", 1, RT_MAX_INPUTS_PER_NODE + 3, &cf->num_args)) ||
        (st = req_int(doc, attrs, "num_outputs", 1, RT_MAX_INPUTS_PER_NODE, &cf->num_outputs)))
        return st;
    if (n->op != OP_COND &&
        (st = req_int(doc, attrs, "num_out_data", 0, cf->num_outputs, &cf->num_out_data)))
        return st;
    if (n->op == OP_WHILE &&
        (st = req_int(doc, attrs, "max_iterations", 1, RT_MAX_DIM, &cf->max_iterations)))
        return st;
    for (int k = 0; k < 3; k++)
        if ((st = req_locs(doc, attrs, LOC_KEYS[kind][k], &cf->n_locs[k], &cf->locs[k])))
            return st;
    return KILN_OK;
}

const char *cf_body_name(const rt_node *n, int k) {
    static const char *const names[3][3] = {{"body", "", ""}, {"cond", "func", ""},
                                            {"pred", "then", "else"}};
    return k >= 0 && k < 3 ? names[kind_of(n)][k] : "";
}

void cf_free(rt_node *n) {
    rt_cf *cf = n->cf;
    if (!cf) return;
    for (int k = 0; k < 3; k++) {
        kiln_model_free(cf->body[k]);
        free(cf->locs[k]);
    }
    free(cf->var_input);
    free(cf->var_of_input);
    free((void *)cf->cur);
    free(cf->state_off);
    free(cf);
    n->cf = NULL;
}

/* ---------------------------------------------------------------------------------------------
 * the locs against the bodies and the node's inputs
 * ------------------------------------------------------------------------------------------- */

static kiln_status loc_fail(const rt_node *n, int k, const char *what) {
    return rt_fail(KILN_ERR_GRAPH, "attribute %s: %s", LOC_KEYS[kind_of(n)][k], what);
}

/* locs k lists one node input per input of body b, each in range */
static kiln_status node_inputs_for(const rt_node *n, int k, int b) {
    const rt_cf *cf = n->cf;
    const kiln_model *body = cf->body[b];
    if (cf->n_locs[k] != body->n_inputs)
        return rt_fail(KILN_ERR_GRAPH, "attribute %s has %d entries, but subgraph %d (%s) has "
                                       "%d inputs",
                       LOC_KEYS[kind_of(n)][k], cf->n_locs[k], b, cf_body_name(n, b),
                       body->n_inputs);
    for (int p = 0; p < cf->n_locs[k]; p++)
        if (cf->locs[k][p] >= n->n_in)
            return rt_fail(KILN_ERR_GRAPH, "attribute %s: entry %d names input %d of a node "
                                           "with %d inputs",
                           LOC_KEYS[kind_of(n)][k], p, cf->locs[k][p], n->n_in);
    return KILN_OK;
}

static kiln_status outputs_of(const rt_node *n, int b, int64_t want) {
    const kiln_model *body = n->cf->body[b];
    if (body->n_heads != want)
        return rt_fail(KILN_ERR_GRAPH, "subgraph %d (%s) has %d outputs; the node needs %lld",
                       b, cf_body_name(n, b), body->n_heads, (long long)want);
    return KILN_OK;
}

static kiln_status check_foreach(const rt_node *n) {
    rt_cf *cf = n->cf;
    const kiln_model *body = cf->body[0];
    int nd = cf->n_locs[CF_DATA], ns = cf->n_locs[CF_STATE], nr = cf->n_locs[CF_REST];
    if (nd < 1) return loc_fail(n, CF_DATA, "empty: a foreach iterates over at least one input");
    if (nd + ns + nr != n->n_in)
        return rt_fail(KILN_ERR_GRAPH, "the locs name %d data inputs, %d states and %d others, "
                                       "but the node has %d inputs",
                       nd, ns, nr, n->n_in);
    if (body->n_inputs != n->n_in)
        return rt_fail(KILN_ERR_GRAPH, "the body has %d inputs; the node has %d", body->n_inputs,
                       n->n_in);
    /* every body input fed by exactly one node input */
    char *seen = (char *)calloc((size_t)n->n_in, 1);
    if (!seen) return rt_fail(KILN_ERR_NOMEM, "out of memory");
    kiln_status st = KILN_OK;
    for (int k = 0; k < 3 && !st; k++)
        for (int i = 0; i < cf->n_locs[k] && !st; i++) {
            int p = cf->locs[k][i];
            if (p >= n->n_in) st = loc_fail(n, k, "a position past the body's inputs");
            else if (seen[p]++) st = loc_fail(n, k, "a body input fed twice");
        }
    free(seen);
    if (st) return st;
    if (cf->num_outputs - cf->num_out_data != ns)
        return rt_fail(KILN_ERR_GRAPH, "num_outputs %lld - num_out_data %lld is not the number "
                                       "of states (%d)",
                       (long long)cf->num_outputs, (long long)cf->num_out_data, ns);
    cf->n_state = ns;
    return outputs_of(n, 0, cf->num_outputs);
}

static kiln_status check_while(const rt_node *n) {
    rt_cf *cf = n->cf;
    kiln_status st;
    if ((st = node_inputs_for(n, CF_COND_IN, 0)) || (st = node_inputs_for(n, CF_FUNC_IN, 1)) ||
        (st = outputs_of(n, 0, 1)) || (st = outputs_of(n, 1, cf->num_outputs)))
        return st;
    int nv = cf->n_locs[CF_VAR];
    if (cf->num_outputs - cf->num_out_data != nv)
        return rt_fail(KILN_ERR_GRAPH, "num_outputs %lld - num_out_data %lld is not the number "
                                       "of loop variables (%d)",
                       (long long)cf->num_outputs, (long long)cf->num_out_data, nv);
    cf->n_state = nv;
    cf->var_input = (int *)malloc((size_t)(nv ? nv : 1) * sizeof(int));
    cf->var_of_input = (int *)malloc((size_t)n->n_in * sizeof(int));
    if (!cf->var_input || !cf->var_of_input) return rt_fail(KILN_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n->n_in; i++) cf->var_of_input[i] = -1;
    for (int v = 0; v < nv; v++) {
        int p = cf->locs[CF_VAR][v];
        if (p >= cf->n_locs[CF_FUNC_IN])
            return rt_fail(KILN_ERR_GRAPH, "attribute func_var_locs: entry %d names func input "
                                           "%d; func has %d",
                           v, p, cf->n_locs[CF_FUNC_IN]);
        int in = cf->locs[CF_FUNC_IN][p];
        if (cf->var_of_input[in] >= 0)
            return rt_fail(KILN_ERR_GRAPH, "loop variables %d and %d are the same node input "
                                           "(%d)",
                           cf->var_of_input[in], v, in);
        cf->var_input[v] = in;
        cf->var_of_input[in] = v;
    }
    return KILN_OK;
}

static kiln_status check_cond(const rt_node *n) {
    const rt_cf *cf = n->cf;
    kiln_status st;
    if ((st = node_inputs_for(n, CF_PRED_IN, 0)) || (st = node_inputs_for(n, CF_THEN_IN, 1)) ||
        (st = node_inputs_for(n, CF_ELSE_IN, 2)) || (st = outputs_of(n, 0, 1)) ||
        (st = outputs_of(n, 1, cf->num_outputs)) || (st = outputs_of(n, 2, cf->num_outputs)))
        return st;
    return KILN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * the bodies
 * ------------------------------------------------------------------------------------------- */

static kiln_status build_body(kiln_model *m, rt_node *n, int k, const jdoc *doc,
                              const jval *graph) {
    kiln_model *b = (kiln_model *)calloc(1, sizeof *b);
    if (!b) return rt_fail(KILN_ERR_NOMEM, "out of memory");
    n->cf->body[k] = b; /* freed with the node */
    b->is_body = 1;
    b->depth = m->depth + 1;
    b->root = m->root;
    b->max_memory = m->max_memory;
    kiln_status st = graph_build_at(b, doc, graph);
    if (st) rt_error_prefix("subgraph %d (%s)", k, cf_body_name(n, k));
    return st;
}

kiln_status cf_build(kiln_model *m, int idx, const jdoc *doc, const jval *raw) {
    rt_node *n = &m->nodes[idx];
    rt_cf *cf = n->cf;
    const jval *subs = json_get(doc, raw, "subgraphs");
    if (!subs || subs->type != J_ARR)
        return rt_fail(KILN_ERR_GRAPH, "missing 'subgraphs' (a list of %d graph%s)", cf->n_bodies,
                       cf->n_bodies > 1 ? "s" : "");
    if ((int)subs->count != cf->n_bodies)
        return rt_fail(KILN_ERR_GRAPH, "%u subgraphs, but %s takes %d", subs->count, n->opname,
                       cf->n_bodies);
    if (m->depth + 1 > RT_MAX_SUBGRAPH_DEPTH)
        return rt_fail(KILN_ERR_LIMIT, "control flow nested more than %d deep",
                       RT_MAX_SUBGRAPH_DEPTH);
    int64_t want_args = n->n_in + cf->n_bodies;
    if (cf->num_args != want_args)
        return rt_fail(KILN_ERR_GRAPH, "num_args=%lld, but the node has %d inputs (num_args is "
                                       "the inputs + %d)",
                       (long long)cf->num_args, n->n_in, cf->n_bodies);
    int k = 0;
    kiln_status st;
    for (int32_t e = subs->child; e >= 0; e = doc->v[e].next, k++)
        if ((st = build_body(m, n, k, doc, &doc->v[e]))) return st;
    st = n->op == OP_FOREACH ? check_foreach(n) : n->op == OP_WHILE ? check_while(n)
                                                                    : check_cond(n);
    if (st) return st;
    cf->cur = (const float **)calloc((size_t)(cf->n_state ? cf->n_state : 1), sizeof(float *));
    cf->state_off = (uint64_t *)calloc((size_t)(cf->n_state ? cf->n_state : 1),
                                       sizeof(uint64_t));
    if (!cf->cur || !cf->state_off) return rt_fail(KILN_ERR_NOMEM, "out of memory");
    return KILN_OK;
}
