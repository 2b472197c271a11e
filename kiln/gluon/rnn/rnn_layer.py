"""Recurrent layers: `RNN`, `LSTM`, `GRU`, with MXNet's parameters, layouts and states.

Each layer and direction is one fused `rnn` operator (`kiln/ops/rnn.py`): the inputs of all
steps are projected by one matrix product, each step does one `h @ W_hh^T` product and the gate
arithmetic, and the exact backward runs as one reverse pass. Hybridized, a layer is a handful of
graph nodes whatever the sequence length.

Parameters are MXNet's, by name and layout: for layer `k` and direction `l` (left to right) or
`r` (right to left, when bidirectional), `l0_i2h_weight` (G*H, I), `l0_h2h_weight` (G*H, H),
`l0_i2h_bias`, `l0_h2h_bias` (G*H,), gates in MXNet's order (LSTM [i, f, c, o], GRU [r, z, n]).
States are (num_layers * directions, N, H), layer-major; bidirectional outputs concatenate the
two directions' features.

    >>> layer = rnn.LSTM(256, num_layers=2)            # layout 'TNC': (time, batch, features)
    >>> layer.initialize()
    >>> out = layer(np.ones((35, 32, 128)))             # (35, 32, 256)
    >>> out, [h, c] = layer(x, layer.begin_state(32))   # with states in and out
"""

from __future__ import annotations

import re

from ... import numpy as _knp
from ...base import KilnError, ShapeError
from ...ops import nn as _nn_ops
from ...ops.rnn import GATES, rnn_direction
from ..block import HybridBlock
from ..parameter import Parameter

__all__ = ["RNN", "LSTM", "GRU", "fused_name"]

_UNFUSED = re.compile(r"^(.*)_unfused\.(\d+)\.(?:([lr])_cell\.)?((?:i2h|h2h)_(?:weight|bias))$")


def fused_name(name: str) -> str:
    """The kiln (and MXNet fused) name of a parameter MXNet 1.x saved under its unfused cell's
    name: '_unfused.1.r_cell.i2h_weight' -> 'r1_i2h_weight'. Other names are returned as is."""
    m = _UNFUSED.match(name)
    if m is None:
        return name
    prefix, layer, direction, rest = m.groups()
    return f"{prefix}{direction or 'l'}{layer}_{rest}"


class _RNNLayer(HybridBlock):
    """What RNN, LSTM and GRU share."""

    def __init__(self, hidden_size: int, num_layers: int, layout: str, dropout: float,
                 bidirectional: bool, input_size: int, i2h_weight_initializer,
                 h2h_weight_initializer, i2h_bias_initializer, h2h_bias_initializer, mode: str,
                 dtype="float32", prefix=None, params=None):
        super().__init__(prefix, params)
        if layout not in ("TNC", "NTC"):
            raise KilnError(f"{type(self).__name__}: layout must be 'TNC' or 'NTC', not "
                            f"{layout!r}")
        if num_layers < 1:
            raise KilnError(f"{type(self).__name__}: num_layers must be at least 1")
        self._hidden_size = int(hidden_size)
        self._num_layers = int(num_layers)
        self._layout = layout
        self._dropout = float(dropout)
        self._dir = 2 if bidirectional else 1
        self._input_size = int(input_size)
        self._mode = mode
        self._gates = GATES[mode]
        g, h = self._gates, self._hidden_size
        n_in = self._input_size
        for k in range(self._num_layers):
            for d in "lr"[:self._dir]:
                for name, shape, init in (("i2h_weight", (g * h, n_in), i2h_weight_initializer),
                                          ("h2h_weight", (g * h, h), h2h_weight_initializer),
                                          ("i2h_bias", (g * h,), i2h_bias_initializer),
                                          ("h2h_bias", (g * h,), h2h_bias_initializer)):
                    setattr(self, f"{d}{k}_{name}",
                            Parameter(f"{d}{k}_{name}", shape=shape, init=init, dtype=dtype,
                                      allow_deferred_init=True))
            n_in = h * self._dir

    def __repr__(self) -> str:
        shape = self.l0_i2h_weight.shape
        n_in = shape[1] if shape and shape[1] > 0 else None
        extra = ", bidirectional" if self._dir == 2 else ""
        return (f"{type(self).__name__}({n_in} -> {self._hidden_size}, {self._layout}, "
                f"num_layers={self._num_layers}{extra})")

    def state_info(self, batch_size: int = 0) -> list[dict]:
        shape = (self._num_layers * self._dir, batch_size, self._hidden_size)
        n = 2 if self._mode == "lstm" else 1
        return [{"shape": shape, "__layout__": "LNC"} for _ in range(n)]

    def begin_state(self, batch_size: int = 0, func=None, **kwargs) -> list:
        """Initial states: zeros (or `func(shape=..., **kwargs)`), one per state."""
        func = _knp.zeros if func is None else func
        dtype = kwargs.pop("dtype", self.l0_h2h_weight.dtype)
        return [func(shape=info["shape"], dtype=dtype, **kwargs)
                for info in self.state_info(batch_size)]

    def forward(self, inputs, states=None):
        """`inputs` (T, N, C) for layout 'TNC' (N, T, C for 'NTC'). Without `states`, returns
        the output; with them, (output, new states)."""
        if len(inputs.shape) != 3:
            raise ShapeError(f"{type(self).__name__}: inputs must have 3 axes ({self._layout}), "
                             f"not shape {tuple(inputs.shape)}")
        x = _knp.swapaxes(inputs, 0, 1) if self._layout == "NTC" else inputs
        batch = x.shape[1]
        given = states is not None
        if not given:
            states = self.begin_state(batch, dtype=x.dtype)
        elif not isinstance(states, (list, tuple)):
            states = [states]
        states = self._check_states(states, batch)
        if self.l0_i2h_weight._data is None:  # deferred initialization: the input size is known
            for d in "lr"[:self._dir]:
                getattr(self, f"{d}0_i2h_weight")._infer_shape(
                    (self._gates * self._hidden_size, x.shape[2]))
        new_h, new_c = [], []
        for k in range(self._num_layers):
            outs = []
            for d in range(self._dir):
                idx = k * self._dir + d
                y, h_t, c_t = rnn_direction(
                    x, *self._params_of("lr"[d], k), states[0][idx],
                    states[1][idx] if self._mode == "lstm" else None, self._mode, d == 1)
                outs.append(y)
                new_h.append(h_t)
                new_c.append(c_t)
            x = outs[0] if self._dir == 1 else _knp.concatenate(outs, axis=2)
            if self._dropout and k < self._num_layers - 1:
                x = _nn_ops.dropout(x, p=self._dropout)
        out = _knp.swapaxes(x, 0, 1) if self._layout == "NTC" else x
        if not given:
            return out
        new_states = [_knp.stack(new_h)]
        if self._mode == "lstm":
            new_states.append(_knp.stack(new_c))
        return out, new_states

    def _params_of(self, d: str, k: int) -> tuple:
        return tuple(getattr(self, f"{d}{k}_{name}").data()
                     for name in ("i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias"))

    def _check_states(self, states, batch: int) -> list:
        info = self.state_info(batch)
        if len(states) != len(info):
            raise KilnError(f"{type(self).__name__}: expected {len(info)} state arrays "
                            f"({'h and c' if len(info) == 2 else 'h'}), got {len(states)}")
        for s, i in zip(states, info):
            if tuple(s.shape) != i["shape"]:
                raise ShapeError(f"{type(self).__name__}: a state has shape {tuple(s.shape)}, "
                                 f"expected {i['shape']} (layers * directions, batch, hidden)")
        return list(states)


