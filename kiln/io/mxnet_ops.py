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

from __future__ import annotations

import builtins
import math
from typing import NamedTuple
from collections.abc import Callable

import numpy as _np

from ..base import KilnError, ShapeError
from ..ndarray import apply
from ..ops import elementwise as _ew
from ..ops import linalg as _la
from ..ops import nn as _nn
from ..ops import shape as _sh
from ..ops.registry import REGISTRY

__all__ = ["MxOp", "READERS", "WRITERS", "KILN_PREFIX", "legacy_reshape_shape",
           "npx_reshape_shape", "AUX_INPUTS"]

KILN_PREFIX = "_kiln_"
REQUIRED = object()
_F32_MAX = 3.4028234663852886e38


class MxOp(NamedTuple):
    """How to read one MXNet operator."""

    spec: dict                          # attribute -> (kind, default or REQUIRED)
    run: Callable                       # run(inputs, attrs) -> tuple of outputs
    num_outputs: Callable               # num_outputs(attrs) -> outputs MXNet counts
    # params(input shapes, attrs) -> {input index: parameter shape}; -1 where the data's shape
    # (None when unknown) would tell
    params: Callable | None = None
    aux: tuple = ()                     # indices of auxiliary-state inputs
    subgraphs: int = 0                  # control flow: run(inputs, attrs, subgraphs)


READERS: dict[str, MxOp] = {}
WRITERS: dict[str, Callable] = {}
#: MXNet op -> inputs that are auxiliary states (written with version 1, as MXNet does)
AUX_INPUTS = {"BatchNorm": (3, 4), "_npx_batch_norm": (3, 4)}


def _one(_attrs) -> int:
    return 1


def reader(names: str, spec: dict | None = None, num_outputs=_one, params=None, aux=(),
           subgraphs: int = 0):
    """Register `run` as the reader of the space-separated MXNet op `names`."""
    def deco(run):
        op = MxOp(spec or {}, run, num_outputs, params, aux, subgraphs)
        for name in names.split():
            READERS[name] = op
        return run
    return deco


def writer(kiln_names: str):
    def deco(fn):
        for name in kiln_names.split():
            WRITERS[name] = fn
        return fn
    return deco


def _npx(name: str):
    """An npx front that only some builds have (convolution and pooling are being added)."""
    from .. import numpy_extension as npx

    fn = getattr(npx, name, None)
    if fn is None:
        raise KilnError(f"this build of kiln has no npx.{name} operator, which the graph needs")
    return fn


def _shape_of(x, what: str) -> tuple:
    try:
        return tuple(x.shape)
    except ShapeError:
        raise ShapeError(f"{what} needs the shape of its input, which is not known here; give "
                         "the input variables shapes (e.g. symbol_from_json(text, shapes="
                         "{'data': (1, 3, 224, 224)})) or load the model with "
                         "SymbolBlock.imports") from None


def _in_shape(node, i: int):
    aval = node.inputs[i].aval if i < len(node.inputs) else None
    return None if aval is None else tuple(aval.shape)


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# ----------------------------------------------------------------------------------------------
# dense, activations, normalisation, dropout
# ----------------------------------------------------------------------------------------------

def _fc_params(shapes, a):
    x = shapes[0]
    if x is None:
        in_units = -1
    else:
        in_units = _prod(x[1:]) if a["flatten"] else x[-1]
    return {1: (a["num_hidden"], in_units), 2: (a["num_hidden"],)}


@reader("FullyConnected _npx_fully_connected",
        {"num_hidden": ("int", REQUIRED), "no_bias": ("bool", False), "flatten": ("bool", True)},
        params=_fc_params)
def _read_fc(ins, a):
    bias = None if a["no_bias"] else _input(ins, 2, "bias")
    return (_nn.fully_connected(ins[0], ins[1], bias, a["num_hidden"], a["no_bias"],
                                a["flatten"]),)


@writer("fully_connected")
def _write_fc(node, mode):
    a = node.attrs
    return [("FullyConnected", {"flatten": a["flatten"], "no_bias": a["no_bias"],
                                "num_hidden": a["num_hidden"]})]


def _input(ins, i, what):
    if i >= len(ins) or ins[i] is None:
        raise KilnError(f"the node has no {what} input (input {i})")
    return ins[i]


_ACT_TYPES = ("relu", "sigmoid", "tanh", "softrelu", "softsign", "log_sigmoid", "mish")


@reader("Activation _npx_activation", {"act_type": (_ACT_TYPES, REQUIRED)})
def _read_activation(ins, a):
    return (_nn.activation(ins[0], a["act_type"]),)


@writer("softrelu softsign")
def _write_activation(node, mode):
    return [("Activation", {"act_type": node.op})]


_BN_SPEC = {"eps": ("float", 1e-3), "momentum": ("float", 0.9), "fix_gamma": ("bool", True),
            "use_global_stats": ("bool", False), "output_mean_var": ("bool", False),
            "axis": ("int", 1), "cudnn_off": ("bool", False),
            "min_calib_range": ("opt_float", None), "max_calib_range": ("opt_float", None)}


def _channel_params(indices):
    def params(shapes, a):
        x = shapes[0]
        c = -1 if x is None else x[a.get("axis", 1) % len(x)]
        return dict.fromkeys(indices, (c,))
    return params


@reader("BatchNorm _npx_batch_norm", _BN_SPEC, num_outputs=lambda a: 3,
        params=_channel_params((1, 2, 3, 4)), aux=(3, 4))
