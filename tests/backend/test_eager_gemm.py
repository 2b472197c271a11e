"""kiln/ops/_gemm.py: eager 2-D float32 products in the kernel library, against NumPy."""

from __future__ import annotations

import numpy as onp
import pytest

from kiln import autograd, np, npx
from kiln.ops import _gemm, _native

pytestmark = pytest.mark.usefixtures("require_native")


@pytest.fixture
def native():
    """The binding's matmul_f32 (the native path, asked to take every size)."""
    _gemm.use_native(None)
    assert _gemm.native_in_use()
    fn = _native.function("matmul_f32")
    yield lambda a, b, out=None: fn(a, b, out, 0.0)
    _gemm.use_native(None)


def _layouts(x):
    """x as a C-ordered matrix, as the transpose of a C-ordered matrix, and as rows/columns
    of a larger matrix (leading dimension > its width)."""
    r, c = x.shape
    big = onp.full((r + 3, c + 5), onp.nan, onp.float32)
    big[1:r + 1, 2:c + 2] = x
    bigt = onp.full((c + 4, r + 2), onp.nan, onp.float32)
    bigt[3:c + 3, 1:r + 1] = x.T
    return {"C": x.copy(), "T": onp.ascontiguousarray(x.T).T, "rows": big[1:r + 1, 2:c + 2],
            "cols": bigt[3:c + 3, 1:r + 1].T}


SHAPES = [(1, 1, 1), (1, 7, 1), (5, 1, 3), (1, 64, 300), (300, 64, 1), (17, 33, 9),
          (64, 64, 64), (256, 784, 256), (256, 256, 784), (256, 128, 10), (130, 70, 260)]


@pytest.mark.parametrize("m,k,n", SHAPES)
def test_every_layout_matches_numpy(native, m, k, n):
    rng = onp.random.default_rng(m * 1000 + k * 10 + n)
    a = rng.standard_normal((m, k)).astype(onp.float32)
    b = rng.standard_normal((k, n)).astype(onp.float32)
    ref = a.astype(onp.float64) @ b.astype(onp.float64)
    tol = 1e-5 * max(1, k) ** 0.5 * 4
    for la, aa in _layouts(a).items():
        for lb, bb in _layouts(b).items():
            got = native(aa, bb)
            assert got is not None, (la, lb)
            assert got.shape == (m, n) and got.dtype == onp.float32 and got.flags.c_contiguous
            onp.testing.assert_allclose(got, ref, rtol=tol, atol=tol, err_msg=f"{la} @ {lb}")


def test_out_is_written_and_returned(native):
    rng = onp.random.default_rng(1)
    a = rng.standard_normal((40, 30)).astype(onp.float32)
    b = rng.standard_normal((30, 20)).astype(onp.float32)
    out = onp.full((40, 20), onp.nan, onp.float32)
    got = native(a, b.T.copy().T, out)
    assert got is out
    onp.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)


def test_declines_what_it_does_not_handle(native):
    rng = onp.random.default_rng(2)
    a = rng.standard_normal((8, 6)).astype(onp.float32)
    b = rng.standard_normal((6, 4)).astype(onp.float32)
    assert native(a.astype(onp.float64), b.astype(onp.float64)) is None     # dtype
    assert native(a[:, ::2], b[::2]) is None                                # strided both ways
    assert native(a[None], b) is None                                       # 3-D
    assert native(a[:0], b) is None                                         # empty
    assert native(a[:, :0], b[:0]) is None                                  # k = 0
    assert native(a, b.astype(">f4")) is None                               # byte order
    big = onp.zeros((8, 8), onp.float32)
    assert native(big[:, :6], big[:6, :4], big[:, 4:]) is None              # out overlaps
    assert native(a, b, onp.zeros((8, 4), onp.float64)) is None             # out dtype
    assert native(a, b, onp.zeros((4, 8), onp.float32).T) is None           # out not C order
    fn = _native.function("matmul_f32")
    assert fn(a, b, None, 1e9) is None                                      # below min_work


