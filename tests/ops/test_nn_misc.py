"""The operators of kiln/ops/activations.py, norm.py and nn_extra.py: erf, leaky_relu
(leaky, elu, selu, gelu, prelu), sequence_mask, topk, group_norm, instance_norm, smooth_l1,
masked_softmax, arange_like and npx.reshape's MXNet codes, against NumPy/math references."""

import math

import numpy as onp
import pytest

from kiln import autograd, npx
from kiln import np as knp
from kiln.base import KilnError, ShapeError
from kiln.ops.activations import erf_numpy
from kiln.test_utils import assert_almost_equal, check_gradient


def rand(seed, *shape):
    return onp.random.default_rng(seed).standard_normal(shape)


def second_order(fn, inputs, wrt=0):
    probe = {}

    def first(*xs):
        with autograd.record():
            out = fn(*xs)
        if "p" not in probe:
            probe["p"] = onp.random.default_rng(98).standard_normal(out.shape)
        return autograd.grad(out, [xs[wrt]], head_grads=[knp.array(probe["p"])],
                             create_graph=True, retain_graph=True)[0]
    check_gradient(first, inputs, rtol=1e-3, atol=1e-6)


math_erf = onp.vectorize(math.erf)


# ----------------------------------------------------------------------------------------------
# erf
# ----------------------------------------------------------------------------------------------

def test_erf_accuracy():
    x = onp.concatenate([onp.linspace(-7, 7, 20001), [0.0, 1e-300, -1e-8, 2.0, -2.0, 6.0]])
    assert onp.abs(erf_numpy(x) - math_erf(x)).max() < 1e-13
    x32 = x.astype(onp.float32)
    err32 = onp.abs(erf_numpy(x32).astype(onp.float64) - math_erf(x32.astype(onp.float64)))
    assert erf_numpy(x32).dtype == onp.float32 and err32.max() < 1e-6
    special = erf_numpy(onp.array([onp.inf, -onp.inf, onp.nan, 30.0]))
    assert special[0] == 1 and special[1] == -1 and onp.isnan(special[2]) and special[3] == 1


def test_erf_op_and_gradient():
    x = rand(0, 3, 4) * 1.5
    assert_almost_equal(npx.erf(knp.array(x)), math_erf(x), rtol=1e-13, atol=1e-14)
    check_gradient(npx.erf, [x])
    second_order(npx.erf, [x])


# ----------------------------------------------------------------------------------------------
# leaky_relu
# ----------------------------------------------------------------------------------------------

ALPHA, LAMBDA = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
LEAKY = {
    "leaky": lambda x, s: onp.where(x > 0, x, s * x),
    "elu": lambda x, s: onp.where(x > 0, x, s * (onp.exp(x) - 1)),
    "selu": lambda x, s: LAMBDA * onp.where(x > 0, x, ALPHA * (onp.exp(x) - 1)),
    "gelu": lambda x, s: 0.5 * x * (1 + math_erf(x / math.sqrt(2))),
}


@pytest.mark.parametrize("act_type", sorted(LEAKY))
def test_leaky_relu_family(act_type):
    x = rand(1, 3, 4, 2) * 2
    x[onp.abs(x) < 1e-3] = 0.3
    y = npx.leaky_relu(knp.array(x), act_type=act_type, slope=0.3)
    assert_almost_equal(y, LEAKY[act_type](x, 0.3), rtol=1e-12, atol=1e-12)
    check_gradient(lambda x: npx.leaky_relu(x, act_type=act_type, slope=0.3), [x])
    y32 = npx.leaky_relu(knp.array(x.astype(onp.float32)), act_type=act_type)
    assert y32.dtype == onp.float32


def test_leaky_relu_default_slope_is_mxnet_s():
    y = npx.leaky_relu(knp.array(onp.array([-2.0, 3.0])))
    assert_almost_equal(y, onp.array([-0.5, 3.0]))


@pytest.mark.parametrize("act_type", ["elu", "selu", "gelu"])
def test_leaky_relu_second_order(act_type):
    x = rand(2, 3, 4)
    x[onp.abs(x) < 1e-2] = 0.4
    second_order(lambda x: npx.leaky_relu(x, act_type=act_type), [x])


