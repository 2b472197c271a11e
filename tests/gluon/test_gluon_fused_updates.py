"""Trainer steps through the native fused optimizer kernels equal the NumPy updates."""

import numpy as onp
import pytest

from kiln import autograd, gluon, np
from kiln.gluon import nn
from kiln.optimizer import optimizer as optimizer_module

kernels = optimizer_module.native_optimizer_kernels()
pytestmark = pytest.mark.skipif(kernels is None, reason="no native optimizer kernels here")


def _train(optimizer, params, fused: bool, monkeypatch):
    if not fused:
        monkeypatch.setattr(optimizer_module, "native_optimizer_kernels", lambda: None)
    calls = []
    if fused:
        for name in ("sgd_update_multi", "adam_update_multi"):
            original = getattr(kernels, name)
            monkeypatch.setattr(kernels, name, (lambda f, n: lambda *a, **k: (
                calls.append(n), f(*a, **k))[1])(original, name))
    onp.random.seed(0)
    net = nn.HybridSequential()
    net.add(nn.Dense(16, activation="relu", in_units=8), nn.Dense(4, in_units=16))
    net.initialize()
    for p, v in zip(net.collect_params().values(), params):
        p.set_data(v)
    trainer = gluon.Trainer(net.collect_params(), optimizer, dict(OPTIONS[optimizer]))
    x = np.array(onp.random.default_rng(1).standard_normal((5, 8)).astype("float32"))
    for _ in range(4):
        with autograd.record():
            loss = (net(x) ** 2).sum()
        loss.backward()
        trainer.step(5)
    monkeypatch.undo()
    return [p.data().asnumpy() for p in net.collect_params().values()], calls


OPTIONS = {"sgd": {"learning_rate": 0.05, "momentum": 0.9, "wd": 1e-3},
           "adam": {"learning_rate": 0.01, "wd": 1e-3}}


@pytest.mark.parametrize("optimizer", sorted(OPTIONS))
def test_fused_updates_equal_numpy_updates(optimizer, monkeypatch):
    rng = onp.random.default_rng(2)
    params = [rng.standard_normal(s).astype("float32") * 0.3
              for s in ((16, 8), (16,), (4, 16), (4,))]
    numpy_result, _ = _train(optimizer, params, False, monkeypatch)
    fused_result, calls = _train(optimizer, params, True, monkeypatch)
    assert calls == [f"{optimizer}_update_multi"] * 4  # one native call per step
    for a, b in zip(fused_result, numpy_result):
        onp.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
