/* infer.c: every value's shape, node by node, from the inputs' shapes; parameter shapes are
 * checked against what each op expects (a weight of the wrong shape is an error here, before
 * any kernel reads it). All arithmetic on dimensions is bounded: dimensions are at most
 * RT_MAX_DIM and element counts at most 2^62 (rt_shape_count), so products of two never
 * overflow int64.
 */
#include "graph.h"
#include "cf.h"

#include <stdio.h>
#include <string.h>

#define X(i) (&m->values[n->in[i]].shape)

static kiln_status shape_err(const char *fmt, const rt_shape *a, const rt_shape *b) {
    char sa[160], sb[160];
    rt_shape_str(a, sa, sizeof sa);
    if (b) rt_shape_str(b, sb, sizeof sb);
    return rt_fail(KILN_ERR_SHAPE, fmt, sa, b ? sb : "");
}

static kiln_status norm_axis(int64_t axis, int ndim, int *out) {
    *out = 0;
    if (axis < -ndim || axis >= ndim || ndim == 0)
        return rt_fail(KILN_ERR_SHAPE, "axis %lld is out of range for %d dimensions",
                       (long long)axis, ndim);
    *out = (int)(axis < 0 ? axis + ndim : axis);
    return KILN_OK;
}

static kiln_status set_shape(rt_shape *s, int ndim, const int64_t *d) {
    if (ndim > RT_MAX_DIMS)
        return rt_fail(KILN_ERR_UNSUPPORTED, "a result of %d dimensions (at most %d)", ndim,
                       RT_MAX_DIMS);
    s->ndim = ndim;
    for (int i = 0; i < ndim; i++) s->d[i] = d[i];
    return KILN_OK;
}

static int64_t count_of(const rt_shape *s) { return rt_shape_count(s); }

/* A parameter-like input must have exactly this shape. */
static kiln_status expect(const kiln_model *m, const rt_node *n, int i, int ndim,
                          const int64_t *d, const char *what) {
    rt_shape want;
    set_shape(&want, ndim, d);
    if (!rt_shape_equal(X(i), &want)) {
        char sa[160], sb[160];
        return rt_fail(KILN_ERR_SHAPE, "the %s '%s' has shape %s; the graph needs %s", what,
                       rt_shorten(m->nodes[m->values[n->in[i]].node].name, 0),
                       rt_shape_str(X(i), sa, sizeof sa), rt_shape_str(&want, sb, sizeof sb));
    }
    return KILN_OK;
}

