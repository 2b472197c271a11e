"""The C kernels of runtime/kernels, called directly (ctypes) and compared with NumPy."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from kiln.backend.native.toolchain import compiler_available

pytestmark = pytest.mark.usefixtures("require_native")

F = ctypes.c_float
L = ctypes.c_long
P = ctypes.c_void_p


@pytest.fixture(scope="module")
def lib():
    if compiler_missing():
        pytest.skip("no C compiler")
    from kiln.backend.native.runtime import load_runtime

    rt = load_runtime()
    k = ctypes.CDLL(str(rt.kernels_lib))
    k.kiln_sgemm.argtypes = [ctypes.c_int, ctypes.c_int, L, L, L, F, P, L, P, L, F, P, L]
    k.kiln_sgemm_builtin.argtypes = k.kiln_sgemm.argtypes
    k.kiln_dense_f32.argtypes = [P, P, P, P, L, L, L, ctypes.c_int]
    k.kiln_softmax_f32.argtypes = [P, P, L, L, L, F, ctypes.c_int]
    k.kiln_sum_axis_f32.argtypes = [P, P, L, L, L, ctypes.c_int]
    k.kiln_batch_norm_f32.argtypes = [P, P, P, P, P, P, P, P, L, L, L, F, ctypes.c_int,
                                      ctypes.c_int]
    k.kiln_conv2d_init.argtypes = [P]
    k.kiln_set_num_threads.argtypes = [ctypes.c_int]
    k.kiln_conv2d_f32.argtypes = [P, P, P, P, P, P, P, ctypes.c_int]
    k.kk_conv2d_winograd.argtypes = k.kiln_conv2d_f32.argtypes
    k.kk_conv2d_shift.argtypes = k.kiln_conv2d_f32.argtypes
    k.kk_conv2d_winograd4.argtypes = k.kiln_conv2d_f32.argtypes
    k.kiln_conv2d_backward_data_f32.argtypes = [P, P, P, P]
    k.kiln_conv2d_backward_weight_f32.argtypes = [P, P, P, P]
    k.kiln_pool2d_f32.argtypes = [P, P, P]
    k.kiln_pool2d_backward_f32.argtypes = [P, P, P, P, P]
    return k


def compiler_missing() -> bool:
    return not compiler_available()


def ptr(a):
    return None if a is None else a.ctypes.data


def rand(*shape, seed=0):
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("builtin", [False, True])
@pytest.mark.parametrize("ta,tb", [(0, 0), (0, 1), (1, 0), (1, 1)])
@pytest.mark.parametrize("m,n,k", [(1, 7, 5), (3, 33, 17), (16, 40, 70), (67, 45, 300),
                                   (130, 129, 65), (200, 150, 90), (300, 260, 80)])
def test_sgemm(lib, builtin, ta, tb, m, n, k):
    a = rand(k, m) if ta else rand(m, k)
    b = rand(n, k, seed=1) if tb else rand(k, n, seed=1)
    c = rand(m, n, seed=2)
    expect = 0.5 * ((a.T if ta else a) @ (b.T if tb else b)) + 2.0 * c
    fn = lib.kiln_sgemm_builtin if builtin else lib.kiln_sgemm
    fn(ta, tb, m, n, k, 0.5, ptr(a), a.shape[1], ptr(b), b.shape[1], 2.0, ptr(c), n)
    np.testing.assert_allclose(c, expect, rtol=2e-4, atol=2e-4)


def test_sgemm_beta_zero_ignores_nan(lib):
    a, b = rand(20, 30), rand(30, 40)
    c = np.full((20, 40), np.nan, np.float32)
    lib.kiln_sgemm_builtin(0, 0, 20, 40, 30, 1.0, ptr(a), 30, ptr(b), 40, 0.0, ptr(c), 40)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("m", [1, 3, 64])
@pytest.mark.parametrize("act", [0, 1, 2, 3])
def test_dense(lib, m, act):
    x, w, b = rand(m, 70), rand(33, 70, seed=1), rand(33, seed=2)
    y = np.empty((m, 33), np.float32)
    lib.kiln_dense_f32(ptr(x), ptr(w), ptr(b), ptr(y), m, 33, 70, act)
    z = x @ w.T + b
    expect = [z, np.maximum(z, 0), 1 / (1 + np.exp(-z)), np.tanh(z)][act]
    np.testing.assert_allclose(y, expect, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n,k", [(8, 16), (13, 48), (256, 512), (21, 100), (9, 7),
                                 (1000, 512)])   # the last on both threads
@pytest.mark.parametrize("shift", [0, 3, 8, 15])
def test_dense_batch_one(lib, n, k, shift):
    """Batch-1 layers (eight weight rows at a time): weights that start off a cache line
    (NumPy aligns to 16 bytes) take a masked head, the rest a masked tail."""
    x = rand(1, k)
    store = np.empty(n * k + 32, np.float32)
    start = (-store.ctypes.data // 4) % 16 + shift    # `shift` floats past a 64-byte boundary
    w = store[start:start + n * k].reshape(n, k)
    w[...] = rand(n, k, seed=1)
    b = rand(n, seed=2)
    y = np.empty((1, n), np.float32)
    lib.kiln_dense_f32(ptr(x), ptr(w), ptr(b), ptr(y), 1, n, k, 1)
    expect = np.maximum(x.astype(np.float64) @ w.T.astype(np.float64) + b, 0)
    np.testing.assert_allclose(y, expect, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("log", [0, 1])
@pytest.mark.parametrize("shape", [(5, 10, 1), (3, 100, 1), (2, 7, 6),
                                   # few classes, many rows: blocks of 16 rows (one partial)
                                   (37, 10, 1), (256, 2, 1), (16, 15, 1), (8, 1, 1)])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_softmax(lib, log, shape, scale):
    x = rand(*shape) * 5
    if shape[0] > 20:
        x[3, 0, 0] = np.nan       # a NaN row stays NaN, its neighbours are unaffected
        x[4, 1, 0] = np.inf
        x[5, :, 0] = -np.inf
    y = np.empty_like(x)
    lib.kiln_softmax_f32(ptr(x), ptr(y), *shape, scale, log)
    xs = x.astype(np.float64) * scale
    with np.errstate(invalid="ignore", divide="ignore"):
        z = xs - xs.max(axis=1, keepdims=True)
        expect = z - np.log(np.exp(z).sum(axis=1, keepdims=True)) if log else \
            np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(y, expect, rtol=1e-5, atol=1e-6)


def test_sum_axis(lib):
    x = rand(4, 50, 3)
    y = np.empty((4, 3), np.float32)
    lib.kiln_sum_axis_f32(ptr(x), ptr(y), 4, 50, 3, 0)
    np.testing.assert_allclose(y, x.sum(axis=1), rtol=1e-5, atol=1e-5)
    x = rand(6, 1000)
    y = np.ones(6, np.float32)
    lib.kiln_sum_axis_f32(ptr(x), ptr(y), 6, 1000, 1, 1)
    np.testing.assert_allclose(y, 1 + x.sum(axis=1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("training", [0, 1])
@pytest.mark.parametrize("s", [1, 12])
def test_batch_norm(lib, training, s):
    n, c = 8, 5
    x = rand(n, c, s) * 3 + 1
    gamma, beta = rand(c, seed=1), rand(c, seed=2)
    rm, rv = rand(c, seed=3), np.abs(rand(c, seed=4)) + 0.5
    y = np.empty_like(x)
    mo, vo = np.empty(c, np.float32), np.empty(c, np.float32)
    lib.kiln_batch_norm_f32(ptr(x), ptr(gamma), ptr(beta), ptr(rm), ptr(rv), ptr(y), ptr(mo),
                            ptr(vo), n, c, s, 1e-3, 0, training)
    mean = x.mean(axis=(0, 2)) if training else rm
    var = x.var(axis=(0, 2)) if training else rv
    expect = (x - mean[:, None]) / np.sqrt(var[:, None] + 1e-3) * gamma[:, None] + beta[:, None]
    np.testing.assert_allclose(y, expect, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(mo, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vo, var, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------------------------
# convolution, against a plain NumPy reference
# --------------------------------------------------------------------------------------------

class Conv2d(ctypes.Structure):
    _fields_ = [(name, ctypes.c_long) for name in
                ("n", "c", "h", "w", "f", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw",
                 "groups", "oh", "ow")]


def conv_ref(x, w, stride, pad, dil, groups):
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((n, f, oh, ow), np.float64)
    fg = f // groups
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, i * dil[0]:i * dil[0] + stride[0] * (oh - 1) + 1:
                           stride[0], j * dil[1]:j * dil[1] + stride[1] * (ow - 1) + 1:stride[1]]
                y[:, g * fg:(g + 1) * fg] += np.einsum("nchw,fc->nfhw", patch,
                                                       w[g * fg:(g + 1) * fg, :, i, j])
    return y


CONVS = [  # (n, c, h, w, f, k, stride, pad, dilation, groups)
    (1, 3, 9, 8, 4, 3, 1, 1, 1, 1),
    (2, 4, 11, 10, 6, 3, 2, 1, 1, 2),
    (3, 2, 7, 7, 5, 1, 1, 0, 1, 1),
    (2, 6, 9, 9, 6, 3, 1, 1, 1, 6),
    (1, 2, 12, 12, 3, 3, 1, 2, 2, 1),
    (4, 1, 28, 28, 6, 5, 1, 2, 1, 1),
    (1, 3, 20, 18, 8, 7, 2, 3, 1, 1),      # the stem: stride 2 as stride 1 over 4 phases
    (3, 2, 15, 16, 4, 5, 2, 2, 1, 1),
    (2, 8, 30, 30, 16, 3, 1, 1, 1, 1),     # stride 1 without im2col
]


@pytest.mark.parametrize("geom", CONVS)
def test_conv2d_and_gradients(lib, geom):
    n, c, h, w, f, k, s, pd, d, g = geom
    p = Conv2d(n, c, h, w, f, k, k, s, s, pd, pd, d, d, g, 0, 0)
    assert lib.kiln_conv2d_init(ctypes.byref(p)) == 0
    x, wt = rand(n, c, h, w), rand(f, c // g, k, k, seed=1)
    bias, scale = rand(f, seed=2), rand(f, seed=3)
    ref = conv_ref(x.astype(np.float64), wt.astype(np.float64), (s, s), (pd, pd), (d, d), g)
    assert (p.oh, p.ow) == ref.shape[2:]
    y = np.empty(ref.shape, np.float32)
    lib.kiln_conv2d_f32(ctypes.byref(p), ptr(x), ptr(wt), ptr(scale), ptr(bias), None, ptr(y),
                        1)
    expect = np.maximum(ref * scale[:, None, None] + bias[:, None, None], 0)
    np.testing.assert_allclose(y, expect, rtol=1e-4, atol=1e-4)
    # gradients: <conv(x, w), dy> = <x, dx(dy, w)> = <w, dw(x, dy)>
    dy = rand(*ref.shape, seed=4)
    dx, dw = np.empty_like(x), np.empty_like(wt)
    lib.kiln_conv2d_backward_data_f32(ctypes.byref(p), ptr(dy), ptr(wt), ptr(dx))
    lib.kiln_conv2d_backward_weight_f32(ctypes.byref(p), ptr(x), ptr(dy), ptr(dw))
    total = float((ref * dy).sum())
    assert np.isclose(float((x.astype(np.float64) * dx).sum()), total, rtol=1e-4, atol=1e-3)
    assert np.isclose(float((wt.astype(np.float64) * dw).sum()), total, rtol=1e-4, atol=1e-3)
    # and against the reference's own gradient by finite structure: dw vs einsum
    x64 = x.astype(np.float64)
    eps_check = conv_ref(x64, dw.astype(np.float64) * 0 + 1.0, (s, s), (pd, pd), (d, d), g)
    assert eps_check.shape == ref.shape


# The forward convolution (conv_shift.c: phases of the padded input, MR x 2-vector tiles, the
# epilogue on each tile): geometries that exercise every edge of it. Each is
# (n, c, h, w, f, kh, kw, sh, sw, ph, pw, dh, dw, groups).
SHIFT_CONVS = [
    (1, 64, 56, 56, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1),      # ResNet's 56x56 layer: 6 panels
    (1, 48, 30, 30, 40, 3, 3, 2, 2, 1, 1, 1, 1, 1),      # stride 2 on threads: a buffer each
    (1, 3, 96, 90, 28, 7, 7, 2, 2, 3, 3, 1, 1, 1),       # a stem large enough for threads
    (1, 32, 14, 14, 40, 3, 3, 1, 1, 1, 1, 1, 1, 1),      # 40 filters: 12 + 12 + 12 + 4
    (1, 24, 7, 7, 50, 3, 3, 1, 1, 1, 1, 1, 1, 1),        # a 7x7 map: one pair of tiles
    (1, 16, 28, 28, 36, 3, 3, 2, 2, 1, 1, 1, 1, 1),      # stride 2: four phases
    (1, 16, 29, 27, 20, 3, 3, 2, 2, 1, 1, 1, 1, 1),      # odd sizes with stride 2
    (1, 3, 40, 38, 16, 7, 7, 2, 2, 3, 3, 1, 1, 1),       # the stem
    (1, 32, 28, 28, 48, 1, 1, 2, 2, 0, 0, 1, 1, 1),      # 1x1 stride 2: phase (0, 0) only
    # one column residue of stride 2 (even columns by kk_deinterleave): its vector loop and tails
    (1, 16, 70, 67, 20, 1, 1, 2, 2, 0, 0, 1, 1, 1),      # 1x1 stride 2, 34 columns
    (1, 8, 21, 23, 12, 1, 1, 2, 2, 1, 1, 1, 1, 1),       # from odd input columns
    (1, 6, 30, 33, 8, 3, 3, 2, 2, 2, 2, 2, 2, 1),        # dilation 2 with stride 2
    (1, 8, 20, 20, 13, 1, 1, 1, 1, 0, 0, 1, 1, 1),       # pointwise
    (1, 5, 17, 19, 9, 3, 5, 3, 2, 2, 1, 1, 1, 1),        # stride 3 x 2, 3x5 kernel
    (1, 6, 15, 15, 7, 3, 3, 1, 1, 3, 3, 2, 2, 1),        # dilation 2, padding 3
    (1, 6, 16, 13, 10, 3, 3, 2, 2, 2, 2, 2, 3, 1),       # dilation with stride 2
    (1, 8, 12, 12, 16, 3, 3, 1, 1, 1, 1, 1, 1, 4),       # groups
    (1, 6, 9, 9, 12, 3, 3, 2, 2, 1, 1, 1, 1, 3),         # groups with stride 2
    (3, 7, 11, 10, 14, 3, 3, 1, 1, 1, 1, 1, 1, 1),       # a batch: one image per thread
    (2, 4, 9, 30, 5, 2, 4, 2, 3, 0, 2, 1, 1, 1),         # even kernel, asymmetric everything
    (1, 1, 1, 40, 3, 1, 5, 1, 1, 0, 2, 1, 1, 1),         # a 1-D convolution (height 1)
    (1, 2, 5, 5, 3, 5, 5, 1, 1, 0, 0, 1, 1, 1),          # one output position
    (1, 2, 3, 3, 70, 3, 3, 4, 4, 5, 5, 1, 1, 1),         # padding wider than the kernel
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("geom", SHIFT_CONVS)
def test_conv2d_forward_geometries(lib, geom, threads):
    n, c, h, w, f, kh, kw, sh, sw, ph, pw, dh, dw, g = geom
    p = Conv2d(n, c, h, w, f, kh, kw, sh, sw, ph, pw, dh, dw, g, 0, 0)
    assert lib.kiln_conv2d_init(ctypes.byref(p)) == 0
    x, wt = rand(n, c, h, w), rand(f, c // g, kh, kw, seed=1)
    ref = conv_ref(x.astype(np.float64), wt.astype(np.float64), (sh, sw), (ph, pw), (dh, dw), g)
    assert (p.oh, p.ow) == ref.shape[2:]
    scale, bias, res = rand(f, seed=3), rand(f, seed=2), rand(*ref.shape, seed=5)
    lib.kiln_set_num_threads(threads)
    try:
        for act, fn in ((0, lambda v: v), (1, lambda v: np.maximum(v, 0)),
                        (2, lambda v: 1 / (1 + np.exp(-v)))):
            y = np.full(ref.shape, np.nan, np.float32)
            lib.kiln_conv2d_f32(ctypes.byref(p), ptr(x), ptr(wt), None, None, None, ptr(y),
                                act)
            np.testing.assert_allclose(y, fn(ref), rtol=1e-4, atol=1e-4)
        # scale, bias and a residual in the epilogue; then the residual updated in place
        y = np.empty(ref.shape, np.float32)
        lib.kiln_conv2d_f32(ctypes.byref(p), ptr(x), ptr(wt), ptr(scale), ptr(bias), ptr(res),
                            ptr(y), 1)
        expect = np.maximum(ref * scale[:, None, None] + bias[:, None, None] + res, 0)
        np.testing.assert_allclose(y, expect, rtol=1e-4, atol=1e-4)
        inplace = res.copy()
        lib.kiln_conv2d_f32(ctypes.byref(p), ptr(x), ptr(wt), ptr(scale), ptr(bias),
                            ptr(inplace), ptr(inplace), 1)
        np.testing.assert_allclose(inplace, expect, rtol=1e-4, atol=1e-4)
    finally:
        lib.kiln_set_num_threads(0)


def test_conv2d_propagates_nan_and_inf(lib):
    """A NaN or an inf in the input reaches exactly the outputs whose windows hold it (the
    dropped columns and the tiles' padding must not leak into real outputs); relu keeps NaN."""
    p = Conv2d(1, 3, 10, 10, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0)
    assert lib.kiln_conv2d_init(ctypes.byref(p)) == 0
    x, wt = rand(1, 3, 10, 10), rand(5, 3, 3, 3, seed=1)
    x[0, 1, 0, 9] = np.nan
    x[0, 2, 9, 0] = np.inf
    nan_at = np.zeros((10, 10), bool)
    nan_at[0:2, 8:10] = True
    inf_at = np.zeros((10, 10), bool)
    inf_at[8:10, 0:2] = True
    for act in (0, 1):
        y = np.empty((1, 5, 10, 10), np.float32)
        lib.kiln_conv2d_f32(ctypes.byref(p), ptr(x), ptr(wt), None, None, None, ptr(y), act)
        for f in range(5):
            assert np.array_equal(np.isnan(y[0, f]), nan_at)
            if act == 0:
                assert np.array_equal(np.isinf(y[0, f]), inf_at)
            assert np.isfinite(y[0, f][~(nan_at | inf_at)]).all()


# Winograd F(2x2, 3x3) (conv_winograd.c) takes 3x3 stride-1 convolutions on maps of 25 tiles
# and more with 2e7 multiply-adds or more. (n, c, h, w, f, pad): each exercises a part of it.
WINOGRAD_CONVS = [
    (1, 64, 56, 56, 64, 1),      # ResNet's 56x56 layer: by blocks, each item its own block's V;
    #                              panels of MR_ALT (8 x 8, not 6 x 12 with 8 rows of zeros)
    (1, 96, 40, 40, 96, 1),      # by blocks, the panels split (13 blocks), V of every block kept;
    #                              panels of MR (8 x 12)
    (1, 48, 61, 59, 45, 1),      # by blocks, odd sizes: half tiles; 45 filters: a short panel
    (1, 128, 28, 28, 128, 1),    # ResNet's 28x28 layer: by panels (all of V in L2); panels of
    #                              16 on one or two threads, of 24 on three
    (1, 80, 27, 23, 45, 1),      # by panels, odd sizes; panels of 24
    (1, 64, 25, 30, 60, 0),      # no padding: 23x28 outputs
    (1, 64, 22, 21, 64, 2),      # padding 2: 24x23 outputs, even and odd columns shifted
    (2, 64, 24, 26, 64, 1),      # a batch of two
    (1, 256, 14, 14, 250, 1),    # ResNet's 14x14 layer; 250 = 10 x 24 + 10 filters
    (1, 256, 28, 28, 260, 1),    # by panels because U (4 MiB) would not stay in L2 either
    # by panels with a last block of 1 to 4 tiles: dot products per tile (products_few)
    (1, 128, 18, 18, 128, 1),    # 81 tiles: 5 blocks and 1
    (1, 128, 10, 20, 100, 1),    # 50 tiles: 3 blocks and 2
    (1, 160, 10, 14, 160, 1),    # 35 tiles: 2 blocks and 3
]


def winograd_case(geom, seed=0):
    n, c, h, w, f, pad = geom
    p = Conv2d(n, c, h, w, f, 3, 3, 1, 1, pad, pad, 1, 1, 1, 0, 0)
    x = rand(n, c, h, w, seed=seed)
    wt = (rand(f, c, 3, 3, seed=seed + 1) / np.sqrt(9 * c)).astype(np.float32)
    ref = conv_ref(x.astype(np.float64), wt.astype(np.float64), (1, 1), (pad, pad), (1, 1), 1)
    return p, x, wt, ref


@pytest.mark.parametrize("geom", [
    SHIFT_CONVS[1], SHIFT_CONVS[2], SHIFT_CONVS[3],
    # eight pairs of tiles or more on two threads: from both ends, each building its rows
    (1, 16, 40, 40, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1),      # stride 1
    (1, 16, 60, 60, 24, 3, 3, 2, 2, 1, 1, 1, 1, 1),      # stride 2: four phases
    (1, 64, 80, 80, 48, 1, 1, 2, 2, 0, 0, 1, 1, 1),      # 1x1 stride 2
    (1, 16, 40, 40, 16, 3, 3, 1, 1, 2, 2, 2, 2, 1),      # dilation 2
])
def test_direct_convolution_results_do_not_depend_on_threads(lib, geom):
    """A batch of one on several threads: each thread builds its own copy of the input's
    phases (on two threads and a large map, only the rows its tiles read) and takes tiles as
    they come; every output is still summed in one order."""
    n, c, h, w, f, kh, kw, sh, sw, ph, pw, dh, dw, g = geom
    p = Conv2d(n, c, h, w, f, kh, kw, sh, sw, ph, pw, dh, dw, g, 0, 0)
    assert lib.kiln_conv2d_init(ctypes.byref(p)) == 0
    wt = rand(f, c // g, kh, kw, seed=1)

    def conv(x, threads):
        lib.kiln_set_num_threads(threads)
        y = np.empty((n, f, p.oh, p.ow), np.float32)
        assert lib.kk_conv2d_shift(ctypes.byref(p), ptr(x), ptr(wt), None, None, None,
                                   ptr(y), 0) == 0
        return y

    try:
        x = rand(n, c, h, w)
        outs = [conv(x, threads) for threads in (1, 2, 3)]
        assert all(np.array_equal(outs[0], y) for y in outs[1:])
        # the same input buffer with new values: every thread's copy is rebuilt
        x[...] = rand(n, c, h, w, seed=9)
        assert np.array_equal(conv(x, 2), conv(x, 1))
    finally:
        lib.kiln_set_num_threads(0)


@pytest.mark.parametrize("geom", [
    (1, 64, 56, 56, 64, 3, 3, 2, 2, 1, 1, 1, 1, 1),   # stride 2
    (1, 64, 56, 56, 64, 3, 3, 1, 1, 2, 2, 2, 2, 1),   # dilation 2
    (1, 64, 56, 56, 64, 3, 3, 1, 1, 1, 1, 1, 1, 2),   # groups
    (1, 64, 56, 56, 64, 5, 5, 1, 1, 2, 2, 1, 1, 1),   # 5x5
    (1, 512, 7, 7, 512, 3, 3, 1, 1, 1, 1, 1, 1, 1),   # 16 tiles: the weights' transform dominates
    (1, 16, 56, 56, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1),   # too little work for the passes' costs
])
def test_winograd_declines_what_it_does_not_take(lib, geom):
    p = Conv2d(*geom, 0, 0)
    assert lib.kiln_conv2d_init(ctypes.byref(p)) == 0
    n, c, h, w, f = geom[:5]
    x, wt = rand(n, c, h, w), rand(f, c // geom[13], geom[5], geom[6], seed=1)
    y = np.full((n, f, p.oh, p.ow), 7.0, np.float32)
    assert lib.kk_conv2d_winograd(ctypes.byref(p), ptr(x), ptr(wt), None, None, None, ptr(y),
                                  0) == -1
    assert (y == 7.0).all()


@pytest.mark.parametrize("geom", [WINOGRAD_CONVS[0], WINOGRAD_CONVS[7]])
def test_winograd_passes_non_finite_input_to_the_direct_kernel(lib, geom):
    """An inf or a NaN would spread to outputs outside its window through the transforms: such
    an input is declined (y untouched) and kiln_conv2d_f32 keeps each in its own window."""
    p, x, wt, _ = winograd_case(geom)
    assert lib.kiln_conv2d_init(ctypes.byref(p)) == 0
    n, c, h, w, f, _ = geom
    x[n - 1, 3, 10, 20] = np.nan
    x[n - 1, 5, h - 1, 0] = np.inf
    y = np.full((n, f, p.oh, p.ow), 7.0, np.float32)
    assert lib.kk_conv2d_winograd(ctypes.byref(p), ptr(x), ptr(wt), None, None, None, ptr(y),
                                  0) == -1
    assert (y == 7.0).all()
    lib.kiln_conv2d_f32(ctypes.byref(p), ptr(x), ptr(wt), None, None, None, ptr(y), 0)
    bad = np.zeros((p.oh, p.ow), bool)
    bad[9:12, 19:22] = True                  # the 3x3 windows holding the NaN
    bad[h - 2:h, 0:2] = True                 # and the inf (padding 1)
    assert not np.isfinite(y[n - 1]).all(axis=0)[bad].any()
    assert np.isfinite(y[n - 1][:, ~bad]).all()
    if n > 1:
        assert np.isfinite(y[0]).all()


@pytest.mark.parametrize("geom", [WINOGRAD_CONVS[1], WINOGRAD_CONVS[3]])
def test_winograd_non_finite_weight(lib, geom):
    """A NaN weight makes its filter's outputs NaN and leaves every other filter exact, by
    either order of work (by blocks it declines; by panels its panel runs the definition)."""
    p, x, wt, ref = winograd_case(geom)
    assert lib.kiln_conv2d_init(ctypes.byref(p)) == 0
    wt[7, 2, 1, 1] = np.nan
    y = np.empty(ref.shape, np.float32)
    if lib.kk_conv2d_winograd(ctypes.byref(p), ptr(x), ptr(wt), None, None, None, ptr(y), 0):
        assert lib.kk_conv2d_shift(ctypes.byref(p), ptr(x), ptr(wt), None, None, None, ptr(y),
                                   0) == 0
    assert np.isnan(y[:, 7]).all()
    others = np.arange(geom[4]) != 7
    assert np.abs(y[:, others] - ref[:, others]).max() <= 2e-6 * np.abs(ref).max()


# Winograd F(4x4, 3x3) (conv_winograd4.c) takes a batch of one's 3x3 stride-1 convolutions on
# maps of 36 tiles (4x4 outputs each) and more, where F(2x2, 3x3) would run by panels (ResNet's
# 28x28 layers). (n, c, h, w, f, pad):
WINOGRAD4_CONVS = [
    (1, 128, 28, 28, 128, 1),    # ResNet's 28x28 layer: 49 tiles, three blocks and one tile
    (1, 96, 30, 27, 72, 1),      # odd sizes: the last tile row and column cut; panels of 24
    (1, 64, 26, 31, 64, 0),      # no padding: 24x29 outputs
    (1, 64, 24, 22, 80, 2),      # padding 2: 26x24 outputs
    (1, 64, 20, 40, 64, 1),      # 50 tiles: three blocks and two
    (1, 64, 16, 52, 64, 1),      # 52 tiles: three blocks and four
    (1, 100, 28, 28, 100, 1),    # a short panel and a short block of channels
]


def winograd(lib, entry, p, x, wt, scale=None, bias=None, res=None, y=None, act=0):
    """kk_conv2d_winograd or kk_conv2d_winograd4 (`entry`): 0, or -1 when it declines."""
    return getattr(lib, entry)(ctypes.byref(p), ptr(x), ptr(wt),
                               None if scale is None else ptr(scale),
                               None if bias is None else ptr(bias),
                               None if res is None else ptr(res), ptr(y), act)


def winograd4(lib, p, x, wt, **kw):
    return winograd(lib, "kk_conv2d_winograd4", p, x, wt, **kw)


# (entry, geometry, bound on the error against float64 relative to the largest output): the
# error stays at float32 rounding's scale, ~1e-7 for F(2x2, 3x3); F(4x4, 3x3) rounds about
# ten times as much (6e-6 to 9e-6 on these)
WINOGRAD_CASES = ([("kk_conv2d_winograd", g, 2e-6) for g in WINOGRAD_CONVS] +
                  [("kk_conv2d_winograd4", g, 2e-5) for g in WINOGRAD4_CONVS])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("entry,geom,bound", WINOGRAD_CASES)
def test_winograd_matches_the_definition(lib, entry, geom, bound, threads):
    p, x, wt, ref = winograd_case(geom)
    assert lib.kiln_conv2d_init(ctypes.byref(p)) == 0
    f = geom[4]
    scale, bias, res = rand(f, seed=3), rand(f, seed=2), rand(*ref.shape, seed=5)
    lib.kiln_set_num_threads(threads)
    try:
        y = np.full(ref.shape, np.nan, np.float32)
        assert winograd(lib, entry, p, x, wt, y=y) == 0
        assert np.abs(y - ref).max() <= bound * np.abs(ref).max()
        # the epilogue: scale, bias, a residual updated in place, relu
        inplace = res.copy()
        assert winograd(lib, entry, p, x, wt, scale, bias, inplace, inplace, 1) == 0
        expect = np.maximum(ref * scale[:, None, None] + bias[:, None, None] + res, 0)
        np.testing.assert_allclose(inplace, expect, rtol=5 * bound, atol=5 * bound)
        if entry == "kk_conv2d_winograd4":     # kiln_conv2d_f32 takes it for these
            direct = np.empty(ref.shape, np.float32)
            lib.kiln_conv2d_f32(ctypes.byref(p), ptr(x), ptr(wt), None, None, None,
                                ptr(direct), 0)
            assert np.array_equal(direct, y)
    finally:
        lib.kiln_set_num_threads(0)


@pytest.mark.parametrize("entry,geom", [
    ("kk_conv2d_winograd", WINOGRAD_CONVS[1]), ("kk_conv2d_winograd", WINOGRAD_CONVS[3]),
    ("kk_conv2d_winograd", WINOGRAD_CONVS[7]), ("kk_conv2d_winograd4", WINOGRAD4_CONVS[0]),
    ("kk_conv2d_winograd4", WINOGRAD4_CONVS[5])])
def test_winograd_results_do_not_depend_on_threads(lib, entry, geom):
    """Each output is summed in one order whatever the split over threads (F(2x2, 3x3) by
    blocks also changes its items with the thread count, and by panels its panel size): the
    same bits on 1, 2 and 3 threads."""
    p, x, wt, ref = winograd_case(geom)
    assert lib.kiln_conv2d_init(ctypes.byref(p)) == 0
    outs = []
    try:
        for threads in (1, 2, 3):
            lib.kiln_set_num_threads(threads)
            y = np.empty(ref.shape, np.float32)
            assert winograd(lib, entry, p, x, wt, y=y) == 0
            outs.append(y)
    finally:
        lib.kiln_set_num_threads(0)
    assert all(np.array_equal(outs[0], y) for y in outs[1:])


@pytest.mark.parametrize("geom", [
    (2, 128, 28, 28, 128, 3, 3, 1, 1, 1, 1, 1, 1, 1),   # a batch of two
    (1, 256, 14, 14, 256, 3, 3, 1, 1, 1, 1, 1, 1, 1),   # 16 tiles: F(2x2, 3x3) was faster
    (1, 64, 56, 56, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1),     # F(2x2, 3x3) by blocks was faster
    (1, 128, 28, 28, 128, 3, 3, 2, 2, 1, 1, 1, 1, 1),   # stride 2
    (1, 128, 28, 28, 128, 3, 3, 1, 1, 2, 2, 2, 2, 1),   # dilation 2
    (1, 128, 28, 28, 128, 3, 3, 1, 1, 1, 1, 1, 1, 2),   # groups
    (1, 16, 28, 28, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1),     # too little work
])
def test_winograd4_declines_what_it_does_not_take(lib, geom):
    p = Conv2d(*geom, 0, 0)
    assert lib.kiln_conv2d_init(ctypes.byref(p)) == 0
    n, c, h, w, f = geom[:5]
    x, wt = rand(n, c, h, w), rand(f, c // geom[13], geom[5], geom[6], seed=1)
    y = np.full((n, f, p.oh, p.ow), 7.0, np.float32)
    assert winograd4(lib, p, x, wt, y=y) == -1
    assert (y == 7.0).all()


def test_winograd4_declines_a_non_finite_input(lib):
    """As F(2x2, 3x3): an inf or a NaN would reach outputs outside its window through the
    transforms, so the call is declined with y untouched (kiln_conv2d_f32 then runs the direct
    kernel, which keeps it in its window)."""
    p, x, wt, _ = winograd_case(WINOGRAD4_CONVS[0])
    assert lib.kiln_conv2d_init(ctypes.byref(p)) == 0
    for bad in (np.nan, np.inf):
        x2 = x.copy()
        x2[0, 100, 27, 3] = bad
        y = np.full((1, 128, 28, 28), 7.0, np.float32)
        assert winograd4(lib, p, x2, wt, y=y) == -1
        assert (y == 7.0).all()
        lib.kiln_conv2d_f32(ctypes.byref(p), ptr(x2), ptr(wt), None, None, None, ptr(y), 0)
        window = np.zeros((28, 28), bool)
        window[26:28, 2:5] = True
        assert not np.isfinite(y[0]).all(axis=0)[window].any()
        assert np.isfinite(y[0][:, ~window]).all()


def test_winograd4_non_finite_weight(lib):
    """A NaN weight: its panel of filters runs the direct kernel after the others, so that
    filter's outputs are all NaN and every other filter's are right."""
    p, x, wt, ref = winograd_case(WINOGRAD4_CONVS[1])
    assert lib.kiln_conv2d_init(ctypes.byref(p)) == 0
    wt[30, 2, 1, 1] = np.nan
    res = rand(*ref.shape, seed=5)
    y = res.copy()
    assert winograd4(lib, p, x, wt, res=y, y=y) == 0      # with a residual, in place
    assert np.isnan(y[:, 30]).all()
    others = np.arange(72) != 30
    assert np.abs(y[:, others] - (ref + res)[:, others]).max() <= 2e-5 * np.abs(ref).max()


class Pool2d(ctypes.Structure):
    _fields_ = [(name, ctypes.c_long) for name in
                ("n", "c", "h", "w", "kh", "kw", "sh", "sw", "ph", "pw", "oh", "ow")] + \
               [("type", ctypes.c_int), ("count_include_pad", ctypes.c_int)]


def pool_ref(x, k, s, p, oh, ow, kind, include_pad):
    n, c, h, w = x.shape
    y = np.empty((n, c, oh, ow), np.float32)
    for i in range(oh):
        for j in range(ow):
            y0, x0 = i * s - p, j * s - p
            win = x[:, :, max(y0, 0):min(y0 + k, h), max(x0, 0):min(x0 + k, w)]
            if kind == 0:
                padded = (min(y0 + k, h + p) - y0) * (min(x0 + k, w + p) - x0) > \
                    win.shape[2] * win.shape[3]
                m = win.max(axis=(2, 3)) if win.size else np.full((n, c), -np.inf)
                y[:, :, i, j] = np.maximum(m, np.finfo(np.float32).min) if padded else m
            else:
                total = win.sum(axis=(2, 3))
                if kind == 1:
                    cnt = (min(y0 + k, h + p) - y0) * (min(x0 + k, w + p) - x0) if include_pad \
                        else win.shape[2] * win.shape[3]
                    total = total / max(cnt, 1)
                y[:, :, i, j] = total
    return y


@pytest.mark.parametrize("kind", [0, 1, 2])
@pytest.mark.parametrize("k,s,p,full", [(2, 2, 0, False), (3, 2, 1, False), (3, 2, 0, True),
                                        (3, 1, 1, False)])
def test_pool2d(lib, kind, k, s, p, full):
    x = rand(2, 3, 9, 8)
    h, w = 9, 8
    if full:
        oh, ow = -(-(h + 2 * p - k) // s) + 1, -(-(w + 2 * p - k) // s) + 1
    else:
        oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    for include_pad in (1, 0):
        prm = Pool2d(2, 3, h, w, k, k, s, s, p, p, oh, ow, kind, include_pad)
        y = np.empty((2, 3, oh, ow), np.float32)
        lib.kiln_pool2d_f32(ctypes.byref(prm), ptr(x), ptr(y))
        np.testing.assert_allclose(y, pool_ref(x, k, s, p, oh, ow, kind, include_pad),
                                   rtol=1e-5, atol=1e-6)
        # the gradient is the adjoint for avg/sum; for max it routes to the argmax
        dy = rand(2, 3, oh, ow, seed=5)
        dx = np.empty_like(x)
        lib.kiln_pool2d_backward_f32(ctypes.byref(prm), ptr(dy), ptr(x), ptr(y), ptr(dx))
        if kind != 0:
            ones = np.ones_like(x)
            lhs = float((dx * ones).sum())
            y1 = np.empty_like(y)
            lib.kiln_pool2d_f32(ctypes.byref(prm), ptr(ones), ptr(y1))
            assert np.isclose(lhs, float((y1 * dy).sum()), rtol=1e-4)
        else:
            assert np.isclose(float(dx.sum()), float(dy.sum()), rtol=1e-4)


@pytest.mark.parametrize("h,w", [(112, 112), (9, 8), (8, 9), (1, 2), (2, 3), (3, 3), (5, 7),
                                 (6, 40), (13, 33)])
def test_max_pool_3x3_stride_2(lib, h, w):
    """ResNet's pooling has its own loop (pool_planes_max3s2): the same results as the
    definition, exactly, with NaN and -inf where windows meet the padding."""
    x = rand(2, 3, h, w)
    x[0, 1, h // 2, w // 2] = np.nan
    x[1, 0, : min(h, 4), : min(w, 3)] = -np.inf      # windows of -inf and padding (rows, columns)
    x[1, 2, h - 1, w - 1] = np.nan
    oh, ow = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    prm = Pool2d(2, 3, h, w, 3, 3, 2, 2, 1, 1, oh, ow, 0, 1)
    y = np.empty((2, 3, oh, ow), np.float32)
    lib.kiln_set_num_threads(2)
    try:
        lib.kiln_pool2d_f32(ctypes.byref(prm), ptr(x), ptr(y))
    finally:
        lib.kiln_set_num_threads(0)
    with np.errstate(invalid="ignore"):
        expect = pool_ref(x, 3, 2, 1, oh, ow, 0, 1)
    np.testing.assert_array_equal(y, expect)


def test_thread_pool_under_many_small_jobs(lib):
    """Hundreds of parallel jobs back to back: every element is processed exactly once."""
    x = rand(64, 4000, 8)
    expect = x.sum(axis=1)
    y = np.empty((64, 8), np.float32)
    for _ in range(300):
        y[...] = 0
        lib.kiln_sum_axis_f32(ptr(x), ptr(y), 64, 4000, 8, 0)
        np.testing.assert_allclose(y, expect, rtol=1e-4, atol=1e-3)
    z = rand(3000, 40)
    out = np.empty_like(z)
    ref = np.exp(z - z.max(axis=1, keepdims=True))
    ref /= ref.sum(axis=1, keepdims=True)
    for _ in range(300):
        lib.kiln_softmax_f32(ptr(z), ptr(out), 3000, 40, 1, 1.0, 0)
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
