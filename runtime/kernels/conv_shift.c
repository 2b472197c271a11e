/* conv_shift.c: the forward 2-D convolution without a column matrix ("shifted rows").
 *
 * The idea. Output position (oy, ox), tap (c, ki, kj) reads the zero-padded image at row
 * oy sh + ki dh, column ox sw + kj dw. Split the padded image of each channel into phases, one
 * per (row mod sh, column mod sw) that some tap reads: phase (a, b) holds the padded rows a,
 * a + sh, a + 2 sh, ... and of them the columns b, b + sw, ... Then that element is element
 * (oy + ki dh / sh, ox + kj dw / sw) of phase (ki dh mod sh, kj dw mod sw). Store every phase
 * row-major with one pitch wq and number the output positions p = oy wq + ox: position p of
 * tap k reads buf[off[k] + p]. So row k of the product's right operand is a contiguous slice
 * of the buffer, for every stride, dilation and padding, and no column matrix is ever written:
 *
 *     y[f, p] = sum_k w[f, k] buf[off[k] + p]          (k = (c, ki, kj), the weight's order)
 *
 * The product runs over oh x wq positions; the wq - ow columns of each row that are not
 * outputs are computed and dropped (ResNet's 56x56 layers: 3%, 7x7 layers: 22%). Stride 1 has
 * one phase (the padded image); a 1x1 stride-2 shortcut builds only phase (0, 0); the 7x7
 * stride-2 stem builds four and reads each of its 147 taps once (no zero taps).
 *
 * The register tile is MR filters x NR = 2 vectors of positions: per tap it loads two vectors
 * of the buffer and broadcasts MR weights, 2 MR FMAs. The weights are read where they are
 * (MR row pointers, each walked in order), not packed: a graph's parameters may change between
 * calls, and for the small maps of a batch of one (7x7, 14x14) the weights come from memory
 * once per call anyway, streamed while the FMAs run. Measured on ResNet-18's layers (one core,
 * AVX-512, weights from DRAM), packed and unpacked weights ran at the same speed; repacking
 * them per call cost more than it saved. The epilogue (per-filter scale and bias, residual,
 * activation, dropping the extra columns) runs on each tile while it is in L1.
 *
 * A batch of one splits (filter panel, block of position tiles) pairs over the thread pool,
 * each thread reading a copy of the buffer that it built itself (on two threads and a large
 * map, only the rows its tiles read: two_ends); a larger batch runs one image per thread,
 * each with its own buffer.
 */
#include "kiln_kernels.h"
#include "kk_act.h"
#include "kk_conv.h"
#include "kk_simd.h"
#include "kk_threads.h"
#include "kiln_math.h"

#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#define NR (2 * KK_VLEN)
/* filters per tile: 2 MR accumulators + 2 operands + a broadcast fit the register file
 * (32 vector registers with AVX-512, 16 otherwise) */
#if KK_VLEN >= 16
#define MR_BIG 12
#define MR_MID 8
#define MR_SMALL 4
#else
#define MR_BIG 6
#define MR_MID 4
#define MR_SMALL 2
#endif

/* ---------------------------------------------------------------------------------------------
 * the plan: phases, pitch, tap offsets
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    const kiln_conv2d *p;
    long cg, fg, kdim, ohw;
    long hq, wq;             /* rows and pitch of a phase */
    long qplane;             /* floats per phase */
    long nra, nrb;           /* phases used: nra row residues x nrb column residues */
    long cstride;            /* floats per channel: nra * nrb * qplane */
    long np, ntiles;         /* positions oh * wq, tiles of NR of them */
    long buf_floats;         /* one image's buffer, all c channels, with the tail slack */
    long *off;               /* kdim offsets of the taps of group 0 */
    long *ra, *rb;           /* padded row / column residue -> phase index, -1 unused */
    long max_shift;          /* the largest tap offset within a phase: row wq + column */
} shift_plan;

