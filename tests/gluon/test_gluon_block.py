"""Block and Parameter features: deferred init, naming, initializers, files, hooks, summary."""

import math
import re
import warnings

import numpy as onp
import pytest

import kiln
from kiln import KilnError, autograd, init, np
from kiln.base import DeferredInitializationError
from kiln.gluon import Block, Constant, HybridBlock, Parameter, nn
from kiln.io.params import load_params, save_params
from kiln.test_utils import assert_almost_equal


class MLP(Block):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Dense(8, activation="relu")
        self.blocks = nn.Sequential()
        self.blocks.add(nn.Dense(6), nn.Dense(4))
        self.output = nn.Dense(2)

    def forward(self, x):
        return self.output(self.blocks(self.hidden(x)))


def _mlp():
    net = MLP()
    net.initialize()
    net(np.ones((2, 5)))
    return net


# ---- deferred initialization -----------------------------------------------------------------

def test_deferred_initialization():
    net = nn.HybridSequential()
    net.add(nn.Dense(4), nn.Dense(3))
    net.initialize()
    w = net[0].weight
    assert w.shape == (4, -1)
    with pytest.raises(DeferredInitializationError, match="deferred") as err:
        w.data()
    assert "0.weight" in str(err.value) and "first forward" in str(err.value)
    net(np.ones((2, 7)))
    assert w.shape == (4, 7) and w.data().shape == (4, 7)
    assert net[1].weight.data().shape == (3, 4)


def test_uninitialized_parameter_error():
    net = nn.Dense(3, in_units=2)
    with pytest.raises(DeferredInitializationError, match=r"not been initialized.*initialize\(\)"):
        net.weight.data()
    with pytest.raises(DeferredInitializationError):
        net(np.ones((1, 2)))


def test_parameter_without_deferred_init_needs_full_shape():
    p = Parameter("w", shape=(3, 0))
    with pytest.raises(DeferredInitializationError, match="does not allow deferred"):
        p.initialize()


# ---- names, counts, selection ------------------------------------------------------------------

def test_collect_params_names_and_counts():
    net = _mlp()
    params = net.collect_params()
    assert list(params) == ["hidden.weight", "hidden.bias", "blocks.0.weight", "blocks.0.bias",
                            "blocks.1.weight", "blocks.1.bias", "output.weight", "output.bias"]
    total = sum(int(onp.prod(p.shape)) for p in params.values())
    assert total == (5 * 8 + 8) + (8 * 6 + 6) + (6 * 4 + 4) + (4 * 2 + 2)
    assert list(net.collect_params(".*bias")) == [k for k in params if k.endswith("bias")]
    assert list(net.collect_params("blocks")) == [k for k in params if k.startswith("blocks")]
    assert list(params.select("hidden.weight|output.bias")) == ["hidden.weight", "output.bias"]
    assert net.blocks.collect_params().keys() == {"0.weight", "0.bias", "1.weight", "1.bias"}