@pytest.mark.parametrize("gamma_shape", [(3,), (1,)])
def test_prelu(gamma_shape):
    x = rand(3, 2, 3, 4)
    x[onp.abs(x) < 1e-3] = 0.3
    gamma = onp.random.default_rng(4).uniform(0.1, 0.5, gamma_shape)
    y = npx.leaky_relu(knp.array(x), knp.array(gamma), act_type="prelu")
    g = gamma.reshape(-1, 1) if gamma_shape == (3,) else gamma
    assert_almost_equal(y, onp.where(x > 0, x, g * x), rtol=1e-12)
    check_gradient(lambda x, gamma: npx.leaky_relu(x, gamma, act_type="prelu"), [x, gamma])


def test_leaky_relu_errors():
    with pytest.raises(KilnError, match="rrelu"):
        npx.leaky_relu(knp.ones(3), act_type="rrelu")
    with pytest.raises(KilnError, match="gamma"):
        npx.leaky_relu(knp.ones((2, 3)), act_type="prelu")
    with pytest.raises(ShapeError, match="gamma"):
        npx.leaky_relu(knp.ones((2, 3)), knp.ones(4), act_type="prelu")


# ----------------------------------------------------------------------------------------------
# sequence_mask
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [0, 1])
def test_sequence_mask(axis):
    x = rand(5, 5, 3, 2) if axis == 0 else rand(5, 3, 5, 2)
    lengths = onp.array([2, 5, 0], onp.float32)
    y = npx.sequence_mask(knp.array(x), knp.array(lengths), use_sequence_length=True,
                          value=-1.0, axis=axis)
    ref = x.copy()
    for b, n in enumerate(lengths.astype(int)):
        if axis == 0:
            ref[n:, b] = -1
        else:
            ref[b, n:] = -1
    assert_almost_equal(y, ref)
    check_gradient(lambda x: npx.sequence_mask(x, knp.array(lengths), use_sequence_length=True,
                                               value=3.0, axis=axis), [x])


def test_sequence_mask_without_lengths_is_identity():
    x = knp.array(rand(6, 4, 2))
    assert npx.sequence_mask(x) is x
    with pytest.raises(ShapeError, match="sequence_length"):
        npx.sequence_mask(x, knp.array(onp.ones(3)), use_sequence_length=True)


# ----------------------------------------------------------------------------------------------
# topk
# ----------------------------------------------------------------------------------------------

TIES = onp.array([[3, 1, 4, 1, 5, 9, 2, 6], [5, 3, 5, 8, 9, 7, 9, 3]], onp.float32)


def test_topk_return_types_and_ties():
    x = knp.array(TIES)
    idx = npx.topk(x, k=3)
    assert idx.dtype == onp.float32            # MXNet returns indices as float32
    assert_almost_equal(idx, onp.array([[5, 7, 4], [4, 6, 3]]))       # ties: lower index first
    assert_almost_equal(npx.topk(x, k=3, ret_typ="value"), onp.array([[9, 6, 5], [9, 9, 8]]))
    vals, idx2 = npx.topk(x, k=2, ret_typ="both", is_ascend=True, dtype="int32")
    assert_almost_equal(vals, onp.array([[1, 1], [3, 3]]))
    assert idx2.dtype == onp.int32 and (idx2.asnumpy() == onp.array([[1, 3], [1, 7]])).all()
    mask = npx.topk(x, k=3, ret_typ="mask")
    ref = onp.zeros_like(TIES)
    onp.put_along_axis(ref, onp.array([[5, 7, 4], [4, 6, 3]]), 1, axis=1)
    assert_almost_equal(mask, ref) and mask.dtype == onp.float32


