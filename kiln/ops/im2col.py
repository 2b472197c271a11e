"""The NumPy engine behind `conv.py`: convolution, its data adjoint and its weight gradient by
im2col and one BLAS matrix product per chunk.

Layout. For a chunk of samples (or of output rows, when one sample is large), the input pixels
every kernel offset meets are copied into a column matrix of shape (C * prod(kernel), pixels),
channels first; the convolution is then ``weight (F, C*K) @ columns``, the weight gradient
``grad (F, pixels) @ columns.T`` and the data adjoint ``weight.T @ grad`` followed by adding each
column back onto the pixel it came from (col2im), one whole-array add per kernel offset.

Chunks keep the column matrix around a megabyte, so that it is written and read back while it
is still in the CPU cache; a chunk is many samples (LeNet at batch 256) or a band of output rows
of one sample (ResNet at 224x224), never a Python loop over single pixels.

Stride-1 convolutions use the *flat* layout: the padded input is flattened over its spatial axes
and each kernel offset becomes a single shift along that flat axis, so a column-matrix row is one
contiguous run of memory. The price is computing each output row over the full padded row
width (the extra outputs are dropped); in exchange the copies and the col2im adds run over long
contiguous runs, several times faster than short strided ones.
"""

from __future__ import annotations

import itertools

import numpy as _np
from numpy.lib.stride_tricks import as_strided as _as_strided

