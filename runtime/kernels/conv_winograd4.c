/* conv_winograd4.c: 3x3 stride-1 convolutions by Winograd's F(4x4, 3x3), by panels of filters.
 *
 * F(4x4, 3x3) computes each 4x4 block of outputs from the 6x6 input patch around it with 36
 * multiplications per (filter, channel) pair instead of 144 (F(2x2, 3x3), conv_winograd.c: 64
 * for the same outputs): 1.78x fewer products. With the 6x6 tile's elements numbered e:
 *
 *     U[e] = (G g G^T)[e],  V[e] = (B^T d B)[e],  M[e] = U[e] V[e],  y = A^T M A
 *
 * with the interpolation points 0, 1, -1, 2, -2 (Lavin and Gray, 2015):
 *
 *     B^T = [4  0 -5  0 1 0;  0 -4 -4  1 1 0;  0 4 -4 -1 1 0;
 *            0 -2 -1  2 1 0;  0  2 -1 -2 1 0;  0 4  0 -5 0 1]
 *     G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *     A^T = [1 1 1 1 1 0;  0 1 -1 2 -2 0;  0 1 1 4 4 0;  0 1 -1 8 -8 1]
 *
 * The price is rounding: the transforms scale by up to 8 and 1/24, and the outputs' error is
 * about ten times F(2x2, 3x3)'s (6e-6 to 9e-6 of the largest output, float64 reference, 64 to
 * 128 channels; F(2x2, 3x3) 1e-7 to 2e-6). KILN_WINOGRAD4=0 keeps F(2x2, 3x3).
 *
 * The order is F(2x2, 3x3)'s by panels (see conv_winograd.c): the padded image split into its
 * four column residues (a vector of 16 tiles' patch column is one unaligned load), V of every
 * block of 16 tiles, then one item per panel of filters, which transforms its own weights and
 * runs every block against them. A non-finite input declines the call (the caller runs the
 * direct kernel); a panel with a non-finite weight is left to the direct kernel afterwards.
 * Where it runs, and why there only: see kk_conv2d_winograd4_pays.
 */
#include "kk_conv.h"
#include "kk_simd.h"
#include "kk_threads.h"

#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#define E 36              /* elements of a 6x6 tile */
#define NB KK_VLEN        /* tiles per block: one vector */
#if KK_VLEN >= 16
#define MR_BIG 24
#define MR_ALT 16
#else
#define MR_BIG 12
#define MR_ALT 8
#endif

typedef struct {
    const kiln_conv2d *p;
    const float *x, *w, *scale, *bias, *res;
    float *y;
    int act;
    long mr, panels;          /* filters per panel, panels */
    long th, tw, ntiles, blocks;
    long rows, pitch;         /* padded rows read (4 th + 2); floats per residue row */
    long vplane;              /* floats from V[e] to V[e + 1] of a block */
    long u_stride;            /* floats from U[e] to U[e + 1] of a panel */
    float *split, *v;
    long few;                 /* tiles of the last block when they are few (FEW_TILES), or 0 */
    float *vt;                /* their V by tile, channels contiguous: vt[(t E + e) cpad + c] */
    unsigned char *bad;       /* panels whose weights are not all finite */
    int decline;
} w4_job;

static long cblocks(const w4_job *d) { return (d->p->c + KK_VLEN - 1) / KK_VLEN; }

/* ---------------------------------------------------------------------------------------------
 * the transforms (one vector of lanes at a time)
 * ------------------------------------------------------------------------------------------- */

/* o = B^T d for one column d[0:6] */
static inline void input_1d(const kk_vf d[6], kk_vf o[6]) {
    kk_vf four = kk_splat(4.0f), five = kk_splat(5.0f), two = kk_splat(2.0f);
    o[0] = four * d[0] - five * d[2] + d[4];
    o[1] = d[3] + d[4] - four * (d[1] + d[2]);
    o[2] = d[4] - d[3] + four * (d[1] - d[2]);
    o[3] = d[4] - d[2] + two * (d[3] - d[1]);
    o[4] = d[4] - d[2] - two * (d[3] - d[1]);
    o[5] = four * d[1] - five * d[3] + d[5];
}

