"""Dense layers, activations, normalisation, dropout, embeddings."""

from __future__ import annotations

from ...base import KilnError
from ...ops import nn as _nn
from .table import (
    REQUIRED, _input, _npx, _prod, reader, writer,
)


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
    from ...ops import norm as _norm

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
        from ... import autograd

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
