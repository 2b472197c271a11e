"""The fused recurrent operator behind `gluon.rnn.RNN`/`LSTM`/`GRU`: one direction of one
layer over a whole sequence, forward and exact backward, in NumPy.

Layout and equations are MXNet's (and cuDNN's). `data` is (T, N, I); weights `i2h_weight`
(G*H, I), `h2h_weight` (G*H, H) and biases (G*H,) hold G gates of H units each, in MXNet's order:

    lstm  [i, f, c, o]   i, f, o = sigmoid(.), c~ = tanh(.); c' = f*c + i*c~; h' = o*tanh(c')
    gru   [r, z, n]      r, z = sigmoid(x_rz + h_rz); n = tanh(x_n + r*(W_hn h + b_hn));
                         h' = (1-z)*n + z*h
    rnn_tanh, rnn_relu   h' = act(W_ih x + b_ih + W_hh h + b_hh)

The hot path: one matrix product projects the inputs of every step at once; each step then does
a single `h @ W_hh^T` product and the gate arithmetic in a few whole-array NumPy calls writing
into preallocated buffers (sigmoids as 0.5*tanh(0.5x)+0.5 with the 0.5 folded into the weights,
so one tanh covers all gates). The gate activations (and LSTM's cell states) are hidden outputs
the backward reads. The backward computes every per-step factor that does not depend on the
recurrence for all steps at once, loops once in reverse with one `dgates @ W_hh` per step, and
finishes with three large products for the weight and input gradients. Both run NumPy's BLAS
on one thread (KILN_RNN_BLAS_THREADS): the products are small, and threads only add waiting.

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


def _previous(y, h0, reverse: bool):
    """(T, N, H): the state each step started from."""
    prev = _np.empty_like(y)
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
    if reverse:
        out[:-1] *= seq[1:]
        out[-1] *= first
    else:
        out[1:] *= seq[:-1]
        out[0] *= first


def _sigmoid_scale(h: int, gates: str, dtype) -> _np.ndarray:
    """0.5 on sigmoid gates, 1 on tanh gates: sigmoid(x) = 0.5 * tanh(0.5 x) + 0.5."""
    return _np.concatenate([_np.full(h, 1.0 if g == "t" else 0.5, dtype) for g in gates])


_POOL: list = []


def _worker():
    """One helper thread: the large products of steps already done (or not yet needed) run
    there while the recurrence runs on the calling thread. NumPy releases the GIL in matrix
    products, so on an idle second core they overlap; on a busy machine they simply queue."""
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor

        _POOL.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="kiln-rnn"))
    return _POOL[0]


def _chunks(t_len: int, reverse: bool, parts: int = 4) -> list[range]:
    """The steps in processing order, cut into `parts` runs."""
    size = max(1, -(-t_len // parts))
    starts = range(0, t_len, size)
    runs = [range(s, min(s + size, t_len)) for s in starts]
    return [range(r.stop - 1, r.start - 1, -1) for r in reversed(runs)] if reverse else runs


def _project(x, w_x, bias):
    """x @ w_x + bias for every step, as a list of futures per run of steps (in processing
    order) and the array they fill."""
    t_len, n, _ = x.shape
    xw = _np.empty((t_len, n, w_x.shape[1]), x.dtype)

    def run(lo: int, hi: int) -> None:
        _np.matmul(x[lo:hi].reshape((hi - lo) * n, -1), w_x,
                   out=xw[lo:hi].reshape((hi - lo) * n, -1))
        xw[lo:hi] += bias
    return xw, run


def _run_chunks(t_len: int, reverse: bool, project, step) -> None:
    """Run `step(t)` over every step in order, the projection of the next run of steps going
    on in the helper thread meanwhile."""
    runs = _chunks(t_len, reverse)
    pool = _worker()
    futures = [pool.submit(project, min(r), max(r) + 1) for r in runs]
    try:
        for r, fut in zip(runs, futures):
            fut.result()
            for t in r:
                step(t)
    finally:
        for fut in futures:
            fut.cancel()


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
    xw, project = _project(x, (w_ih * scale[:, None]).T, (b_ih + b_hh) * scale)
    gates = _np.empty((t_len, n, 4 * h), x.dtype)
    cells = _np.empty((t_len, n, h), x.dtype)
    y = _np.empty((t_len, n, h), x.dtype)
    tmp = _np.empty((n, h), x.dtype)
    state = [h0, c0]

    def step(t: int) -> None:
        hp, cp = state
        g = gates[t]
        _np.matmul(hp, w_h, out=g)
        g += xw[t]
        _np.tanh(g, out=g)
        g *= alpha
        g += beta
        c = cells[t]
        _np.multiply(g[:, h:2 * h], cp, out=c)
        _np.multiply(g[:, :h], g[:, 2 * h:3 * h], out=tmp)
        c += tmp
        _np.tanh(c, out=tmp)
        _np.multiply(g[:, 3 * h:], tmp, out=y[t])
        state[:] = y[t], c
    _run_chunks(t_len, reverse, project, step)
    return y, state[0].copy(), state[1].copy(), gates, cells


def _gru(x, w_ih, w_hh, b_ih, b_hh, h0, reverse):
    t_len, n, _ = x.shape
    h = w_hh.shape[1]
    rz = slice(0, 2 * h)
    scale = _sigmoid_scale(h, "sst", x.dtype)        # r, z sigmoid; n tanh
    w_h = _np.ascontiguousarray((w_hh * scale[:, None]).T)
    bias = b_ih.copy()
    bias[rz] += b_hh[rz]
    xw, project = _project(x, (w_ih * scale[:, None]).T, bias * scale)
    b_hn = b_hh[2 * h:]
    gates = _np.empty((t_len, n, 3 * h), x.dtype)   # r, z, n
    hn = _np.empty((t_len, n, h), x.dtype)          # W_hn h + b_hn
    y = _np.empty((t_len, n, h), x.dtype)
    hw = _np.empty((n, 3 * h), x.dtype)
    tmp = _np.empty((n, h), x.dtype)
    state = [h0]

    def step(t: int) -> None:
        hp = state[0]
        g = gates[t]
        _np.matmul(hp, w_h, out=hw)
        _np.add(xw[t, :, rz], hw[:, rz], out=g[:, rz])
        _np.tanh(g[:, rz], out=g[:, rz])
        g[:, rz] *= 0.5
        g[:, rz] += 0.5
        _np.add(hw[:, 2 * h:], b_hn, out=hn[t])
        nt = g[:, 2 * h:]
        _np.multiply(g[:, :h], hn[t], out=nt)
        nt += xw[t, :, 2 * h:]
        _np.tanh(nt, out=nt)
        _np.subtract(hp, nt, out=tmp)            # h' = n + z * (h - n)
        _np.multiply(tmp, g[:, h:2 * h], out=tmp)
        _np.add(nt, tmp, out=y[t])
        state[0] = y[t]
    _run_chunks(t_len, reverse, project, step)
    return y, state[0].copy(), gates, hn


def _simple(x, w_ih, w_hh, b_ih, b_hh, h0, reverse, relu: bool):
    t_len, n, _ = x.shape
    xw, project = _project(x, w_ih.T, b_ih + b_hh)
    w_h = _np.ascontiguousarray(w_hh.T)
    y = _np.empty_like(xw)
    state = [h0]

    def step(t: int) -> None:
        a = y[t]
        _np.matmul(state[0], w_h, out=a)
        a += xw[t]
        if relu:
            _np.maximum(a, 0, out=a)
        else:
            _np.tanh(a, out=a)
        state[0] = a
    _run_chunks(t_len, reverse, project, step)
    return y, _np.array(state[0])


# ----------------------------------------------------------------------------------------------
# backward
# ----------------------------------------------------------------------------------------------

class _WeightGrads:
    """dx, dW_ih, dW_hh and the biases' gradients from the pre-activation gradients of the
    steps (x side `d_x`, h side `d_h`, (T, N, G*H) each), accumulated run by run on the helper
    thread while the reverse loop goes on with the earlier steps."""

    def __init__(self, d_x, d_h, x, prev, w_ih):
        self.d_x, self.d_h, self.x, self.prev, self.w_ih = d_x, d_h, x, prev, w_ih
        gh = d_x.shape[2]
        self.dx = _np.empty(x.shape, x.dtype)   # C order: filled through reshaped views
        self.dw_ih = _np.zeros((gh, x.shape[2]), x.dtype)
        self.dw_hh = _np.zeros((gh, prev.shape[2]), x.dtype)
        self.db_ih = _np.zeros(gh, x.dtype)
        self.db_hh = _np.zeros(gh, x.dtype)
        self.pending = None

    def _run(self, lo: int, hi: int) -> None:
        rows = (hi - lo) * self.x.shape[1]
        d_x = self.d_x[lo:hi].reshape(rows, -1)
        d_h = self.d_h[lo:hi].reshape(rows, -1)
        _np.matmul(d_x, self.w_ih, out=self.dx[lo:hi].reshape(rows, -1))
        self.dw_ih += d_x.T @ self.x[lo:hi].reshape(rows, -1)
        self.dw_hh += d_h.T @ self.prev[lo:hi].reshape(rows, -1)
        self.db_ih += d_x.sum(axis=0)
        self.db_hh += d_h.sum(axis=0) if d_h is not d_x else 0

    def submit(self, steps: range) -> None:
        """The steps of `steps` are done: queue their share."""
        self.wait()
        self.pending = _worker().submit(self._run, min(steps), max(steps) + 1)

    def wait(self) -> None:
        if self.pending is not None:
            self.pending.result()
            self.pending = None

    def result(self) -> tuple:
        self.wait()
        if self.d_h is self.d_x:
            self.db_hh[:] = self.db_ih
        return self.dx, self.dw_ih, self.dw_hh, self.db_ih, self.db_hh


def _reverse_chunks(t_len: int, reverse: bool, step, grads: _WeightGrads) -> None:
    """The reverse loop, handing each finished run of steps to `grads`."""
    try:
        for r in _chunks(t_len, not reverse):
            for t in r:
                step(t)
            grads.submit(r)
    finally:
        grads.wait()


def _lstm_backward(dy, dh, dc, x, w_ih, w_hh, h0, c0, y, gates, cells, reverse):
    t_len, n, h = y.shape
    i, f, g, o = (gates[..., k * h:(k + 1) * h] for k in range(4))
    # every factor that does not depend on the recurrence, for all steps at once (in place:
    # fresh temporaries of this size cost more in page faults than the arithmetic)
    tc = _np.tanh(cells)
    carry = _np.multiply(tc, tc)                     # dc += dh * o (1 - tanh(c)^2)
    _np.subtract(1, carry, out=carry)
    carry *= o
    d_o = _np.subtract(1, o)                         # do_pre = dh * tanh(c) o (1 - o)
    d_o *= o
    d_o *= tc
    factors = _np.empty((t_len, n, 3, h), y.dtype)   # [di, df, dc~]_pre = dc * factors
    f_i, f_f, f_g = factors[:, :, 0], factors[:, :, 1], factors[:, :, 2]
    _np.subtract(1, i, out=f_i)                      # c~ i (1 - i)
    f_i *= i
    f_i *= g
    _np.subtract(1, f, out=f_f)                      # c_prev f (1 - f)
    f_f *= f
    _times_previous(f_f, cells, c0, reverse)
    _np.multiply(g, g, out=f_g)                      # i (1 - c~^2)
    _np.subtract(1, f_g, out=f_g)
    f_g *= i
    d_pre = _np.empty((t_len, n, 4, h), y.dtype)
    flat = d_pre.reshape(t_len, n, 4 * h)
    grads = _WeightGrads(flat, flat, x, _previous(y, h0, reverse), w_ih)
    dh = _np.array(dh)
    dc = _np.array(dc)
    tmp = _np.empty((n, h), y.dtype)

    def step(t: int) -> None:   # (in-place ufuncs: dh and dc belong to the enclosing call)
        _np.add(dh, dy[t], out=dh)
        _np.multiply(dh, carry[t], out=tmp)
        _np.add(dc, tmp, out=dc)
        _np.multiply(dh, d_o[t], out=d_pre[t, :, 3])
        _np.multiply(factors[t], dc[:, None, :], out=d_pre[t, :, :3])
        _np.multiply(dc, f[t], out=dc)
        _np.matmul(flat[t], w_hh, out=dh)
    _reverse_chunks(t_len, reverse, step, grads)
    return (*grads.result(), dh, dc)


def _gru_backward(dy, dh, x, w_ih, w_hh, h0, y, gates, hn, reverse):
    t_len, n, h = y.shape
    r, z, nt = (gates[..., k * h:(k + 1) * h] for k in range(3))
    prev = _previous(y, h0, reverse)
    dn = (1 - z) * (1 - nt * nt)                     # dn_pre = dh * dn
    factors = _np.empty((t_len, n, 3, h), y.dtype)   # d(x-side)_pre = dh * factors
    _np.multiply(dn * hn, r * (1 - r), out=factors[:, :, 0])
    _np.multiply(prev - nt, z * (1 - z), out=factors[:, :, 1])
    factors[:, :, 2] = dn
    dn_r = dn * r                                    # the h-side n gradient, dh * dn_r
    d_x = _np.empty((t_len, n, 3, h), y.dtype)
    d_h = _np.empty((t_len, n, 3, h), y.dtype)
    grads = _WeightGrads(d_x.reshape(t_len, n, 3 * h), d_h.reshape(t_len, n, 3 * h), x, prev,
                         w_ih)
    dh = _np.array(dh)
    tmp = _np.empty((n, h), y.dtype)

    def step(t: int) -> None:
        _np.add(dh, dy[t], out=dh)
        _np.multiply(factors[t], dh[:, None, :], out=d_x[t])
        d_h[t, :, :2] = d_x[t, :, :2]
        _np.multiply(dh, dn_r[t], out=d_h[t, :, 2])
        _np.multiply(dh, z[t], out=tmp)
        _np.matmul(d_h[t].reshape(n, 3 * h), w_hh, out=dh)
        _np.add(dh, tmp, out=dh)
    _reverse_chunks(t_len, reverse, step, grads)
    return (*grads.result(), dh)


def _simple_backward(dy, dh, x, w_ih, w_hh, h0, y, reverse, relu: bool):
    t_len, n, h = y.shape
    slope = (y > 0).astype(y.dtype) if relu else 1 - y * y
    d_pre = _np.empty_like(y)
    grads = _WeightGrads(d_pre, d_pre, x, _previous(y, h0, reverse), w_ih)
    dh = _np.array(dh)

    def step(t: int) -> None:
        _np.add(dh, dy[t], out=dh)
        _np.multiply(dh, slope[t], out=d_pre[t])
        _np.matmul(d_pre[t], w_hh, out=dh)
    _reverse_chunks(t_len, reverse, step, grads)
    return (*grads.result(), dh)


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

    def num_outputs_for(*, mode, state_size, reverse):
        return (3 if mode == "lstm" else 2) + _HIDDEN[mode]

    def impl(x, w_ih, w_hh, b_ih, b_hh, h0, c0=None, *, mode, state_size, reverse):
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

    def num_outputs_for(*, mode, state_size, reverse):
        return 7 if mode == "lstm" else 6

    def impl(*arrays, mode, state_size, reverse):
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