def test_topk_axis_and_flat():
    x = rand(7, 4, 3, 5)
    y = npx.topk(knp.array(x), axis=0, k=2, ret_typ="value")
    assert_almost_equal(y, -onp.sort(-x, axis=0)[:2])
    y = npx.topk(knp.array(x), axis=None, k=4, ret_typ="value")
    assert_almost_equal(y, -onp.sort(-x.ravel())[:4])
    mask = npx.topk(knp.array(x), axis=None, k=4, ret_typ="mask")
    assert mask.shape == x.shape and float(mask.sum()) == 4


@pytest.mark.parametrize("axis", [1, None])
def test_topk_value_gradient(axis):
    x = rand(8, 3, 6)
    check_gradient(lambda x: npx.topk(x, axis=axis, k=3, ret_typ="value"), [x])
    check_gradient(lambda x: npx.topk(x, axis=axis, k=2, ret_typ="both")[0], [x])
    second_order(lambda x: knp.tanh(npx.topk(x, axis=axis, k=2, ret_typ="value")), [x])


def test_topk_errors():
    with pytest.raises(ShapeError, match="k=9"):
        npx.topk(knp.ones((2, 8)), k=9)
    with pytest.raises(KilnError, match="ret_typ"):
        npx.topk(knp.ones((2, 8)), ret_typ="values")


# ----------------------------------------------------------------------------------------------
# group_norm, instance_norm
# ----------------------------------------------------------------------------------------------

