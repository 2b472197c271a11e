"""Recurrent cells: one time step as a block (`RNNCell`, `LSTMCell`, `GRUCell`), and `unroll`.

A cell maps `(inputs, states)` to `(output, new_states)` with MXNet's parameters (`i2h_weight`,
`h2h_weight`, `i2h_bias`, `h2h_bias`) and gate order (LSTM [i, f, c, o], GRU [r, z, n]). Cells
are hybridizable; `unroll(length, inputs)` runs one per step in Python, so hybridized it unrolls
into `length` copies of the cell. For a loop that stays one graph node, call the cell from
`npx.foreach`:

    >>> cell = rnn.LSTMCell(64)
    >>> outs, states = cell.unroll(10, x, layout='TNC', merge_outputs=True)
    >>> outs, states = npx.foreach(lambda x_t, s: cell(x_t, s), x, cell.begin_state(32))
"""

from __future__ import annotations

from ... import numpy as _knp
from ...base import KilnError
from ...ops import elementwise as _ew
from ...ops import nn as _nn_ops
from ..block import HybridBlock
from ..parameter import Parameter

__all__ = ["RecurrentCell", "HybridRecurrentCell", "RNNCell", "LSTMCell", "GRUCell"]


class RecurrentCell(HybridBlock):
    """Base class of cells: `state_info`, `begin_state`, `unroll`."""

    def __init__(self, prefix=None, params=None):
        super().__init__(prefix, params)

    def state_info(self, batch_size: int = 0) -> list[dict]:
        raise NotImplementedError

    def begin_state(self, batch_size: int = 0, func=None, **kwargs) -> list:
        """Initial states: zeros (or `func(shape=..., **kwargs)`), one per state."""
        func = _knp.zeros if func is None else func
        return [func(shape=info["shape"], **kwargs) for info in self.state_info(batch_size)]

    def reset(self) -> None:
        """MXNet's cells count their unrolled steps; kiln's keep no such state."""

    def unroll(self, length: int, inputs, begin_state=None, layout: str = "NTC",
               merge_outputs: bool | None = None, valid_length=None):
        """Run the cell over `length` steps of `inputs` ((N, T, C) for 'NTC', (T, N, C) for
        'TNC', or a list of `length` (N, C) arrays); returns (outputs, final states).

        `merge_outputs` stacks the outputs into one array (default: when `inputs` is one).
        With `valid_length` (N,), outputs past each sequence's end are zero and the states are
        those of its last valid step.
        """
        if layout not in ("NTC", "TNC"):
            raise KilnError(f"unroll: layout must be 'NTC' or 'TNC', not {layout!r}")
        axis = layout.index("T")
        if isinstance(inputs, (list, tuple)):
            steps = list(inputs)
            merge = bool(merge_outputs)
        else:
            steps = [_take(inputs, t, axis) for t in range(inputs.shape[axis])]
            merge = merge_outputs is None or merge_outputs
        if len(steps) != length:
            raise KilnError(f"unroll: {len(steps)} steps in the inputs, length={length}")
        batch = steps[0].shape[0] if length else 0
        states = list(begin_state) if begin_state is not None else self.begin_state(
            batch, dtype=steps[0].dtype if length else "float32")
        outputs, history = [], []
        for x_t in steps:
            out, states = self(x_t, states)
            outputs.append(out)
            history.append(states)
        if valid_length is not None and length:
            outputs, states = _mask(outputs, history, valid_length)
        if merge:
            outputs = _knp.stack(outputs, axis=axis)
        return outputs, states


HybridRecurrentCell = RecurrentCell


def _take(x, t: int, axis: int):
    return x[t] if axis == 0 else x[:, t]


def _mask(outputs: list, history: list, valid_length):
    """Zero the outputs past each sequence's end; take each sequence's last valid states."""
    length = len(outputs)
    steps = _knp.arange(length).reshape(length, 1)
    valid = _ew.less(steps, _knp.reshape(valid_length, (1, -1)).astype(steps.dtype))  # (T, N)
    masked = []
    for t, out in enumerate(outputs):
        keep = _knp.reshape(valid[t], (-1,) + (1,) * (len(out.shape) - 1)).astype(out.dtype)
        masked.append(out * keep)
    last = _knp.clip(valid_length.astype("int64") - 1, 0, length - 1)
    states = []
    for k in range(len(history[0])):
        stacked = _knp.stack([h[k] for h in history])            # (T, N, H)
        index = _knp.reshape(last, (1, -1, 1))
        index = _knp.broadcast_to(index, (1,) + tuple(stacked.shape[1:]))
        states.append(_knp.take_along_axis(stacked, index, axis=0)[0])
    return masked, states