/* The residue maps and offsets; `mem` holds kdim + sh + sw longs. */
static void plan_init(shift_plan *q, const kiln_conv2d *p, long *mem) {
    q->p = p;
    q->cg = p->c / p->groups;
    q->fg = p->f / p->groups;
    q->kdim = q->cg * p->kh * p->kw;
    q->ohw = p->oh * p->ow;
    long hp = p->h + 2 * p->ph, wp = p->w + 2 * p->pw;
    q->hq = (hp + p->sh - 1) / p->sh;
    q->wq = (wp + p->sw - 1) / p->sw;
    q->qplane = q->hq * q->wq;
    q->off = mem;
    q->ra = mem + q->kdim;
    q->rb = q->ra + p->sh;
    for (long a = 0; a < p->sh; a++) q->ra[a] = -1;
    for (long b = 0; b < p->sw; b++) q->rb[b] = -1;
    for (long ki = 0; ki < p->kh; ki++) q->ra[ki * p->dh % p->sh] = 0;
    for (long kj = 0; kj < p->kw; kj++) q->rb[kj * p->dw % p->sw] = 0;
    q->nra = q->nrb = 0;
    for (long a = 0; a < p->sh; a++)
        if (q->ra[a] == 0) q->ra[a] = q->nra++;
    for (long b = 0; b < p->sw; b++)
        if (q->rb[b] == 0) q->rb[b] = q->nrb++;
    q->cstride = q->nra * q->nrb * q->qplane;
    q->np = p->oh * q->wq;
    q->ntiles = (q->np + NR - 1) / NR;
    /* the last tile reads up to NR - 1 positions past np, and a tap's column shift is < wq:
     * off[k] + p stays below c * cstride + wq + NR (see the header) */
    q->buf_floats = p->c * q->cstride + q->wq + NR + KK_VLEN;
    /* the taps of channel 0 (a division each), then every channel's by adding cstride */
    long kk = p->kh * p->kw;
    q->max_shift = 0;
    for (long ki = 0; ki < p->kh; ki++)
        for (long kj = 0; kj < p->kw; kj++) {
            long r = ki * p->dh, s = kj * p->dw;
            long phase = q->ra[r % p->sh] * q->nrb + q->rb[s % p->sw];
            q->off[ki * p->kw + kj] = phase * q->qplane + r / p->sh * q->wq + s / p->sw;
            q->max_shift = KK_MAX(q->max_shift, r / p->sh * q->wq + s / p->sw);
        }
    for (long c = 1; c < q->cg; c++)
        for (long t = 0; t < kk; t++) q->off[c * kk + t] = q->off[t] + c * q->cstride;
}

void kk_deinterleave(const float *src, long n, float *even, float *odd) {
    long t = 0;
#if defined(__AVX512F__)
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28,
                                         30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29,
                                         31);
    for (; 2 * t + 32 <= n; t += 16) {
        __m512 a = _mm512_loadu_ps(src + 2 * t), b = _mm512_loadu_ps(src + 2 * t + 16);
        _mm512_storeu_ps(even + t, _mm512_permutex2var_ps(a, ie, b));
        if (odd) _mm512_storeu_ps(odd + t, _mm512_permutex2var_ps(a, io, b));
    }
    long rem = n - 2 * t;          /* < 32: masked loads and stores */
    if (rem > 0) {
        __m512 a = _mm512_maskz_loadu_ps((__mmask16)((1u << KK_MIN(rem, 16)) - 1u), src + 2 * t);
        __m512 b = _mm512_maskz_loadu_ps((__mmask16)((1u << KK_MAX(rem - 16, 0)) - 1u),
                                         src + 2 * t + 16);
        _mm512_mask_storeu_ps(even + t, (__mmask16)((1u << (rem + 1) / 2) - 1u),
                              _mm512_permutex2var_ps(a, ie, b));
        if (odd)
            _mm512_mask_storeu_ps(odd + t, (__mmask16)((1u << rem / 2) - 1u),
                                  _mm512_permutex2var_ps(a, io, b));
        return;
    }
#endif
    for (; 2 * t + 1 < n; t++) {
        even[t] = src[2 * t];
        if (odd) odd[t] = src[2 * t + 1];
    }
    if (2 * t < n) even[t] = src[2 * t];
}

