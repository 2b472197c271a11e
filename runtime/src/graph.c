/* graph.c: the symbol file's JSON -> the runtime's nodes and values, fully checked.
 *
 * Checks, each with a message naming the node: the document shape (an object with a non-empty
 * 'nodes' list and 'heads'), every node's keys and types, known op names (ops.c) and their
 * attributes, input entries [node id, output index(, version)] that point backwards (nodes are
 * in topological order, which also rules out cycles) at outputs that exist, input counts,
 * duplicate variable names, 'arg_nodes' entries, heads. Parameters are bound by name; a
 * variable in a weight position that the params file lacks is reported as a missing
 * parameter, not silently turned into an input.
 */
#include "graph.h"
#include "cf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* In this thread's scratch slots 2 and 3, alternating, so that one message can name two
 * nodes (slots 0 and 1 stay free for rt_shorten in the same message). */
const char *node_desc(const kiln_model *m, int i) {
    static const int slots[2] = {2, 3};
    char *toggle = rt_scratch_text(1) + 200; /* a byte of slot 1 nobody else uses */
    char *b = rt_scratch_text(slots[*toggle & 1]);
    *toggle = (char)!(*toggle & 1);
    const rt_node *n = &m->nodes[i];
    char name[80], op[80];
    snprintf(b, 200, "node %d ('%s', %s)", i, rt_shorten_into(n->name, name),
             !n->opname || strcmp(n->opname, "null") == 0 ? "variable"
                                                           : rt_shorten_into(n->opname, op));
    return b;
}

static kiln_status gfail(const char *what) {
    return rt_fail(KILN_ERR_GRAPH, "%s", what);
}

static int is_int(const jval *v) { return v && v->type == J_NUM && v->is_int; }

/* [node, output(, version)] */
static kiln_status read_entry(const jdoc *doc, const jval *e, int n_nodes, int64_t *node,
                              int64_t *out) {
    if (!e || e->type != J_ARR || (e->count != 2 && e->count != 3))
        return rt_fail(KILN_ERR_GRAPH, "an entry is not [node id, output index, version]");
    const jval *a = json_at(doc, e->child), *b = json_at(doc, a->next);
    const jval *c = e->count == 3 ? json_at(doc, b->next) : NULL;
    if (!is_int(a) || !is_int(b) || (c && !is_int(c)))
        return rt_fail(KILN_ERR_GRAPH, "an entry [node id, output index, version] holds a value "
                                       "that is not an integer");
    *node = a->ival;
    *out = b->ival;
    if (*node < 0 || *node >= n_nodes)
        return rt_fail(KILN_ERR_GRAPH, "node id %lld is out of range (the graph has %d nodes)",
                       (long long)*node, n_nodes);
    if (*out < 0) return rt_fail(KILN_ERR_GRAPH, "negative output index %lld", (long long)*out);
    return KILN_OK;
}

static int value_of(const kiln_model *m, int64_t node, int64_t out) {
    return m->nodes[node].out0 + (int)out;
}

