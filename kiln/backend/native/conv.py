"""Lowerings of the convolution and pooling family (2-D NCHW, and 1-D as 2-D of height 1):

    convolution                im2col + GEMM (kiln_conv2d_f32), 1x1 as plain GEMM, depthwise direct
    deconvolution              the input gradient of a convolution (kiln_conv2d_backward_data_f32)
    convolution_weight_grad    kiln_conv2d_backward_weight_f32
    pooling, pooling_backward  kiln_pool2d_f32, kiln_pool2d_backward_f32

The operators use MXNet's attributes (kernel, stride, dilate, pad, num_filter, num_group,
no_bias, layout; pool_type, global_pool, pooling_convention, count_include_pad).

Before emission (`_absorb`) a convolution takes over work of its neighbours, which then emit no
code of their own:
  - a weight scaled per output channel, `multiply(w, reshape(s))` (what bn_fold makes of a
    batch norm after a convolution), becomes a scale in the convolution's epilogue, so the scaled
    weight is never materialised (it would be recomputed on every call);
  - a following relu, `add` of a residual, or `fused_elementwise` [add residual, relu] runs in
    the epilogue too, while the output tile is still in cache.
"""

from __future__ import annotations

from ...graph.ir import CONST, VAR, Node, Value
from .codegen import PREPASSES, Generator, View
from .lowering import F32, register_lowering

__all__ = ["conv_geometry", "pool_geometry"]


def conv_geometry(x_shape, w_shape, attrs) -> dict | None:
    """kiln_conv2d fields for a 1-D or 2-D channel-first convolution, or None."""
    nd = len(x_shape) - 2
    if nd not in (1, 2) or attrs.get("layout") not in (None, "NCW", "NCHW"):
        return None
    kernel = tuple(attrs["kernel"]) or tuple(w_shape[2:])
    if len(kernel) != nd:
        return None
    stride, dilate, pad = (tuple(attrs.get(k) or ()) for k in ("stride", "dilate", "pad"))
    stride = stride or (1,) * nd
    dilate = dilate or (1,) * nd
    pad = pad or (0,) * nd
    if nd == 1:
        kernel, stride, dilate, pad = (1,) + kernel, (1,) + stride, (1,) + dilate, (0,) + pad
        h, w = 1, x_shape[2]
    else:
        h, w = x_shape[2], x_shape[3]
    return {"n": x_shape[0], "c": x_shape[1], "h": h, "w": w, "kh": kernel[0], "kw": kernel[1],
            "sh": stride[0], "sw": stride[1], "ph": pad[0], "pw": pad[1], "dh": dilate[0],
            "dw": dilate[1], "groups": int(attrs.get("num_group", 1))}


_CONV_FIELDS = ("n", "c", "h", "w", "f", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw",
                "groups", "oh", "ow")


def _conv_struct(g: dict) -> str:
    return "{" + ", ".join(str(int(g[k])) for k in _CONV_FIELDS) + "}"


def _views_f32(gen: Generator, n: Node) -> list[View] | None:
    views = [gen.view(v) for v in n.inputs]
    if any(v.is_literal or v.dtype != F32 for v in views):
        return None
    if any(a.dtype != F32 for a in n.avals):
        return None
    return views


def _emit_call(gen: Generator, struct: str, geometry: str, fn: str, args: list[str]) -> None:
    """`fn(&geometry, args...)` with the geometry a static constant of the generated code."""
    gen.emit(f"{{ static const {struct} geometry = {geometry};")
    gen.emit(f"  {fn}(&geometry, {', '.join(args)}); }}")


def _out_hw(shape) -> tuple[int, int]:
    return (1, shape[2]) if len(shape) == 3 else (shape[2], shape[3])


# ----------------------------------------------------------------------------------------------
# absorbing neighbours into a convolution (runs before emission)
# ----------------------------------------------------------------------------------------------

def _single_reader(readers, v: Value) -> Node | None:
    r = readers.get(v, [])
    return r[0] if len(r) == 1 and r[0] is not None else None


def _channel_scale(gen: Generator, readers, conv: Node):
    """(w, s, nodes) when conv's weight is multiply(w, reshape(s)) with s one per filter."""
    wv = conv.inputs[1]
    mul = wv.node
    if mul.op != "multiply" or _single_reader(readers, wv) is not conv:
        return None
    w, rs = mul.inputs
    if rs.node.op != "reshape":
        w, rs = rs, w
    if rs.node.op != "reshape" or _single_reader(readers, rs) is not mul:
        return None
    s = rs.node.inputs[0]
    f = conv.avals[0].shape[1]
    if w.aval is None or tuple(w.aval.shape) != tuple(wv.aval.shape):
        return None
    if s.aval is None or tuple(s.aval.shape) != (f,) or s.aval.dtype != F32:
        return None
    if tuple(rs.aval.shape) != (f,) + (1,) * (len(w.aval.shape) - 1):
        return None
    return w, s, [mul, rs.node]


