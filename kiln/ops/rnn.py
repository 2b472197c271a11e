"""The fused recurrent operator behind `gluon.rnn.RNN`/`LSTM`/`GRU`: one direction of one
layer over a whole sequence, forward and exact backward, in NumPy.

Layout and equations are MXNet's (and cuDNN's). `data` is (T, N, I); weights `i2h_weight`
(G*H, I), `h2h_weight` (G*H, H) and biases (G*H,) hold G gates of H units each, in MXNet's order:

    lstm  [i, f, c, o]   i, f, o = sigmoid(.), c~ = tanh(.); c' = f*c + i*c~; h' = o*tanh(c')
    gru   [r, z, n]      r, z = sigmoid(x_rz + h_rz); n = tanh(x_n + r*(W_hn h + b_hn));
                         h' = (1-z)*n + z*h
    rnn_tanh, rnn_relu   h' = act(W_ih x + b_ih + W_hh h + b_hh)

Float32 LSTMs run in C when the native kernels are available (`_native`, runtime/kernels/lstm.c:
the same algorithm, one kiln_sgemm and one fused gate pass per step); what follows is the NumPy
implementation, which computes everything else and is the reference the C is tested against.

The hot path: one matrix product projects the inputs of every step at once; each step then does
a single `h @ W_hh^T` product and the gate arithmetic in a few whole-array NumPy calls writing
into preallocated buffers (sigmoids as 0.5*tanh(0.5x)+0.5 with the 0.5 folded into the weights,
so one tanh covers all gates). The gate activations (and LSTM's cell states) are hidden outputs
the backward reads. The backward computes every per-step factor that does not depend on the
recurrence for all steps at once, loops once in reverse with one `dgates @ W_hh` per step, and
finishes with three large products for the weight and input gradients.

Threads: the batch's rows are independent, so its two halves run their recurrences on two
Python threads (NumPy releases the GIL in its loops; KILN_RNN_THREADS=1 keeps one), and the
final products are shared between them too. NumPy's BLAS runs single-threaded inside the
operator (KILN_RNN_BLAS_THREADS): its products are small, and on a loaded machine an OpenBLAS
thread waiting for a busy core stalls every step.

`reverse=True` runs the sequence from its last step (the second direction of a bidirectional
layer); outputs stay in time order. Gradients of gradients are not implemented.
"""

from __future__ import annotations

import contextlib

import numpy as _np

from ..base import KilnError, ShapeError, env_int
from ..ndarray import apply
from .registry import Aval, Op

__all__ = ["RNN", "RNNBackward", "rnn_direction", "GATES"]

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
_HIDDEN = {"lstm": 2, "gru": 2, "rnn_tanh": 0, "rnn_relu": 0}  # hidden outputs per mode


def _blas():
    """The BLAS threads the operator runs with: KILN_RNN_BLAS_THREADS, default 1 (the per-step
    products are small; see kiln/backend/blas.py), 0 for NumPy's default."""
    from ..backend.blas import blas_threads

    n = env_int("KILN_RNN_BLAS_THREADS", 1)
    return blas_threads(n) if n > 0 else contextlib.nullcontext()


def _native():
    """The C kernels of the LSTM (kiln/backend/native/rnn_kernels.py): their functions return
    None where NumPy computes (no compiler, KILN_BACKEND=numpy, another dtype)."""
    from ..backend.native import rnn_kernels

    return rnn_kernels


# ----------------------------------------------------------------------------------------------
# two threads: the batch's two halves run their recurrences side by side
# ----------------------------------------------------------------------------------------------

_POOL: list = []
_MIN_HALF = 8     # rows per half below which splitting costs more than it gains


def _helper():
    """One helper thread. NumPy releases the GIL inside its matrix products and array loops,
    so on an idle second core the halves run in parallel; on a busy machine they take turns
    (no BLAS thread spins waiting for a core)."""
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor

        _POOL.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="kiln-rnn"))
    return _POOL[0]


def _both(first, second) -> None:
    """Run `first()` here and `second()` on the helper thread; wait for both."""
    if second is None:
        first()
        return
    fut = _helper().submit(second)
    try:
        first()
    finally:
        fut.result()


