/* _binding_eager.c: the binding's functions for eager operators (kiln/ops/_gemm.py and
 * kiln/ops/_native.py): 2-D float32 products, softmax cross-entropy, activations, sums over a
 * leading axis, convolution and pooling with their gradients. Each takes NumPy arrays, checks
 * that they are what its kernel reads (dtype, C order, sizes that fit the geometry) and
 * returns a new result, or None for anything else, so that the operator computes in NumPy.
 *
 * Part of _binding.c, which includes it: one translation unit, so NumPy's C API (imported in
 * the module's init) serves both files.
 */

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

/* A new C-ordered float32 array of x's shape (NULL with the exception set). */
static PyArrayObject *f32_like(PyArrayObject *x) {
    return (PyArrayObject *)PyArray_SimpleNew(PyArray_NDIM(x), PyArray_DIMS(x), NPY_FLOAT32);
}

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
    PyArrayObject *out = f32_like(a);
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
    PyArrayObject *out = f32_like(x);
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
    PyArrayObject *out = f32_like(x);
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
