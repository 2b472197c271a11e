/* _kiln_native: the CPython side of kiln's native backend.
 *
 * Compiled once per machine (and Python / NumPy version) into kiln's cache and imported by
 * kiln.backend.native.runtime. It provides
 *
 *   Runner(run_address, inputs, outputs, params, arena, callback)
 *       a callable object for one compiled graph. `run_address` is the address of the graph
 *       library's `kiln_graph_run`; `inputs`/`outputs` are tuples of (NumPy type number, shape)
 *       for the free inputs and the outputs; `params` the arrays whose data the graph reads in
 *       place (parameters, large constants); `arena` the uint8 array holding every intermediate
 *       value; `callback(k, inputs, outputs)` runs graph node k in Python when the graph has
 *       nodes without a C lowering. Calling the runner with the input arrays (vectorcall, so
 *       no argument tuple is built) returns a tuple of new output arrays.
 *   sgd_update, adam_update, sgd_update_multi, adam_update_multi: fused optimizer steps on
 *       float32 arrays, in place (see optimizer_kernels.py).
 *   set_blas, blas_kind, set_num_threads, get_num_threads: kernel-library settings.
 *   matmul_f32: a 2-D float32 product through kiln_sgemm for eager code (kiln/ops/_gemm.py);
 *   softmax_ce_f32, multiply_mask_f32, relu_f32, act_f32, sum_axis_f32, conv2d_f32, pool2d_f32:
 *       other eager operators' loops (kiln/ops/_native.py). These are in _binding_eager.c,
 *       which this file includes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <stdlib.h>
#include <string.h>

#include "kiln_kernels.h"

#define MAX_NDIM 16

/* The ABI between generated graphs and this module (also written in every generated file). */
typedef struct kiln_graph_callbacks {
    int (*call)(void *ctx, int node);
    void *ctx;
} kiln_graph_callbacks;
typedef int (*kiln_graph_run_fn)(void *const *inputs, void *const *outputs,
                                 void *const *params, char *arena,
                                 const kiln_graph_callbacks *cb);

typedef struct {
    int type_num;
    int ndim;
    npy_intp dims[MAX_NDIM];
    npy_intp size;
} spec;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    kiln_graph_run_fn run;
    Py_ssize_t n_in, n_out, n_params;
    spec *in_specs, *out_specs;
    PyObject *params;        /* tuple of arrays, kept alive */
    void **param_ptrs;
    PyObject *arena;         /* uint8 array */
    char *arena_ptr;
    Py_ssize_t arena_bytes;
    PyObject *callback;      /* None or callable */
    int busy;
    /* during a call, for callbacks */
    PyObject *const *cur_args;
    PyObject **cur_outs;
} Runner;

static int parse_specs(PyObject *seq, spec **out, Py_ssize_t *n) {
    PyObject *fast = PySequence_Fast(seq, "specs must be a sequence");
    if (!fast) return -1;
    *n = PySequence_Fast_GET_SIZE(fast);
    *out = (spec *)calloc((size_t)(*n > 0 ? *n : 1), sizeof(spec));
    if (!*out) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < *n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        PyObject *shape;
        int type_num;
        if (!PyArg_ParseTuple(item, "iO", &type_num, &shape)) {
            Py_DECREF(fast);
            return -1;
        }
        PyObject *sf = PySequence_Fast(shape, "shape must be a sequence");
        if (!sf) {
            Py_DECREF(fast);
            return -1;
        }
        Py_ssize_t nd = PySequence_Fast_GET_SIZE(sf);
        if (nd > MAX_NDIM) {
            Py_DECREF(sf);
            Py_DECREF(fast);
            PyErr_SetString(PyExc_ValueError, "too many dimensions");
            return -1;
        }
        spec *s = &(*out)[i];
        s->type_num = type_num;
        s->ndim = (int)nd;
        s->size = 1;
        for (Py_ssize_t d = 0; d < nd; d++) {
            s->dims[d] = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(sf, d));
            s->size *= s->dims[d];
        }
        Py_DECREF(sf);
        if (PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
    }
    Py_DECREF(fast);
    return 0;
}