class _Cell(RecurrentCell):
    """The parameters every cell has."""

    def __init__(self, hidden_size: int, gates: int, i2h_weight_initializer,
                 h2h_weight_initializer, i2h_bias_initializer, h2h_bias_initializer,
                 input_size: int, dtype="float32", prefix=None, params=None):
        super().__init__(prefix, params)
        self._hidden_size = int(hidden_size)
        self._input_size = int(input_size)
        g, h = gates, self._hidden_size
        self.i2h_weight = Parameter("i2h_weight", shape=(g * h, input_size), dtype=dtype,
                                    init=i2h_weight_initializer, allow_deferred_init=True)
        self.h2h_weight = Parameter("h2h_weight", shape=(g * h, h), dtype=dtype,
                                    init=h2h_weight_initializer, allow_deferred_init=True)
        self.i2h_bias = Parameter("i2h_bias", shape=(g * h,), dtype=dtype,
                                  init=i2h_bias_initializer, allow_deferred_init=True)
        self.h2h_bias = Parameter("h2h_bias", shape=(g * h,), dtype=dtype,
                                  init=h2h_bias_initializer, allow_deferred_init=True)

    def state_info(self, batch_size: int = 0) -> list[dict]:
        return [{"shape": (batch_size, self._hidden_size), "__layout__": "NC"}]

    def _projections(self, x, h):
        """(W_ih x + b_ih, W_hh h + b_hh)."""
        w = self.i2h_weight
        if w._data is None:
            w._infer_shape((w.shape[0], x.shape[-1]))
        n = w.shape[0]
        i2h = _nn_ops.fully_connected(x, w.data(), self.i2h_bias.data(), n, flatten=False)
        h2h = _nn_ops.fully_connected(h, self.h2h_weight.data(), self.h2h_bias.data(), n,
                                      flatten=False)
        return i2h, h2h

    def __repr__(self) -> str:
        shape = self.i2h_weight.shape
        n_in = shape[1] if shape and shape[1] > 0 else None
        return f"{type(self).__name__}({n_in} -> {self._hidden_size})"


class RNNCell(_Cell):
    """h' = activation(W_ih x + b_ih + W_hh h + b_hh); output h'."""

    def __init__(self, hidden_size: int, activation: str = "tanh", i2h_weight_initializer=None,
                 h2h_weight_initializer=None, i2h_bias_initializer="zeros",
                 h2h_bias_initializer="zeros", input_size: int = 0, dtype="float32", **kwargs):
        super().__init__(hidden_size, 1, i2h_weight_initializer, h2h_weight_initializer,
                         i2h_bias_initializer, h2h_bias_initializer, input_size, dtype, **kwargs)
        self._activation = activation

    def forward(self, inputs, states):
        i2h, h2h = self._projections(inputs, states[0])
        out = _nn_ops.activation(i2h + h2h, self._activation)
        return out, [out]


class LSTMCell(_Cell):
    """One LSTM step; states [h, c], gates [i, f, c, o]."""

    def __init__(self, hidden_size: int, i2h_weight_initializer=None,
                 h2h_weight_initializer=None, i2h_bias_initializer="zeros",
                 h2h_bias_initializer="zeros", input_size: int = 0, activation: str = "tanh",
                 recurrent_activation: str = "sigmoid", dtype="float32", **kwargs):
        super().__init__(hidden_size, 4, i2h_weight_initializer, h2h_weight_initializer,
                         i2h_bias_initializer, h2h_bias_initializer, input_size, dtype, **kwargs)
        self._act = activation
        self._rec_act = recurrent_activation

    def state_info(self, batch_size: int = 0) -> list[dict]:
        info = {"shape": (batch_size, self._hidden_size), "__layout__": "NC"}
        return [info, dict(info)]

    def forward(self, inputs, states):
        h, c = states
        i2h, h2h = self._projections(inputs, h)
        gates = _knp.split(i2h + h2h, 4, axis=-1)
        i, f, o = (_nn_ops.activation(gates[k], self._rec_act) for k in (0, 1, 3))
        c_new = f * c + i * _nn_ops.activation(gates[2], self._act)
        h_new = o * _nn_ops.activation(c_new, self._act)
        return h_new, [h_new, c_new]


class GRUCell(_Cell):
    """One GRU step; gates [r, z, n]: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),
    h' = (1 - z) * n + z * h."""

    def __init__(self, hidden_size: int, i2h_weight_initializer=None,
                 h2h_weight_initializer=None, i2h_bias_initializer="zeros",
                 h2h_bias_initializer="zeros", input_size: int = 0, dtype="float32", **kwargs):
        super().__init__(hidden_size, 3, i2h_weight_initializer, h2h_weight_initializer,
                         i2h_bias_initializer, h2h_bias_initializer, input_size, dtype, **kwargs)

    def forward(self, inputs, states):
        h = states[0]
        i2h, h2h = self._projections(inputs, h)
        x_r, x_z, x_n = _knp.split(i2h, 3, axis=-1)
        h_r, h_z, h_n = _knp.split(h2h, 3, axis=-1)
        r = _ew.sigmoid(x_r + h_r)
        z = _ew.sigmoid(x_z + h_z)
        n = _ew.tanh(x_n + r * h_n)
        h_new = (1 - z) * n + z * h
        return h_new, [h_new]
