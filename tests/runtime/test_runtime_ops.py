"""One operator at a time, against NumPy: convolution geometries (stride, padding, dilation,
groups, 1-D, pointwise, depthwise, batches), pooling conventions, the LeakyReLU family,
reshape codes, reductions, broadcasting, and the other ops the runtime lists. Each case is a
small symbol file written here (MXNet's op names and attribute strings) with its params."""

import json
import struct

import numpy as onp
import pytest

RTOL, ATOL = 1e-4, 1e-5
rng = onp.random.default_rng(0)


def params_bytes(arrays: dict) -> bytes:
    out = struct.pack("<QQQ", 0x112, 0, len(arrays))
    for a in arrays.values():
        a = onp.ascontiguousarray(a, onp.float32)
        out += struct.pack("<Ii", 0xF993FACA, 0) + struct.pack(f"<i{a.ndim}q", a.ndim, *a.shape)
        out += struct.pack("<iii", 1, 0, 0) + a.tobytes()
    out += struct.pack("<Q", len(arrays))
    for name in arrays:
        raw = ("arg:" + name).encode()
        out += struct.pack("<Q", len(raw)) + raw
    return out


def run_op(runtime, op, attrs, inputs, params=None, n_data=1):
    """A graph of data inputs, parameters and one `op` node; its output for `inputs`."""
    params = params or {}
    nodes = [{"op": "null", "name": f"data{i}", "inputs": []} for i in range(n_data)]
    nodes += [{"op": "null", "name": k, "inputs": []} for k in params]
    nodes.append({"op": op, "name": "out", "attrs": {k: str(v) for k, v in attrs.items()},
                  "inputs": [[i, 0, 0] for i in range(len(nodes))]})
    doc = {"nodes": nodes, "arg_nodes": list(range(len(nodes) - 1)),
           "heads": [[len(nodes) - 1, 0, 0]]}
    model = runtime.load_memory(json.dumps(doc).encode(), params_bytes(params) if params
                                else None)
    return model(*inputs)