/* one element per channel: any shape holding c elements, as (c,) */
static kiln_status expect_vec(const kiln_model *m, const rt_node *n, int i, int64_t c,
                              const char *what) {
    if (count_of(X(i)) != c) return expect(m, n, i, 1, &c, what);
    return KILN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * layers
 * ------------------------------------------------------------------------------------------- */

static kiln_status infer_fc(kiln_model *m, rt_node *n, rt_shape *y) {
    const rt_shape *x = X(0);
    int64_t nh = n->a.fc.num_hidden, k, d[RT_MAX_DIMS];
    if (x->ndim < 1) return shape_err("FullyConnected of a 0-d input %s%s", x, NULL);
    if (n->a.fc.flatten) k = count_of(x) / x->d[0];
    else k = x->d[x->ndim - 1];
    int64_t w[2] = {nh, k};
    kiln_status st = expect(m, n, 1, 2, w, "weight");
    if (st || (!n->a.fc.no_bias && (st = expect_vec(m, n, 2, nh, "bias")))) return st;
    if (n->a.fc.flatten) {
        d[0] = x->d[0];
        d[1] = nh;
        return set_shape(y, 2, d);
    }
    memcpy(d, x->d, sizeof d);
    d[x->ndim - 1] = nh;
    return set_shape(y, x->ndim, d);
}

static kiln_status infer_conv(kiln_model *m, rt_node *n, rt_shape *y) {
    const rt_shape *x = X(0);
    int nd = n->a.conv.nd;
    int64_t f = n->a.conv.num_filter, g = n->a.conv.num_group, d[4], w[4];
    if (x->ndim != nd + 2)
        return rt_fail(KILN_ERR_SHAPE, "a %d-D convolution takes %d-D input (N, C, ...), not %d-D",
                       nd, nd + 2, x->ndim);
    int64_t c = x->d[1];
    if (c % g || f % g)
        return rt_fail(KILN_ERR_SHAPE, "num_group %lld does not divide the %lld input channels "
                                       "and %lld filters",
                       (long long)g, (long long)c, (long long)f);
    w[0] = f;
    w[1] = c / g;
    d[0] = x->d[0];
    d[1] = f;
    for (int i = 0; i < nd; i++) {
        int64_t k = n->a.conv.kernel[i], s = n->a.conv.stride[i], p = n->a.conv.pad[i];
        int64_t eff = n->a.conv.dilate[i] * (k - 1) + 1;
        w[2 + i] = k;
        int64_t span = x->d[2 + i] + 2 * p - eff;
        if (span < 0)
            return rt_fail(KILN_ERR_SHAPE, "the kernel (%lld, dilated to %lld) is larger than the "
                                           "padded input (%lld)",
                           (long long)k, (long long)eff, (long long)(x->d[2 + i] + 2 * p));
        d[2 + i] = span / s + 1;
    }
    kiln_status st = expect(m, n, 1, nd + 2, w, "weight");
    if (st || (!n->a.conv.no_bias && (st = expect_vec(m, n, 2, f, "bias")))) return st;
    return set_shape(y, nd + 2, d);
}

static kiln_status infer_pool(kiln_model *m, rt_node *n, rt_shape *y) {
    const rt_shape *x = X(0);
    int nd = n->a.pool.nd;
    int64_t d[4];
    if (n->a.pool.global && (x->ndim == 3 || x->ndim == 4)) nd = x->ndim - 2;
    if (nd < 1 || x->ndim != nd + 2)
        return rt_fail(KILN_ERR_SHAPE, "%d-D pooling takes %d-D input (N, C, ...), not %d-D",
                       nd, nd + 2, x->ndim);
    d[0] = x->d[0];
    d[1] = x->d[1];
    for (int i = 0; i < nd; i++) {
        if (n->a.pool.global) {
            d[2 + i] = 1;
            continue;
        }
        int64_t k = n->a.pool.kernel[i], s = n->a.pool.stride[i], p = n->a.pool.pad[i];
        int64_t span = x->d[2 + i] + 2 * p - k;
        if (span < 0)
            return rt_fail(KILN_ERR_SHAPE, "the pooling window %lld is larger than the padded "
                                           "input %lld",
                           (long long)k, (long long)(x->d[2 + i] + 2 * p));
        d[2 + i] = (n->a.pool.full ? (span + s - 1) / s : span / s) + 1;
    }
    return set_shape(y, nd + 2, d);
}

static kiln_status infer_bn(kiln_model *m, rt_node *n, rt_shape *y) {
    const rt_shape *x = X(0);
    int ax;
    kiln_status st = norm_axis(n->a.bn.axis, x->ndim, &ax);
    if (st) return st;
    int64_t c = x->d[ax];
    static const char *const what[] = {"", "gamma", "beta", "running mean", "running variance"};
    for (int i = 1; i <= 4; i++)
        if ((st = expect_vec(m, n, i, c, what[i]))) return st;
    *y = *x;
    /* outputs 1 and 2: the running statistics (what MXNet gives in inference) */
    for (int k = 1; k <= 2; k++) {
        rt_value *v = &m->values[n->out0 + k];
        v->shape.ndim = 1;
        v->shape.d[0] = c;
        v->alias = n->in[2 + k];
    }
    return KILN_OK;
}

static kiln_status infer_ln(kiln_model *m, rt_node *n, rt_shape *y) {
    const rt_shape *x = X(0);
    int ax;
    kiln_status st = norm_axis(n->a.ln.axis, x->ndim, &ax);
    if (st || (st = expect_vec(m, n, 1, x->d[ax], "gamma")) ||
        (st = expect_vec(m, n, 2, x->d[ax], "beta")))
        return st;
    *y = *x;
    return KILN_OK;
}

static kiln_status infer_leaky(kiln_model *m, rt_node *n, rt_shape *y) {
    const rt_shape *x = X(0);
    *y = *x;
    if (n->sub != LEAKY_PRELU) return KILN_OK;
    int64_t c = x->ndim >= 2 ? x->d[1] : 1, g = count_of(X(1));
    if (g != 1 && g != c) return expect_vec(m, n, 1, c, "prelu gamma");
    return KILN_OK;
}

static kiln_status infer_softmax(kiln_model *m, rt_node *n, rt_shape *y) {
    const rt_shape *x = X(0);
    int ax;
    *y = *x;
    if (n->sub == 2) { /* SoftmaxActivation: instance (rows) or channel (axis 1) */
        if (x->ndim < (n->a.softmax.axis ? 2 : 1))
            return shape_err("SoftmaxActivation needs (N, C, ...), not %s%s", x, NULL);
        return KILN_OK;
    }
    (void)m;
    return norm_axis(n->a.softmax.axis, x->ndim, &ax);
}

/* ---------------------------------------------------------------------------------------------
 * shapes
 * ------------------------------------------------------------------------------------------- */

/* -1 filled in from the element count (numpy.reshape's rule) */
static kiln_status resolve(const rt_shape *x, int64_t *d, int nd, rt_shape *y) {
    int64_t total = count_of(x), known = 1;
    int unknown = -1;
    for (int i = 0; i < nd; i++) {
        if (d[i] == -1) {
            if (unknown >= 0)
                return rt_fail(KILN_ERR_SHAPE, "reshape: more than one dimension is -1");
            unknown = i;
        } else if (d[i] < 1 || d[i] > RT_MAX_DIM) {
            return rt_fail(KILN_ERR_SHAPE, "reshape: dimension %lld (zero-size or negative "
                                           "dimensions are not supported)",
                           (long long)d[i]);
        } else {
            if (known > total / d[i] + 1) known = total + 1; /* certainly too big */
            else known *= d[i];
        }
    }
    if (unknown >= 0) {
        if (known > total || total % known)
            return shape_err("reshape: cannot reshape %s into the codes given%s", x, NULL);
        d[unknown] = total / known;
    }
    kiln_status st = set_shape(y, nd, d);
    if (st) return st;
    if (count_of(y) != total) {
        char sa[160], sb[160];
        return rt_fail(KILN_ERR_SHAPE, "reshape: cannot reshape %s into %s",
                       rt_shape_str(x, sa, sizeof sa), rt_shape_str(y, sb, sizeof sb));
    }
    return KILN_OK;
}

static kiln_status codes_err(const char *what) {
    return rt_fail(KILN_ERR_SHAPE, "reshape: %s", what);
}

/* MXNet's codes over shape s; legacy: 0 copy, -1 infer, -2 rest, -3 merge two, -4 a b split;
 * npx: -2 copy, -3 drop a 1, -4 rest, -5 merge two, -6 a b split; d >= 0 a size. */
static kiln_status apply_codes(const rt_shape *s, const int64_t *codes, int nc, int npx,
                               int64_t *out, int *nout) {
    int i = 0, o = 0;
    const int COPY = npx ? -2 : 0, REST = npx ? -4 : -2, MERGE = npx ? -5 : -3,
              SPLIT = npx ? -6 : -4;
    for (int j = 0; j < nc; j++) {
        int64_t c = codes[j];
        if (o >= RT_MAX_DIMS + 2) return codes_err("too many dimensions");
        if (c == COPY) {
            if (i >= s->ndim) return codes_err("the codes use more dimensions than the input has");
            out[o++] = s->d[i++];
        } else if (c > 0 || (npx && c == 0) || c == -1) {
            out[o++] = c;
            i++;
        } else if (c == REST) {
            for (; i < s->ndim; i++) {
                if (o >= RT_MAX_DIMS + 2) return codes_err("too many dimensions");
                out[o++] = s->d[i];
            }
        } else if (c == MERGE) {
            if (i + 1 >= s->ndim)
                return codes_err("the codes use more dimensions than the input has");
            out[o++] = s->d[i] * s->d[i + 1]; /* both <= 2^40: no overflow, checked later */
            i += 2;
        } else if (c == SPLIT) {
            if (j + 2 >= nc) return codes_err("a split code needs two sizes after it");
            if (i >= s->ndim) return codes_err("the codes use more dimensions than the input has");
            int64_t a = codes[j + 1], b = codes[j + 2], dim = s->d[i++];
            if (a == -1 && b > 0) a = dim / b;
            if (b == -1 && a > 0) b = dim / a;
            if (a < 1 || b < 1 || a > dim || b > dim || a > dim / b || a * b != dim)
                return codes_err("cannot split a dimension as the codes say");
            out[o++] = a;
            out[o++] = b;
            j += 2;
        } else if (npx && c == -3) {
            if (i >= s->ndim || s->d[i] != 1)
                return codes_err("code -3 drops a dimension that is not 1");
            i++;
        } else {
            return rt_fail(KILN_ERR_SHAPE, "reshape: unknown code %lld", (long long)c);
        }
    }
    *nout = o;
    return KILN_OK;
}

static void reverse_codes(const int64_t *c, int n, int split, int64_t *out) {
    int o = 0;
    for (int j = n - 1; j >= 0;) {
        if (j >= 2 && c[j - 2] == split) { /* "split a b" reads "split b a" from the right */
            out[o++] = split;
            out[o++] = c[j];
            out[o++] = c[j - 1];
            j -= 3;
        } else {
            out[o++] = c[j--];
        }
    }
}

static kiln_status infer_reshape(kiln_model *m, rt_node *n, rt_shape *y) {
    const rt_shape *x = X(0);
    int npx = n->sub != RESHAPE_LEGACY, nc = n->a.reshape.n, nd;
    int64_t d[RT_MAX_DIMS + 2];
    kiln_status st;
    if (!n->a.reshape.reverse) {
        st = apply_codes(x, n->a.reshape.codes, nc, npx, d, &nd);
    } else {
        int64_t rc[RT_MAX_CODES], rd[RT_MAX_DIMS + 2];
        rt_shape rx = *x;
        for (int i = 0; i < x->ndim; i++) rx.d[i] = x->d[x->ndim - 1 - i];
        reverse_codes(n->a.reshape.codes, nc, npx ? -6 : -4, rc);
        st = apply_codes(&rx, rc, nc, npx, rd, &nd);
        for (int i = 0; i < nd; i++) d[i] = rd[nd - 1 - i];
    }
    if (st) return st;
    if (nd > RT_MAX_DIMS)
        return rt_fail(KILN_ERR_UNSUPPORTED, "reshape to more than %d dimensions", RT_MAX_DIMS);
    return resolve(x, d, nd, y);
}

static kiln_status infer_squeeze(kiln_model *m, rt_node *n, rt_shape *y) {
    const rt_shape *x = X(0);
    int drop[RT_MAX_DIMS] = {0}, ax;
    kiln_status st;
    if (n->a.squeeze.n == 0) {
        for (int i = 0; i < x->ndim; i++) drop[i] = x->d[i] == 1;
    } else {
        for (int k = 0; k < n->a.squeeze.n; k++) {
            if ((st = norm_axis(n->a.squeeze.axes[k], x->ndim, &ax))) return st;
            if (x->d[ax] != 1)
                return rt_fail(KILN_ERR_SHAPE, "squeeze: axis %d has size %lld, not 1", ax,
                               (long long)x->d[ax]);
            drop[ax] = 1;
        }
    }
    y->ndim = 0;
    for (int i = 0; i < x->ndim; i++)
        if (!drop[i]) y->d[y->ndim++] = x->d[i];
    return KILN_OK;
}

static kiln_status infer_transpose(kiln_model *m, rt_node *n, rt_shape *y) {
    const rt_shape *x = X(0);
    int seen[RT_MAX_DIMS] = {0};
    y->ndim = x->ndim;
    if (n->a.transpose.n == 0) {
        for (int i = 0; i < x->ndim; i++) y->d[i] = x->d[x->ndim - 1 - i];
        return KILN_OK;
    }
    if (n->a.transpose.n != x->ndim)
        return rt_fail(KILN_ERR_SHAPE, "transpose: %d axes for %d dimensions",
                       n->a.transpose.n, x->ndim);
    for (int i = 0; i < x->ndim; i++) {
        int ax;
        kiln_status st = norm_axis(n->a.transpose.axes[i], x->ndim, &ax);
        if (st) return st;
        if (seen[ax]++) return rt_fail(KILN_ERR_SHAPE, "transpose: axis %d repeats", ax);
        y->d[i] = x->d[ax];
    }
    return KILN_OK;
}

static kiln_status infer_concat(kiln_model *m, rt_node *n, rt_shape *y) {
    const rt_shape *x = X(0);
    int ax;
    kiln_status st;
    if (n->a.concat.flat) {
        int64_t total = 0;
        for (int i = 0; i < n->n_in; i++) {
            total += count_of(X(i)); /* each <= 2^62: checked before it can overflow */
            if (total > RT_MAX_DIM) return rt_fail(KILN_ERR_LIMIT, "concatenate: too large");
        }
        y->ndim = 1;
        y->d[0] = total;
        return KILN_OK;
    }
    if (n->sub == 1) { /* stack: equal shapes, a new axis */
        if ((st = norm_axis(n->a.concat.axis, x->ndim + 1, &ax))) return st;
        for (int i = 1; i < n->n_in; i++)
            if (!rt_shape_equal(X(i), x))
                return shape_err("stack: shapes %s and %s differ", x, X(i));
        if (x->ndim + 1 > RT_MAX_DIMS) return rt_fail(KILN_ERR_UNSUPPORTED, "stack: too many dims");
        y->ndim = x->ndim + 1;
        for (int i = 0, k = 0; i < y->ndim; i++) y->d[i] = i == ax ? n->n_in : x->d[k++];
        return KILN_OK;
    }
    if ((st = norm_axis(n->a.concat.axis, x->ndim, &ax))) return st;
    *y = *x;
    for (int i = 1; i < n->n_in; i++) {
        const rt_shape *s = X(i);
        int ok = s->ndim == x->ndim;
        for (int k = 0; ok && k < x->ndim; k++) ok = k == ax || s->d[k] == x->d[k];
        if (!ok) return shape_err("concatenate: shapes %s and %s do not fit", x, s);
        y->d[ax] += s->d[ax]; /* each <= 2^40, at most 4096 inputs: no overflow */
    }
    return KILN_OK;
}

static kiln_status infer_reduce(kiln_model *m, rt_node *n, rt_shape *y) {
    const rt_shape *x = X(0);
    int red[RT_MAX_DIMS] = {0}, ax;
    for (int k = 0; k < n->a.reduce.n; k++) {
        kiln_status st = norm_axis(n->a.reduce.axes[k], x->ndim, &ax);
        if (st) return st;
        red[ax] = 1;
    }
    for (int i = 0; i < x->ndim; i++) {
        if (n->a.reduce.all) red[i] = !n->a.reduce.exclude;
        else if (n->a.reduce.exclude) red[i] = !red[i];
    }
    y->ndim = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (!red[i]) y->d[y->ndim++] = x->d[i];
        else if (n->a.reduce.keepdims) y->d[y->ndim++] = 1;
    }
    return KILN_OK;
}