def test_sequential_names_and_parameter_repr():
    net = nn.HybridSequential()
    net.add(nn.Dense(3, in_units=2), nn.Dense(1, in_units=3))
    assert list(net.collect_params()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert repr(net.collect_params()["0.weight"]) == \
        "Parameter 0.weight (shape=(3, 2), dtype=float32)"


def test_shared_parameters_counted_once():
    a = nn.Dense(3, in_units=3)
    b = nn.Dense(3, in_units=3)
    b.share_parameters(a.collect_params())
    net = nn.HybridSequential()
    net.add(a, b)
    net.initialize()
    assert a.weight is b.weight
    assert list(net.collect_params()) == ["0.weight", "0.bias"]


def test_mxnet1_params_get_and_constant():
    class Scale(HybridBlock):
        def __init__(self):
            super().__init__()
            self.scale = self.params.get("scale", shape=(3,), init=init.Constant(2.0))
            self.offset = self.params.get_constant("offset", np.array([1.0, 2.0, 3.0]))

        def hybrid_forward(self, F, x, scale, offset):
            return x * scale + offset

    block = Scale()
    block.initialize()
    assert set(block.collect_params()) == {"scale", "offset"}
    assert_almost_equal(block(np.ones(3)), onp.array([3.0, 4.0, 5.0]))
    assert block.collect_params()["offset"].grad_req == "null"
    c = Constant([1, 2])
    c.initialize()
    assert c.data().tolist() == [1, 2]


# ---- initialize and initializers --------------------------------------------------------------

def test_initialize_twice_warns_and_force_reinit_changes_values():
    net = nn.Dense(50, in_units=40)
    net.initialize(init.Uniform(0.1))
    before = net.weight.data().asnumpy()
    with pytest.warns(UserWarning, match="already initialized.*force_reinit=True"):
        net.initialize(init.Normal(1.0))
    assert_almost_equal(net.weight.data(), before)
    net.initialize(init.Normal(1.0), force_reinit=True)
    after = net.weight.data().asnumpy()
    assert abs(after).max() > 0.5 and not onp.allclose(after, before)
    assert_almost_equal(net.bias.data(), onp.zeros(50))    # biases stay zero


def _weights(initializer, shape=(200, 300)):
    net = nn.Dense(shape[0], in_units=shape[1])
    np.random.seed(0)
    net.initialize(initializer)
    return net.weight.data().asnumpy().astype(onp.float64)


def test_uniform_initializer_range():
    w = _weights(init.Uniform(0.3))
    assert w.min() >= -0.3 and w.max() <= 0.3
    assert w.min() < -0.29 and w.max() > 0.29               # fills the range
    assert abs(w.mean()) < 0.01 and w.std() == pytest.approx(0.3 / math.sqrt(3), rel=0.02)
    default = _weights(init.Uniform())
    assert abs(default).max() <= 0.07


def test_normal_initializer_std():
    w = _weights(init.Normal(0.2))
    assert w.std() == pytest.approx(0.2, rel=0.02) and abs(w.mean()) < 0.005


def test_xavier_initializer_scale():
    fan_out, fan_in = 200, 300
    bound = math.sqrt(3.0 / ((fan_in + fan_out) / 2))
    w = _weights(init.Xavier())
    assert abs(w).max() <= bound + 1e-6 and abs(w).max() > 0.98 * bound
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    g = _weights(init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    assert g.std() == pytest.approx(math.sqrt(2.0 / fan_in), rel=0.02)
    m = _weights(init.MSRAPrelu(factor_type="out", slope=0))
    assert m.std() == pytest.approx(math.sqrt(2.0 / fan_out), rel=0.02)
    assert _weights("xavier").std() == pytest.approx(bound / math.sqrt(3), rel=0.02)


def test_constant_zero_one_mixed_initializers():
    assert (_weights(init.Constant(0.25), (3, 4)) == 0.25).all()
    assert (_weights("zeros", (3, 4)) == 0).all() and (_weights("ones", (3, 4)) == 1).all()
    net = nn.HybridSequential()
    net.add(nn.Dense(3, in_units=2), nn.Dense(2, in_units=3))
    net.initialize(init.Mixed(["0\\..*", ".*"], [init.One(), init.Zero()]))
    assert (net[0].weight.data().asnumpy() == 1).all()
    assert (net[1].weight.data().asnumpy() == 0).all()
    with pytest.raises(KilnError, match="unknown initializer 'glorot'"):
        nn.Dense(2, in_units=2).initialize("glorot")


def test_layer_initializer_arguments_win():
    net = nn.Dense(3, in_units=4, weight_initializer=init.Constant(0.5),
                   bias_initializer=init.Constant(-1.0))
    net.initialize(init.Normal(1.0))
    assert (net.weight.data().asnumpy() == 0.5).all()
    assert (net.bias.data().asnumpy() == -1.0).all()
    bn = nn.BatchNorm(in_channels=2)
    bn.initialize(init.Normal(1.0))
    assert bn.gamma.data().tolist() == [1, 1] and bn.running_var.data().tolist() == [1, 1]


# ---- parameters files ---------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path):
    net = _mlp()
    path = str(tmp_path / "mlp.params")
    net.save_parameters(path)
    with open(path, "rb") as f:
        assert f.read(8) == (0x112).to_bytes(8, "little")      # MXNet's format, not pickle
    other = MLP()                       # uninitialized and deferred: loading sets everything
    other.load_parameters(path)
    x = np.array(RNG_X)
    assert_almost_equal(other(x), net(x), rtol=1e-6)
    for k, p in net.collect_params().items():
        assert_almost_equal(other.collect_params()[k].data(), p.data())


RNG_X = onp.random.default_rng(3).standard_normal((4, 5)).astype(onp.float32)


def test_load_keeps_parameter_arrays(tmp_path):
    net = _mlp()
    path = str(tmp_path / "a.params")
    net.save_parameters(path)
    target = _mlp()
    arr = target.hidden.weight.data()
    buf = arr._data
    target.load_parameters(path)
    assert target.hidden.weight.data() is arr and arr._data is buf
    assert_almost_equal(arr, net.hidden.weight.data())


def test_load_mismatch_errors_list_names(tmp_path):
    net = _mlp()
    path = str(tmp_path / "mlp.params")
    net.save_parameters(path)

    class Smaller(Block):
        def __init__(self):
            super().__init__()
            self.hidden = nn.Dense(8, activation="relu")
            self.extra = nn.Dense(3)

    with pytest.raises(KilnError) as err:
        Smaller().load_parameters(path)
    msg = str(err.value)
    assert "lacks parameters: 'extra.weight', 'extra.bias'" in msg
    assert "has extra parameters: 'blocks.0.weight'" in msg
    assert "allow_missing=True and ignore_extra=True" in msg
    with pytest.raises(KilnError, match="has extra parameters"):
        Smaller().load_parameters(path, allow_missing=True)
    small = Smaller()
    small.load_parameters(path, allow_missing=True, ignore_extra=True)
    assert_almost_equal(small.hidden.weight.data(), net.hidden.weight.data())


def test_load_shape_mismatch(tmp_path):
    net = nn.Dense(3, in_units=4)
    net.initialize()
    path = str(tmp_path / "d.params")
    net.save_parameters(path)
    wrong = nn.Dense(3, in_units=5)
    wrong.initialize()
    with pytest.raises(KilnError, match=r"shape \(3, 4\).*\(3, 5\)"):
        wrong.load_parameters(path)
    deferred = nn.Dense(2)                                    # (2, -1) cannot take (3, 4)
    with pytest.raises(KilnError, match=r"shape \(3, 4\).*\(2, -1\)"):
        deferred.load_parameters(path)


def test_load_export_style_names(tmp_path):
    net = nn.HybridSequential()
    net.add(nn.Dense(3, in_units=2), nn.BatchNorm(in_channels=3))
    net.initialize()
    arrays = {("aux:" if "running" in k else "arg:") + k: p.data()
              for k, p in net.collect_params().items()}
    path = str(tmp_path / "net-0000.params")
    save_params(path, arrays)
    assert set(load_params(path)) == set(arrays)
    fresh = nn.HybridSequential()
    fresh.add(nn.Dense(3, in_units=2), nn.BatchNorm(in_channels=3))
    fresh.load_parameters(path)
    assert_almost_equal(fresh[1].running_var.data(), net[1].running_var.data())
    assert_almost_equal(fresh[0].weight.data(), net[0].weight.data())
    # a mixture of prefixed and plain names is an error that says so
    mixed = dict(arrays)
    mixed["0.extra"] = mixed.pop("arg:0.bias")
    save_params(path, mixed)
    with pytest.raises(KilnError, match="'arg:'/'aux:' prefixes"):
        fresh.load_parameters(path)


def test_load_unnamed_file_error(tmp_path):
    path = str(tmp_path / "list.params")
    save_params(path, [np.ones(2)])
    with pytest.raises(KilnError, match="unnamed arrays"):
        nn.Dense(2, in_units=1).load_parameters(path)


# ---- hybrid blocks ---------------------------------------------------------------------------

def test_hybrid_block_rejects_plain_block_children():
    class Plain(Block):
        def forward(self, x):
            return x

    expected = ("Children of HybridBlock must also be HybridBlock, but .* has type .*Plain.*"
                "If you are using Sequential, please try HybridSequential instead.")
    with pytest.raises(ValueError, match=expected):
        nn.HybridSequential().add(Plain())
    with pytest.raises(ValueError, match="Children of HybridBlock must also be HybridBlock"):
        nn.HybridSequential().add(nn.Lambda("tanh"))

    class Holder(HybridBlock):
        def __init__(self):
            super().__init__()
            self.child = Plain()

    with pytest.raises(ValueError, match="please try HybridSequential instead"):
        Holder()
    seq = nn.Sequential()
    seq.add(Plain(), nn.Dense(2))                             # a Sequential takes both kinds


def test_hybrid_forward_gets_ndarray_module_and_params():
    seen = {}

    class Affine(HybridBlock):
        def __init__(self):
            super().__init__()
            self.weight = Parameter("weight", shape=(2, 3))
            self.bias = Parameter("bias", shape=(2,))

        def hybrid_forward(self, F, x, weight, bias):
            seen["F"], seen["weight"] = F, weight
            return F.np.dot(x, weight.T) + bias

    block = Affine()
    block.initialize(init.Normal(1.0))
    x = np.array(RNG_X[:, :3])
    out = block(x)
    assert seen["F"] is kiln.ndarray and seen["weight"] is block.weight.data()
    assert_almost_equal(out, x.asnumpy() @ block.weight.data().asnumpy().T +
                        block.bias.data().asnumpy(), rtol=1e-5, atol=1e-6)
    x.attach_grad()
    with autograd.record():
        y = block(x).sum()
    y.backward()
    assert_almost_equal(block.bias.grad(), onp.full(2, 4.0))
    assert_almost_equal(x.grad, onp.tile(block.weight.data().asnumpy().sum(0), (4, 1)),
                        rtol=1e-5)


def test_block_without_forward_and_without_super_init():
    class NoForward(HybridBlock):
        pass

    with pytest.raises(NotImplementedError, match="forward"):
        NoForward()(np.ones(2))

    class Forgot(Block):
        def __init__(self):
            self.dense = nn.Dense(2)

    with pytest.raises(KilnError, match=r"super\(\).__init__\(\)"):
        Forgot()


# ---- hooks and summary -------------------------------------------------------------------------

def test_forward_hooks():
    net = nn.Sequential()
    net.add(nn.Dense(2, in_units=3))
    net.initialize()
    log = []
    post = net[0].register_forward_hook(lambda b, args, out: log.append(("post", out.shape)))
    with net[0].register_forward_pre_hook(lambda b, args: log.append(("pre", args[0].shape))):
        net(np.ones((4, 3)))
    post.detach()
    net(np.ones((4, 3)))
    assert log == [("pre", (4, 3)), ("post", (4, 2))]


def test_summary_output(capsys):
    net = nn.HybridSequential()
    net.add(nn.Dense(8, activation="relu"), nn.BatchNorm(), nn.Dense(3))
    net.initialize()
    net.summary(np.ones((2, 5)))
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert re.search(r"Layer \(type\)\s+Output Shape\s+Param #", out)
    assert re.search(r"Input\s+\(2, 5\)\s+0$", out, re.M)
    assert re.search(r"Dense-1\s+\(2, 8\)\s+48$", out, re.M)
    assert re.search(r"BatchNorm-1\s+\(2, 8\)\s+32$", out, re.M)
    assert re.search(r"Dense-2\s+\(2, 3\)\s+27$", out, re.M)
    assert "   Total params: 107" in lines
    assert "   Trainable params: 91" in lines
    assert "   Non-trainable params: 16" in lines
    assert "Unique parameters in model: 107" in lines


# ---- misc -----------------------------------------------------------------------------------

def test_zero_grad_setattr_cast_apply():
    net = _mlp()
    with autograd.record():
        out = net(np.ones((2, 5))).sum()
    out.backward()
    assert abs(net.output.bias.grad().asnumpy()).sum() > 0
    net.zero_grad()
    assert (net.output.bias.grad().asnumpy() == 0).all()
    net.collect_params(".*bias").setattr("lr_mult", 0.5)
    assert net.hidden.bias.lr_mult == 0.5 and net.hidden.weight.lr_mult == 1.0
    net.cast("float64")
    assert net(np.ones((1, 5), dtype="float64")).dtype == onp.float64
    names = []
    net.apply(lambda b: names.append(type(b).__name__))
    assert names[-1] == "MLP" and names.count("Dense") == 4


def test_grad_req_null_has_no_gradient():
    net = nn.Dense(2, in_units=2)
    net.initialize()
    net.weight.grad_req = "null"
    with pytest.raises(KilnError, match="has no gradient"):
        net.weight.grad()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.bias.grad()
