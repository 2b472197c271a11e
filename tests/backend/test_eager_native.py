"""kiln/ops/_native.py: the eager operators' native loops (softmax cross-entropy, relu, relu's
gradient mask, sums over a leading axis) against NumPy, and the operators on both paths."""

from __future__ import annotations

import numpy as onp
import pytest

from kiln import autograd, gluon, np, npx
from kiln.ops import _native

pytestmark = pytest.mark.usefixtures("require_native")


@pytest.fixture
def fn():
    _native.use_native(None)
    yield _native.function
    _native.use_native(None)


def _ce_reference(x, labels):
    """float64 loss and softmax - one_hot, labels clipped into range."""
    x = x.astype(onp.float64)
    idx = onp.clip(labels, 0, x.shape[1] - 1)
    z = x - x.max(1, keepdims=True)
    lse = onp.log(onp.exp(z).sum(1))
    rows = onp.arange(len(x))
    p = onp.exp(z - lse[:, None])
    p[rows, idx] -= 1
    return lse - z[rows, idx], p


@pytest.mark.parametrize("rows,classes", [(1, 1), (3, 1), (7, 10), (256, 10), (33, 17),
                                          (5, 1000)])
def test_softmax_ce_matches_float64(fn, rows, classes):
    rng = onp.random.default_rng(rows * 100 + classes)
    x = (rng.standard_normal((rows, classes)) * 4).astype(onp.float32)
    labels = rng.integers(-2, classes + 2, size=rows)          # some out of range: clipped
    ct = rng.standard_normal(rows).astype(onp.float32)
    loss_ref, p_ref = _ce_reference(x, labels)
    ce = fn("softmax_ce_f32")
    loss = ce(x, labels, None)
    assert loss.shape == (rows,) and loss.dtype == onp.float32
    onp.testing.assert_allclose(loss, loss_ref, rtol=1e-5, atol=1e-5)
    grad = ce(x, labels, ct)
    assert grad.shape == (rows, classes) and grad.dtype == onp.float32
    onp.testing.assert_allclose(grad, p_ref * ct[:, None], rtol=1e-5, atol=1e-6)


def test_softmax_ce_declines_what_it_does_not_take(fn):
    ce = fn("softmax_ce_f32")
    x = onp.ones((4, 3), onp.float32)
    labels = onp.zeros(4, onp.int64)
    assert ce(x.astype(onp.float64), labels, None) is None          # dtype of the logits
    assert ce(x, labels.astype(onp.int32), None) is None            # dtype of the labels
    assert ce(x[None], labels, None) is None                        # 3-D
    assert ce(x[:, ::2], labels, None) is None                      # not C-ordered
    assert ce(x, labels[:3], None) is None                          # one label short
    assert ce(x[:0], labels[:0], None) is None                      # empty
    assert ce(x, labels, onp.ones(4, onp.float64)) is None          # cotangent dtype
    assert ce(x, labels, onp.ones(3, onp.float32)) is None          # cotangent length


def test_multiply_mask_is_numpys_product(fn):
    rng = onp.random.default_rng(1)
    g = rng.standard_normal((37, 41)).astype(onp.float32)
    g[0, :4] = [onp.nan, onp.inf, -onp.inf, -0.0]
    mask = rng.random((37, 41)) > 0.5
    mask[0, :4] = False                      # NaN * False and inf * False are NaN in NumPy
    got = fn("multiply_mask_f32")(g, mask)
    ref = g * mask
    onp.testing.assert_array_equal(got, ref)
    assert onp.array_equal(onp.signbit(got), onp.signbit(ref))
    mm = fn("multiply_mask_f32")
    assert mm(g, mask[:, :40]) is None                               # shapes differ
    assert mm(g[:, ::2], mask[:, ::2]) is None                       # not C-ordered
    assert mm(g.astype(onp.float64), mask) is None                   # dtype
    assert mm(mask, g) is None                                       # operand order


def test_relu_is_numpys_maximum(fn):
    x = onp.array([[-1.5, 0.0, -0.0, 2.0], [onp.nan, onp.inf, -onp.inf, 1e-40]], onp.float32)
    got = fn("relu_f32")(x)
    ref = onp.maximum(x, 0, dtype=onp.float32)
    onp.testing.assert_array_equal(got, ref)                         # NaN stays NaN
    assert not onp.signbit(got[0, 2])                                # -0.0 becomes 0.0
    assert fn("relu_f32")(x.astype(onp.float64)) is None
    assert fn("relu_f32")(x[:, ::2]) is None


@pytest.mark.parametrize("shape,axis", [((256, 256), 0), ((5, 1), 0), ((1, 9), 0),
                                        ((4, 6, 3), 1), ((4, 6, 3), -3), ((2, 3, 4, 5), 2)])
def test_sum_axis_adds_rows_as_numpy_does(fn, shape, axis):
    rng = onp.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(onp.float32)
    got = fn("sum_axis_f32")(x, axis)
    ref = x.sum(axis=axis)
    assert got.shape == ref.shape and got.dtype == onp.float32
    onp.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    onp.testing.assert_allclose(got, x.astype(onp.float64).sum(axis=axis), rtol=1e-5,
                                atol=1e-5)


def test_sum_axis_declines_the_last_axis_and_empty_arrays(fn):
    s = fn("sum_axis_f32")
    x = onp.ones((3, 4), onp.float32)
    assert s(x, 1) is None and s(x, -1) is None          # NumPy's pairwise sum stays
    assert s(onp.ones((0, 4), onp.float32), 0) is None
    assert s(x.T, 0) is None                             # not C-ordered
    assert s(x, 2) is None and s(x, -3) is None          # no such axis: NumPy raises


def _mlp_step(native: bool):
    """A training step of a relu MLP with softmax cross-entropy: loss and gradients."""
    _native.use_native(None if native else False)
    try:
        rng = onp.random.default_rng(7)
        x = np.array(rng.standard_normal((64, 30)).astype(onp.float32))
        y = np.array(rng.integers(0, 10, size=64))
        net = gluon.nn.HybridSequential()
        net.add(gluon.nn.Dense(48, activation="relu"), gluon.nn.Dense(10))
        net.initialize()
        net(x)
        for i, p in enumerate(net.collect_params().values()):
            p.set_data(np.array(onp.random.default_rng(i).standard_normal(p.shape)
                                .astype(onp.float32) * 0.3))
        loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
        with autograd.record():
            loss = loss_fn(net(x), y)
            total = loss.sum()
        total.backward()
        return [loss.asnumpy()] + [p.grad().asnumpy() for p in net.collect_params().values()]
    finally:
        _native.use_native(None)


def test_training_step_agrees_with_the_numpy_path():
    for got, ref in zip(_mlp_step(True), _mlp_step(False)):
        onp.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * onp.abs(ref).max())


def test_operators_fall_back_for_other_layouts():
    """The fronts hand NumPy what the loops decline: the results are the same operators'."""
    rng = onp.random.default_rng(3)
    xd = rng.standard_normal((6, 5, 4)).astype(onp.float32)
    x = np.array(xd)
    onp.testing.assert_array_equal(npx.relu(x[:, ::2]).asnumpy(),
                                   onp.maximum(xd[:, ::2], 0))
    onp.testing.assert_allclose(np.sum(x, axis=2).asnumpy(), xd.sum(axis=2), rtol=1e-6)
    onp.testing.assert_allclose(np.sum(x, axis=1, keepdims=True).asnumpy(),
                                xd.sum(axis=1, keepdims=True), rtol=1e-6)
    mask = xd > 0
    onp.testing.assert_array_equal((x * np.array(mask)).asnumpy(), xd * mask)
