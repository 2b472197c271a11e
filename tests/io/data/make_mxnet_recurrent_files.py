"""Generate the MXNet-written control-flow models and recurrent-layer references that kiln's
tests read (tests/io/data/mxnet/recurrent/).

Run in an environment with Apache MXNet 1.9.1, not in CI (CI has no MXNet):

    bash ../shared/peers/setup.sh mx          # creates /tmp/kiln-peers/mx
    /tmp/kiln-peers/mx/bin/python tests/io/data/make_mxnet_recurrent_files.py

It writes, for each control-flow model (MXNet 1.x `F.contrib.foreach`/`while_loop`/`cond`, which
MXNet 1.9.1 only has outside numpy mode), `<model>-symbol.json` and `<model>-0000.params` as
`export()` does, and `<model>.npz` with the inputs (`in0`, `in1` ...) and MXNet's outputs
(`out0` ...). For the recurrent layers and cells it writes `<layer>.params`
(`save_parameters`) and `<layer>.npz` with the input, the begin states and MXNet's outputs and
states, plus the exported LSTM (`lstm_export-symbol.json`: MXNet's fused `RNN` operator).
"""

import os

import numpy as np

import mxnet as mx
from mxnet import gluon, nd
from mxnet.gluon import nn, rnn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mxnet", "recurrent")