static int runner_callback(void *ctx, int node) {
    Runner *r = (Runner *)ctx;
    PyObject *ins = PyTuple_New(r->n_in);
    PyObject *outs = PyTuple_New(r->n_out);
    if (!ins || !outs) {
        Py_XDECREF(ins);
        Py_XDECREF(outs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < r->n_in; i++) {
        Py_INCREF(r->cur_args[i]);
        PyTuple_SET_ITEM(ins, i, r->cur_args[i]);
    }
    for (Py_ssize_t i = 0; i < r->n_out; i++) {
        Py_INCREF(r->cur_outs[i]);
        PyTuple_SET_ITEM(outs, i, r->cur_outs[i]);
    }
    PyObject *res = PyObject_CallFunction(r->callback, "iOO", node, ins, outs);
    Py_DECREF(ins);
    Py_DECREF(outs);
    if (!res) return -1;
    Py_DECREF(res);
    return 0;
}

static int input_mismatch(const spec *s, PyArrayObject *a) {
    if (PyArray_TYPE(a) != s->type_num || PyArray_NDIM(a) != s->ndim) return 1;
    npy_intp *dims = PyArray_DIMS(a);
    for (int d = 0; d < s->ndim; d++)
        if (dims[d] != s->dims[d]) return 1;
    return 0;
}

#define SMALL 8

static PyObject *runner_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames) {
    Runner *r = (Runner *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames && PyTuple_GET_SIZE(kwnames)) {
        PyErr_SetString(PyExc_TypeError, "a compiled kiln graph takes no keyword arguments");
        return NULL;
    }
    if (nargs != r->n_in) {
        PyErr_Format(PyExc_TypeError, "this compiled kiln graph takes %zd input arrays, got %zd",
                     r->n_in, nargs);
        return NULL;
    }
    void *in_small[SMALL], *out_small[SMALL];
    PyObject *conv_small[SMALL], *outs_small[SMALL];
    void **in_ptrs = r->n_in <= SMALL ? in_small : (void **)malloc(sizeof(void *) * r->n_in);
    void **out_ptrs = r->n_out <= SMALL ? out_small : (void **)malloc(sizeof(void *) * r->n_out);
    PyObject **conv = r->n_in <= SMALL ? conv_small
                                       : (PyObject **)calloc(r->n_in, sizeof(PyObject *));
    PyObject **outs = r->n_out <= SMALL ? outs_small
                                        : (PyObject **)calloc(r->n_out, sizeof(PyObject *));
    PyObject *result = NULL;
    char *arena = r->arena_ptr;
    char *own_arena = NULL;
    Py_ssize_t i, n_conv = 0, n_outs = 0;
    if (!in_ptrs || !out_ptrs || !conv || !outs) {
        PyErr_NoMemory();
        goto done;
    }
    for (i = 0; i < r->n_in; i++) conv[i] = NULL;
    n_conv = r->n_in;
    /* inputs: the graph reads them in place when they are aligned, C-contiguous arrays of the
     * compiled type and shape, and converts (copies) them otherwise */
    for (i = 0; i < r->n_in; i++) {
        PyObject *a = args[i];
        const spec *s = &r->in_specs[i];
        if (PyArray_Check(a) && PyArray_IS_C_CONTIGUOUS((PyArrayObject *)a) &&
            PyArray_ISALIGNED((PyArrayObject *)a) && !input_mismatch(s, (PyArrayObject *)a)) {
            in_ptrs[i] = PyArray_DATA((PyArrayObject *)a);
            continue;
        }
        PyObject *c = PyArray_FROMANY(a, s->type_num, 0, 0, NPY_ARRAY_CARRAY_RO);
        if (!c) goto done;
        conv[i] = c;
        if (input_mismatch(s, (PyArrayObject *)c)) {
            PyErr_Format(PyExc_ValueError,
                         "input %zd of this compiled kiln graph has the wrong shape (compiled "
                         "for %d dimensions, got %d)",
                         i, s->ndim, PyArray_NDIM((PyArrayObject *)c));
            goto done;
        }
        in_ptrs[i] = PyArray_DATA((PyArrayObject *)c);
    }
    for (i = 0; i < r->n_out; i++) {
        const spec *s = &r->out_specs[i];
        PyObject *o = PyArray_SimpleNew(s->ndim, (npy_intp *)s->dims, s->type_num);
        if (!o) goto done;
        outs[n_outs++] = o;
        out_ptrs[i] = PyArray_DATA((PyArrayObject *)o);
    }
    if (r->busy) {
        /* re-entered (another thread while a callback had released the GIL): a private arena */
        if (r->callback != Py_None) {
            PyErr_SetString(PyExc_RuntimeError,
                            "this compiled kiln graph is already running (it calls back into "
                            "Python, so it cannot run twice at once)");
            goto done;
        }
        if (r->arena_bytes > 0) {
            void *p = NULL;
            if (posix_memalign(&p, 64, (size_t)r->arena_bytes) != 0) {
                PyErr_NoMemory();
                goto done;
            }
            own_arena = (char *)p;
            arena = own_arena;
        }
    }
    {
        kiln_graph_callbacks cb = {runner_callback, r};
        PyObject *const *saved_args = r->cur_args;
        PyObject **saved_outs = r->cur_outs;
        int was_busy = r->busy;
        r->busy = 1;
        r->cur_args = (PyObject *const *)args;
        r->cur_outs = outs;
        for (i = 0; i < r->n_in; i++)
            if (conv[i]) {
                /* callbacks see the converted arrays */
                r->cur_args = NULL;
                break;
            }
        PyObject *cur_small[SMALL];
        PyObject **cur = NULL;
        if (!r->cur_args) {
            cur = r->n_in <= SMALL ? cur_small : (PyObject **)malloc(sizeof(PyObject *) * r->n_in);
            for (i = 0; i < r->n_in; i++) cur[i] = conv[i] ? conv[i] : args[i];
            r->cur_args = (PyObject *const *)cur;
        }
        int rc = r->run(in_ptrs, out_ptrs, r->param_ptrs, arena, &cb);
        if (cur && cur != cur_small) free(cur);
        r->cur_args = saved_args;
        r->cur_outs = saved_outs;
        r->busy = was_busy;
        if (rc != 0) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_RuntimeError, "compiled kiln graph failed (code %d)", rc);
            goto done;
        }
    }
    result = PyTuple_New(r->n_out);
    if (!result) goto done;
    for (i = 0; i < r->n_out; i++) {
        PyTuple_SET_ITEM(result, i, outs[i]);
        outs[i] = NULL;
    }
