/* model.c: the public API (kiln_runtime.h): loading, inputs, running, outputs. */
#include "graph.h"
#include "cf.h"

#include "../kernels/kiln_kernels.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t env_max_loop_steps(void) {
    const char *s = getenv("KILN_MAX_LOOP_STEPS");
    if (!s || !*s) return RT_DEFAULT_MAX_LOOP_STEPS;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    return v == 0 || *end ? RT_DEFAULT_MAX_LOOP_STEPS : (uint64_t)v;
}

static uint64_t env_max_memory(void) {
    const char *s = getenv("KILN_MAX_MEMORY");
    if (!s || !*s) return RT_DEFAULT_MAX_MEMORY;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t mult = 1;
    if (*end == 'k' || *end == 'K') mult = (uint64_t)1 << 10;
    else if (*end == 'm' || *end == 'M') mult = (uint64_t)1 << 20;
    else if (*end == 'g' || *end == 'G') mult = (uint64_t)1 << 30;
    uint64_t out;
    if (v == 0 || rt_mul_u64(v, mult, &out)) return RT_DEFAULT_MAX_MEMORY;
    return out;
}

void kiln_model_free(kiln_model *m) {
    if (!m) return;
    params_free(&m->params);
    /* a body's inputs point at its node's memory */
    for (int i = 0; i < m->n_inputs && m->input_data && !m->is_body; i++)
        free(m->input_data[i]);
    for (int i = 0; i < m->n_nodes && m->nodes; i++) {
        free(m->nodes[i].fold);
        free(m->nodes[i].packed);
        cf_free(&m->nodes[i]);
    }
    free(m->input_data);
    free(m->input_shape);
    free(m->input_set);
    free(m->inputs);
    free(m->heads);
    free(m->nodes);
    free(m->values);
    free(m->in_pool);
    free(m->consumer);
    free(m->strings);
    free(m->arena);
    free(m);
}

kiln_status kiln_model_load_memory_opts(const char *json, size_t json_len, const void *params,
                                        size_t params_len, const kiln_options *opts,
                                        kiln_model **out) {
    kiln_status st;
    if (!out) return rt_fail(KILN_ERR_ARGUMENT, "kiln_model_load: out is NULL");
    *out = NULL;
    if (!json) return rt_fail(KILN_ERR_ARGUMENT, "kiln_model_load: no JSON text");
    if (!params && params_len) return rt_fail(KILN_ERR_ARGUMENT, "kiln_model_load: params is NULL");
    kiln_model *m = (kiln_model *)calloc(1, sizeof *m);
    if (!m) return rt_fail(KILN_ERR_NOMEM, "out of memory");
    m->max_memory = opts && opts->max_memory ? opts->max_memory : env_max_memory();
    m->root = m;
    m->max_loop_steps = env_max_loop_steps();
    if (opts && opts->num_threads > 0) kiln_set_num_threads(opts->num_threads);
    if (params_len || params) {
        if ((st = params_read((const uint8_t *)params, params_len, m->max_memory, &m->params))) {
            rt_error_prefix("params file");
            kiln_model_free(m);
            return st;
        }
        if (m->params.count > 0 && !m->params.names) {
            kiln_model_free(m);
            return rt_fail(KILN_ERR_PARAMS, "params file: the arrays have no names (a list, not "
                                            "a dict), so they cannot be matched to the graph");
        }
    }
    jdoc doc;
    uint64_t room = m->max_memory > m->params.bytes ? m->max_memory - m->params.bytes : 0;
    if ((st = json_parse(json, json_len, room, &doc))) {
        rt_error_prefix("symbol file");
        kiln_model_free(m);
        return st;
    }
    st = graph_build(m, &doc);
    m->strings = doc.strbuf; /* node names point into it */
    doc.strbuf = NULL;
    json_free(&doc);
    if (st) {
        rt_error_prefix("symbol file");
        kiln_model_free(m);
        return st;
    }
    rt_clear_error();
    *out = m;
    return KILN_OK;
}

kiln_status kiln_model_load_memory(const char *json, size_t json_len, const void *params,
                                   size_t params_len, kiln_model **out) {
    return kiln_model_load_memory_opts(json, json_len, params, params_len, NULL, out);
}

