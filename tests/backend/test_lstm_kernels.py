"""The LSTM in C (runtime/kernels/lstm.c through kiln/backend/native/rnn_kernels.py) against
the NumPy implementation of the `rnn` operator (kiln/ops/rnn.py), forward and backward, both
directions, sequences of zero, one and several steps."""

from __future__ import annotations

import numpy as onp
import pytest

from kiln.backend.native import rnn_kernels
from kiln.ops import rnn as rnn_op

pytestmark = pytest.mark.usefixtures("require_native")


def _arrays(t_len, n, i, h, dtype="float32", seed=0):
    rng = onp.random.default_rng(seed)

    def f(*shape):
        return rng.standard_normal(shape).astype(dtype)
    return (f(t_len, n, i), f(4 * h, i) * 0.5, f(4 * h, h) * 0.5, f(4 * h), f(4 * h), f(n, h),
            f(n, h))


def _numpy_forward(*args, reverse):
    with rnn_op._blas():
        return rnn_op._lstm(*args, reverse)


def _numpy_backward(*args, reverse):
    with rnn_op._blas():
        return rnn_op._lstm_backward(*args, reverse)


def _close(got, want, what):
    for k, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape and a.dtype == b.dtype, (what, k)
        scale = max(1.0, float(onp.abs(b).max())) if b.size else 1.0
        onp.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * scale, err_msg=f"{what} {k}")


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("t_len, n, i, h", [(0, 3, 4, 5), (1, 3, 4, 5), (6, 5, 7, 9),
                                            (4, 17, 3, 33)])
def test_c_lstm_matches_numpy_forward_and_backward(t_len, n, i, h, reverse):
    args = _arrays(t_len, n, i, h)
    fwd = rnn_kernels.lstm_forward(*args, reverse)
    assert fwd is not None
    _close(fwd, _numpy_forward(*args, reverse=reverse), "forward output")
    x, w_ih, w_hh, _, _, h0, c0 = args
    y, _, _, gates, cells = fwd
    rng = onp.random.default_rng(1)
    dy, dh, dc = (rng.standard_normal(s).astype("float32") for s in (y.shape, h0.shape, c0.shape))
    back = (dy, dh, dc, x, w_ih, w_hh, h0, c0, y, gates, cells)
    got = rnn_kernels.lstm_backward(*back, reverse)
    assert got is not None
    _close(got, _numpy_backward(*back, reverse=reverse), "gradient")


def test_other_dtypes_and_the_switch_leave_the_lstm_to_numpy():
    assert rnn_kernels.lstm_forward(*_arrays(2, 2, 3, 4, dtype="float64"), False) is None
    rnn_kernels.use_native(False)
    try:
        assert rnn_kernels.lstm_forward(*_arrays(2, 2, 3, 4), False) is None
    finally:
        rnn_kernels.use_native(None)
    assert rnn_kernels.lstm_forward(*_arrays(2, 2, 3, 4), False) is not None


def test_views_of_larger_arrays_are_read_correctly():
    """Strided inputs (a slice of a sequence, a transposed weight's copy) are made contiguous."""
    x, w_ih, w_hh, b_ih, b_hh, h0, c0 = _arrays(8, 4, 6, 5)
    args = (x[::2], onp.asfortranarray(w_ih), w_hh, b_ih, b_hh, h0[:, :], c0)
    _close(rnn_kernels.lstm_forward(*args, False),
           _numpy_forward(*[onp.ascontiguousarray(a) for a in args], reverse=False), "forward")


def test_results_go_into_the_given_buffers_where_they_fit():
    """A compiled graph lends the operator its own buffers (RNN.impl_fills_out): the results
    are written there, except into a buffer that overlaps an input or does not fit."""
    args = _arrays(4, 3, 5, 6)
    want = _numpy_forward(*args, reverse=False)
    lent = [onp.full(w.shape, onp.nan, onp.float32) for w in want]
    got = rnn_op.RNN.impl(*args, mode="lstm", state_size=6, reverse=False, out=lent)
    assert all(g is buf for g, buf in zip(got, lent))
    _close(got, want, "lent buffers")

    w_hh = args[2]
    before = w_hh.copy()
    unfit = [onp.zeros((4, 3, 5), onp.float32),               # wrong shape
             onp.zeros((3, 6), onp.float64),                  # wrong dtype
             onp.zeros((6, 3), onp.float32).T,                # not C-ordered
             None,                                            # none lent
             w_hh.reshape(-1)[:4 * 3 * 6].reshape(4, 3, 6)]   # overlaps the input w_hh
    got = rnn_op.RNN.impl(*args, mode="lstm", state_size=6, reverse=False, out=unfit)
    assert not any(g is buf for g, buf in zip(got, unfit))
    _close(got, want, "fresh buffers")
    onp.testing.assert_array_equal(w_hh, before)


def test_a_hybridized_lstm_fills_the_graph_buffers(monkeypatch):
    """The native graph passes its buffers to the rnn node and its gradient node."""
    from kiln import autograd, np
    from kiln.gluon import rnn

    seen = []
    real = rnn_kernels._outputs

    def spy(out, shapes, inputs):
        seen.append(out is not None)
        return real(out, shapes, inputs)
    monkeypatch.setattr(rnn_kernels, "_outputs", spy)
    layer = rnn.LSTM(6, input_size=5)
    layer.initialize()
    x = np.array(onp.random.default_rng(1).standard_normal((4, 3, 5)).astype("float32"))
    x.attach_grad()
    with autograd.record():
        eager = layer(x)
        loss = eager.sum()
    loss.backward()
    eager_grad = x.grad.asnumpy().copy()
    seen.clear()
    layer.hybridize(backend="native")
    with autograd.record():
        y = layer(x)
        loss = y.sum()
    loss.backward()
    assert seen == [True, True]     # forward and backward, each with lent buffers
    onp.testing.assert_allclose(y.asnumpy(), eager.asnumpy(), rtol=1e-5, atol=1e-6)
    onp.testing.assert_allclose(x.grad.asnumpy(), eager_grad, rtol=1e-5, atol=1e-6)