class ForeachNet(gluon.HybridBlock):
    """A recurrence over the first axis with a Dense layer and a parameter in the body."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.dense = nn.Dense(4, in_units=3, flatten=False)
            self.w = self.params.get("w", shape=(4, 4))

    def hybrid_forward(self, F, x, h, w):
        def body(x_t, states):
            h_new = F.tanh(self.dense(x_t) + F.dot(states[0], w))
            return h_new * 2, [h_new, states[1] + h_new.sum()]
        outs, states = F.contrib.foreach(body, x, [h, F.zeros((1,))])
        return outs, states[0], states[1]


class WhileNet(gluon.HybridBlock):
    """Doubling until the sum passes a bound: a data-dependent trip count."""

    def hybrid_forward(self, F, x, s):
        def cond(i, v):
            return v.sum() < 10

        def func(i, v):
            return [v * x], [i + 1, v * 2 + x]
        outs, (i, v) = F.contrib.while_loop(cond, func, [F.zeros((1,)), s], max_iterations=6)
        return outs[0], i, v


class CondNet(gluon.HybridBlock):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.dense = nn.Dense(3, in_units=3)

    def hybrid_forward(self, F, x, y):
        return F.contrib.cond((x * y).sum() > 0, lambda: self.dense(x) * 2 + y,
                              lambda: F.exp(x - y))


class NestedNet(gluon.HybridBlock):
    """A foreach inside a while_loop (MXNet 1.9.1 cannot infer the shapes of a cond inside a
    foreach, so that nesting is tested in kiln alone)."""

    def hybrid_forward(self, F, x, s):
        def func(i, v):
            outs, st = F.contrib.foreach(lambda x_t, st: (x_t * st[0], [st[0] + x_t]), x, [v])
            return [outs.sum(axis=0)], [i + 1, F.sin(st[0])]
        outs, (i, v) = F.contrib.while_loop(lambda i, v: i < 3, func, [F.zeros((1,)), s],
                                            max_iterations=5)
        return outs[0], v


def control_flow_models():
    rng = np.random.default_rng(3)
    x3 = rng.standard_normal((5, 2, 3)).astype(np.float32)
    yield "foreach", ForeachNet(), [x3, rng.standard_normal((2, 4)).astype(np.float32)]
    yield "while", WhileNet(), [np.array([0.1, 0.2], np.float32), np.array([0.5, 0.25],
                                                                            np.float32)]
    a = rng.standard_normal((2, 3)).astype(np.float32)
    yield "cond_then", CondNet(), [a, np.abs(a) * np.sign(a)]
    yield "nested", NestedNet(), [rng.standard_normal((4, 3)).astype(np.float32) * 0.5,
                                  rng.standard_normal((3,)).astype(np.float32)]


def write_control_flow() -> None:
    for name, net, inputs in control_flow_models():
        mx.random.seed(1)
        net.initialize(mx.init.Xavier())
        net.hybridize()
        outs = net(*[nd.array(x) for x in inputs])
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        prefix = os.path.join(OUT, name)
        net.export(prefix, 0)
        np.savez(prefix + ".npz", **{f"in{k}": x for k, x in enumerate(inputs)},
                 **{f"out{k}": o.asnumpy() for k, o in enumerate(outs)})
        print("wrote", prefix)


def layers():
    yield "lstm", rnn.LSTM(5, num_layers=2, bidirectional=True, input_size=3)
    yield "gru", rnn.GRU(5, num_layers=2, bidirectional=True, input_size=3)
    yield "rnn_relu", rnn.RNN(5, num_layers=1, input_size=3)
    yield "rnn_tanh_ntc", rnn.RNN(5, num_layers=2, activation="tanh", layout="NTC",
                                  input_size=3)


def write_layers() -> None:
    rng = np.random.default_rng(5)
    for name, layer in layers():
        mx.random.seed(2)
        layer.initialize(mx.init.Uniform(0.5))
        for p in layer.collect_params().values():      # non-zero biases too
            p.set_data(nd.array(rng.uniform(-0.5, 0.5, p.shape).astype(np.float32)))
        shape = (2, 4, 3) if name.endswith("ntc") else (4, 2, 3)
        x = rng.standard_normal(shape).astype(np.float32)
        states = [nd.array(rng.standard_normal(s.shape).astype(np.float32))
                  for s in layer.begin_state(2)]
        out, new_states = layer(nd.array(x), states)
        prefix = os.path.join(OUT, name)
        layer.save_parameters(prefix + ".params")
        np.savez(prefix + ".npz", x=x, out=out.asnumpy(),
                 **{f"state{k}": s.asnumpy() for k, s in enumerate(states)},
                 **{f"new_state{k}": s.asnumpy() for k, s in enumerate(new_states)})
        print("wrote", prefix)
    for name, cell in (("lstm_cell", rnn.LSTMCell(4, input_size=3)),
                       ("gru_cell", rnn.GRUCell(4, input_size=3)),
                       ("rnn_cell", rnn.RNNCell(4, input_size=3))):
        cell.initialize(mx.init.Uniform(0.5))
        for p in cell.collect_params().values():
            p.set_data(nd.array(rng.uniform(-0.5, 0.5, p.shape).astype(np.float32)))
        x = rng.standard_normal((2, 5, 3)).astype(np.float32)
        states = [nd.array(rng.standard_normal(s.shape).astype(np.float32))
                  for s in cell.begin_state(2)]
        outs, new_states = cell.unroll(5, nd.array(x), states, layout="NTC", merge_outputs=True)
        prefix = os.path.join(OUT, name)
        cell.save_parameters(prefix + ".params")
        np.savez(prefix + ".npz", x=x, out=outs.asnumpy(),
                 **{f"state{k}": s.asnumpy() for k, s in enumerate(states)},
                 **{f"new_state{k}": s.asnumpy() for k, s in enumerate(new_states)})
        print("wrote", prefix)


def write_exported_lstm() -> None:
    """An LSTM layer exported: MXNet writes it as `_rnn_param_concat` + the fused `RNN` op."""
    net = rnn.LSTM(4, num_layers=2, bidirectional=True, input_size=3)
    net.initialize(mx.init.Uniform(0.5))
    net.hybridize()
    rng = np.random.default_rng(9)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    states = [nd.array(rng.standard_normal(s.shape).astype(np.float32))
              for s in net.begin_state(2)]
    out, new_states = net(nd.array(x), states)
    prefix = os.path.join(OUT, "lstm_export")
    net.export(prefix, 0)
    np.savez(prefix + ".npz", in0=x, in1=states[0].asnumpy(), in2=states[1].asnumpy(),
             out0=out.asnumpy(), out1=new_states[0].asnumpy(), out2=new_states[1].asnumpy())
    print("wrote", prefix)


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    write_control_flow()
    write_layers()
    write_exported_lstm()


if __name__ == "__main__":
    main()
