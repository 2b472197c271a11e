"""`kiln.gluon.rnn`: recurrent layers (`RNN`, `LSTM`, `GRU`, one fused operator per layer and
direction) and cells (`RNNCell`, `LSTMCell`, `GRUCell`, one step each, with `unroll`)."""

from .rnn_cell import GRUCell, HybridRecurrentCell, LSTMCell, RecurrentCell, RNNCell  # noqa: F401
from .rnn_layer import GRU, LSTM, RNN  # noqa: F401