def _read_batch_norm(ins, a):
    if len(ins) != 5:
        raise KilnError(f"BatchNorm takes 5 inputs (data, gamma, beta, moving_mean, moving_var), "
                        f"not {len(ins)}")
    return tuple(_nn.batch_norm(*ins, eps=a["eps"], momentum=a["momentum"],
                                fix_gamma=a["fix_gamma"], use_global_stats=a["use_global_stats"],
                                output_mean_var=True, axis=a["axis"]))


@writer("batch_norm")
def _write_batch_norm(node, mode):
    a = node.attrs
    return [("BatchNorm", {"axis": a["axis"], "eps": a["eps"], "fix_gamma": a["fix_gamma"],
                           "momentum": a["momentum"],
                           "use_global_stats": a["use_global_stats"]})]


@reader("LayerNorm _npx_layer_norm",
        {"axis": ("int", -1), "eps": ("float", 1e-5), "output_mean_var": ("bool", False)},
        num_outputs=lambda a: 3, params=_channel_params((1, 2)))
def _read_layer_norm(ins, a):
    return tuple(_nn.layer_norm(ins[0], ins[1], ins[2], axis=a["axis"], eps=a["eps"],
                                output_mean_var=True))


@writer("layer_norm")
def _write_layer_norm(node, mode):
    return [("LayerNorm", {"axis": node.attrs["axis"], "eps": node.attrs["eps"]})]


@reader("InstanceNorm", {"eps": ("float", 1e-3)}, params=_channel_params((1, 2)))
def _read_instance_norm(ins, a):
    from ..ops import norm as _norm

    return (_norm.instance_norm(ins[0], ins[1], ins[2], eps=a["eps"]),)


@writer("instance_norm")
def _write_instance_norm(node, mode):
    return [("InstanceNorm", {"eps": node.attrs["eps"]})]


@reader("Dropout _npx_dropout",
        {"p": ("float", 0.5), "mode": (("training", "always"), "training"),
         "axes": ("ints", ()), "cudnn_off": ("bool", False)},
        num_outputs=lambda a: 2)
def _read_dropout(ins, a):
    # NOTE: the front is the identity in predict mode, as MXNet's Dropout is.
    return (_nn.dropout(ins[0], p=a["p"], mode=a["mode"], axes=a["axes"]),)


@writer("dropout")
def _write_dropout(node, mode):
    return [("Dropout", {"axes": tuple(node.attrs["axes"]), "p": node.attrs["p"]})]


def _embedding_params(shapes, a):
    return {1: (a["input_dim"], a["output_dim"])}


@reader("Embedding _npx_embedding",
        {"input_dim": ("int", REQUIRED), "output_dim": ("int", REQUIRED),
         "dtype": ("dtype", "float32"), "sparse_grad": ("bool", False)},
        params=_embedding_params)
def _read_embedding(ins, a):
    return (_nn.embedding(ins[0], ins[1], a["input_dim"], a["output_dim"]),)


@writer("embedding")
def _write_embedding(node, mode):
    return [("Embedding", {"input_dim": node.attrs["input_dim"],
                           "output_dim": node.attrs["output_dim"]})]


_LEAKY_TYPES = ("leaky", "elu", "selu", "gelu", "prelu", "rrelu")


def _leaky_params(shapes, a):
    x = shapes[0]
    if a["act_type"] != "prelu":
        return {}
    return {1: (-1 if x is None else x[1] if len(x) > 1 else 1,)}


@reader("LeakyReLU _npx_leaky_relu",
        {"act_type": (_LEAKY_TYPES, "leaky"), "slope": ("float", 0.25),
         "lower_bound": ("float", 0.125), "upper_bound": ("float", 0.334)},
        num_outputs=lambda a: 2 if a["act_type"] == "rrelu" else 1, params=_leaky_params)
def _read_leaky_relu(ins, a):
    act = a["act_type"]
    if act == "rrelu":  # randomised while training; its prediction is leaky with the mean slope
        from .. import autograd

        if autograd.is_training():
            raise KilnError("LeakyReLU(act_type='rrelu') is not supported in training")
        act, slope = "leaky", (a["lower_bound"] + a["upper_bound"]) / 2
    else:
        slope = a["slope"]
    gamma = ins[1] if act == "prelu" else None
    return (_npx("leaky_relu")(ins[0], gamma, act_type=act, slope=slope),)


@writer("leaky_relu")
def _write_leaky_relu(node, mode):
    return [("LeakyReLU", {"act_type": node.attrs["act_type"], "slope": node.attrs["slope"]})]


# ----------------------------------------------------------------------------------------------
# convolution and pooling (kiln's ops take MXNet's attribute names)
# ----------------------------------------------------------------------------------------------

_CONV_SPEC = {"kernel": ("ints", REQUIRED), "stride": ("ints", ()), "dilate": ("ints", ()),
              "pad": ("ints", ()), "num_filter": ("int", REQUIRED), "num_group": ("int", 1),
              "no_bias": ("bool", False), "layout": ("str", None), "workspace": ("int", 1024),
              "cudnn_tune": ("str", None), "cudnn_off": ("bool", False)}


def _conv_params(shapes, a):
    x = shapes[0]
    c = -1 if x is None else x[1] // a["num_group"]
    return {1: (a["num_filter"], c) + tuple(a["kernel"]), 2: (a["num_filter"],)}


def _layout(a):
    layout = a.get("layout")
    return None if layout in (None, "None") else layout


@reader("Convolution _npx_convolution", _CONV_SPEC, params=_conv_params)
def _read_convolution(ins, a):
    bias = None if a["no_bias"] else _input(ins, 2, "bias")
    return (_npx("convolution")(ins[0], ins[1], bias, kernel=a["kernel"],
                                stride=a["stride"] or None, dilate=a["dilate"] or None,
                                pad=a["pad"] or None, num_filter=a["num_filter"],
                                num_group=a["num_group"], no_bias=a["no_bias"],
                                layout=_layout(a)),)


