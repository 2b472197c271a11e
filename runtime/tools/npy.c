/* npy.c: see npy.h. The header is parsed with a small scanner for the three keys NumPy
 * writes; every size is checked against the bytes present before anything is read. */
#define _POSIX_C_SOURCE 200809L
#include "npy.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, size, fmt, ap);
    va_end(ap);
    return -1;
}

/* the text after 'key': in the header, or NULL */
static const char *find_key(const char *h, size_t n, const char *key) {
    size_t k = strlen(key);
    for (size_t i = 0; i + k + 2 <= n; i++) {
        if ((h[i] == '\'' || h[i] == '"') && memcmp(h + i + 1, key, k) == 0 &&
            h[i + 1 + k] == h[i]) {
            size_t j = i + k + 2;
            while (j < n && (h[j] == ' ' || h[j] == ':')) j++;
            return j < n ? h + j : NULL;
        }
    }
    return NULL;
}

int npy_parse(const uint8_t *buf, size_t len, npy_array *out, char *err, size_t es) {
    memset(out, 0, sizeof *out);
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
        return fail(err, es, "not a .npy file (no \\x93NUMPY magic)");
    int major = buf[6];
    size_t hlen, start;
    if (major == 1) {
        hlen = (size_t)buf[8] | ((size_t)buf[9] << 8);
        start = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) return fail(err, es, "truncated .npy header");
        hlen = (size_t)buf[8] | ((size_t)buf[9] << 8) | ((size_t)buf[10] << 16) |
               ((size_t)buf[11] << 24);
        start = 12;
    } else {
        return fail(err, es, ".npy format version %d is not supported", major);
    }
    if (hlen > len - start) return fail(err, es, "truncated .npy header");
    const char *h = (const char *)buf + start, *end = h + hlen;
    const char *d = find_key(h, hlen, "descr"), *fo = find_key(h, hlen, "fortran_order"),
               *sh = find_key(h, hlen, "shape");
    if (!d || !fo || !sh) return fail(err, es, ".npy header lacks descr, fortran_order or shape");
    if ((size_t)(end - fo) >= 4 && memcmp(fo, "True", 4) == 0)
        return fail(err, es, "Fortran-ordered .npy arrays are not supported");
    if (end - d < 5 || (d[0] != '\'' && d[0] != '"'))
        return fail(err, es, "a .npy descr that is not a plain dtype string");
    char order = d[1], kind = d[2];
    int size = d[3] - '0';
    if (d[4] != d[0] || order == '>' || (order != '<' && order != '|' && order != '='))
        return fail(err, es, "a .npy dtype that is not little-endian numeric");
    if (!((kind == 'f' && (size == 2 || size == 4 || size == 8)) ||
          ((kind == 'i' || kind == 'u') && (size == 1 || size == 2 || size == 4 || size == 8)) ||
          (kind == 'b' && size == 1)))
        return fail(err, es, "the .npy dtype %c%d is not supported", kind, size);
    if (*sh != '(') return fail(err, es, "a .npy shape that is not a tuple");
    size_t count = 1;
    const char *p = sh + 1;
    for (;;) {
        while (p < end && (*p == ' ' || *p == ',')) p++;
        if (p >= end) return fail(err, es, "an unterminated .npy shape");
        if (*p == ')') break;
        if (*p < '0' || *p > '9') return fail(err, es, "a .npy shape that is not integers");
        int64_t v = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            if (v > ((int64_t)1 << 40)) return fail(err, es, "a .npy dimension too large");
            v = v * 10 + (*p++ - '0');
        }
        if (out->ndim >= NPY_MAX_DIMS) return fail(err, es, "more than 8 .npy dimensions");
        out->dims[out->ndim++] = v;
        if (v == 0) return fail(err, es, "a .npy array with no elements");
        if (count > ((size_t)1 << 40) / (size_t)v) return fail(err, es, "a .npy array too large");
        count *= (size_t)v;
    }
    size_t data_at = start + hlen;
    if ((len - data_at) / (size_t)size < count || (len - data_at) != count * (size_t)size)
        return fail(err, es, "the .npy data holds %zu bytes, the header says %zu",
                    len - data_at, count * (size_t)size);
    out->data = (float *)malloc(count * sizeof(float));
    if (!out->data) return fail(err, es, "out of memory");
    out->count = count;
    const uint8_t *src = buf + data_at;
    for (size_t i = 0; i < count; i++) {
        const uint8_t *q = src + i * (size_t)size;
        uint64_t u = 0;
        for (int b = size - 1; b >= 0; b--) u = (u << 8) | q[b];
        float v;
        if (kind == 'f' && size == 4) { uint32_t w = (uint32_t)u; memcpy(&v, &w, 4); }
        else if (kind == 'f' && size == 8) { double x; memcpy(&x, &u, 8); v = (float)x; }
        else if (kind == 'f') {
            int e = (int)((u >> 10) & 0x1F), mant = (int)(u & 0x3FF);
            float mag = e == 0 ? ldexpf((float)mant, -24)
                        : e == 31 ? (mant ? NAN : INFINITY)
                                  : ldexpf((float)(mant | 0x400), e - 25);
            v = (u & 0x8000) ? -mag : mag;
        } else if (kind == 'b') v = u ? 1.0f : 0.0f;
        else if (kind == 'u') v = (float)u;
        else {
            int shift = 64 - 8 * size; /* sign-extend */
            v = (float)((int64_t)(u << shift) >> shift);
        }
        out->data[i] = v;
    }
    return 0;
}

