/* lstm_check.c: kiln_lstm_forward_f32 / kiln_lstm_backward_f32 against the definition computed
 * in double precision, on random sizes (sequences of 0, 1 and more steps, both directions, one
 * and two threads, batches split into a block of rows per thread). Built with sanitizers by
 * tests/backend/test_native_kernels_sanitize.py.
 *
 *     lstm_check CASES    prints "CASES cases, W wrong" and exits 0 when W is 0
 */
#include "kiln_kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long g_state = 88172645463325252ULL;

static double uniform(void) {   /* xorshift64: [-1, 1) */
    g_state ^= g_state << 13;
    g_state ^= g_state >> 7;
    g_state ^= g_state << 17;
    return (double)(g_state >> 11) / 4503599627370496.0 - 1.0;
}

static long pick(long lo, long hi) { return lo + (long)((uniform() + 1.0) * 0.5 * (hi - lo + 1)) % (hi - lo + 1); }

static float *randf(long n, double scale) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (long i = 0; i < n; i++) p[i] = (float)(uniform() * scale);
    return p;
}

static double sig(double x) { return 1.0 / (1.0 + exp(-x)); }

/* The definition: forward keeping activations and cells, then the backward by the chain rule. */
static void reference(long T, long N, long I, long H, const float *x, const float *wi,
                      const float *wh, const float *bi, const float *bh, const float *h0,
                      const float *c0, int rev, const float *dy, const float *dhl,
                      const float *dcl, double *y, double *gates, double *cells, double *dx,
                      double *dwi, double *dwh, double *db, double *dh0, double *dc0) {
    long G = 4 * H;
    double *h = calloc((size_t)(N * H), sizeof(double)), *c = calloc((size_t)(N * H), sizeof(double));
    for (long k = 0; k < N * H; k++) { h[k] = h0[k]; c[k] = c0[k]; }
    for (long s = 0; s < T; s++) {
        long t = rev ? T - 1 - s : s;
        for (long n = 0; n < N; n++) {
            for (long r = 0; r < G; r++) {
                double z = (double)bi[r] + bh[r];
                for (long i = 0; i < I; i++) z += (double)x[(t * N + n) * I + i] * wi[r * I + i];
                for (long j = 0; j < H; j++) z += h[n * H + j] * wh[r * H + j];
                gates[(t * N + n) * G + r] = (r / H == 2) ? tanh(z) : sig(z);
            }
        }
        for (long n = 0; n < N; n++)
            for (long j = 0; j < H; j++) {
                const double *g = gates + (t * N + n) * G;
                double cn = g[H + j] * c[n * H + j] + g[j] * g[2 * H + j];
                cells[(t * N + n) * H + j] = cn;
                y[(t * N + n) * H + j] = g[3 * H + j] * tanh(cn);
            }
        for (long k = 0; k < N * H; k++) { h[k] = y[t * N * H + k]; c[k] = cells[t * N * H + k]; }
    }
    memset(dx, 0, sizeof(double) * (size_t)(T * N * I));
    memset(dwi, 0, sizeof(double) * (size_t)(G * I));
    memset(dwh, 0, sizeof(double) * (size_t)(G * H));
    memset(db, 0, sizeof(double) * (size_t)G);
    for (long k = 0; k < N * H; k++) { dh0[k] = dhl[k]; dc0[k] = dcl[k]; }
    double *dh = malloc(sizeof(double) * (size_t)(N * H));
    for (long s = 0; s < T; s++) {
        long t = rev ? s : T - 1 - s;
        int first = rev ? t == T - 1 : t == 0;
        long tp = rev ? t + 1 : t - 1;
        memset(dh, 0, sizeof(double) * (size_t)(N * H));
        for (long n = 0; n < N; n++) {
            const double *g = gates + (t * N + n) * G;
            for (long j = 0; j < H; j++) {
                double cp = first ? c0[n * H + j] : cells[(tp * N + n) * H + j];
                double tc = tanh(cells[(t * N + n) * H + j]);
                double dhj = dh0[n * H + j] + dy[(t * N + n) * H + j];
                double dcj = dc0[n * H + j] + dhj * g[3 * H + j] * (1 - tc * tc);
                double i_ = g[j], f = g[H + j], u = g[2 * H + j], o = g[3 * H + j];
                double dpre[4] = {dcj * u * i_ * (1 - i_), dcj * cp * f * (1 - f),
                                  dcj * i_ * (1 - u * u), dhj * tc * o * (1 - o)};
                dc0[n * H + j] = dcj * f;
                for (int q = 0; q < 4; q++) {
                    long r = q * H + j;
                    db[r] += dpre[q];
                    for (long i = 0; i < I; i++) {
                        dx[(t * N + n) * I + i] += dpre[q] * wi[r * I + i];
                        dwi[r * I + i] += dpre[q] * x[(t * N + n) * I + i];
                    }
                    for (long k = 0; k < H; k++) {
                        double hp = first ? h0[n * H + k] : y[(tp * N + n) * H + k];
                        dwh[r * H + k] += dpre[q] * hp;
                        dh[n * H + k] += dpre[q] * wh[r * H + k];
                    }
                }
            }
        }
        memcpy(dh0, dh, sizeof(double) * (size_t)(N * H));
    }
    free(dh);
    free(h);
    free(c);
}

