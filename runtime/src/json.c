/* json.c: a strict JSON (RFC 8259) parser into a flat DOM.
 *
 * - No recursion: containers are tracked on an explicit stack of at most RT_MAX_JSON_DEPTH
 *   levels; deeper nesting is an error, so hostile input cannot exhaust the C stack.
 * - Strings are unescaped into one buffer (never longer than the input) and must be valid
 *   UTF-8 after unescaping: lone surrogates, overlong forms and \u0000 (which would cut a C
 *   string short) are refused. Control characters must be escaped.
 * - Numbers follow the JSON grammar exactly; integers that fit int64 are kept exact.
 * - Duplicate keys in an object are refused (sorted check, O(n log n)).
 * - The DOM's memory counts against a limit, checked before each growth.
 * Every error names the line and column.
 */
#include "rt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *t;
    size_t len, p;
    jdoc *doc;
    uint64_t max_bytes;
} parser;

static void line_col(const parser *ps, size_t pos, long *line, long *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < pos && i < ps->len; i++) {
        if (ps->t[i] == '\n') { (*line)++; *col = 1; }
        else (*col)++;
    }
}

static kiln_status syntax(const parser *ps, const char *what) {
    long line, col;
    line_col(ps, ps->p, &line, &col);
    return rt_fail(KILN_ERR_JSON, "invalid JSON at line %ld, column %ld (byte %zu): %s", line,
                   col, ps->p, what);
}

static void skip_ws(parser *ps) {
    while (ps->p < ps->len) {
        char c = ps->t[ps->p];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        ps->p++;
    }
}

static int32_t new_value(parser *ps, kiln_status *st) {
    jdoc *d = ps->doc;
    if (d->n == d->cap) {
        if (d->cap >= INT32_MAX / 2) {
            *st = rt_fail(KILN_ERR_LIMIT, "JSON has too many values");
            return -1;
        }
        int32_t cap = d->cap ? d->cap * 2 : 256;
        uint64_t bytes = (uint64_t)cap * sizeof(jval) + d->str_cap;
        if (bytes > ps->max_bytes) {
            *st = rt_fail(KILN_ERR_LIMIT, "the symbol file's JSON needs more than the memory "
                                          "limit (%llu bytes)",
                          (unsigned long long)ps->max_bytes);
            return -1;
        }
        jval *v = (jval *)realloc(d->v, (size_t)cap * sizeof(jval));
        if (!v) {
            *st = rt_fail(KILN_ERR_NOMEM, "out of memory parsing JSON");
            return -1;
        }
        d->v = v;
        d->cap = cap;
    }
    jval *v = &d->v[d->n];
    memset(v, 0, sizeof *v);
    v->next = -1;
    v->child = -1;
    return d->n++;
}

static int hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* At an opening quote: unescape the string into strbuf. An escape is never shorter than what
 * it stands for (\uXXXX -> at most 3 bytes, a surrogate pair 12 -> 4), so strbuf, sized to the
 * input, always has room. */
