"""`kiln.gluon.nn`: layers."""

from .basic_layers import (  # noqa: F401
    Activation, BatchNorm, Dense, Dropout, Embedding, Flatten, GroupNorm, HybridLambda,
    HybridSequential, Identity, InstanceNorm, Lambda, LayerNorm, Sequential,
)
from ..block import Block, HybridBlock  # noqa: F401
from ..symbol_block import SymbolBlock  # noqa: F401
from .conv_layers import (  # noqa: F401
    AvgPool1D, AvgPool2D, AvgPool3D, Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose, Conv3D,
    Conv3DTranspose, GlobalAvgPool1D, GlobalAvgPool2D, GlobalAvgPool3D, GlobalMaxPool1D,
    GlobalMaxPool2D, GlobalMaxPool3D, MaxPool1D, MaxPool2D, MaxPool3D,
)
