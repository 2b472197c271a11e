"""Every layer of gluon.nn.basic_layers: shapes, values against NumPy, parameters, modes."""

import numpy as onp
import pytest

from kiln import KilnError, autograd, init, np
from kiln.gluon import nn
from kiln.test_utils import assert_almost_equal, check_gradient

RNG = onp.random.default_rng(0)


def _x(*shape):
    return np.array(RNG.standard_normal(shape).astype(onp.float32))


def _count(block):
    return sum(int(onp.prod(p.shape)) for p in block.collect_params().values())


# ---- Dense ----------------------------------------------------------------------------------

def test_dense_values_and_deferred_shape():
    layer = nn.Dense(5)
    layer.initialize(init.Normal(0.5))
    assert layer.weight.shape == (5, -1)
    x = _x(3, 4)
    y = layer(x)
    assert y.shape == (3, 5) and layer.weight.shape == (5, 4)
    w, b = layer.weight.data().asnumpy(), layer.bias.data().asnumpy()
    assert_almost_equal(y, x.asnumpy() @ w.T + b, rtol=1e-5, atol=1e-6)
    assert _count(layer) == 5 * 4 + 5
    assert repr(layer) == "Dense(4 -> 5, linear)"


def test_dense_flatten_activation_and_no_bias():
    x = _x(2, 3, 4)
    flat = nn.Dense(6, activation="relu", use_bias=False)
    flat.initialize()
    y = flat(x)
    assert y.shape == (2, 6) and flat.weight.shape == (6, 12) and flat.bias is None
    assert_almost_equal(y, onp.maximum(x.asnumpy().reshape(2, 12) @
                                       flat.weight.data().asnumpy().T, 0), rtol=1e-5,
                        atol=1e-6)
    assert len(flat.collect_params()) == 1
    last = nn.Dense(6, flatten=False, in_units=4)
    last.initialize()
    assert last(x).shape == (2, 3, 6)
    assert repr(flat) == "Dense(12 -> 6, Activation(relu))"
    with pytest.raises(KilnError, match="unknown activation 'relux'"):
        nn.Dense(3, activation="relux")


# ---- activations, flatten, identity ---------------------------------------------------------

@pytest.mark.parametrize("name,ref", [
    ("relu", lambda v: onp.maximum(v, 0)),
    ("sigmoid", lambda v: 1 / (1 + onp.exp(-v))),
    ("tanh", onp.tanh),
    ("softrelu", lambda v: onp.log1p(onp.exp(v))),
    ("softsign", lambda v: v / (1 + abs(v))),
])
def test_activation(name, ref):
    x = _x(3, 4)
    assert_almost_equal(nn.Activation(name)(x), ref(x.asnumpy().astype(onp.float64)),
                        rtol=1e-5, atol=1e-6)


def test_activation_error_flatten_identity():
    with pytest.raises(KilnError, match="unknown activation 'gelu2'"):
        nn.Activation("gelu2")
    x = _x(2, 3, 4)
    assert nn.Flatten()(x).shape == (2, 12)
    assert nn.Identity()(x) is x


# ---- Dropout --------------------------------------------------------------------------------

def test_dropout_train_vs_predict():
    layer = nn.Dropout(0.4)
    x = np.ones((200, 100))
    assert_almost_equal(layer(x), x.asnumpy())               # prediction: identity
    np.random.seed(0)
    with autograd.record():
        y = layer(x).asnumpy()
    zero_frac = (y == 0).mean()
    assert abs(zero_frac - 0.4) < 0.02
    assert onp.allclose(y[y != 0], 1 / 0.6)                   # kept values are rescaled
    with autograd.record(train_mode=False):
        assert_almost_equal(layer(x), x.asnumpy())
    with autograd.train_mode():
        assert (layer(x).asnumpy() == 0).any()


def test_dropout_axes_and_rate_checks():
    np.random.seed(1)
    with autograd.train_mode():
        y = nn.Dropout(0.5, axes=(1,))(np.ones((50, 8))).asnumpy()
    assert (y == y[:, :1]).all()                              # one draw per row
    with pytest.raises(KilnError, match=r"rate must be in \[0, 1\]"):
        nn.Dropout(1.5)


