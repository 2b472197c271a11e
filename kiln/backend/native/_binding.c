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
 *   matmul_f32: a 2-D float32 product through kiln_sgemm for eager code (kiln/ops/_gemm.py).
 *   softmax_ce_f32, multiply_mask_f32, relu_f32, act_f32, sum_axis_f32, conv2d_f32, pool2d_f32:
 *       other eager operators' loops (kiln/ops/_native.py).
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

/* ---------------------------------------------------------------------------------------------
 * matrix products for eager code (kiln/ops/_gemm.py)
 * ------------------------------------------------------------------------------------------- */

/* An aligned, C-ordered array of `type` with native byte order, or NULL. */
static PyArrayObject *c_array(PyObject *o, int type) {
    if (!PyArray_Check(o)) return NULL;
    PyArrayObject *a = (PyArrayObject *)o;
    if (PyArray_TYPE(a) != type || !PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a) ||
        !PyArray_ISNOTSWAPPED(a))
        return NULL;
    return a;
}

/* How a 2-D float32 array is read by a row-major GEMM: *trans = 0 with rows `ld` elements
 * apart (a C-ordered matrix, or rows of a larger one), or *trans = 1 when it is the transpose
 * of such a matrix (x.T of a C-ordered x). 0 when the strides fit neither. A dimension of
 * length 1 has no meaningful stride, so it never decides. */
static int gemm_layout(PyArrayObject *x, int *trans, long *ld) {
    npy_intp r = PyArray_DIM(x, 0), c = PyArray_DIM(x, 1);
    npy_intp s0 = PyArray_STRIDE(x, 0), s1 = PyArray_STRIDE(x, 1);
    const npy_intp f = (npy_intp)sizeof(float);
    if ((c == 1 || s1 == f) && (r == 1 || (s0 % f == 0 && s0 >= f * c))) {
        *trans = 0;
        *ld = (long)(r == 1 ? c : s0 / f);
        return 1;
    }
    if ((r == 1 || s0 == f) && (c == 1 || (s1 % f == 0 && s1 >= f * r))) {
        *trans = 1;
        *ld = (long)(c == 1 ? r : s1 / f);
        return 1;
    }
    return 0;
}

static int gemm_operand(PyObject *o) {
    return PyArray_Check(o) && PyArray_TYPE((PyArrayObject *)o) == NPY_FLOAT32 &&
           PyArray_NDIM((PyArrayObject *)o) == 2 && PyArray_ISALIGNED((PyArrayObject *)o) &&
           PyArray_ISNOTSWAPPED((PyArrayObject *)o);
}

/* The bytes an array's elements span, for overlap checks. */
static void byte_range(PyArrayObject *x, char **lo, char **hi) {
    char *p = PyArray_BYTES(x);
    npy_intp span = 0;
    for (int d = 0; d < PyArray_NDIM(x); d++)
        span += (PyArray_DIM(x, d) - 1) * PyArray_STRIDE(x, d);
    *lo = p;
    *hi = p + span + PyArray_ITEMSIZE(x);
}

static int overlaps(PyArrayObject *a, PyArrayObject *b) {
    char *alo, *ahi, *blo, *bhi;
    byte_range(a, &alo, &ahi);
    byte_range(b, &blo, &bhi);
    return alo < bhi && blo < ahi;
}

/* matmul_f32(a, b, out, min_work[, bias]) -> out (a new C-ordered array when out is None) or
 * None. With `bias`, a C-ordered float32 vector of n elements, the result is a @ b + bias: the
 * rows start as the bias and the product accumulates onto them (NumPy's `y += bias` after the
 * product is a second, broadcasting pass over the result). Otherwise None
 * when this product is not one it handles: operands that are not 2-D aligned float32 matrices
 * read row- or column-wise, an empty product, m*n*k below `min_work`, or an `out` that is not a
 * C-ordered (m, n) float32 array apart from the operands. The caller then uses NumPy. The
 * product runs in kiln_sgemm (BLAS blocks or built-in kernels on kiln's pool) with the GIL
 * released. */