def _epilogue(readers, conv: Node, index: dict):
    """(activation, residual value or None, absorbed node) for the node reading conv's output."""
    out = Value(conv, 0)
    consumer = _single_reader(readers, out)
    if consumer is None or consumer.avals[0] != conv.avals[0]:
        return None
    if consumer.op == "relu":
        return "KILN_ACT_RELU", None, consumer
    if consumer.op == "add" and len(consumer.inputs) == 2:
        other = consumer.inputs[1] if consumer.inputs[0] == out else consumer.inputs[0]
        if other == out or other.aval != conv.avals[0]:
            return None
        return "KILN_ACT_NONE", other, consumer
    if consumer.op == "fused_elementwise" and out in consumer.inputs[:2]:
        program = consumer.attrs["program"]
        steps = [op for op, _ in program]
        if steps == ["relu"] and consumer.inputs[0] == out:
            return "KILN_ACT_RELU", None, consumer
        # add is commutative: the convolution may be the chain's start or its other operand
        if steps in (["add"], ["add", "relu"]) and program[0][1][0] == "input" and \
                len(consumer.inputs) == 2:
            other = consumer.inputs[1] if consumer.inputs[0] == out else consumer.inputs[0]
            if other == out or other.aval != conv.avals[0]:
                return None
            act = "KILN_ACT_RELU" if len(steps) == 2 else "KILN_ACT_NONE"
            return act, other, consumer
    return None


def _lowerable(n: Node, weight: Value) -> bool:
    """A convolution _convolution will lower (checked before neighbours are absorbed)."""
    avals = [v.aval for v in n.inputs] + [weight.aval, n.avals[0]]
    if any(a is None or a.dtype != F32 for a in avals):
        return False
    return conv_geometry(n.inputs[0].aval.shape, weight.aval.shape, n.attrs) is not None


def _absorb(gen: Generator) -> None:
    readers = gen.readers()
    index = {id(n): i for i, n in enumerate(gen.graph.nodes)}
    for n in gen.graph.nodes:
        if n.op != "convolution" or not _lowerable(n, n.inputs[1]):
            continue
        info: dict = {}
        scale = _channel_scale(gen, readers, n)
        if scale is not None and _lowerable(n, scale[0]):
            info["weight"], info["scale"], absorbed = scale
            gen.skip.update(id(m) for m in absorbed)
        ep = _epilogue(readers, n, index)
        if ep is not None:
            act, residual, consumer = ep
            # the residual must be computed before the convolution runs
            if residual is None or residual.node.op in (VAR, CONST) or \
                    index[id(residual.node)] < index[id(n)]:
                info["act"], info["residual"], info["consumer"] = act, residual, consumer
                gen.skip.add(id(consumer))
        if info:
            gen.fusions[id(n)] = info


PREPASSES.append(_absorb)


# ----------------------------------------------------------------------------------------------
# convolution and its gradients
# ----------------------------------------------------------------------------------------------

@register_lowering("convolution")
def _convolution(gen: Generator, n: Node) -> bool:
    info = gen.fusions.get(id(n), {})
    w_value = info.get("weight", n.inputs[1])
    if not _lowerable(n, w_value):
        return False      # (never with neighbours absorbed: _absorb checked the same)
    geom = conv_geometry(n.inputs[0].aval.shape, w_value.aval.shape, n.attrs)
    geom["f"] = n.avals[0].shape[1]
    geom["oh"], geom["ow"] = _out_hw(n.avals[0].shape)
    x = gen.contiguous(gen.view(n.inputs[0]))
    w = gen.contiguous(gen.view(w_value))
    bias = gen.contiguous(gen.view(n.inputs[2])) if len(n.inputs) > 2 else None
    scale = gen.contiguous(gen.view(info["scale"])) if "scale" in info else None
    residual = gen.contiguous(gen.view(info["residual"])) if info.get("residual") else None
    target = info.get("consumer", n)
    out = gen.output_view(target)
    gen.views[Value(n, 0)] = out
    act = info.get("act", "KILN_ACT_NONE")
    if "consumer" in info:
        gen.emit(f"/* + {target.op} of the output, in the convolution's epilogue */")
    if "scale" in info:
        gen.emit("/* + the per-filter weight scale, in the epilogue (weight kept unscaled) */")

    def p(v):
        return gen.ptr(v, const=True) if v is not None else "NULL"

    _emit_call(gen, "kiln_conv2d", _conv_struct(geom), "kiln_conv2d_f32",
               [p(x), p(w), p(scale), p(bias), p(residual), gen.ptr(out), act])
    return True