# ---- normalisation -------------------------------------------------------------------------

def test_batchnorm_training_and_running_statistics():
    layer = nn.BatchNorm(momentum=0.8, epsilon=1e-5)
    layer.initialize()
    x = np.array(RNG.normal(3.0, 2.0, (64, 3, 2, 2)).astype(onp.float32))
    xs = x.asnumpy().astype(onp.float64)
    mean, var = xs.mean(axis=(0, 2, 3)), xs.var(axis=(0, 2, 3))

    y = layer(x)                                             # prediction: running stats (0, 1)
    assert_almost_equal(y, xs / onp.sqrt(1 + 1e-5), rtol=1e-5, atol=1e-5)
    assert_almost_equal(layer.running_mean.data(), onp.zeros(3))

    with autograd.record():                                  # training: batch statistics
        y = layer(x)
    norm = (xs - mean[None, :, None, None]) / onp.sqrt(var[None, :, None, None] + 1e-5)
    assert_almost_equal(y, norm, rtol=1e-4, atol=1e-4)
    assert_almost_equal(layer.running_mean.data(), 0.2 * mean, rtol=1e-5, atol=1e-6)
    assert_almost_equal(layer.running_var.data(), 0.8 + 0.2 * var, rtol=1e-5, atol=1e-6)

    rm, rv = 0.2 * mean, 0.8 + 0.2 * var
    y = layer(x)                                             # prediction uses them
    want = (xs - rm[None, :, None, None]) / onp.sqrt(rv[None, :, None, None] + 1e-5)
    assert_almost_equal(y, want, rtol=1e-4, atol=1e-4)
    assert_almost_equal(layer.running_mean.data(), rm, rtol=1e-5, atol=1e-6)   # unchanged
    assert layer.running_mean.grad_req == "null" and layer.gamma.grad_req == "write"


def test_batchnorm_global_stats_channel_last_and_count():
    layer = nn.BatchNorm(axis=-1, use_global_stats=True, in_channels=4)
    layer.initialize()
    x = _x(5, 4)
    with autograd.record():
        y = layer(x)
    assert_almost_equal(y, x.asnumpy() / onp.sqrt(1 + 1e-5), rtol=1e-5, atol=1e-6)
    assert_almost_equal(layer.running_mean.data(), onp.zeros(4))
    assert _count(layer) == 16
    assert "in_channels=4" in repr(layer)


def test_layernorm():
    layer = nn.LayerNorm()
    layer.initialize()
    x = _x(4, 6)
    xs = x.asnumpy().astype(onp.float64)
    want = (xs - xs.mean(-1, keepdims=True)) / onp.sqrt(xs.var(-1, keepdims=True) + 1e-5)
    assert_almost_equal(layer(x), want, rtol=1e-4, atol=1e-5)
    assert layer.gamma.shape == (6,) and layer.beta.shape == (6,)


def _ref_instance_norm(x, gamma, beta, eps=1e-5):
    m = x.mean(axis=(2, 3), keepdims=True)
    v = x.var(axis=(2, 3), keepdims=True)
    return (x - m) / onp.sqrt(v + eps) * gamma[None, :, None, None] + beta[None, :, None, None]


def test_instance_norm_values_and_gradient():
    layer = nn.InstanceNorm(scale=True)
    layer.initialize()
    x = _x(2, 3, 4, 5)
    layer(x)                                                 # learns the channel count
    layer.gamma.set_data(np.array([0.5, 1.0, 2.0]))
    layer.beta.set_data(np.array([0.0, 0.1, -0.2]))
    g, b = layer.gamma.data().asnumpy(), layer.beta.data().asnumpy()
    y = layer(x)
    assert_almost_equal(y, _ref_instance_norm(x.asnumpy().astype(onp.float64), g, b),
                        rtol=1e-4, atol=1e-5)
    assert layer.gamma.grad_req == "write"
    assert nn.InstanceNorm().gamma.grad_req == "null"        # scale=False by default (MXNet)
    check_gradient(lambda v: layer(v), [x], rtol=1e-3, atol=1e-5)


