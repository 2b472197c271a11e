"""Small blocks with control flow, exported by the tests (test_control_flow_json.py) and checked
in a real MXNet by mxnet_roundtrip.py."""

from __future__ import annotations

import numpy as onp

from kiln import gluon, np, npx
from kiln.gluon import nn, rnn

#: models MXNet 1.9.1 itself cannot run, and why
MXNET_CANNOT = {"cond_in_foreach": "MXNet 1.9.1 cannot infer the shapes of a cond inside a "
                                   "foreach (its own export of such a model fails alike)"}


class ForeachDense(gluon.HybridBlock):
    """A recurrence: Dense layers inside the body, a state, the step output twice."""

    def __init__(self):
        super().__init__()
        self.i2h = nn.Dense(4, in_units=3, activation="tanh")
        self.h2o = nn.Dense(2, in_units=4)

    def forward(self, x, h):
        def step(x_t, states):
            h_new = self.i2h(x_t) + states[0] * 0.5
            return [self.h2o(h_new), h_new], [h_new]
        (outs, hs), states = npx.foreach(step, x, [h])
        return outs, hs, states[0]


class WhileDoubling(gluon.HybridBlock):
    """A data-dependent trip count; the loop reads a value from outside (x)."""

    def forward(self, x, s):
        def cond(i, v):
            return v.sum() < 10.0

        def func(i, v):
            return [v * x], [i + 1.0, v * 2.0 + x]
        outs, (i, v) = npx.while_loop(cond, func, [np.zeros((1,)), s], max_iterations=6)
        return outs[0], i, v


class CondDense(gluon.HybridBlock):
    def __init__(self):
        super().__init__()
        self.dense = nn.Dense(3, in_units=3)

    def forward(self, x, y):
        offset = np.array([0.5, -1.0, 2.0])     # a constant inside a branch
        return npx.cond((x * y).sum() > 0, lambda a, b: self.dense(a) * 2.0 + b,
                        lambda a, b: np.exp(a - b) + offset, [x, y])


class ForeachInWhile(gluon.HybridBlock):
    def forward(self, x, s):
        def func(i, v):
            inner, [last] = npx.foreach(lambda x_t, st: (x_t * st[0], [st[0] + x_t]), x, [v])
            return [inner.sum(axis=0)], [i + 1.0, np.sin(last)]
        outs, (i, v) = npx.while_loop(lambda i, v: i < 3, func, [np.zeros((1,)), s],
                                      max_iterations=5)
        return outs[0], v


class CondInForeach(gluon.HybridBlock):
    def forward(self, x, h):
        def step(x_t, states):
            h_new = npx.cond(x_t.sum() > 0, lambda a, s: np.tanh(a + s), lambda a, s: s * a,
                             [x_t, states[0]])
            return h_new, [h_new]
        outs, states = npx.foreach(step, x, [h])
        return outs, states[0]


class RecurrentLayers(gluon.HybridBlock):
    """Fused recurrent layers: a bidirectional two-layer LSTM, then a GRU."""

    def __init__(self):
        super().__init__()
        self.lstm = rnn.LSTM(4, num_layers=2, bidirectional=True, input_size=3)
        self.gru = rnn.GRU(3, input_size=8)

    def forward(self, x):
        return self.gru(self.lstm(x))


def _rand(*shape, seed=0):
    return np.array(onp.random.default_rng(seed).standard_normal(shape).astype("float32"))


def build_all() -> dict:
    """name -> (initialized block, example inputs)."""
    models = {
        "foreach_dense": (ForeachDense(), [_rand(5, 2, 3), _rand(2, 4, seed=1)]),
        "while_doubling": (WhileDoubling(), [np.array([0.1, 0.2]), np.array([0.5, 0.25])]),
        "cond_dense": (CondDense(), [_rand(2, 3), _rand(2, 3, seed=1)]),
        "foreach_in_while": (ForeachInWhile(), [_rand(4, 3) * 0.5, _rand(3, seed=1)]),
        "cond_in_foreach": (CondInForeach(), [_rand(6, 3), _rand(3, seed=1)]),
        "recurrent_layers": (RecurrentLayers(), [_rand(5, 2, 3)]),
    }
    for net, _ in models.values():
        net.initialize()
    return models