/* o = G g for one column g[0:3] */
static inline void weights_1d(const kk_vf g[3], kk_vf o[6]) {
    kk_vf a = g[0], b = g[1], c = g[2];
    kk_vf sixth = kk_splat(1.0f / 6.0f);
    o[0] = a * kk_splat(0.25f);
    o[1] = -(a + b + c) * sixth;
    o[2] = -(a - b + c) * sixth;
    o[3] = a * kk_splat(1.0f / 24.0f) + b * kk_splat(1.0f / 12.0f) + c * sixth;
    o[4] = a * kk_splat(1.0f / 24.0f) - b * kk_splat(1.0f / 12.0f) + c * sixth;
    o[5] = c;
}

/* o = A^T m for one column m[0:6] */
static inline void output_1d(const kk_vf m[6], kk_vf o[4]) {
    kk_vf s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
    o[0] = m[0] + s12 + s34;
    o[1] = d12 + kk_splat(2.0f) * d34;
    o[2] = s12 + kk_splat(4.0f) * s34;
    o[3] = d12 + kk_splat(8.0f) * d34 + m[5];
}

/* ---------------------------------------------------------------------------------------------
 * the weights
 * ------------------------------------------------------------------------------------------- */

/* U[e] of filters [f0, f0 + mr) at u + e u_stride, laid out [c / KK_VLEN][r][c % KK_VLEN]
 * (filters past the last: zero); returns 0, or NaN when a weight is not finite. */
static float transform_panel(const w4_job *d, long f0, float *u) {
    const kiln_conv2d *p = d->p;
    long c_n = p->c, mr = d->mr;
    kk_vf probe = kk_splat(0.0f);
    for (long r = 0; r < mr; r++) {
        const float *wf = d->w + (f0 + r) * c_n * 9;
        for (long cb = 0; cb * KK_VLEN < c_n; cb++) {
            long c = cb * KK_VLEN, n = KK_MIN(KK_VLEN, c_n - c);
            kk_vf t[E];
            if (f0 + r >= p->f) {
                for (int e = 0; e < E; e++) t[e] = kk_splat(0.0f);
            } else {
                kk_vf g[9], q[6][3];
                kk_gather_taps(wf, c, n, g);
                for (int k = 0; k < 9; k++) probe += g[k] * 0.0f;
                for (int j = 0; j < 3; j++) {          /* G g: column j */
                    kk_vf col[3] = {g[j], g[3 + j], g[6 + j]}, o[6];
                    weights_1d(col, o);
                    for (int i = 0; i < 6; i++) q[i][j] = o[i];
                }
                for (int i = 0; i < 6; i++) weights_1d(q[i], t + 6 * i);   /* (G g) G^T */
            }
            float *dst = u + (cb * mr + r) * KK_VLEN;
            for (int e = 0; e < E; e++) kk_store(dst + e * d->u_stride, t[e]);
        }
    }
    return kk_hsum(probe);
}

/* ---------------------------------------------------------------------------------------------
 * the input
 * ------------------------------------------------------------------------------------------- */

/* Residue s of channel c's padded row i: its padded columns 4 q + s, q < pitch. */
static inline const float *residue_row(const w4_job *d, long c, long i, int s) {
    return d->split + ((c * d->rows + i) * 4 + s) * d->pitch;
}

/* V of channel c in the block of tile runs `run` at v (+ e vplane), a lane per tile, each of
 * V's 36 rows one vector store (see kk_tile_runs); and by tile into vt when given. */
static void transform_block(const w4_job *d, long c, const kk_tile_run *run, int nrun,
                            float *v, float *vt) {
    kk_vf t[6][6];
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++) {              /* d B, a patch row at a time */
        kk_vf dr[6];
#pragma GCC unroll 6
        for (int k = 0; k < 6; k++) dr[k] = kk_splat(0.0f);
        for (int q = 0; q < nrun; q++) {
            const float *r = residue_row(d, c, 4 * run[q].ty + i, 0) + run[q].tx0 - run[q].lo;
#pragma GCC unroll 6
            for (int k = 0; k < 6; k++)
                dr[k] = kk_load_lanes(dr[k], r + (k % 4) * d->pitch + k / 4, run[q].lo,
                                      run[q].hi);
        }
        input_1d(dr, t[i]);
    }
