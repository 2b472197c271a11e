"""The operators of kiln/ops/nn.py: fully_connected, softmax/log_softmax, activation, dropout,
batch_norm, layer_norm, embedding, one_hot, pick and batch_flatten, against NumPy references
written here, with finite-difference gradients."""

import numpy as onp
import pytest

from kiln import autograd, npx
from kiln import np as knp
from kiln.base import KilnError, ShapeError
from kiln.test_utils import assert_almost_equal, check_gradient


def rand(seed, *shape):
    return onp.random.default_rng(seed).standard_normal(shape)


def second_order(fn, inputs, wrt=0):
    """check_gradient of x -> d<fn(x), probe>/d inputs[wrt], recorded with create_graph."""
    probe = {}

    def first(*xs):
        with autograd.record():
            out = fn(*xs)
        if "p" not in probe:
            probe["p"] = onp.random.default_rng(99).standard_normal(out.shape)
        return autograd.grad(out, [xs[wrt]], head_grads=[knp.array(probe["p"])],
                             create_graph=True, retain_graph=True)[0]
    check_gradient(first, inputs, rtol=1e-3, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# fully_connected
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,flatten", [((4, 6), True), ((3, 2, 3), True),
                                           ((2, 3, 2, 2), True), ((2, 3, 5), False),
                                           ((5,), False)])
def test_fully_connected_forward(shape, flatten):
    x = rand(0, *shape)
    in_units = int(onp.prod(shape[1:])) if flatten else shape[-1]
    w, b = rand(1, 4, in_units), rand(2, 4)
    y = npx.fully_connected(knp.array(x), knp.array(w), knp.array(b), num_hidden=4,
                            flatten=flatten)
    x2 = x.reshape(shape[0], -1) if flatten else x
    assert_almost_equal(y, x2 @ w.T + b, rtol=1e-12)
    y = npx.fully_connected(knp.array(x), knp.array(w), None, num_hidden=4, flatten=flatten,
                            no_bias=True)
    assert_almost_equal(y, x2 @ w.T, rtol=1e-12)


@pytest.mark.parametrize("shape,flatten", [((3, 2, 3), True), ((2, 3, 5), False)])
def test_fully_connected_gradients(shape, flatten):
    x = rand(3, *shape)
    in_units = int(onp.prod(shape[1:])) if flatten else shape[-1]
    w, b = rand(4, 4, in_units), rand(5, 4)
    check_gradient(lambda x, w, b: npx.fully_connected(x, w, b, num_hidden=4, flatten=flatten),
                   [x, w, b])
    check_gradient(lambda x, w: npx.fully_connected(x, w, num_hidden=4, flatten=flatten,
                                                    no_bias=True), [x, w])


def test_fully_connected_second_order():
    x, w, b = rand(6, 3, 4), rand(7, 5, 4) * 0.5, rand(8, 5)

    def fn(x, w, b):
        return knp.tanh(npx.fully_connected(x, w, b, num_hidden=5))
    second_order(fn, [x, w, b], 0)
    second_order(fn, [x, w, b], 1)


def test_fully_connected_shape_errors():
    from kiln.ops.nn import FullyConnected
    from kiln.ops.registry import Aval
    with pytest.raises(ShapeError, match="expected"):
        FullyConnected.infer(Aval((2, 3), onp.float32), Aval((4, 5), onp.float32),
                             num_hidden=4, no_bias=True, flatten=True)


# ----------------------------------------------------------------------------------------------
# softmax, log_softmax
# ----------------------------------------------------------------------------------------------

def np_softmax(x, axis):
    e = onp.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("temperature", [None, 2.5])
