"""gluon.Trainer: rescaling by batch size, in-place updates, stale gradients, states files."""

import time

import numpy as onp
import pytest

from kiln import KilnError, autograd, gluon, np, optimizer
from kiln.gluon import nn
from kiln.gluon.trainer import StaleGradientError
from kiln.test_utils import assert_almost_equal


def _net(seed=0):
    np.random.seed(seed)
    net = nn.HybridSequential()
    net.add(nn.Dense(4, activation="tanh", in_units=3), nn.Dense(2, in_units=4))
    net.initialize()
    return net


def _batch(seed=1, n=6):
    rng = onp.random.default_rng(seed)
    return np.array(rng.standard_normal((n, 3)).astype(onp.float32)), \
        np.array(rng.standard_normal((n, 2)).astype(onp.float32))


def _backward(net, x, y):
    with autograd.record():
        loss = gluon.loss.L2Loss()(net(x), y)
    loss.backward()
    return loss


def _snapshot(params):
    return {k: p.data().asnumpy() for k, p in params.items()}


def test_step_is_sgd_with_grad_divided_by_batch_size():
    net = _net()
    params = net.collect_params()
    trainer = gluon.Trainer(params, "sgd", {"learning_rate": 0.5})
    x, y = _batch()
    _backward(net, x, y)
    before = _snapshot(params)
    grads = {k: p.grad().asnumpy() for k, p in params.items()}
    arrays = {k: (p.data(), p.data()._data) for k, p in params.items()}
    trainer.step(6)
    for k, p in params.items():
        assert_almost_equal(p.data(), before[k] - 0.5 * grads[k] / 6, rtol=1e-5, atol=1e-7)
        # same array object and same buffer: compiled graphs keep seeing the parameter
        assert p.data() is arrays[k][0] and p.data()._data is arrays[k][1]


def test_rescale_grad_option_is_combined_with_batch_size():
    net = _net()
    params = net.collect_params()
    trainer = gluon.Trainer(params, "sgd", {"learning_rate": 1.0, "rescale_grad": 3.0})
    x, y = _batch()
    _backward(net, x, y)
    before = _snapshot(params)
    g = params["0.weight"].grad().asnumpy()
    trainer.step(2)
    assert_almost_equal(params["0.weight"].data(), before["0.weight"] - 1.5 * g, rtol=1e-5,
                        atol=1e-7)
    assert trainer.optimizer.rescale_grad == pytest.approx(1.5)


def test_update_after_allreduce_equals_step():
    x, y = _batch()
    results = []
    for split in (False, True):
        net = _net()
        trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.01})
        for _ in range(3):
            _backward(net, x, y)
            if split:
                trainer.allreduce_grads()
                trainer.update(6)
            else:
                trainer.step(6)
        results.append(_snapshot(net.collect_params()))
    for k in results[0]:
        assert_almost_equal(results[1][k], results[0][k], rtol=0, atol=0)


def test_training_reduces_loss():
    net = _net()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.2,
                                                          "momentum": 0.9})
    x, _ = _batch(n=16)
    y = x[:, :2] * 0.5 + 0.1                 # learnable: a linear function of x
    first = float(_backward(net, x, y).mean())
    trainer.step(16)
    for _ in range(30):
        last = float(_backward(net, x, y).mean())
        trainer.step(16)
    assert last < 0.5 * first


def test_stale_gradient_raises_and_ignore_skips():
    net = _net()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    x, y = _batch()
    _backward(net, x, y)
    trainer.step(6)
    with pytest.raises(StaleGradientError, match=r"'0.weight'.*ignore_stale_grad=True"):
        trainer.step(6)                      # no backward since the last step
    before = _snapshot(net.collect_params())
    trainer.step(6, ignore_stale_grad=True)  # stale parameters are skipped, not updated
    after = _snapshot(net.collect_params())
    for k in before:
        assert_almost_equal(after[k], before[k], rtol=0, atol=0)


def test_partially_used_model():
    class TwoHeads(gluon.HybridBlock):
        def __init__(self):
            super().__init__()
            self.a = nn.Dense(2, in_units=3)
            self.b = nn.Dense(2, in_units=3)

        def forward(self, x):
            return self.a(x)                 # b is never used

    net = TwoHeads()
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "sgd")
    x, y = _batch()
    _backward(net, x, y)
    with pytest.raises(KilnError, match="'b.weight'"):
        trainer.step(6)
    net.b.weight.data()                      # still there
    b_before = net.b.weight.data().asnumpy()
    a_before = net.a.weight.data().asnumpy()
    _backward(net, x, y)
    trainer.step(6, ignore_stale_grad=True)
    assert_almost_equal(net.b.weight.data(), b_before, rtol=0, atol=0)
    assert not onp.allclose(net.a.weight.data().asnumpy(), a_before)
    assert isinstance(StaleGradientError("x"), UserWarning)      # what MXNet raises


def test_grad_req_null_parameters_are_skipped():
    np.random.seed(0)
    net = nn.HybridSequential()
    net.add(nn.Dense(4, in_units=3), nn.BatchNorm(in_channels=4), nn.Dense(2, in_units=4))
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    x, y = _batch()
    _backward(net, x, y)
    trainer.step(6)                          # running_mean/var (grad_req null): no error
    net[0].weight.grad_req = "null"
    w = net[0].weight.data().asnumpy()
    _backward(net, x, y)
    trainer.step(6)
    assert_almost_equal(net[0].weight.data(), w, rtol=0, atol=0)