@register_lowering("deconvolution")
def _deconvolution(gen: Generator, n: Node) -> bool:
    views = _views_f32(gen, n)
    if views is None:
        return False
    x_shape, w_shape, y_shape = n.inputs[0].aval.shape, n.inputs[1].aval.shape, n.avals[0].shape
    nd = len(x_shape) - 2
    if nd not in (1, 2) or n.attrs.get("layout") not in (None, "NCW", "NCHW"):
        return False
    from ...ops.conv import _deconv_pad_adj

    kernel = tuple(n.attrs["kernel"]) or tuple(w_shape[2:])
    stride = tuple(n.attrs.get("stride") or (1,) * nd)
    dilate = tuple(n.attrs.get("dilate") or (1,) * nd)
    pad, _adj = _deconv_pad_adj(x_shape[2:], kernel, stride, dilate,
                                tuple(n.attrs.get("pad") or (0,) * nd),
                                tuple(n.attrs.get("adj") or (0,) * nd),
                                tuple(n.attrs.get("target_shape") or ()))
    # the convolution this is the transpose of: input y (N, F, ...) -> output x (N, C, ...)
    attrs = {"kernel": kernel, "stride": stride, "dilate": dilate, "pad": pad,
             "num_group": n.attrs.get("num_group", 1), "layout": n.attrs.get("layout")}
    geom = conv_geometry(y_shape, (x_shape[1],) + tuple(w_shape[1:]), attrs)
    if geom is None:
        return False
    geom["f"] = x_shape[1]
    geom["oh"], geom["ow"] = _out_hw(x_shape)
    x, w = gen.contiguous(views[0]), gen.contiguous(views[1])
    out = gen.output_view(n)
    _emit_call(gen, "kiln_conv2d", _conv_struct(geom), "kiln_conv2d_backward_data_f32",
               [gen.ptr(x, const=True), gen.ptr(w, const=True), gen.ptr(out)])
    if len(views) > 2:
        b = gen.contiguous(views[2])
        f, hw = y_shape[1], geom["h"] * geom["w"]
        gen.emit(f"for (long i = 0; i < {y_shape[0]}; i++) kiln_bias_act_f32({gen.ptr(out)} + "
                 f"i * {f * hw}, NULL, {gen.ptr(b, const=True)}, {f}, {hw}, 1, KILN_ACT_NONE);")
    return True


@register_lowering("convolution_weight_grad")
def _convolution_weight_grad(gen: Generator, n: Node) -> bool:
    views = _views_f32(gen, n)
    if views is None:
        return False
    x_shape, g_shape = n.inputs[0].aval.shape, n.inputs[1].aval.shape
    geom = conv_geometry(x_shape, n.avals[0].shape, n.attrs)
    if geom is None:
        return False
    geom["f"] = g_shape[1]
    geom["oh"], geom["ow"] = _out_hw(g_shape)
    x, g = gen.contiguous(views[0]), gen.contiguous(views[1])
    out = gen.output_view(n)
    _emit_call(gen, "kiln_conv2d", _conv_struct(geom), "kiln_conv2d_backward_weight_f32",
               [gen.ptr(x, const=True), gen.ptr(g, const=True), gen.ptr(out)])
    return True


# ----------------------------------------------------------------------------------------------
# pooling
# ----------------------------------------------------------------------------------------------

_POOL_TYPES = {"max": "KILN_POOL_MAX", "avg": "KILN_POOL_AVG", "sum": "KILN_POOL_SUM"}


def pool_geometry(x_shape, y_shape, attrs) -> str | None:
    """The kiln_pool2d initialiser for a 1-D or 2-D pooling, or None."""
    nd = len(x_shape) - 2
    kind = _POOL_TYPES.get(attrs.get("pool_type"))
    if nd not in (1, 2) or kind is None or attrs.get("layout") not in (None, "NCW", "NCHW"):
        return None
    if attrs.get("global_pool"):
        kernel, stride, pad = tuple(x_shape[2:]), (1,) * nd, (0,) * nd
    else:
        kernel = tuple(attrs["kernel"])
        stride = tuple(attrs.get("stride") or (1,) * nd)
        pad = tuple(attrs.get("pad") or (0,) * nd)
    if nd == 1:
        kernel, stride, pad = (1,) + kernel, (1,) + stride, (0,) + pad
    h, w = _out_hw(x_shape)
    oh, ow = _out_hw(y_shape)
    fields = [x_shape[0], x_shape[1], h, w, *kernel, *stride, *pad, oh, ow]
    return "{" + ", ".join(str(int(v)) for v in fields) + f", {kind}, " \
        f"{int(bool(attrs.get('count_include_pad', True)))}" + "}"


@register_lowering("pooling")
def _pooling(gen: Generator, n: Node) -> bool:
    views = _views_f32(gen, n)
    if views is None:
        return False
    geom = pool_geometry(n.inputs[0].aval.shape, n.avals[0].shape, n.attrs)
    if geom is None:
        return False
    x = gen.contiguous(views[0])
    out = gen.output_view(n)
    _emit_call(gen, "kiln_pool2d", geom, "kiln_pool2d_f32",
               [gen.ptr(x, const=True), gen.ptr(out)])
    return True


@register_lowering("pooling_backward")
def _pooling_backward(gen: Generator, n: Node) -> bool:
    views = _views_f32(gen, n)
    if views is None:
        return False
    geom = pool_geometry(n.inputs[1].aval.shape, n.inputs[2].aval.shape, n.attrs)
    if geom is None:
        return False
    g, x, y = (gen.contiguous(v) for v in views)
    out = gen.output_view(n)
    _emit_call(gen, "kiln_pool2d", geom, "kiln_pool2d_backward_f32",
               [gen.ptr(g, const=True), gen.ptr(x, const=True), gen.ptr(y, const=True),
                gen.ptr(out)])
    return True