#pragma GCC unroll 6
    for (int k = 0; k < 6; k++) {              /* B^T (d B), column k */
        kk_vf col[6] = {t[0][k], t[1][k], t[2][k], t[3][k], t[4][k], t[5][k]}, o[6];
        input_1d(col, o);
        if (vt) {     /* the last block's few tiles, by tile (see products_few) */
            long cpad = cblocks(d) * KK_VLEN;
            for (int i = 0; i < 6; i++)
                for (long t = 0; t < d->few; t++) vt[(t * E + i * 6 + k) * cpad + c] = o[i][t];
            continue;
        }
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++) kk_store(v + (i * 6 + k) * d->vplane, o[i]);
    }
}

/* r[s pitch + q] = padded[4 q + s] for q < pitch (the four column residues of a padded row),
 * padded[i] = x[i - pw] for pw <= i < pw + w, else 0. With AVX-512, 64 padded values at a
 * time: masked loads (the padding's lanes are not read), then two rounds of splitting into
 * even and odd lanes. The row built in memory and split with three calls took 45 ns a row,
 * most of the split. */
static void split_residues(const float *x, long w, long pw, float *r, long pitch) {
#if defined(__AVX512F__)
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28,
                                         30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29,
                                         31);
    for (long q0 = 0; q0 < pitch; q0 += 16) {
        __m512 v[4];
        for (int k = 0; k < 4; k++) {
            long i0 = 4 * q0 + 16 * k;                 /* padded index of lane 0 */
            long lo = KK_MIN(KK_MAX(pw - i0, 0), 16), hi = KK_MIN(KK_MAX(pw + w - i0, 0), 16);
            __mmask16 m = (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
            v[k] = _mm512_maskz_loadu_ps(m, x + i0 - pw);
        }
        __m512 e01 = _mm512_permutex2var_ps(v[0], ie, v[1]);
        __m512 o01 = _mm512_permutex2var_ps(v[0], io, v[1]);
        __m512 e23 = _mm512_permutex2var_ps(v[2], ie, v[3]);
        __m512 o23 = _mm512_permutex2var_ps(v[2], io, v[3]);
        __mmask16 n = (__mmask16)((1u << KK_MIN(16, pitch - q0)) - 1u);
        _mm512_mask_storeu_ps(r + q0, n, _mm512_permutex2var_ps(e01, ie, e23));
        _mm512_mask_storeu_ps(r + 2 * pitch + q0, n, _mm512_permutex2var_ps(e01, io, e23));
        _mm512_mask_storeu_ps(r + pitch + q0, n, _mm512_permutex2var_ps(o01, ie, o23));
        _mm512_mask_storeu_ps(r + 3 * pitch + q0, n, _mm512_permutex2var_ps(o01, io, o23));
    }
#else
    memset(r, 0, (size_t)(4 * pitch) * sizeof(float));
    for (long ix = 0; ix < w; ix++) {
        long q = ix + pw;
        if (q < 4 * pitch) r[(q & 3) * pitch + (q >> 2)] = x[ix];
    }
#endif
}

/* Channels [c0, c1): the split image, then their V in every block. */
static void split_and_transform(void *ctx, long c0, long c1) {
    w4_job *d = (w4_job *)ctx;
    const kiln_conv2d *p = d->p;
    for (long c = c0; c < c1; c++) {
        const float *xc = d->x + c * p->h * p->w;
        if (kk_finite_probe(xc, p->h * p->w) != 0.0f) {
            __atomic_store_n(&d->decline, 1, __ATOMIC_RELAXED);
            return;
        }
        for (long i = 0; i < d->rows; i++) {
            float *r0 = (float *)residue_row(d, c, i, 0);
            long iy = i - p->ph;
            if (iy < 0 || iy >= p->h) {
                memset(r0, 0, (size_t)(4 * d->pitch) * sizeof(float));
                continue;
            }
            split_residues(xc + iy * p->w, p->w, p->pw, r0, d->pitch);
        }
    }
    for (long b = 0; b < d->blocks; b++) {
        kk_tile_run run[NB];
        int nrun = kk_tile_runs(b * NB, KK_MIN((b + 1) * NB, d->ntiles), d->tw, run);
        float *vt = d->few && b == d->blocks - 1 ? d->vt : NULL;
        for (long c = c0; c < c1; c++)
            transform_block(d, c, run, nrun, d->v + b * E * d->vplane + c * NB, vt);
    }
    if (d->few && c1 == d->p->c) {    /* channels past the last: zero (U's are, too) */
        long cpad = cblocks(d) * KK_VLEN;
        for (long t = 0; t < d->few * E; t++)
            for (long c = c1; c < cpad; c++) d->vt[t * cpad + c] = 0.0f;
    }
}

