/* params.c: MXNet's NDArray-list format (`*.params`), read into float32 arrays.
 *
 * The layout is documented byte by byte in kiln_runtime.h (and kiln/io/params.py). Reading
 * takes two passes over the buffer: the first checks every record (magic, storage type,
 * shapes, type flag, that the data is all there, with overflow-checked sizes) and the names;
 * the second, once the total is known and within the memory limit, converts the data into
 * one allocation. Nothing is trusted: counts are bounded by the bytes left before anything is
 * allocated for them.
 */
#include "rt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LIST_MAGIC 0x112ULL
#define V1_MAGIC 0xF993FAC8u
#define V2_MAGIC 0xF993FAC9u
#define V3_MAGIC 0xF993FACAu
#define MAX_FILE_DIMS 32

enum { ST_DENSE = 0, ST_ROW_SPARSE = 1, ST_CSR = 2 };

static const int g_itemsize[13] = {4, 8, 2, 1, 4, 1, 8, 1, 2, 2, 4, 8, 2};
static const char *const g_dtype_name[13] = {"float32", "float64", "float16", "uint8",
                                             "int32",   "int8",    "int64",   "bool",
                                             "int16",   "uint16",  "uint32",  "uint64",
                                             "bfloat16"};

typedef struct {
    int ndim;
    int64_t d[MAX_FILE_DIMS];
} fshape;

typedef struct {
    int present, stype, dtype;
    fshape shape, sshape;          /* shape, storage shape (sparse) */
    int naux;
    int aux_type[2];
    fshape aux_shape[2];
    size_t data_off;               /* values */
    size_t aux_off[2];
    uint64_t dense_count;          /* elements of the dense array */
    uint64_t value_count;          /* elements stored (sshape's for sparse) */
} record;

typedef struct {
    const uint8_t *b;
    size_t len, p;
    int index;                     /* the record being read, for messages */
} reader;

static kiln_status trunc_err(const reader *r, const char *what, uint64_t need) {
    return rt_fail(KILN_ERR_PARAMS, "params file truncated: %s of array #%d needs %llu bytes at "
                                    "byte %zu, only %zu left",
                   what, r->index, (unsigned long long)need, r->p, r->len - r->p);
}

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static kiln_status rd(reader *r, int n, const char *what, uint64_t *out) {
    *out = 0;
    if (r->len - r->p < (size_t)n) return trunc_err(r, what, (uint64_t)n);
    *out = le(r->b + r->p, n);
    r->p += (size_t)n;
    return KILN_OK;
}

static kiln_status rd_i32(reader *r, const char *what, int32_t *out) {
    uint64_t v;
    kiln_status st = rd(r, 4, what, &v);
    *out = (int32_t)(uint32_t)v;
    return st;
}

/* i32 ndim then ndim x i64 (numpy_shape: ndim -1 is "none", 0 a scalar; else 0 is "none") */
static kiln_status rd_shape(reader *r, const char *what, int numpy_shape, fshape *s,
                            int *none) {
    int32_t ndim;
    kiln_status st = rd_i32(r, what, &ndim);
    if (st) return st;
    *none = ndim == -1 || (ndim == 0 && !numpy_shape);
    if (*none) { s->ndim = 0; return KILN_OK; }
    if (ndim < 0 || ndim > MAX_FILE_DIMS)
        return rt_fail(KILN_ERR_PARAMS, "array #%d: %s has %d dimensions", r->index, what,
                       (int)ndim);
    s->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        uint64_t v;
        if ((st = rd(r, 8, what, &v))) return st;
        s->d[i] = (int64_t)v;
        if (s->d[i] < 0)
            return rt_fail(KILN_ERR_PARAMS, "array #%d: %s has a negative dimension %lld",
                           r->index, what, (long long)s->d[i]);
    }
    return KILN_OK;
}