def test_softmax_and_log_softmax(axis, temperature):
    x = rand(9, 2, 3, 4) * 3
    t = 1.0 if temperature is None else temperature
    y = npx.softmax(knp.array(x), axis=axis, temperature=temperature)
    assert_almost_equal(y, np_softmax(x / t, axis), rtol=1e-12)
    ly = npx.log_softmax(knp.array(x), axis=axis, temperature=temperature)
    assert_almost_equal(ly, onp.log(np_softmax(x / t, axis)), rtol=1e-12, atol=1e-12)
    check_gradient(lambda x: npx.softmax(x, axis=axis, temperature=temperature), [x])
    check_gradient(lambda x: npx.log_softmax(x, axis=axis, temperature=temperature), [x])


def test_softmax_is_stable_and_float32():
    x = knp.array(onp.array([[1000.0, 1001.0, -1000.0]], onp.float32))
    y = npx.softmax(x)
    assert y.dtype == onp.float32 and onp.isfinite(y.asnumpy()).all()
    assert_almost_equal(y.sum(), 1.0)
    assert npx.softmax(knp.array(onp.arange(3))).dtype == onp.float32


def test_softmax_second_order():
    second_order(lambda x: npx.softmax(x, axis=-1), [rand(10, 3, 4)])
    second_order(lambda x: npx.log_softmax(x, axis=0, temperature=2.0), [rand(11, 3, 4)])


def test_softmax_rejects_length():
    with pytest.raises(KilnError, match="masked_softmax"):
        npx.softmax(knp.ones((2, 3)), length=knp.ones(2), use_length=True)


# ----------------------------------------------------------------------------------------------
# activation
# ----------------------------------------------------------------------------------------------

def softplus(x):
    return onp.logaddexp(x, 0)


ACTIVATIONS = {
    "relu": lambda x: onp.maximum(x, 0),
    "sigmoid": lambda x: 1 / (1 + onp.exp(-x)),
    "tanh": onp.tanh,
    "softrelu": softplus,
    "softsign": lambda x: x / (1 + onp.abs(x)),
    "log_sigmoid": lambda x: -softplus(-x),
    "mish": lambda x: x * onp.tanh(softplus(x)),
}


@pytest.mark.parametrize("act_type", sorted(ACTIVATIONS))
def test_activation(act_type):
    x = rand(12, 3, 5) * 2
    x[onp.abs(x) < 1e-3] = 0.5                 # keep away from relu's kink
    y = npx.activation(knp.array(x), act_type=act_type)
    assert_almost_equal(y, ACTIVATIONS[act_type](x), rtol=1e-12, atol=1e-12)
    check_gradient(lambda x: npx.activation(x, act_type=act_type), [x])


def test_activation_unknown():
    with pytest.raises(KilnError, match="act_type"):
        npx.activation(knp.ones(3), act_type="swish2")


# ----------------------------------------------------------------------------------------------
# dropout
# ----------------------------------------------------------------------------------------------

def test_dropout_is_identity_when_predicting():
    x = knp.array(rand(13, 4, 5))
    assert npx.dropout(x, p=0.5) is x                  # not recording: predict mode
    with autograd.record(train_mode=False):
        assert_almost_equal(npx.dropout(x, p=0.5), x)
    with autograd.record(), autograd.predict_mode():
        assert_almost_equal(npx.dropout(x, p=0.5), x)


def test_dropout_in_training_masks_and_scales():
    x = knp.array(onp.ones((200, 50), onp.float32))
    for ctx in (autograd.record, autograd.train_mode):
        with ctx():
            y = npx.dropout(x, p=0.3).asnumpy()
        kept = y != 0
        assert_almost_equal(y[kept], onp.full(kept.sum(), 1 / 0.7), rtol=1e-6)
        assert abs(kept.mean() - 0.7) < 0.02
        assert y.dtype == onp.float32


def test_dropout_gradient_uses_the_same_mask():
    x = knp.array(rand(14, 30, 20))
    x.attach_grad()
    with autograd.record():
        y = npx.dropout(x, p=0.4)
    y.backward()
    mask = (y.asnumpy() != 0) / 0.6
    assert_almost_equal(x.grad, mask, rtol=1e-12)