/* The whole file, or an error; at most `cap` bytes. */
static kiln_status read_file(const char *path, uint64_t cap, char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    if (!path) return rt_fail(KILN_ERR_ARGUMENT, "no file name");
    FILE *f = fopen(path, "rb");
    if (!f) return rt_fail(KILN_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    size_t size = 0, room = 1 << 16;
    char *data = (char *)malloc(room);
    kiln_status st = data ? KILN_OK : rt_fail(KILN_ERR_NOMEM, "%s: out of memory", path);
    while (st == KILN_OK) {
        if (size == room) {
            char *bigger = (uint64_t)room > cap ? NULL : (char *)realloc(data, room * 2);
            if (!bigger) {
                st = (uint64_t)room > cap
                         ? rt_fail(KILN_ERR_LIMIT, "%s is larger than the memory limit", path)
                         : rt_fail(KILN_ERR_NOMEM, "%s: out of memory reading it", path);
                break;
            }
            data = bigger;
            room *= 2;
        }
        size_t got = fread(data + size, 1, room - size, f);
        if (got == 0) {
            if (ferror(f)) st = rt_fail(KILN_ERR_IO, "%s: read error (%s)", path, strerror(errno));
            break;
        }
        size += got;
    }
    fclose(f);
    if (st) {
        free(data);
        return st;
    }
    *buf = data;
    *len = size;
    return KILN_OK;
}

kiln_status kiln_model_load_files_opts(const char *symbol_path, const char *params_path,
                                       const kiln_options *opts, kiln_model **out) {
    if (!out) return rt_fail(KILN_ERR_ARGUMENT, "kiln_model_load_files: out is NULL");
    *out = NULL;
    uint64_t cap = opts && opts->max_memory ? opts->max_memory : env_max_memory();
    char *json = NULL, *params = NULL;
    size_t jlen = 0, plen = 0;
    kiln_status st = read_file(symbol_path, cap, &json, &jlen);
    if (!st && params_path) st = read_file(params_path, cap, &params, &plen);
    if (!st) {
        st = kiln_model_load_memory_opts(json, jlen, params, plen, opts, out);
        if (st) rt_error_prefix("%s", rt_shorten(st == KILN_ERR_PARAMS ? params_path : symbol_path,
                                                 0));
    }
    free(json);
    free(params);
    return st;
}

kiln_status kiln_model_load_files(const char *symbol_path, const char *params_path,
                                  kiln_model **out) {
    return kiln_model_load_files_opts(symbol_path, params_path, NULL, out);
}

/* ---------------------------------------------------------------------------------------------
 * inputs and outputs
 * ------------------------------------------------------------------------------------------- */

int kiln_model_num_inputs(const kiln_model *m) { return m ? m->n_inputs : 0; }
int kiln_model_num_outputs(const kiln_model *m) { return m ? m->n_heads : 0; }

const char *kiln_model_input_name(const kiln_model *m, int i) {
    if (!m || i < 0 || i >= m->n_inputs) return NULL;
    return m->nodes[m->values[m->inputs[i]].node].name;
}

const char *kiln_model_output_name(const kiln_model *m, int i) {
    if (!m || i < 0 || i >= m->n_heads) return NULL;
    return m->nodes[m->values[m->heads[i]].node].name;
}

int kiln_model_input_index(const kiln_model *m, const char *name) {
    if (!m || !name) return -1;
    for (int i = 0; i < m->n_inputs; i++)
        if (strcmp(kiln_model_input_name(m, i), name) == 0) return i;
    return -1;
}

kiln_status kiln_model_input_shape(const kiln_model *m, int i, const int64_t **dims, int *ndim) {
    if (!m || !dims || !ndim) return rt_fail(KILN_ERR_ARGUMENT, "a NULL argument");
    if (i < 0 || i >= m->n_inputs)
        return rt_fail(KILN_ERR_ARGUMENT, "input %d does not exist (the model has %d)", i,
                       m->n_inputs);
    *dims = m->input_set[i] ? m->input_shape[i].d : NULL;
    *ndim = m->input_set[i] ? m->input_shape[i].ndim : 0;
    return KILN_OK;
}

kiln_status kiln_model_set_input(kiln_model *m, int i, const float *data, const int64_t *dims,
                                 int ndim) {
    if (!m || !data || (ndim > 0 && !dims)) return rt_fail(KILN_ERR_ARGUMENT, "a NULL argument");
    if (i < 0 || i >= m->n_inputs)
        return rt_fail(KILN_ERR_ARGUMENT, "input %d does not exist (the model has %d)", i,
                       m->n_inputs);
    if (ndim < 0 || ndim > RT_MAX_DIMS)
        return rt_fail(KILN_ERR_ARGUMENT, "an input of %d dimensions (0 to %d)", ndim,
                       RT_MAX_DIMS);
    rt_shape s;
    s.ndim = ndim;
    for (int k = 0; k < ndim; k++) s.d[k] = dims[k];
    int64_t count = rt_shape_count(&s);
    char buf[160];
    if (count < 0)
        return rt_fail(KILN_ERR_ARGUMENT, "input shape %s: every dimension must be >= 1 (and the "
                                          "size sensible)",
                       rt_shape_str(&s, buf, sizeof buf));
    uint64_t bytes = (uint64_t)count * 4;
    if (!m->input_set[i] || !rt_shape_equal(&s, &m->input_shape[i])) {
        uint64_t old = m->input_set[i] ? (uint64_t)rt_shape_count(&m->input_shape[i]) * 4 : 0;
        if (m->params.bytes + m->input_bytes - old + bytes > m->max_memory)
            return rt_fail(KILN_ERR_LIMIT, "input shape %s exceeds the memory limit",
                           rt_shape_str(&s, buf, sizeof buf));
        void *p = NULL;
        if (posix_memalign(&p, RT_ALIGN, (size_t)bytes) != 0)
            return rt_fail(KILN_ERR_NOMEM, "out of memory for an input of %llu bytes",
                           (unsigned long long)bytes);
        free(m->input_data[i]);
        m->input_data[i] = (float *)p;
        m->input_bytes = m->input_bytes - old + bytes;
        m->input_shape[i] = s;
        m->input_set[i] = 1;
        plan_release(m); /* a new shape: shapes and memory are planned again at the next run */
    }
    memcpy(m->input_data[i], data, (size_t)bytes);
    m->ran = 0;
    return KILN_OK;
}

kiln_status kiln_model_run(kiln_model *m) {
    kiln_status st;
    if (!m) return rt_fail(KILN_ERR_ARGUMENT, "a NULL model");
    if (!m->planned && (st = plan_model(m))) {
        plan_release(m);
        return st;
    }
    m->loop_steps = 0;
    if ((st = exec_model(m))) return st;
    m->ran = 1;
    return KILN_OK;
}

kiln_status kiln_model_output_shape(kiln_model *m, int i, const int64_t **dims, int *ndim) {
    kiln_status st;
    if (!m || !dims || !ndim) return rt_fail(KILN_ERR_ARGUMENT, "a NULL argument");
    if (i < 0 || i >= m->n_heads)
        return rt_fail(KILN_ERR_ARGUMENT, "output %d does not exist (the model has %d)", i,
                       m->n_heads);
    if (!m->planned && (st = plan_model(m))) {
        plan_release(m);
        return st;
    }
    *dims = m->values[m->heads[i]].shape.d;
    *ndim = m->values[m->heads[i]].shape.ndim;
    return KILN_OK;
}

kiln_status kiln_model_get_output(kiln_model *m, int i, const float **data,
                                  const int64_t **dims, int *ndim) {
    if (!m || !data) return rt_fail(KILN_ERR_ARGUMENT, "a NULL argument");
    if (i < 0 || i >= m->n_heads)
        return rt_fail(KILN_ERR_ARGUMENT, "output %d does not exist (the model has %d)", i,
                       m->n_heads);
    if (!m->ran) return rt_fail(KILN_ERR_STATE, "no outputs yet: run the model first");
    const rt_value *v = &m->values[m->heads[i]];
    *data = v->data;
    if (dims) *dims = v->shape.d;
    if (ndim) *ndim = v->shape.ndim;
    return KILN_OK;
}

uint64_t kiln_model_memory(const kiln_model *m) {
    if (!m) return 0;
    return m->params.bytes + m->input_bytes + m->arena_bytes + m->fold_bytes + m->sub_bytes;
}

kiln_status kiln_model_set_max_loop_steps(kiln_model *m, uint64_t steps) {
    if (!m) return rt_fail(KILN_ERR_ARGUMENT, "a NULL model");
    m->max_loop_steps = steps ? steps : env_max_loop_steps();
    return KILN_OK;
}