def test_group_norm_values_and_gradient():
    layer = nn.GroupNorm(num_groups=2)
    layer.initialize()
    x = _x(2, 4, 3, 3)
    xs = x.asnumpy().astype(onp.float64)
    y = layer(x)
    grouped = xs.reshape(2, 2, 2, 3, 3)
    m = grouped.mean(axis=(2, 3, 4), keepdims=True)
    v = grouped.var(axis=(2, 3, 4), keepdims=True)
    assert_almost_equal(y, ((grouped - m) / onp.sqrt(v + 1e-5)).reshape(xs.shape), rtol=1e-4,
                        atol=1e-5)
    assert layer.gamma.shape == (4,)
    check_gradient(lambda v: layer(v), [x], rtol=1e-3, atol=1e-5)
    bad = nn.GroupNorm(num_groups=3)
    bad.initialize()
    with pytest.raises(KilnError, match="4 channels cannot be split into 3 groups"):
        bad(x)


# ---- embedding -----------------------------------------------------------------------------

def test_embedding_rows_and_gradient():
    layer = nn.Embedding(10, 3)
    layer.initialize()
    idx = np.array([[1, 4], [4, 9]], dtype="int32")
    table = layer.weight.data().asnumpy()
    assert_almost_equal(layer(idx), table[[[1, 4], [4, 9]]])
    with autograd.record():
        out = layer(idx).sum()
    out.backward()
    grad = layer.weight.grad().asnumpy()
    counts = onp.zeros(10)
    onp.add.at(counts, [1, 4, 4, 9], 1)
    assert_almost_equal(grad, onp.repeat(counts[:, None], 3, axis=1))
    assert repr(layer) == "Embedding(10 -> 3, float32)"


# ---- lambdas -------------------------------------------------------------------------------

def test_lambda_and_hybrid_lambda():
    x = _x(2, 3)
    assert_almost_equal(nn.Lambda("tanh")(x), onp.tanh(x.asnumpy()), rtol=1e-6)
    assert_almost_equal(nn.Lambda(lambda a: a * 2)(x), 2 * x.asnumpy())
    assert_almost_equal(nn.HybridLambda("relu")(x), onp.maximum(x.asnumpy(), 0))
    seen = {}

    def fn(F, a):
        seen["F"] = F
        return F.np.exp(a)

    assert_almost_equal(nn.HybridLambda(fn)(x), onp.exp(x.asnumpy()), rtol=1e-6)
    import kiln.ndarray
    assert seen["F"] is kiln.ndarray
    with pytest.raises(KilnError, match="no kiln.np or kiln.npx function named 'tanhh'"):
        nn.Lambda("tanhh")
    assert repr(nn.Lambda("tanh")) == "Lambda(tanh)"


# ---- containers ----------------------------------------------------------------------------

def test_sequential_indexing_slicing_len():
    for cls in (nn.Sequential, nn.HybridSequential):
        net = cls()
        layers = [nn.Dense(4, in_units=3), nn.Dense(5, in_units=4), nn.Dense(2, in_units=5)]
        net.add(*layers)
        assert len(net) == 3 and net[0] is layers[0] and net[-1] is layers[2]
        assert list(net) == layers
        tail = net[1:]
        assert type(tail) is cls and len(tail) == 2 and tail[0] is layers[1]
        net.initialize()
        x = _x(6, 3)
        assert_almost_equal(net(x), tail(layers[0](x)))      # slices share the layers
        assert list(tail.collect_params()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
        assert _count(net) == 16 + 25 + 12


def test_sequential_repr_nested():
    net = nn.Sequential()
    inner = nn.HybridSequential()
    inner.add(nn.Dense(2, in_units=2), nn.Activation("relu"))
    net.add(inner, nn.Dropout(0.5))
    text = repr(net)
    assert text.splitlines()[0] == "Sequential("
    assert "(0): HybridSequential(" in text and "(1): Activation(relu)" in text
    assert "(1): Dropout(p = 0.5, axes=())" in text
