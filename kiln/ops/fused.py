"""Operators the fusion passes create: several registry operators as one node.

They exist only in optimised graphs, which the fusion passes build after differentiation, so
they need no gradient (`differentiable = False`). Their NumPy implementations compose the
implementations of the operators they replace, which keeps them equal by construction.
"""

from __future__ import annotations

import numpy as _np

from .nn import FullyConnected
from .registry import REGISTRY, Aval, Op

# The elementwise operators a fused chain may contain.
UNARY_CHAIN_OPS = frozenset({
    "negative", "absolute", "exp", "log", "sqrt", "square", "tanh", "sin", "cos", "log1p",
    "expm1", "reciprocal", "relu", "sigmoid", "softrelu", "softsign", "sign", "floor", "ceil",
})
SCALAR_CHAIN_OPS = frozenset({
    "add_scalar", "subtract_scalar", "rsubtract_scalar", "multiply_scalar",
    "true_divide_scalar", "rtrue_divide_scalar", "power_scalar", "maximum_scalar",
    "minimum_scalar",
})
BINARY_CHAIN_OPS = frozenset({"add", "subtract", "multiply", "true_divide", "maximum",
                              "minimum"})

_ACTIVATION_OPS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softrelu": "softrelu",
                   "softsign": "softsign"}


class FusedDense(Op):
    """fully_connected followed by an activation, in one node."""

    name = "fused_dense"
    mx_name = None
    attrs = {"num_hidden": 0, "no_bias": False, "flatten": True, "act_type": "relu"}
    inputs = ("data", "weight", "bias")
    differentiable = False  # made by the fusion pass, after differentiation

    def impl(x, w, b=None, *, num_hidden, no_bias, flatten, act_type):
        y = FullyConnected.impl(x, w, b, num_hidden=num_hidden, no_bias=no_bias,
                                flatten=flatten)
        return REGISTRY[act_type].impl(y)

    def infer(x, w, b=None, *, num_hidden, no_bias, flatten, act_type):
        dense = FullyConnected.infer(x, w, b, num_hidden=num_hidden, no_bias=no_bias,
                                     flatten=flatten)
        return REGISTRY[act_type].infer(dense)  # e.g. tanh of an integer product is float


class FusedElementwise(Op):
    """A chain of elementwise operators over one array, applied in one node.

    `program` is a tuple of steps `(op_name, operand)`: operand None for a unary operator,
    `("scalar", s)` for a scalar operator, `("input", k, "rhs"|"lhs")` for a binary operator
    whose other operand is extra input k (on that side of the running value).
    """

    name = "fused_elementwise"
    mx_name = None
    attrs = {"program": ()}
    inputs = ("*data",)
    differentiable = False  # made by the fusion pass, after differentiation

    def impl(x, *extras, program):
        acc = x
        for op_name, operand in program:
            op = REGISTRY[op_name]
            if operand is None:
                acc = op.impl(acc)
            elif operand[0] == "scalar":
                acc = op.impl(acc, scalar=operand[1])
            elif operand[2] == "rhs":
                acc = op.impl(acc, extras[operand[1]])
            else:
                acc = op.impl(extras[operand[1]], acc)
        return _np.asarray(acc)

    def infer(x, *extras, program):
        acc = x
        for op_name, operand in program:
            op = REGISTRY[op_name]
            if operand is None:
                acc = op.infer(acc)
            elif operand[0] == "scalar":
                acc = op.infer(acc, scalar=operand[1])
            elif operand[2] == "rhs":
                acc = op.infer(acc, extras[operand[1]])
            else:
                acc = op.infer(extras[operand[1]], acc)
        return Aval(tuple(acc.shape), acc.dtype)