static PyObject *py_matmul_f32(PyObject *self, PyObject *const *args, Py_ssize_t n) {
    if (n != 4 && n != 5) {
        PyErr_SetString(PyExc_TypeError, "matmul_f32(a, b, out, min_work[, bias])");
        return NULL;
    }
    PyObject *ao = args[0], *bo = args[1], *oo = args[2];
    if (!gemm_operand(ao) || !gemm_operand(bo)) Py_RETURN_NONE;
    PyArrayObject *a = (PyArrayObject *)ao, *b = (PyArrayObject *)bo;
    long m = (long)PyArray_DIM(a, 0), k = (long)PyArray_DIM(a, 1), n_ = (long)PyArray_DIM(b, 1);
    if (PyArray_DIM(b, 0) != k || m == 0 || n_ == 0 || k == 0) Py_RETURN_NONE;
    PyArrayObject *bias = NULL;
    if (n == 5 && args[4] != Py_None) {
        bias = c_array(args[4], NPY_FLOAT32);
        if (!bias || PyArray_NDIM(bias) != 1 || PyArray_DIM(bias, 0) != n_) Py_RETURN_NONE;
    }
    double min_work = PyFloat_AsDouble(args[3]);
    if (min_work == -1.0 && PyErr_Occurred()) return NULL;
    if ((double)m * n_ * k < min_work) Py_RETURN_NONE;
    int ta, tb;
    long lda, ldb;
    if (!gemm_layout(a, &ta, &lda) || !gemm_layout(b, &tb, &ldb)) Py_RETURN_NONE;
    PyArrayObject *out;
    if (oo == Py_None) {
        npy_intp dims[2] = {m, n_};
        out = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
        if (!out) return NULL;
    } else {
        if (!gemm_operand(oo) || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)oo) ||
            !PyArray_ISWRITEABLE((PyArrayObject *)oo) ||
            PyArray_DIM((PyArrayObject *)oo, 0) != m || PyArray_DIM((PyArrayObject *)oo, 1) != n_ ||
            overlaps((PyArrayObject *)oo, a) || overlaps((PyArrayObject *)oo, b) ||
            (bias && overlaps((PyArrayObject *)oo, bias)))
            Py_RETURN_NONE;
        out = (PyArrayObject *)oo;
        Py_INCREF(out);
    }
    const float *pa = (const float *)PyArray_DATA(a), *pb = (const float *)PyArray_DATA(b);
    float *pc = (float *)PyArray_DATA(out);
    const float *pbias = bias ? (const float *)PyArray_DATA(bias) : NULL;
    Py_BEGIN_ALLOW_THREADS
    if (pbias)
        for (long i = 0; i < m; i++) memcpy(pc + i * n_, pbias, (size_t)n_ * sizeof(float));
    kiln_sgemm(ta, tb, m, n_, k, 1.0f, pa, lda, pb, ldb, pbias ? 1.0f : 0.0f, pc, n_);
    Py_END_ALLOW_THREADS
    return (PyObject *)out;
}

/* ---------------------------------------------------------------------------------------------
 * other eager operators (kiln/ops/_native.py): each returns None for arrays it does not take,
 * and the operator computes in NumPy
 * ------------------------------------------------------------------------------------------- */

/* softmax_ce_f32(x, label, ct) with x (rows, classes) float32 and label (rows,) int64, both
 * C-ordered: with ct None the per-row loss -log_softmax(x)[r, label[r]] as a (rows,) array;
 * with ct a (rows,) float32 array the gradient (softmax(x) - one_hot(label)) * ct[r] as a
 * (rows, classes) array. Labels are clipped into [0, classes), as pick's 'clip' mode does. The
 * softmax is kiln_softmax_f32, threaded over the rows, as in a compiled graph. */
