"""Recurrent layers and cells: MXNet 1.9.1's outputs (tests/io/data/mxnet/recurrent, made by
make_mxnet_recurrent_files.py) eager and hybridized, gradients against finite differences and
against the cells unrolled op by op, layouts and states, and a character-level language model
trained on a text that ships with the tests."""

from __future__ import annotations

import os

import numpy as onp
import pytest

import kiln
from kiln import autograd, gluon, np, npx
from kiln.backend.blas import blas_threads
from kiln.base import KilnError, ShapeError
from kiln.gluon import nn, rnn
from kiln.ops.rnn import rnn_direction
from kiln.test_utils import assert_almost_equal, check_gradient

DATA = os.path.join(os.path.dirname(__file__), "..", "io", "data", "mxnet", "recurrent")
TEXT = os.path.join(os.path.dirname(__file__), "data", "lighthouse.txt")


def _layer(name):
    return {"lstm": lambda: rnn.LSTM(5, num_layers=2, bidirectional=True),
            "gru": lambda: rnn.GRU(5, num_layers=2, bidirectional=True),
            "rnn_relu": lambda: rnn.RNN(5),
            "rnn_tanh_ntc": lambda: rnn.RNN(5, num_layers=2, activation="tanh",
                                            layout="NTC"),
            "lstm_cell": lambda: rnn.LSTMCell(4),
            "gru_cell": lambda: rnn.GRUCell(4),
            "rnn_cell": lambda: rnn.RNNCell(4)}[name]()


def _load(name):
    ref = onp.load(os.path.join(DATA, name + ".npz"))
    block = _layer(name)
    block.initialize()
    x = np.array(ref["x"])
    states = [np.array(ref[k]) for k in sorted(ref) if k.startswith("state")]
    return block, x, states, ref