static kiln_status count_of(const reader *r, const fshape *s, const char *what, uint64_t *out) {
    uint64_t n = 1;
    for (int i = 0; i < s->ndim; i++)
        if (rt_mul_u64(n, (uint64_t)s->d[i], &n) != 0 || n > ((uint64_t)1 << 48))
            return rt_fail(KILN_ERR_PARAMS, "array #%d: %s has an impossible size (the element "
                                            "count overflows)",
                           r->index, what);
    *out = n;
    return KILN_OK;
}

/* Skip `count` elements of `itemsize` bytes, checking they are there. */
static kiln_status skip_data(reader *r, uint64_t count, int itemsize, const char *what,
                             size_t *off) {
    uint64_t bytes;
    if (rt_mul_u64(count, (uint64_t)itemsize, &bytes) != 0)
        return rt_fail(KILN_ERR_PARAMS, "array #%d: %s is impossibly large", r->index, what);
    if (bytes > r->len - r->p) return trunc_err(r, what, bytes);
    *off = r->p;
    r->p += (size_t)bytes;
    return KILN_OK;
}

static kiln_status read_record(reader *r, record *rec) {
    kiln_status st;
    uint64_t magic;
    size_t start = r->p;
    int none = 0;
    memset(rec, 0, sizeof *rec);
    if ((st = rd(r, 4, "the magic number", &magic))) return st;
    if (magic == V2_MAGIC || magic == V3_MAGIC) {
        int32_t stype;
        if ((st = rd_i32(r, "the storage type", &stype))) return st;
        if (stype < 0 || stype > 2)
            return rt_fail(KILN_ERR_PARAMS, "array #%d has unknown storage type %d (0 dense, "
                                            "1 row_sparse, 2 csr)",
                           r->index, (int)stype);
        rec->stype = stype;
        if (stype != ST_DENSE) {
            if ((st = rd_shape(r, "the storage shape", 1, &rec->sshape, &none))) return st;
            if (none)
                return rt_fail(KILN_ERR_PARAMS, "sparse array #%d has no storage shape",
                               r->index);
        }
        if ((st = rd_shape(r, "the shape", magic == V3_MAGIC, &rec->shape, &none))) return st;
    } else if (magic == V1_MAGIC) {
        if ((st = rd_shape(r, "the shape", 0, &rec->shape, &none))) return st;
    } else {
        /* pre-V1: that u32 was ndim, followed by u32 dims */
        if (magic > MAX_FILE_DIMS)
            return rt_fail(KILN_ERR_PARAMS, "array #%d starts with 0x%08llX at byte %zu, which "
                                            "is not an NDArray magic number (0xF993FAC9 V2, "
                                            "0xF993FACA V3): not an MXNet params file?",
                           r->index, (unsigned long long)magic, start);
        rec->shape.ndim = (int)magic;
        for (int i = 0; i < rec->shape.ndim; i++) {
            uint64_t v;
            if ((st = rd(r, 4, "the shape", &v))) return st;
            rec->shape.d[i] = (int64_t)v;
        }
        none = rec->shape.ndim == 0;
    }
    if (none) return KILN_OK; /* "no array": the record ends here */
    rec->present = 1;
    uint64_t dev;
    if ((st = rd(r, 8, "the device", &dev))) return st;
    int32_t code;
    if ((st = rd_i32(r, "the type flag", &code))) return st;
    if (code < 0 || code > 12)
        return rt_fail(KILN_ERR_PARAMS, "array #%d has unknown type flag %d (0 float32 .. "
                                        "12 bfloat16)",
                       r->index, (int)code);
    rec->dtype = code;
    rec->naux = rec->stype == ST_ROW_SPARSE ? 1 : rec->stype == ST_CSR ? 2 : 0;
    for (int a = 0; a < rec->naux; a++) {
        int32_t t;
        if ((st = rd_i32(r, "a sparse aux type", &t))) return st;
        if (t < 3 || t > 11 || t == 7)
            return rt_fail(KILN_ERR_PARAMS, "sparse array #%d has aux data of type flag %d, not "
                                            "an integer type",
                           r->index, (int)t);
        rec->aux_type[a] = t;
        if ((st = rd_shape(r, "a sparse aux shape", 1, &rec->aux_shape[a], &none))) return st;
        if (none) rec->aux_shape[a].ndim = 1, rec->aux_shape[a].d[0] = 0;
    }
    if ((st = count_of(r, &rec->shape, "the shape", &rec->dense_count))) return st;
    const fshape *vs = rec->stype ? &rec->sshape : &rec->shape;
    if ((st = count_of(r, vs, "the storage shape", &rec->value_count))) return st;
    if ((st = skip_data(r, rec->value_count, g_itemsize[code], "the data", &rec->data_off)))
        return st;
    for (int a = 0; a < rec->naux; a++) {
        uint64_t n = 0;
        if ((st = count_of(r, &rec->aux_shape[a], "a sparse aux shape", &n))) return st;
        if ((st = skip_data(r, n, g_itemsize[rec->aux_type[a]], "sparse aux data",
                            &rec->aux_off[a])))
            return st;
    }
    return KILN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * conversion to float32
 * ------------------------------------------------------------------------------------------- */

static float half_to_float(uint16_t h) {
    int e = (h >> 10) & 0x1F, m = h & 0x3FF;
    float v;
    if (e == 0) v = ldexpf((float)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexpf((float)(m | 0x400), e - 25);
    return (h & 0x8000) ? -v : v;
}

static float bits_to_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static double bits_to_double(uint64_t u) {
    double f;
    memcpy(&f, &u, 8);
    return f;
}

static void convert(const uint8_t *src, int code, uint64_t n, float *dst) {
    const int size = g_itemsize[code];
    const uint16_t probe = 1;
    int little = *(const uint8_t *)&probe == 1;
    if (code == 0 && little) {
        memcpy(dst, src, (size_t)n * 4);
        return;
    }
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *p = src + i * (uint64_t)size;
        uint64_t u = le(p, size);
        float v;
        switch (code) {
        case 0: v = bits_to_float((uint32_t)u); break;
        case 1: v = (float)bits_to_double(u); break;
        case 2: v = half_to_float((uint16_t)u); break;
        case 3: v = (float)(uint8_t)u; break;
        case 4: v = (float)(int32_t)(uint32_t)u; break;
        case 5: v = (float)(int8_t)(uint8_t)u; break;
        case 6: v = (float)(int64_t)u; break;
        case 7: v = u ? 1.0f : 0.0f; break;
        case 8: v = (float)(int16_t)(uint16_t)u; break;
        case 9: v = (float)(uint16_t)u; break;
        case 10: v = (float)(uint32_t)u; break;
        case 11: v = (float)u; break;
        default: v = bits_to_float((uint32_t)u << 16); break; /* bfloat16 */
        }
        dst[i] = v;
    }
}

/* An integer aux element as int64; -1 for a uint64 beyond int64 (caught as out of range). */
static int64_t aux_at(const uint8_t *buf, const record *rec, int a, uint64_t i) {
    int code = rec->aux_type[a], size = g_itemsize[code];
    uint64_t u = le(buf + rec->aux_off[a] + i * (uint64_t)size, size);
    switch (code) {
    case 4: return (int32_t)(uint32_t)u;
    case 5: return (int8_t)(uint8_t)u;
    case 8: return (int16_t)(uint16_t)u;
    case 6: return (int64_t)u;
    case 11: return u > (uint64_t)INT64_MAX ? -1 : (int64_t)u;
    default: return (int64_t)u; /* unsigned 8/16/32 */
    }
}

static uint64_t aux_len(const record *rec, int a) {
    uint64_t n = 1;
    for (int i = 0; i < rec->aux_shape[a].ndim; i++) n *= (uint64_t)rec->aux_shape[a].d[i];
    return n;
}

static kiln_status densify(const uint8_t *buf, const record *rec, int index, float *dst) {
    int code = rec->dtype, size = g_itemsize[code];
    memset(dst, 0, (size_t)rec->dense_count * sizeof(float));
    if (rec->stype == ST_ROW_SPARSE) {
        uint64_t rows = aux_len(rec, 0);
        const fshape *s = &rec->shape, *ss = &rec->sshape;
        int ok = s->ndim >= 1 && ss->ndim == s->ndim && (uint64_t)ss->d[0] == rows;
        for (int i = 1; ok && i < s->ndim; i++) ok = ss->d[i] == s->d[i];
        if (!ok)
            return rt_fail(KILN_ERR_PARAMS, "row_sparse array #%d: its storage shape and row "
                                            "indices do not fit its shape",
                           index);
        uint64_t row = s->d[0] ? rec->dense_count / (uint64_t)s->d[0] : 0;
        for (uint64_t k = 0; k < rows; k++) {
            int64_t r = aux_at(buf, rec, 0, k);
            if (r < 0 || r >= s->d[0])
                return rt_fail(KILN_ERR_PARAMS, "row_sparse array #%d: row index %lld outside "
                                                "its %lld rows",
                               index, (long long)r, (long long)s->d[0]);
            convert(buf + rec->data_off + k * row * (uint64_t)size, code, row,
                    dst + (uint64_t)r * row);
        }
        return KILN_OK;
    }
    /* csr: indptr (rows + 1), indices (nnz), values (nnz) */
    const fshape *s = &rec->shape;
    uint64_t nnz = rec->value_count;
    if (s->ndim != 2 || aux_len(rec, 0) != (uint64_t)s->d[0] + 1 || aux_len(rec, 1) != nnz)
        return rt_fail(KILN_ERR_PARAMS, "csr array #%d: indptr/indices do not fit its shape",
                       index);
    int64_t prev = 0;
    if (aux_at(buf, rec, 0, 0) != 0)
        return rt_fail(KILN_ERR_PARAMS, "csr array #%d: indptr does not start at 0", index);
    for (int64_t r = 0; r < s->d[0]; r++) {
        int64_t hi = aux_at(buf, rec, 0, (uint64_t)r + 1);
        if (hi < prev || (uint64_t)hi > nnz)
            return rt_fail(KILN_ERR_PARAMS, "csr array #%d: indptr is not increasing within "
                                            "[0, %llu]",
                           index, (unsigned long long)nnz);
        for (int64_t k = prev; k < hi; k++) {
            int64_t c = aux_at(buf, rec, 1, (uint64_t)k);
            if (c < 0 || c >= s->d[1])
                return rt_fail(KILN_ERR_PARAMS, "csr array #%d: column index %lld outside its "
                                                "%lld columns",
                               index, (long long)c, (long long)s->d[1]);
            convert(buf + rec->data_off + (uint64_t)k * (uint64_t)size, code, 1,
                    dst + (uint64_t)r * (uint64_t)s->d[1] + (uint64_t)c);
        }
        prev = hi;
    }
    if ((uint64_t)prev != nnz)
        return rt_fail(KILN_ERR_PARAMS, "csr array #%d: indptr ends at %lld, not at its %llu "
                                        "values",
                       index, (long long)prev, (unsigned long long)nnz);
    return KILN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * names
 * ------------------------------------------------------------------------------------------- */

static int name_cmp(const rt_params *p, int a, int b) {
    return strcmp(p->items[a].name, p->items[b].name);
}

static void name_sift(const rt_params *p, int *a, int i, int n) {
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && name_cmp(p, a[c], a[c + 1]) < 0) c++;
        if (name_cmp(p, a[i], a[c]) >= 0) return;
        int t = a[i]; a[i] = a[c]; a[c] = t;
        i = c;
    }
}

