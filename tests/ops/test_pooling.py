"""Pooling: max/avg/sum/lp against a loop reference (MXNet's conventions: 'valid' and 'full'
output sizes, count_include_pad, global pooling), gradients (max routes to the first maximum),
gradients of gradients, and the errors."""

import itertools

import numpy as onp
import pytest

from kiln import autograd, npx
from kiln import np as knp
from kiln.base import KilnError, ShapeError
from kiln.ops import pooling as pool_ops
from kiln.test_utils import assert_almost_equal, check_gradient


def ref_pool(x, kernel, stride, pad, pool_type="max", convention="valid",
             count_include_pad=True):
    """Each window [o*stride - pad, o*stride - pad + kernel), clipped to the input; an average
    divides by the window clipped to the padded input (or to the input without the padding)."""
    nd = x.ndim - 2
    sizes = x.shape[2:]
    out = []
    for i in range(nd):
        span = sizes[i] + 2 * pad[i] - kernel[i]
        q = -(-span // stride[i]) if convention == "full" else span // stride[i]
        out.append(q + 1)
    y = onp.zeros(x.shape[:2] + tuple(out))
    for o in itertools.product(*(range(v) for v in out)):
        lo = [o[i] * stride[i] - pad[i] for i in range(nd)]
        hi = [lo[i] + kernel[i] for i in range(nd)]
        window = x[(Ellipsis,) + tuple(slice(max(lo[i], 0), min(hi[i], sizes[i]))
                                       for i in range(nd))]
        flat = window.reshape(x.shape[:2] + (-1,))
        if pool_type == "max":
            y[(Ellipsis,) + o] = flat.max(-1)
        elif pool_type == "sum":
            y[(Ellipsis,) + o] = flat.sum(-1)
        else:
            if count_include_pad:
                count = onp.prod([min(hi[i], sizes[i] + pad[i]) - lo[i] for i in range(nd)])
            else:
                count = flat.shape[-1]
            y[(Ellipsis,) + o] = flat.sum(-1) / count
    return y


def distinct(rng, *shape):
    """Values far apart from each other, so a max pooling's argmax is stable under the finite
    differences' perturbations."""
    n = int(onp.prod(shape))
    return (rng.permutation(n).reshape(shape) * 0.1 - n * 0.05).astype(onp.float64)


# (spatial, kernel, stride, pad); every window, 'full' ones included, meets the input (a
# window wholly in the overhang gives 0 here where MXNet gives nan or the lowest float)
GEOMETRIES = [
    ((8,), (3,), (2,), (1,)),
    ((7, 6), (2, 2), (2, 2), (0, 0)),          # tiles exactly
    ((7, 6), (3, 3), (2, 2), (1, 1)),
    ((6, 7), (3, 2), (1, 2), (1, 0)),
    ((6, 6), (2, 2), (3, 3), (1, 1)),          # stride larger than kernel
    ((6, 4, 6), (2, 3, 2), (2, 1, 2), (1, 1, 0)),
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("convention", ["valid", "full"])
@pytest.mark.parametrize("pool_type,include", [("max", True), ("sum", True), ("avg", True),
                                               ("avg", False)])
def test_forward_matches_reference(geometry, convention, pool_type, include):
    spatial, kernel, stride, pad = geometry
    rng = onp.random.default_rng(0)
    x = rng.standard_normal((2, 3) + spatial)
    y = npx.pooling(knp.array(x), kernel=kernel, stride=stride, pad=pad, pool_type=pool_type,
                    pooling_convention=convention, count_include_pad=include)
    ref = ref_pool(x, kernel, stride, pad, pool_type, convention, include)
    assert_almost_equal(y, ref, rtol=1e-12, atol=1e-12)


def test_mxnet_defaults_stride_one_no_pad():
    x = onp.arange(2 * 5 * 5, dtype=onp.float64).reshape(1, 2, 5, 5)
    y = npx.pooling(knp.array(x), kernel=(2, 2))
    assert y.shape == (1, 2, 4, 4)
    assert_almost_equal(y, ref_pool(x, (2, 2), (1, 1), (0, 0)))


def test_full_convention_output_size():
    # (7 + 2 - 3) / 2 -> valid floor = 3 -> 4 outputs; full ceil: (7 + 0 - 2)/2 = 2.5 -> 4
    x = knp.zeros((1, 1, 7, 7))
    assert npx.pooling(x, kernel=(2, 2), stride=(2, 2)).shape == (1, 1, 3, 3)
    assert npx.pooling(x, kernel=(2, 2), stride=(2, 2), pooling_convention="full"
                       ).shape == (1, 1, 4, 4)


@pytest.mark.parametrize("pool_type", ["max", "avg", "sum"])
def test_global_pool(pool_type):
    rng = onp.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4, 5))
    y = npx.pooling(knp.array(x), pool_type=pool_type, global_pool=True)
    fn = {"max": onp.max, "avg": onp.mean, "sum": onp.sum}[pool_type]
    assert_almost_equal(y, fn(x, axis=(2, 3), keepdims=True), rtol=1e-12)
    check_gradient(lambda x: npx.pooling(x, pool_type=pool_type, global_pool=True,
                                         kernel=(1, 1)), [distinct(rng, 1, 2, 3, 4)])


@pytest.mark.parametrize("p", [1, 2, 3])
def test_lp_pooling(p):
    rng = onp.random.default_rng(2)
    x = rng.uniform(0.5, 1.5, (1, 2, 5, 5))
    y = npx.pooling(knp.array(x), kernel=(2, 2), stride=(2, 2), pool_type="lp", p_value=p)
    ref = ref_pool(x ** p, (2, 2), (2, 2), (0, 0), "sum") ** (1.0 / p)
    assert_almost_equal(y, ref, rtol=1e-12)
    check_gradient(lambda x: npx.pooling(x, kernel=(2, 2), stride=(1, 1), pool_type="lp",
                                         p_value=p), [x])


