"""`kiln.gluon.nn`: layers."""

from .basic_layers import (  # noqa: F401
    Activation, BatchNorm, Dense, Dropout, Embedding, Flatten, GroupNorm, HybridLambda,
    HybridSequential, Identity, InstanceNorm, Lambda, LayerNorm, Sequential,
)
from ..block import Block, HybridBlock  # noqa: F401
from ..symbol_block import SymbolBlock  # noqa: F401