/* Duplicate names, found by sorting (a heap sort: no recursion, O(n log n)). */
static kiln_status check_unique(rt_params *p) {
    int n = p->count;
    int *a = (int *)malloc((size_t)(n ? n : 1) * sizeof(int));
    if (!a) return rt_fail(KILN_ERR_NOMEM, "out of memory reading the params file");
    for (int i = 0; i < n; i++) a[i] = i;
    for (int i = n / 2; i-- > 0;) name_sift(p, a, i, n);
    for (int end = n; end-- > 1;) {
        int t = a[0]; a[0] = a[end]; a[end] = t;
        name_sift(p, a, 0, end);
    }
    for (int i = 1; i < n; i++)
        if (name_cmp(p, a[i - 1], a[i]) == 0) {
            kiln_status st = rt_fail(KILN_ERR_PARAMS, "the params file names two arrays \"%s\" "
                                                      "(after removing arg:/aux:)",
                                     rt_shorten(p->items[a[i]].name, 0));
            free(a);
            return st;
        }
    p->sorted = a; /* kept for params_find's binary search */
    return KILN_OK;
}

static kiln_status read_names(reader *r, rt_params *out, uint64_t count) {
    uint64_t k;
    kiln_status st;
    r->index = -1;
    if ((st = rd(r, 8, "the number of names", &k))) return st;
    if (k != 0 && k != count)
        return rt_fail(KILN_ERR_PARAMS, "the params file has %llu names for %llu arrays",
                       (unsigned long long)k, (unsigned long long)count);
    if (k == 0) return KILN_OK;
    /* the names, NUL-terminated, take at most the bytes left plus one per name */
    size_t room = r->len - r->p + (size_t)count;
    out->names = (char *)malloc(room + 1);
    if (!out->names) return rt_fail(KILN_ERR_NOMEM, "out of memory reading the params file");
    size_t used = 0;
    for (uint64_t i = 0; i < k; i++) {
        uint64_t n;
        r->index = (int)i;
        if ((st = rd(r, 8, "the length of a name", &n))) return st;
        if (n > r->len - r->p) return trunc_err(r, "a name", n);
        const char *s = (const char *)r->b + r->p;
        if (memchr(s, 0, (size_t)n))
            return rt_fail(KILN_ERR_PARAMS, "name #%llu holds a NUL byte", (unsigned long long)i);
        if (!rt_utf8_valid(s, (size_t)n))
            return rt_fail(KILN_ERR_PARAMS, "name #%llu is not valid UTF-8", (unsigned long long)i);
        if (n >= 4 && (memcmp(s, "arg:", 4) == 0 || memcmp(s, "aux:", 4) == 0)) {
            s += 4;
            n -= 4;
            r->p += 4;
        }
        memcpy(out->names + used, s, (size_t)n);
        out->names[used + n] = 0;
        out->items[i].name = out->names + used;
        used += (size_t)n + 1;
        r->p += (size_t)n;
    }
    return KILN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * the file
 * ------------------------------------------------------------------------------------------- */

kiln_status params_read(const uint8_t *buf, size_t len, uint64_t max_bytes, rt_params *out) {
    memset(out, 0, sizeof *out);
    reader r = {buf, buf ? len : 0, 0, -1};
    uint64_t magic, reserved, count;
    kiln_status st;
    record *recs = NULL;
    if ((st = rd(&r, 8, "the file header", &magic))) goto fail;
    if (magic != LIST_MAGIC) {
        st = rt_fail(KILN_ERR_PARAMS, "wrong magic number 0x%llX: not an MXNet/kiln params file "
                                      "(expected 0x112)",
                     (unsigned long long)magic);
        goto fail;
    }
    if ((st = rd(&r, 8, "the reserved header field", &reserved))) goto fail;
    if ((st = rd(&r, 8, "the number of arrays", &count))) goto fail;
    /* every record takes at least 4 bytes: this bounds a hostile count before allocating */
    if (count > (r.len - r.p) / 4 || count > INT32_MAX / 2) {
        st = rt_fail(KILN_ERR_PARAMS, "the header claims %llu arrays, more than the file can "
                                      "hold",
                     (unsigned long long)count);
        goto fail;
    }
    uint64_t book;
    if (rt_mul_u64(count, sizeof(record) + sizeof(rt_param), &book) || book > max_bytes) {
        st = rt_fail(KILN_ERR_LIMIT, "the params file's %llu arrays exceed the memory limit",
                     (unsigned long long)count);
        goto fail;
    }
    out->count = (int)count;
    recs = (record *)calloc(count ? (size_t)count : 1, sizeof(record));
    out->items = (rt_param *)calloc(count ? (size_t)count : 1, sizeof(rt_param));
    if (!recs || !out->items) {
        st = rt_fail(KILN_ERR_NOMEM, "out of memory reading the params file");
        goto fail;
    }
    uint64_t total = 0;
    for (uint64_t i = 0; i < count; i++) {
        r.index = (int)i;
        if ((st = read_record(&r, &recs[i]))) goto fail;
        if (!recs[i].present) continue;
        if (recs[i].shape.ndim > RT_MAX_DIMS) {
            st = rt_fail(KILN_ERR_UNSUPPORTED, "array #%llu has %d dimensions; the runtime "
                                               "handles at most %d",
                         (unsigned long long)i, recs[i].shape.ndim, RT_MAX_DIMS);
            goto fail;
        }
        uint64_t bytes;
        if (rt_mul_u64(recs[i].dense_count, 4, &bytes) || rt_align_up(bytes, &bytes) ||
            rt_add_u64(total, bytes, &total) || total > max_bytes) {
            st = rt_fail(KILN_ERR_LIMIT, "the parameters need more than the memory limit (%llu "
                                         "bytes) as float32",
                         (unsigned long long)max_bytes);
            goto fail;
        }
    }
    if ((st = read_names(&r, out, count))) goto fail;
    if (r.p != r.len) {
        st = rt_fail(KILN_ERR_PARAMS, "%zu unexpected bytes after the last name (at byte %zu)",
                     r.len - r.p, r.p);
        goto fail;
    }
    if (out->names && (st = check_unique(out))) goto fail;
    out->bytes = total;
    if (total) {
        void *mem = NULL;
        if (posix_memalign(&mem, RT_ALIGN, (size_t)total) != 0) {
            st = rt_fail(KILN_ERR_NOMEM, "out of memory for %llu bytes of parameters",
                         (unsigned long long)total);
            goto fail;
        }
        out->mem = (float *)mem;
    }
    size_t off = 0;
    for (int i = 0; i < out->count; i++) {
        const record *rec = &recs[i];
        rt_param *p = &out->items[i];
        p->present = rec->present;
        if (!rec->present) continue;
        p->shape.ndim = rec->shape.ndim;
        for (int k = 0; k < rec->shape.ndim; k++) p->shape.d[k] = rec->shape.d[k];
        p->data = (float *)((char *)out->mem + off);
        if (rec->stype == ST_DENSE) convert(buf + rec->data_off, rec->dtype, rec->dense_count,
                                            p->data);
        else if ((st = densify(buf, rec, i, p->data))) goto fail;
        uint64_t bytes;
        rt_align_up(rec->dense_count * 4, &bytes);
        off += (size_t)bytes;
    }
    free(recs);
    return KILN_OK;
fail:
    free(recs);
    params_free(out);
    return st;
}

void params_free(rt_params *p) {
    free(p->items);
    free(p->names);
    free(p->sorted);
    free(p->mem);
    memset(p, 0, sizeof *p);
}

const rt_param *params_find(const rt_params *p, const char *name) {
    if (!p->sorted) return NULL;
    int lo = 0, hi = p->count;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(p->items[p->sorted[mid]].name, name);
        if (c == 0) return &p->items[p->sorted[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const char *rt_dtype_name(int code) { return code >= 0 && code <= 12 ? g_dtype_name[code] : "?"; }