/* ---------------------------------------------------------------------------------------------
 * the products and the outputs
 * ------------------------------------------------------------------------------------------- */

/* m[r][0:NB] = sum_c U(c, r) v[c NB + 0:NB], r < mr (U as transform_panel lays it out) */
static inline __attribute__((always_inline)) void product(int mr, const float *u,
                                                          const float *v, long c_n, float *m) {
    kk_vf acc[MR_BIG];
#pragma GCC unroll 32
    for (int r = 0; r < mr; r++) acc[r] = kk_splat(0.0f);
    for (long c0 = 0; c0 < c_n; c0 += KK_VLEN) {
        const float *ub = u + c0 * mr;
        long n = KK_MIN(KK_VLEN, c_n - c0);
        for (long cl = 0; cl < n; cl++) {
            const float *a = ub + cl;
            kk_vf b = kk_load(v + (c0 + cl) * NB);
#pragma GCC unroll 32
            for (int r = 0; r < mr; r++) acc[r] += a[r * KK_VLEN] * b;
        }
    }
#pragma GCC unroll 32
    for (int r = 0; r < mr; r++) kk_store(m + r * NB, acc[r]);
}

static void products(long mr, const float *u, const float *v, long c_n, float *m) {
    if (mr == MR_BIG) product(MR_BIG, u, v, c_n, m);
    else product(MR_ALT, u, v, c_n, m);
}

/* out[4 l + k] = o[k][l]: the four output columns of each lane's tile, side by side */
static inline void interleave4(const kk_vf o[4], float *out) {
#if defined(__AVX512F__)
    /* (o0, o2) and (o1, o3) interleaved, then those two: o0 o1 o2 o3 of each lane in turn */
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30,
                                         15, 31);
    __m512 a = (__m512)o[0], b = (__m512)o[1], c = (__m512)o[2], e = (__m512)o[3];
    __m512 ac0 = _mm512_permutex2var_ps(a, lo, c), ac1 = _mm512_permutex2var_ps(a, hi, c);
    __m512 be0 = _mm512_permutex2var_ps(b, lo, e), be1 = _mm512_permutex2var_ps(b, hi, e);
    _mm512_store_ps(out, _mm512_permutex2var_ps(ac0, lo, be0));
    _mm512_store_ps(out + 16, _mm512_permutex2var_ps(ac0, hi, be0));
    _mm512_store_ps(out + 32, _mm512_permutex2var_ps(ac1, lo, be1));
    _mm512_store_ps(out + 48, _mm512_permutex2var_ps(ac1, hi, be1));
#else
    for (int l = 0; l < KK_VLEN; l++)
        for (int k = 0; k < 4; k++) out[4 * l + k] = o[k][l];
#endif
}

/* A block costs its KK_VLEN lanes whether it holds KK_VLEN tiles or one: ResNet's 28x28 maps
 * have 49 tiles, three blocks and one tile. A last block of at most FEW_TILES tiles is computed
 * as dot products instead, U's rows against each tile's V with the channels in the lanes; M
 * is left as the products leave a block's (lanes past the few tiles as they were). */
#define FEW_TILES 4

static void products_few(const w4_job *d, const float *u, float *m) {
    long cb_n = cblocks(d), cpad = cb_n * KK_VLEN, mr = d->mr;
    for (int e = 0; e < E; e++) {
        const float *ue = u + e * d->u_stride;
        float *me = m + e * mr * NB;
        for (long t = 0; t < d->few; t++) {
            const float *vv = d->vt + (t * E + e) * cpad;
            for (long r = 0; r < mr; r += 4) {
                kk_vf acc[4] = {kk_splat(0.0f), kk_splat(0.0f), kk_splat(0.0f), kk_splat(0.0f)};
                for (long cb = 0; cb < cb_n; cb++) {
                    kk_vf x = kk_load(vv + cb * KK_VLEN);
                    const float *ub = ue + (cb * mr + r) * KK_VLEN;
                    for (int q = 0; q < 4; q++) acc[q] += kk_load(ub + q * KK_VLEN) * x;
                }
                float out[4];
                kk_hsum4(acc[0], acc[1], acc[2], acc[3], out);
                for (int q = 0; q < 4; q++) me[(r + q) * NB + t] = out[q];
            }
        }
    }
}