def conv_ref(x, w, b, stride, pad, dilate, groups):
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    xp = onp.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh = (h + 2 * pad[0] - dilate[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * pad[1] - dilate[1] * (kw - 1) - 1) // stride[1] + 1
    y = onp.zeros((n, f, oh, ow), onp.float64)
    fg = f // groups
    for g in range(groups):
        for ki in range(kh):
            for kj in range(kw):
                win = xp[:, g * cg:(g + 1) * cg, ki * dilate[0]:, kj * dilate[1]:]
                win = win[:, :, :oh * stride[0]:stride[0], :ow * stride[1]:stride[1]]
                y[:, g * fg:(g + 1) * fg] += onp.einsum("nchw,fc->nfhw", win,
                                                        w[g * fg:(g + 1) * fg, :, ki, kj])
    return (y + (0 if b is None else b[None, :, None, None])).astype(onp.float32)


@pytest.mark.parametrize("n,c,h,w,f,k,stride,pad,dilate,groups", [
    (1, 1, 28, 28, 6, 5, 1, 2, 1, 1),      # LeNet conv1
    (1, 6, 14, 14, 16, 5, 1, 0, 1, 1),     # LeNet conv2
    (2, 3, 17, 13, 8, 3, 2, 1, 1, 1),      # strided, odd sizes, batch 2
    (1, 8, 9, 9, 12, 1, 1, 0, 1, 1),       # pointwise
    (1, 8, 10, 10, 12, 1, 2, 0, 1, 1),     # strided 1x1 (ResNet downsample)
    (1, 8, 12, 12, 8, 3, 1, 1, 1, 8),      # depthwise
    (1, 8, 12, 12, 16, 3, 2, 1, 1, 8),     # depthwise with multiplier 2
    (1, 8, 11, 11, 12, 3, 1, 2, 2, 4),     # dilated, grouped
    (3, 4, 7, 40, 33, 3, 1, 1, 1, 1),      # many filters, a partial filter panel
])
def test_convolution(runtime, n, c, h, w, f, k, stride, pad, dilate, groups):
    x = rng.standard_normal((n, c, h, w)).astype(onp.float32)
    wt = rng.standard_normal((f, c // groups, k, k)).astype(onp.float32)
    b = rng.standard_normal(f).astype(onp.float32)
    attrs = {"kernel": (k, k), "stride": (stride, stride), "pad": (pad, pad),
             "dilate": (dilate, dilate), "num_filter": f, "num_group": groups, "no_bias": False}
    y = run_op(runtime, "Convolution", attrs, [x], {"w": wt, "b": b})
    ref = conv_ref(x, wt, b, (stride,) * 2, (pad,) * 2, (dilate,) * 2, groups)
    onp.testing.assert_allclose(y, ref, rtol=RTOL, atol=1e-4)


def test_convolution_1d_and_fused_batchnorm_relu(runtime):
    x = rng.standard_normal((2, 3, 20)).astype(onp.float32)
    w = rng.standard_normal((5, 3, 3)).astype(onp.float32)
    y = run_op(runtime, "Convolution", {"kernel": "(3,)", "num_filter": 5, "no_bias": True,
                                        "pad": "(1,)"}, [x], {"w": w})
    ref = conv_ref(x[:, :, None], w[:, :, None], None, (1, 1), (0, 1), (1, 1), 1)[:, :, 0]
    onp.testing.assert_allclose(y, ref, rtol=RTOL, atol=1e-4)
    # conv -> BatchNorm -> add(residual) -> relu: folded and fused; fix_gamma ignores gamma
    x = rng.standard_normal((1, 4, 6, 6)).astype(onp.float32)
    w = rng.standard_normal((4, 4, 3, 3)).astype(onp.float32)
    g, beta, mean = (rng.standard_normal(4).astype(onp.float32) for _ in range(3))
    var = rng.random(4).astype(onp.float32) + 0.5
    for fix_gamma in (True, False):
        nodes = [{"op": "null", "name": nm, "inputs": []}
                 for nm in ("data", "w", "g", "beta", "mean", "var")]
        nodes += [{"op": "Convolution", "name": "c", "inputs": [[0, 0, 0], [1, 0, 0]],
                   "attrs": {"kernel": "(3, 3)", "pad": "(1, 1)", "num_filter": "4",
                             "no_bias": "True"}},
                  {"op": "BatchNorm", "name": "bn", "inputs": [[6, 0, 0], [2, 0, 0], [3, 0, 0],
                                                               [4, 0, 1], [5, 0, 1]],
                   "attrs": {"eps": "0.001", "fix_gamma": str(fix_gamma)}},
                  {"op": "elemwise_add", "name": "add", "inputs": [[7, 0, 0], [0, 0, 0]]},
                  {"op": "Activation", "name": "relu", "inputs": [[8, 0, 0]],
                   "attrs": {"act_type": "relu"}}]
        doc = {"nodes": nodes, "heads": [[9, 0, 0]]}
        model = runtime.load_memory(json.dumps(doc).encode(), params_bytes(
            {"w": w, "g": g, "beta": beta, "mean": mean, "var": var}))
        c = conv_ref(x, w, None, (1, 1), (1, 1), (1, 1), 1)
        scale = (1 if fix_gamma else g) / onp.sqrt(var + 1e-3)
        bn = (c - mean[None, :, None, None]) * scale[None, :, None, None] + \
            beta[None, :, None, None]
        onp.testing.assert_allclose(model(x), onp.maximum(bn + x, 0), rtol=RTOL, atol=1e-4)


def pool_ref(x, k, s, p, kind, full, count_include_pad):
    n, c, h, w = x.shape
    out = []
    for i in range(2):
        span = (h, w)[i] + 2 * p[i] - k[i]
        out.append((-(-span // s[i]) if full else span // s[i]) + 1)
    y = onp.zeros((n, c, *out), onp.float32)
    for oy in range(out[0]):
        for ox in range(out[1]):
            y0, x0 = oy * s[0] - p[0], ox * s[1] - p[1]
            ys, xs = slice(max(y0, 0), min(y0 + k[0], h)), slice(max(x0, 0), min(x0 + k[1], w))
            win = x[:, :, ys, xs]
            if kind == "max":
                v = win.max(axis=(2, 3))
                padded = (min(y0 + k[0], h + p[0]) - y0) * (min(x0 + k[1], w + p[1]) - x0)
                if padded > win.shape[2] * win.shape[3]:
                    v = onp.maximum(v, onp.finfo(onp.float32).min)
            else:
                v = win.sum(axis=(2, 3))
                if kind == "avg":
                    if count_include_pad:
                        cnt = (min(y0 + k[0], h + p[0]) - y0) * (min(x0 + k[1], w + p[1]) - x0)
                    else:
                        cnt = win.shape[2] * win.shape[3]
                    v = v / max(cnt, 1)
            y[:, :, oy, ox] = v
    return y


@pytest.mark.parametrize("kind", ["max", "avg", "sum"])
@pytest.mark.parametrize("k,s,p,full,cip", [((2, 2), (2, 2), (0, 0), False, True),
                                           ((3, 3), (2, 2), (1, 1), False, False),
                                           ((3, 3), (2, 2), (1, 1), True, True),
                                           ((3, 2), (2, 2), (0, 1), True, False)])
def test_pooling(runtime, kind, k, s, p, full, cip):
    x = rng.standard_normal((2, 3, 9, 10)).astype(onp.float32)
    attrs = {"kernel": k, "stride": s, "pad": p, "pool_type": kind,
             "pooling_convention": "full" if full else "valid", "count_include_pad": cip}
    onp.testing.assert_allclose(run_op(runtime, "Pooling", attrs, [x]),
                                pool_ref(x, k, s, p, kind, full, cip), rtol=RTOL, atol=ATOL)


def test_global_pooling(runtime):
    x = rng.standard_normal((2, 3, 5, 7)).astype(onp.float32)
    for kind, fn in (("avg", onp.mean), ("max", onp.max)):
        y = run_op(runtime, "Pooling", {"global_pool": True, "pool_type": kind}, [x])
        onp.testing.assert_allclose(y, fn(x, axis=(2, 3), keepdims=True), rtol=RTOL, atol=ATOL)


def _erf(v):
    from math import erf
    return onp.vectorize(erf)(v.astype(onp.float64))


@pytest.mark.parametrize("act,ref", [
    ("leaky", lambda x: onp.where(x > 0, x, 0.1 * x)),
    ("elu", lambda x: onp.where(x > 0, x, 0.1 * onp.expm1(x))),
    ("selu", lambda x: 1.0507009873554805 * onp.where(x > 0, x, 1.6732632423543772 *
                                                      onp.expm1(x))),
    ("gelu", lambda x: 0.5 * x * (1 + _erf(x / onp.sqrt(2)))),
    ("rrelu", lambda x: onp.where(x > 0, x, (0.125 + 0.334) / 2 * x)),
])
def test_leaky_relu(runtime, act, ref):
    x = rng.standard_normal((2, 3, 4)).astype(onp.float32)
    y = run_op(runtime, "LeakyReLU", {"act_type": act, "slope": 0.1}, [x])
    onp.testing.assert_allclose(y, ref(x), rtol=RTOL, atol=ATOL)


def test_prelu(runtime):
    x = rng.standard_normal((2, 3, 4)).astype(onp.float32)
    g = onp.array([0.1, 0.2, 0.3], onp.float32)
    y = run_op(runtime, "LeakyReLU", {"act_type": "prelu"}, [x], {"gamma": g})
    onp.testing.assert_allclose(y, onp.where(x > 0, x, x * g[None, :, None]), rtol=RTOL)


@pytest.mark.parametrize("op,attrs,shape,want", [
    ("Reshape", {"shape": "(0, -1)"}, (2, 3, 4), (2, 12)),
    ("Reshape", {"shape": "(-2,)"}, (2, 3, 4), (2, 3, 4)),
    ("Reshape", {"shape": "(-3, 0)"}, (2, 3, 4), (6, 4)),
    ("Reshape", {"shape": "(0, -4, 1, -1, 0)"}, (2, 3, 4), (2, 1, 3, 4)),
    ("Reshape", {"shape": "(-1, 0)", "reverse": "True"}, (2, 3, 4), (6, 4)),
    ("_np_reshape", {"newshape": "(4, -1)"}, (2, 3, 4), (4, 6)),
    ("_npx_reshape", {"newshape": "(-2, -5)"}, (2, 3, 4), (2, 12)),
    ("_npx_reshape", {"newshape": "(-6, 1, -1, -4)"}, (2, 3, 4), (1, 2, 3, 4)),
    ("_npx_reshape", {"newshape": "(-3, -4)"}, (1, 3, 4), (3, 4)),
    ("Flatten", {}, (2, 3, 4), (2, 12)),
    ("expand_dims", {"axis": -1}, (2, 3), (2, 3, 1)),
    ("squeeze", {}, (1, 3, 1), (3,)),
    ("_np_squeeze", {"axis": "(0, 2)"}, (1, 3, 1), (3,)),
])
def test_shapes(runtime, op, attrs, shape, want):
    x = rng.standard_normal(shape).astype(onp.float32)
    y = run_op(runtime, op, attrs, [x])
    assert y.shape == want
    onp.testing.assert_array_equal(y.reshape(-1), x.reshape(-1))


def test_transpose_concat_stack(runtime):
    x = rng.standard_normal((2, 3, 4)).astype(onp.float32)
    onp.testing.assert_array_equal(run_op(runtime, "transpose", {"axes": "(1, 2, 0)"}, [x]),
                                   x.transpose(1, 2, 0))
    onp.testing.assert_array_equal(run_op(runtime, "transpose", {}, [x]), x.T)
    y = rng.standard_normal((2, 5, 4)).astype(onp.float32)
    onp.testing.assert_array_equal(run_op(runtime, "Concat", {"dim": 1, "num_args": 2}, [x, y],
                                          n_data=2), onp.concatenate([x, y], 1))
    onp.testing.assert_array_equal(run_op(runtime, "_npi_concatenate", {"axis": "None"},
                                          [x, y], n_data=2),
                                   onp.concatenate([x.ravel(), y.ravel()]))
    onp.testing.assert_array_equal(run_op(runtime, "stack", {"axis": 1}, [x, x], n_data=2),
                                   onp.stack([x, x], 1))


@pytest.mark.parametrize("op,fn", [("sum", onp.sum), ("mean", onp.mean), ("max", onp.max),
                                   ("min", onp.min), ("prod", onp.prod)])
@pytest.mark.parametrize("attrs,kw", [({}, {}), ({"axis": 1}, {"axis": 1}),
                                      ({"axis": "(0, 2)", "keepdims": True},
                                       {"axis": (0, 2), "keepdims": True}),
                                      ({"axis": 1, "exclude": True}, {"axis": (0, 2)})])
def test_reductions(runtime, op, fn, attrs, kw):
    x = rng.random((3, 4, 5)).astype(onp.float32) + 0.5
    onp.testing.assert_allclose(run_op(runtime, op, attrs, [x]), fn(x, **kw), rtol=RTOL)


@pytest.mark.parametrize("a,b", [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)),
                                 ((1,), (2, 3)), ((2, 3, 1), (1, 3, 5))])
@pytest.mark.parametrize("op,fn", [("broadcast_add", onp.add), ("_npi_subtract", onp.subtract),
                                   ("broadcast_mul", onp.multiply),
                                   ("_npi_true_divide", onp.divide),
                                   ("broadcast_maximum", onp.maximum),
                                   ("broadcast_power", onp.power),
                                   ("broadcast_greater", onp.greater)])
def test_broadcasting(runtime, a, b, op, fn):
    x = rng.random(a).astype(onp.float32) + 0.5
    y = rng.random(b).astype(onp.float32) + 0.5
    onp.testing.assert_allclose(run_op(runtime, op, {}, [x, y], n_data=2),
                                fn(x, y).astype(onp.float32), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("op,s,fn", [("_plus_scalar", 2, lambda x: x + 2),
                                     ("_rminus_scalar", 2, lambda x: 2 - x),
                                     ("_npi_rtrue_divide_scalar", 3, lambda x: 3 / x),
                                     ("_npi_power_scalar", 2, lambda x: x ** 2),
                                     ("_rpower_scalar", 2, lambda x: 2 ** x),
                                     ("_mod_scalar", 0.3, lambda x: onp.mod(x, onp.float32(0.3))),
                                     ("_npi_minimum_scalar", 0.1, lambda x: onp.minimum(x, 0.1)),
                                     ("_lesser_scalar", 0, lambda x: (x < 0) * 1.0)])
def test_scalar_ops(runtime, op, s, fn):
    x = rng.standard_normal((3, 5)).astype(onp.float32)
    if "divide" in op:
        x = onp.abs(x) + 0.5
    onp.testing.assert_allclose(run_op(runtime, op, {"scalar": s}, [x]), fn(x), rtol=RTOL,
                                atol=ATOL)


@pytest.mark.parametrize("op,fn", [("relu", lambda x: onp.maximum(x, 0)),
                                   ("sigmoid", lambda x: 1 / (1 + onp.exp(-x))),
                                   ("_npi_tanh", onp.tanh), ("exp", onp.exp),
                                   ("_npi_log", lambda x: onp.log(onp.abs(x))),
                                   ("sqrt", lambda x: onp.sqrt(onp.abs(x))),
                                   ("_npi_absolute", onp.abs), ("negative", onp.negative),
                                   ("square", onp.square), ("floor", onp.floor),
                                   ("sign", onp.sign), ("erf", _erf)])
def test_unary(runtime, op, fn):
    x = (rng.standard_normal((4, 37)) * 3).astype(onp.float32)
    if op in ("_npi_log", "sqrt"):
        x = onp.abs(x)
    onp.testing.assert_allclose(run_op(runtime, op, {}, [x]), fn(x), rtol=RTOL, atol=ATOL)


def test_activation_extremes_and_nan(runtime):
    x = onp.array([[-1e30, -100, -88, -1e-3, 0, 1e-3, 88, 100, 1e30, onp.nan, onp.inf,
                    -onp.inf, 0.5, -0.5, 3, -3, 0.7]], onp.float32)
    with onp.errstate(over="ignore"):
        for act, fn in (("sigmoid", lambda v: 1 / (1 + onp.exp(-v.astype(onp.float64)))),
                        ("tanh", onp.tanh)):
            y = run_op(runtime, "Activation", {"act_type": act}, [x])
            onp.testing.assert_allclose(y, fn(x), rtol=1e-5, atol=1e-6)


def test_softmax_family_clip_addn_layernorm(runtime):
    x = rng.standard_normal((2, 3, 4)).astype(onp.float32)
    e = onp.exp(x - x.max(axis=1, keepdims=True))
    sm = e / e.sum(axis=1, keepdims=True)
    onp.testing.assert_allclose(run_op(runtime, "softmax", {"axis": 1}, [x]), sm, rtol=RTOL)
    onp.testing.assert_allclose(run_op(runtime, "log_softmax", {"axis": 1}, [x]), onp.log(sm),
                                rtol=RTOL, atol=ATOL)
    e2 = onp.exp(x / 2 - (x / 2).max(axis=-1, keepdims=True))
    onp.testing.assert_allclose(run_op(runtime, "softmax", {"temperature": 2.0}, [x]),
                                e2 / e2.sum(-1, keepdims=True), rtol=RTOL)
    flat = x.reshape(2, -1)
    ef = onp.exp(flat - flat.max(1, keepdims=True))
    onp.testing.assert_allclose(run_op(runtime, "SoftmaxActivation", {}, [x]),
                                (ef / ef.sum(1, keepdims=True)).reshape(x.shape), rtol=RTOL)
    onp.testing.assert_allclose(run_op(runtime, "clip", {"a_min": -0.5, "a_max": 0.5}, [x]),
                                onp.clip(x, -0.5, 0.5))
    onp.testing.assert_allclose(run_op(runtime, "add_n", {}, [x, x, x], n_data=3), 3 * x,
                                rtol=RTOL)
    g, b = onp.arange(4, dtype=onp.float32), onp.ones(4, onp.float32)
    mu, sd = x.mean(-1, keepdims=True), onp.sqrt(x.var(-1, keepdims=True) + 1e-5)
    onp.testing.assert_allclose(run_op(runtime, "LayerNorm", {}, [x], {"g": g, "b": b}),
                                (x - mu) / sd * g + b, rtol=RTOL, atol=ATOL)
    # a multi-output head: BatchNorm's running mean (output 1) is readable
    y = run_op(runtime, "BatchNorm", {"fix_gamma": False}, [x],
               {"g": onp.ones(3), "b": onp.zeros(3), "m": onp.zeros(3), "v": onp.ones(3)})
    onp.testing.assert_allclose(y, x / onp.sqrt(1 + 1e-3), rtol=RTOL)


@pytest.mark.parametrize("op,attrs,key", [
    ("slice", {"begin": "(1, None)", "end": "(3, None)", "step": "[None, 2]"},
     (slice(1, 3), slice(None, None, 2))),
    ("slice", {"begin": "(None, -1)", "end": "(None, 0)", "step": "(None, -1)"},
     (slice(None), slice(-1, 0, -1))),
    ("_npi_slice", {"begin": "(-2,)", "end": "(None,)"}, (slice(-2, None),)),
    ("slice", {"begin": "(0, 1, None)", "end": "(1, 100, None)", "step": "(1, 3, -2)"},
     (slice(0, 1), slice(1, 100, 3), slice(None, None, -2))),
    ("slice_axis", {"axis": "-1", "begin": "1", "end": "None"}, (Ellipsis, slice(1, None))),
    ("slice_axis", {"axis": "1", "begin": "-3", "end": "-1"}, (slice(None), slice(-3, -1))),
])
def test_slice(runtime, op, attrs, key):
    x = rng.standard_normal((4, 5, 6)).astype(onp.float32)
    onp.testing.assert_array_equal(run_op(runtime, op, attrs, [x]), x[key])


@pytest.mark.parametrize("op,axis", [("reverse", "(0,)"), ("_npi_flip", "(0, 2)"),
                                     ("reverse", "1"), ("_npi_flip", "(-1, 0, 1)")])
def test_flip(runtime, op, axis):
    x = rng.standard_normal((3, 4, 5)).astype(onp.float32)
    axes = tuple(int(a) for a in axis.strip("()").split(",") if a.strip())
    onp.testing.assert_array_equal(run_op(runtime, op, {"axis": axis}, [x]), onp.flip(x, axes))


@pytest.mark.parametrize("op,attrs,a,b,fn", [
    ("dot", {}, (3, 4), (4, 5), onp.dot),
    ("dot", {"transpose_a": True}, (4, 3), (4, 5), lambda a, b: a.T @ b),
    ("dot", {"transpose_b": True}, (3, 4), (5, 4), lambda a, b: a @ b.T),
    ("dot", {"transpose_a": True, "transpose_b": True}, (4, 3), (5, 4), lambda a, b: a.T @ b.T),
    ("dot", {}, (2, 3, 4), (4, 2, 5), lambda a, b: onp.tensordot(a, b, axes=1)),
    ("dot", {}, (4,), (4,), lambda a, b: onp.dot(a, b)),
    ("_np_dot", {}, (2, 3, 4), (4, 5), onp.dot),
    ("_np_dot", {}, (4,), (4, 3), onp.dot),
])
def test_dot(runtime, op, attrs, a, b, fn):
    x, y = rng.standard_normal(a).astype(onp.float32), rng.standard_normal(b).astype(onp.float32)
    got = run_op(runtime, op, attrs, [x, y], n_data=2)
    onp.testing.assert_allclose(got, fn(x, y), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("op,attrs,want", [
    ("_zeros", {"shape": "(2, 3)", "dtype": "float32"}, onp.zeros((2, 3))),
    ("_npi_ones", {"shape": "(4,)"}, onp.ones(4)),
    ("_full", {"shape": "(1, 2)", "value": "2.5"}, onp.full((1, 2), 2.5)),
    ("_zeros", {"shape": "()"}, onp.zeros(())),
])
def test_creation(runtime, op, attrs, want):
    onp.testing.assert_array_equal(run_op(runtime, op, attrs, [], n_data=0), want)
    x = rng.standard_normal((2, 3)).astype(onp.float32)
    onp.testing.assert_array_equal(run_op(runtime, "ones_like", {}, [x]), onp.ones((2, 3)))
