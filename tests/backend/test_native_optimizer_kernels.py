"""The fused optimizer kernels against NumPy transcriptions of MXNet's formulas."""

from __future__ import annotations

import math

import numpy as onp
import pytest

pytestmark = pytest.mark.usefixtures("require_native")


@pytest.fixture(scope="module")
def ok():
    from kiln.backend.native import native_available, optimizer_kernels

    if not native_available():
        pytest.skip("no C compiler: the native kernels are unavailable")
    assert optimizer_kernels.available()
    return optimizer_kernels


def arrays(n, seed=0):
    rng = onp.random.default_rng(seed)
    return [rng.standard_normal(n).astype(onp.float32) for _ in range(4)]


def sgd_reference(w, g, mom, lr, momentum, wd, rescale, clip):
    g = g * rescale
    if clip is not None:
        g = onp.clip(g, -clip, clip)
    g = g + wd * w
    if mom is None:
        return w - lr * g, None
    mom = momentum * mom - lr * g
    return w + mom, mom


def adam_reference(w, g, m, v, lr, b1, b2, eps, wd, rescale, clip, t):
    g = g * rescale
    if clip is not None:
        g = onp.clip(g, -clip, clip)
    g = g + wd * w
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    return w - lr_t * m / (onp.sqrt(v) + eps), m, v


@pytest.mark.parametrize("n", [1, 37, 300_001])
@pytest.mark.parametrize("momentum,clip", [(0.0, None), (0.9, None), (0.9, 0.5)])
def test_sgd(ok, n, momentum, clip):
    w, g, mom, _ = arrays(n)
    mom = mom if momentum else None
    ew, emom = w.copy(), None if mom is None else mom.copy()
    for step in range(3):
        ew, emom = sgd_reference(ew, g, emom, 0.1, momentum, 1e-3, 1 / 8, clip)
        ok.sgd_update(w, g, mom, 0.1, momentum, 1e-3, 1 / 8, clip)
    onp.testing.assert_allclose(w, ew, rtol=1e-5, atol=1e-6)
    if mom is not None:
        onp.testing.assert_allclose(mom, emom, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [5, 100_003])
@pytest.mark.parametrize("clip", [None, 0.3])
def test_adam(ok, n, clip):
    w, g, m, v = arrays(n, seed=1)
    m[...] = 0
    v[...] = 0
    ew, em, ev = w.copy(), m.copy(), v.copy()
    for t in range(1, 4):
        ew, em, ev = adam_reference(ew, g, em, ev, 0.01, 0.9, 0.999, 1e-8, 1e-4, 0.5, clip, t)
        ok.adam_update(w, g, m, v, 0.01, 0.9, 0.999, 1e-8, 1e-4, 0.5, clip, t=t)
    onp.testing.assert_allclose(w, ew, rtol=1e-5, atol=1e-6)
    onp.testing.assert_allclose(m, em, rtol=1e-5, atol=1e-7)
    onp.testing.assert_allclose(v, ev, rtol=1e-5, atol=1e-8)


def test_multi_forms_match_single(ok):
    shapes = [(3, 4), (7,), (2, 2, 2)]
    rng = onp.random.default_rng(2)
    ws = [rng.standard_normal(s).astype(onp.float32) for s in shapes]
    gs = [rng.standard_normal(s).astype(onp.float32) for s in shapes]
    moms = [onp.zeros(s, onp.float32) for s in shapes]
    ws2, moms2 = [w.copy() for w in ws], [m.copy() for m in moms]
    lrs, wds = [0.1, 0.2, 0.3], [0.0, 1e-3, 1e-2]
    ok.sgd_update_multi(ws, gs, moms, lrs, wds, momentum=0.9, rescale=0.5)
    for w, g, m, lr, wd in zip(ws2, gs, moms2, lrs, wds):
        ok.sgd_update(w, g, m, lr, 0.9, wd, 0.5)
    for a, b in zip(ws, ws2):
        onp.testing.assert_array_equal(a, b)
    means = [onp.zeros(s, onp.float32) for s in shapes]
    variances = [onp.zeros(s, onp.float32) for s in shapes]
    ok.adam_update_multi(ws, gs, means, variances, lrs, wds)
    for w, g, lr, wd in zip(ws2, gs, lrs, wds):
        m, v = onp.zeros_like(w), onp.zeros_like(w)
        ok.adam_update(w, g, m, v, lr, wd=wd)
    for a, b in zip(ws, ws2):
        onp.testing.assert_array_equal(a, b)


def test_rejects_wrong_arrays(ok):
    w = onp.zeros(4, onp.float64)
    with pytest.raises(TypeError, match="float32"):
        ok.sgd_update(w, w, None, 0.1)
    w = onp.zeros((4, 4), onp.float32)[:, ::2]
    with pytest.raises(TypeError, match="contiguous"):
        ok.sgd_update(w, w, None, 0.1)
    with pytest.raises(ValueError, match="elements"):
        ok.sgd_update(onp.zeros(4, onp.float32), onp.zeros(5, onp.float32), None, 0.1)