static kiln_status parse_node(kiln_model *m, const jdoc *doc, const jval *raw, int idx,
                              int *in_used) {
    rt_node *n = &m->nodes[idx];
    kiln_status st;
    if (raw->type != J_OBJ)
        return rt_fail(KILN_ERR_GRAPH, "node %d is a %s, not an object", idx,
                       json_type_name(raw->type));
    const jval *op = json_get(doc, raw, "op"), *name = json_get(doc, raw, "name");
    if (!op || op->type != J_STR || op->str_len == 0)
        return rt_fail(KILN_ERR_GRAPH, "node %d: missing or non-string 'op'", idx);
    if (!name || name->type != J_STR)
        return rt_fail(KILN_ERR_GRAPH, "node %d: missing or non-string 'name'", idx);
    n->name = name->str;
    n->opname = op->str;
    const jval *attrs = json_get(doc, raw, "attrs");
    if (!attrs) attrs = json_get(doc, raw, "attr");
    if (!attrs) attrs = json_get(doc, raw, "param");
    if (attrs) {
        if (attrs->type != J_OBJ)
            return rt_fail(KILN_ERR_GRAPH, "%s: 'attrs' must be an object", node_desc(m, idx));
        for (int32_t k = attrs->child; k >= 0; k = doc->v[k].next)
            if (doc->v[k].type != J_STR)
                return rt_fail(KILN_ERR_GRAPH, "%s: attribute '%s' is a %s, not a string",
                               node_desc(m, idx), rt_shorten(doc->v[k].key, 0),
                               json_type_name(doc->v[k].type));
    }
    const jval *inputs = json_get(doc, raw, "inputs");
    if (inputs && inputs->type != J_ARR)
        return rt_fail(KILN_ERR_GRAPH, "%s: 'inputs' must be a list", node_desc(m, idx));
    int n_in = inputs ? (int)inputs->count : 0;
    if (strcmp(op->str, "null") == 0) {
        n->op = OP_VAR;
        if (n_in)
            return rt_fail(KILN_ERR_GRAPH, "%s: a variable has no inputs", node_desc(m, idx));
    } else {
        if (ops_lookup(op->str, &n->op, &n->sub) != 0)
            return rt_fail(KILN_ERR_UNSUPPORTED, "%s: unknown operator '%s' (the runtime's "
                                                 "operators are listed in kiln_runtime.h)",
                           node_desc(m, idx), rt_shorten(op->str, 0));
        if (n_in > RT_MAX_INPUTS_PER_NODE)
            return rt_fail(KILN_ERR_LIMIT, "%s: %d inputs", node_desc(m, idx), n_in);
        n->n_in = n_in;
        if ((st = ops_parse(n, doc, attrs))) {
            rt_error_prefix("%s", node_desc(m, idx));
            return st;
        }
        int lo, hi;
        ops_arity(n, &lo, &hi);
        if (n_in < lo || n_in > hi)
            return rt_fail(KILN_ERR_GRAPH, "%s takes %d%s inputs, not %d", node_desc(m, idx), lo,
                           hi > lo ? " or more" : "", n_in);
    }
    n->n_out = n->op == OP_VAR ? 1 : ops_num_outputs(n);
    n->in = m->in_pool + *in_used;
    int k = 0;
    for (int32_t e = inputs ? inputs->child : -1; e >= 0; e = doc->v[e].next, k++) {
        int64_t src, out;
        if ((st = read_entry(doc, &doc->v[e], m->n_nodes, &src, &out))) {
            rt_error_prefix("%s input %d", node_desc(m, idx), k);
            return st;
        }
        if (src >= idx)
            return rt_fail(KILN_ERR_GRAPH, "%s input %d reads node %lld, which does not come "
                                           "before it (a cycle, or nodes out of topological "
                                           "order)",
                           node_desc(m, idx), k, (long long)src);
        if (out >= m->nodes[src].n_out)
            return rt_fail(KILN_ERR_GRAPH, "%s input %d reads output %lld of %s, which has %d",
                           node_desc(m, idx), k, (long long)out, node_desc(m, (int)src),
                           m->nodes[src].n_out);
        n->in[k] = value_of(m, src, out);
    }
    *in_used += n_in;
    if (n->cf) {
        if ((st = cf_build(m, idx, doc, raw))) rt_error_prefix("%s", node_desc(m, idx));
        return st;
    }
    if (json_get(doc, raw, "subgraphs"))
        return rt_fail(KILN_ERR_GRAPH, "%s has 'subgraphs', which only _foreach, _while_loop and "
                                       "_cond take",
                       node_desc(m, idx));
    return KILN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * variable names must be unique: sort (heap sort, no recursion) and compare neighbours
 * ------------------------------------------------------------------------------------------- */

static void vsift(const kiln_model *m, int *a, int i, int n) {
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && strcmp(m->nodes[a[c]].name, m->nodes[a[c + 1]].name) < 0) c++;
        if (strcmp(m->nodes[a[i]].name, m->nodes[a[c]].name) >= 0) return;
        int t = a[i]; a[i] = a[c]; a[c] = t;
        i = c;
    }
}

static kiln_status unique_variables(const kiln_model *m) {
    int n = 0;
    for (int i = 0; i < m->n_nodes; i++) n += m->nodes[i].op == OP_VAR;
    int *a = (int *)malloc((size_t)(n ? n : 1) * sizeof(int));
    if (!a) return rt_fail(KILN_ERR_NOMEM, "out of memory");
    n = 0;
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].op == OP_VAR) a[n++] = i;
    for (int i = n / 2; i-- > 0;) vsift(m, a, i, n);
    for (int end = n; end-- > 1;) {
        int t = a[0]; a[0] = a[end]; a[end] = t;
        vsift(m, a, 0, end);
    }
    for (int i = 1; i < n; i++)
        if (strcmp(m->nodes[a[i - 1]].name, m->nodes[a[i]].name) == 0) {
            kiln_status st = rt_fail(KILN_ERR_GRAPH, "two variables are named '%s' (nodes %d and "
                                                     "%d)",
                                     rt_shorten(m->nodes[a[i]].name, 0), a[i - 1], a[i]);
            free(a);
            return st;
        }
    free(a);
    return KILN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * parameters, inputs, heads
 * ------------------------------------------------------------------------------------------- */