class RNN(_RNNLayer):
    """Elman RNN: h' = activation(W_ih x + b_ih + W_hh h + b_hh), `activation` 'relu' (MXNet's
    default) or 'tanh'."""

    def __init__(self, hidden_size: int, num_layers: int = 1, activation: str = "relu",
                 layout: str = "TNC", dropout: float = 0, bidirectional: bool = False,
                 i2h_weight_initializer=None, h2h_weight_initializer=None,
                 i2h_bias_initializer="zeros", h2h_bias_initializer="zeros", input_size: int = 0,
                 dtype="float32", **kwargs):
        if activation not in ("relu", "tanh"):
            raise KilnError(f"RNN: activation must be 'relu' or 'tanh', not {activation!r}")
        super().__init__(hidden_size, num_layers, layout, dropout, bidirectional, input_size,
                         i2h_weight_initializer, h2h_weight_initializer, i2h_bias_initializer,
                         h2h_bias_initializer, "rnn_" + activation, dtype, **kwargs)


class LSTM(_RNNLayer):
    """Long short-term memory, gates [i, f, c, o] as in MXNet."""

    def __init__(self, hidden_size: int, num_layers: int = 1, layout: str = "TNC",
                 dropout: float = 0, bidirectional: bool = False, input_size: int = 0,
                 i2h_weight_initializer=None, h2h_weight_initializer=None,
                 i2h_bias_initializer="zeros", h2h_bias_initializer="zeros",
                 projection_size=None, dtype="float32", **kwargs):
        if projection_size:
            raise KilnError("LSTM: projection_size is not supported")
        for key in ("state_clip_min", "state_clip_max"):
            if kwargs.pop(key, None) is not None:
                raise KilnError(f"LSTM: {key} is not supported")
        kwargs.pop("state_clip_nan", None)
        kwargs.pop("h2h_projection_initializer", None)
        super().__init__(hidden_size, num_layers, layout, dropout, bidirectional, input_size,
                         i2h_weight_initializer, h2h_weight_initializer, i2h_bias_initializer,
                         h2h_bias_initializer, "lstm", dtype, **kwargs)


class GRU(_RNNLayer):
    """Gated recurrent unit, gates [r, z, n] as in MXNet (and cuDNN):
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h."""

    def __init__(self, hidden_size: int, num_layers: int = 1, layout: str = "TNC",
                 dropout: float = 0, bidirectional: bool = False, input_size: int = 0,
                 i2h_weight_initializer=None, h2h_weight_initializer=None,
                 i2h_bias_initializer="zeros", h2h_bias_initializer="zeros", dtype="float32",
                 **kwargs):
        super().__init__(hidden_size, num_layers, layout, dropout, bidirectional, input_size,
                         i2h_weight_initializer, h2h_weight_initializer, i2h_bias_initializer,
                         h2h_bias_initializer, "gru", dtype, **kwargs)