/* Filter f's outputs of tiles [j0, j1) from its M[e] at m + e ldm. */
static void finish_filter(const w4_job *d, long f, const float *m, long ldm, long j0, long j1) {
    const kiln_conv2d *p = d->p;
    long ohw = p->oh * p->ow;
    float s = d->scale ? d->scale[f] : 1.0f, b = d->bias ? d->bias[f] : 0.0f;
    float *yf = d->y + f * ohw;
    const float *rf = d->res ? d->res + f * ohw : NULL;
    float row[4 * KK_VLEN] __attribute__((aligned(64)));
    for (long j = j0; j < j1;) {
        long ty = j / d->tw, tx = j - ty * d->tw;
        long n = KK_MIN(d->tw - tx, j1 - j);
        const float *mj = m + (j - j0);
        kk_vf a[4][6];
        for (int k = 0; k < 6; k++) {          /* A^T M, column k */
            kk_vf col[6], o[4];
            for (int i = 0; i < 6; i++) col[i] = kk_load(mj + (i * 6 + k) * ldm);
            output_1d(col, o);
            for (int i = 0; i < 4; i++) a[i][k] = o[i];
        }
        for (int i = 0; i < 4 && 4 * ty + i < p->oh; i++) {   /* (A^T M) A: row 4 ty + i */
            kk_vf o[4];
            output_1d(a[i], o);
            /* lanes are tiles: output column 4 tx + k of lane tx is o[k] */
            interleave4(o, row);
            long o0 = (4 * ty + i) * p->ow + 4 * tx;
            kk_conv_finish(yf + o0, row, rf ? rf + o0 : NULL, KK_MIN(4 * n, p->ow - 4 * tx),
                           s, b, d->act);
        }
        j += n;
    }
}

