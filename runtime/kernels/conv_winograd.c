/* conv_winograd.c: 3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3).
 *
 * Why. Most of a ResNet's time is in 3x3 stride-1 convolutions. The direct kernel
 * (conv_shift.c) spends 9 multiply-adds per output per (filter, channel) pair. F(2x2, 3x3)
 * computes each 2x2 block of outputs from the 4x4 input patch around it with 16
 * multiplications instead of 36: 2.25x fewer. With the 4x4 tile's elements numbered e:
 *
 *     U[e] = (G g G^T)[e]      the weights g (3x3) of each (filter, channel), f x c
 *     V[e] = (B^T d B)[e]      each tile's input patch d (4x4), c x tiles
 *     M[e] = U[e] V[e]         16 independent matrix products
 *     y    = A^T M A           each tile's 2x2 outputs
 *
 * with B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]
 * and A^T = [1 1 1 0; 0 1 -1 -1] (Lavin and Gray, 2015).
 *
 * The input's zero-padded rows are first split into even and odd columns (the split image),
 * so a vector of 16 tiles' patch column is one unaligned load; V is then computed block by
 * block of tiles, in V[e][c][tile] order. The products use a register tile of mr filters x nb
 * tiles; after the 16 products, A^T M A and the epilogue (scale, bias, residual, activation)
 * run on each filter's M. The weights are transformed per call (a graph's parameters
 * may change between calls), a panel of filters at a time, laid out so the product's inner
 * loop reads the panel's filters of one channel at one pointer. Two orders of work, by which
 * operand stays in L2 (see choose_order):
 *
 *   by panels (ResNet's 28x28 and 14x14 layers): V of every block once (up to 2 MiB), then
 *     one item per panel of 24 filters, which transforms its own weights (all of U, 16/9 of
 *     the weights, is never in memory) while fetching the next panel's into L2, and runs every
 *     block of 16 tiles against them;
 *   by blocks (56x56 maps, whose V would not stay in L2): U of every panel once, then items of
 *     (block of 32 tiles, chunk of panels), each running its products one element e at a
 *     time over all its panels, with V[e] and the panels' U[e] in L1.
 *
 * Exactness. The transforms add and subtract inputs before the products, so rounding differs
 * from the direct sum's (measured smaller here than the direct kernel's, whose sums are longer);
 * and an inf or a NaN would reach outputs whose windows do not hold it (through the tile's
 * other outputs, and inf - inf). So a non-finite input passes the call back to the direct
 * kernel, and a panel with a non-finite weight computes its filters by the definition.
 */
#include "kk_conv.h"
#include "kk_simd.h"
#include "kk_threads.h"

#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

/* register tiles: MR filters x 2 vectors of tiles (by blocks), 2 MR x 1 vector (by panels);
 * either holds 2 MR accumulators, which with the operands fit the register file. A layer whose
 * filters do not fill whole panels of MR (2 MR) may take panels of MR_ALT (2 MR_ALT) instead
 * (see choose_mr): 64 or 128 filters are 5 1/3 panels of 12 or 24, whose last panel computes
 * 12.5% of the products on zero weights. */
#if KK_VLEN >= 16
#define MR 12
#define MR_ALT 8
#else
#define MR 6
#define MR_ALT 4
#endif
#define NB_WIDE (2 * KK_VLEN)
#define NB_NARROW KK_VLEN
#define MR_MAX (2 * MR)
#define NB_MAX NB_WIDE

typedef struct {
    const kiln_conv2d *p;
    const float *w, *scale, *bias;
    int act;
    int by_panels;            /* the order of work (see the header) */
    long mr, nb;              /* the register tile: filters x tiles */
    long th, tw, ntiles;      /* tiles: th rows of tw, 2x2 outputs each */
    long blocks, panels;      /* of nb tiles, of mr filters (the last ones padded) */
    long pitch;               /* floats per even / odd padded row of the split image */
    long rows;                /* padded rows the tiles read: 2 th + 2 */
    long per_chunk, chunks;   /* by blocks: panels per item, items per block */
    float *u;                 /* by blocks: U of every panel (u_at) */
    long u_stride;            /* floats from U[e] to U[e + 1] of a panel */
    float *split;             /* the split image (split_row) */
    float *v;                 /* V of every block, or NULL (by blocks with one chunk) */
    long few;                 /* by panels: tiles of the last block when they are few, or 0 */
    float *vt;                /* their V by tile, channels contiguous (few_tiles_v) */
    long vplane;              /* floats from V[e] to V[e + 1] of a block: c nb, padded as U's */
    const float *x;           /* the batch's first image */
    const float *img;         /* the image of the batch being convolved */
    float *out;               /* its outputs */
    const float *res;         /* and residual, or NULL */
    int decline;              /* a non-finite input or weight, or no scratch memory */
} wino_job;