def _check(got, ref):
    onp.testing.assert_allclose(got.asnumpy(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_relu", "rnn_tanh_ntc"])
@pytest.mark.parametrize("hybridize", [False, True])
def test_layers_compute_what_mxnet_computes(name, hybridize):
    layer, x, states, ref = _load(name)
    layer(x)  # finish the deferred initialization, then read MXNet's parameters
    layer.load_parameters(os.path.join(DATA, name + ".params"))
    if hybridize:
        layer.hybridize()
    for _ in range(2 if hybridize else 1):
        out, new_states = layer(x, states)
        _check(out, ref["out"])
        for k, s in enumerate(new_states):
            _check(s, ref[f"new_state{k}"])


@pytest.mark.parametrize("name", ["lstm_cell", "gru_cell", "rnn_cell"])
@pytest.mark.parametrize("hybridize", [False, True])
def test_cells_unrolled_compute_what_mxnet_computes(name, hybridize):
    cell, x, states, ref = _load(name)
    cell.unroll(5, x, states, merge_outputs=True)
    cell.load_parameters(os.path.join(DATA, name + ".params"))
    if hybridize:
        cell.hybridize()
    outs, new_states = cell.unroll(5, x, states, layout="NTC", merge_outputs=True)
    _check(outs, ref["out"])
    for k, s in enumerate(new_states):
        _check(s, ref[f"new_state{k}"])


def test_parameter_names_and_layouts_are_mxnets():
    layer = rnn.LSTM(8, num_layers=2, bidirectional=True, input_size=3)
    layer.initialize()
    params = layer.collect_params()
    assert list(params)[:4] == ["l0_i2h_weight", "l0_h2h_weight", "l0_i2h_bias", "l0_h2h_bias"]
    assert params["l0_i2h_weight"].shape == (32, 3)
    assert params["r1_i2h_weight"].shape == (32, 16)   # the two directions' features, concatenated
    assert params["l1_h2h_weight"].shape == (32, 8)
    assert rnn.GRU(8).l0_h2h_bias.shape == (24,)
    assert [i["shape"] for i in layer.state_info(5)] == [(4, 5, 8), (4, 5, 8)]
    assert [s.shape for s in layer.begin_state(5)] == [(4, 5, 8), (4, 5, 8)]
    assert sorted(rnn.LSTMCell(4).collect_params()) == ["h2h_bias", "h2h_weight", "i2h_bias",
                                                      "i2h_weight"]


def _copy_layer_params_to_cells(layer, cells):
    params = layer.collect_params()
    for k, cell in enumerate(cells):
        for name in ("i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias"):
            getattr(cell, name).set_data(params[f"l{k}_{name}"].data())


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh"])
def test_layer_gradients_equal_the_cells_unrolled_op_by_op(mode):
    """The fused operator's exact backward against the registry's generic gradients."""
    rng = onp.random.default_rng(0)
    layer = {"lstm": rnn.LSTM, "gru": rnn.GRU,
             "rnn_tanh": lambda h, **kw: rnn.RNN(h, activation="tanh", **kw)}[mode](
        6, num_layers=2, input_size=3)
    cells = [{"lstm": rnn.LSTMCell, "gru": rnn.GRUCell,
              "rnn_tanh": rnn.RNNCell}[mode](6, input_size=3 if k == 0 else 6) for k in range(2)]
    layer.initialize(kiln.init.Uniform(0.4))
    for c in cells:
        c.initialize()
    _copy_layer_params_to_cells(layer, cells)
    x = np.array(rng.standard_normal((7, 2, 3)).astype("float32"))
    head = np.array(rng.standard_normal((7, 2, 6)).astype("float32"))

    def run(forward, params):
        xx = x.copy()
        xx.attach_grad()
        with autograd.record():
            out = forward(xx)
            loss = (out * head).sum()
        loss.backward()
        return out, xx.grad, [p.grad() for p in params]

    def unrolled(xx):
        for cell in cells:
            xx, _ = cell.unroll(7, xx, layout="TNC", merge_outputs=True)
        return xx
    layer.hybridize()
    out_a, gx_a, gp_a = run(layer, list(layer.collect_params().values()))
    cell_params = [getattr(c, n) for c in cells for n in ("i2h_weight", "h2h_weight",
                                                          "i2h_bias", "h2h_bias")]
    out_b, gx_b, gp_b = run(unrolled, cell_params)
    assert_almost_equal(out_a, out_b, rtol=1e-4, atol=1e-5)
    assert_almost_equal(gx_a, gx_b, rtol=1e-4, atol=1e-5)
    for a, b in zip(gp_a, gp_b):
        assert_almost_equal(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode, gates", [("lstm", 4), ("gru", 3), ("rnn_tanh", 1),
                                         ("rnn_relu", 1)])
@pytest.mark.parametrize("reverse", [False, True])
def test_fused_operator_gradients_match_finite_differences(mode, gates, reverse):
    rng = onp.random.default_rng(1)
    t, n, i, h = 4, 2, 3, 3
    shapes = [(t, n, i), (gates * h, i), (gates * h, h), (gates * h,), (gates * h,), (n, h)]
    if mode == "lstm":
        shapes.append((n, h))
    arrays = [np.array(rng.standard_normal(s) * 0.6) for s in shapes]

    def f(*a):
        out = rnn_direction(*a[:6], a[6] if mode == "lstm" else None, mode, reverse)
        return [o for o in out if o is not None]
    check_gradient(f, arrays)


def test_ntc_layout_and_states_given_or_not():
    rng = onp.random.default_rng(2)
    tnc = rnn.GRU(4, input_size=3)
    tnc.initialize()
    ntc = rnn.GRU(4, input_size=3, layout="NTC")
    ntc.initialize()
    for k, p in tnc.collect_params().items():
        ntc.collect_params()[k].set_data(p.data())
    x = np.array(rng.standard_normal((5, 2, 3)).astype("float32"))
    out = tnc(x)
    assert_almost_equal(ntc(np.swapaxes(x, 0, 1)), np.swapaxes(out, 0, 1))
    grads = []   # the NTC layer's operator sees a transposed (non-contiguous) input
    for layer, inp in ((tnc, x.copy()), (ntc, np.array(np.swapaxes(x, 0, 1)))):
        inp.attach_grad()
        with autograd.record():
            layer(inp).sum().backward()
        grads.append(inp.grad)
    assert_almost_equal(np.swapaxes(grads[1], 0, 1), grads[0])
    out2, [h] = tnc(x, tnc.begin_state(2))
    assert_almost_equal(out2, out)
    assert_almost_equal(h[0], out[-1])
    with pytest.raises(ShapeError, match=r"expected \(1, 2, 4\)"):
        tnc(x, [np.zeros((1, 3, 4))])
    with pytest.raises(KilnError, match="2 state arrays"):
        rnn.LSTM(4, input_size=3)(x, [np.zeros((1, 2, 4))])


def test_bidirectional_output_is_both_directions_concatenated():
    layer = rnn.LSTM(3, bidirectional=True, input_size=2)
    layer.initialize()
    x = np.array(onp.random.default_rng(3).standard_normal((4, 1, 2)).astype("float32"))
    out, [h, c] = layer(x, layer.begin_state(1))
    assert out.shape == (4, 1, 6)
    assert_almost_equal(out[-1, :, :3], h[0])    # the forward direction ends at the last step
    assert_almost_equal(out[0, :, 3:], h[1])     # the backward direction ends at the first


def test_a_cell_in_foreach_is_one_loop_node_and_equals_the_layer():
    layer = rnn.LSTM(5, input_size=3)
    layer.initialize()
    cell = rnn.LSTMCell(5, input_size=3)
    cell.initialize()
    _copy_layer_params_to_cells(layer, [cell])

    class Looped(gluon.HybridBlock):
        def __init__(self):
            super().__init__()
            self.cell = cell

        def forward(self, x):
            outs, _ = npx.foreach(lambda x_t, s: self.cell(x_t, s), x,
                                  self.cell.begin_state(x.shape[1]))
            return outs
    looped = Looped()
    looped.hybridize()
    x = np.array(onp.random.default_rng(4).standard_normal((6, 2, 3)).astype("float32"))
    assert_almost_equal(looped(x), layer(x), rtol=1e-5, atol=1e-6)
    graph = next(iter(looped._cache.entries.values())).graph
    assert graph.count("foreach") == 1


def test_unroll_with_valid_length_masks_outputs_and_keeps_the_last_valid_states():
    cell = rnn.GRUCell(3, input_size=2)
    cell.initialize()
    x = np.array(onp.random.default_rng(5).standard_normal((2, 4, 2)).astype("float32"))
    outs, [h] = cell.unroll(4, x, valid_length=np.array([2, 4]), merge_outputs=True)
    full, _ = cell.unroll(4, x, merge_outputs=True)
    onp.testing.assert_array_equal(outs.asnumpy()[0, 2:], 0.0)
    assert_almost_equal(outs[1], full[1])
    assert_almost_equal(h[0], full[0, 1])
    assert_almost_equal(h[1], full[1, 3])


def test_gradients_of_gradients_through_the_fused_layer_say_so():
    layer = rnn.RNN(3, input_size=2)
    layer.initialize()
    x = np.ones((2, 1, 2))
    x.attach_grad()
    with autograd.record():
        y = layer(x).sum()
        (g,) = autograd.grad(y, [x], create_graph=True)
        z = g.sum()
    with pytest.raises(KilnError, match="unroll a gluon.rnn cell"):
        z.backward()


# ----------------------------------------------------------------------------------------------
# a character-level language model
# ----------------------------------------------------------------------------------------------

class CharLM(gluon.HybridBlock):
    def __init__(self, vocab: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, 24)
        self.lstm = rnn.LSTM(64, layout="NTC")
        self.out = nn.Dense(vocab, flatten=False)

    def forward(self, x):
        return self.out(self.lstm(self.embed(x)))


def test_a_character_language_model_learns_the_text():
    with open(TEXT, encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    ids = onp.array([chars.index(c) for c in text])
    seq, batch = 32, 16
    rng = onp.random.default_rng(0)
    kiln.npx.seed(0)
    model = CharLM(len(chars))
    model.initialize(kiln.init.Xavier())
    model.hybridize()
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(model.collect_params(), "adam", {"learning_rate": 0.02})
    counts = onp.bincount(ids, minlength=len(chars)) / len(ids)
    unigram = float(-(counts * onp.log(counts + 1e-12)).sum())   # knowing only letter counts
    losses = []
    # NOTE: one BLAS thread: the products are small, and on a shared machine a second BLAS
    # thread waits for a busy core on every call (see kiln/backend/blas.py).
    with blas_threads(1):
        for _ in range(100):
            starts = rng.integers(0, len(ids) - seq - 1, batch)
            x = np.array(onp.stack([ids[s:s + seq] for s in starts]).astype("float32"))
            y = np.array(onp.stack([ids[s + 1:s + seq + 1] for s in starts]).astype("float32"))
            with autograd.record():
                loss = loss_fn(model(x), y).mean()
            loss.backward()
            trainer.step(1)
            losses.append(float(loss.item()))
    assert onp.mean(losses[:5]) > 0.9 * onp.log(len(chars))     # it starts knowing nothing
    assert onp.mean(losses[-10:]) < 0.6 * unigram                 # and ends using context
    for prompt, following in (("two flashes and a pau", "s"), ("the keeper", " ")):
        x = np.array(onp.array([[chars.index(c) for c in prompt]], "float32"))
        assert chars[int(model(x)[0, -1].argmax().item())] == following


@pytest.mark.parametrize("mode, gates", [("lstm", 4), ("gru", 3), ("rnn_relu", 1)])
@pytest.mark.parametrize("reverse", [False, True])
def test_the_two_threads_compute_what_one_does(mode, gates, reverse, monkeypatch):
    """A batch of 20 runs as two halves on two threads; KILN_RNN_THREADS=1 runs it whole."""
    rng = onp.random.default_rng(6)
    t, n, i, h = 6, 20, 3, 5
    shapes = [(t, n, i), (gates * h, i), (gates * h, h), (gates * h,), (gates * h,), (n, h)]
    arrays = [np.array(rng.standard_normal(s).astype("float32")) for s in shapes]
    c0 = np.array(rng.standard_normal((n, h)).astype("float32")) if mode == "lstm" else None
    results = []
    for threads in ("2", "1"):
        monkeypatch.setenv("KILN_RNN_THREADS", threads)
        xs = [a.copy() for a in arrays]
        for a in xs:
            a.attach_grad()
        with autograd.record():
            out = [o for o in rnn_direction(*xs, c0, mode, reverse) if o is not None]
            loss = sum((o * o).sum() for o in out)
        loss.backward()
        results.append([o.asnumpy() for o in out] + [a.grad.asnumpy() for a in xs])
    for a, b in zip(*results):
        onp.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