static PyObject *py_softmax_ce_f32(PyObject *self, PyObject *const *args, Py_ssize_t n) {
    if (n != 3) {
        PyErr_SetString(PyExc_TypeError, "softmax_ce_f32(x, label, ct)");
        return NULL;
    }
    PyArrayObject *x = c_array(args[0], NPY_FLOAT32), *label = c_array(args[1], NPY_INT64);
    PyArrayObject *ct = args[2] == Py_None ? NULL : c_array(args[2], NPY_FLOAT32);
    if (!x || !label || PyArray_NDIM(x) != 2 || (args[2] != Py_None && !ct)) Py_RETURN_NONE;
    npy_intp rows = PyArray_DIM(x, 0), classes = PyArray_DIM(x, 1);
    if (rows == 0 || classes == 0 || PyArray_SIZE(label) != rows ||
        (ct && PyArray_SIZE(ct) != rows))
        Py_RETURN_NONE;
    npy_intp dims[2] = {rows, classes};
    /* forward: the log-softmax goes to a scratch array, the loss to `out` */
    PyArrayObject *p = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    PyArrayObject *out = ct ? p : (PyArrayObject *)PyArray_SimpleNew(1, dims, NPY_FLOAT32);
    if (!p || !out) {
        Py_XDECREF(p);
        if (out != p) Py_XDECREF(out);
        return NULL;
    }
    const float *px = (const float *)PyArray_DATA(x);
    const npy_int64 *lab = (const npy_int64 *)PyArray_DATA(label);
    float *pp = (float *)PyArray_DATA(p), *po = (float *)PyArray_DATA(out);
    const float *g = ct ? (const float *)PyArray_DATA(ct) : NULL;
    Py_BEGIN_ALLOW_THREADS
    kiln_softmax_f32(px, pp, (long)rows, (long)classes, 1, 1.0f, ct == NULL);
    for (npy_intp r = 0; r < rows; r++) {
        npy_int64 j = lab[r] < 0 ? 0 : (lab[r] >= classes ? classes - 1 : lab[r]);
        float *row = pp + r * classes;
        if (!ct) {
            po[r] = -row[j];
            continue;
        }
        row[j] -= 1.0f;
        for (npy_intp k = 0; k < classes; k++) row[k] *= g[r];
    }
    Py_END_ALLOW_THREADS
    if (!ct) Py_DECREF(p);
    return (PyObject *)out;
}

/* multiply_mask_f32(a, mask) -> a * mask for a float32 array and a bool array of its shape,
 * both C-ordered (relu's gradient, g * (y > 0)). NumPy casts the mask to float32 in buffered
 * chunks first; this is one pass. The product keeps NumPy's semantics: NaN * False is NaN. */
static PyObject *py_multiply_mask_f32(PyObject *self, PyObject *const *args, Py_ssize_t n) {
    if (n != 2) {
        PyErr_SetString(PyExc_TypeError, "multiply_mask_f32(a, mask)");
        return NULL;
    }
    PyArrayObject *a = c_array(args[0], NPY_FLOAT32), *m = c_array(args[1], NPY_BOOL);
    if (!a || !m || !PyArray_SAMESHAPE(a, m)) Py_RETURN_NONE;
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(PyArray_NDIM(a), PyArray_DIMS(a),
                                                             NPY_FLOAT32);
    if (!out) return NULL;
    const float *pa = (const float *)PyArray_DATA(a);
    const unsigned char *pm = (const unsigned char *)PyArray_DATA(m);
    float *po = (float *)PyArray_DATA(out);
    npy_intp size = PyArray_SIZE(a);
    Py_BEGIN_ALLOW_THREADS
    for (npy_intp i = 0; i < size; i++) po[i] = pa[i] * (float)(pm[i] != 0);
    Py_END_ALLOW_THREADS
    return (PyObject *)out;
}

/* relu_f32(x) -> max(x, 0) for a C-ordered float32 array, NumPy's maximum: NaN stays NaN and
 * -0.0 becomes 0.0. */
static PyObject *py_relu_f32(PyObject *self, PyObject *const *args, Py_ssize_t n) {
    if (n != 1) {
        PyErr_SetString(PyExc_TypeError, "relu_f32(x)");
        return NULL;
    }
    PyArrayObject *x = c_array(args[0], NPY_FLOAT32);
    if (!x) Py_RETURN_NONE;
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(PyArray_NDIM(x), PyArray_DIMS(x),
                                                             NPY_FLOAT32);
    if (!out) return NULL;
    const float *px = (const float *)PyArray_DATA(x);
    float *po = (float *)PyArray_DATA(out);
    npy_intp size = PyArray_SIZE(x);
    Py_BEGIN_ALLOW_THREADS
    for (npy_intp i = 0; i < size; i++) {
        float v = px[i];
        po[i] = (v > 0.0f || v != v) ? v : 0.0f;
    }
    Py_END_ALLOW_THREADS
    return (PyObject *)out;
}

/* act_f32(x, act) -> act(x) for a C-ordered float32 array and an enum kiln_act other than
 * relu (relu_f32 keeps NumPy's sign of zero), through the threaded kiln_act_f32: sigmoid in
 * one pass, where NumPy takes four (negate, exp, add, divide). */