done:
    for (i = 0; i < n_outs; i++) Py_XDECREF(outs[i]);
    for (i = 0; i < n_conv; i++) Py_XDECREF(conv[i]);
    if (in_ptrs && in_ptrs != in_small) free(in_ptrs);
    if (out_ptrs && out_ptrs != out_small) free(out_ptrs);
    if (conv && conv != conv_small) free(conv);
    if (outs && outs != outs_small) free(outs);
    free(own_arena);
    return result;
}

static PyObject *runner_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    unsigned long long address;
    PyObject *in_specs, *out_specs, *params, *arena, *callback;
    if (!PyArg_ParseTuple(args, "KOOO!OO", &address, &in_specs, &out_specs, &PyTuple_Type,
                          &params, &arena, &callback))
        return NULL;
    if (!PyArray_Check(arena) || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)arena)) {
        PyErr_SetString(PyExc_TypeError, "arena must be a contiguous NumPy array");
        return NULL;
    }
    Runner *r = (Runner *)type->tp_alloc(type, 0);
    if (!r) return NULL;
    r->vectorcall = runner_vectorcall;
    r->run = (kiln_graph_run_fn)(uintptr_t)address;
    if (parse_specs(in_specs, &r->in_specs, &r->n_in) < 0 ||
        parse_specs(out_specs, &r->out_specs, &r->n_out) < 0) {
        Py_DECREF(r);
        return NULL;
    }
    r->n_params = PyTuple_GET_SIZE(params);
    r->param_ptrs = (void **)calloc((size_t)(r->n_params > 0 ? r->n_params : 1), sizeof(void *));
    if (!r->param_ptrs) {
        Py_DECREF(r);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < r->n_params; i++) {
        PyObject *p = PyTuple_GET_ITEM(params, i);
        if (!PyArray_Check(p) || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)p) ||
            !PyArray_ISALIGNED((PyArrayObject *)p)) {
            PyErr_Format(PyExc_TypeError,
                         "parameter %zd of a compiled kiln graph must be an aligned, "
                         "C-contiguous NumPy array", i);
            Py_DECREF(r);
            return NULL;
        }
        r->param_ptrs[i] = PyArray_DATA((PyArrayObject *)p);
    }
    Py_INCREF(params);
    r->params = params;
    Py_INCREF(arena);
    r->arena = arena;
    r->arena_ptr = (char *)PyArray_DATA((PyArrayObject *)arena);
    r->arena_bytes = PyArray_NBYTES((PyArrayObject *)arena);
    Py_INCREF(callback);
    r->callback = callback;
    return (PyObject *)r;
}