def test_bias_starts_the_rows(native):
    """matmul_f32's bias: the product accumulates onto rows that start as the bias."""
    fn = _native.function("matmul_f32")
    rng = onp.random.default_rng(5)
    a = rng.standard_normal((70, 90)).astype(onp.float32)
    w = rng.standard_normal((40, 90)).astype(onp.float32)
    bias = rng.standard_normal(40).astype(onp.float32)
    ref = a.astype(onp.float64) @ w.T.astype(onp.float64) + bias
    got = fn(a, w.T, None, 0.0, bias)
    onp.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)
    out = onp.full((70, 40), onp.nan, onp.float32)
    assert fn(a, w.T, out, 0.0, bias) is out
    onp.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)
    assert fn(a, w.T, None, 0.0, bias.astype(onp.float64)) is None         # bias dtype
    assert fn(a, w.T, None, 0.0, bias[:39]) is None                        # bias length
    assert fn(a, w.T, None, 0.0, onp.ones((70, 40), onp.float32)) is None  # not a vector
    big = onp.zeros(70 * 40 + 40, onp.float32)
    assert fn(a, w.T, big[40:].reshape(70, 40), 0.0, big[:40]) is not None  # apart: taken
    assert fn(a, w.T, big[:2800].reshape(70, 40), 0.0, big[2760:]) is None  # out overlaps it
    # what the binding declines, the front computes in NumPy
    for b in (bias.astype(onp.float64), bias[::-1]):
        onp.testing.assert_allclose(_gemm.matmul(a, w.T, bias=b), a @ w.T + b, rtol=1e-5,
                                    atol=1e-4)


@pytest.mark.parametrize("flag", [True, False])
def test_matmul_front_matches_numpy_on_both_paths(flag):
    """_gemm.matmul (what the operators call) gives NumPy's results whichever path runs,
    including the shapes and dtypes it hands to NumPy."""
    _gemm.use_native(None if flag else False)
    try:
        rng = onp.random.default_rng(3)
        cases = [((256, 300), (300, 200), onp.float32), ((3, 4), (4, 5), onp.float64),
                 ((2, 3, 4), (4, 5), onp.float32), ((4,), (4, 3), onp.float32),
                 ((0, 70), (70, 80), onp.float32), ((90, 80), (80, 0), onp.float32)]
        for sa, sb, dt in cases:
            a = rng.standard_normal(sa).astype(dt)
            b = rng.standard_normal(sb).astype(dt)
            got = _gemm.matmul(a, b)
            ref = onp.matmul(a, b)
            assert got.shape == ref.shape and got.dtype == ref.dtype
            onp.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
        out = onp.empty((256, 200), onp.float32)
        a = rng.standard_normal((256, 300)).astype(onp.float32)
        b = rng.standard_normal((200, 300)).astype(onp.float32).T
        assert _gemm.matmul(a, b, out) is out
        onp.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)
        assert _gemm.native_in_use() is flag
    finally:
        _gemm.use_native(None)


def test_operators_agree_with_the_numpy_path():
    """Dense layer, matmul and dot, forward and backward, with the native GEMM and without."""
    rng = onp.random.default_rng(4)
    xs = rng.standard_normal((96, 130)).astype(onp.float32)
    ws = rng.standard_normal((70, 130)).astype(onp.float32)
    bs = rng.standard_normal(70).astype(onp.float32)
    results = []
    for flag in (None, False):
        _gemm.use_native(flag)
        x, w, b = np.array(xs), np.array(ws), np.array(bs)
        for a in (x, w, b):
            a.attach_grad()
        with autograd.record():
            y = npx.fully_connected(x, w, b, num_hidden=70)
            z = np.matmul(y, w) + np.dot(y, w)
            loss = (z * z).sum()
        loss.backward()
        results.append([t.asnumpy() for t in (y, z, x.grad, w.grad, b.grad)])
    _gemm.use_native(None)
    for got, ref in zip(*results):
        onp.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-4 * onp.abs(ref).max())