static kiln_status bind_variables(kiln_model *m) {
    int n_inputs = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        rt_node *n = &m->nodes[i];
        if (n->op != OP_VAR) continue;
        rt_value *v = &m->values[n->out0];
        /* a body's variables are all inputs: its node feeds them */
        const rt_param *p = m->is_body ? NULL : params_find(&m->params, n->name);
        if (p) {
            if (!p->present)
                return rt_fail(KILN_ERR_PARAMS, "parameter '%s' is a record that holds no array",
                               rt_shorten(n->name, 0));
            if (rt_shape_count(&p->shape) < 0)
                return rt_fail(KILN_ERR_PARAMS, "parameter '%s' has an empty or impossible shape",
                               rt_shorten(n->name, 0));
            v->kind = VAL_PARAM;
            v->param = p;
            v->shape = p->shape;
            v->data = p->data;
        } else {
            v->kind = VAL_INPUT;
            v->input = n_inputs++;
        }
    }
    /* a variable in a weight position must be a parameter */
    for (int i = 0; i < m->n_nodes; i++) {
        const rt_node *n = &m->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            const rt_value *v = &m->values[n->in[k]];
            if (v->kind == VAL_INPUT && !m->is_body && ops_param_input(n, k))
                return rt_fail(KILN_ERR_PARAMS, "%s: input %d, '%s', is a parameter the params "
                                                "file does not hold",
                               node_desc(m, i), k, rt_shorten(m->nodes[v->node].name, 0));
        }
    }
    m->n_inputs = n_inputs;
    m->inputs = (int *)calloc((size_t)(n_inputs ? n_inputs : 1), sizeof(int));
    m->input_data = (float **)calloc((size_t)(n_inputs ? n_inputs : 1), sizeof(float *));
    m->input_shape = (rt_shape *)calloc((size_t)(n_inputs ? n_inputs : 1), sizeof(rt_shape));
    m->input_set = (int *)calloc((size_t)(n_inputs ? n_inputs : 1), sizeof(int));
    if (!m->inputs || !m->input_data || !m->input_shape || !m->input_set)
        return rt_fail(KILN_ERR_NOMEM, "out of memory");
    for (int i = 0; i < m->n_nodes; i++) {
        const rt_node *n = &m->nodes[i];
        if (n->op == OP_VAR && m->values[n->out0].kind == VAL_INPUT)
            m->inputs[m->values[n->out0].input] = n->out0;
    }
    return KILN_OK;
}

static kiln_status read_heads(kiln_model *m, const jdoc *doc, const jval *heads) {
    if (!heads || heads->type != J_ARR)
        return gfail("'heads' must be a list of [node id, output index, version]");
    if (heads->count == 0) return gfail("'heads' is empty: the graph has no outputs");
    m->n_heads = (int)heads->count;
    m->heads = (int *)calloc(heads->count, sizeof(int));
    if (!m->heads) return rt_fail(KILN_ERR_NOMEM, "out of memory");
    int k = 0;
    for (int32_t e = heads->child; e >= 0; e = doc->v[e].next, k++) {
        int64_t src, out;
        kiln_status st = read_entry(doc, &doc->v[e], m->n_nodes, &src, &out);
        if (st) {
            rt_error_prefix("'heads' entry %d", k);
            return st;
        }
        if (out >= m->nodes[src].n_out)
            return rt_fail(KILN_ERR_GRAPH, "'heads' entry %d reads output %lld of %s, which has "
                                           "%d",
                           k, (long long)out, node_desc(m, (int)src), m->nodes[src].n_out);
        m->heads[k] = value_of(m, src, out);
    }
    return KILN_OK;
}

static void mark_hidden(kiln_model *m) {
    for (int i = 0; i < m->n_nodes; i++) {
        const rt_node *n = &m->nodes[i];
        for (int k = 1; k < n->n_out; k++) /* BN: running mean and var */
            m->values[n->out0 + k].hidden = n->op != OP_BN && !ops_extra_outputs(n);
    }
}

static kiln_status check_uses(kiln_model *m) {
    for (int i = 0; i < m->n_nodes; i++) {
        const rt_node *n = &m->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            rt_value *v = &m->values[n->in[k]];
            if (v->hidden)
                return rt_fail(KILN_ERR_UNSUPPORTED, "%s reads a hidden output (a mask or a "
                                                     "workspace) of %s, which the runtime does "
                                                     "not compute",
                               node_desc(m, i), node_desc(m, v->node));
            v->uses++;
        }
    }
    for (int k = 0; k < m->n_heads; k++) {
        rt_value *v = &m->values[m->heads[k]];
        if (v->hidden)
            return rt_fail(KILN_ERR_UNSUPPORTED, "output %d is a hidden output (a mask or a "
                                                 "workspace) of %s",
                           k, node_desc(m, v->node));
        v->uses++;
    }
    return KILN_OK;
}