static void runner_dealloc(Runner *r) {
    free(r->in_specs);
    free(r->out_specs);
    free(r->param_ptrs);
    Py_XDECREF(r->params);
    Py_XDECREF(r->arena);
    Py_XDECREF(r->callback);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyObject *runner_repr(Runner *r) {
    return PyUnicode_FromFormat("<kiln native graph: %zd inputs, %zd outputs, %zd arena bytes>",
                                r->n_in, r->n_out, r->arena_bytes);
}

static PyObject *runner_get_arena(Runner *r, void *closure) {
    Py_INCREF(r->arena);
    return r->arena;
}

static PyObject *runner_get_params(Runner *r, void *closure) {
    Py_INCREF(r->params);
    return r->params;
}

static PyGetSetDef runner_getset[] = {
    {"arena", (getter)runner_get_arena, NULL, "the array holding intermediate values", NULL},
    {"params", (getter)runner_get_params, NULL, "the arrays read in place (PRM order)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RunnerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_kiln_native.Runner",
    .tp_basicsize = sizeof(Runner),
    .tp_dealloc = (destructor)runner_dealloc,
    .tp_vectorcall_offset = offsetof(Runner, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_repr = (reprfunc)runner_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "A compiled kiln graph: call it with the input arrays.",
    .tp_new = runner_new,
    .tp_getset = runner_getset,
};

/* ---------------------------------------------------------------------------------------------
 * optimizer kernels
 * ------------------------------------------------------------------------------------------- */

static float *f32_data(PyObject *a, const char *what, npy_intp *size, int writable) {
    if (!PyArray_Check(a) || PyArray_TYPE((PyArrayObject *)a) != NPY_FLOAT32 ||
        !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)a) ||
        (writable && !PyArray_ISWRITEABLE((PyArrayObject *)a))) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous%s float32 NumPy array", what,
                     writable ? ", writable" : "");
        return NULL;
    }
    if (size) *size = PyArray_SIZE((PyArrayObject *)a);
    return (float *)PyArray_DATA((PyArrayObject *)a);
}

static int same_size(npy_intp a, npy_intp b, const char *what) {
    if (a != b) {
        PyErr_Format(PyExc_ValueError, "%s has %zd elements, the weight %zd", what, (Py_ssize_t)b,
                     (Py_ssize_t)a);
        return 0;
    }
    return 1;
}

static int sgd_one(PyObject *w, PyObject *g, PyObject *mom, float lr, float momentum, float wd,
                   float rescale, float clip) {
    npy_intp nw, ng, nm;
    float *pw = f32_data(w, "weight", &nw, 1);
    if (!pw) return -1;
    float *pg = f32_data(g, "grad", &ng, 0);
    if (!pg || !same_size(nw, ng, "grad")) return -1;
    float *pm = NULL;
    if (mom != Py_None) {
        pm = f32_data(mom, "mom", &nm, 1);
        if (!pm || !same_size(nw, nm, "mom")) return -1;
    }
    kiln_sgd_update_f32(pw, pg, pm, (long)nw, lr, momentum, wd, rescale, clip);
    return 0;
}

