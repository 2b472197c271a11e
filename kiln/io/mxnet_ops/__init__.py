"""The translation table between MXNet 1.x operators and kiln operators, both ways.

Reading (`READERS`): each MXNet op name maps to an `MxOp`: the attributes it takes (kind and
default, parsed when the file is loaded, so a bad value is reported at once), how many outputs
MXNet counts for it (hidden ones included: BatchNorm 3, Dropout 2, max Pooling 2), which inputs
are auxiliary states, and `run(inputs, attrs)`, written with kiln's functional fronts. Because
the fronts go through `apply`, `run` computes on arrays, records graph nodes on symbols (while a
block is traced), and follows the train/predict mode: an imported BatchNorm uses batch statistics
and updates its running ones while training, an imported Dropout drops only while training.

Writing (`WRITERS`): each kiln op name maps to a function of the graph node and the file mode
('numpy' for MXNet's numpy mode, 'legacy' otherwise) giving the MXNet node(s) to write:
`[(mx_op, attrs)]`, a chain whose first node takes the kiln node's inputs. It returns None when
the node's attributes have no MXNet equivalent; the writer then falls back to a kiln node.

kiln operators without an MXNet counterpart (fused ops, gradient helpers ...) are written as
`_kiln_<name>` with attributes in kiln's literal syntax; kiln reads them back, MXNet cannot.
"""

# The machinery first: the operator modules (and mxnet_recurrent, which imports this package)
# register themselves through it.
from .table import (
    AUX_INPUTS, KILN_PREFIX, READERS, REQUIRED, WRITERS, MxOp, reader, writer,
)
from . import conv, elementwise, nn, reduce, shapes  # noqa: F401
from .reduce import NULLARY  # noqa: F401  (creation ops: nodes without inputs)
from .shapes import legacy_reshape_shape, npx_reshape_shape
from .. import mxnet_recurrent  # noqa: F401  (registers _foreach, _while_loop, _cond, RNN)

__all__ = ["MxOp", "READERS", "WRITERS", "KILN_PREFIX", "REQUIRED", "reader", "writer",
           "legacy_reshape_shape", "npx_reshape_shape", "AUX_INPUTS"]
