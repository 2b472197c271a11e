"""The NumPy engine behind `conv.py`: convolution, its data adjoint and its weight gradient by
im2col and BLAS matrix products.

Layout. For a chunk of samples (or of output rows, when one sample is large), the input pixels
every kernel offset meets are copied into column matrices: per sample and group, one matrix of
shape (prod(kernel) * C/groups, pixels) whose rows are ordered kernel offset first, channel
second. The convolution is then ``weight @ columns`` per sample, the weight gradient
``grad @ columns.T`` summed over samples, and the data adjoint ``weight.T @ grad`` followed by
adding each column back onto the pixel it came from (col2im), one whole-array add per kernel
offset. Python loops run over chunks and kernel offsets only.

Chunks keep the column matrices around a megabyte, so that they are written and read back while
still in the CPU cache: a chunk is many samples (LeNet at batch 256) or a band of output rows of
one sample (ResNet at 224x224).

Stride-1 convolutions use the *flat* layout: the padded input of each channel is flattened over
its spatial axes, and a kernel offset is a single shift along that flat axis, so a column-matrix
row is one contiguous run of the input (each output row is computed over the full padded row
width; the extra outputs are dropped). When a chunk holds whole samples the rows are even
*pitched* like the input, a channel's padded length apart: then the rows of all the channels of
a kernel offset are one contiguous run too, and both the im2col copy and the col2im add of a
kernel offset are a single long contiguous operation per sample. (The gaps between rows hold
whatever the copy brought along; the matrix products read past them, through strides.)
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as _np
from numpy.lib.stride_tricks import as_strided as _as_strided

# Bytes of column matrix per chunk: about what stays in a core's L2 cache.
CHUNK_BYTES = 1 << 20
DGRAD_CHUNK_FACTOR = 2


def _default_threads() -> int:
    value = os.environ.get("KILN_NUM_THREADS")
    if value:
        return max(1, int(value))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# Multiply-adds of one matrix product below which BLAS runs it on one core: such chunks are
# shared among threads by kiln instead (larger products are left to BLAS's own threads).
SMALL_PRODUCT = 1 << 22

# Threads that share a convolution's chunks (KILN_NUM_THREADS; default: the usable cores).
# NumPy releases the GIL in its copies, adds and matrix products, so chunks run in parallel.
THREADS = _default_threads()
_pool: ThreadPoolExecutor | None = None


def _forget_pool() -> None:
    # A forked child inherits the pool object but not its threads: start a new one there.
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def run_lanes(plan, work, filters: int, whole_samples: bool = False) -> list:
    """Run work(chunks) over the plan's chunks, split into up to THREADS lanes run in parallel;
    the results of the lanes, in order. `whole_samples` keeps all chunks of a sample in one
    lane (for work whose chunks of one sample write overlapping places)."""
    global _pool
    chunks = plan.chunks
    lanes = min(THREADS, len(chunks)) if plan.small_products(filters) else 1
    if whole_samples:
        lanes = min(lanes, plan.n)
    if lanes <= 1:
        return [work(chunks)]
    if whole_samples:
        per = -(-plan.n // lanes)
        groups = [[ch for ch in chunks if i * per <= ch[0] < (i + 1) * per]
                  for i in range(lanes)]
    else:
        per = -(-len(chunks) // lanes)
        groups = [chunks[i * per:(i + 1) * per] for i in range(lanes)]
    groups = [grp for grp in groups if grp]
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=max(1, THREADS - 1),
                                   thread_name_prefix="kiln-conv")
    futures = [_pool.submit(work, grp) for grp in groups[1:]]
    first = work(groups[0])
    return [first] + [fut.result() for fut in futures]


# Temporaries (padded inputs, column matrices, gradient buffers) are kept between calls, per
# thread, up to this size each: fresh large allocations cost a page fault per 4 KiB on first
# touch, which on some machines (virtual ones especially) costs as much as the convolution.
SCRATCH_BYTES = 32 << 20
_scratch = threading.local()


def scratch(tag: str, shape, dtype, zero: bool = False):
    """A temporary array of `shape` reused by later calls with the same tag in this thread.
    It must not escape the kernel that asked for it."""
    dtype = _np.dtype(dtype)
    nbytes = _prod(shape) * dtype.itemsize
    if nbytes > SCRATCH_BYTES:
        return _np.zeros(shape, dtype) if zero else _np.empty(shape, dtype)
    bufs = getattr(_scratch, "bufs", None)
    if bufs is None:
        bufs = _scratch.bufs = {}
    buf = bufs.get(tag)
    if buf is None or buf.nbytes < nbytes:
        buf = bufs[tag] = _np.empty(max(nbytes, 1), _np.uint8)
    arr = buf[:nbytes].view(dtype).reshape(shape)
    if zero:
        arr.fill(0)
    return arr


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def out_size(size: int, k: int, s: int, d: int, p: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def float_dtype(*dtypes) -> _np.dtype:
    dt = _np.result_type(*dtypes)
    return dt if dt.kind == "f" else _np.dtype(_np.float32)


class Plan:
    """Everything about one convolution's geometry that the three kernels share."""

    def __init__(self, in_shape, groups, kernel, stride, dilate, pad, itemsize,
                 chunk_bytes: int | None = None, weight_bytes: int = 0):
        n, c = in_shape[:2]
        spatial = tuple(in_shape[2:])
        nd = len(spatial)
        self.n, self.c, self.spatial, self.nd = n, c, spatial, nd
        self.groups, self.cg = groups, c // groups
        self.kernel, self.stride, self.dilate, self.pad = kernel, stride, dilate, pad
        self.out = tuple(out_size(spatial[i], kernel[i], stride[i], dilate[i], pad[i])
                         for i in range(nd))
        self.ksize = _prod(kernel)
        self.itemsize = itemsize
        padded = tuple(s + 2 * p for s, p in zip(spatial, pad, strict=True))
        self.flat = all(s == 1 for s in stride)
        if self.flat:
            # One spare row: the last rows' shifts run up to a row past the padding.
            self.buf_spatial = (padded[0] + (1 if nd > 1 else 0),) + padded[1:]
            self.row_shape = padded[1:]          # an output row, computed full width
        else:
            self.buf_spatial = padded
            self.row_shape = self.out[1:]
        self.row_len = _prod(self.row_shape)
        self.chan_len = _prod(self.buf_spatial)  # a channel's length in the padded buffer
        # flat layout: a kernel offset's shift along a channel's flat axis
        estride = [_prod(self.buf_spatial[i + 1:]) for i in range(nd)]
        self.shifts = [sum(k[i] * dilate[i] * estride[i] for i in range(nd))
                       for k in itertools.product(*(range(v) for v in kernel))]
        target = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
        # every matrix product re-reads (and BLAS re-packs) the weight: when it is large
        # (deep layers on small images), use fewer, larger chunks
        target = max(target, 2 * weight_bytes)
        per_row = c * self.ksize * self.row_len * itemsize
        pitch = self.chan_len if self.flat else self.row_len * self.out[0]
        per_sample = c * self.ksize * pitch * itemsize
        if per_sample <= target:
            samples, rows = max(1, target // per_sample), self.out[0]
        else:
            samples, rows = 1, max(1, target // per_row)
        self.chunks = [(n0, min(n, n0 + samples), r0, min(self.out[0], r0 + rows))
                       for n0 in range(0, n, samples) for r0 in range(0, self.out[0], rows)]
        self.max_samples = min(samples, n)
        self.max_pixels = min(rows, self.out[0]) * self.row_len

    def small_products(self, filters: int) -> bool:
        """Whether the per-sample matrix products (with `filters` output rows) are too small
        for BLAS to split over cores, so that kiln runs chunks in parallel instead."""
        return filters * self.ksize * self.cg * self.max_pixels < SMALL_PRODUCT

    def pitch(self, chunk) -> int:
        """Distance between column-matrix rows: a channel's padded length when the flat layout
        covers whole samples, else the chunk's pixel count (contiguous rows)."""
        r = chunk[3] - chunk[2]
        if self.flat and r == self.out[0]:
            return self.chan_len
        return r * self.row_len

    def column_buffer(self, dtype, zeros: bool = False):
        """Room for the column matrices of any chunk (zeroed for col2im, whose gaps must add
        nothing)."""
        size = self.max_samples * self.c * self.ksize * max(self.chan_len, self.max_pixels)
        return scratch("columns", (size,), dtype, zero=zeros)

    # -- buffers -----------------------------------------------------------------------------
    def padded_input(self, x):
        """x inside zeros of shape (N, C, *buf_spatial); x itself when nothing is added."""
        if tuple(self.buf_spatial) == self.spatial and x.flags.c_contiguous:
            return x
        buf = scratch("padded", (self.n, self.c) + self.buf_spatial, x.dtype, zero=True)
        buf[self._interior()] = x
        return buf

    def _interior(self):
        return (slice(None), slice(None)) + tuple(
            slice(p, p + s) for p, s in zip(self.pad, self.spatial, strict=True))

    # -- column matrices ---------------------------------------------------------------------
    def _matrices(self, buf, chunk):
        """The chunk's part of a column buffer: its storage (samples, groups, K, Cg, pitch) and
        the matrices (samples, groups, K*Cg, pixels) the products use."""
        n0, n1, r0, r1 = chunk
        b = n1 - n0
        pixels = (r1 - r0) * self.row_len
        pitch = self.pitch(chunk)
        shape = (b, self.groups, self.ksize, self.cg, pitch)
        store = buf[:_prod(shape)].reshape(shape)
        mats = store.reshape(b, self.groups, self.ksize * self.cg, pitch)[..., :pixels]
        return store, mats

    def _flat_view(self, arr, chunk, shape_tail, strides_tail):
        """A strided view into the flat (N, C, chan_len) buffer `arr` for a chunk: axes
        (samples, groups) + the tail."""
        n0, n1, r0, _ = chunk
        flat = arr.reshape(self.n, self.c * self.chan_len)[n0:n1, r0 * self.row_len:]
        item = arr.itemsize
        shape = (n1 - n0, self.groups) + shape_tail
        strides = (flat.strides[0], self.cg * self.chan_len * item) + strides_tail
        return _as_strided(flat, shape, strides, writeable=False)

    def _source(self, xp, chunk):
        """The chunk's input pixels as a strided view (samples, groups, *kernel, Cg, pixels...)
        with exact pixels (no pitch): the last axes are (pixels,) in the flat layout and
        (rows, *out[1:]) otherwise."""
        n0, n1, r0, r1 = chunk
        item = xp.itemsize
        if self.flat:
            kstrides = tuple(self.dilate[i] * _prod(self.buf_spatial[i + 1:]) * item
                             for i in range(self.nd))
            return self._flat_view(xp, chunk, tuple(self.kernel) + (
                self.cg, (r1 - r0) * self.row_len), kstrides + (self.chan_len * item, item))
        base = xp[n0:n1, :, r0 * self.stride[0]:]
        st = base.strides
        shape = ((n1 - n0, self.groups) + tuple(self.kernel) + (self.cg, r1 - r0)
                 + self.out[1:])
        strides = ((st[0], self.cg * st[1])
                   + tuple(self.dilate[i] * st[2 + i] for i in range(self.nd))
                   + (st[1],) + tuple(self.stride[i] * st[2 + i] for i in range(self.nd)))
        return _as_strided(base, shape, strides, writeable=False)

    def columns_by_group(self, xp, chunk, buf):
        """The chunk's columns with the samples side by side: (groups, K*Cg, samples*pixels),
        for one matrix product over the whole chunk."""
        src = self._source(xp, chunk)
        nd = self.nd
        # (samples, groups, *kernel, Cg, ...) -> (groups, *kernel, Cg, samples, ...)
        order = (1,) + tuple(range(2, 3 + nd)) + (0,) + tuple(range(3 + nd, src.ndim))
        src = src.transpose(order)
        dst = buf[:src.size].reshape(src.shape)
        _np.copyto(dst, src)
        return dst.reshape(self.groups, self.ksize * self.cg, -1)

    def columns(self, xp, chunk, buf):
        """The column matrices of a chunk of the padded input: (samples, groups, K*Cg, pixels)."""
        n0, n1, r0, r1 = chunk
        store, mats = self._matrices(buf, chunk)
        item = xp.itemsize
        pixels = (r1 - r0) * self.row_len
        if self.flat:
            kstrides = tuple(self.dilate[i] * _prod(self.buf_spatial[i + 1:]) * item
                             for i in range(self.nd))
            if self.pitch(chunk) == self.chan_len:
                # whole samples: the rows of one kernel offset, all channels, are one run
                span = (self.cg - 1) * self.chan_len + pixels
                src = self._flat_view(xp, chunk, tuple(self.kernel) + (span,),
                                      kstrides + (item,))
                dst = store.reshape(store.shape[:2] + tuple(self.kernel) + (-1,))[..., :span]
            else:
                src = self._source(xp, chunk)
                dst = store.reshape(src.shape)
        else:
            src = self._source(xp, chunk)
            dst = store.reshape(src.shape)
        _np.copyto(dst, src)
        return mats

    def extended_grad(self, g):
        """The output cotangent g (N, F, *out) as (N, F, pixels): in the flat layout each output
        row is widened to the padded row width, with zeros in the extra positions."""
        n, f = g.shape[:2]
        if self.flat and self.row_shape != self.out[1:]:
            ge = scratch("grad", (n, f, self.out[0]) + self.row_shape, g.dtype, zero=True)
            ge[(Ellipsis,) + tuple(slice(0, o) for o in self.out[1:])] = g
            return ge.reshape(n, f, -1)
        return g.reshape(n, f, -1)

    def place_output(self, y, out, chunk):
        """Write y (samples, F, pixels) of a chunk into out (N, F, *out)."""
        n0, n1, r0, r1 = chunk
        y = y.reshape(y.shape[:2] + (r1 - r0,) + self.row_shape)
        if self.flat and self.row_shape != self.out[1:]:
            y = y[(Ellipsis,) + tuple(slice(0, o) for o in self.out[1:])]
        out[n0:n1, :, r0:r1] = y

    def gradient_buffer(self, dtype):
        """Zeros for col2im to add into: (N, C*chan_len + chan_len) in the flat layout (the
        spare tail lets every kernel offset's window be a plain slice), else
        (N, C, *buf_spatial)."""
        if self.flat:
            return scratch("gradient", (self.n, (self.c + 1) * self.chan_len), dtype, zero=True)
        return scratch("gradient", (self.n, self.c) + self.buf_spatial, dtype, zero=True)

    def gradient_result(self, gbuf):
        """The data cotangent (N, C, *spatial) from what `add_columns` accumulated."""
        if self.flat:
            gbuf = gbuf[:, :self.c * self.chan_len].reshape((self.n, self.c) + self.buf_spatial)
        return gbuf[self._interior()].copy()      # gbuf is scratch: never hand it out

    def add_columns(self, buf, gbuf, chunk):
        """col2im: add the chunk's column matrices (in `buf`, as `_matrices` lays them out) onto
        the gradient buffer from `gradient_buffer`."""
        n0, n1, r0, r1 = chunk
        store, _ = self._matrices(buf, chunk)
        b = n1 - n0
        pixels = (r1 - r0) * self.row_len
        if self.flat:
            whole = self.pitch(chunk) == self.chan_len
            span = (self.cg - 1) * self.chan_len + pixels
            block = self.cg * self.chan_len
            for k, shift in enumerate(self.shifts):
                start = r0 * self.row_len + shift
                dst = gbuf[n0:n1, start:start + self.c * self.chan_len]
                if whole:
                    # the gaps of `store` are zeros: one contiguous add per sample and group
                    dst = dst.reshape(b, self.groups, block)[..., :span]
                    src = store[:, :, k].reshape(b, self.groups, block)[..., :span]
                else:
                    dst = dst.reshape(b, self.groups, self.cg, self.chan_len)[..., :pixels]
                    src = store[:, :, k]
                dst += src
            return
        grouped = gbuf.reshape((self.n, self.groups, self.cg) + self.buf_spatial)
        cols = store.reshape((b, self.groups) + tuple(self.kernel) + (self.cg, r1 - r0)
                             + self.out[1:])
        stop = [self.stride[i] * (self.out[i] - 1) + 1 for i in range(self.nd)]
        for offset in itertools.product(*(range(k) for k in self.kernel)):
            first = offset[0] * self.dilate[0] + r0 * self.stride[0]
            window = (slice(n0, n1), slice(None), slice(None),
                      slice(first, first + self.stride[0] * (r1 - r0 - 1) + 1, self.stride[0])
                      ) + tuple(slice(offset[i] * self.dilate[i],
                                      offset[i] * self.dilate[i] + stop[i], self.stride[i])
                                for i in range(1, self.nd))
            grouped[window] += cols[(slice(None), slice(None)) + offset]


def _pointwise(kernel, pad) -> bool:
    return all(k == 1 for k in kernel) and not any(pad)


def _subsampled(x, stride):
    if all(s == 1 for s in stride):
        return x
    return x[(Ellipsis,) + tuple(slice(None, None, s) for s in stride)]


def _weight_matrices(w, groups):
    """w (F, C/g, *kernel) as (g, F/g, K * C/g), rows ordered kernel offset first."""
    f, cg = w.shape[:2]
    k = _prod(w.shape[2:])
    return _np.ascontiguousarray(
        w.reshape(groups, f // groups, cg, k).swapaxes(2, 3)).reshape(groups, f // groups, -1)


# ----------------------------------------------------------------------------------------------
# the three kernels
# ----------------------------------------------------------------------------------------------

def conv_forward(x, w, b, kernel, stride, dilate, pad, groups):
    """y (N, F, *out) = convolution of x (N, C, *spatial) with w (F, C/groups, *kernel), + b."""
    dtype = float_dtype(x.dtype, w.dtype)
    x = x.astype(dtype, copy=False)
    w = w.astype(dtype, copy=False)
    n, c = x.shape[:2]
    f = w.shape[0]
    nd = len(kernel)
    if x.size == 0:
        out = tuple(out_size(x.shape[2 + i], kernel[i], stride[i], dilate[i], pad[i])
                    for i in range(nd))
        return _np.zeros((n, f) + out, dtype)
    if _pointwise(kernel, pad):
        xs = _subsampled(x, stride)
        x3 = xs.reshape(n, c, -1)
        if groups == 1:
            y = _np.matmul(w.reshape(f, c), x3)
        else:
            y = _np.matmul(w.reshape(groups, f // groups, c // groups),
                           x3.reshape(n, groups, c // groups, -1))
        y = y.reshape((n, f) + xs.shape[2:])
        if b is not None:
            y += b.astype(dtype, copy=False).reshape((f,) + (1,) * nd)
        return y
    plan = Plan(x.shape, groups, kernel, stride, dilate, pad, dtype.itemsize,
                weight_bytes=w.nbytes)
    xp = plan.padded_input(x)
    out = _np.empty((n, f) + plan.out, dtype)
    wm = _weight_matrices(w, groups)
    bias = None if b is None else b.astype(dtype, copy=False).reshape(f, 1)

    def lane(chunks):
        buf = plan.column_buffer(dtype)
        for chunk in chunks:
            cols = plan.columns(xp, chunk, buf)
            y = _np.matmul(wm, cols)                      # (samples, groups, F/g, pixels)
            y = y.reshape(y.shape[0], f, -1)
            if bias is not None:
                y += bias
            plan.place_output(y, out, chunk)
    run_lanes(plan, lane, f)
    return out


def conv_data_grad(g, w, in_spatial, kernel, stride, dilate, pad, groups):
    """The adjoint of `conv_forward` in x: dx (N, C, *in_spatial) from g (N, F, *out)."""
    dtype = float_dtype(g.dtype, w.dtype)
    g = g.astype(dtype, copy=False)
    w = w.astype(dtype, copy=False)
    n, f = g.shape[:2]
    c = w.shape[1] * groups
    in_shape = (n, c) + tuple(in_spatial)
    if g.size == 0:
        return _np.zeros(in_shape, dtype)
    if _pointwise(kernel, pad):
        g3 = g.reshape(n, f, -1)
        if groups == 1:
            dx = _np.matmul(w.reshape(f, c).T, g3)
        else:
            wt = w.reshape(groups, f // groups, c // groups).swapaxes(1, 2)
            dx = _np.matmul(wt, g3.reshape(n, groups, f // groups, -1))
        dx = dx.reshape((n, c) + g.shape[2:])
        if all(s == 1 for s in stride):
            return dx
        full = _np.zeros(in_shape, dtype)
        every = tuple(slice(None, s * o, s) for s, o in zip(stride, g.shape[2:], strict=True))
        full[(Ellipsis,) + every] = dx
        return full
    # NOTE: larger chunks than the other two kernels: col2im makes one NumPy call per kernel
    # offset and chunk, and on small images that call overhead outweighs the cache misses.
    plan = Plan(in_shape, groups, kernel, stride, dilate, pad, dtype.itemsize,
                chunk_bytes=DGRAD_CHUNK_FACTOR * CHUNK_BYTES, weight_bytes=w.nbytes)
    gbuf = plan.gradient_buffer(dtype)
    ge = plan.extended_grad(g)
    wt = _weight_matrices(w, groups).swapaxes(1, 2)     # (groups, K*Cg, F/g)

    def lane(chunks):
        buf = plan.column_buffer(dtype, zeros=True)
        for chunk in chunks:
            n0, n1, r0, r1 = chunk
            gt = ge[n0:n1, :, r0 * plan.row_len:r1 * plan.row_len]
            _, mats = plan._matrices(buf, chunk)
            _np.matmul(wt, gt.reshape(n1 - n0, groups, f // groups, -1), out=mats)
            plan.add_columns(buf, gbuf, chunk)
    # chunks of one sample overlap where their windows meet: keep each sample in one lane
    run_lanes(plan, lane, f, whole_samples=True)
    return plan.gradient_result(gbuf)


def conv_weight_grad(x, g, kernel, stride, dilate, pad, groups):
    """The weight cotangent of `conv_forward`: dw (F, C/groups, *kernel)."""
    dtype = float_dtype(x.dtype, g.dtype)
    x = x.astype(dtype, copy=False)
    g = g.astype(dtype, copy=False)
    n, c = x.shape[:2]
    f = g.shape[1]
    cg = c // groups
    if n == 0 or g.size == 0:
        return _np.zeros((f, cg) + tuple(kernel), dtype)
    if _pointwise(kernel, pad):
        x3 = _subsampled(x, stride).reshape(n, groups, cg, -1)
        g3 = g.reshape(n, groups, f // groups, -1)
        # sum over samples and pixels in one contraction (no per-sample weight-sized parts)
        dw = _np.einsum("ngfp,ngcp->gfc", g3, x3, optimize=True)
        return dw.reshape((f, cg) + tuple(kernel))
    plan = Plan(x.shape, groups, kernel, stride, dilate, pad, dtype.itemsize)
    xp = plan.padded_input(x)
    ge = plan.extended_grad(g)
    fg = f // groups

    def lane_by_group(chunks):
        # large weights: the samples of a chunk side by side, one product per chunk, so no
        # per-sample weight-sized partial results
        buf = plan.column_buffer(dtype)
        dw = None
        for chunk in chunks:
            n0, n1, r0, r1 = chunk
            cols = plan.columns_by_group(xp, chunk, buf)          # (groups, K*Cg, b*pix)
            gt = ge[n0:n1, :, r0 * plan.row_len:r1 * plan.row_len]
            gt = _np.ascontiguousarray(gt.reshape(n1 - n0, groups, fg, -1).transpose(1, 2, 0, 3))
            part = _np.matmul(gt.reshape(groups, fg, -1), cols.swapaxes(1, 2))
            if dw is None:
                dw = part
            else:
                dw += part
        return dw

    def lane(chunks):
        buf = plan.column_buffer(dtype)
        dw = None
        for chunk in chunks:
            n0, n1, r0, r1 = chunk
            cols = plan.columns(xp, chunk, buf)
            gt = ge[n0:n1, :, r0 * plan.row_len:r1 * plan.row_len]
            part = _np.matmul(gt.reshape(n1 - n0, groups, f // groups, -1),
                              cols.swapaxes(2, 3))        # (samples, groups, F/g, K*Cg)
            part = part.sum(axis=0) if part.shape[0] > 1 else part[0]
            if dw is None:
                dw = part
            else:
                dw += part
        return dw
    per_sample_parts = plan.max_samples * f * plan.ksize * cg * dtype.itemsize
    parts = run_lanes(plan, lane_by_group if per_sample_parts > CHUNK_BYTES // 4 else lane, f)
    dw = parts[0]
    for part in parts[1:]:
        dw += part
    # (groups, F/g, K*Cg), kernel offset first -> (F, Cg, *kernel)
    dw = dw.reshape(f, plan.ksize, cg).swapaxes(1, 2)
    return _np.ascontiguousarray(dw).reshape((f, cg) + tuple(kernel))
