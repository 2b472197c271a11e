/* error.c: the thread-local error message, checked arithmetic, UTF-8 validation, shapes. */
#include "rt.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RT_MSG_SIZE 1024
#define RT_SCRATCH 4      /* per-thread buffers for names in messages (rt_shorten, node_desc) */
#define RT_SCRATCH_SIZE 256

/* One message buffer per thread (C99 has no thread-local storage; POSIX keys do). A thread
 * whose buffer cannot be allocated shares a static fallback: messages may then mix, but
 * nothing fails. */
static pthread_key_t g_key;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_key_ok;
static char g_fallback[RT_MSG_SIZE + RT_SCRATCH * RT_SCRATCH_SIZE];

static void make_key(void) { g_key_ok = pthread_key_create(&g_key, free) == 0; }

static char *msg_buffer(void) {
    pthread_once(&g_once, make_key);
    if (!g_key_ok) return g_fallback;
    char *buf = (char *)pthread_getspecific(g_key);
    if (!buf) {
        buf = (char *)calloc(1, RT_MSG_SIZE + RT_SCRATCH * RT_SCRATCH_SIZE);
        if (!buf || pthread_setspecific(g_key, buf) != 0) {
            free(buf);
            return g_fallback;
        }
    }
    return buf;
}

kiln_status rt_fail(kiln_status code, const char *fmt, ...) {
    char *buf = msg_buffer();
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, RT_MSG_SIZE, fmt, ap);
    va_end(ap);
    return code;
}

void rt_error_prefix(const char *fmt, ...) {
    char *buf = msg_buffer();
    char old[RT_MSG_SIZE], pre[RT_MSG_SIZE];
    memcpy(old, buf, RT_MSG_SIZE);
    old[RT_MSG_SIZE - 1] = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    snprintf(buf, RT_MSG_SIZE, "%.300s: %.700s", pre, old);
}

void rt_clear_error(void) { msg_buffer()[0] = 0; }

const char *kiln_last_error(void) { return msg_buffer(); }

const char *kiln_status_name(kiln_status s) {
    static const char *const names[] = {
        "KILN_OK", "KILN_ERR_ARGUMENT", "KILN_ERR_IO", "KILN_ERR_JSON", "KILN_ERR_GRAPH",
        "KILN_ERR_UNSUPPORTED", "KILN_ERR_ATTRIBUTE", "KILN_ERR_PARAMS", "KILN_ERR_SHAPE",
        "KILN_ERR_LIMIT", "KILN_ERR_NOMEM", "KILN_ERR_STATE"};
    if ((int)s < 0 || (size_t)s >= sizeof names / sizeof names[0]) return "KILN_ERR_UNKNOWN";
    return names[s];
}

int rt_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (a != 0 && b > UINT64_MAX / a) return -1;
    *out = a * b;
    return 0;
}

int rt_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (b > UINT64_MAX - a) return -1;
    *out = a + b;
    return 0;
}

int rt_align_up(uint64_t a, uint64_t *out) {
    if (a > UINT64_MAX - (RT_ALIGN - 1)) return -1;
    *out = (a + RT_ALIGN - 1) / RT_ALIGN * RT_ALIGN;
    return 0;
}

int rt_utf8_valid(const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t n;
        unsigned cp, min;
        if ((c & 0xE0) == 0xC0) { n = 1; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { n = 2; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { n = 3; cp = c & 0x07; min = 0x10000; }
        else return 0;
        if (len - i - 1 < n) return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += n + 1;
    }
    return 1;
}

char *rt_scratch_text(int slot) {
    return msg_buffer() + RT_MSG_SIZE + (slot & (RT_SCRATCH - 1)) * RT_SCRATCH_SIZE;
}

const char *rt_shorten(const char *s, int slot) {
    return rt_shorten_into(s, rt_scratch_text(slot));
}

const char *rt_shorten_into(const char *s, char *b) {
    size_t i = 0, j = 0;
    if (!s) return "(null)";
    while (s[i] && j < 80 - 4) {
        unsigned char c = (unsigned char)s[i++];
        b[j++] = (c < 0x20 || c == 0x7F) ? '?' : (char)c;
    }
    if (s[i]) { b[j++] = '.'; b[j++] = '.'; b[j++] = '.'; }
    b[j] = 0;
    return b;
}

int64_t rt_shape_count(const rt_shape *s) {
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++) {
        int64_t d = s->d[i];
        if (d < 1 || d > RT_MAX_DIM) return -1;
        if (n > ((int64_t)1 << 62) / d) return -1;
        n *= d;
    }
    return n;
}

int rt_shape_equal(const rt_shape *a, const rt_shape *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->d[i] != b->d[i]) return 0;
    return 1;
}

const char *rt_shape_str(const rt_shape *s, char *buf, size_t size) {
    size_t used = 0;
    int n = snprintf(buf, size, "(");
    used = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < s->ndim && used < size; i++) {
        n = snprintf(buf + used, size - used, i ? ", %lld" : "%lld", (long long)s->d[i]);
        if (n > 0) used += (size_t)n;
    }
    if (used < size) snprintf(buf + used, size - used, s->ndim == 1 ? ",)" : ")");
    return buf;
}