@writer("convolution")
def _write_convolution(node, mode):
    a = node.attrs
    out = {"dilate": a["dilate"], "kernel": a["kernel"], "no_bias": a["no_bias"],
           "num_filter": a["num_filter"], "num_group": a["num_group"], "pad": a["pad"],
           "stride": a["stride"]}
    if a.get("layout"):
        out["layout"] = a["layout"]
    return [("Convolution", out)]


def _deconv_params(shapes, a):
    x = shapes[0]
    return {1: (-1 if x is None else x[1], a["num_filter"] // a["num_group"])
            + tuple(a["kernel"]), 2: (a["num_filter"],)}


@reader("Deconvolution _npx_deconvolution",
        dict(_CONV_SPEC, adj=("ints", ()), target_shape=("ints", ()), no_bias=("bool", True)),
        params=_deconv_params)
def _read_deconvolution(ins, a):
    bias = None if a["no_bias"] else _input(ins, 2, "bias")
    return (_npx("deconvolution")(ins[0], ins[1], bias, kernel=a["kernel"],
                                  stride=a["stride"] or None, dilate=a["dilate"] or None,
                                  pad=a["pad"] or None, adj=a["adj"] or None,
                                  target_shape=a["target_shape"] or None,
                                  num_filter=a["num_filter"], num_group=a["num_group"],
                                  no_bias=a["no_bias"], layout=_layout(a)),)


@writer("deconvolution")
def _write_deconvolution(node, mode):
    a = node.attrs
    out = {"adj": a["adj"], "dilate": a["dilate"], "kernel": a["kernel"],
           "no_bias": a["no_bias"], "num_filter": a["num_filter"],
           "num_group": a["num_group"], "pad": a["pad"], "stride": a["stride"]}
    if a.get("target_shape"):
        out["target_shape"] = a["target_shape"]
    if a.get("layout"):
        out["layout"] = a["layout"]
    return [("Deconvolution", out)]


def _pool_outputs(a) -> int:
    # MXNet 1.9.1 (built with oneDNN) keeps a workspace output for max pooling.
    return 2 if a["pool_type"] == "max" else 1


@reader("Pooling _npx_pooling",
        {"kernel": ("ints", ()), "pool_type": (("max", "avg", "sum", "lp"), "max"),
         "global_pool": ("bool", False), "stride": ("ints", ()), "pad": ("ints", ()),
         "pooling_convention": (("valid", "full", "same"), "valid"),
         "count_include_pad": ("bool", True), "p_value": ("opt_int", None),
         "layout": ("str", None), "cudnn_off": ("bool", False)},
        num_outputs=_pool_outputs)
def _read_pooling(ins, a):
    if a["pooling_convention"] == "same":
        raise KilnError("Pooling(pooling_convention='same') is not supported")
    return (_npx("pooling")(ins[0], kernel=a["kernel"] or None, pool_type=a["pool_type"],
                            global_pool=a["global_pool"], stride=a["stride"] or None,
                            pad=a["pad"] or None,
                            pooling_convention=a["pooling_convention"],
                            count_include_pad=a["count_include_pad"], layout=_layout(a),
                            p_value=a["p_value"]),)


@writer("pooling")
def _write_pooling(node, mode):
    a = node.attrs
    out = {"global_pool": a["global_pool"], "pad": a["pad"], "pool_type": a["pool_type"],
           "pooling_convention": a["pooling_convention"], "stride": a["stride"]}
    if a["kernel"]:
        out["kernel"] = a["kernel"]
    if a["pool_type"] == "avg":
        out["count_include_pad"] = a["count_include_pad"]
    if a.get("layout"):
        out["layout"] = a["layout"]
    return [("Pooling", dict(sorted(out.items())))]


# ----------------------------------------------------------------------------------------------
# elementwise
# ----------------------------------------------------------------------------------------------

# kiln unary op -> (legacy name, numpy-mode name, other names read)
_UNARY = {
    "negative": ("negative", "_npi_negative", ""),
    "absolute": ("abs", "_npi_absolute", "_npi_abs"),
    "exp": ("exp", "_npi_exp", ""), "expm1": ("expm1", "_npi_expm1", ""),
    "log": ("log", "_npi_log", ""), "log1p": ("log1p", "_npi_log1p", ""),
    "log2": ("log2", "_npi_log2", ""), "log10": ("log10", "_npi_log10", ""),
    "sqrt": ("sqrt", "_npi_sqrt", ""), "square": ("square", "_npi_square", ""),
    "cbrt": ("cbrt", "_npi_cbrt", ""), "reciprocal": ("reciprocal", "_npi_reciprocal", ""),
    "sin": ("sin", "_npi_sin", ""), "cos": ("cos", "_npi_cos", ""),
    "tan": ("tan", "_npi_tan", ""), "arcsin": ("arcsin", "_npi_arcsin", ""),
    "arccos": ("arccos", "_npi_arccos", ""), "arctan": ("arctan", "_npi_arctan", ""),
    "sinh": ("sinh", "_npi_sinh", ""), "cosh": ("cosh", "_npi_cosh", ""),
    "tanh": ("tanh", "_npi_tanh", ""), "sign": ("sign", "_npi_sign", ""),
    "floor": ("floor", "_npi_floor", ""), "ceil": ("ceil", "_npi_ceil", ""),
    "rint": ("rint", "_npi_rint", ""), "trunc": ("trunc", "_npi_trunc", "fix _npi_fix"),
    "relu": ("relu", "_npx_relu", ""), "sigmoid": ("sigmoid", "_npx_sigmoid", ""),
    "softsign": ("softsign", "_npx_softsign", ""),
    "logical_not": ("logical_not", "_npi_logical_not", ""),
}


def _unary_reader(kiln_name: str):
    op = REGISTRY[kiln_name]

    def run(ins, a):
        return (apply(op, (ins[0],)),)
    return run


for _k, (_legacy, _numpy, _more) in _UNARY.items():
    reader(f"{_legacy} {_numpy} {_more}")(_unary_reader(_k))


@writer(" ".join(_UNARY))
def _write_unary(node, mode):
    legacy, numpy, _ = _UNARY[node.op]
    if mode == "legacy" and node.op in ("relu", "sigmoid", "tanh"):
        return [("Activation", {"act_type": node.op})]
    return [(numpy if mode == "numpy" else legacy, {})]


# kiln binary op -> (legacy name written, legacy names read, numpy-mode name, elemwise name)
_BINARY = {
    "add": ("broadcast_add", "broadcast_plus elemwise_add _plus _Plus _add", "_npi_add",
            "elemwise_add"),
    "subtract": ("broadcast_sub", "broadcast_minus elemwise_sub _minus _Minus _sub",
                 "_npi_subtract", "elemwise_sub"),
    "multiply": ("broadcast_mul", "elemwise_mul _mul _Mul", "_npi_multiply", "elemwise_mul"),
    "true_divide": ("broadcast_div", "elemwise_div _div _Div", "_npi_true_divide",
                    "elemwise_div"),
    "power": ("broadcast_power", "_power _Power", "_npi_power", None),
    "mod": ("broadcast_mod", "_mod", "_npi_mod", None),
    "maximum": ("broadcast_maximum", "_maximum _Maximum", "_npi_maximum", None),
    "minimum": ("broadcast_minimum", "_minimum _Minimum", "_npi_minimum", None),
    "hypot": ("broadcast_hypot", "_hypot", "_npi_hypot", None),
    "arctan2": ("broadcast_arctan2", "", "_npi_arctan2", None),
    "equal": ("broadcast_equal", "_equal", "_npi_equal", None),
    "not_equal": ("broadcast_not_equal", "_not_equal", "_npi_not_equal", None),
    "greater": ("broadcast_greater", "_greater", "_npi_greater", None),
    "greater_equal": ("broadcast_greater_equal", "_greater_equal", "_npi_greater_equal", None),
    "less": ("broadcast_lesser", "_lesser", "_npi_less", None),
    "less_equal": ("broadcast_lesser_equal", "_lesser_equal", "_npi_less_equal", None),
    "logical_and": ("broadcast_logical_and", "_logical_and", "_npi_logical_and", None),
    "logical_or": ("broadcast_logical_or", "_logical_or", "_npi_logical_or", None),
    "logical_xor": ("broadcast_logical_xor", "_logical_xor", "_npi_logical_xor", None),
}
_COMPARISONS = {"equal", "not_equal", "greater", "greater_equal", "less", "less_equal",
                "logical_and", "logical_or", "logical_xor"}


def _binary_reader(kiln_name: str, legacy: bool):
    op = REGISTRY[kiln_name]
    as_number = legacy and kiln_name in _COMPARISONS

    def run(ins, a):
        out = apply(op, (ins[0], ins[1]))
        if as_number:  # MXNet 1.x comparisons give 0/1 in the operands' dtype
            out = _ew.astype(out, _np.result_type(ins[0].dtype, ins[1].dtype).name)
        return (out,)
    return run


for _k, (_legacy, _more, _numpy, _elem) in _BINARY.items():
    reader(f"{_legacy} {_more}")(_binary_reader(_k, True))
    reader(_numpy)(_binary_reader(_k, False))


@writer(" ".join(_BINARY))
def _write_binary(node, mode):
    legacy, _, numpy, elem = _BINARY[node.op]
    if mode == "numpy":
        return [(numpy, {})]
    if elem is not None and _in_shape(node, 0) is not None and \
            _in_shape(node, 0) == _in_shape(node, 1):
        return [(elem, {})]
    return [(legacy, {})]


# kiln scalar op -> (legacy name, numpy-mode name, other legacy names read)
_SCALAR = {
    "add_scalar": ("_plus_scalar", "_npi_add_scalar", "_PlusScalar"),
    "subtract_scalar": ("_minus_scalar", "_npi_subtract_scalar", "_MinusScalar"),
    "rsubtract_scalar": ("_rminus_scalar", "_npi_rsubtract_scalar", "_RMinusScalar"),
    "multiply_scalar": ("_mul_scalar", "_npi_multiply_scalar", "_MulScalar"),
    "true_divide_scalar": ("_div_scalar", "_npi_true_divide_scalar", "_DivScalar"),
    "rtrue_divide_scalar": ("_rdiv_scalar", "_npi_rtrue_divide_scalar", "_RDivScalar"),
    "power_scalar": ("_power_scalar", "_npi_power_scalar", "_PowerScalar"),
    "rpower_scalar": ("_rpower_scalar", "_npi_rpower_scalar", "_RPowerScalar"),
    "mod_scalar": ("_mod_scalar", "_npi_mod_scalar", "_ModScalar"),
    "rmod_scalar": ("_rmod_scalar", "_npi_rmod_scalar", "_RModScalar"),
    "maximum_scalar": ("_maximum_scalar", "_npi_maximum_scalar", "_MaximumScalar"),
    "minimum_scalar": ("_minimum_scalar", "_npi_minimum_scalar", "_MinimumScalar"),
    "equal_scalar": ("_equal_scalar", "_npi_equal_scalar", ""),
    "not_equal_scalar": ("_not_equal_scalar", "_npi_not_equal_scalar", ""),
    "greater_scalar": ("_greater_scalar", "_npi_greater_scalar", ""),
    "greater_equal_scalar": ("_greater_equal_scalar", "_npi_greater_equal_scalar", ""),
    "less_scalar": ("_lesser_scalar", "_npi_less_scalar", ""),
    "less_equal_scalar": ("_lesser_equal_scalar", "_npi_less_equal_scalar", ""),
}
_SCALAR_SPEC = {"scalar": ("scalar", REQUIRED), "is_int": ("bool", None)}


def _scalar_reader(kiln_name: str, legacy: bool):
    op = REGISTRY[kiln_name]
    as_number = legacy and kiln_name.replace("_scalar", "") in _COMPARISONS

    def run(ins, a):
        s = a["scalar"]
        if a["is_int"] is not None:  # numpy mode says which kind of Python number it was
            s = int(s) if a["is_int"] and math.isfinite(s) else float(s)
        out = apply(op, (ins[0],), {"scalar": s})
        if as_number:
            out = _ew.astype(out, ins[0].dtype.name)
        return (out,)
    return run


for _k, (_legacy, _numpy, _more) in _SCALAR.items():
    if _k in REGISTRY:
        reader(f"{_legacy} {_more}", _SCALAR_SPEC)(_scalar_reader(_k, True))
        reader(_numpy, _SCALAR_SPEC)(_scalar_reader(_k, False))


@writer(" ".join(k for k in _SCALAR if k in REGISTRY))
def _write_scalar(node, mode):
    legacy, numpy, _ = _SCALAR[node.op]
    s = node.attrs["scalar"]
    if isinstance(s, _np.generic):
        s = s.item()
    if isinstance(s, bool):
        s = int(s)
    if mode == "numpy":
        return [(numpy, {"is_int": isinstance(s, int), "scalar": float(s)})]
    return [(legacy, {"scalar": s})]


@reader("clip _npi_clip", {"a_min": ("opt_float", None), "a_max": ("opt_float", None)})
def _read_clip(ins, a):
    lo, hi = a["a_min"], a["a_max"]
    lo = None if lo is not None and lo <= -_F32_MAX else lo
    hi = None if hi is not None and hi >= _F32_MAX else hi
    if lo is None and hi is None:
        return (ins[0],)
    return (_ew.clip(ins[0], lo, hi),)


@writer("clip")
def _write_clip(node, mode):
    lo, hi = node.attrs["a_min"], node.attrs["a_max"]
    if not all(v is None or isinstance(v, (int, float, _np.generic)) for v in (lo, hi)):
        return None
    return [("clip", {"a_max": _F32_MAX if hi is None else float(hi),
                      "a_min": -_F32_MAX if lo is None else float(lo)})]


@reader("Cast cast _npi_cast _npx_cast amp_cast", {"dtype": ("dtype", REQUIRED)})
def _read_cast(ins, a):
    return (_ew.astype(ins[0], a["dtype"]),)


@writer("cast")
def _write_cast(node, mode):
    return [("Cast", {"dtype": node.attrs["dtype"]})]


@reader("_copy identity _np_copy _npi_copy")
def _read_copy(ins, a):
    return (_ew.copy(ins[0]),)


@writer("copy")
def _write_copy(node, mode):
    return [("_np_copy" if mode == "numpy" else "_copy", {})]


@reader("BlockGrad stop_gradient _npx_stop_gradient")
def _read_block_grad(ins, a):
    return (_ew.stop_gradient(ins[0]),)


@writer("stop_gradient")
def _write_block_grad(node, mode):
    return [("BlockGrad", {})]


@reader("where _npi_where")
def _read_where(ins, a):
    return (_ew.where(*ins[:3]),)


@reader("_npi_where_rscalar", {"scalar": ("scalar", REQUIRED)})
def _read_where_rscalar(ins, a):
    return (_ew.where(ins[0], ins[1], a["scalar"]),)


@reader("_npi_where_lscalar", {"scalar": ("scalar", REQUIRED)})
def _read_where_lscalar(ins, a):
    return (_ew.where(ins[0], a["scalar"], ins[1]),)


@writer("where")
def _write_where(node, mode):
    return [("_npi_where" if mode == "numpy" else "where", {})]


@reader("zeros_like")
def _read_zeros_like(ins, a):
    return (_ew.zeros_like(ins[0]),)


@reader("ones_like")
def _read_ones_like(ins, a):
    return (_ew.ones_like(ins[0]),)


@reader("_npi_full_like", {"fill_value": ("float", REQUIRED), "dtype": ("dtype", None)})
def _read_full_like(ins, a):
    return (_ew.full_like(ins[0], a["fill_value"], a["dtype"]),)


@writer("full_like")
def _write_full_like(node, mode):
    fill, dtype = node.attrs["fill_value"], node.attrs["dtype"]
    if not isinstance(fill, (int, float, _np.generic)):
        return None
    if dtype is None and fill in (0, 1):
        return [("zeros_like" if fill == 0 else "ones_like", {})]
    if mode == "numpy":
        return [("_npi_full_like", {"dtype": dtype or _in_dtype(node), "fill_value": float(fill)})]
    return None


def _in_dtype(node) -> str:
    aval = node.inputs[0].aval
    return "float32" if aval is None else _np.dtype(aval.dtype).name


# ----------------------------------------------------------------------------------------------
# softmax
# ----------------------------------------------------------------------------------------------

_SOFTMAX_SPEC = {"axis": ("int", -1), "temperature": ("opt_float", None),
                 "dtype": ("dtype", None), "use_length": ("bool", False)}


def _softmax_reader(front):
    def run(ins, a):
        if a["use_length"]:
            raise KilnError("softmax with use_length=True is not supported")
        out = front(ins[0], axis=a["axis"], temperature=a["temperature"])
        if a["dtype"] is not None:
            out = _ew.astype(out, a["dtype"])
        return (out,)
    return run


reader("softmax _npx_softmax", _SOFTMAX_SPEC)(_softmax_reader(_nn.softmax))
reader("log_softmax _npx_log_softmax", _SOFTMAX_SPEC)(_softmax_reader(_nn.log_softmax))


@reader("SoftmaxActivation", {"mode": (("instance", "channel"), "instance")})
def _read_softmax_activation(ins, a):
    x = ins[0]
    if a["mode"] == "channel":
        return (_nn.softmax(x, axis=1),)
    shape = _shape_of(x, "SoftmaxActivation")
    return (_sh.reshape(_nn.softmax(_sh.reshape(x, (shape[0], -1)), axis=-1), shape),)


@writer("softmax log_softmax")
def _write_softmax(node, mode):
    attrs = {"axis": node.attrs["axis"]}
    if node.attrs["temperature"] is not None:
        attrs["temperature"] = float(node.attrs["temperature"])
    return [(node.op, attrs)]


# ----------------------------------------------------------------------------------------------
# shapes
# ----------------------------------------------------------------------------------------------

def legacy_reshape_shape(shape: tuple, codes, reverse: bool = False) -> tuple:
    """The target shape of MXNet 1.x `Reshape(shape=codes)` for an input of `shape`.

    Codes: d > 0 that size; 0 copy the input dimension; -1 infer; -2 copy all remaining
    dimensions; -3 merge two input dimensions; -4 a b split one input dimension into a*b (one of
    a, b may be -1). With `reverse`, codes and dimensions are matched from the right.
    """
    shape, codes = tuple(shape), list(codes)
    if reverse:
        return tuple(reversed(legacy_reshape_shape(shape[::-1], _reverse_codes(codes))))
    out: list[int] = []
    i = j = 0
    while j < len(codes):
        c = codes[j]
        if c > 0:
            out.append(c)
            i += 1
        elif c == 0:
            _need(shape, i, codes)
            out.append(shape[i])
            i += 1
        elif c == -1:
            out.append(-1)
            i += 1
        elif c == -2:
            out.extend(shape[i:])
            i = len(shape)
        elif c == -3:
            _need(shape, i + 1, codes)
            out.append(shape[i] * shape[i + 1])
            i += 2
        elif c == -4:
            if j + 2 >= len(codes):
                raise ShapeError(f"Reshape: code -4 in {tuple(codes)} needs two sizes after it")
            _need(shape, i, codes)
            a, b = codes[j + 1], codes[j + 2]
            if a == -1:
                a = shape[i] // b
            if b == -1:
                b = shape[i] // a
            if a * b != shape[i]:
                raise ShapeError(f"Reshape: cannot split dimension {shape[i]} into {a} x {b}")
            out.extend((a, b))
            i += 1
            j += 2
        else:
            raise ShapeError(f"Reshape: unknown code {c} in {tuple(codes)}")
        j += 1
    return _sh.resolve_newshape(shape, tuple(out))


def _reverse_codes(codes: list) -> list:
    out: list[int] = []
    j = len(codes) - 1
    while j >= 0:
        if j >= 2 and codes[j - 2] == -4:  # '-4 a b' reads as '-4 b a' from the right
            out.extend((-4, codes[j], codes[j - 1]))
            j -= 3
        else:
            out.append(codes[j])
            j -= 1
    return out


def _need(shape, i, codes):
    if i >= len(shape):
        raise ShapeError(f"Reshape: codes {tuple(codes)} use more dimensions than the input "
                         f"shape {tuple(shape)} has")


def npx_reshape_shape(shape: tuple, codes, reverse: bool = False) -> tuple:
    """The target shape of numpy-mode `npx.reshape(x, codes)` (`_npx_reshape`).

    Codes: d >= 0 that size; -1 infer; -2 copy the input dimension; -3 drop an input dimension
    of size 1; -4 copy all remaining; -5 merge two input dimensions; -6 a b split one input
    dimension into a*b (one of a, b may be -1).
    """
    shape, codes = tuple(shape), list(codes)
    if reverse:
        return tuple(reversed(npx_reshape_shape(shape[::-1], _reverse_codes6(codes))))
    out: list[int] = []
    i = j = 0
    while j < len(codes):
        c = codes[j]
        if c >= 0:
            out.append(c)
            i += 1
        elif c == -1:
            out.append(-1)
            i += 1
        elif c == -2:
            _need(shape, i, codes)
            out.append(shape[i])
            i += 1
        elif c == -3:
            _need(shape, i, codes)
            if shape[i] != 1:
                raise ShapeError(f"npx.reshape: code -3 drops dimension {i}, of size "
                                 f"{shape[i]}, not 1")
            i += 1
        elif c == -4:
            out.extend(shape[i:])
            i = len(shape)
        elif c == -5:
            _need(shape, i + 1, codes)
            out.append(shape[i] * shape[i + 1])
            i += 2
        elif c == -6:
            if j + 2 >= len(codes):
                raise ShapeError(f"npx.reshape: code -6 in {tuple(codes)} needs two sizes")
            _need(shape, i, codes)
            a, b = codes[j + 1], codes[j + 2]
            if a == -1:
                a = shape[i] // b
            if b == -1:
                b = shape[i] // a
            if a * b != shape[i]:
                raise ShapeError(f"npx.reshape: cannot split dimension {shape[i]} into "
                                 f"{a} x {b}")
            out.extend((a, b))
            i += 1
            j += 2
        else:
            raise ShapeError(f"npx.reshape: unknown code {c} in {tuple(codes)}")
        j += 1
    return _sh.resolve_newshape(shape, tuple(out))


def _reverse_codes6(codes: list) -> list:
    out: list[int] = []
    j = len(codes) - 1
    while j >= 0:
        if j >= 2 and codes[j - 2] == -6:
            out.extend((-6, codes[j], codes[j - 1]))
            j -= 3
        else:
            out.append(codes[j])
            j -= 1
    return out


@reader("Reshape reshape", {"shape": ("ints", ()), "reverse": ("bool", False),
                            "target_shape": ("ints", ()), "keep_highest": ("bool", False)})
def _read_reshape(ins, a):
    x = ins[0]
    codes = a["shape"] or a["target_shape"]
    if all(c > 0 or c == -1 for c in codes) and not a["reverse"]:
        return (_sh.reshape(x, codes),)
    return (_sh.reshape(x, legacy_reshape_shape(_shape_of(x, "Reshape"), codes,
                                                a["reverse"])),)


@reader("_np_reshape", {"newshape": ("ints", REQUIRED), "order": (("C",), "C")})
def _read_np_reshape(ins, a):
    codes = a["newshape"]
    if all(c >= -1 for c in codes):
        return (_sh.reshape(ins[0], codes),)
    return (_sh.reshape(ins[0], npx_reshape_shape(_shape_of(ins[0], "reshape"), codes)),)


@reader("_npx_reshape", {"newshape": ("ints", REQUIRED), "reverse": ("bool", False),
                         "order": (("C",), "C")})
def _read_npx_reshape(ins, a):
    codes = a["newshape"]
    if all(c >= -1 for c in codes) and not a["reverse"]:
        return (_sh.reshape(ins[0], codes),)
    return (_sh.reshape(ins[0], npx_reshape_shape(_shape_of(ins[0], "npx.reshape"), codes,
                                                  a["reverse"])),)


@reader("Flatten flatten _npx_batch_flatten")
def _read_flatten(ins, a):
    shape = _shape_of(ins[0], "Flatten")
    return (_sh.reshape(ins[0], (shape[0], _prod(shape[1:])) if shape else (1, 1)),)


@writer("reshape")
def _write_reshape(node, mode):
    new = tuple(node.attrs["newshape"])
    src = _in_shape(node, 0)
    if src is not None and len(src) >= 2 and len(new) == 2 and new[0] == src[0] and \
            new[1] in (-1, _prod(src[1:])):
        return [("Flatten", {})]
    batch_copy = src is not None and len(src) >= 1 and len(new) >= 1 and new[0] == src[0] \
        and src[0] > 0 and (src[0] != 1 or len(src) > 1)
    if mode == "numpy":
        if batch_copy:  # keep the batch dimension free, as a hand-written reshape would
            return [("_npx_reshape", {"newshape": (-2,) + new[1:]})]
        return [("_np_reshape", {"newshape": new, "order": "C"})]
    if 0 in new:
        return [("_np_reshape", {"newshape": new, "order": "C"})]
    if batch_copy:
        new = (0,) + new[1:]
    return [("Reshape", {"shape": new})]


@reader("transpose _np_transpose _npi_transpose", {"axes": ("opt_ints", None)})
def _read_transpose(ins, a):
    axes = a["axes"] or None
    if axes is not None and any(ax is None for ax in axes):
        raise KilnError(f"transpose: axes {axes} hold None")
    return (_sh.transpose(ins[0], axes),)


@writer("transpose")
def _write_transpose(node, mode):
    axes = node.attrs["axes"]
    attrs = {} if axes is None else {"axes": tuple(axes)}
    return [("_np_transpose" if mode == "numpy" else "transpose", attrs)]


@reader("expand_dims _npi_expand_dims", {"axis": ("int", REQUIRED)})
def _read_expand_dims(ins, a):
    return (_sh.expand_dims(ins[0], a["axis"]),)


@writer("expand_dims")
def _write_expand_dims(node, mode):
    return [("_npi_expand_dims" if mode == "numpy" else "expand_dims",
             {"axis": node.attrs["axis"]})]


@reader("squeeze _np_squeeze _npi_squeeze", {"axis": ("axis", None)})
def _read_squeeze(ins, a):
    return (_sh.squeeze(ins[0], a["axis"]),)


@writer("squeeze")
def _write_squeeze(node, mode):
    axis = node.attrs["axis"]
    attrs = {} if axis is None else {"axis": axis[0] if len(axis) == 1 else tuple(axis)}
    return [("_np_squeeze" if mode == "numpy" else "squeeze", attrs)]


@reader("Concat concat", {"dim": ("int", 1), "num_args": ("int", None)})
def _read_concat(ins, a):
    return (_sh.concatenate(ins, axis=a["dim"]),)


@reader("_npi_concatenate", {"axis": ("opt_int", 0), "num_args": ("int", None)})
def _read_np_concatenate(ins, a):
    return (_sh.concatenate(ins, axis=a["axis"]),)


@writer("concatenate")
def _write_concatenate(node, mode):
    n = len(node.inputs)
    if mode == "numpy":
        return [("_npi_concatenate", {"axis": node.attrs["axis"], "num_args": n})]
    return [("Concat", {"dim": node.attrs["axis"], "num_args": n})]


@reader("stack _npi_stack", {"axis": ("int", 0), "num_args": ("int", None)})
def _read_stack(ins, a):
    return (_sh.stack(ins, axis=a["axis"]),)


@writer("stack")
def _write_stack(node, mode):
    return [("_npi_stack" if mode == "numpy" else "stack",
             {"axis": node.attrs["axis"], "num_args": len(node.inputs)})]


def _squeezed(parts, axis, squeeze):
    return tuple(_sh.squeeze(p, axis) if squeeze else p for p in parts)


@reader("SliceChannel split", {"num_outputs": ("int", REQUIRED), "axis": ("int", 1),
                               "squeeze_axis": ("bool", False)},
        num_outputs=lambda a: a["num_outputs"])
def _read_slice_channel(ins, a):
    parts = _sh.split(ins[0], a["num_outputs"], axis=a["axis"])
    return _squeezed(parts, a["axis"], a["squeeze_axis"])


def _split_v2_outputs(a) -> int:
    return a["sections"] if a["sections"] > 0 else builtins.max(len(a["indices"]), 1)


@reader("_split_v2 _npi_split",
        {"indices": ("ints", ()), "axis": ("int", 0), "squeeze_axis": ("bool", False),
         "sections": ("int", 0)}, num_outputs=_split_v2_outputs)
def _read_split_v2(ins, a):
    if a["sections"] > 0:
        parts = _sh.split(ins[0], a["sections"], axis=a["axis"])
    else:  # MXNet writes the cut points with a leading 0
        parts = _sh.split(ins[0], list(a["indices"][1:]), axis=a["axis"])
    return _squeezed(parts, a["axis"], a["squeeze_axis"])


@writer("split")
def _write_split(node, mode):
    indices, axis = tuple(node.attrs["indices"]), node.attrs["axis"]
    src = _in_shape(node, 0)
    n = len(indices) + 1
    if mode == "legacy" and src is not None and src[axis] % n == 0 and \
            indices == tuple(src[axis] // n * k for k in range(1, n)):
        return [("SliceChannel", {"axis": axis, "num_outputs": n})]
    return [("_split_v2", {"axis": axis, "indices": [0, *indices], "sections": 0,
                           "squeeze_axis": False})]


@reader("slice crop _npi_slice", {"begin": ("opt_ints", REQUIRED), "end": ("opt_ints", REQUIRED),
                                  "step": ("opt_ints", ())})
def _read_slice(ins, a):
    begin, end, step = a["begin"] or (), a["end"] or (), a["step"] or ()
    if len(end) != len(begin) or len(step) > len(begin):
        raise KilnError(f"slice: begin {begin}, end {end} and step {step} differ in length")
    key = tuple(slice(b, e, step[i] if i < len(step) else None)
                for i, (b, e) in enumerate(zip(begin, end, strict=True)))
    return (_sh.getitem(ins[0], key),)


@reader("slice_axis", {"axis": ("int", REQUIRED), "begin": ("int", REQUIRED),
                       "end": ("opt_int", REQUIRED)})
def _read_slice_axis(ins, a):
    axis = a["axis"]
    cut = slice(a["begin"], a["end"])
    key = (slice(None),) * axis + (cut,) if axis >= 0 else \
        (Ellipsis, cut) + (slice(None),) * (-axis - 1)
    return (_sh.getitem(ins[0], key),)


@writer("getitem")
def _write_getitem(node, mode):
    key = node.attrs["key"]
    if not isinstance(key, tuple) or not key or not all(
            isinstance(k, slice) or (isinstance(k, int) and not isinstance(k, bool))
            for k in key):
        return None
    begin, end, step, squeeze = [], [], [], []
    for axis, k in enumerate(key):
        if isinstance(k, int):
            begin.append(k)
            end.append(None if k == -1 else k + 1)
            step.append(None)
            squeeze.append(axis)
        else:
            if k.step is not None and k.step <= 0:
                return None
            begin.append(k.start)
            end.append(k.stop)
            step.append(k.step)
    chain = [("slice", {"begin": begin, "end": end, "step": step})]
    if squeeze:
        axis = squeeze[0] if len(squeeze) == 1 else tuple(squeeze)
        chain.append(("_np_squeeze" if mode == "numpy" else "squeeze", {"axis": axis}))
    return chain


@reader("broadcast_to _npi_broadcast_to", {"shape": ("ints", REQUIRED)})
def _read_broadcast_to(ins, a):
    shape = a["shape"]
    if 0 in shape:  # legacy: 0 keeps the input's dimension
        src = _shape_of(ins[0], "broadcast_to")
        shape = tuple(src[i] if d == 0 else d for i, d in enumerate(shape))
    return (_sh.broadcast_to(ins[0], shape),)


@writer("broadcast_to")
def _write_broadcast_to(node, mode):
    return [("_npi_broadcast_to" if mode == "numpy" else "broadcast_to",
             {"shape": tuple(node.attrs["shape"])})]


@reader("tile _npi_tile", {"reps": ("ints", REQUIRED)})
def _read_tile(ins, a):
    return (_sh.tile(ins[0], a["reps"]),)


@writer("tile")
def _write_tile(node, mode):
    return [("_npi_tile" if mode == "numpy" else "tile", {"reps": tuple(node.attrs["reps"])})]


@reader("reverse flip _npi_flip", {"axis": ("axis", None)})
def _read_flip(ins, a):
    return (_sh.flip(ins[0], a["axis"]),)


@writer("flip")
def _write_flip(node, mode):
    axis = node.attrs["axis"]
    if axis is None:
        return None
    return [("_npi_flip" if mode == "numpy" else "reverse", {"axis": tuple(axis)})]


# ----------------------------------------------------------------------------------------------
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
        from .. import numpy as knp

        dtype = a["dtype"] or "float32"
        return (knp.full(tuple(a["shape"]), fill(a), dtype=dtype),)
    return run


reader("_zeros _npi_zeros", _CREATE_SPEC)(_creator(lambda a: 0))
reader("_ones _npi_ones", _CREATE_SPEC)(_creator(lambda a: 1))
reader("_full _npi_full", _CREATE_SPEC)(_creator(lambda a: a["value"]))


from . import mxnet_recurrent  # noqa: E402,F401  (registers _foreach, _while_loop, _cond, RNN)
