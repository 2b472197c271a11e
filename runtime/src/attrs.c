/* attrs.c: MXNet attribute strings ("True", "256", "1e-05", "(3, 3)", "None") as values.
 *
 * MXNet writes every operator attribute as a string, the way Python prints the value. These
 * parsers accept what MXNet and kiln write (and Python's spellings: "1.", ".5", "+1", "inf",
 * "2L") and refuse anything else with a message; the caller adds the node and attribute name.
 */
#include "rt.h"

#include <math.h>
#include <string.h>

static void trim(const char **s, size_t *n) {
    while (*n && (**s == ' ' || **s == '\t' || **s == '\n' || **s == '\r')) { (*s)++; (*n)--; }
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t' || (*s)[*n - 1] == '\n' ||
                  (*s)[*n - 1] == '\r'))
        (*n)--;
}

static int ieq(const char *s, size_t n, const char *w) {
    size_t k = strlen(w);
    if (n != k) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != w[i]) return 0;
    }
    return 1;
}

/* A number in Python's spelling: optional sign, "1.", ".5", exponents, inf/nan, a trailing
 * L (Python 2 longs). Normalised to JSON's grammar for rt_parse_number. */
static int number(const char *s, size_t n, double *num, int64_t *ival, int *is_int) {
    char buf[80];
    size_t k = 0, i = 0;
    trim(&s, &n);
    if (n && (s[n - 1] == 'L' || s[n - 1] == 'l')) n--;
    int neg = 0;
    if (n && (s[0] == '+' || s[0] == '-')) { neg = s[0] == '-'; s++; n--; }
    if (ieq(s, n, "inf") || ieq(s, n, "infinity")) {
        *num = neg ? -HUGE_VAL : HUGE_VAL;
        *is_int = 0;
        return 0;
    }
    if (ieq(s, n, "nan")) {
        *num = NAN;
        *is_int = 0;
        return 0;
    }
    if (n == 0 || n > sizeof buf - 8) return -1;
    if (neg) buf[k++] = '-';
    if (s[0] == '.') buf[k++] = '0';
    for (i = 0; i < n; i++) {
        buf[k++] = s[i];
        /* "1." and "1.e5": a digit after the point keeps JSON's grammar */
        if (s[i] == '.' && (i + 1 == n || s[i + 1] == 'e' || s[i + 1] == 'E')) buf[k++] = '0';
    }
    /* JSON forbids leading zeros ("007"); Python ints do too, floats ("00.5") rarely matter */
    return rt_parse_number(buf, k, num, ival, is_int);
}

int attr_float(const char *s, double *out) {
    int64_t iv;
    int is_int;
    if (number(s, strlen(s), out, &iv, &is_int) != 0) {
        rt_fail(KILN_ERR_ATTRIBUTE, "\"%s\" is not a number", rt_shorten(s, 1));
        return -1;
    }
    return 0;
}

static int int_of(const char *s, size_t n, int64_t *out) {
    double d;
    int64_t iv;
    int is_int;
    if (number(s, n, &d, &iv, &is_int) != 0) return -1;
    if (is_int) { *out = iv; return 0; }
    /* "2.0" is an integer too (Python's int(float(text)) when integral) */
    if (!(d == d) || fabs(d) > 9.0e15 || d != floor(d)) return -1;
    *out = (int64_t)d;
    return 0;
}

int attr_int(const char *s, int64_t *out) {
    if (int_of(s, strlen(s), out) != 0) {
        rt_fail(KILN_ERR_ATTRIBUTE, "\"%s\" is not an integer", rt_shorten(s, 1));
        return -1;
    }
    return 0;
}

int attr_bool(const char *s, int *out) {
    size_t n = strlen(s);
    trim(&s, &n);
    if (ieq(s, n, "true") || (n == 1 && s[0] == '1')) { *out = 1; return 0; }
    if (ieq(s, n, "false") || (n == 1 && s[0] == '0')) { *out = 0; return 0; }
    rt_fail(KILN_ERR_ATTRIBUTE, "\"%s\" is not a boolean (True/False/1/0)", rt_shorten(s, 1));
    return -1;
}

int attr_ints(const char *s0, int64_t *vals, int max, int *count, int *is_none, int allow_none) {
    const char *s = s0;
    size_t n = strlen(s);
    *count = 0;
    *is_none = 0;
    trim(&s, &n);
    if (ieq(s, n, "none")) { *is_none = 1; return 0; }
    if (n && (s[0] == '(' || s[0] == '[')) {
        char close = s[0] == '(' ? ')' : ']';
        if (n < 2 || s[n - 1] != close) goto bad;
        s++;
        n -= 2;
    } else if (n) {
        /* a bare number: one element */
        if (max < 1 || int_of(s, n, &vals[0]) != 0) goto bad;
        *count = 1;
        return 0;
    } else {
        goto bad;
    }
    trim(&s, &n);
    while (n) {
        size_t k = 0;
        while (k < n && s[k] != ',') k++;
        const char *item = s;
        size_t len = k;
        trim(&item, &len);
        if (len == 0) goto bad; /* "(,)" or "(1,,2)" */
        if (*count >= max) {
            rt_fail(KILN_ERR_ATTRIBUTE, "\"%s\" has more than %d elements", rt_shorten(s0, 1),
                    max);
            return -1;
        }
        if (ieq(item, len, "none")) {
            if (!allow_none) goto bad;
            vals[(*count)++] = INT64_MIN;
        } else if (int_of(item, len, &vals[*count]) == 0) {
            (*count)++;
        } else {
            goto bad;
        }
        if (k == n) break;
        s += k + 1;
        n -= k + 1;
        trim(&s, &n); /* a trailing comma "(5,)" leaves nothing */
    }
    return 0;
bad:
    rt_fail(KILN_ERR_ATTRIBUTE, "\"%s\" is not a tuple of integers", rt_shorten(s0, 1));
    return -1;
}

int attr_choice(const char *s, const char *const *choices) {
    for (int i = 0; choices[i]; i++)
        if (strcmp(s, choices[i]) == 0) return i;
    return -1;
}