def test_max_pool_ties_send_the_gradient_to_the_first_maximum():
    x = knp.array(onp.array([[[[1.0, 3.0, 3.0, 0.0],
                                [3.0, 2.0, 0.0, 3.0]]]]))
    x.attach_grad()
    with autograd.record():
        y = npx.pooling(x, kernel=(2, 2), stride=(2, 2))
    y.backward(knp.array(onp.array([[[[10.0, 20.0]]]])))
    assert_almost_equal(x.grad, onp.array([[[[0, 10.0, 20.0, 0], [0, 0, 0, 0]]]]))
    # overlapping windows: each window picks its own first maximum, gradients add up
    x = knp.array(onp.array([[[2.0, 2.0, 2.0]]]))
    x.attach_grad()
    with autograd.record():
        y = npx.pooling(x, kernel=(2,), stride=(1,))
    y.backward()
    assert_almost_equal(x.grad, onp.array([[[1.0, 1.0, 0.0]]]))


def test_max_pool_padding_never_wins():
    x = -5.0 - onp.arange(9, dtype=onp.float64).reshape(1, 1, 3, 3)
    y = npx.pooling(knp.array(x), kernel=(3, 3), stride=(1, 1), pad=(1, 1))
    assert_almost_equal(y, ref_pool(x, (3, 3), (1, 1), (1, 1)))
    assert float(y.asnumpy().max()) == -5.0


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("pool_type,include", [("max", True), ("avg", True), ("avg", False),
                                               ("sum", True)])
def test_gradients(geometry, pool_type, include):
    spatial, kernel, stride, pad = geometry
    rng = onp.random.default_rng(3)
    x = distinct(rng, 1, 2, *spatial)
    conv = "full" if len(spatial) == 2 else "valid"
    check_gradient(lambda x: npx.pooling(x, kernel=kernel, stride=stride, pad=pad,
                                         pool_type=pool_type, pooling_convention=conv,
                                         count_include_pad=include), [x])


def _second_order(fn, x):
    probe = {}

    def first(x):
        with autograd.record():
            out = fn(x)
        if "p" not in probe:
            probe["p"] = onp.random.default_rng(4).standard_normal(out.shape)
        return autograd.grad(out, [x], head_grads=[knp.array(probe["p"])],
                             create_graph=True, retain_graph=True)[0]
    check_gradient(first, [x], rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("pool_type", ["max", "avg", "sum"])
def test_second_order(pool_type):
    rng = onp.random.default_rng(5)
    x = distinct(rng, 1, 2, 5, 5) * 0.2
    _second_order(lambda x: knp.tanh(npx.pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1),
                                                 pool_type=pool_type)), x)


def test_backward_ops_are_adjoint():
    """<pooling_backward(g), c> = <g, gather(c)> for max; <backward(g), c> = <g, pool(c)> for
    average pooling."""
    rng = onp.random.default_rng(6)
    x = distinct(rng, 2, 3, 6, 7)
    attrs = dict(pool_ops.Pooling.attrs, kernel=(3, 2), stride=(2, 2), pad=(1, 0))
    for pool_type in ("max", "avg"):
        a = dict(attrs, pool_type=pool_type)
        y = pool_ops.Pooling.impl(x, **a)
        g = rng.standard_normal(y.shape)
        c = rng.standard_normal(x.shape)
        gx = pool_ops.PoolingBackward.impl(g, x, y, **a)
        if pool_type == "max":
            back = pool_ops.PoolingMaxGather.impl(c, x, y, **a)
        else:
            back = pool_ops.Pooling.impl(c, **a)
        assert abs((gx * c).sum() - (g * back).sum()) < 1e-9


def test_float32_stays_float32():
    x = knp.array(onp.ones((2, 3, 8, 8), onp.float32))
    for pool_type in ("max", "avg", "sum"):
        assert npx.pooling(x, kernel=(2, 2), stride=(2, 2), pool_type=pool_type
                           ).dtype == onp.float32


def test_attrs():
    x = knp.zeros((1, 1, 4, 4))
    x.attach_grad()
    with autograd.record():
        y = npx.pooling(x, kernel=[2, 2], stride=2, pool_type="avg")
    attrs = y._node.attrs
    assert set(attrs) == set(pool_ops.Pooling.attrs)
    assert attrs["kernel"] == (2, 2) and attrs["stride"] == (2, 2) and attrs["pad"] == (0, 0)
    assert pool_ops.Pooling.mx_name == "Pooling"


def test_errors():
    x = knp.zeros((1, 2, 4, 4))
    with pytest.raises(KilnError, match="pool_type"):
        npx.pooling(x, kernel=(2, 2), pool_type="median")
    with pytest.raises(KilnError, match="pooling_convention"):
        npx.pooling(x, kernel=(2, 2), pooling_convention="same")
    with pytest.raises(ShapeError, match="larger than the padded input"):
        npx.pooling(x, kernel=(5, 5))
    with pytest.raises(ShapeError, match="entries"):
        npx.pooling(x, kernel=(2, 2, 2))
    with pytest.raises(KilnError, match="kernel"):
        npx.pooling(x)
    with pytest.raises(KilnError, match="p_value"):
        npx.pooling(x, kernel=(2, 2), pool_type="lp", p_value=4)
    with pytest.raises(ShapeError, match="dimensions"):
        npx.pooling(knp.zeros((4, 4)), kernel=(2,))