static kiln_status check_graph_attrs(const kiln_model *m, const jdoc *doc, const jval *root) {
    const jval *attrs = json_get(doc, root, "attrs");
    (void)m;
    if (attrs && attrs->type != J_OBJ) return gfail("'attrs' must be an object");
    const jval *np = json_get(doc, attrs, "is_np_shape");
    if (np) {
        const jval *a = json_at(doc, np->child);
        const jval *b = a ? json_at(doc, a->next) : NULL;
        if (np->type != J_ARR || np->count != 2 || !is_int(b))
            return gfail("graph attribute is_np_shape must be [\"int\", 0 or 1]");
    }
    const jval *arg_nodes = json_get(doc, root, "arg_nodes");
    if (arg_nodes) {
        if (arg_nodes->type != J_ARR) return gfail("'arg_nodes' must be a list of node ids");
        for (int32_t e = arg_nodes->child; e >= 0; e = doc->v[e].next) {
            const jval *v = &doc->v[e];
            if (!is_int(v) || v->ival < 0 || v->ival >= m->n_nodes ||
                m->nodes[v->ival].op != OP_VAR)
                return rt_fail(KILN_ERR_GRAPH, "'arg_nodes' lists %s, which is not a variable "
                                               "node",
                               is_int(v) ? "an id" : "a value that is not an id");
        }
    }
    return KILN_OK;
}

kiln_status graph_build(kiln_model *m, const jdoc *doc) {
    const jval *root = json_at(doc, 0);
    if (!root || root->type != J_OBJ)
        return rt_fail(KILN_ERR_GRAPH, "a symbol file holds a JSON object, not a %s",
                       root ? json_type_name(root->type) : "nothing");
    return graph_build_at(m, doc, root);
}

kiln_status graph_build_at(kiln_model *m, const jdoc *doc, const jval *root) {
    kiln_status st;
    if (root->type != J_OBJ)
        return rt_fail(KILN_ERR_GRAPH, "a graph is a JSON object, not a %s",
                       json_type_name(root->type));
    const jval *nodes = json_get(doc, root, "nodes");
    if (!nodes) return gfail("missing key 'nodes' (a symbol file has 'nodes', 'arg_nodes', "
                             "'heads' and 'attrs')");
    if (!json_get(doc, root, "heads")) return gfail("missing key 'heads'");
    if (nodes->type != J_ARR || nodes->count == 0) return gfail("'nodes' must be a non-empty list");
    if (nodes->count > RT_MAX_NODES)
        return rt_fail(KILN_ERR_LIMIT, "%u nodes is more than the runtime reads (%d)",
                       nodes->count, RT_MAX_NODES);
    m->n_nodes = (int)nodes->count;
    /* input lists: at most the number of entries in the whole document */
    uint64_t total_in = 0;
    for (int32_t e = nodes->child; e >= 0; e = doc->v[e].next) {
        const jval *in = json_get(doc, &doc->v[e], "inputs");
        if (in && in->type == J_ARR) total_in += in->count;
    }
    uint64_t bytes = (uint64_t)m->n_nodes * sizeof(rt_node) + total_in * sizeof(int);
    if (bytes > m->max_memory) return rt_fail(KILN_ERR_LIMIT, "the graph exceeds the memory limit");
    m->nodes = (rt_node *)calloc((size_t)m->n_nodes, sizeof(rt_node));
    m->in_pool = (int *)calloc((size_t)(total_in ? total_in : 1), sizeof(int));
    if (!m->nodes || !m->in_pool) return rt_fail(KILN_ERR_NOMEM, "out of memory");
    int idx = 0, in_used = 0, n_values = 0;
    for (int32_t e = nodes->child; e >= 0; e = doc->v[e].next, idx++) {
        m->nodes[idx].out0 = n_values;
        if ((st = parse_node(m, doc, &doc->v[e], idx, &in_used))) return st;
        n_values += m->nodes[idx].n_out;
        if (n_values > RT_MAX_NODES * 4)
            return rt_fail(KILN_ERR_LIMIT, "the graph has more than %d values", RT_MAX_NODES * 4);
    }
    if ((st = check_graph_attrs(m, doc, root))) return st;
    if ((st = unique_variables(m))) return st;
    m->n_values = n_values;
    m->values = (rt_value *)calloc((size_t)n_values, sizeof(rt_value));
    if (!m->values) return rt_fail(KILN_ERR_NOMEM, "out of memory");
    for (int i = 0; i < m->n_nodes; i++)
        for (int k = 0; k < m->nodes[i].n_out; k++) {
            rt_value *v = &m->values[m->nodes[i].out0 + k];
            v->node = i;
            v->kind = VAL_TEMP;
            v->alias = -1;
        }
    mark_hidden(m);
    if ((st = bind_variables(m))) return st;
    if ((st = read_heads(m, doc, json_get(doc, root, "heads")))) return st;
    return check_uses(m);
}