static PyObject *py_act_f32(PyObject *self, PyObject *const *args, Py_ssize_t n) {
    if (n != 2) {
        PyErr_SetString(PyExc_TypeError, "act_f32(x, act)");
        return NULL;
    }
    long act = PyLong_AsLong(args[1]);
    if (act == -1 && PyErr_Occurred()) return NULL;
    PyArrayObject *x = c_array(args[0], NPY_FLOAT32);
    if (!x || act <= KILN_ACT_RELU || act > KILN_ACT_SOFTSIGN) Py_RETURN_NONE;
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(PyArray_NDIM(x), PyArray_DIMS(x),
                                                             NPY_FLOAT32);
    if (!out) return NULL;
    const float *px = (const float *)PyArray_DATA(x);
    float *po = (float *)PyArray_DATA(out);
    long size = (long)PyArray_SIZE(x);
    Py_BEGIN_ALLOW_THREADS
    kiln_act_f32(px, po, size, (int)act);
    Py_END_ALLOW_THREADS
    return (PyObject *)out;
}

/* sum_axis_f32(x, axis) -> x.sum(axis) for a C-ordered float32 array and an axis other than
 * the last (a bias gradient sums a batch's rows): rows added in order, as NumPy adds them,
 * through kiln_sum_axis_f32. None for the last axis, where NumPy's pairwise sum is the
 * reference. */
static PyObject *py_sum_axis_f32(PyObject *self, PyObject *const *args, Py_ssize_t n) {
    if (n != 2) {
        PyErr_SetString(PyExc_TypeError, "sum_axis_f32(x, axis)");
        return NULL;
    }
    PyArrayObject *x = c_array(args[0], NPY_FLOAT32);
    long axis = PyLong_AsLong(args[1]);
    if (axis == -1 && PyErr_Occurred()) return NULL;
    if (!x) Py_RETURN_NONE;
    int nd = PyArray_NDIM(x);
    if (axis < 0) axis += nd;
    if (axis < 0 || axis >= nd - 1 || PyArray_SIZE(x) == 0) Py_RETURN_NONE;
    npy_intp dims[MAX_NDIM], outer = 1, inner = 1;
    if (nd > MAX_NDIM) Py_RETURN_NONE;
    for (int d = 0, k = 0; d < nd; d++) {
        if (d == axis) continue;
        dims[k++] = PyArray_DIM(x, d);
        if (d < axis) outer *= PyArray_DIM(x, d);
        else inner *= PyArray_DIM(x, d);
    }
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(nd - 1, dims, NPY_FLOAT32);
    if (!out) return NULL;
    const float *px = (const float *)PyArray_DATA(x);
    float *po = (float *)PyArray_DATA(out);
    long len = (long)PyArray_DIM(x, (int)axis);
    Py_BEGIN_ALLOW_THREADS
    kiln_sum_axis_f32(px, po, (long)outer, len, (long)inner, 0);
    Py_END_ALLOW_THREADS
    return (PyObject *)out;
}

/* `count` longs from a tuple into `out`; 0 when it is not such a tuple. */
static int long_fields(PyObject *t, long *out, Py_ssize_t count) {
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != count) return 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        out[i] = PyLong_AsLong(PyTuple_GET_ITEM(t, i));
        if (out[i] == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
    }
    return 1;
}

/* A C-ordered float32 array of exactly `size` elements, or NULL. */
static const float *f32_of_size(PyObject *o, npy_intp size) {
    PyArrayObject *a = c_array(o, NPY_FLOAT32);
    return a && PyArray_SIZE(a) == size ? (const float *)PyArray_DATA(a) : NULL;
}

/* conv2d_f32(mode, geometry, a, b, bias) for a 2-D convolution whose kiln_conv2d fields
 * (n, c, h, w, f, kh, kw, sh, sw, ph, pw, dh, dw, groups, oh, ow) are `geometry`:
 *   mode 0: the convolution of x = a by w = b, plus bias (f floats) unless it is None,
 *           as a new (n, f, oh, ow) array;
 *   mode 1: its input gradient from dy = a and w = b, as a new (n, c, h, w) array;
 *   mode 2: its weight gradient from x = a and dy = b, as a new (f, c / groups, kh, kw) array.
 * None when the geometry is not one kiln_conv2d_init gives (oh, ow included) or an array is not
 * C-ordered float32 of its size: the operator then computes in NumPy. */
