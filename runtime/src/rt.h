/* rt.h: the runtime's internal types and helpers (not part of the API).
 *
 * The pipeline: json.c parses the symbol file into a DOM; params.c reads the params file into
 * named float32 arrays; graph.c turns the DOM into nodes (ops.c resolves each op name and
 * parses its attributes), checks the structure and binds parameters; infer.c computes every
 * value's shape once the inputs' shapes are known; plan.c fuses simple patterns and places
 * every intermediate value in one arena by liveness; exec.c runs the nodes through the kernels
 * (runtime/kernels) and extra_kernels.c; model.c is the public API.
 */
#ifndef KILN_RT_H
#define KILN_RT_H

/* posix_memalign; every source file includes this header first */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "kiln_runtime.h"

#include <stddef.h>
#include <stdint.h>

#define RT_MAX_DIMS 8
#define RT_MAX_JSON_DEPTH 64
#define RT_MAX_NODES (1 << 20)
#define RT_MAX_INPUTS_PER_NODE 4096
/* Any dimension above this is refused before arithmetic on it (no real tensor is this big,
 * and it keeps products of two dimensions far from int64 overflow). */
#define RT_MAX_DIM ((int64_t)1 << 40)
/* Kernel, stride, dilation and padding attributes above this are refused. */
#define RT_MAX_WINDOW 65536
#define RT_DEFAULT_MAX_MEMORY ((uint64_t)4 << 30)
#define RT_ALIGN 64

/* ---------------------------------------------------------------------------------------------
 * errors (error.c): a thread-local message, set by rt_fail
 * ------------------------------------------------------------------------------------------- */

#if defined(__GNUC__)
#define RT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define RT_PRINTF(a, b)
#endif

kiln_status rt_fail(kiln_status code, const char *fmt, ...) RT_PRINTF(2, 3);
/* Prefix the current message with "prefix: " (context added by a caller). */
void rt_error_prefix(const char *fmt, ...) RT_PRINTF(1, 2);
void rt_clear_error(void);

/* ---------------------------------------------------------------------------------------------
 * checked arithmetic and small helpers (error.c)
 * ------------------------------------------------------------------------------------------- */

/* *out = a * b; returns 0, or -1 when it overflows uint64. */
int rt_mul_u64(uint64_t a, uint64_t b, uint64_t *out);
int rt_add_u64(uint64_t a, uint64_t b, uint64_t *out);
/* Round up to a multiple of RT_ALIGN; -1 on overflow. */
int rt_align_up(uint64_t a, uint64_t *out);
/* 1 if s[0:len] is valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
int rt_utf8_valid(const char *s, size_t len);
/* A printable, truncated copy of a name for messages, in this thread's buffer `slot`
 * (0..3; a later call with the same slot reuses it). */
const char *rt_shorten(const char *s, int slot);
/* The same into b (at least 80 bytes). */
const char *rt_shorten_into(const char *s, char *b);
/* This thread's scratch buffer `slot` (0..3) of 256 bytes, for message fragments. */
char *rt_scratch_text(int slot);

typedef struct rt_shape {
    int ndim;
    int64_t d[RT_MAX_DIMS];
} rt_shape;

/* Element count of a shape (1 for ndim 0); -1 when a dimension is < 1 or > RT_MAX_DIM or the
 * product exceeds 2^62. */
int64_t rt_shape_count(const rt_shape *s);
int rt_shape_equal(const rt_shape *a, const rt_shape *b);
/* "(2, 3, 4)" into buf */
const char *rt_shape_str(const rt_shape *s, char *buf, size_t size);

/* ---------------------------------------------------------------------------------------------
 * JSON (json.c)
 * ------------------------------------------------------------------------------------------- */

enum { J_NULL, J_FALSE, J_TRUE, J_NUM, J_STR, J_ARR, J_OBJ };

typedef struct jval {
    uint8_t type;
    uint8_t is_int;     /* J_NUM: written as an integer that fits int64 (ival exact) */
    int32_t next;       /* next sibling (array element or object member), -1 at the end */
    int32_t child;      /* first element / member, -1 if empty */
    uint32_t count;     /* elements / members */
    const char *key;    /* object members: the key (NUL-terminated, UTF-8 checked) */
    uint32_t key_len;
    const char *str;    /* J_STR: the unescaped text, NUL-terminated */
    uint32_t str_len;
    int64_t ival;
    double num;
} jval;

typedef struct jdoc {
    jval *v;            /* v[0] is the root */
    int32_t n, cap;
    char *strbuf;       /* unescaped strings and keys */
    size_t str_used, str_cap;
} jdoc;

/* Parse text[0:len]; the DOM's size counts against max_bytes. On failure the doc is freed. */
kiln_status json_parse(const char *text, size_t len, uint64_t max_bytes, jdoc *doc);
void json_free(jdoc *doc);
/* The member `key` of object `obj`, or NULL. */
const jval *json_get(const jdoc *doc, const jval *obj, const char *key);
const jval *json_at(const jdoc *doc, int32_t index); /* NULL for -1 */
const char *json_type_name(int type);

/* Number syntax shared by JSON and attribute strings: parse an RFC 8259 number at s[0:len]
 * (exactly, no surrounding text). Returns 0 and sets *num (and *ival, *is_int when integral
 * without fraction/exponent and in int64 range), or -1. */
int rt_parse_number(const char *s, size_t len, double *num, int64_t *ival, int *is_int);

/* ---------------------------------------------------------------------------------------------
 * params (params.c)
 * ------------------------------------------------------------------------------------------- */

typedef struct rt_param {
    const char *name;   /* without an arg:/aux: prefix; in the set's name buffer */
    rt_shape shape;
    float *data;        /* in the set's one allocation; NULL for a "none" record */
    int present;        /* 0 for a record that holds no array */
} rt_param;

typedef struct rt_params {
    int count;
    rt_param *items;
    char *names;
    int *sorted;        /* item indices sorted by name (for params_find) */
    float *mem;
    uint64_t bytes;     /* of mem */
} rt_params;

kiln_status params_read(const uint8_t *buf, size_t len, uint64_t max_bytes, rt_params *out);
void params_free(rt_params *p);
const rt_param *params_find(const rt_params *p, const char *name);
const char *rt_dtype_name(int code);

/* ---------------------------------------------------------------------------------------------
 * attribute strings (attrs.c): each parser returns 0 or -1 (with a message via rt_fail)
 * ------------------------------------------------------------------------------------------- */

int attr_int(const char *s, int64_t *out);
int attr_float(const char *s, double *out);
int attr_bool(const char *s, int *out);
/* "(1, 2)", "[1, 2]", "1", "()", "None" (-> n 0, *is_none 1); "None" entries refused unless
 * allow_none, then stored as INT64_MIN. */
int attr_ints(const char *s, int64_t *vals, int max, int *n, int *is_none, int allow_none);
/* index of s in the NULL-terminated list, or -1 */
int attr_choice(const char *s, const char *const *choices);

#endif /* KILN_RT_H */