static int adam_one(PyObject *w, PyObject *g, PyObject *m, PyObject *v, float lr, double b1,
                    double b2, float eps, float wd, float rescale, float clip) {
    npy_intp nw, ng, nm, nv;
    float *pw = f32_data(w, "weight", &nw, 1);
    if (!pw) return -1;
    float *pg = f32_data(g, "grad", &ng, 0);
    if (!pg || !same_size(nw, ng, "grad")) return -1;
    float *pm = f32_data(m, "mean", &nm, 1);
    if (!pm || !same_size(nw, nm, "mean")) return -1;
    float *pv = f32_data(v, "var", &nv, 1);
    if (!pv || !same_size(nw, nv, "var")) return -1;
    kiln_adam_update_f32(pw, pg, pm, pv, (long)nw, lr, b1, b2, eps, wd, rescale, clip);
    return 0;
}

static PyObject *py_sgd_update(PyObject *self, PyObject *const *args, Py_ssize_t n) {
    if (n != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "sgd_update(weight, grad, mom, lr, momentum, wd, rescale, clip)");
        return NULL;
    }
    double f[5];
    for (int i = 0; i < 5; i++) {
        f[i] = PyFloat_AsDouble(args[3 + i]);
        if (f[i] == -1.0 && PyErr_Occurred()) return NULL;
    }
    if (sgd_one(args[0], args[1], args[2], (float)f[0], (float)f[1], (float)f[2], (float)f[3],
                (float)f[4]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_adam_update(PyObject *self, PyObject *const *args, Py_ssize_t n) {
    if (n != 11) {
        PyErr_SetString(PyExc_TypeError, "adam_update(weight, grad, mean, var, lr, beta1, beta2, "
                                         "epsilon, wd, rescale, clip)");
        return NULL;
    }
    double f[7];
    for (int i = 0; i < 7; i++) {
        f[i] = PyFloat_AsDouble(args[4 + i]);
        if (f[i] == -1.0 && PyErr_Occurred()) return NULL;
    }
    if (adam_one(args[0], args[1], args[2], args[3], (float)f[0], f[1], f[2],
                 (float)f[3], (float)f[4], (float)f[5], (float)f[6]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* sgd_update_multi(weights, grads, moms_or_None, lrs, wds, momentum, rescale, clip) */
static PyObject *py_sgd_update_multi(PyObject *self, PyObject *const *args, Py_ssize_t n) {
    if (n != 8) {
        PyErr_SetString(PyExc_TypeError, "sgd_update_multi(weights, grads, moms, lrs, wds, "
                                         "momentum, rescale, clip)");
        return NULL;
    }
    double momentum = PyFloat_AsDouble(args[5]), rescale = PyFloat_AsDouble(args[6]),
           clip = PyFloat_AsDouble(args[7]);
    if (PyErr_Occurred()) return NULL;
    PyObject *ws = PySequence_Fast(args[0], "weights must be a sequence");
    PyObject *gs = ws ? PySequence_Fast(args[1], "grads must be a sequence") : NULL;
    PyObject *ms = (gs && args[2] != Py_None) ? PySequence_Fast(args[2], "moms: a sequence")
                                               : NULL;
    PyObject *lrs = gs ? PySequence_Fast(args[3], "lrs must be a sequence") : NULL;
    PyObject *wds = lrs ? PySequence_Fast(args[4], "wds must be a sequence") : NULL;
    PyObject *ret = NULL;
    if (!wds || (args[2] != Py_None && !ms)) goto out;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(ws);
    if (PySequence_Fast_GET_SIZE(gs) != k || PySequence_Fast_GET_SIZE(lrs) != k ||
        PySequence_Fast_GET_SIZE(wds) != k || (ms && PySequence_Fast_GET_SIZE(ms) != k)) {
        PyErr_SetString(PyExc_ValueError, "sgd_update_multi: the lists differ in length");
        goto out;
    }
    for (Py_ssize_t i = 0; i < k; i++) {
        double lr = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(lrs, i));
        double wd = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(wds, i));
        if (PyErr_Occurred()) goto out;
        if (sgd_one(PySequence_Fast_GET_ITEM(ws, i), PySequence_Fast_GET_ITEM(gs, i),
                    ms ? PySequence_Fast_GET_ITEM(ms, i) : Py_None, (float)lr, (float)momentum,
                    (float)wd, (float)rescale, (float)clip) < 0)
            goto out;
    }
    ret = Py_None;
    Py_INCREF(ret);
out:
    Py_XDECREF(ws);
    Py_XDECREF(gs);
    Py_XDECREF(ms);
    Py_XDECREF(lrs);
    Py_XDECREF(wds);
    return ret;
}

/* adam_update_multi(weights, grads, means, vars, lrs, wds, beta1, beta2, epsilon, rescale,
 *                   clip)  -- lrs already bias-corrected */
static PyObject *py_adam_update_multi(PyObject *self, PyObject *const *args, Py_ssize_t n) {
    if (n != 11) {
        PyErr_SetString(PyExc_TypeError, "adam_update_multi(weights, grads, means, vars, lrs, "
                                         "wds, beta1, beta2, epsilon, rescale, clip)");
        return NULL;
    }
    double b1 = PyFloat_AsDouble(args[6]), b2 = PyFloat_AsDouble(args[7]),
           eps = PyFloat_AsDouble(args[8]), rescale = PyFloat_AsDouble(args[9]),
           clip = PyFloat_AsDouble(args[10]);
    if (PyErr_Occurred()) return NULL;
    PyObject *seq[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    PyObject *ret = NULL;
    for (int j = 0; j < 6; j++) {
        seq[j] = PySequence_Fast(args[j], "adam_update_multi takes sequences");
        if (!seq[j]) goto out;
    }
    Py_ssize_t k = PySequence_Fast_GET_SIZE(seq[0]);
    for (int j = 1; j < 6; j++)
        if (PySequence_Fast_GET_SIZE(seq[j]) != k) {
            PyErr_SetString(PyExc_ValueError, "adam_update_multi: the lists differ in length");
            goto out;
        }
    for (Py_ssize_t i = 0; i < k; i++) {
        double lr = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq[4], i));
        double wd = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq[5], i));
        if (PyErr_Occurred()) goto out;
        if (adam_one(PySequence_Fast_GET_ITEM(seq[0], i), PySequence_Fast_GET_ITEM(seq[1], i),
                     PySequence_Fast_GET_ITEM(seq[2], i), PySequence_Fast_GET_ITEM(seq[3], i),
                     (float)lr, b1, b2, (float)eps, (float)wd, (float)rescale,
                     (float)clip) < 0)
            goto out;
    }
    ret = Py_None;
    Py_INCREF(ret);
out:
    for (int j = 0; j < 6; j++) Py_XDECREF(seq[j]);
    return ret;
}