static kiln_status broadcast(const rt_shape *a, const rt_shape *b, rt_shape *y) {
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    y->ndim = nd;
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int64_t da = ia >= 0 ? a->d[ia] : 1, db = ib >= 0 ? b->d[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return shape_err("cannot broadcast %s with %s", a, b);
        y->d[i] = da == 1 ? db : da;
    }
    return KILN_OK;
}

/* dot (MXNet 1.x) and np.dot: a's last axis against b's first (b at most 2-D for np.dot,
 * where the two differ); transpose_a/transpose_b on inputs of at most 2 dimensions. */
static kiln_status infer_dot(kiln_model *m, rt_node *n, rt_shape *y) {
    const rt_shape *a = X(0), *b = X(1);
    int ta = n->a.dot.ta && a->ndim == 2, tb = n->a.dot.tb && b->ndim == 2;
    if (a->ndim == 0 || b->ndim == 0)
        return shape_err("dot of a 0-d operand (%s with %s) is not supported", a, b);
    if ((n->a.dot.ta && a->ndim > 2) || (n->a.dot.tb && b->ndim > 2))
        return rt_fail(KILN_ERR_UNSUPPORTED, "dot with transpose_a/transpose_b of an input of "
                                             "more than 2 dimensions is not supported");
    if (n->sub == 1 && b->ndim > 2)
        return rt_fail(KILN_ERR_UNSUPPORTED, "np.dot with a second operand of %d dimensions is "
                                             "not supported (at most 2)",
                       b->ndim);
    int64_t ka = ta ? a->d[0] : a->d[a->ndim - 1], kb = tb ? b->d[1] : b->d[0];
    if (ka != kb) return shape_err("dot: shapes %s and %s do not fit", a, b);
    if (a->ndim - 1 + b->ndim - 1 > RT_MAX_DIMS)
        return rt_fail(KILN_ERR_UNSUPPORTED, "dot: a result of more than %d dimensions",
                       RT_MAX_DIMS);
    y->ndim = 0;
    if (ta) y->d[y->ndim++] = a->d[1];
    else for (int i = 0; i < a->ndim - 1; i++) y->d[y->ndim++] = a->d[i];
    if (tb) y->d[y->ndim++] = b->d[0];
    else for (int i = 1; i < b->ndim; i++) y->d[y->ndim++] = b->d[i];
    return KILN_OK;
}