# Bytes of column matrix per chunk: about what stays in a core's L2 cache.
CHUNK_BYTES = 1 << 20


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

    def __init__(self, in_shape, channels_per_group, kernel, stride, dilate, pad, itemsize):
        n, c = in_shape[:2]
        spatial = tuple(in_shape[2:])
        nd = len(spatial)
        self.n, self.c, self.spatial, self.nd = n, c, spatial, nd
        self.kernel, self.stride, self.dilate, self.pad = kernel, stride, dilate, pad
        self.out = tuple(out_size(spatial[i], kernel[i], stride[i], dilate[i], pad[i])
                         for i in range(nd))
        self.ksize = _prod(kernel)
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
        per_row = c * self.ksize * self.row_len * itemsize
        per_sample = per_row * self.out[0]
        if per_sample <= CHUNK_BYTES:
            samples, rows = max(1, CHUNK_BYTES // per_sample), self.out[0]
        else:
            samples, rows = 1, max(1, CHUNK_BYTES // per_row)
        self.chunks = [(n0, min(n, n0 + samples), r0, min(self.out[0], r0 + rows))
                       for n0 in range(0, n, samples) for r0 in range(0, self.out[0], rows)]
        self.max_cols = min(samples, n) * min(rows, self.out[0]) * self.row_len

    # -- buffers -----------------------------------------------------------------------------
    def padded_input(self, x):
        """x inside zeros of shape (N, C, *buf_spatial); x itself when nothing is added."""
        if tuple(self.buf_spatial) == self.spatial and x.flags.c_contiguous:
            return x
        buf = _np.zeros((self.n, self.c) + self.buf_spatial, x.dtype)
        buf[self._interior()] = x
        return buf

    def _interior(self):
        return (slice(None), slice(None)) + tuple(
            slice(p, p + s) for p, s in zip(self.pad, self.spatial, strict=True))

    def crop(self, buf):
        """The inverse of `padded_input`, as a new C-contiguous array."""
        if tuple(self.buf_spatial) == self.spatial:
            return buf
        return _np.ascontiguousarray(buf[self._interior()])

    # -- column matrices ---------------------------------------------------------------------
    def columns(self, xp, chunk, out=None):
        """The column matrices (samples, C*K, rows*row_len) of a chunk of the padded input."""
        n0, n1, r0, r1 = chunk
        b, r = n1 - n0, r1 - r0
        item = xp.itemsize
        if self.flat:
            flat = xp[n0:n1].reshape(b, self.c, -1)[:, :, r0 * self.row_len:]
            st = flat.strides
            estride = [_prod(self.buf_spatial[i + 1:]) * item for i in range(self.nd)]
            shape = (b, self.c) + tuple(self.kernel) + (r * self.row_len,)
            strides = (st[0], st[1]) + tuple(
                self.dilate[i] * estride[i] for i in range(self.nd)) + (item,)
        else:
            flat = xp[n0:n1, :, r0 * self.stride[0]:]
            st = flat.strides
            shape = (b, self.c) + tuple(self.kernel) + (r,) + self.out[1:]
            strides = ((st[0], st[1]) + tuple(self.dilate[i] * st[2 + i] for i in range(self.nd))
                       + tuple(self.stride[i] * st[2 + i] for i in range(self.nd)))
        view = _as_strided(flat, shape, strides, writeable=False)
        size = _prod(shape)
        cols = _np.empty(shape, xp.dtype) if out is None else out[:size].reshape(shape)
        _np.copyto(cols, view)
        return cols.reshape(b, self.c * self.ksize, r * self.row_len)

    def grad_columns(self, g, chunk):
        """A chunk of the output cotangent g (N, F, *out) as (samples, F, pixels), with zeros
        at the extra (full-row-width) positions of the flat layout."""
        n0, n1, r0, r1 = chunk
        part = g[n0:n1, :, r0:r1]
        b, f = part.shape[:2]
        if self.flat and self.row_shape != self.out[1:]:
            gt = _np.zeros((b, f, r1 - r0) + self.row_shape, g.dtype)
            gt[(Ellipsis,) + tuple(slice(0, o) for o in self.out[1:])] = part
            return gt.reshape(b, f, -1)
        return part.reshape(b, f, -1)

    def place_output(self, y, out, chunk):
        """Write y (samples, F, pixels) of a chunk into out (N, F, *out)."""
        n0, n1, r0, r1 = chunk
        y = y.reshape(y.shape[:2] + (r1 - r0,) + self.row_shape)
        if self.flat and self.row_shape != self.out[1:]:
            y = y[(Ellipsis,) + tuple(slice(0, o) for o in self.out[1:])]
        out[n0:n1, :, r0:r1] = y

    def add_columns(self, dcols, gbuf, chunk):
        """col2im: add dcols (samples, C*K, pixels) onto the padded gradient buffer."""
        n0, n1, r0, r1 = chunk
        b, r = n1 - n0, r1 - r0
        if self.flat:
            dcols = dcols.reshape((b, self.c) + tuple(self.kernel) + (r * self.row_len,))
            flat = gbuf[n0:n1].reshape(b, self.c, -1)
            estride = [_prod(self.buf_spatial[i + 1:]) for i in range(self.nd)]
            start = r0 * self.row_len
            for offset in itertools.product(*(range(k) for k in self.kernel)):
                s = start + sum(offset[i] * self.dilate[i] * estride[i] for i in range(self.nd))
                flat[:, :, s:s + r * self.row_len] += dcols[(slice(None), slice(None)) + offset]
            return
        dcols = dcols.reshape((b, self.c) + tuple(self.kernel) + (r,) + self.out[1:])
        stop = [self.stride[i] * (self.out[i] - 1) + 1 for i in range(self.nd)]
        for offset in itertools.product(*(range(k) for k in self.kernel)):
            first = offset[0] * self.dilate[0] + r0 * self.stride[0]
            window = (slice(n0, n1), slice(None),
                      slice(first, first + self.stride[0] * (r - 1) + 1, self.stride[0])) + tuple(
                slice(offset[i] * self.dilate[i], offset[i] * self.dilate[i] + stop[i],
                      self.stride[i]) for i in range(1, self.nd))
            gbuf[window] += dcols[(slice(None), slice(None)) + offset]


def _pointwise(kernel, pad) -> bool:
    return all(k == 1 for k in kernel) and not any(pad)


def _subsampled(x, stride):
    if all(s == 1 for s in stride):
        return x
    return x[(Ellipsis,) + tuple(slice(None, None, s) for s in stride)]


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
    plan = Plan(x.shape, c // groups, kernel, stride, dilate, pad, dtype.itemsize)
    xp = plan.padded_input(x)
    out = _np.empty((n, f) + plan.out, dtype)
    colbuf = _np.empty(c * plan.ksize * plan.max_cols, dtype)
    wm = w.reshape(f, -1) if groups == 1 else w.reshape(groups, f // groups, -1)
    bias = None if b is None else b.astype(dtype, copy=False).reshape(f, 1)
    for chunk in plan.chunks:
        cols = plan.columns(xp, chunk, colbuf)
        if groups == 1:
            y = _np.matmul(wm, cols)
        else:
            nb = cols.shape[0]
            y = _np.matmul(wm, cols.reshape(nb, groups, -1, cols.shape[-1])).reshape(nb, f, -1)
        if bias is not None:
            y += bias
        plan.place_output(y, out, chunk)
    return out


def conv_data_grad(g, w, in_spatial, kernel, stride, dilate, pad, groups):
    """The adjoint of `conv_forward` in x: dx (N, C, *in_spatial) from g (N, F, *out)."""
    dtype = float_dtype(g.dtype, w.dtype)
    g = g.astype(dtype, copy=False)
    w = w.astype(dtype, copy=False)
    n, f = g.shape[:2]
    c = w.shape[1] * groups
    in_shape = (n, c) + tuple(in_spatial)
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
    plan = Plan(in_shape, c // groups, kernel, stride, dilate, pad, dtype.itemsize)
    gbuf = _np.zeros((n, c) + plan.buf_spatial, dtype)
    if groups == 1:
        wt = w.reshape(f, -1).T
    else:
        wt = w.reshape(groups, f // groups, -1).swapaxes(1, 2)
    for chunk in plan.chunks:
        gt = plan.grad_columns(g, chunk)
        if groups == 1:
            dcols = _np.matmul(wt, gt)
        else:
            b = gt.shape[0]
            dcols = _np.matmul(wt, gt.reshape(b, groups, f // groups, -1)).reshape(
                b, c * plan.ksize, -1)
        plan.add_columns(dcols, gbuf, chunk)
    return plan.crop(gbuf)


def conv_weight_grad(x, g, kernel, stride, dilate, pad, groups):
    """The weight cotangent of `conv_forward`: dw (F, C/groups, *kernel)."""
    dtype = float_dtype(x.dtype, g.dtype)
    x = x.astype(dtype, copy=False)
    g = g.astype(dtype, copy=False)
    n, c = x.shape[:2]
    f = g.shape[1]
    if _pointwise(kernel, pad):
        x3 = _subsampled(x, stride).reshape(n, c, -1)
        g3 = g.reshape(n, f, -1)
        if groups == 1:
            dw = _np.matmul(g3, x3.swapaxes(1, 2)).sum(axis=0)
        else:
            dw = _np.matmul(g3.reshape(n, groups, f // groups, -1),
                            x3.reshape(n, groups, c // groups, -1).swapaxes(2, 3)).sum(axis=0)
        return dw.reshape((f, c // groups) + tuple(kernel))
    plan = Plan(x.shape, c // groups, kernel, stride, dilate, pad, dtype.itemsize)
    xp = plan.padded_input(x)
    colbuf = _np.empty(c * plan.ksize * plan.max_cols, dtype)
    dw = None
    for chunk in plan.chunks:
        cols = plan.columns(xp, chunk, colbuf)
        gt = plan.grad_columns(g, chunk)
        b = gt.shape[0]
        if groups == 1:
            part = _np.matmul(gt, cols.swapaxes(1, 2))
        else:
            part = _np.matmul(gt.reshape(b, groups, f // groups, -1),
                              cols.reshape(b, groups, -1, cols.shape[-1]).swapaxes(2, 3))
        part = part.sum(axis=0) if b > 1 else part[0]
        if dw is None:
            dw = part
        else:
            dw += part
    return dw.reshape((f, c // groups) + tuple(kernel))
