"""Reductions, products, and creation operators (no inputs)."""

from __future__ import annotations

from ...base import KilnError
from ...ndarray import apply
from ...ops import linalg as _la
from ...ops import nn as _nn
from ...ops import shape as _sh
from ...ops.registry import REGISTRY
from .table import (
    REQUIRED, _in_shape, _shape_of, reader, writer,
)


# reductions and products
# ----------------------------------------------------------------------------------------------

_RED_SPEC = {"axis": ("axis", None), "keepdims": ("bool", False), "exclude": ("bool", False),
             "dtype": ("dtype", None), "initial": ("opt_float", None)}
# kiln reduction -> (legacy name written, other legacy names, numpy-mode name, numpy aliases)
_REDUCTIONS = {"sum": ("sum", "sum_axis", "_np_sum", ""),
               "mean": ("mean", "", "_npi_mean", ""),
               "max": ("max", "max_axis", "_np_max", "_np_amax"),
               "min": ("min", "min_axis", "_np_min", "_np_amin"),
               "prod": ("prod", "", "_np_prod", "_np_product")}


def _reduction_reader(kiln_name: str):
    op = REGISTRY[kiln_name]
    has_dtype = "dtype" in op.attrs

    def run(ins, a):
        if a["initial"] is not None:
            raise KilnError(f"{kiln_name} with initial={a['initial']} is not supported")
        axis = a["axis"]
        axis = (axis,) if isinstance(axis, int) else axis
        if a["exclude"]:
            ndim = len(_shape_of(ins[0], kiln_name))
            kept = {ax % ndim for ax in axis or ()}
            axis = tuple(i for i in range(ndim) if i not in kept)
        attrs = {"axis": axis, "keepdims": a["keepdims"]}
        if has_dtype:
            attrs["dtype"] = a["dtype"]
        return (apply(op, (ins[0],), attrs),)
    return run


for _k, (_legacy, _more, _numpy, _alias) in _REDUCTIONS.items():
    reader(f"{_legacy} {_more} {_numpy} {_alias}", _RED_SPEC)(_reduction_reader(_k))


@writer(" ".join(_REDUCTIONS))
def _write_reduction(node, mode):
    legacy, _, numpy, _ = _REDUCTIONS[node.op]
    axis = node.attrs["axis"]
    attrs = {}
    if axis is not None:
        if len(axis) == 0:  # NumPy's axis=() reduces nothing; MXNet 1.x reads () as all
            return None
        attrs["axis"] = axis[0] if len(axis) == 1 else tuple(axis)
    attrs["keepdims"] = node.attrs["keepdims"]
    dtype = node.attrs.get("dtype")
    if mode == "numpy":
        if dtype is not None:
            attrs["dtype"] = dtype
        return [(numpy, attrs)]
    if dtype is not None:
        return None
    return [(legacy, attrs)]


@reader("_npi_matmul")
def _read_matmul(ins, a):
    return (_la.matmul(ins[0], ins[1]),)


@reader("_np_dot")
def _read_np_dot(ins, a):
    return (_la.dot(ins[0], ins[1]),)


@reader("dot", {"transpose_a": ("bool", False), "transpose_b": ("bool", False),
                "forward_stype": ("str", None)})
def _read_dot(ins, a):
    lhs, rhs = ins[0], ins[1]
    if a["transpose_a"]:
        lhs = _sh.transpose(lhs)
    if a["transpose_b"]:
        rhs = _sh.transpose(rhs)
    if len(_shape_of(rhs, "dot")) <= 2:
        return (_la.dot(lhs, rhs),)
    # MXNet 1.x dot contracts lhs's last axis with rhs's first
    return (_la.tensordot(lhs, rhs, axes=1),)


@reader("batch_dot _npx_batch_dot", {"transpose_a": ("bool", False),
                                     "transpose_b": ("bool", False),
                                     "forward_stype": ("str", None)})
def _read_batch_dot(ins, a):
    lhs, rhs = ins[0], ins[1]
    if a["transpose_a"]:
        lhs = _sh.swapaxes(lhs, -1, -2)
    if a["transpose_b"]:
        rhs = _sh.swapaxes(rhs, -1, -2)
    return (_la.matmul(lhs, rhs),)


@writer("matmul")
def _write_matmul(node, mode):
    sa, sb = _in_shape(node, 0), _in_shape(node, 1)
    if mode == "legacy" and sa is not None and sb is not None:
        if len(sa) == 2 and len(sb) == 2:
            return [("dot", {})]
        if len(sa) == 3 and len(sb) == 3 and sa[0] == sb[0]:
            return [("batch_dot", {})]
    return [("_npi_matmul", {})]


@writer("dot")
def _write_dot(node, mode):
    sa, sb = _in_shape(node, 0), _in_shape(node, 1)
    if mode == "legacy" and sa and sb and len(sb) <= 2:
        return [("dot", {})]
    return [("_np_dot", {})]


@reader("one_hot _npx_one_hot", {"depth": ("int", REQUIRED), "on_value": ("float", 1.0),
                                 "off_value": ("float", 0.0), "dtype": ("dtype", "float32")})
def _read_one_hot(ins, a):
    return (_nn.one_hot(ins[0], a["depth"], a["on_value"], a["off_value"], a["dtype"]),)


@writer("one_hot")
def _write_one_hot(node, mode):
    a = node.attrs
    return [("one_hot", {"depth": a["depth"], "dtype": a["dtype"], "off_value": a["off_value"],
                         "on_value": a["on_value"]})]


@reader("pick _npx_pick", {"axis": ("opt_int", -1), "keepdims": ("bool", False),
                           "mode": (("clip", "wrap"), "clip")})
def _read_pick(ins, a):
    return (_nn.pick(ins[0], ins[1], axis=-1 if a["axis"] is None else a["axis"],
                     mode=a["mode"], keepdims=a["keepdims"]),)


@writer("pick")
def _write_pick(node, mode):
    a = node.attrs
    return [("pick", {"axis": a["axis"], "keepdims": a["keepdims"], "mode": a["mode"]})]



# ----------------------------------------------------------------------------------------------
# creation (no inputs): what F.zeros((1,)) writes inside a hybrid_forward
# ----------------------------------------------------------------------------------------------

#: operators that take no inputs
NULLARY = {"_zeros", "_ones", "_full", "_npi_zeros", "_npi_ones", "_npi_full"}
_CREATE_SPEC = {"shape": ("ints", ()), "dtype": ("dtype", None), "ctx": ("str", ""),
                "value": ("float", 0.0)}


def _creator(fill):
    def run(ins, a):
        from ... import numpy as knp

        dtype = a["dtype"] or "float32"
        return (knp.full(tuple(a["shape"]), fill(a), dtype=dtype),)
    return run


reader("_zeros _npi_zeros", _CREATE_SPEC)(_creator(lambda a: 0))
reader("_ones _npi_ones", _CREATE_SPEC)(_creator(lambda a: 1))
reader("_full _npi_full", _CREATE_SPEC)(_creator(lambda a: a["value"]))