/* x[0:n] = 0; the few floats of a row's padding without a call */
static inline void zero_floats(float *x, long n) {
    if (n <= 0) return;
    if (n <= KK_VLEN) kk_store_n(x, kk_splat(0.0f), n);
    else memset(x, 0, (size_t)n * sizeof(float));
}

/* Phase columns j of residue b whose input column j sw + b - pw lies in [0, w): [j0, j1). */
static void phase_columns(const shift_plan *q, long b, long *j0, long *j1) {
    const kiln_conv2d *p = q->p;
    long lo = p->pw > b ? (p->pw - b + p->sw - 1) / p->sw : 0;
    long hi = (p->w + p->pw - b + p->sw - 1) / p->sw;
    if (hi > q->wq) hi = q->wq;
    if (lo > hi) lo = hi;
    *j0 = lo;
    *j1 = hi;
}

/* Rows [i0, i1) of every phase of every channel of one image x into buf. */
static void build_rows(const shift_plan *q, const float *x, float *buf, long i0, long i1) {
    const kiln_conv2d *p = q->p;
    /* with stride 2 and both column residues used, one pass splits each input row into its
     * even and odd columns: the residue of input column 0 is pw mod 2 */
    int split2 = p->sw == 2 && q->rb[0] >= 0 && q->rb[1] >= 0;
    long b_even = p->pw % 2;
    for (long c = 0; c < p->c; c++) {
        const float *xc = x + c * p->h * p->w;
        for (long a = 0; a < p->sh; a++) {
            if (q->ra[a] < 0) continue;
            float *rows[2] = {NULL, NULL};    /* split2: the phases of even, odd columns */
            for (long b = 0; b < p->sw; b++) {
                if (q->rb[b] < 0) continue;
                float *dst = buf + c * q->cstride + (q->ra[a] * q->nrb + q->rb[b]) * q->qplane;
                long j0, j1;
                phase_columns(q, b, &j0, &j1);
                if (split2) rows[b == b_even ? 0 : 1] = dst + j0;
                for (long i = i0; i < i1; i++) {
                    float *row = dst + i * q->wq;
                    long iy = i * p->sh + a - p->ph;
                    if (iy < 0 || iy >= p->h || j0 == j1) {
                        memset(row, 0, (size_t)q->wq * sizeof(float));
                        continue;
                    }
                    zero_floats(row, j0);
                    zero_floats(row + j1, q->wq - j1);
                    if (split2) continue;     /* filled below, both residues at once */
                    const float *src = xc + iy * p->w + (j0 * p->sw + b - p->pw);
                    if (p->sw == 1)
                        memcpy(row + j0, src, (size_t)(j1 - j0) * sizeof(float));
                    else if (p->sw == 2)   /* one residue used: every other column, vectorised
                                            * (as a scalar loop, 30% of a 1x1 stride-2 layer) */
                        kk_deinterleave(src, 2 * (j1 - j0) - 1, row + j0, NULL);
                    else
                        for (long t = 0; t < j1 - j0; t++) row[j0 + t] = src[t * p->sw];
                }
            }
            if (!split2) continue;
            for (long i = i0; i < i1; i++) {
                long iy = i * p->sh + a - p->ph;
                if (iy < 0 || iy >= p->h) continue;
                kk_deinterleave(xc + iy * p->w, p->w, rows[0] + i * q->wq, rows[1] + i * q->wq);
            }
        }
    }
}

/* The tail slack past the last channel (read only into dropped positions). */
static void clear_tail(const shift_plan *q, float *buf) {
    long used = q->p->c * q->cstride;
    memset(buf + used, 0, (size_t)(q->buf_floats - used) * sizeof(float));
}

static void build_buffer(const shift_plan *q, const float *x, float *buf) {
    build_rows(q, x, buf, 0, q->hq);
    clear_tail(q, buf);
}

/* ---------------------------------------------------------------------------------------------
 * the register tile and its epilogue
 * ------------------------------------------------------------------------------------------- */

/* t[r][0:NR] = sum_k w[r][k] b[off[k] + 0:NR] for the filter rows w + r ldw, r < mr; rows past
 * h repeat row h - 1 (their sums are not stored by the caller). */