def test_lr_mult_zero_freezes_parameter():
    net = _net()
    net[0].weight.lr_mult = 0.0
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    w = net[0].weight.data().asnumpy()
    _backward(net, *_batch())
    trainer.step(6)
    assert_almost_equal(net[0].weight.data(), w, rtol=0, atol=0)


def test_learning_rate_property():
    net = _net()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    assert trainer.learning_rate == pytest.approx(0.1)
    trainer.set_learning_rate(0.02)
    assert trainer.learning_rate == pytest.approx(0.02)
    assert trainer.optimizer.lr == pytest.approx(0.02)


def test_params_as_list_and_optimizer_instance():
    net = _net()
    opt = optimizer.SGD(learning_rate=0.1)
    trainer = gluon.Trainer(list(net.collect_params().values()), opt)
    assert trainer.optimizer is opt
    _backward(net, *_batch())
    trainer.step(6)
    with pytest.raises(KilnError, match="optimizer_params must be None"):
        gluon.Trainer(net.collect_params(), opt, {"learning_rate": 0.1})


def test_constructor_errors():
    net = _net()
    with pytest.raises(KilnError, match="'oops' is a str"):
        gluon.Trainer({"oops": "not a parameter"}, "sgd")
    p = net[0].weight
    with pytest.raises(KilnError, match="appears twice"):
        gluon.Trainer([p, p], "sgd")
    with pytest.raises(KilnError, match="not a single Parameter"):
        gluon.Trainer(p, "sgd")
    with pytest.raises(KilnError, match="batch_size must be a positive"):
        gluon.Trainer(net.collect_params(), "sgd").step(0)


def test_deferred_parameters_initialise_before_first_step():
    net = nn.HybridSequential()
    net.add(nn.Dense(3), nn.Dense(2))
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "adam")    # shapes not known yet
    x, y = _batch()
    _backward(net, x, y)
    trainer.step(6)
    assert net[0].weight.data().shape == (3, 3)


def test_save_and_load_states(tmp_path):
    x, y = _batch()
    net = _net()
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.01})
    for _ in range(2):
        _backward(net, x, y)
        trainer.step(6)
    net.save_parameters(str(tmp_path / "net.params"))
    trainer.save_states(str(tmp_path / "trainer.states"))
    raw = (tmp_path / "trainer.states").read_bytes()
    assert raw[:8] == (0x112).to_bytes(8, "little") and b"pickle" not in raw
    _backward(net, x, y)
    trainer.step(6)
    expected = _snapshot(net.collect_params())

    net2 = _net(seed=5)
    net2.load_parameters(str(tmp_path / "net.params"))
    trainer2 = gluon.Trainer(net2.collect_params(), "adam", {"learning_rate": 0.01})
    trainer2.load_states(str(tmp_path / "trainer.states"))
    assert trainer2.optimizer.num_update == 2
    _backward(net2, x, y)
    trainer2.step(6)
    got = _snapshot(net2.collect_params())
    for k in expected:
        assert_almost_equal(got[k], expected[k], rtol=1e-6, atol=1e-7)


def test_load_states_errors(tmp_path):
    net = _net()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"momentum": 0.9})
    _backward(net, *_batch())
    trainer.step(6)
    trainer.save_states(str(tmp_path / "s"))
    with pytest.raises(KilnError, match="SGD optimizer cannot be loaded into a Adam"):
        gluon.Trainer(net.collect_params(), "adam").load_states(str(tmp_path / "s"))
    other = nn.HybridSequential()
    other.add(nn.Dense(5, in_units=3), nn.Dense(2, in_units=5))
    other.initialize()
    with pytest.raises(KilnError, match=r"'0.weight' has shape \(4, 3\).*\(5, 3\)"):
        gluon.Trainer(other.collect_params(), "sgd", {"momentum": 0.9}).load_states(
            str(tmp_path / "s"))
    net.save_parameters(str(tmp_path / "p"))
    with pytest.raises(KilnError, match="not an optimizer-states file"):
        trainer.load_states(str(tmp_path / "p"))


def test_step_is_fast_for_an_mlp():
    """Trainer.step of an MLP 784-256-128-10 (~235k parameters) must cost little next to the
    forward and backward passes."""
    np.random.seed(0)
    net = nn.HybridSequential()
    net.add(nn.Dense(256, activation="relu", in_units=784),
            nn.Dense(128, activation="relu", in_units=256), nn.Dense(10, in_units=128))
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1,
                                                          "momentum": 0.9, "wd": 1e-4})
    params = list(net.collect_params().values())
    for p in params:
        p.grad()[:] = 0.01
    times = []
    for _ in range(20):
        for p in params:
            p.data()._fresh_grad = True      # as backward would
        t = time.perf_counter()
        trainer.step(256)
        times.append(time.perf_counter() - t)
    # a few passes over ~1 MB: well under a millisecond normally; generous for loaded machines
    assert sorted(times)[len(times) // 2] < 0.02