def ref_group_norm(x, gamma, beta, groups, eps):
    n, c = x.shape[:2]
    xr = x.reshape(n, groups, -1)
    xhat = ((xr - xr.mean(-1, keepdims=True)) / onp.sqrt(xr.var(-1, keepdims=True) + eps))
    xhat = xhat.reshape(x.shape)
    if gamma.shape == (groups,) and groups != c:
        gamma, beta = onp.repeat(gamma, c // groups), onp.repeat(beta, c // groups)
    shape = (1, c) + (1,) * (x.ndim - 2)
    return xhat * gamma.reshape(shape) + beta.reshape(shape)


@pytest.mark.parametrize("per", ["channel", "group"])
def test_group_norm(per):
    x = rand(9, 2, 6, 3, 2) * 2 + 1
    pshape = 6 if per == "channel" else 3
    gamma, beta = rand(10, pshape), rand(11, pshape)
    y, mean, std = npx.group_norm(knp.array(x), knp.array(gamma), knp.array(beta),
                                  num_groups=3, eps=1e-5, output_mean_var=True)
    assert_almost_equal(y, ref_group_norm(x, gamma, beta, 3, 1e-5), rtol=1e-10, atol=1e-12)
    assert mean.shape == std.shape == (2, 3)
    check_gradient(lambda x, g, b: npx.group_norm(x, g, b, num_groups=3), [x, gamma, beta])
    check_gradient(lambda x, g, b: list(npx.group_norm(x, g, b, num_groups=3,
                                                       output_mean_var=True)), [x, gamma, beta])


def test_group_norm_second_order():
    x, gamma, beta = rand(12, 2, 4, 3), rand(13, 4), rand(14, 4)
    second_order(lambda x, g, b: npx.group_norm(x, g, b, num_groups=2), [x, gamma, beta], 0)


def test_instance_norm():
    x = rand(15, 2, 3, 4, 2) * 3 - 1
    gamma, beta = rand(16, 3), rand(17, 3)
    y = npx.instance_norm(knp.array(x), knp.array(gamma), knp.array(beta), eps=1e-3)
    assert_almost_equal(y, ref_group_norm(x, gamma, beta, 3, 1e-3), rtol=1e-10, atol=1e-12)
    check_gradient(lambda x, g, b: npx.instance_norm(x, g, b), [x, gamma, beta])


def test_norm_errors():
    with pytest.raises(ShapeError, match="groups"):
        npx.group_norm(knp.ones((2, 6, 3)), knp.ones(6), knp.ones(6), num_groups=4)
    with pytest.raises(ShapeError, match="gamma"):
        npx.group_norm(knp.ones((2, 6, 3)), knp.ones(5), knp.ones(5), num_groups=3)
    with pytest.raises(ShapeError, match="spatial"):
        npx.instance_norm(knp.ones((2, 6)), knp.ones(6), knp.ones(6))


# ----------------------------------------------------------------------------------------------
# smooth_l1, masked_softmax, arange_like
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_smooth_l1(sigma):
    x = onp.array([-3.0, -0.6, -0.2, 0.05, 0.3, 0.9, 2.5])
    s2 = sigma * sigma
    ref = onp.where(onp.abs(x) < 1 / s2, 0.5 * s2 * x * x, onp.abs(x) - 0.5 / s2)
    assert_almost_equal(npx.smooth_l1(knp.array(x), scalar=sigma), ref, rtol=1e-12)
    check_gradient(lambda x: npx.smooth_l1(x, scalar=sigma), [x])


def test_masked_softmax():
    x = rand(18, 2, 3, 5)
    mask = onp.random.default_rng(19).random((2, 3, 5)) > 0.4
    mask[0, 1] = False                                   # a row with nothing left
    y = npx.masked_softmax(knp.array(x), knp.array(mask), axis=-1, temperature=2.0)
    e = onp.where(mask, onp.exp(x / 2.0), 0.0)
    total = e.sum(-1, keepdims=True)
    ref = e / onp.where(total > 0, total, 1)
    assert_almost_equal(y, ref, rtol=1e-12, atol=1e-15)
    assert (y.asnumpy()[0, 1] == 0).all()
    check_gradient(lambda x: npx.masked_softmax(x, knp.array(mask), temperature=2.0), [x])
    # a mask that broadcasts over the rows
    y = npx.masked_softmax(knp.array(x), knp.array(mask[:, :1]), axis=-1)
    assert y.shape == x.shape


def test_arange_like():
    x = knp.zeros((2, 3))
    assert_almost_equal(npx.arange_like(x), onp.arange(6.0).reshape(2, 3))
    assert_almost_equal(npx.arange_like(x, start=1.0, step=0.5, repeat=2),
                        (1.0 + 0.5 * (onp.arange(6) // 2)).reshape(2, 3))
    assert_almost_equal(npx.arange_like(x, axis=1), onp.arange(3.0))
    assert npx.arange_like(x).dtype == onp.float32


# ----------------------------------------------------------------------------------------------
# npx.reshape with MXNet's codes
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,codes,expected", [
    ((2, 3, 4), (0, -1), (2, 12)),
    ((2, 3, 4), (-2,), (2, 3, 4)),
    ((2, 3, 4), (-3, 4), (6, 4)),
    ((2, 3, 4), (2, -4, 1, 3, 4), (2, 1, 3, 4)),
    ((2, 3, 4), (-4, 1, 2, -2), (1, 2, 3, 4)),
    ((2, 3, 4, 5), (0, -3, -2), (2, 12, 5)),
    ((2, 3, 4), (-1, 0), (8, 3)),
    ((2, 3, 4, 5), (-4, -1, 2, -3, 5), (1, 2, 12, 5)),
    ((2, 3, 4), (4, 0, -1), (4, 3, 2)),
    ((6,), (-4, 2, -1), (2, 3)),
])
def test_reshape_codes(shape, codes, expected):
    # expectations checked against MXNet 1.9.1's nd.reshape
    x = onp.arange(onp.prod(shape), dtype=onp.float64).reshape(shape)
    y = npx.reshape(knp.array(x), codes)
    assert y.shape == expected
    assert_almost_equal(y, x.reshape(expected))


def test_reshape_reverse_and_gradient():
    x = knp.zeros((10, 5, 4))
    assert npx.reshape(x, (-1, 0)).shape == (40, 5)
    assert npx.reshape(x, (-1, 0), reverse=True).shape == (50, 4)
    check_gradient(lambda x: npx.reshape(x, (0, -3)), [rand(20, 2, 3, 4)])


def test_reshape_errors():
    x = knp.zeros((2, 3, 4))
    with pytest.raises(ShapeError, match="more than one"):
        npx.reshape(x, (-1, -1))
    with pytest.raises(ShapeError, match="-4"):
        npx.reshape(x, (-4, 5, -1, 0, 0))
    with pytest.raises(ShapeError):
        npx.reshape(x, (5, -1, 7))