static double worst(const float *got, const double *want, long n) {
    double e = 0, scale = 1;
    for (long i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    for (long i = 0; i < n; i++) e = fmax(e, fabs(got[i] - want[i]));
    return e / scale;
}

int main(int argc, char **argv) {
    int cases = argc > 1 ? atoi(argv[1]) : 50, wrong = 0;
    for (int cs = 0; cs < cases; cs++) {
        kiln_set_num_threads(cs % 2 ? 2 : 1);
        /* every fourth case (two threads) a batch large enough for a block of rows per thread */
        long T = cs < 2 ? cs : pick(0, 6), N = cs % 4 == 3 ? pick(16, 24) : pick(1, 9);
        long I = pick(1, 11), H = pick(1, 21);
        int rev = (int)pick(0, 1);
        long G = 4 * H;
        float *x = randf(T * N * I, 1), *wi = randf(G * I, 0.5), *wh = randf(G * H, 0.5);
        float *bi = randf(G, 0.5), *bh = randf(G, 0.5), *h0 = randf(N * H, 1), *c0 = randf(N * H, 1);
        float *dy = randf(T * N * H, 1), *dhl = randf(N * H, 1), *dcl = randf(N * H, 1);
        size_t seq = (size_t)(T * N * H > 0 ? T * N * H : 1);
        float *y = malloc(seq * 4), *gates = malloc(seq * 16), *cells = malloc(seq * 4);
        float *hl = malloc((size_t)(N * H) * 4), *cl = malloc((size_t)(N * H) * 4);
        float *dx = malloc((size_t)(T * N * I > 0 ? T * N * I : 1) * 4);
        float *dwi = malloc((size_t)(G * I) * 4), *dwh = malloc((size_t)(G * H) * 4);
        float *dbi = malloc((size_t)G * 4), *dbh = malloc((size_t)G * 4);
        float *dh0 = malloc((size_t)(N * H) * 4), *dc0 = malloc((size_t)(N * H) * 4);
        double *ry = calloc(seq, 8), *rg = calloc(seq * 4, 8), *rc = calloc(seq, 8);
        double *rdx = calloc((size_t)(T * N * I > 0 ? T * N * I : 1), 8);
        double *rdwi = calloc((size_t)(G * I), 8), *rdwh = calloc((size_t)(G * H), 8);
        double *rdb = calloc((size_t)G, 8), *rdh0 = calloc((size_t)(N * H), 8);
        double *rdc0 = calloc((size_t)(N * H), 8);
        reference(T, N, I, H, x, wi, wh, bi, bh, h0, c0, rev, dy, dhl, dcl, ry, rg, rc, rdx, rdwi,
                  rdwh, rdb, rdh0, rdc0);
        kiln_lstm_forward_f32(T, N, I, H, x, wi, wh, bi, bh, h0, c0, rev, y, hl, cl, gates, cells);
        int rc_ = kiln_lstm_backward_f32(T, N, I, H, dy, dhl, dcl, x, wi, wh, h0, c0, y, gates,
                                         cells, rev, dx, dwi, dwh, dbi, dbh, dh0, dc0);
        double e = 0;
        e = fmax(e, worst(y, ry, T * N * H));
        e = fmax(e, worst(gates, rg, T * N * G));
        e = fmax(e, worst(cells, rc, T * N * H));
        e = fmax(e, worst(dx, rdx, T * N * I));
        e = fmax(e, worst(dwi, rdwi, G * I));
        e = fmax(e, worst(dwh, rdwh, G * H));
        e = fmax(e, worst(dbi, rdb, G));
        e = fmax(e, worst(dbh, rdb, G));
        e = fmax(e, worst(dh0, rdh0, N * H));
        double *last_h = malloc(sizeof(double) * (size_t)(N * H));
        double *last_c = malloc(sizeof(double) * (size_t)(N * H));
        long tl = rev ? 0 : T - 1;
        for (long k = 0; k < N * H; k++) {
            last_h[k] = T ? ry[tl * N * H + k] : h0[k];
            last_c[k] = T ? rc[tl * N * H + k] : c0[k];
        }
        e = fmax(e, worst(hl, last_h, N * H));
        e = fmax(e, worst(cl, last_c, N * H));
        free(last_h);
        free(last_c);
        e = fmax(e, worst(dc0, rdc0, N * H));
        if (rc_ != 0 || e > 1e-4) {
            wrong++;
            printf("case %d: T=%ld N=%ld I=%ld H=%ld reverse=%d: error %.3g (rc %d)\n", cs, T, N,
                   I, H, rev, e, rc_);
        }
        free(x); free(wi); free(wh); free(bi); free(bh); free(h0); free(c0); free(dy);
        free(dhl); free(dcl); free(y); free(gates); free(cells); free(hl); free(cl); free(dx);
        free(dwi); free(dwh); free(dbi); free(dbh); free(dh0); free(dc0); free(ry); free(rg);
        free(rc); free(rdx); free(rdwi); free(rdwh); free(rdb); free(rdh0); free(rdc0);
    }
    printf("%d cases, %d wrong\n", cases, wrong);
    return wrong != 0;
}