int npy_load(const char *path, npy_array *out, char *err, size_t es) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, es, "%s: cannot open (%s)", path, strerror(errno));
    size_t size = 0, room = 1 << 16;
    uint8_t *buf = (uint8_t *)malloc(room);
    while (buf) {
        size_t got = fread(buf + size, 1, room - size, f);
        size += got;
        if (got == 0) break;
        if (size == room) {
            uint8_t *b = room > ((size_t)1 << 34) ? NULL : (uint8_t *)realloc(buf, room * 2);
            if (!b) { free(buf); buf = NULL; break; }
            buf = b;
            room *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        return fail(err, es, "%s: cannot read", path);
    }
    int rc = npy_parse(buf, size, out, err, es);
    free(buf);
    return rc;
}

int npy_save(const char *path, const float *data, const int64_t *dims, int ndim) {
    char shape[256], header[512];
    size_t used = 0, count = 1;
    used += (size_t)snprintf(shape, sizeof shape, "(");
    for (int i = 0; i < ndim && used < sizeof shape - 32; i++) {
        used += (size_t)snprintf(shape + used, sizeof shape - used, "%lld%s", (long long)dims[i],
                                 ndim == 1 ? "," : (i + 1 < ndim ? ", " : ""));
        count *= (size_t)dims[i];
    }
    snprintf(shape + used, sizeof shape - used, ")");
    int n = snprintf(header, sizeof header, "{'descr': '<f4', 'fortran_order': False, "
                                            "'shape': %s, }", shape);
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t hlen = (size_t)n + pad + 1;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xFF),
                             (unsigned char)(hlen >> 8)};
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(header, 1, (size_t)n, f) == (size_t)n;
    for (size_t i = 0; ok && i < pad; i++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    /* little-endian float32, byte by byte so a big-endian host writes the same file */
    for (size_t i = 0; ok && i < count; i++) {
        uint32_t w;
        memcpy(&w, &data[i], 4);
        unsigned char b[4] = {(unsigned char)w, (unsigned char)(w >> 8),
                              (unsigned char)(w >> 16), (unsigned char)(w >> 24)};
        ok = fwrite(b, 1, 4, f) == 4;
    }
    if (fclose(f) != 0) ok = 0;
    return ok ? 0 : -1;
}

void npy_free(npy_array *a) {
    free(a->data);
    memset(a, 0, sizeof *a);
}