static inline __attribute__((always_inline)) void tile_mr(int mr, const float *w, long ldw,
                                                          int h, long kdim, const float *b,
                                                          const long *off, float *t) {
    const float *a[MR_BIG];
    kk_vf acc[MR_BIG][2];
    for (int r = 0; r < mr; r++) {
        a[r] = w + (r < h ? r : h - 1) * ldw;
        acc[r][0] = acc[r][1] = kk_splat(0.0f);
    }
    for (long k = 0; k < kdim; k++) {
        const float *bk = b + off[k];
        kk_vf b0 = kk_load(bk), b1 = kk_load(bk + KK_VLEN);
        for (int r = 0; r < mr; r++) {
            float s = a[r][k];
            acc[r][0] += s * b0;
            acc[r][1] += s * b1;
        }
    }
    for (int r = 0; r < mr; r++) {
        kk_store(t + r * NR, acc[r][0]);
        kk_store(t + r * NR + KK_VLEN, acc[r][1]);
    }
}

static void tile_big(const float *w, long ldw, int h, long kdim, const float *b, const long *off,
                     float *t) {
    tile_mr(MR_BIG, w, ldw, h, kdim, b, off, t);
}

static void tile_mid(const float *w, long ldw, int h, long kdim, const float *b, const long *off,
                     float *t) {
    tile_mr(MR_MID, w, ldw, h, kdim, b, off, t);
}

static void tile_small(const float *w, long ldw, int h, long kdim, const float *b,
                       const long *off, float *t) {
    tile_mr(MR_SMALL, w, ldw, h, kdim, b, off, t);
}

typedef struct {
    const shift_plan *q;
    const float *x, *w, *scale, *bias, *residual;
    float *y;
    int act;
    unsigned long call;      /* batch of one: this call's number (see items_of_one) */
    long panels;             /* panels of MR_BIG filters, all groups */
    long pchunks, per_chunk; /* the panels split into pchunks chunks of per_chunk */
    long *ends;              /* two threads from both ends: items claimed, from the front,
                              * from the back (two_ends) */
} shift_job;

/* Tiles [t0, t1) of filters [f0, f0 + h) of group g of one image (buf -> y, residual). */
static void run_tiles(const shift_job *d, const float *buf, long img, long g, long f0, int h,
                      long t0, long t1) {
    const shift_plan *q = d->q;
    const kiln_conv2d *p = q->p;
    long ff = g * q->fg + f0;                         /* first filter, counted over groups */
    const float *w = d->w + ff * q->kdim;
    const float *b = buf + g * q->cg * q->cstride;
    float *y = d->y + (img * p->f + ff) * q->ohw;
    const float *res = d->residual ? d->residual + (img * p->f + ff) * q->ohw : NULL;
    float t[MR_BIG * NR] __attribute__((aligned(64)));
    long seg_t[NR + 1], seg_o[NR + 1], seg_n[NR + 1];
    for (long tile = t0; tile < t1; tile++) {
        long p0 = tile * NR;
        if (h > MR_MID) tile_big(w, q->kdim, h, q->kdim, b + p0, q->off, t);
        else if (h > MR_SMALL) tile_mid(w, q->kdim, h, q->kdim, b + p0, q->off, t);
        else tile_small(w, q->kdim, h, q->kdim, b + p0, q->off, t);
        /* the runs of real outputs among positions [p0, p0 + NR): row oy, columns < ow */
        int nseg = 0;
        long pos = p0, end = KK_MIN(p0 + NR, q->np);
        while (pos < end) {
            long oy = pos / q->wq, ox = pos - oy * q->wq;
            if (ox >= p->ow) {
                pos = (oy + 1) * q->wq;
                continue;
            }
            long n = KK_MIN(p->ow - ox, end - pos);
            if (nseg > 0 && seg_o[nseg - 1] + seg_n[nseg - 1] == oy * p->ow + ox &&
                seg_t[nseg - 1] + seg_n[nseg - 1] == pos - p0) {
                /* continues the last run (a pitch of exactly ow: 1x1 convolutions without
                 * padding): one epilogue call per row of the tile, not one per output row;
                 * on a 7x7 map a tile spans five output rows */
                seg_n[nseg - 1] += n;
            } else {
                seg_t[nseg] = pos - p0;
                seg_o[nseg] = oy * p->ow + ox;
                seg_n[nseg++] = n;
            }
            pos += n;
        }
        for (int r = 0; r < h; r++) {
            long f = ff + r;
            float s = d->scale ? d->scale[f] : 1.0f, bb = d->bias ? d->bias[f] : 0.0f;
            for (int i = 0; i < nseg; i++)
                kk_conv_finish(y + r * q->ohw + seg_o[i], t + r * NR + seg_t[i],
                           res ? res + r * q->ohw + seg_o[i] : NULL, seg_n[i], s, bb, d->act);
        }
    }
}