/* U[e] and U[e + 1] lie u_stride floats apart, padded past a multiple of 4 KiB (ResNet's
 * 256-channel layer gave exactly one): 16 streams whose addresses agree in their low 12 bits
 * collide in the L1 cache, which made the weights' transform 20 times slower. V's planes are
 * padded alike (c nb floats are 4 KiB times c / 32 with AVX-512). */
static long u_stride_for(long floats) { return floats + 16; }

/* ---------------------------------------------------------------------------------------------
 * the weights
 * ------------------------------------------------------------------------------------------- */

/* t[e] = (G g G^T)[e] of the 3x3 weights g[k] (one vector per tap k, a lane per channel);
 * returns their sum times 0 (NaN in a lane whose weights are not all finite). */
static inline kk_vf weights_transform(const kk_vf g[9], kk_vf t[16]) {
    kk_vf q[4][3], half = kk_splat(0.5f), probe = kk_splat(0.0f);
    for (int j = 0; j < 3; j++) {              /* G g: rows */
        kk_vf a = g[j], b = g[3 + j], e = g[6 + j];
        q[0][j] = a;
        q[1][j] = half * (a + b + e);
        q[2][j] = half * (a - b + e);
        q[3][j] = e;
        probe += (a + b + e) * 0.0f;
    }
    for (int i = 0; i < 4; i++) {              /* (G g) G^T */
        kk_vf a = q[i][0], b = q[i][1], e = q[i][2];
        t[i * 4 + 0] = a;
        t[i * 4 + 1] = half * (a + b + e);
        t[i * 4 + 2] = half * (a - b + e);
        t[i * 4 + 3] = e;
    }
    return probe;
}

/* A panel's U[e] is laid out [c / KK_VLEN][r][c % KK_VLEN]: the product's inner loop reads the
 * mr filters of one channel at one pointer plus constant offsets, and the transform below
 * writes a vector of KK_VLEN channels of one filter at a time. */
static long cblocks(const wino_job *d) { return (d->p->c + KK_VLEN - 1) / KK_VLEN; }

static long panel_floats(const wino_job *d) { return cblocks(d) * d->mr * KK_VLEN; }

/* U[e] of filters [f0, f0 + mr) at u + e u_stride (filters past the last: zero); returns 0, or
 * NaN when a weight is not finite. A filter's weights are one contiguous stream; each tap of
 * KK_VLEN channels is one gather with AVX-512 (lane by lane otherwise), the lanes past the last
 * channel zero. */
static float transform_panel(const wino_job *d, long f0, float *u, long u_stride) {
    const kiln_conv2d *p = d->p;
    long c_n = p->c, mr = d->mr;
    kk_vf probe = kk_splat(0.0f);
    for (long r = 0; r < mr; r++) {
        const float *wf = d->w + (f0 + r) * c_n * 9;
        for (long cb = 0; cb * KK_VLEN < c_n; cb++) {
            long c = cb * KK_VLEN, n = KK_MIN(KK_VLEN, c_n - c);
            kk_vf g[9], t[16];
            if (f0 + r >= p->f) {
                for (int e = 0; e < 16; e++) t[e] = kk_splat(0.0f);
            } else {
                kk_gather_taps(wf, c, n, g);
                probe += weights_transform(g, t);
            }
            float *dst = u + (cb * mr + r) * KK_VLEN;
            for (int e = 0; e < 16; e++) kk_store(dst + e * u_stride, t[e]);
        }
    }
    return kk_hsum(probe);
}

/* U of panel pn in the shared U (by blocks) */
static inline float *u_at(const wino_job *d, long pn) { return d->u + pn * panel_floats(d); }