def _halves(n: int) -> list[tuple[int, int]]:
    """The batch rows each thread runs (KILN_RNN_THREADS=1: one thread)."""
    if env_int("KILN_RNN_THREADS", 2) < 2 or n < 2 * _MIN_HALF:
        return [(0, n)]
    return [(0, n // 2), (n // 2, n)]


def _by_rows(n: int, fn) -> None:
    """fn(lo, hi) for each half of the batch rows, in parallel."""
    parts = _halves(n)
    _both(lambda: fn(*parts[0]), (lambda: fn(*parts[1])) if len(parts) > 1 else None)


def _order(t_len: int, reverse: bool) -> range:
    return range(t_len - 1, -1, -1) if reverse else range(t_len)


def _project(x, w_x, bias):
    """x @ w_x + bias for every step at once: (T, N, G*H), the two halves of the rows of
    the product in parallel."""
    t_len, n, _ = x.shape
    rows = x.reshape(t_len * n, x.shape[2])   # -1 is ambiguous for T = 0
    out = _np.empty((t_len * n, w_x.shape[1]), x.dtype)

    def part(lo: int, hi: int) -> None:
        _np.matmul(rows[lo:hi], w_x, out=out[lo:hi])
        out[lo:hi] += bias
    _by_rows(t_len * n, part)
    return out.reshape(t_len, n, w_x.shape[1])


def _last(seq, first, reverse: bool):
    """The state after the last step (a copy; `first` when there are no steps)."""
    if not len(seq):
        return _np.array(first)
    return seq[0 if reverse else -1].copy()


def _previous(y, h0, reverse: bool):
    """(T, N, H): the state each step started from."""
    prev = _np.empty_like(y)
    if not len(y):
        return prev
    if reverse:
        prev[:-1] = y[1:]
        prev[-1] = h0
    else:
        prev[1:] = y[:-1]
        prev[0] = h0
    return prev


def _times_previous(out, seq, first, reverse: bool) -> None:
    """out *= the state each step started from (`seq` shifted by one step, `first` at the
    start), without materializing the shifted sequence."""
    if not len(out):
        return
    if reverse:
        out[:-1] *= seq[1:]
        out[-1] *= first
    else:
        out[1:] *= seq[:-1]
        out[0] *= first


def _sigmoid_scale(h: int, gates: str, dtype) -> _np.ndarray:
    """0.5 on sigmoid gates, 1 on tanh gates: sigmoid(x) = 0.5 * tanh(0.5 x) + 0.5."""
    return _np.concatenate([_np.full(h, 1.0 if g == "t" else 0.5, dtype) for g in gates])


# ----------------------------------------------------------------------------------------------
# forward
# ----------------------------------------------------------------------------------------------

def _lstm(x, w_ih, w_hh, b_ih, b_hh, h0, c0, reverse):
    t_len, n, _ = x.shape
    h = w_hh.shape[1]
    scale = _sigmoid_scale(h, "ssts", x.dtype)      # i, f, o sigmoid; c~ tanh
    alpha = scale                                    # then sigmoid = 0.5 * tanh + 0.5
    beta = _np.where(scale == 0.5, 0.5, 0.0).astype(x.dtype)
    w_h = _np.ascontiguousarray((w_hh * scale[:, None]).T)
    xw = _project(x, (w_ih * scale[:, None]).T, (b_ih + b_hh) * scale)
    gates = _np.empty((t_len, n, 4 * h), x.dtype)
    cells = _np.empty((t_len, n, h), x.dtype)
    y = _np.empty((t_len, n, h), x.dtype)

    def rows(lo: int, hi: int) -> None:
        tmp = _np.empty((hi - lo, h), x.dtype)
        hp, cp = h0[lo:hi], c0[lo:hi]
        for t in _order(t_len, reverse):
            g = gates[t, lo:hi]
            _np.matmul(hp, w_h, out=g)
            g += xw[t, lo:hi]
            _np.tanh(g, out=g)
            g *= alpha
            g += beta
            c = cells[t, lo:hi]
            _np.multiply(g[:, h:2 * h], cp, out=c)
            _np.multiply(g[:, :h], g[:, 2 * h:3 * h], out=tmp)
            c += tmp
            _np.tanh(c, out=tmp)
            hp, cp = y[t, lo:hi], c
            _np.multiply(g[:, 3 * h:], tmp, out=hp)
    _by_rows(n, rows)
    return y, _last(y, h0, reverse), _last(cells, c0, reverse), gates, cells


def _gru(x, w_ih, w_hh, b_ih, b_hh, h0, reverse):
    t_len, n, _ = x.shape
    h = w_hh.shape[1]
    rz = slice(0, 2 * h)
    scale = _sigmoid_scale(h, "sst", x.dtype)        # r, z sigmoid; n tanh
    w_h = _np.ascontiguousarray((w_hh * scale[:, None]).T)
    bias = b_ih.copy()
    bias[rz] += b_hh[rz]
    xw = _project(x, (w_ih * scale[:, None]).T, bias * scale)
    b_hn = b_hh[2 * h:]
    gates = _np.empty((t_len, n, 3 * h), x.dtype)   # r, z, n
    hn = _np.empty((t_len, n, h), x.dtype)          # W_hn h + b_hn
    y = _np.empty((t_len, n, h), x.dtype)

    def rows(lo: int, hi: int) -> None:
        hw = _np.empty((hi - lo, 3 * h), x.dtype)
        tmp = _np.empty((hi - lo, h), x.dtype)
        hp = h0[lo:hi]
        for t in _order(t_len, reverse):
            g = gates[t, lo:hi]
            _np.matmul(hp, w_h, out=hw)
            _np.add(xw[t, lo:hi, rz], hw[:, rz], out=g[:, rz])
            _np.tanh(g[:, rz], out=g[:, rz])
            g[:, rz] *= 0.5
            g[:, rz] += 0.5
            _np.add(hw[:, 2 * h:], b_hn, out=hn[t, lo:hi])
            nt = g[:, 2 * h:]
            _np.multiply(g[:, :h], hn[t, lo:hi], out=nt)
            nt += xw[t, lo:hi, 2 * h:]
            _np.tanh(nt, out=nt)
            _np.subtract(hp, nt, out=tmp)            # h' = n + z * (h - n)
            tmp *= g[:, h:2 * h]
            hp = y[t, lo:hi]
            _np.add(nt, tmp, out=hp)
    _by_rows(n, rows)
    return y, _last(y, h0, reverse), gates, hn


def _simple(x, w_ih, w_hh, b_ih, b_hh, h0, reverse, relu: bool):
    t_len, n, _ = x.shape
    xw = _project(x, w_ih.T, b_ih + b_hh)
    w_h = _np.ascontiguousarray(w_hh.T)
    y = _np.empty_like(xw)

    def rows(lo: int, hi: int) -> None:
        hp = h0[lo:hi]
        for t in _order(t_len, reverse):
            a = y[t, lo:hi]
            _np.matmul(hp, w_h, out=a)
            a += xw[t, lo:hi]
            if relu:
                _np.maximum(a, 0, out=a)
            else:
                _np.tanh(a, out=a)
            hp = a
    _by_rows(n, rows)
    return y, _last(y, h0, reverse)


# ----------------------------------------------------------------------------------------------
# backward
# ----------------------------------------------------------------------------------------------

def _weight_grads(d_x, d_h, x, prev, w_ih) -> tuple:
    """dx, dW_ih, dW_hh, db_ih, db_hh from the pre-activation gradients of every step on the x
    side `d_x` and the h side `d_h` ((T, N, G*H); the same array but for GRU), the h-side
    product on the helper thread while the x-side ones run here."""
    t_len, n, gh = d_x.shape
    dx2, dh2 = d_x.reshape(t_len * n, gh), d_h.reshape(t_len * n, gh)
    out = {}

    def h_side() -> None:
        out["dw_hh"] = dh2.T @ prev.reshape(t_len * n, prev.shape[2])
        out["db_hh"] = dh2.sum(axis=0)

    def x_side() -> None:
        out["dx"] = (dx2 @ w_ih).reshape(x.shape)
        out["dw_ih"] = dx2.T @ x.reshape(t_len * n, x.shape[2])
        out["db_ih"] = dx2.sum(axis=0)
    if len(_halves(n)) > 1:
        _both(x_side, h_side)
    else:
        x_side()
        h_side()
    return out["dx"], out["dw_ih"], out["dw_hh"], out["db_ih"], out["db_hh"]


def _lstm_backward(dy, dh, dc, x, w_ih, w_hh, h0, c0, y, gates, cells, reverse):
    t_len, n, h = y.shape
    d_pre = _np.empty((t_len, n, 4 * h), y.dtype)
    dh0, dc0 = _np.empty_like(dh), _np.empty_like(dc)

    def rows(lo: int, hi: int) -> None:
        i, f, g, o = (gates[:, lo:hi, k * h:(k + 1) * h] for k in range(4))
        # every factor that does not depend on the recurrence, for all steps at once (in place,
        # into few buffers)
        tc = _np.tanh(cells[:, lo:hi])
        carry = _np.multiply(tc, tc)                 # dc += dh * o (1 - tanh(c)^2)
        _np.subtract(1, carry, out=carry)
        carry *= o
        d_o = _np.subtract(1, o)                     # do_pre = dh * tanh(c) o (1 - o)
        d_o *= o
        d_o *= tc
        factors = _np.empty((t_len, hi - lo, 3, h), y.dtype)   # [di, df, dc~]_pre = dc * this
        f_i, f_f, f_g = factors[:, :, 0], factors[:, :, 1], factors[:, :, 2]
        _np.subtract(1, i, out=f_i)                  # c~ i (1 - i)
        f_i *= i
        f_i *= g
        _np.subtract(1, f, out=f_f)                  # c_prev f (1 - f)
        f_f *= f
        _times_previous(f_f, cells[:, lo:hi], c0[lo:hi], reverse)
        _np.multiply(g, g, out=f_g)                  # i (1 - c~^2)
        _np.subtract(1, f_g, out=f_g)
        f_g *= i
        by_gate = d_pre[:, lo:hi].reshape(t_len, hi - lo, 4, h)
        d_h = _np.array(dh[lo:hi])
        d_c = _np.array(dc[lo:hi])
        tmp = _np.empty((hi - lo, h), y.dtype)
        for t in _order(t_len, not reverse):
            d_h += dy[t, lo:hi]
            _np.multiply(d_h, carry[t], out=tmp)
            d_c += tmp
            _np.multiply(d_h, d_o[t], out=by_gate[t, :, 3])
            _np.multiply(factors[t], d_c[:, None, :], out=by_gate[t, :, :3])
            d_c *= f[t]
            _np.matmul(d_pre[t, lo:hi], w_hh, out=d_h)
        dh0[lo:hi], dc0[lo:hi] = d_h, d_c
    _by_rows(n, rows)
    grads = _weight_grads(d_pre, d_pre, x, _previous(y, h0, reverse), w_ih)
    return (*grads, dh0, dc0)


def _gru_backward(dy, dh, x, w_ih, w_hh, h0, y, gates, hn, reverse):
    t_len, n, h = y.shape
    prev = _previous(y, h0, reverse)
    d_x = _np.empty((t_len, n, 3 * h), y.dtype)
    d_h = _np.empty((t_len, n, 3 * h), y.dtype)
    dh0 = _np.empty_like(dh)

    def rows(lo: int, hi: int) -> None:
        r, z, nt = (gates[:, lo:hi, k * h:(k + 1) * h] for k in range(3))
        dn = (1 - z) * (1 - nt * nt)                 # dn_pre = dh * dn
        factors = _np.empty((t_len, hi - lo, 3, h), y.dtype)   # d(x side)_pre = dh * this
        _np.multiply(dn * hn[:, lo:hi], r * (1 - r), out=factors[:, :, 0])
        _np.multiply(prev[:, lo:hi] - nt, z * (1 - z), out=factors[:, :, 1])
        factors[:, :, 2] = dn
        dn_r = dn * r                                # the h-side n gradient, dh * dn_r
        by_x = d_x[:, lo:hi].reshape(t_len, hi - lo, 3, h)
        by_h = d_h[:, lo:hi].reshape(t_len, hi - lo, 3, h)
        grad = _np.array(dh[lo:hi])
        tmp = _np.empty((hi - lo, h), y.dtype)
        for t in _order(t_len, not reverse):
            grad += dy[t, lo:hi]
            _np.multiply(factors[t], grad[:, None, :], out=by_x[t])
            by_h[t, :, :2] = by_x[t, :, :2]
            _np.multiply(grad, dn_r[t], out=by_h[t, :, 2])
            _np.multiply(grad, z[t], out=tmp)
            _np.matmul(d_h[t, lo:hi], w_hh, out=grad)
            grad += tmp
        dh0[lo:hi] = grad
    _by_rows(n, rows)
    return (*_weight_grads(d_x, d_h, x, prev, w_ih), dh0)


def _simple_backward(dy, dh, x, w_ih, w_hh, h0, y, reverse, relu: bool):
    t_len, n, h = y.shape
    d_pre = _np.empty_like(y)
    dh0 = _np.empty_like(dh)

    def rows(lo: int, hi: int) -> None:
        ys = y[:, lo:hi]
        slope = (ys > 0).astype(y.dtype) if relu else 1 - ys * ys
        grad = _np.array(dh[lo:hi])
        for t in _order(t_len, not reverse):
            grad += dy[t, lo:hi]
            _np.multiply(grad, slope[t], out=d_pre[t, lo:hi])
            _np.matmul(d_pre[t, lo:hi], w_hh, out=grad)
        dh0[lo:hi] = grad
    _by_rows(n, rows)
    return (*_weight_grads(d_pre, d_pre, x, _previous(y, h0, reverse), w_ih), dh0)


# ----------------------------------------------------------------------------------------------
# the operators
# ----------------------------------------------------------------------------------------------

class RNN(Op):
    """One direction of a recurrent layer over a sequence (see the module docstring).

    Inputs: data, i2h_weight, h2h_weight, i2h_bias, h2h_bias, state [, state_cell for lstm].
    Outputs: out (T, N, H), the last state [, the last cell], then hidden outputs the backward
    reads (lstm: gate activations and cell states; gru: gate activations and W_hn h + b_hn).
    """

    name = "rnn"
    mx_name = None
    attrs = {"mode": "lstm", "state_size": 1, "reverse": False}
    inputs = ("data", "i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias", "state", "state_cell")
    save_outputs = True
    impl_fills_out = True    # the C LSTM writes into a compiled graph's buffers

    def num_outputs_for(*, mode, state_size, reverse):
        return (3 if mode == "lstm" else 2) + _HIDDEN[mode]

    def impl(x, w_ih, w_hh, b_ih, b_hh, h0, c0=None, *, mode, state_size, reverse, out=None):
        if mode == "lstm":
            done = _native().lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0, reverse, out)
            if done is not None:
                return done
        with _blas():
            if mode == "lstm":
                return _lstm(x, w_ih, w_hh, b_ih, b_hh, h0, c0, reverse)
            if mode == "gru":
                return _gru(x, w_ih, w_hh, b_ih, b_hh, h0, reverse)
            return _simple(x, w_ih, w_hh, b_ih, b_hh, h0, reverse, mode == "rnn_relu")

    def infer(x, w_ih, w_hh, b_ih, b_hh, h0, c0=None, *, mode, state_size, reverse):
        if mode not in GATES:
            raise KilnError(f"rnn: mode must be one of {sorted(GATES)}, not {mode!r}")
        if len(x.shape) != 3:
            raise ShapeError(f"rnn: data must be (sequence, batch, features), not shape "
                             f"{tuple(x.shape)}")
        t_len, n, i = x.shape
        h, g = state_size, GATES[mode]
        expected = {"i2h_weight": (w_ih, (g * h, i)), "h2h_weight": (w_hh, (g * h, h)),
                    "i2h_bias": (b_ih, (g * h,)), "h2h_bias": (b_hh, (g * h,)),
                    "state": (h0, (n, h))}
        if mode == "lstm":
            if c0 is None:
                raise ShapeError("rnn: an lstm needs a state_cell input")
            expected["state_cell"] = (c0, (n, h))
        for name, (a, shape) in expected.items():
            if tuple(a.shape) != shape:
                raise ShapeError(f"rnn ({mode}): {name} has shape {tuple(a.shape)}, expected "
                                 f"{shape} for data {tuple(x.shape)} and {h} hidden units")
        seq, state = Aval((t_len, n, h), x.dtype), Aval((n, h), x.dtype)
        if mode == "lstm":
            return seq, state, state, Aval((t_len, n, 4 * h), x.dtype), seq
        if mode == "gru":
            return seq, state, Aval((t_len, n, 3 * h), x.dtype), seq
        return seq, state

    def grad(inputs, outputs, cts, *, mode, state_size, reverse):
        x, w_ih, w_hh, b_ih, b_hh, h0 = inputs[:6]
        y = outputs[0]
        attrs = {"mode": mode, "state_size": state_size, "reverse": reverse}
        if mode == "lstm":
            args = (cts[0], cts[1], cts[2], x, w_ih, w_hh, h0, inputs[6], y, outputs[3],
                    outputs[4])
        elif mode == "gru":
            args = (cts[0], cts[1], x, w_ih, w_hh, h0, y, outputs[2], outputs[3])
        else:
            args = (cts[0], cts[1], x, w_ih, w_hh, h0, y)
        return apply(RNNBackward, args, attrs)


class RNNBackward(Op):
    """The gradient of `rnn`: (dx, dW_ih, dW_hh, db_ih, db_hh, dstate [, dstate_cell])."""

    name = "rnn_backward"
    mx_name = None
    attrs = {"mode": "lstm", "state_size": 1, "reverse": False}
    inputs = ("*data",)

    impl_fills_out = True

    def num_outputs_for(*, mode, state_size, reverse):
        return 7 if mode == "lstm" else 6

    def impl(*arrays, mode, state_size, reverse, out=None):
        if mode == "lstm":
            done = _native().lstm_backward(*arrays, reverse, out=out)
            if done is not None:
                return done
        with _blas():
            if mode == "lstm":
                return _lstm_backward(*arrays, reverse)
            if mode == "gru":
                return _gru_backward(*arrays, reverse)
            return _simple_backward(*arrays, reverse, mode == "rnn_relu")

    def infer(*avals, mode, state_size, reverse):
        k = 3 if mode == "lstm" else 2       # the cotangents come first
        x, w_ih, w_hh = avals[k], avals[k + 1], avals[k + 2]
        h0 = avals[k + 3]
        grads = (x, w_ih, w_hh, Aval((w_ih.shape[0],), x.dtype), Aval((w_ih.shape[0],), x.dtype),
                 h0)
        return grads + ((avals[k + 4],) if mode == "lstm" else ())

    def grad(inputs, outputs, cts, *, mode, state_size, reverse):
        raise KilnError("gradients of gradients through the fused rnn operator (gluon.rnn "
                        "layers) are not implemented; unroll a gluon.rnn cell instead")


def rnn_direction(x, w_ih, w_hh, b_ih, b_hh, h0, c0=None, mode: str = "lstm",
                  reverse: bool = False):
    """One direction of one recurrent layer over `x` (T, N, I): (out, last state[, last cell])."""
    attrs = {"mode": mode, "state_size": int(w_hh.shape[1]), "reverse": bool(reverse)}
    if mode == "lstm":
        out = apply(RNN, (x, w_ih, w_hh, b_ih, b_hh, h0, c0), attrs)
        return out[0], out[1], out[2]
    out = apply(RNN, (x, w_ih, w_hh, b_ih, b_hh, h0), attrs)
    return out[0], out[1], None
