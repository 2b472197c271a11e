/* fuzz_load.c: a fuzz target over "load from memory" (symbol JSON + params), then a run.
 *
 * One input holds both files and the input shape:
 *   u32 json_len (little-endian; clamped to what is there)
 *   u8  ndim (taken mod 5), then ndim x u16 dims (each taken mod 32, plus 1)
 *   json_len bytes of symbol JSON, then the params file (the rest)
 * After a successful load every input is set to that shape (zeros) and the model runs (with at
 * most 20000 control-flow steps); every step may fail with an error code, none may crash, read
 * out of bounds or hang.
 *
 * Built three ways (runtime/Makefile):
 *   - with clang -fsanitize=fuzzer: libFuzzer drives LLVMFuzzerTestOneInput;
 *   - with -DKILN_FUZZ_MAIN: a main() that runs each file named on the command line (or
 *     stdin when none), so AFL++ (afl-cc, "@@") or a test can drive it; with --list FILE it
 *     reads file names from FILE, one a line, and prints each before running it;
 *   - `make fuzz` picks libFuzzer when clang is there, else the standalone driver.
 * `python tests/runtime/corpus.py DIR` writes seed inputs from the MXNet test models.
 */
#define _POSIX_C_SOURCE 200809L
#include "kiln_runtime.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static long g_loaded, g_ran; /* for the standalone driver's summary */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 5) return 0;
    uint32_t jlen = (uint32_t)data[0] | ((uint32_t)data[1] << 8) | ((uint32_t)data[2] << 16) |
                    ((uint32_t)data[3] << 24);
    size_t pos = 4;
    int ndim = data[pos++] % 5;
    int64_t dims[4];
    for (int i = 0; i < ndim; i++) {
        if (pos + 2 > size) return 0;
        dims[i] = (int64_t)(((unsigned)data[pos] | ((unsigned)data[pos + 1] << 8)) % 32) + 1;
        pos += 2;
    }
    size_t rest = size - pos;
    if (jlen > rest) jlen = (uint32_t)rest;
    /* copies, so that reading past either buffer is caught by the sanitizers */
    char *json = (char *)malloc(jlen ? jlen : 1);
    size_t plen = rest - jlen;
    uint8_t *params = (uint8_t *)malloc(plen ? plen : 1);
    if (!json || !params) {
        free(json);
        free(params);
        return 0;
    }
    memcpy(json, data + pos, jlen);
    memcpy(params, data + pos + jlen, plen);
    kiln_options opts = {(uint64_t)64 << 20, 1};
    kiln_model *m = NULL;
    if (kiln_model_load_memory_opts(json, jlen, plen ? params : NULL, plen, &opts, &m) ==
        KILN_OK) {
        g_loaded++;
        kiln_model_set_max_loop_steps(m, 20000); /* loops: a few ms each, not the default */
        int64_t count = 1;
        for (int i = 0; i < ndim; i++) count *= dims[i];
        float *x = (float *)calloc((size_t)count, sizeof(float));
        int ok = x != NULL;
        for (int i = 0; ok && i < kiln_model_num_inputs(m); i++)
            ok = kiln_model_set_input(m, i, x, dims, ndim) == KILN_OK;
        if (ok && kiln_model_run(m) == KILN_OK) {
            g_ran++;
            for (int k = 0; k < kiln_model_num_outputs(m); k++) {
                const float *y;
                const int64_t *d;
                int nd;
                if (kiln_model_get_output(m, k, &y, &d, &nd) == KILN_OK && y) {
                    volatile float sink = y[0]; /* touch the first element */
                    (void)sink;
                }
            }
        }
        free(x);
        kiln_model_free(m);
    } else if (m) {
        abort(); /* a failed load must not hand out a model */
    }
    if (kiln_last_error() == NULL) abort();
    free(json);
    free(params);
    return 0;
}

#ifdef KILN_FUZZ_MAIN
static int run_file(const char *path) {
    FILE *f = path ? fopen(path, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return 1;
    }
    size_t size = 0, room = 1 << 16;
    uint8_t *buf = (uint8_t *)malloc(room);
    while (buf) {
        size_t got = fread(buf + size, 1, room - size, f);
        size += got;
        if (got == 0) break;
        if (size == room) {
            uint8_t *b = (uint8_t *)realloc(buf, room * 2);
            if (!b) break;
            buf = b;
            room *= 2;
        }
    }
    if (path) fclose(f);
    if (!buf) return 1;
    LLVMFuzzerTestOneInput(buf, size);
    free(buf);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--list") == 0) {
        FILE *list = fopen(argv[2], "r");
        char line[4096];
        int n = 0;
        if (!list) return 1;
        while (fgets(line, sizeof line, list)) {
            line[strcspn(line, "\r\n")] = 0;
            if (!line[0]) continue;
            fprintf(stderr, "case %s\n", line);
            if (run_file(line) != 0) return 1;
            n++;
        }
        fclose(list);
        printf("ran %d cases: %ld loaded, %ld ran\n", n, g_loaded, g_ran);
        return 0;
    }
    if (argc < 2) return run_file(NULL);
    for (int i = 1; i < argc; i++)
        if (run_file(argv[i]) != 0) return 1;
    return 0;
}
#endif