static void transform_weights(void *ctx, long pn0, long pn1) {
    wino_job *d = (wino_job *)ctx;
    for (long pn = pn0; pn < pn1; pn++)
        if (transform_panel(d, pn * d->mr, u_at(d, pn), d->u_stride) != 0.0f)
            __atomic_store_n(&d->decline, 1, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------------------------------------
 * the input
 * ------------------------------------------------------------------------------------------- */

/* Channel c's padded row of the split image: even columns, then odd, each `pitch` long. */
static inline const float *split_row(const wino_job *d, long c, long row) {
    return d->split + (c * d->rows + row) * 2 * d->pitch;
}

/* The split image of channels [c0, c1): padded row i of channel c into its even columns
 * (padded column q = ix + pw even: at q / 2) and its odd ones; checks that image 0 is finite
 * (the others were checked before any output was written). */
static void split_channels(void *ctx, long c0, long c1) {
    wino_job *d = (wino_job *)ctx;
    const kiln_conv2d *p = d->p;
    long half = p->pw / 2;
    for (long c = c0; c < c1; c++) {
        const float *xc = d->img + c * p->h * p->w;
        if (d->img == d->x && kk_finite_probe(xc, p->h * p->w) != 0.0f) {
            __atomic_store_n(&d->decline, 1, __ATOMIC_RELAXED);
            return;
        }
        for (long i = 0; i < d->rows; i++) {
            float *e = (float *)split_row(d, c, i), *o = e + d->pitch;
            memset(e, 0, (size_t)(2 * d->pitch) * sizeof(float));
            long iy = i - p->ph;
            if (iy < 0 || iy >= p->h) continue;
            if (p->pw % 2 == 0) kk_deinterleave(xc + iy * p->w, p->w, e + half, o + half);
            else kk_deinterleave(xc + iy * p->w, p->w, o + half, e + half + 1);
        }
    }
}

/* v[(e c_n + c) nb + j - j0] = (B^T d B)[e] of tiles j in [j0, j1), channels [c0, c1), a
 * vector of tiles at a time, gathered from the tile rows it spans (kk_tile_runs): their patch
 * columns are four masked loads of each run's split rows. Lanes past j1 - j0 are zero. */
static void transform_block(const wino_job *d, long j0, long j1, long c0, long c1, float *v) {
    long nb = d->nb, plane = d->vplane;
    for (long h = 0; h < nb; h += KK_VLEN) {
        kk_tile_run run[KK_VLEN];
        int nrun = kk_tile_runs(KK_MIN(j0 + h, j1), KK_MIN(j0 + h + KK_VLEN, j1), d->tw, run);
        for (long c = c0; c < c1; c++) {
            kk_vf t[4][4];
            for (int i = 0; i < 4; i++) {      /* d B, a patch row at a time */
                kk_vf d0 = kk_splat(0.0f), d1 = d0, d2 = d0, d3 = d0;
                for (int q = 0; q < nrun; q++) {
                    long lo = run[q].lo, hi = run[q].hi;
                    const float *e = split_row(d, c, 2 * run[q].ty + i) + run[q].tx0 - lo;
                    const float *o = e + d->pitch;
                    d0 = kk_load_lanes(d0, e, lo, hi);
                    d1 = kk_load_lanes(d1, o, lo, hi);
                    d2 = kk_load_lanes(d2, e + 1, lo, hi);
                    d3 = kk_load_lanes(d3, o + 1, lo, hi);
                }
                t[i][0] = d0 - d2;
                t[i][1] = d1 + d2;
                t[i][2] = d2 - d1;
                t[i][3] = d1 - d3;
            }
            float *dst = v + c * nb + h;
            for (int k = 0; k < 4; k++) {      /* B^T (d B) */
                kk_vf col[4] = {t[0][k] - t[2][k], t[1][k] + t[2][k], t[2][k] - t[1][k],
                                t[1][k] - t[3][k]};
                for (int i = 0; i < 4; i++) kk_store(dst + (i * 4 + k) * plane, col[i]);
            }
        }
    }
}

static inline float *v_of_block(const wino_job *d, long blk) {
    return d->v + blk * 16 * d->vplane;
}

static void few_tiles_v(const wino_job *d, long c0, long c1);

/* When V of every block is kept: channels [c0, c1) split, then their V in every block (and of
 * the last block's few tiles by tile, when it has few), by the thread that split them. Split
 * by channels and transformed by blocks (two jobs), a block's transform read half its
 * channels' split rows from the other core's cache, and on two threads the pair took as long
 * as on one (the 28x28 layer with 128 channels: 197 us against 193). */
static void split_and_transform(void *ctx, long c0, long c1) {
    wino_job *d = (wino_job *)ctx;
    split_channels(d, c0, c1);
    if (__atomic_load_n(&d->decline, __ATOMIC_RELAXED)) return;
    for (long b = 0; b < d->blocks; b++)
        transform_block(d, b * d->nb, KK_MIN((b + 1) * d->nb, d->ntiles), c0, c1,
                        v_of_block(d, b));
    if (d->few) few_tiles_v(d, c0, c1);
}

/* ---------------------------------------------------------------------------------------------
 * the products, the output transform and the epilogue
 * ------------------------------------------------------------------------------------------- */

/* m[r][0:nv KK_VLEN] = sum_c U(c, r) v[c nv KK_VLEN + 0:nv KK_VLEN] for r < mr, U(c, r) at
 * u[((c / KK_VLEN) mr + r) KK_VLEN + c % KK_VLEN] (see panel_floats) */
static inline __attribute__((always_inline)) void product_tile(int mr, int nv, const float *u,
                                                               const float *v, long c_n,
                                                               float *m, const char *pf,
                                                               long pf_lines) {
    kk_vf acc[MR_MAX][2];
#pragma GCC unroll 32
    for (int r = 0; r < mr; r++)
        for (int i = 0; i < nv; i++) acc[r][i] = kk_splat(0.0f);
    for (long c0 = 0; c0 < c_n; c0 += KK_VLEN) {
        const float *ub = u + c0 * mr;
        long n = KK_MIN(KK_VLEN, c_n - c0);
        for (long cl = 0; cl < n; cl++) {
            const float *a = ub + cl, *b = v + (c0 + cl) * nv * KK_VLEN;
            if (c0 + cl < pf_lines) __builtin_prefetch(pf + (c0 + cl) * 64, 0, 2);
            kk_vf b0 = kk_load(b), b1 = nv > 1 ? kk_load(b + KK_VLEN) : b0;
#pragma GCC unroll 32
            for (int r = 0; r < mr; r++) {
                acc[r][0] += a[r * KK_VLEN] * b0;
                if (nv > 1) acc[r][1] += a[r * KK_VLEN] * b1;
            }
        }
    }
#pragma GCC unroll 32
    for (int r = 0; r < mr; r++)
        for (int i = 0; i < nv; i++) kk_store(m + (r * nv + i) * KK_VLEN, acc[r][i]);
}

/* by blocks: mr filters x 2 vectors of tiles */
static void products_wide(long mr, const float *u, const float *v, long c_n, float *m) {
    if (mr == MR) product_tile(MR, 2, u, v, c_n, m, NULL, 0);
    else product_tile(MR_ALT, 2, u, v, c_n, m, NULL, 0);
}

/* by panels: mr filters x 1 vector of tiles, fetching pf_lines lines at pf into L2 */

static void products_narrow(long mr, const float *u, const float *v, long c_n, float *m,
                            const char *pf, long pf_lines) {
    if (mr == 2 * MR) product_tile(2 * MR, 1, u, v, c_n, m, pf, pf_lines);
    else product_tile(2 * MR_ALT, 1, u, v, c_n, m, pf, pf_lines);
}

/* out[0:2 KK_VLEN] = a[0], b[0], a[1], b[1], ... */
static inline void interleave(kk_vf a, kk_vf b, float *out) {
#if defined(__AVX512F__)
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30,
                                         15, 31);
    _mm512_store_ps(out, _mm512_permutex2var_ps((__m512)a, lo, (__m512)b));
    _mm512_store_ps(out + 16, _mm512_permutex2var_ps((__m512)a, hi, (__m512)b));
#else
    for (int i = 0; i < KK_VLEN; i++) {
        out[2 * i] = a[i];
        out[2 * i + 1] = b[i];
    }
#endif
}

/* Filter f's outputs of tiles [j0, j1) from m + e ldm = its M[e] of those tiles. */
static void finish_filter(const wino_job *d, long f, const float *m, long ldm, long j0,
                          long j1) {
    const kiln_conv2d *p = d->p;
    long ohw = p->oh * p->ow;
    float s = d->scale ? d->scale[f] : 1.0f, b = d->bias ? d->bias[f] : 0.0f;
    float *yf = d->out + f * ohw;
    const float *rf = d->res ? d->res + f * ohw : NULL;
    float row[2 * KK_VLEN] __attribute__((aligned(64)));
    for (long j = j0; j < j1;) {
        long ty = j / d->tw, tx = j - ty * d->tw;
        long n = KK_MIN(KK_MIN(KK_VLEN, d->tw - tx), j1 - j);
        const float *mj = m + (j - j0);
        kk_vf a[2][4];
        for (int k = 0; k < 4; k++) {          /* A^T M */
            kk_vf m0 = kk_load(mj + k * ldm), m1 = kk_load(mj + (4 + k) * ldm),
                  m2 = kk_load(mj + (8 + k) * ldm), m3 = kk_load(mj + (12 + k) * ldm);
            a[0][k] = m0 + m1 + m2;
            a[1][k] = m1 - m2 - m3;
        }
        for (int i = 0; i < 2 && 2 * ty + i < p->oh; i++) {   /* (A^T M) A: row 2 ty + i */
            interleave(a[i][0] + a[i][1] + a[i][2], a[i][1] - a[i][2] - a[i][3], row);
            long o = (2 * ty + i) * p->ow + 2 * tx;
            kk_conv_finish(yf + o, row, rf ? rf + o : NULL, KK_MIN(2 * n, p->ow - 2 * tx), s, b,
                           d->act);
        }
        j += n;
    }
}

/* Filter f's outputs of tiles [j0, j1) by the definition: a panel whose weights are not all
 * finite, or an item whose thread got no scratch memory. */
static void direct_tiles(const wino_job *d, long f, long j0, long j1) {
    const kiln_conv2d *p = d->p;
    long ohw = p->oh * p->ow;
    for (long j = j0; j < j1; j++) {
        long ty = j / d->tw, tx = j - ty * d->tw;
        for (long oy = 2 * ty; oy < KK_MIN(2 * ty + 2, p->oh); oy++)
            for (long ox = 2 * tx; ox < KK_MIN(2 * tx + 2, p->ow); ox++) {
                float acc = 0.0f;
                for (long c = 0; c < p->c; c++)
                    for (long k = 0; k < 9; k++) {
                        /* padding counts as zeros times the weight: a NaN weight gives NaN
                         * everywhere, as in the other kernels */
                        long iy = oy + k / 3 - p->ph, ix = ox + k % 3 - p->pw;
                        float xv = iy >= 0 && iy < p->h && ix >= 0 && ix < p->w
                                       ? d->img[(c * p->h + iy) * p->w + ix]
                                       : 0.0f;
                        acc += xv * d->w[(f * p->c + c) * 9 + k];
                    }
                long o = f * ohw + oy * p->ow + ox;
                kk_conv_finish(d->out + o, &acc, d->res ? d->res + o : NULL, 1,
                               d->scale ? d->scale[f] : 1.0f, d->bias ? d->bias[f] : 0.0f,
                               d->act);
            }
    }
}

/* A block of tiles costs its KK_VLEN lanes whether it holds KK_VLEN tiles or one: ResNet's
 * 14x14 layers have 49 tiles, three full blocks and one tile, so their last block cost a quarter
 * of the products for a fiftieth of the outputs. A last block of at most FEW_TILES tiles (by
 * panels) is computed as dot products instead, U's rows against each tile's V with the channels
 * in the lanes. Old against new in one process, interleaved: the 14x14 layer with 256 channels
 * 1.15x faster (one tile), the 28x28 layer with 128 channels 1.03x (four tiles). */
#define FEW_TILES 4

/* vt[(t 16 + e) cpad + c] = V[e] of channel c of the last block's tile t, channels [c0, c1);
 * with the last channel, channels past c_n zero (U's are zero there too, but garbage times
 * zero could be NaN). */
static void few_tiles_v(const wino_job *d, long c0, long c1) {
    long c_n = d->p->c, cpad = cblocks(d) * KK_VLEN, end = c1 == c_n ? cpad : c1;
    const float *v = v_of_block(d, d->blocks - 1);
    for (long t = 0; t < d->few; t++)
        for (int e = 0; e < 16; e++) {
            float *dst = d->vt + (t * 16 + e) * cpad;
            const float *src = v + e * d->vplane + t;
            for (long c = c0; c < c1; c++) dst[c] = src[c * d->nb];
            for (long c = c1; c < end; c++) dst[c] = 0.0f;
        }
}

/* Rows [r, r + rg) of M[e] for nt tiles: rg x nt independent sums over the channels, each
 * U vector loaded once for every tile. */
static inline __attribute__((always_inline)) void few_rows(int rg, int nt, const float *ue,
                                                           const float *vv, long tile_stride,
                                                           long cb_n, long mr, long r,
                                                           float *me, long nb) {
    kk_vf acc[8][FEW_TILES];
    for (int q = 0; q < rg; q++)
        for (int t = 0; t < nt; t++) acc[q][t] = kk_splat(0.0f);
    for (long cb = 0; cb < cb_n; cb++) {
        kk_vf x[FEW_TILES];
        for (int t = 0; t < nt; t++) x[t] = kk_load(vv + t * tile_stride + cb * KK_VLEN);
        const float *ub = ue + (cb * mr + r) * KK_VLEN;
        for (int q = 0; q < rg; q++) {
            kk_vf w = kk_load(ub + q * KK_VLEN);
            for (int t = 0; t < nt; t++) acc[q][t] += w * x[t];
        }
    }
    float out[4];
    for (int q = 0; q < rg; q += 4)
        for (int t = 0; t < nt; t++) {
            kk_hsum4(acc[q][t], acc[q + 1][t], acc[q + 2][t], acc[q + 3][t], out);
            for (int i = 0; i < 4; i++) me[(r + q + i) * nb + t] = out[i];
        }
}

/* M[e] of the last block's few tiles into m, laid out as products_narrow leaves a block's
 * (lanes past the few tiles are left as they were, and dropped). One tile takes eight rows at a
 * time, more tiles four: 8 to 16 independent sums. */
static void products_few(const wino_job *d, const float *u, long u_stride, float *m) {
    long cb_n = cblocks(d), cpad = cb_n * KK_VLEN, mr = d->mr, nb = d->nb;
    for (int e = 0; e < 16; e++) {
        const float *ue = u + e * u_stride, *vv = d->vt + e * cpad;
        float *me = m + e * mr * nb;
        long ts = 16 * cpad;
        for (long r = 0; r < mr;) {
            if (d->few == 1 && r + 8 <= mr) {
                few_rows(8, 1, ue, vv, ts, cb_n, mr, r, me, nb);
                r += 8;
                continue;
            }
            switch (d->few) {
            case 1: few_rows(4, 1, ue, vv, ts, cb_n, mr, r, me, nb); break;
            case 2: few_rows(4, 2, ue, vv, ts, cb_n, mr, r, me, nb); break;
            case 3: few_rows(4, 3, ue, vv, ts, cb_n, mr, r, me, nb); break;
            default: few_rows(4, 4, ue, vv, ts, cb_n, mr, r, me, nb); break;
            }
            r += 4;
        }
    }
}

/* By panels: filters [f0, f0 + mr) x tiles [j0, j1), the 16 products of U (u, e stride
 * u_stride) and the block's V into m, then each filter finished while M is in L1. */
static void panel_block(const wino_job *d, long f0, const float *u, long u_stride,
                        const float *v, long j0, long j1, float *m, const char *ahead,
                        long ahead_bytes) {
    long c_n = d->p->c, mr = d->mr, nb = d->nb;
    for (int e = 0; e < 16; e++) {
        /* the bytes [ahead, + ahead_bytes) into L2, a sixteenth during each product */
        long b0 = e * ahead_bytes / 16 / 64 * 64, b1 = (e + 1) * ahead_bytes / 16 / 64 * 64;
        const char *pf = ahead ? ahead + b0 : NULL;
        long pf_lines = (b1 - b0) / 64;
        products_narrow(mr, u + e * u_stride, v + e * d->vplane, c_n, m + e * mr * nb, pf,
                        pf_lines);
    }
    for (long f = f0; f < KK_MIN(d->p->f, f0 + mr); f++)
        finish_filter(d, f, m + (f - f0) * nb, mr * nb, j0, j1);
}

/* By blocks: item = (block, chunk of panels), block-major. The products run element by
 * element of the tile, each over all the item's panels, so that V[e] of the block and U[e]
 * of the panels stay in L1 (panel by panel, the block's whole V, 128 KiB for 64 channels,
 * came from L2 again for every panel: ResNet's 56x56 layer 4% slower); M of the item's panels
 * is then finished from L2. */
static void run_blocks(void *ctx, long lo, long hi) {
    const wino_job *d = (const wino_job *)ctx;
    long per_panel = 16 * d->mr * d->nb;
    float *own = d->v ? NULL : (float *)kiln_scratch(1, (size_t)(16 * d->vplane) * sizeof(float));
    /* + KK_VLEN: finish_filter's last vector may read past M's last row (lanes dropped) */
    float *mall = (float *)kiln_scratch(
        0, (size_t)(d->per_chunk * per_panel + KK_VLEN) * sizeof(float));
    for (long item = lo; item < hi; item++) {
        long blk = item / d->chunks, ch = item % d->chunks;
        long j0 = blk * d->nb, j1 = KK_MIN(j0 + d->nb, d->ntiles);
        long pn0 = ch * d->per_chunk, pn1 = KK_MIN(d->panels, pn0 + d->per_chunk);
        const float *v = d->v ? v_of_block(d, blk) : own;
        if (!v || !mall) {
            for (long f = pn0 * d->mr; f < KK_MIN(d->p->f, pn1 * d->mr); f++)
                direct_tiles(d, f, j0, j1);
            continue;
        }
        if (!d->v) transform_block(d, j0, j1, 0, d->p->c, own);
        for (int e = 0; e < 16; e++)
            for (long pn = pn0; pn < pn1; pn++)
                products_wide(d->mr, u_at(d, pn) + e * d->u_stride, v + e * d->vplane,
                              d->p->c, mall + (pn - pn0) * per_panel + e * d->mr * d->nb);
        for (long pn = pn0; pn < pn1; pn++)
            for (long f = pn * d->mr; f < KK_MIN(d->p->f, (pn + 1) * d->mr); f++)
                finish_filter(d, f, mall + (pn - pn0) * per_panel + (f - pn * d->mr) * d->nb,
                              d->mr * d->nb, j0, j1);
    }
}

/* By panels: item = panel; its U transformed here, then every block. The next panel's weights
 * (contiguous) are fetched into L2 during this one's products, so that reading them from
 * memory (megabytes on the layers with many channels) overlaps the arithmetic. */
static void run_panels(void *ctx, long lo, long hi) {
    const wino_job *d = (const wino_job *)ctx;
    long c_n = d->p->c, stride = u_stride_for(panel_floats(d));
    float m[16 * MR_MAX * NB_MAX / 2 + KK_VLEN] __attribute__((aligned(64)));
    float *u = (float *)kiln_scratch(2, (size_t)16 * stride * sizeof(float));
    for (long pn = lo; pn < hi; pn++) {
        long f0 = pn * d->mr;
        if (!u || transform_panel(d, f0, u, stride) != 0.0f) {
            for (long f = f0; f < KK_MIN(d->p->f, f0 + d->mr); f++)
                direct_tiles(d, f, 0, d->ntiles);
            continue;
        }
        long next_bytes = pn + 1 < hi ? KK_MIN(d->mr, d->p->f - f0 - d->mr) * c_n * 36 : 0;
        const char *next = next_bytes ? (const char *)(d->w + (f0 + d->mr) * c_n * 9) : NULL;
        long piece = next_bytes / d->blocks / 64 * 64 + 64;
        for (long blk = 0; blk < d->blocks; blk++) {
            long b0 = KK_MIN(blk * piece, next_bytes), b1 = KK_MIN(b0 + piece, next_bytes);
            long j0 = blk * d->nb, j1 = KK_MIN(j0 + d->nb, d->ntiles);
            if (d->few && blk == d->blocks - 1) {
                for (long b = b0; b < b1; b += 64) __builtin_prefetch(next + b, 0, 2);
                products_few(d, u, stride, m);
                for (long f = f0; f < KK_MIN(d->p->f, f0 + d->mr); f++)
                    finish_filter(d, f, m + (f - f0) * d->nb, d->mr * d->nb, j0, j1);
                continue;
            }
            panel_block(d, f0, u, stride, v_of_block(d, blk), j0, j1, m,
                        next ? next + b0 : NULL, b1 - b0);
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * entry point
 * ------------------------------------------------------------------------------------------- */

/* Worth it: F(2x2, 3x3) costs 16 products per 4 outputs where the direct kernel costs 36, but
 * the weights' transform (per call) costs about as much as 15 tiles' products per (filter,
 * channel) pair. Measured against the direct kernel (both cores, AVX-512): 1.1-1.8x from 10x10
 * maps (25 tiles) up, level on 14x14 with 128 channels, slower on 7x7 (16 tiles; ResNet's
 * 512-channel layers, whose 9 MiB of weights also come from memory). Timed alone, a 7x7 layer
 * repeating one call with the same weights, Winograd was 1.2x faster on one thread and on two;
 * inside ResNet-18, where every call's weights come from memory, it made the whole network
 * 1.02x slower (50 rounds in one process, switched round by round): judge this threshold in
 * the network (bench W4), not on one layer. Small convolutions (under
 * 2e7 multiply-adds per image: 16 channels at 56x56, 64 at 20x20) lose to the passes' fixed
 * costs. */
static int winograd_pays(const kiln_conv2d *p) {
    static int enabled = -1;        /* KILN_WINOGRAD=0 turns it off (comparisons, debugging) */
    if (enabled < 0) {
        const char *s = getenv("KILN_WINOGRAD");
        enabled = !(s && s[0] == '0');
    }
    long tiles = ((p->oh + 1) / 2) * ((p->ow + 1) / 2);
    double macs = 9.0 * p->f * p->c * p->oh * p->ow;
    return enabled && p->kh == 3 && p->kw == 3 && p->sh == 1 && p->sw == 1 && p->dh == 1 &&
           p->dw == 1 && p->groups == 1 && tiles >= 25 && macs >= 2e7;
}

/* By panels when all of V stays in L2 (up to 28x28 maps with 128 channels), or when U would
 * not and V is the smaller (U is 16/9 of the weights, V 4x the input; by blocks re-reads U for
 * every block, by panels V for every panel). Measured: by panels 1.2x faster on 28x28 maps,
 * by blocks 1.3-1.4x on 56x56. */
static int choose_order(const kiln_conv2d *p, long ntiles) {
    double u_bytes = 16.0 * 4 * p->f * p->c, v_bytes = 16.0 * 4 * p->c * ntiles;
    return v_bytes <= 2.0 * 1024 * 1024 || (u_bytes > 1.5e6 && v_bytes < u_bytes);
}

/* Filters per panel (kk_panel_rows): by panels each thread takes whole panels; by blocks
 * every item runs every panel, as one thread would. */
static long choose_mr(long f, int by_panels, long big, long alt) {
    return kk_panel_rows(f, by_panels ? kiln_get_num_threads() : 1, big, alt);
}

/* The order of work, the register tile and the items; scratch memory. Returns -1 without it. */
static int plan(wino_job *d, const kiln_conv2d *p) {
    d->th = (p->oh + 1) / 2;
    d->tw = (p->ow + 1) / 2;
    d->ntiles = d->th * d->tw;
    d->rows = 2 * d->th + 2;
    /* the tiles read columns up to tw of the split rows (kk_load_lanes reads only its lanes),
     * and a row's even and odd columns fill up to (w + pw) / 2 + 1 */
    d->pitch = KK_MAX(d->tw + 2, (p->w + p->pw) / 2 + 2);
    d->by_panels = choose_order(p, d->ntiles);
    d->mr = d->by_panels ? choose_mr(p->f, 1, 2 * MR, 2 * MR_ALT)
                         : choose_mr(p->f, 0, MR, MR_ALT);
    d->nb = d->by_panels ? NB_NARROW : NB_WIDE;
    d->blocks = (d->ntiles + d->nb - 1) / d->nb;
    d->panels = (p->f + d->mr - 1) / d->mr;
    d->vplane = p->c * d->nb + 16;
    d->split = (float *)kiln_scratch(3, (size_t)p->c * d->rows * 2 * d->pitch * sizeof(float));
    if (!d->split) return -1;
    d->chunks = 1;
    d->per_chunk = d->panels;
    if (d->by_panels) {
        long last = d->ntiles - (d->blocks - 1) * d->nb;
        d->few = last <= FEW_TILES ? last : 0;
        long vfloats = d->blocks * 16 * d->vplane;
        d->v = (float *)kiln_scratch(
            1, (size_t)(vfloats + d->few * 16 * cblocks(d) * KK_VLEN) * sizeof(float));
        d->vt = d->v ? d->v + vfloats : NULL;
        return d->v ? 0 : -1;
    }
    /* by blocks: the panels split when there are too few blocks for about 8 items per thread;
     * then V of every block is kept, else each item transforms its own block */
    long want = 8L * kiln_get_num_threads();
    if (d->blocks < want) {
        d->chunks = KK_MIN(d->panels, (want + d->blocks - 1) / d->blocks);
        d->per_chunk = (d->panels + d->chunks - 1) / d->chunks;
        d->chunks = (d->panels + d->per_chunk - 1) / d->per_chunk;
    }
    if (d->chunks > 1) {
        d->v = (float *)kiln_scratch(1, (size_t)d->blocks * 16 * d->vplane * sizeof(float));
        if (!d->v) return -1;
    }
    d->u_stride = u_stride_for(panel_floats(d) * d->panels);
    d->u = (float *)kiln_scratch(2, (size_t)16 * d->u_stride * sizeof(float));
    return d->u ? 0 : -1;
}

int kk_conv2d_winograd(const kiln_conv2d *p, const float *x, const float *w, const float *scale,
                       const float *bias, const float *residual, float *y, int act) {
    if (!winograd_pays(p)) return -1;
    wino_job d;
    memset(&d, 0, sizeof d);
    d.p = p;
    d.x = x;
    d.w = w;
    d.scale = scale;
    d.bias = bias;
    d.act = act;
    if (plan(&d, p) != 0) return -1;
    if (!d.by_panels) {
        kiln_parallel_for(transform_weights, &d, d.panels, 1);
        if (d.decline) return -1;
    }
    long ohw = p->oh * p->ow, chw = p->c * p->h * p->w;
    /* image 0 is checked while it is split; the others now, since a decline must come before
     * any output is written (y may be the residual) */
    for (long img = 1; img < p->n; img++)
        if (kk_finite_probe(x + img * chw, chw) != 0.0f) return -1;
    for (long img = 0; img < p->n; img++) {
        d.img = x + img * chw;
        d.out = y + img * p->f * ohw;
        d.res = residual ? residual + img * p->f * ohw : NULL;
        kiln_parallel_for(d.v ? split_and_transform : split_channels, &d, p->c,
                          KK_MAX(1, 4096 / (p->h * p->w + 1)));
        if (d.decline) return -1;
        if (d.by_panels) kk_parallel_for_chunks(run_panels, &d, d.panels, 1, 8);
        else kk_parallel_for_chunks(run_blocks, &d, d.blocks * d.chunks, 1, 8);
    }
    return 0;
}