def test_dropout_reproducible_under_seed():
    x = knp.array(onp.ones((10, 10)))
    with autograd.train_mode():
        npx.seed(42)
        a = npx.dropout(x, p=0.5).asnumpy()
        npx.seed(42)
        b = npx.dropout(x, p=0.5).asnumpy()
        c = npx.dropout(x, p=0.5).asnumpy()
    assert (a == b).all() and not (a == c).all()


def test_dropout_axes_share_the_mask():
    x = knp.array(onp.ones((6, 7, 8)))
    with autograd.train_mode():
        y = npx.dropout(x, p=0.5, axes=(1,)).asnumpy()
    assert (y == y[:, :1, :]).all()
    with autograd.train_mode():
        y = npx.dropout(x, p=0.5, axes=(-1,)).asnumpy()
    assert (y == y[:, :, :1]).all()


def test_dropout_edge_cases():
    x = knp.array(rand(15, 3, 4))
    with autograd.train_mode():
        assert npx.dropout(x, p=0.0) is x
        assert (npx.dropout(x, p=1.0).asnumpy() == 0).all()
        ints = npx.dropout(knp.array(onp.ones((4, 4), onp.int32)), p=0.5)
        assert ints.dtype == onp.float32
    y = npx.dropout(knp.array(onp.ones((50, 50))), p=0.5, mode="always").asnumpy()
    assert 0.3 < (y == 0).mean() < 0.7
    with pytest.raises(KilnError, match="p must be"):
        npx.dropout(x, p=1.5)


# ----------------------------------------------------------------------------------------------
# batch_norm
# ----------------------------------------------------------------------------------------------

def bn_params(c, seed=16):
    rng = onp.random.default_rng(seed)
    return (rng.uniform(0.5, 1.5, c), rng.standard_normal(c), rng.standard_normal(c) * 0.1,
            rng.uniform(0.5, 2.0, c))


@pytest.mark.parametrize("axis", [1, -1, 2])
def test_batch_norm_training_normalises_with_batch_stats(axis):
    x = rand(17, 4, 3, 5) * 2 + 1
    ax = axis % 3
    c = x.shape[ax]
    gamma, beta, rmean, rvar = bn_params(c)
    rm, rv = knp.array(rmean.copy()), knp.array(rvar.copy())
    with autograd.record():
        y = npx.batch_norm(knp.array(x), knp.array(gamma), knp.array(beta), rm, rv, eps=1e-3,
                           momentum=0.8, fix_gamma=False, axis=axis)
    axes = tuple(i for i in range(3) if i != ax)
    shape = [1, 1, 1]
    shape[ax] = c
    mean, var = x.mean(axis=axes), x.var(axis=axes)          # biased variance
    ref = (x - mean.reshape(shape)) / onp.sqrt(var.reshape(shape) + 1e-3) * gamma.reshape(
        shape) + beta.reshape(shape)
    assert_almost_equal(y, ref, rtol=1e-10, atol=1e-10)
    assert_almost_equal(rm, 0.8 * rmean + 0.2 * mean, rtol=1e-12)
    assert_almost_equal(rv, 0.8 * rvar + 0.2 * var, rtol=1e-12)


def test_batch_norm_inference_uses_running_stats_and_keeps_them():
    x = rand(18, 4, 3, 2)
    gamma, beta, rmean, rvar = bn_params(3)
    rm, rv = knp.array(rmean.copy()), knp.array(rvar.copy())
    y = npx.batch_norm(knp.array(x), knp.array(gamma), knp.array(beta), rm, rv, eps=1e-5,
                       fix_gamma=False)
    s = (1, 3, 1)
    ref = (x - rmean.reshape(s)) / onp.sqrt(rvar.reshape(s) + 1e-5) * gamma.reshape(
        s) + beta.reshape(s)
    assert_almost_equal(y, ref, rtol=1e-12)
    assert_almost_equal(rm, rmean) and assert_almost_equal(rv, rvar)
    # use_global_stats: running statistics even in training, and no update
    with autograd.record():
        y2 = npx.batch_norm(knp.array(x), knp.array(gamma), knp.array(beta), rm, rv, eps=1e-5,
                            fix_gamma=False, use_global_stats=True)
    assert_almost_equal(y2, ref, rtol=1e-12)
    assert_almost_equal(rm, rmean)