static kiln_status infer_flip(kiln_model *m, rt_node *n, rt_shape *y) {
    const rt_shape *x = X(0);
    int ax;
    for (int k = 0; k < n->a.flip.n; k++) {
        kiln_status st = norm_axis(n->a.flip.axes[k], x->ndim, &ax);
        if (st) return st;
    }
    *y = *x;
    return KILN_OK;
}

/* Python's slice rules per axis: None takes the end the step runs from or to, negative
 * positions count from the end, positions are clamped to the axis */
kiln_status rt_slice_ranges(const rt_node *n, const rt_shape *x, int64_t *offset,
                            int64_t *stride, rt_shape *y) {
    int first = 0, count = n->a.slice.n;
    kiln_status st;
    if (n->sub == 1) { /* slice_axis */
        if ((st = norm_axis(n->a.slice.axis, x->ndim, &first))) return st;
    } else if (count > x->ndim) {
        return rt_fail(KILN_ERR_SHAPE, "slice: %d axes for an input of %d dimensions", count,
                       x->ndim);
    }
    *y = *x;
    *offset = 0;
    int64_t inner = 1;
    for (int i = x->ndim - 1; i >= 0; i--) {
        stride[i] = inner;
        inner *= x->d[i];
    }
    for (int k = 0; k < count; k++) {
        int ax = first + k;
        int64_t dim = x->d[ax], b = n->a.slice.begin[k], e = n->a.slice.end[k];
        int64_t step = n->a.slice.step[k] == INT64_MIN ? 1 : n->a.slice.step[k]; /* not 0 */
        int64_t lo = step > 0 ? 0 : -1, hi = step > 0 ? dim : dim - 1;
        if (b == INT64_MIN) b = step > 0 ? 0 : dim - 1;
        else b = b < 0 ? b + dim : b;
        if (e == INT64_MIN) e = step > 0 ? dim : -1;
        else e = e < 0 ? e + dim : e;
        b = b < lo ? lo : b > hi ? hi : b;
        e = e < lo ? lo : e > hi ? hi : e;
        int64_t len = step > 0 ? (e - b + step - 1) / step : (b - e - step - 1) / -step;
        if (len < 1)
            return rt_fail(KILN_ERR_SHAPE, "slice: axis %d gives an empty result (not supported)",
                           ax);
        *offset += b * stride[ax];
        /* one element: no stride; else |step| < dim and stride * step stays below 2^62 */
        stride[ax] = len == 1 ? 0 : stride[ax] * step;
        y->d[ax] = len;
    }
    return KILN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * the pass
 * ------------------------------------------------------------------------------------------- */

static kiln_status infer_node(kiln_model *m, rt_node *n) {
    rt_shape *y = &m->values[n->out0].shape;
    const rt_shape *x = n->n_in ? X(0) : NULL;
    int64_t d[RT_MAX_DIMS];
    int ax;
    kiln_status st;
    switch (n->op) {
    case OP_FC: return infer_fc(m, n, y);
    case OP_CONV: return infer_conv(m, n, y);
    case OP_POOL: return infer_pool(m, n, y);
    case OP_BN: return infer_bn(m, n, y);
    case OP_LN: return infer_ln(m, n, y);
    case OP_LEAKY: return infer_leaky(m, n, y);
    case OP_SOFTMAX: return infer_softmax(m, n, y);
    case OP_FLATTEN:
        d[0] = x->ndim ? x->d[0] : 1;
        d[1] = count_of(x) / d[0];
        return set_shape(y, 2, d);
    case OP_RESHAPE: return infer_reshape(m, n, y);
    case OP_EXPAND_DIMS:
        if ((st = norm_axis(n->a.expand.axis, x->ndim + 1, &ax))) return st;
        if (x->ndim + 1 > RT_MAX_DIMS)
            return rt_fail(KILN_ERR_UNSUPPORTED, "expand_dims beyond %d dimensions", RT_MAX_DIMS);
        y->ndim = x->ndim + 1;
        for (int i = 0, k = 0; i < y->ndim; i++) y->d[i] = i == ax ? 1 : x->d[k++];
        return KILN_OK;
    case OP_SQUEEZE: return infer_squeeze(m, n, y);
    case OP_TRANSPOSE: return infer_transpose(m, n, y);
    case OP_CONCAT: return infer_concat(m, n, y);
    case OP_REDUCE: return infer_reduce(m, n, y);
    case OP_BINARY: return broadcast(X(0), X(1), y);
    case OP_FILL:
        *y = n->n_in ? *x : n->a.fill.shape;
        return KILN_OK;
    case OP_DOT: return infer_dot(m, n, y);
    case OP_FLIP: return infer_flip(m, n, y);
    case OP_SLICE: {
        int64_t offset, stride[RT_MAX_DIMS];
        return rt_slice_ranges(n, x, &offset, stride, y);
    }
    case OP_RNN: return rnn_infer(m, n);
    case OP_FOREACH: case OP_WHILE: case OP_COND: return cf_infer(m, n);
    case OP_ADDN:
        for (int i = 1; i < n->n_in; i++)
            if (!rt_shape_equal(X(i), x))
                return shape_err("add_n: shapes %s and %s differ", x, X(i));
        *y = *x;
        return KILN_OK;
    default: /* identity, unary, scalar, clip */
        *y = *x;
        return KILN_OK;
    }
}

kiln_status infer_shapes(kiln_model *m) {
    for (int i = 0; i < m->n_inputs; i++) {
        rt_value *v = &m->values[m->inputs[i]];
        if (!m->input_set[i]) {
            if (v->uses) return rt_fail(KILN_ERR_STATE, "input %d ('%s') has not been set", i,
                                        rt_shorten(m->nodes[v->node].name, 0));
            v->shape.ndim = 0; /* unused and unset: a scalar nobody reads */
            continue;
        }
        v->shape = m->input_shape[i];
    }
    for (int i = 0; i < m->n_nodes; i++) {
        rt_node *n = &m->nodes[i];
        if (n->op == OP_VAR) continue;
        kiln_status st = infer_node(m, n);
        if (st) {
            rt_error_prefix("%s", node_desc(m, i));
            return st;
        }
        for (int k = 0; k < n->n_out; k++) {
            rt_value *v = &m->values[n->out0 + k];
            if (v->hidden) continue;
            if (rt_shape_count(&v->shape) < 0) {
                char s[160];
                return rt_fail(KILN_ERR_LIMIT, "%s: output shape %s is empty or too large",
                               node_desc(m, i), rt_shape_str(&v->shape, s, sizeof s));
            }
        }
        if (ops_is_alias(n)) m->values[n->out0].alias = n->in[0];
    }
    return KILN_OK;
}