/* Items are panels: U of the panel, then every block's products and outputs. */
static void run_panels(void *ctx, long lo, long hi) {
    w4_job *d = (w4_job *)ctx;
    float m[E * MR_BIG * NB + KK_VLEN] __attribute__((aligned(64)));
    float *u = (float *)kiln_scratch(2, (size_t)E * d->u_stride * sizeof(float));
    for (long pn = lo; pn < hi; pn++) {
        long f0 = pn * d->mr;
        if (!u || transform_panel(d, f0, u) != 0.0f) {
            d->bad[pn] = 1;     /* the direct kernel computes it afterwards */
            continue;
        }
        for (long blk = 0; blk < d->blocks; blk++) {
            long j0 = blk * NB, j1 = KK_MIN(j0 + NB, d->ntiles);
            const float *v = d->v + blk * E * d->vplane;
            if (d->few && blk == d->blocks - 1)
                products_few(d, u, m);
            else
                for (int e = 0; e < E; e++)
                    products(d->mr, u + e * d->u_stride, v + e * d->vplane, d->p->c,
                             m + e * d->mr * NB);
            for (long f = f0; f < KK_MIN(d->p->f, f0 + d->mr); f++)
                finish_filter(d, f, m + (f - f0) * NB, d->mr * NB, j0, j1);
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * entry point
 * ------------------------------------------------------------------------------------------- */

static long tiles_of(const kiln_conv2d *p) { return ((p->oh + 3) / 4) * ((p->ow + 3) / 4); }

/* A batch of one (V of one image stays in L2) on maps of 36 tiles and more where F(2x2, 3x3)
 * would run by panels too. Against F(2x2, 3x3), both cores: ResNet-18's 28x28 layer with 128
 * channels 0.66 of its time alone, the whole network 0.95-0.98 (bench/revs_ab.py, 41 rounds);
 * its 14x14 layers (16 tiles, where the weights' transform, 36 elements per pair, weighs more)
 * 1.02x slower alone. Its 56x56 layers (F(2x2, 3x3) by blocks) were 0.93 of their time
 * alone, yet the network ran 1.04x slower with them (V, 1.9 MiB, fills L2), so they stay. */
int kk_conv2d_winograd4_pays(const kiln_conv2d *p) {
    static int enabled = -1;        /* KILN_WINOGRAD4=0 turns it off, KILN_WINOGRAD=0 both */
    if (enabled < 0) {
        const char *s = getenv("KILN_WINOGRAD4"), *all = getenv("KILN_WINOGRAD");
        enabled = !(s && s[0] == '0') && !(all && all[0] == '0');
    }
    long blocks = (tiles_of(p) + NB - 1) / NB;
    double macs = 9.0 * p->f * p->c * p->oh * p->ow;
    double v_bytes = 4.0 * E * p->c * blocks * NB;
    double v2_bytes = 64.0 * p->c * ((p->oh + 1) / 2) * ((p->ow + 1) / 2);
    return enabled && p->kh == 3 && p->kw == 3 && p->sh == 1 && p->sw == 1 && p->dh == 1 &&
           p->dw == 1 && p->groups == 1 && p->n == 1 && tiles_of(p) >= 36 && macs >= 2e7 &&
           v_bytes <= 2.0 * 1024 * 1024 && v2_bytes <= 2.0 * 1024 * 1024;
}

int kk_conv2d_winograd4(const kiln_conv2d *p, const float *x, const float *w, const float *scale,
                        const float *bias, const float *residual, float *y, int act) {
    if (!kk_conv2d_winograd4_pays(p)) return -1;
    w4_job d = {.p = p, .x = x, .w = w, .scale = scale, .bias = bias, .res = residual, .y = y,
                .act = act};
    d.th = (p->oh + 3) / 4;
    d.tw = (p->ow + 3) / 4;
    d.ntiles = d.th * d.tw;
    d.blocks = (d.ntiles + NB - 1) / NB;
    d.rows = 4 * d.th + 2;
    /* the tiles read residue columns up to tw (load_lanes reads only its lanes); the split
     * image is then about the input's size (padded to whole vectors, it was 2-4x, and writing
     * it cost more than splitting) */
    d.pitch = d.tw + 2;
    d.mr = kk_panel_rows(p->f, kiln_get_num_threads(), MR_BIG, MR_ALT);
    d.panels = (p->f + d.mr - 1) / d.mr;
    d.vplane = p->c * NB + 16;
    d.u_stride = cblocks(&d) * d.mr * KK_VLEN + 16;
    d.split = (float *)kiln_scratch(3, (size_t)p->c * d.rows * 4 * d.pitch * sizeof(float));
    long last = d.ntiles - (d.blocks - 1) * NB;
    d.few = last <= FEW_TILES ? last : 0;
    long vfloats = d.blocks * E * d.vplane;
    d.v = (float *)kiln_scratch(
        1, (size_t)(vfloats + d.few * E * cblocks(&d) * KK_VLEN) * sizeof(float));
    d.vt = d.v ? d.v + vfloats : NULL;
    d.bad = (unsigned char *)calloc((size_t)d.panels, 1);
    if (!d.split || !d.v || !d.bad) {
        free(d.bad);
        return -1;
    }
    kiln_parallel_for(split_and_transform, &d, p->c, KK_MAX(1, 4096 / (p->h * p->w + 1)));
    if (d.decline) {
        free(d.bad);
        return -1;
    }
    kk_parallel_for_chunks(run_panels, &d, d.panels, 1, 8);
    for (long pn = 0; pn < d.panels; pn++) {
        if (!d.bad[pn]) continue;
        /* its filters alone, as a convolution of their own */
        long f0 = pn * d.mr, nf = KK_MIN(d.mr, p->f - f0);
        kiln_conv2d q = *p;
        q.f = nf;
        long ohw = p->oh * p->ow;
        if (kk_conv2d_shift(&q, x, w + f0 * p->c * 9, scale ? scale + f0 : NULL,
                            bias ? bias + f0 : NULL, residual ? residual + f0 * ohw : NULL,
                            y + f0 * ohw, act) != 0)
            for (long f = f0; f < f0 + nf; f++) {
                kiln_conv2d one = *p;
                one.f = 1;
                kk_conv2d_reference(&one, x, w + f * p->c * 9, scale ? scale + f : NULL,
                                    bias ? bias + f : NULL,
                                    residual ? residual + f * ohw : NULL, y + f * ohw, act, 0);
            }
    }
    free(d.bad);
    return 0;
}