static long panels_per_group(const shift_plan *q) { return (q->fg + MR_BIG - 1) / MR_BIG; }

/* Tiles are taken TILE_PAIR at a time and, for each, every panel of filters in turn: the
 * positions' rows of the buffer stay in L1 while the weights stream past them (reading the
 * weights in L1 and the buffer from L2, the other order, measured 25% slower), and a second
 * tile reuses each panel's weights from L1. On a 7x7 map one pair is every position, so the
 * weights are read once. */
#define TILE_PAIR 2

/* item = (pair of tiles, chunk of panels), pair-major */
static void run_item(const shift_job *d, const float *buf, long img, long item) {
    const shift_plan *q = d->q;
    long ppg = panels_per_group(q);
    long pair = item / d->pchunks, chunk = item % d->pchunks;
    long t0 = pair * TILE_PAIR, t1 = KK_MIN(q->ntiles, t0 + TILE_PAIR);
    long pn1 = KK_MIN(d->panels, (chunk + 1) * d->per_chunk);
    for (long pn = chunk * d->per_chunk; pn < pn1; pn++) {
        long g = pn / ppg, f0 = (pn % ppg) * MR_BIG;
        run_tiles(d, buf, img, g, f0, (int)KK_MIN(MR_BIG, q->fg - f0), t0, t1);
    }
}

static long items_count(const shift_job *d) {
    return (d->q->ntiles + TILE_PAIR - 1) / TILE_PAIR * d->pchunks;
}

/* Outputs of filters [f0, f1) of image img at positions [pos0, pos1), position oy pitch + ox
 * (columns ox >= ow skipped), by the definition: the fallbacks. */
static void reference_part(const kiln_conv2d *p, const float *x, const float *w,
                           const float *scale, const float *bias, const float *residual,
                           float *y, int act, long img, long f0, long f1, long pos0, long pos1,
                           long pitch) {
    long cg = p->c / p->groups, fg = p->f / p->groups, ohw = p->oh * p->ow;
    const float *xi = x + img * p->c * p->h * p->w;
    for (long f = f0; f < f1; f++) {
        long g = f / fg;
        const float *wf = w + f * cg * p->kh * p->kw;
        float s = scale ? scale[f] : 1.0f, b = bias ? bias[f] : 0.0f;
        float *yf = y + (img * p->f + f) * ohw;
        const float *rf = residual ? residual + (img * p->f + f) * ohw : NULL;
        for (long pos = pos0; pos < pos1; pos++) {
            long oy = pos / pitch, ox = pos % pitch;
            if (ox >= p->ow) continue;
            float acc = 0.0f;
            for (long c = 0; c < cg; c++)
                acc = kk_window_acc(p, xi + (g * cg + c) * p->h * p->w,
                                    wf + c * p->kh * p->kw, oy, ox, acc);
            long o = oy * p->ow + ox;
            float v = acc * s + b + (rf ? rf[o] : 0.0f);
            yf[o] = kk_act1(v, act);
        }
    }
}

/* Item i of a batch of one by the definition: its filters at its tiles' positions. */
static void reference_item(const shift_job *d, long item) {
    const shift_plan *q = d->q;
    long ppg = panels_per_group(q);
    long pair = item / d->pchunks, chunk = item % d->pchunks;
    long p0 = pair * TILE_PAIR * NR, p1 = KK_MIN(q->np, p0 + TILE_PAIR * NR);
    long pn1 = KK_MIN(d->panels, (chunk + 1) * d->per_chunk);
    for (long pn = chunk * d->per_chunk; pn < pn1; pn++) {
        long f0 = pn / ppg * q->fg + (pn % ppg) * MR_BIG;
        long f1 = pn / ppg * q->fg + KK_MIN(q->fg, (pn % ppg + 1) * MR_BIG);
        reference_part(q->p, d->x, d->w, d->scale, d->bias, d->residual, d->y, d->act, 0, f0,
                       f1, p0, p1, q->wq);
    }
}

