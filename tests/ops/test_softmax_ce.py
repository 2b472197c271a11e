"""The fused softmax cross-entropy (kiln/ops/nn.py) against the composite it replaces in
gluon.loss.SoftmaxCrossEntropyLoss, with finite-difference first and second derivatives."""

from __future__ import annotations

import numpy as onp
import pytest

from kiln import autograd, gluon, npx
from kiln import np as knp
from kiln.ops.nn import SoftmaxCrossEntropyBackward, softmax_cross_entropy
from kiln.test_utils import check_gradient, check_second_order

CASES = [((6, 5), -1, (6,)), ((4, 3, 5), 1, (4, 5)), ((4, 3, 5), -1, (4, 3)),
         ((4, 3, 5), 0, (3, 5)), ((6, 5), -1, (6, 1)), ((1, 1), -1, (1,))]


def _data(shape, axis, lshape, seed=0):
    rng = onp.random.default_rng(seed)
    x = rng.standard_normal(shape).astype("float32") * 3
    labels = rng.integers(-2, shape[axis] + 2, size=lshape)   # some out of range: clipped
    return x, labels


def _composite(x, label, axis):
    picked = npx.pick(npx.log_softmax(x, axis=axis), label, axis=axis)
    return -picked


@pytest.mark.parametrize("shape,axis,lshape", CASES)
def test_matches_the_composite_forward_and_backward(shape, axis, lshape):
    xd, labels = _data(shape, axis, lshape)
    results = []
    for fn in (softmax_cross_entropy, _composite):
        x = knp.array(xd)
        x.attach_grad()
        with autograd.record():
            loss = fn(x, knp.array(labels), axis)
        ct = onp.random.default_rng(1).standard_normal(loss.shape).astype("float32")
        loss.backward(knp.array(ct))
        results.append((loss.asnumpy(), x.grad.asnumpy()))
    (fused, gfused), (comp, gcomp) = results
    assert fused.shape == comp.shape and fused.dtype == onp.float32
    onp.testing.assert_allclose(fused, comp, rtol=1e-6, atol=1e-6)
    onp.testing.assert_allclose(gfused, gcomp, rtol=1e-5, atol=1e-6)


def test_dtypes_and_float_labels():
    xd, labels = _data((5, 4), -1, (5,))
    out64 = softmax_cross_entropy(knp.array(xd.astype("float64")), knp.array(labels))
    assert out64.dtype == onp.float64
    ref = _composite(knp.array(xd.astype("float64")), knp.array(labels), -1)
    onp.testing.assert_allclose(out64.asnumpy(), ref.asnumpy(), rtol=1e-12)
    as_float = softmax_cross_entropy(knp.array(xd), knp.array(labels.astype("float32")))
    onp.testing.assert_allclose(as_float.asnumpy(),
                                softmax_cross_entropy(knp.array(xd), knp.array(labels)).asnumpy())
    ints = softmax_cross_entropy(knp.array(onp.arange(8).reshape(2, 4)), knp.array([1, 3]))
    assert ints.dtype == onp.float32


@pytest.mark.parametrize("shape,axis,lshape", CASES[:3])
def test_gradient_by_finite_differences(shape, axis, lshape):
    xd, labels = _data(shape, axis, lshape, seed=2)
    check_gradient(lambda x: softmax_cross_entropy(x, knp.array(labels), axis), [xd])


def test_second_order_by_finite_differences():
    xd, labels = _data((3, 4), -1, (3,), seed=3)
    check_second_order(lambda x: softmax_cross_entropy(x, knp.array(labels)), [xd])
    ct = onp.random.default_rng(4).standard_normal(3)
    # the backward operator's own gradient, with respect to the data and the cotangent
    check_gradient(lambda x, c: _backward(x, knp.array(labels), c), [xd, ct])
    check_second_order(lambda x, c: _backward(x, knp.array(labels), c), [xd, ct])


def _backward(x, label, ct):
    from kiln.ndarray import apply

    return apply(SoftmaxCrossEntropyBackward, (x, label, ct), {"axis": -1})


def test_loss_block_uses_it_and_keeps_its_values():
    xd, labels = _data((8, 5), -1, (8,), seed=5)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    got = loss(knp.array(xd), knp.array(labels))
    ref = _composite(knp.array(xd), knp.array(labels), -1)
    assert got.shape == (8,)
    onp.testing.assert_allclose(got.asnumpy(), ref.asnumpy(), rtol=1e-6)
    # weights and sample weights keep MXNet's shapes: (N, 1) sample weights broadcast per sample
    sw = onp.linspace(0.5, 2, 8).reshape(8, 1).astype("float32")
    weighted = gluon.loss.SoftmaxCrossEntropyLoss(weight=0.5)(knp.array(xd), knp.array(labels),
                                                              knp.array(sw))
    onp.testing.assert_allclose(weighted.asnumpy(), 0.5 * ref.asnumpy() * sw[:, 0], rtol=1e-6)
    # a 3-D prediction averages over the positions, as the composite did
    x3, l3 = _data((4, 3, 5), -1, (4, 3), seed=6)
    got3 = loss(knp.array(x3), knp.array(l3))
    onp.testing.assert_allclose(got3.asnumpy(),
                                _composite(knp.array(x3), knp.array(l3), -1).asnumpy().mean(1),
                                rtol=1e-6)


def test_shape_errors_name_the_operator():
    from kiln.base import ShapeError

    with pytest.raises(ShapeError, match="softmax_cross_entropy"):
        softmax_cross_entropy(knp.ones((4, 3)), knp.array([0, 1, 2]))