def test_batch_norm_fix_gamma_ignores_gamma():
    x = rand(19, 5, 2)
    gamma, beta, rmean, rvar = bn_params(2)
    g = knp.array(gamma * 7)
    g.attach_grad()
    xk = knp.array(x)
    with autograd.record():
        y = npx.batch_norm(xk, g, knp.array(beta), knp.array(rmean), knp.array(rvar))
    ref = (x - x.mean(0)) / onp.sqrt(x.var(0) + 1e-3) + beta
    assert_almost_equal(y, ref, rtol=1e-10)
    y.backward()
    assert (g.grad.asnumpy() == 0).all()


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("fix_gamma", [True, False])
def test_batch_norm_gradients(training, fix_gamma):
    x = rand(20, 4, 3, 2)
    gamma, beta, rmean, rvar = bn_params(3)

    def fn(x, gamma, beta):
        with autograd.train_mode() if training else autograd.predict_mode():
            return npx.batch_norm(x, gamma, beta, knp.array(rmean.copy()),
                                  knp.array(rvar.copy()), fix_gamma=fix_gamma)
    check_gradient(fn, [x, gamma, beta])


def test_batch_norm_statistics_outputs_are_differentiable():
    x = rand(21, 5, 3)
    gamma, beta, rmean, rvar = bn_params(3)

    def fn(x, gamma, beta):
        with autograd.train_mode():
            return list(npx.batch_norm(x, gamma, beta, knp.array(rmean.copy()),
                                       knp.array(rvar.copy()), fix_gamma=False,
                                       output_mean_var=True))
    check_gradient(fn, [x, gamma, beta])


def test_batch_norm_second_order():
    x = rand(22, 4, 3, 2)
    gamma, beta, rmean, rvar = bn_params(3)

    def fn(x, gamma, beta):
        with autograd.train_mode():
            return npx.batch_norm(x, gamma, beta, knp.array(rmean.copy()),
                                  knp.array(rvar.copy()), fix_gamma=False)
    second_order(fn, [x, gamma, beta], 0)
    second_order(fn, [x, gamma, beta], 1)


# ----------------------------------------------------------------------------------------------
# layer_norm
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [-1, 1])
def test_layer_norm(axis):
    x = rand(23, 2, 3, 4) * 2 + 1
    c = x.shape[axis]
    gamma, beta = rand(24, c), rand(25, c)
    y, mean, std = npx.layer_norm(knp.array(x), knp.array(gamma), knp.array(beta), axis=axis,
                                  eps=1e-5, output_mean_var=True)
    m = x.mean(axis=axis, keepdims=True)
    s = onp.sqrt(x.var(axis=axis, keepdims=True) + 1e-5)
    shape = [1, 1, 1]
    shape[axis] = c
    assert_almost_equal(y, (x - m) / s * gamma.reshape(shape) + beta.reshape(shape),
                        rtol=1e-10, atol=1e-12)
    assert_almost_equal(mean, m, rtol=1e-12) and assert_almost_equal(std, s, rtol=1e-12)
    check_gradient(lambda x, g, b: npx.layer_norm(x, g, b, axis=axis), [x, gamma, beta])
    check_gradient(lambda x, g, b: list(npx.layer_norm(x, g, b, axis=axis,
                                                       output_mean_var=True)), [x, gamma, beta])