/* A batch of one on several threads: each thread builds the whole buffer in its own scratch
 * the first time it claims items of this call, then runs whichever items it claims. Building
 * twice costs a few percent of the products; sharing one buffer built by all threads cost far
 * more, since most of a tile's rows then came from the other core's cache (ResNet-18's
 * 64->128 stride-2 layer took as long on two threads as on one). */
static __thread unsigned long t_built_call;   /* the call whose buffer this thread's slot holds */

static void items_of_one(void *ctx, long lo, long hi) {
    const shift_job *d = (const shift_job *)ctx;
    const shift_plan *q = d->q;
    float *buf = (float *)kiln_scratch(2, (size_t)q->buf_floats * sizeof(float));
    if (!buf) {   /* out of memory on this thread: its items by the definition */
        for (long i = lo; i < hi; i++) reference_item(d, i);
        return;
    }
    if (t_built_call != d->call) {
        build_buffer(q, d->x, buf);
        t_built_call = d->call;
    }
    for (long i = lo; i < hi; i++) run_item(d, buf, 0, i);
}

/* Two threads on a map of eight pairs of tiles or more (the stem, the 56x56 layers): one
 * takes items from the first on, the other from the last down, so that each thread's positions
 * are one run of rows, and each builds only the rows of the phases that its items read: half
 * the building of a copy each. Items are still claimed one at a time, so a thread that runs
 * slower takes fewer. */
static __thread long t_row_lo, t_row_hi;   /* rows built for call t_built_call: [lo, hi) */
static __thread float *t_cleared;          /* the scratch this thread has zeroed once */
static __thread long t_cleared_floats;

/* Rows [lo, hi) of every phase that pair `pair`'s outputs read. Its dropped positions (past
 * the map's last output) may read further, into rows or planes this thread did not build for
 * this call: they hold zeros or an earlier call's values, and fill only dropped lanes. */
static void pair_rows(const shift_plan *q, long pair, long *lo, long *hi) {
    long first = pair * TILE_PAIR * NR;
    long last = KK_MIN(q->np, KK_MIN(q->ntiles, (pair + 1) * TILE_PAIR) * NR) - 1;
    *lo = KK_MIN(first / q->wq, q->hq);
    *hi = KK_MIN(q->hq, (last + q->max_shift) / q->wq + 1);
}

static void ensure_rows(const shift_job *d, float *buf, long lo, long hi) {
    const shift_plan *q = d->q;
    if (t_built_call != d->call) {
        if (t_cleared != buf || t_cleared_floats < q->buf_floats) {
            memset(buf, 0, (size_t)q->buf_floats * sizeof(float));
            t_cleared = buf;
            t_cleared_floats = q->buf_floats;
        }
        build_rows(q, d->x, buf, lo, hi);
        t_built_call = d->call;
        t_row_lo = lo;
        t_row_hi = hi;
        return;
    }
    if (lo < t_row_lo) {
        build_rows(q, d->x, buf, lo, t_row_lo);
        t_row_lo = lo;
    }
    if (hi > t_row_hi) {
        build_rows(q, d->x, buf, t_row_hi, hi);
        t_row_hi = hi;
    }
}

static void two_ends(void *ctx, long lo, long hi) {
    const shift_job *d = (const shift_job *)ctx;
    const shift_plan *q = d->q;
    long items = items_count(d);
    float *buf = (float *)kiln_scratch(2, (size_t)q->buf_floats * sizeof(float));
    for (long end = lo; end < hi; end++)
        while (__atomic_fetch_add(&d->ends[0], 1, __ATOMIC_RELAXED) < items) {
            long i = end == 0 ? __atomic_fetch_add(&d->ends[1], 1, __ATOMIC_RELAXED)
                              : items - 1 - __atomic_fetch_add(&d->ends[2], 1, __ATOMIC_RELAXED);
            if (!buf) {   /* out of memory on this thread: its items by the definition */
                reference_item(d, i);
                continue;
            }
            long r0, r1;
            pair_rows(q, i / d->pchunks, &r0, &r1);
            ensure_rows(d, buf, r0, r1);
            run_item(d, buf, 0, i);
        }
}

