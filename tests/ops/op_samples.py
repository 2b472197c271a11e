"""Sample inputs for every registered operator, read by `test_registry.py`.

`SAMPLES[op_name]` is a list of `Sample`s: NumPy inputs (None for an absent optional input) and
the attributes to pass (the others take the operator's defaults). The registry test runs `impl`
on each and checks that `infer` predicts the same shapes and dtypes, and that `grad` returns one
cotangent of the right shape per input.

Adding an operator? Add an entry here, e.g.

    SAMPLES["my_op"] = [sample(F32_23, axis=1)]

A registered operator without an entry fails `test_every_operator_has_samples`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as onp

from kiln.base import KilnError


class Sample(NamedTuple):
    inputs: tuple
    attrs: dict
    #: the error `infer` raises by design (data-dependent shapes), or None
    infer_error: type | None = None
    #: the error `grad` raises by design (a gradient kiln does not implement), or None
    grad_error: type | None = None
    #: the bodies of a control-flow operator, as IR text
    subgraphs: tuple = ()


def sample(*inputs, **attrs) -> Sample:
    return Sample(tuple(inputs), attrs)


def with_bodies(s: Sample, *bodies: str) -> Sample:
    """The sample of a control-flow operator, with its bodies written as IR text."""
    from kiln.graph.ir import parse_graph

    return s._replace(subgraphs=tuple(parse_graph(b) for b in bodies))


def no_grad(s: Sample) -> Sample:
    """The sample, for a case whose gradient raises a KilnError on purpose."""
    return s._replace(grad_error=KilnError)


_rng = onp.random.default_rng(0)


def _f32(*shape, low=0.2, high=0.8):
    return _rng.uniform(low, high, size=shape).astype("float32")


F32_23 = _f32(2, 3)
F32_3 = _f32(3)
F64_23 = _f32(2, 3).astype("float64")
I32_23 = onp.array([[1, 6, 12], [3, 5, 9]], dtype="int32")
I32_3 = onp.array([2, 3, 4], dtype="int32")
B_23 = F32_23 > 0.5

SAMPLES: dict[str, list[Sample]] = {}

# ---- unary elementwise ------------------------------------------------------------------------
for _name in ("absolute", "fabs", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p",
              "sqrt", "cbrt", "square", "reciprocal", "sin", "cos", "tan", "arcsin", "arccos",
              "arctan", "sinh", "cosh", "tanh", "arcsinh", "arctanh", "degrees", "radians",
              "sign", "floor", "ceil", "rint", "trunc", "isnan", "isinf", "isfinite", "signbit",
              "logical_not", "negative", "relu", "sigmoid", "softrelu", "softsign",
              "stop_gradient", "copy"):
    SAMPLES[_name] = [sample(F32_23), sample(F64_23), sample(I32_3)]
SAMPLES["arccosh"] = [sample(F32_23 + 1.5), sample(I32_3)]
SAMPLES["invert"] = [sample(I32_23), sample(B_23)]
SAMPLES["around"] = [sample(F32_23, decimals=2), sample(I32_3, decimals=-1)]
SAMPLES["cast"] = [sample(F32_23, dtype="float64"), sample(F32_23, dtype="int32"),
                   sample(I32_3, dtype="float16")]
SAMPLES["clip"] = [sample(F32_23, a_min=0.3, a_max=0.6), sample(F32_23, a_max=0.5),
                   sample(I32_3, a_min=0.5, a_max=2.5), sample(I32_3, a_min=1, a_max=3)]
SAMPLES["nan_to_num"] = [sample(onp.array([1.0, onp.nan, onp.inf], "float32")),
                         sample(I32_3, nan=1.0, posinf=2.0, neginf=-2.0)]
SAMPLES["full_like"] = [sample(F32_23, fill_value=2.0), sample(F32_23, fill_value=1,
                                                              dtype="int32")]

# ---- binary elementwise: array-array, array-scalar, scalar-array --------------------------------
_FLOAT_BINARY = ("add", "subtract", "multiply", "true_divide", "power", "mod", "fmod",
                 "floor_divide", "maximum", "minimum", "fmax", "fmin", "arctan2", "hypot",
                 "logaddexp", "copysign", "heaviside", "equal", "not_equal", "less", "greater",
                 "less_equal", "greater_equal", "logical_and", "logical_or", "logical_xor")
_INT_BINARY = ("bitwise_and", "bitwise_or", "bitwise_xor", "gcd", "lcm", "left_shift",
               "right_shift")
_REVERSED = ("subtract", "true_divide", "power", "mod", "fmod", "floor_divide", "arctan2",
             "copysign", "heaviside", "left_shift", "right_shift")
for _name in _FLOAT_BINARY:
    SAMPLES[_name] = [sample(F32_23, F32_3), sample(F32_3, F64_23), sample(I32_23, F32_3)]
    SAMPLES[_name + "_scalar"] = [sample(F32_23, scalar=2.0), sample(I32_3, scalar=1.5),
                                  sample(I32_3, scalar=2), sample(F32_3,
                                                                  scalar=onp.float64(2.0))]
for _name in _INT_BINARY:
    SAMPLES[_name] = [sample(I32_23, I32_3), sample(I32_3, I32_3.astype("int64"))]
    SAMPLES[_name + "_scalar"] = [sample(I32_23, scalar=2), sample(I32_3.astype("uint8"),
                                                                   scalar=1)]
for _name in _REVERSED:
    SAMPLES["r" + _name + "_scalar"] = list(SAMPLES[_name + "_scalar"])
for _name in ("bitwise_and", "bitwise_or", "bitwise_xor"):
    SAMPLES[_name].append(sample(B_23, B_23))
SAMPLES["where"] = [sample(B_23, F32_23, F32_3), sample(B_23, I32_3, F64_23)]
SAMPLES["isclose"] = [sample(F32_23, F32_3), sample(F32_23, F32_23, rtol=0.1, equal_nan=True)]

# ---- reductions ---------------------------------------------------------------------------------
F32_234 = _f32(2, 3, 4)
for _name in ("sum", "mean", "prod", "max", "min", "all", "any"):
    SAMPLES[_name] = [sample(F32_234), sample(F32_234, axis=(0, 2), keepdims=True),
                      sample(I32_23, axis=(1,))]
for _name in ("sum", "mean", "prod"):
    SAMPLES[_name].append(sample(I32_23, axis=(0,), dtype="float32"))
for _name in ("var", "std"):
    SAMPLES[_name] = [sample(F32_234, axis=(1,), ddof=1), sample(I32_23, keepdims=True),
                      sample(F32_23, dtype="float64")]
for _name in ("argmax", "argmin"):
    SAMPLES[_name] = [sample(F32_234), sample(F32_234, axis=1, keepdims=True),
                      sample(F32_234, keepdims=True)]
SAMPLES["cumsum"] = [sample(F32_23), sample(F32_23, axis=1), sample(I32_23, axis=0),
                     sample(B_23, axis=1, dtype="float64")]

# ---- shape --------------------------------------------------------------------------------------
SAMPLES["reshape"] = [sample(F32_234, newshape=(6, -1)), sample(I32_3, newshape=(3, 1))]
SAMPLES["transpose"] = [sample(F32_234), sample(F32_234, axes=(2, 0, 1))]
SAMPLES["expand_dims"] = [sample(F32_23, axis=1), sample(F32_23, axis=-1)]
SAMPLES["squeeze"] = [sample(_f32(2, 1, 3)), sample(_f32(1, 3, 1), axis=(-1,))]
SAMPLES["concatenate"] = [sample(F32_23, _f32(2, 1), axis=1),
                          sample(F32_23, F64_23, I32_23, axis=0)]
SAMPLES["stack"] = [sample(F32_23, F32_23, axis=0), sample(F32_23, I32_23, axis=-1)]
SAMPLES["split"] = [sample(F32_234, indices=(1, 3), axis=2), sample(F32_234, indices=(1,)),
                    sample(_f32(8), indices=(5, 3))]
SAMPLES["broadcast_to"] = [sample(F32_3, shape=(4, 2, 3))]
SAMPLES["flip"] = [sample(F32_234), sample(F32_234, axis=(0, 2))]
SAMPLES["roll"] = [sample(F32_234, shift=(1,)), sample(F32_234, shift=(1, -2), axis=(0, 2))]
SAMPLES["tile"] = [sample(F32_23, reps=(2, 1)), sample(F32_3, reps=(2, 2, 2))]
SAMPLES["repeat"] = [sample(F32_23, repeats=2, axis=1), sample(F32_23, repeats=3),
                     sample(F32_23, repeats=(1, 0, 2), axis=1)]
SAMPLES["pad"] = [sample(F32_23, pad_width=((1, 0), (0, 2))),
                  no_grad(sample(F32_23, pad_width=((1, 1), (1, 1)), mode="edge"))]

# ---- indexing -----------------------------------------------------------------------------------
_IDX = onp.array([[0, 2], [1, 1]], dtype="int64")
SAMPLES["getitem"] = [sample(F32_234, key=(slice(None), 1)),
                      sample(F32_234, key=(Ellipsis, None, slice(None, None, -2))),
                      sample(F32_234, key=(onp.array([1, 0, 1]), slice(1, 3))),
                      sample(F32_234, key=(B_23,))]
SAMPLES["getitem_backward"] = [sample(F32_3, key=(1, slice(None)), shape=(2, 3)),
                               sample(_f32(4, 3), key=(onp.array([0, 1, 1, 0]),), shape=(2, 3))]
SAMPLES["take"] = [sample(F32_234, _IDX, axis=1, mode="clip"), sample(F32_234, _IDX)]
SAMPLES["index_add"] = [sample(_f32(2, 2, 2), _IDX, axis=0, size=3),
                        sample(_f32(3, 2, 2), _IDX, axis=1, size=4, mode="wrap")]
SAMPLES["take_along_axis"] = [sample(F32_23, onp.array([[2], [0]]), axis=1),
                              sample(_f32(3, 1), onp.zeros((3, 4), "int64"), axis=1)]
SAMPLES["take_along_axis_backward"] = [sample(_f32(2, 1), onp.array([[2], [0]]), axis=1,
                                              shape=(2, 3))]
SAMPLES["nonzero"] = [Sample((B_23,), {}, infer_error=KilnError)]

# ---- linear algebra and matrix structure --------------------------------------------------------
SAMPLES["matmul"] = [sample(F32_23, _f32(3, 4)), sample(_f32(5, 2, 3), F32_3),
                     sample(F32_3, _f32(4, 3, 2)), sample(I32_23, I32_3)]
SAMPLES["dot"] = [sample(F32_23, _f32(3, 4)), sample(F32_234, _f32(4)),
                  sample(onp.float32(2.0) * onp.ones((), "float32"), F32_23)]
SAMPLES["tensordot"] = [sample(F32_234, _f32(4, 3), axes=((2, 1), (0, 1))),
                        sample(F32_23, F32_3, axes=((1,), (0,)))]
SAMPLES["einsum"] = [sample(F32_23, _f32(3, 4), subscripts="ij,jk->ik"),
                     sample(F32_234, subscripts="ijk->ki"),
                     no_grad(sample(_f32(3, 3), subscripts="ii->i"))]
SAMPLES["diagonal"] = [sample(F32_234, offset=1, axis1=0, axis2=2), sample(F32_23)]
SAMPLES["diag_embed"] = [sample(F32_3, offset=1, axis1=0, axis2=1, shape=(4, 4)),
                         sample(_f32(2, 2), offset=0, axis1=1, axis2=0, shape=(2, 3, 2))]
SAMPLES["tril"] = [sample(F32_234), sample(F32_23, k=1)]
SAMPLES["triu"] = [sample(F32_234, k=-1), sample(F32_23)]

_SQ = (onp.eye(3) * 3 + _f32(3, 3)).astype("float32")
_SQ_BATCH = onp.stack([_SQ, _SQ.T])
for _name in ("inv", "det", "slogdet"):
    SAMPLES[_name] = [sample(_SQ), sample(_SQ_BATCH), sample(onp.array([[2, 1], [1, 3]]))]
SAMPLES["solve"] = [sample(_SQ, F32_3), sample(_SQ, _f32(3, 2)), sample(_SQ_BATCH, F32_3),
                    sample(_SQ_BATCH, _f32(2, 3, 4))]

# ---- random sampling (no array inputs) -----------------------------------------------------------
SAMPLES["random_normal"] = [sample(shape=(2, 3)), sample(loc=1.0, shape=(4,), dtype="float64")]
SAMPLES["random_uniform"] = [sample(shape=(2, 3)), sample(low=-1.0, shape=(), dtype="float16")]
SAMPLES["random_randint"] = [sample(low=0, high=5, shape=(4,)),
                             sample(low=0, high=5, shape=(2,), dtype="int32")]
for _name in ("exponential", "gamma", "beta", "chisquare", "laplace", "logistic", "gumbel",
              "lognormal", "rayleigh", "weibull", "pareto", "power", "poisson"):
    SAMPLES["random_" + _name] = [sample(shape=(2, 3)), sample(shape=(3,), dtype="float64")]

# ---- neural-network operators (kiln.npx) --------------------------------------------------------
SAMPLES["fully_connected"] = [
    sample(_f32(2, 4), _f32(3, 4), F32_3, num_hidden=3),
    sample(_f32(2, 2, 2), _f32(3, 4), num_hidden=3, no_bias=True),
    sample(_f32(2, 5, 4), _f32(3, 4), F32_3, num_hidden=3, flatten=False),
]
SAMPLES["softmax"] = [sample(F32_23), sample(F32_234, axis=1, temperature=2.0)]
SAMPLES["log_softmax"] = [sample(F32_23), sample(F32_234, axis=0)]
SAMPLES["dropout"] = [sample(F32_23, p=0.5), sample(F32_234, p=0.3, axes=(1,))]
SAMPLES["batch_norm"] = [
    sample(F32_234, F32_3, F32_3, F32_3, F32_3 + 1, fix_gamma=False, training=True),
    sample(F32_234, F32_3, F32_3, F32_3, F32_3 + 1),
]
SAMPLES["layer_norm"] = [sample(F32_23, F32_3, F32_3), sample(F32_234, _f32(2), _f32(2),
                                                             axis=0)]
SAMPLES["embedding"] = [sample(onp.array([[0, 4], [2, 2]]), _f32(5, 3), input_dim=5,
                               output_dim=3)]
SAMPLES["one_hot"] = [sample(onp.array([0, 3, 1]), depth=4),
                      sample(onp.array([[1], [2]]), depth=3, dtype="int32")]
SAMPLES["pick"] = [sample(F32_23, onp.array([2, 0])),
                   sample(F32_234, onp.array([[0, 1, 2, 0], [1, 1, 1, 1]]), axis=1,
                          keepdims=True)]
SAMPLES["pick_backward"] = [sample(_f32(2), onp.array([2, 0]), shape=(2, 3)),
                            sample(_f32(2, 1), onp.array([2, 0]), keepdims=True, shape=(2, 3))]
SAMPLES["softmax_cross_entropy"] = [
    sample(F32_23, onp.array([2, 0])),
    sample(F32_234, onp.array([[0, 1, 2, 0], [1, 1, 1, 1]]), axis=1),
    sample(F32_23, onp.array([[5], [-1]]), axis=-1),         # labels clipped into range
]
SAMPLES["softmax_cross_entropy_backward"] = [
    sample(F32_23, onp.array([2, 0]), _f32(2)),
    sample(F32_234, onp.array([[0, 1, 2, 0], [1, 1, 1, 1]]), _f32(2, 4), axis=1),
]

# ---- fused operators (made by the fusion passes) ----------------------------------------------
SAMPLES["fused_dense"] = [
    sample(_f32(2, 3), _f32(4, 3), _f32(4), num_hidden=4, act_type="relu"),
    sample(_f32(2, 3), _f32(4, 3), None, num_hidden=4, no_bias=True, act_type="tanh"),
]
SAMPLES["fused_elementwise"] = [
    sample(F32_23, _f32(2, 3), program=(("exp", None), ("add", ("input", 0, "rhs")),
                                       ("multiply_scalar", ("scalar", 2.0)))),
    sample(F32_23, F32_3, program=(("subtract", ("input", 0, "lhs")), ("relu", None))),
]

# ---- convolution and pooling (NCHW; weights (num_filter, C / groups, kh, kw)) ------------------
_X4 = _f32(2, 4, 5, 5)
_CONV = dict(kernel=(3, 3), stride=(2, 1), dilate=(1, 1), pad=(1, 0), num_filter=6, num_group=2)
SAMPLES["convolution"] = [
    sample(_X4, _f32(6, 2, 3, 3), _f32(6), **_CONV),
    sample(_f32(2, 3, 7), _f32(4, 3, 2), None, kernel=(2,), stride=(1,), dilate=(2,), pad=(1,),
           num_filter=4, no_bias=True),
]
SAMPLES["deconvolution"] = [
    sample(_f32(2, 6, 3, 3), _f32(6, 2, 3, 3), _f32(4), kernel=(3, 3), stride=(2, 2),
           dilate=(1, 1), pad=(1, 1), adj=(0, 0), num_filter=4, num_group=2, no_bias=False),
]
SAMPLES["convolution_weight_grad"] = [
    sample(_X4, _f32(2, 6, 3, 3), **_CONV),
]
_POOL = dict(kernel=(2, 2), stride=(2, 2), pad=(0, 0), pool_type="max")
SAMPLES["pooling"] = [
    sample(_X4, **_POOL),
    sample(_X4, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="avg",
           pooling_convention="full", count_include_pad=False),
    sample(_X4, kernel=(1, 1), pool_type="avg", global_pool=True),
]
_POOLED = onp.maximum.reduce([_X4[:, :, i:4:2, j:4:2] for i in (0, 1) for j in (0, 1)])
SAMPLES["pooling_backward"] = [sample(_f32(2, 4, 2, 2), _X4, _POOLED, **_POOL)]
SAMPLES["pooling_max_gather"] = [sample(_f32(2, 4, 5, 5), _X4, _POOLED, **_POOL)]

# ---- other nn operators -------------------------------------------------------------------------
SAMPLES["erf"] = [sample(_f32(2, 3, low=-2, high=2))]
SAMPLES["leaky_relu"] = [
    sample(_f32(2, 3, low=-1, high=1), None, act_type="leaky", slope=0.1),
    sample(_f32(2, 3, low=-1, high=1), None, act_type="elu"),
    sample(_f32(2, 3, low=-1, high=1), None, act_type="gelu"),
    sample(_f32(2, 3, 4, low=-1, high=1), _f32(3), act_type="prelu"),
]
SAMPLES["group_norm"] = [sample(_f32(2, 4, 3), _f32(4), _f32(4), num_groups=2)]
SAMPLES["instance_norm"] = [sample(_f32(2, 3, 4), _f32(3), _f32(3))]
SAMPLES["masked_softmax"] = [sample(F32_23, B_23 | onp.array([True, False, False]))]
SAMPLES["sequence_mask"] = [sample(_f32(4, 2, 3), onp.array([2.0, 4.0], dtype="float32"))]
SAMPLES["smooth_l1"] = [sample(_f32(2, 3, low=-2, high=2), scalar=1.0)]
SAMPLES["arange_like"] = [sample(F32_23, axis=1, start=2.0, step=0.5)]
SAMPLES["topk"] = [
    sample(_f32(3, 5), k=2, ret_typ="value"),
    sample(_f32(3, 5), k=2, ret_typ="indices", axis=0),
]
_TOPK_IDX = onp.array([[4, 1], [0, 2], [3, 3]], dtype="int64")
SAMPLES["topk_gather"] = [sample(_f32(3, 5), _TOPK_IDX)]
SAMPLES["topk_scatter"] = [sample(_f32(3, 2), _TOPK_IDX, shape=(3, 5))]
# ---- control flow (bodies as IR text) ---------------------------------------------------------
_STEP = """
graph(%x: f32[3], %s: f32[3], %w: f32[3]) {
  %1 = multiply(%x, %s) : f32[3]
  %2 = tanh(%1) : f32[3]
  %3 = add(%2, %w) : f32[3]
  return %2, %3
}"""
_BELOW = """
graph(%s: f32[3], %w: f32[3]) {
  %1 = sum(%s) {axis=None, keepdims=False, dtype=None} : f32[]
  %2 = less_scalar(%1) {scalar=4.0} : bool[]
  return %2
}"""
_GROW = """
graph(%s: f32[3], %w: f32[3]) {
  %1 = multiply(%s, %w) : f32[3]
  %2 = add_scalar(%1) {scalar=0.5} : f32[3]
  return %1, %2
}"""
_THEN = """
graph(%a: f32[2,3], %b: f32[3]) {
  %1 = multiply(%a, %b) : f32[2,3]
  return %1
}"""
_ELSE = """
graph(%a: f32[2,3], %b: f32[3]) {
  %1 = subtract(%a, %b) : f32[2,3]
  %2 = exp(%1) : f32[2,3]
  return %2
}"""
SAMPLES["foreach"] = [
    with_bodies(sample(_f32(4, 3), F32_3, F32_3, num_steps=4, num_states=1), _STEP),
    with_bodies(sample(_f32(4, 3), F32_3, F32_3, num_steps=4, num_states=1, reverse=True),
                _STEP),
    with_bodies(sample(onp.array(2), _f32(4, 3), F32_3, F32_3, num_steps=4, num_states=1,
                       has_length=True), _STEP),
]
SAMPLES["while_loop"] = [
    with_bodies(sample(F32_3, F32_3 + 1.0, max_iterations=5, num_out_data=1), _BELOW, _GROW),
    with_bodies(sample(F32_3 + 2.0, F32_3, max_iterations=3, num_out_data=1), _BELOW, _GROW),
]
SAMPLES["cond"] = [
    with_bodies(sample(onp.array(True), F32_23, F32_3), _THEN, _ELSE),
    with_bodies(sample(onp.array([0.0], "float32"), F32_23, F32_3), _THEN, _ELSE),
]

# ---- the fused recurrent operator -------------------------------------------------------------
def _rnn_sample(mode: str, gates: int, reverse: bool = False) -> Sample:
    t, n, i, h = 3, 2, 3, 2
    ins = [_f32(t, n, i), _f32(gates * h, i), _f32(gates * h, h), _f32(gates * h),
           _f32(gates * h), _f32(n, h)] + ([_f32(n, h)] if mode == "lstm" else [])
    return sample(*ins, mode=mode, state_size=h, reverse=reverse)


def _rnn_backward_sample(mode: str, gates: int) -> Sample:
    from kiln.ops.rnn import RNN

    s = _rnn_sample(mode, gates)
    outs = RNN.impl(*s.inputs, mode=mode, state_size=2, reverse=False)
    y, hidden = outs[0], outs[3 if mode == "lstm" else 2:]
    dy, dh = _f32(*y.shape), _f32(2, 2)
    x, w_ih, w_hh, _, _, h0 = s.inputs[:6]
    if mode == "lstm":
        ins = (dy, dh, _f32(2, 2), x, w_ih, w_hh, h0, s.inputs[6], y, *hidden)
    else:
        ins = (dy, dh, x, w_ih, w_hh, h0, y, *hidden)
    return no_grad(sample(*ins, mode=mode, state_size=2))


SAMPLES["rnn"] = [_rnn_sample("lstm", 4), _rnn_sample("gru", 3, reverse=True),
                  _rnn_sample("rnn_tanh", 1), _rnn_sample("rnn_relu", 1, reverse=True)]
SAMPLES["rnn_backward"] = [_rnn_backward_sample("lstm", 4), _rnn_backward_sample("gru", 3),
                           _rnn_backward_sample("rnn_tanh", 1)]
