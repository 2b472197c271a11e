"""Convolution and pooling (kiln's operators take MXNet's attribute names)."""

from __future__ import annotations

from ...base import KilnError
from .table import (
    REQUIRED, _input, _npx, reader, writer,
)


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