static void images(void *ctx, long lo, long hi) {
    const shift_job *d = (const shift_job *)ctx;
    const shift_plan *q = d->q;
    float *buf = (float *)kiln_scratch(2, (size_t)q->buf_floats * sizeof(float));
    long items = items_count(d);
    for (long img = lo; img < hi; img++) {
        if (!buf) {   /* out of memory on this thread: the plain loop, slowly but right */
            kk_conv2d_reference(q->p, d->x, d->w, d->scale, d->bias, d->residual, d->y, d->act,
                                img);
            continue;
        }
        build_buffer(q, d->x + img * q->p->c * q->p->h * q->p->w, buf);
        for (long i = 0; i < items; i++) run_item(d, buf, img, i);
    }
}

/* ---------------------------------------------------------------------------------------------
 * entry points
 * ------------------------------------------------------------------------------------------- */

void kk_conv2d_reference(const kiln_conv2d *p, const float *x, const float *w,
                         const float *scale, const float *bias, const float *residual, float *y,
                         int act, long img) {
    reference_part(p, x, w, scale, bias, residual, y, act, img, 0, p->f, 0, p->oh * p->ow,
                   p->ow);
}

int kk_conv2d_shift(const kiln_conv2d *p, const float *x, const float *w, const float *scale,
                    const float *bias, const float *residual, float *y, int act) {
    long cg = p->c / p->groups, kdim = cg * p->kh * p->kw;
    long *mem = (long *)kiln_scratch(3, (size_t)(kdim + p->sh + p->sw) * sizeof(long));
    if (!mem) return -1;
    shift_plan q;
    plan_init(&q, p, mem);
    shift_job d = {&q, x, w, scale, bias, residual, y, act, 0, 0, 1, 0, NULL};
    d.panels = p->groups * panels_per_group(&q);
    d.per_chunk = d.panels;
    int threads = kiln_get_num_threads();
    double macs = (double)p->f * kdim * q.np;      /* per image */
    if (p->n > 1 && threads > 1) {
        kiln_parallel_for(images, &d, p->n, 1);
        return 0;
    }
    if (p->n > 1 || threads <= 1 || macs < 2e6) {
        images(&d, 0, p->n);
        return 0;
    }
    /* a batch of one on several threads: a buffer per thread (items_of_one); items are (pair
     * of tiles, chunk of panels), the panels split when there are too few pairs for about 16
     * items per thread (the 28x28 to 7x7 maps; on the 7x7 ones each thread then reads its
     * part of the weights). Small items, claimed one by one, keep both threads busy to the
     * end even when one of them runs slower (another process on its core). */
    if (!kiln_scratch(2, (size_t)q.buf_floats * sizeof(float))) return -1;
    static unsigned long calls;
    d.call = __atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED);
    long pairs = (q.ntiles + TILE_PAIR - 1) / TILE_PAIR, want = 16L * threads;
    if (pairs < want) {
        d.pchunks = KK_MIN(d.panels, (want + pairs - 1) / pairs);
        d.per_chunk = (d.panels + d.pchunks - 1) / d.pchunks;
        d.pchunks = (d.panels + d.per_chunk - 1) / d.per_chunk;
    }
    if (threads == 2 && pairs >= 8) {   /* measured: the stem and s2_64 1.03-1.07x */
        long ends[3] = {0, 0, 0};
        d.ends = ends;
        kiln_parallel_for(two_ends, &d, 2, 1);
        return 0;
    }
    long items = items_count(&d);
    long grain = (long)(5e5 / (macs / (double)items) + 1.0);
    kk_parallel_for_chunks(items_of_one, &d, items, grain, 16);
    return 0;
}
