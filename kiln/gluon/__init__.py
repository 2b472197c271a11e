"""`kiln.gluon`: MXNet Gluon's high-level interface: blocks, layers, parameters and training."""

from . import nn, rnn  # noqa: F401
from .block import Block, HybridBlock  # noqa: F401
from .parameter import Constant, Parameter, ParameterDict  # noqa: F401
from . import data, loss  # noqa: F401
from .. import metric, utils  # noqa: F401
from .trainer import Trainer  # noqa: F401
from .symbol_block import SymbolBlock  # noqa: F401