static PyObject *py_conv2d_f32(PyObject *self, PyObject *const *args, Py_ssize_t n) {
    if (n != 5) {
        PyErr_SetString(PyExc_TypeError, "conv2d_f32(mode, geometry, a, b, bias)");
        return NULL;
    }
    long mode = PyLong_AsLong(args[0]), g[16];
    if (mode == -1 && PyErr_Occurred()) return NULL;
    if (mode < 0 || mode > 2 || !long_fields(args[1], g, 16)) Py_RETURN_NONE;
    kiln_conv2d p = {g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11],
                     g[12], g[13], 0, 0};
    for (int i = 0; i < 14; i++)
        if (g[i] < (i == 9 || i == 10 ? 0 : 1)) Py_RETURN_NONE;     /* pads may be 0 */
    if (p.c % p.groups || p.f % p.groups || kiln_conv2d_init(&p) != 0 || p.oh != g[14] ||
        p.ow != g[15])
        Py_RETURN_NONE;
    npy_intp xs = p.n * p.c * p.h * p.w, ys = p.n * p.f * p.oh * p.ow;
    npy_intp ws = p.f * (p.c / p.groups) * p.kh * p.kw;
    const float *a = f32_of_size(args[2], mode == 1 ? ys : xs);
    const float *b = f32_of_size(args[3], mode == 2 ? ys : ws);
    const float *bias = NULL;
    if (mode == 0 && args[4] != Py_None && !(bias = f32_of_size(args[4], p.f))) Py_RETURN_NONE;
    if (!a || !b) Py_RETURN_NONE;
    npy_intp dims[3][4] = {{p.n, p.f, p.oh, p.ow}, {p.n, p.c, p.h, p.w},
                           {p.f, p.c / p.groups, p.kh, p.kw}};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(4, dims[mode], NPY_FLOAT32);
    if (!out) return NULL;
    float *o = (float *)PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS
    if (mode == 0) kiln_conv2d_f32(&p, a, b, NULL, bias, NULL, o, KILN_ACT_NONE);
    else if (mode == 1) kiln_conv2d_backward_data_f32(&p, a, b, o);
    else kiln_conv2d_backward_weight_f32(&p, a, b, o);
    Py_END_ALLOW_THREADS
    return (PyObject *)out;
}

/* pool2d_f32(geometry, type, count_include_pad, x, dy, y) for kiln_pool2d fields (n, c, h, w,
 * kh, kw, sh, sw, ph, pw, oh, ow): with dy None the pooling of x as a new (n, c, oh, ow)
 * array; else its input gradient from dy, x and the forward's output y, as a new (n, c, h, w)
 * array. None for arrays that are not C-ordered float32 of their sizes. */
static PyObject *py_pool2d_f32(PyObject *self, PyObject *const *args, Py_ssize_t n) {
    if (n != 6) {
        PyErr_SetString(PyExc_TypeError, "pool2d_f32(geometry, type, count_include_pad, x, dy, y)");
        return NULL;
    }
    long g[12];
    long type = PyLong_AsLong(args[1]), cip = PyLong_AsLong(args[2]);
    if ((type == -1 || cip == -1) && PyErr_Occurred()) return NULL;
    if (type < KILN_POOL_MAX || type > KILN_POOL_SUM || !long_fields(args[0], g, 12))
        Py_RETURN_NONE;
    for (int i = 0; i < 12; i++)
        if (g[i] < (i == 8 || i == 9 ? 0 : 1)) Py_RETURN_NONE;     /* pads may be 0 */
    kiln_pool2d p = {g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11],
                     (int)type, cip != 0};
    npy_intp xs = p.n * p.c * p.h * p.w, ys = p.n * p.c * p.oh * p.ow;
    const float *x = f32_of_size(args[3], xs);
    int backward = args[4] != Py_None;
    const float *dy = backward ? f32_of_size(args[4], ys) : NULL;
    const float *y = backward ? f32_of_size(args[5], ys) : NULL;
    if (!x || (backward && (!dy || !y))) Py_RETURN_NONE;
    npy_intp dims[4] = {p.n, p.c, backward ? p.h : p.oh, backward ? p.w : p.ow};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(4, dims, NPY_FLOAT32);
    if (!out) return NULL;
    float *o = (float *)PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS
    if (backward) kiln_pool2d_backward_f32(&p, dy, x, y, o);
    else kiln_pool2d_f32(&p, x, o);
    Py_END_ALLOW_THREADS
    return (PyObject *)out;
}

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
