/* kiln-run: run an MXNet 1.x model (kiln export) on .npy inputs.
 *
 *   kiln-run model-symbol.json model-0000.params input.npy [more inputs.npy ...]
 *            [-o output.npy] [--bench N] [--threads T] [--max-memory BYTES]
 *            [--max-loop-steps N]
 *
 * Inputs are matched to the model's inputs in order. -o writes output 0 (and output k, when
 * the model has several, to the same name with "-k" before ".npy"). --bench N runs N more
 * times after a warm-up and prints the time per run (set_input + run, as a caller would do
 * each time). --max-loop-steps bounds the control-flow steps of one run
 * (kiln_model_set_max_loop_steps). Exit status: 0 ok, 1 a model or input error (the message on
 * stderr), 2 usage.
 */
#define _POSIX_C_SOURCE 200809L
#include "kiln_runtime.h"
#include "npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(void) {
    fprintf(stderr, "usage: kiln-run model-symbol.json model-0000.params input.npy [input2.npy "
                    "...] [-o output.npy] [--bench N] [--threads T] [--max-memory BYTES] "
                    "[--max-loop-steps N]\n");
}

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int set_inputs(kiln_model *m, npy_array *in, int n) {
    for (int i = 0; i < n; i++)
        if (kiln_model_set_input(m, i, in[i].data, in[i].dims, in[i].ndim) != KILN_OK) return -1;
    return 0;
}

static char *output_name(const char *base, int k) {
    size_t n = strlen(base);
    char *s = (char *)malloc(n + 16);
    if (!s) return NULL;
    if (k == 0) {
        memcpy(s, base, n + 1);
        return s;
    }
    size_t stem = n >= 4 && strcmp(base + n - 4, ".npy") == 0 ? n - 4 : n;
    snprintf(s, n + 16, "%.*s-%d.npy", (int)stem, base, k);
    return s;
}

int main(int argc, char **argv) {
    const char *files[64];
    int nfiles = 0, bench = 0;
    unsigned long long max_steps = 0;
    const char *out_path = NULL;
    kiln_options opts = {0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) && i + 1 < argc) {
            out_path = argv[++i];
        } else if (strcmp(a, "--bench") == 0 && i + 1 < argc) {
            bench = atoi(argv[++i]);
        } else if (strcmp(a, "--threads") == 0 && i + 1 < argc) {
            opts.num_threads = atoi(argv[++i]);
        } else if (strcmp(a, "--max-memory") == 0 && i + 1 < argc) {
            opts.max_memory = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(a, "--max-loop-steps") == 0 && i + 1 < argc) {
            max_steps = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage();
            return 0;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "kiln-run: unknown option %s\n", a);
            usage();
            return 2;
        } else if (nfiles < 64) {
            files[nfiles++] = a;
        }
    }
    if (nfiles < 3 || bench < 0) {
        usage();
        return 2;
    }
    kiln_model *m = NULL;
    if (kiln_model_load_files_opts(files[0], files[1], &opts, &m) != KILN_OK) {
        fprintf(stderr, "kiln-run: %s\n", kiln_last_error());
        return 1;
    }
    if (max_steps) kiln_model_set_max_loop_steps(m, (uint64_t)max_steps);
    int n_in = nfiles - 2, rc = 1;
    npy_array inputs[62];
    memset(inputs, 0, sizeof inputs);
    if (n_in != kiln_model_num_inputs(m)) {
        fprintf(stderr, "kiln-run: the model has %d input(s)", kiln_model_num_inputs(m));
        for (int i = 0; i < kiln_model_num_inputs(m); i++)
            fprintf(stderr, "%s'%s'", i ? ", " : ": ", kiln_model_input_name(m, i));
        fprintf(stderr, "; %d .npy file(s) given\n", n_in);
        goto done;
    }
    for (int i = 0; i < n_in; i++) {
        char err[256];
        if (npy_load(files[2 + i], &inputs[i], err, sizeof err) != 0) {
            fprintf(stderr, "kiln-run: %s: %s\n", files[2 + i], err);
            goto done;
        }
    }
    if (set_inputs(m, inputs, n_in) != 0 || kiln_model_run(m) != KILN_OK) {
        fprintf(stderr, "kiln-run: %s\n", kiln_last_error());
        goto done;
    }
    for (int k = 0; k < kiln_model_num_outputs(m); k++) {
        const float *y;
        const int64_t *dims;
        int ndim;
        kiln_model_get_output(m, k, &y, &dims, &ndim);
        printf("output %d ('%s'): shape (", k, kiln_model_output_name(m, k));
        for (int d = 0; d < ndim; d++) printf(d ? ", %lld" : "%lld", (long long)dims[d]);
        printf(ndim == 1 ? ",)\n" : ")\n");
        if (out_path) {
            char *name = output_name(out_path, k);
            if (!name || npy_save(name, y, dims, ndim) != 0) {
                fprintf(stderr, "kiln-run: cannot write %s\n", name ? name : out_path);
                free(name);
                goto done;
            }
            free(name);
        }
    }
    if (bench > 0) {
        int warm = bench / 10 > 10 ? bench / 10 : 10;
        double *t = (double *)malloc((size_t)bench * sizeof(double));
        if (!t) goto done;
        for (int i = 0; i < warm; i++) {
            set_inputs(m, inputs, n_in);
            kiln_model_run(m);
        }
        double total = 0.0;
        for (int i = 0; i < bench; i++) {
            double t0 = now_us();
            if (set_inputs(m, inputs, n_in) != 0 || kiln_model_run(m) != KILN_OK) {
                fprintf(stderr, "kiln-run: %s\n", kiln_last_error());
                free(t);
                goto done;
            }
            t[i] = now_us() - t0;
            total += t[i];
        }
        qsort(t, (size_t)bench, sizeof(double), cmp_double);
        printf("bench: %d runs after %d warm-up: mean %.2f us, median %.2f us, min %.2f us\n",
               bench, warm, total / bench, t[bench / 2], t[0]);
        free(t);
    }
    rc = 0;
done:
    for (int i = 0; i < n_in && i < 62; i++) npy_free(&inputs[i]);
    kiln_model_free(m);
    return rc;
}