#include "_binding_eager.c"

/* ---------------------------------------------------------------------------------------------
 * settings
 * ------------------------------------------------------------------------------------------- */

static PyObject *py_set_blas(PyObject *self, PyObject *args) {
    int kind;
    unsigned long long address;
    if (!PyArg_ParseTuple(args, "iK", &kind, &address)) return NULL;
    void *fn = (void *)(uintptr_t)address;
    switch (kind) {
    case 0: kiln_blas_use_cblas64(NULL); break;
    case 1: kiln_blas_use_cblas64(fn); break;
    case 2: kiln_blas_use_cblas(fn); break;
    case 3: kiln_blas_use_f77(fn); break;
    default:
        PyErr_SetString(PyExc_ValueError, "blas kind must be 0..3");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *py_set_blas_threads(PyObject *self, PyObject *args) {
    unsigned long long get_address, set_address;
    if (!PyArg_ParseTuple(args, "KK", &get_address, &set_address)) return NULL;
    kiln_blas_use_thread_control((void *)(uintptr_t)get_address, (void *)(uintptr_t)set_address);
    Py_RETURN_NONE;
}

static PyObject *py_blas_kind(PyObject *self, PyObject *unused) {
    return PyLong_FromLong(kiln_blas_kind());
}

static PyObject *py_set_blas_threshold(PyObject *self, PyObject *arg) {
    double t = PyFloat_AsDouble(arg);
    if (t == -1.0 && PyErr_Occurred()) return NULL;
    kiln_blas_set_threshold(t);
    Py_RETURN_NONE;
}

static PyObject *py_set_num_threads(PyObject *self, PyObject *arg) {
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    kiln_set_num_threads((int)n);
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *self, PyObject *unused) {
    return PyLong_FromLong(kiln_get_num_threads());
}

static PyObject *py_noop(PyObject *self, PyObject *const *args, Py_ssize_t n) {
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"sgd_update", (PyCFunction)(void (*)(void))py_sgd_update, METH_FASTCALL,
     "sgd_update(weight, grad, mom, lr, momentum, wd, rescale, clip): in place"},
    {"adam_update", (PyCFunction)(void (*)(void))py_adam_update, METH_FASTCALL,
     "adam_update(weight, grad, mean, var, lr, beta1, beta2, epsilon, wd, rescale, clip)"},
    {"sgd_update_multi", (PyCFunction)(void (*)(void))py_sgd_update_multi, METH_FASTCALL,
     "sgd_update_multi(weights, grads, moms, lrs, wds, momentum, rescale, clip)"},
    {"adam_update_multi", (PyCFunction)(void (*)(void))py_adam_update_multi, METH_FASTCALL,
     "adam_update_multi(weights, grads, means, vars, lrs, wds, beta1, beta2, epsilon, "
     "rescale, clip)"},
    {"matmul_f32", (PyCFunction)(void (*)(void))py_matmul_f32, METH_FASTCALL,
     "matmul_f32(a, b, out, min_work[, bias]): a @ b (+ bias) for 2-D float32, or None"},
    {"softmax_ce_f32", (PyCFunction)(void (*)(void))py_softmax_ce_f32, METH_FASTCALL,
     "softmax_ce_f32(x, label, ct): softmax cross-entropy or its gradient, or None"},
    {"multiply_mask_f32", (PyCFunction)(void (*)(void))py_multiply_mask_f32, METH_FASTCALL,
     "multiply_mask_f32(a, mask): a * mask for float32 a and a bool mask, or None"},
    {"relu_f32", (PyCFunction)(void (*)(void))py_relu_f32, METH_FASTCALL,
     "relu_f32(x): max(x, 0) for float32 x, or None"},
    {"act_f32", (PyCFunction)(void (*)(void))py_act_f32, METH_FASTCALL,
     "act_f32(x, act): an activation (enum kiln_act, not relu) of float32 x, or None"},
    {"sum_axis_f32", (PyCFunction)(void (*)(void))py_sum_axis_f32, METH_FASTCALL,
     "sum_axis_f32(x, axis): x.sum(axis) for float32 x and an axis before the last, or None"},
    {"conv2d_f32", (PyCFunction)(void (*)(void))py_conv2d_f32, METH_FASTCALL,
     "conv2d_f32(mode, geometry, a, b, bias): a 2-D convolution or a gradient, or None"},
    {"pool2d_f32", (PyCFunction)(void (*)(void))py_pool2d_f32, METH_FASTCALL,
     "pool2d_f32(geometry, type, count_include_pad, x, dy, y): pooling or its gradient"},
    {"set_blas", py_set_blas, METH_VARARGS, "set_blas(kind, address)"},
    {"blas_kind", py_blas_kind, METH_NOARGS, "0 none, 1 cblas64, 2 cblas, 3 f77"},
    {"set_blas_threads", py_set_blas_threads, METH_VARARGS,
     "set_blas_threads(get_address, set_address): run large products on kiln's pool"},
    {"set_blas_threshold", py_set_blas_threshold, METH_O, "m*n*k below which GEMMs stay built in"},
    {"set_num_threads", py_set_num_threads, METH_O, "threads of the kernels (0: default)"},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "threads of the kernels"},
    {"noop", (PyCFunction)(void (*)(void))py_noop, METH_FASTCALL,
     "does nothing (measures the cost of a call)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kiln_native", "kiln's native backend binding", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kiln_native(void) {
    import_array();
    if (PyType_Ready(&RunnerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&RunnerType);
    if (PyModule_AddObject(m, "Runner", (PyObject *)&RunnerType) < 0) {
        Py_DECREF(&RunnerType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "KERNELS_ABI", KILN_KERNELS_ABI);
    return m;
}