def test_layer_norm_second_order():
    x, gamma, beta = rand(26, 3, 5), rand(27, 5), rand(28, 5)
    second_order(lambda x, g, b: npx.layer_norm(x, g, b), [x, gamma, beta], 0)
    second_order(lambda x, g, b: npx.layer_norm(x, g, b), [x, gamma, beta], 1)


# ----------------------------------------------------------------------------------------------
# embedding, one_hot, pick, batch_flatten
# ----------------------------------------------------------------------------------------------

def test_embedding_forward_and_repeated_index_gradient():
    w = rand(29, 5, 3)
    idx = onp.array([[0, 2, 2], [4, 2, 7]], onp.float32)   # 7 is clipped to 4, like MXNet
    wk = knp.array(w)
    wk.attach_grad()
    with autograd.record():
        y = npx.embedding(knp.array(idx), wk, input_dim=5, output_dim=3)
    assert_almost_equal(y, w[onp.clip(idx.astype(int), 0, 4)])
    g = rand(30, 2, 3, 3)
    y.backward(knp.array(g))
    expected = onp.zeros_like(w)
    for (i, j), k in onp.ndenumerate(onp.clip(idx.astype(int), 0, 4)):
        expected[k] += g[i, j]
    assert_almost_equal(wk.grad, expected, rtol=1e-12)
    check_gradient(lambda w: npx.embedding(knp.array(idx), w), [w])


def test_one_hot():
    idx = knp.array(onp.array([0, 2, 3, -1, 5]))
    y = npx.one_hot(idx, 4)
    ref = onp.zeros((5, 4), onp.float32)
    ref[0, 0] = ref[1, 2] = ref[2, 3] = 1
    assert_almost_equal(y, ref) and y.dtype == onp.float32
    y = npx.one_hot(knp.array(onp.array([[1], [0]])), 3, on_value=5, off_value=-1,
                    dtype="int32")
    assert y.dtype == onp.int32 and y.shape == (2, 1, 3)
    assert (y.asnumpy()[:, 0] == onp.array([[-1, 5, -1], [5, -1, -1]])).all()


@pytest.mark.parametrize("axis,keepdims", [(-1, False), (0, False), (1, True)])
@pytest.mark.parametrize("mode", ["clip", "wrap"])
def test_pick(axis, keepdims, mode):
    x = rand(31, 3, 4, 5)
    ax = axis % 3
    idx_shape = tuple(d for i, d in enumerate(x.shape) if i != ax)
    idx = onp.random.default_rng(32).integers(-2, x.shape[ax] + 2, idx_shape)
    y = npx.pick(knp.array(x), knp.array(idx.astype(onp.float32)), axis=axis, mode=mode,
                 keepdims=keepdims)
    fixed = onp.clip(idx, 0, x.shape[ax] - 1) if mode == "clip" else idx % x.shape[ax]
    ref = onp.take_along_axis(x, onp.expand_dims(fixed, ax), axis=ax)
    assert_almost_equal(y, ref if keepdims else ref.squeeze(ax))
    check_gradient(lambda x: npx.pick(x, knp.array(idx), axis=axis, mode=mode,
                                      keepdims=keepdims), [x])


def test_pick_accepts_index_with_kept_axis_and_second_order():
    x = rand(33, 3, 4)
    idx = onp.array([[1], [3], [0]])
    y = npx.pick(knp.array(x), knp.array(idx), axis=1, keepdims=True)
    assert_almost_equal(y, onp.take_along_axis(x, idx, axis=1))
    second_order(lambda x: knp.tanh(npx.pick(x, knp.array(idx[:, 0]), axis=1)) * 1.0, [x])
    with pytest.raises(KilnError, match="mode"):
        npx.pick(knp.array(x), knp.array(idx), mode="raise")


def test_batch_flatten():
    x = rand(34, 2, 3, 4)
    assert_almost_equal(npx.batch_flatten(knp.array(x)), x.reshape(2, 12))