static kiln_status parse_string(parser *ps, const char **out, uint32_t *out_len) {
    jdoc *d = ps->doc;
    ps->p++; /* the quote */
    char *o = d->strbuf + d->str_used;
    size_t n = 0;
    for (;;) {
        if (ps->p >= ps->len) return syntax(ps, "the file ends inside a string");
        unsigned char c = (unsigned char)ps->t[ps->p];
        if (c == '"') { ps->p++; break; }
        if (c < 0x20) return syntax(ps, "a control character inside a string (must be escaped)");
        if (c != '\\') { o[n++] = (char)c; ps->p++; continue; }
        if (ps->p + 1 >= ps->len) return syntax(ps, "the file ends inside an escape");
        char e = ps->t[ps->p + 1];
        ps->p += 2;
        switch (e) {
        case '"': o[n++] = '"'; break;
        case '\\': o[n++] = '\\'; break;
        case '/': o[n++] = '/'; break;
        case 'b': o[n++] = '\b'; break;
        case 'f': o[n++] = '\f'; break;
        case 'n': o[n++] = '\n'; break;
        case 'r': o[n++] = '\r'; break;
        case 't': o[n++] = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (ps->len - ps->p < 4 || hex4(ps->t + ps->p, &cp) != 0)
                return syntax(ps, "\\u needs four hex digits");
            ps->p += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return syntax(ps, "a lone low surrogate");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (ps->len - ps->p < 6 || ps->t[ps->p] != '\\' || ps->t[ps->p + 1] != 'u' ||
                    hex4(ps->t + ps->p + 2, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                    return syntax(ps, "a high surrogate without its low half");
                ps->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp == 0) return syntax(ps, "\\u0000 (a NUL character) inside a string");
            n += put_utf8(o + n, cp);
            break;
        }
        default:
            ps->p--;
            return syntax(ps, "an unknown escape");
        }
    }
    if (!rt_utf8_valid(o, n)) return syntax(ps, "a string that is not valid UTF-8");
    if (n > UINT32_MAX - 1) return syntax(ps, "a string too long");
    o[n] = 0;
    d->str_used += n + 1;
    *out = o;
    *out_len = (uint32_t)n;
    return KILN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * numbers
 * ------------------------------------------------------------------------------------------- */

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Strict JSON grammar over s[0:len], then the value. Decimal to double: up to 19 significant
 * digits in a uint64; exact (one rounding) when the mantissa has at most 53 bits and the
 * power of ten is at most 22, else through long double (within an ulp). */
int rt_parse_number(const char *s, size_t len, double *num, int64_t *ival, int *is_int) {
    static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    size_t i = 0;
    int neg = 0;
    uint64_t m = 0;
    int sig = 0;          /* significant digits kept in m */
    long exp10 = 0;
    int integral = 1;
    if (i < len && s[i] == '-') { neg = 1; i++; }
    if (i >= len || !is_digit(s[i])) return -1;
    if (s[i] == '0') {
        i++;
    } else {
        for (; i < len && is_digit(s[i]); i++) {
            if (sig < 19) { m = m * 10 + (uint64_t)(s[i] - '0'); if (m) sig++; }
            else exp10++;
        }
    }
    if (i < len && s[i] == '.') {
        integral = 0;
        i++;
        if (i >= len || !is_digit(s[i])) return -1;
        for (; i < len && is_digit(s[i]); i++) {
            if (sig < 19) { m = m * 10 + (uint64_t)(s[i] - '0'); if (m) sig++; exp10--; }
        }
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        integral = 0;
        i++;
        int eneg = 0;
        if (i < len && (s[i] == '+' || s[i] == '-')) { eneg = s[i] == '-'; i++; }
        if (i >= len || !is_digit(s[i])) return -1;
        long e = 0;
        for (; i < len && is_digit(s[i]); i++)
            if (e < 100000) e = e * 10 + (s[i] - '0');
        exp10 += eneg ? -e : e;
    }
    if (i != len) return -1;
    double v;
    if (m == 0) {
        v = 0.0;
    } else if (exp10 == 0) {
        v = (double)m;
    } else if (m < ((uint64_t)1 << 53) && exp10 > 0 && exp10 <= 22) {
        v = (double)m * p10[exp10];
    } else if (m < ((uint64_t)1 << 53) && exp10 < 0 && exp10 >= -22) {
        v = (double)m / p10[-exp10];
    } else if (exp10 > 400) {
        v = HUGE_VAL;
    } else if (exp10 < -400) {
        v = 0.0;
    } else {
        v = (double)((long double)m * powl(10.0L, (long double)exp10));
    }
    *num = neg ? -v : v;
    *is_int = 0;
    *ival = 0;
    if (integral) {
        /* exact int64 from the digits (m may have dropped some) */
        uint64_t u = 0;
        size_t k = neg ? 1 : 0;
        int ok = 1;
        for (; k < len; k++) {
            uint64_t dgt = (uint64_t)(s[k] - '0');
            if (u > (UINT64_MAX - dgt) / 10) { ok = 0; break; }
            u = u * 10 + dgt;
        }
        uint64_t lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        if (ok && u <= lim) {
            *is_int = 1;
            *ival = neg ? (u == lim ? INT64_MIN : -(int64_t)u) : (int64_t)u;
        }
    }
    return 0;
}

static kiln_status parse_number(parser *ps, jval *v) {
    size_t start = ps->p;
    while (ps->p < ps->len) {
        char c = ps->t[ps->p];
        if (!(is_digit(c) || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E')) break;
        ps->p++;
    }
    int is_int;
    if (rt_parse_number(ps->t + start, ps->p - start, &v->num, &v->ival, &is_int) != 0) {
        ps->p = start;
        return syntax(ps, "a malformed number");
    }
    v->is_int = (uint8_t)is_int;
    v->type = J_NUM;
    return KILN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * duplicate keys
 * ------------------------------------------------------------------------------------------- */

static int cmp_keys(const jdoc *d, int32_t a, int32_t b) {
    const jval *x = &d->v[a], *y = &d->v[b];
    if (x->key_len != y->key_len) return x->key_len < y->key_len ? -1 : 1;
    return memcmp(x->key, y->key, x->key_len);
}

/* Heap sort of member indices by key (qsort has no context argument, and a global one would
 * not be thread-safe). */
static void sift(const jdoc *d, int32_t *a, size_t i, size_t n) {
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && cmp_keys(d, a[c], a[c + 1]) < 0) c++;
        if (cmp_keys(d, a[i], a[c]) >= 0) return;
        int32_t t = a[i]; a[i] = a[c]; a[c] = t;
        i = c;
    }
}

static void sort_keys(const jdoc *d, int32_t *a, size_t n) {
    for (size_t i = n / 2; i-- > 0;) sift(d, a, i, n);
    for (size_t end = n; end-- > 1;) {
        int32_t t = a[0]; a[0] = a[end]; a[end] = t;
        sift(d, a, 0, end);
    }
}

static kiln_status check_duplicates(parser *ps, int32_t obj) {
    jdoc *d = ps->doc;
    uint32_t n = d->v[obj].count;
    if (n < 2) return KILN_OK;
    if (n <= 8) { /* the common case: a few keys, compared pairwise */
        for (int32_t a = d->v[obj].child; a >= 0; a = d->v[a].next)
            for (int32_t b = d->v[a].next; b >= 0; b = d->v[b].next)
                if (cmp_keys(d, a, b) == 0)
                    return rt_fail(KILN_ERR_JSON, "invalid JSON: the key \"%s\" appears twice "
                                                  "in one object",
                                   rt_shorten(d->v[a].key, 0));
        return KILN_OK;
    }
    int32_t *idx = (int32_t *)malloc((size_t)n * sizeof(int32_t));
    if (!idx) return rt_fail(KILN_ERR_NOMEM, "out of memory parsing JSON");
    uint32_t k = 0;
    for (int32_t a = d->v[obj].child; a >= 0 && k < n; a = d->v[a].next) idx[k++] = a;
    sort_keys(d, idx, k);
    kiln_status st = KILN_OK;
    for (uint32_t i = 1; i < k; i++)
        if (cmp_keys(d, idx[i - 1], idx[i]) == 0) {
            st = rt_fail(KILN_ERR_JSON, "invalid JSON: the key \"%s\" appears twice in one object",
                         rt_shorten(d->v[idx[i]].key, 0));
            break;
        }
    free(idx);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * the parser
 * ------------------------------------------------------------------------------------------- */

static int match_word(parser *ps, const char *w) {
    size_t n = strlen(w);
    if (ps->len - ps->p < n || memcmp(ps->t + ps->p, w, n) != 0) return 0;
    ps->p += n;
    return 1;
}

typedef struct {
    int32_t node, last;
} frame;

static kiln_status parse_all(parser *ps) {
    jdoc *d = ps->doc;
    frame stack[RT_MAX_JSON_DEPTH];
    int depth = 0;
    kiln_status st = KILN_OK;
    skip_ws(ps);
    for (;;) {
        const char *key = NULL;
        uint32_t key_len = 0;
        if (depth > 0 && d->v[stack[depth - 1].node].type == J_OBJ) {
            if (ps->p >= ps->len || ps->t[ps->p] != '"')
                return syntax(ps, "expected a key (a string)");
            if ((st = parse_string(ps, &key, &key_len)) != KILN_OK) return st;
            skip_ws(ps);
            if (ps->p >= ps->len || ps->t[ps->p] != ':') return syntax(ps, "expected ':'");
            ps->p++;
            skip_ws(ps);
        }
        int32_t idx = new_value(ps, &st);
        if (idx < 0) return st;
        d->v[idx].key = key;
        d->v[idx].key_len = key_len;
        if (depth > 0) {
            frame *f = &stack[depth - 1];
            if (f->last < 0) d->v[f->node].child = idx;
            else d->v[f->last].next = idx;
            f->last = idx;
            d->v[f->node].count++;
        }
        if (ps->p >= ps->len) return syntax(ps, "the file ends where a value should be");
        char c = ps->t[ps->p];
        int closed_now = 0;
        if (c == '{' || c == '[') {
            d->v[idx].type = c == '{' ? J_OBJ : J_ARR;
            ps->p++;
            if (depth == RT_MAX_JSON_DEPTH)
                return rt_fail(KILN_ERR_LIMIT, "JSON nested deeper than %d levels",
                               RT_MAX_JSON_DEPTH);
            stack[depth].node = idx;
            stack[depth].last = -1;
            depth++;
            skip_ws(ps);
            if (ps->p < ps->len && ps->t[ps->p] == (c == '{' ? '}' : ']')) {
                ps->p++;
                depth--;
                closed_now = 1;
            } else {
                continue; /* parse the first element */
            }
        } else if (c == '"') {
            d->v[idx].type = J_STR;
            if ((st = parse_string(ps, &d->v[idx].str, &d->v[idx].str_len)) != KILN_OK)
                return st;
        } else if (c == '-' || is_digit(c)) {
            if ((st = parse_number(ps, &d->v[idx])) != KILN_OK) return st;
        } else if (match_word(ps, "true")) {
            d->v[idx].type = J_TRUE;
        } else if (match_word(ps, "false")) {
            d->v[idx].type = J_FALSE;
        } else if (match_word(ps, "null")) {
            d->v[idx].type = J_NULL;
        } else {
            return syntax(ps, "unexpected character");
        }
        (void)closed_now;
        /* after a value: a comma, the end of containers, or the end of the text */
        for (;;) {
            skip_ws(ps);
            if (depth == 0) {
                if (ps->p != ps->len) return syntax(ps, "text after the JSON value");
                return KILN_OK;
            }
            if (ps->p >= ps->len) return syntax(ps, "the file ends inside a container");
            frame *f = &stack[depth - 1];
            char close = d->v[f->node].type == J_OBJ ? '}' : ']';
            char n = ps->t[ps->p];
            if (n == ',') {
                ps->p++;
                skip_ws(ps);
                break; /* the next element */
            }
            if (n != close)
                return syntax(ps, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
            ps->p++;
            if (close == '}' && (st = check_duplicates(ps, f->node)) != KILN_OK) return st;
            depth--;
        }
    }
}

kiln_status json_parse(const char *text, size_t len, uint64_t max_bytes, jdoc *doc) {
    memset(doc, 0, sizeof *doc);
    if (!text) return rt_fail(KILN_ERR_ARGUMENT, "no JSON text");
    if (len >= INT32_MAX) return rt_fail(KILN_ERR_LIMIT, "the symbol file is larger than 2 GiB");
    if ((uint64_t)len + 1 > max_bytes)
        return rt_fail(KILN_ERR_LIMIT, "the symbol file is larger than the memory limit");
    /* A UTF-8 byte order mark is not JSON (RFC 8259 8.1 lets a parser refuse it); say so. */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        return rt_fail(KILN_ERR_JSON, "invalid JSON: the file starts with a byte order mark");
    doc->strbuf = (char *)malloc(len + 1);
    if (!doc->strbuf) return rt_fail(KILN_ERR_NOMEM, "out of memory parsing JSON");
    doc->str_cap = len + 1;
    parser ps = {text, len, 0, doc, max_bytes};
    kiln_status st = parse_all(&ps);
    if (st != KILN_OK) json_free(doc);
    return st;
}

void json_free(jdoc *doc) {
    free(doc->v);
    free(doc->strbuf);
    memset(doc, 0, sizeof *doc);
}

const jval *json_at(const jdoc *doc, int32_t index) {
    return index < 0 || index >= doc->n ? NULL : &doc->v[index];
}

const jval *json_get(const jdoc *doc, const jval *obj, const char *key) {
    if (!obj || obj->type != J_OBJ) return NULL;
    size_t n = strlen(key);
    for (int32_t i = obj->child; i >= 0; i = doc->v[i].next)
        if (doc->v[i].key_len == n && memcmp(doc->v[i].key, key, n) == 0) return &doc->v[i];
    return NULL;
}

const char *json_type_name(int type) {
    switch (type) {
    case J_NULL: return "null";
    case J_FALSE: case J_TRUE: return "boolean";
    case J_NUM: return "number";
    case J_STR: return "string";
    case J_ARR: return "list";
    default: return "object";
    }
}
