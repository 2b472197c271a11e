/* conv_check.c: kiln_conv2d_f32 on random geometries (batch, groups, kernel, stride, dilation,
 * padding, threads, activation, residual) against the definition, a direct loop in double. The
 * first cases are fixed 3x3 stride-1 geometries large enough for Winograd (conv_winograd.c,
 * conv_winograd4.c), which the random ones, a few channels each, never reach.
 * tests/backend/test_native_kernels_sanitize.py builds it with the kernels under AddressSanitizer
 * and UndefinedBehaviorSanitizer, with and without -march=native.
 *
 *     conv_check [cases]      prints one line per wrong case and a summary; exit status 1 if
 *                             any case is wrong */
#include "kiln_kernels.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static unsigned long long rng = 88172645463325252ULL;   /* xorshift64 */

static unsigned long long next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static long pick(long lo, long hi) {
    return lo + (long)(next() % (unsigned long long)(hi - lo + 1));
}

static float frand(void) { return (float)((double)(next() % 2000001) / 1e6 - 1.0); }

/* (n, c, h, w, f, pad): F(4x4, 3x3) (42 tiles); by blocks; by blocks with the panels split
 * (two threads); odd sizes with padding 2; by panels with a last block of one tile, and of
 * two */
static const long WINOGRAD[][6] = {
    {1, 64, 22, 26, 64, 1}, {1, 64, 50, 50, 24, 1}, {1, 160, 40, 40, 24, 1}, {2, 64, 21, 23, 64, 2},
    {1, 144, 18, 18, 64, 1}, {1, 128, 10, 20, 100, 1},
};
#define N_WINOGRAD ((int)(sizeof WINOGRAD / sizeof WINOGRAD[0]))

/* (c, h, w, f, k, stride, pad), a batch of one on two threads, each with its own copy of the
 * input's phases (conv_shift.c): a stride-2 layer and a stem */
static const long SHIFT[][7] = {{48, 30, 30, 40, 3, 2, 1}, {3, 64, 60, 20, 7, 2, 3}};
#define N_SHIFT ((int)(sizeof SHIFT / sizeof SHIFT[0]))

int main(int argc, char **argv) {
    int cases = argc > 1 ? atoi(argv[1]) : 300, bad = 0;
    for (int t = 0; t < cases; t++) {
        kiln_conv2d p;
        if (t < N_WINOGRAD) {
            const long *g = WINOGRAD[t];
            p.n = g[0]; p.c = g[1]; p.h = g[2]; p.w = g[3]; p.f = g[4];
            p.kh = p.kw = 3; p.sh = p.sw = 1; p.dh = p.dw = 1; p.ph = p.pw = g[5]; p.groups = 1;
        } else if (t < N_WINOGRAD + N_SHIFT) {
            const long *g = SHIFT[t - N_WINOGRAD];
            p.n = 1; p.c = g[0]; p.h = g[1]; p.w = g[2]; p.f = g[3];
            p.kh = p.kw = g[4]; p.sh = p.sw = g[5]; p.dh = p.dw = 1; p.ph = p.pw = g[6];
            p.groups = 1;
        } else {
            p.groups = pick(1, 3);
            p.n = pick(1, 3);
            p.c = p.groups * pick(1, 6);
            p.f = p.groups * pick(1, 30);
            p.kh = pick(1, 5); p.kw = pick(1, 5);
            p.sh = pick(1, 3); p.sw = pick(1, 3);
            p.dh = pick(1, 2); p.dw = pick(1, 2);
            p.ph = pick(0, 3); p.pw = pick(0, 3);
            p.h = pick(1, 20); p.w = pick(1, 40);
        }
        if (kiln_conv2d_init(&p) != 0) { t--; continue; }
        int threads = t < N_WINOGRAD ? 2 - t % 2 : t < N_WINOGRAD + N_SHIFT ? 2 : (int)pick(1, 2);
        kiln_set_num_threads(threads);
        long xs = p.n * p.c * p.h * p.w, ws = p.f * (p.c / p.groups) * p.kh * p.kw,
             ys = p.n * p.f * p.oh * p.ow;
        float *x = malloc(xs * 4), *w = malloc(ws * 4), *y = malloc(ys * 4), *r = malloc(ys * 4),
              *s = malloc(p.f * 4), *b = malloc(p.f * 4);
        for (long i = 0; i < xs; i++) x[i] = frand();
        for (long i = 0; i < ws; i++) w[i] = frand();
        for (long i = 0; i < ys; i++) r[i] = frand();
        for (long i = 0; i < p.f; i++) { s[i] = frand(); b[i] = frand(); }
        int act = (int)pick(0, 2);
        int use_res = (int)pick(0, 1);
        kiln_conv2d_f32(&p, x, w, s, b, use_res ? r : NULL, y, act);
        long cg = p.c / p.groups, fg = p.f / p.groups;
        double err = 0;
        for (long i = 0; i < p.n; i++)
            for (long f = 0; f < p.f; f++)
                for (long oy = 0; oy < p.oh; oy++)
                    for (long ox = 0; ox < p.ow; ox++) {
                        double a = 0;
                        long g = f / fg;
                        for (long c = 0; c < cg; c++)
                            for (long ki = 0; ki < p.kh; ki++)
                                for (long kj = 0; kj < p.kw; kj++) {
                                    long iy = oy * p.sh - p.ph + ki * p.dh, ix = ox * p.sw - p.pw + kj * p.dw;
                                    if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w) continue;
                                    a += (double)x[((i * p.c + g * cg + c) * p.h + iy) * p.w + ix] *
                                         w[((f * cg + c) * p.kh + ki) * p.kw + kj];
                                }
                        long o = ((i * p.f + f) * p.oh + oy) * p.ow + ox;
                        double v = a * s[f] + b[f] + (use_res ? r[o] : 0);
                        if (act == 1) v = v < 0 ? 0 : v;
                        if (act == 2) v = 1 / (1 + exp(-v));
                        double e = fabs(v - y[o]) / (1 + fabs(v));
                        if (e > err) err = e;
                    }
        if (err > 1e-4) {
            bad++;
            printf("case %d: n%ld c%ld h%ld w%ld f%ld k%ldx%ld s%ldx%ld p%ldx%ld d%ldx%ld g%ld act %d res %d threads %d: err %g\n",
                   t, p.n, p.c, p.h, p.w, p.f, p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, p.dh, p.dw, p.groups, act, use_res, threads, err);
        }
        free(x); free(w); free(y); free(r); free(s); free(b);
    }
    printf("%d cases, %d wrong\n", cases, bad);
    return bad != 0;
}
