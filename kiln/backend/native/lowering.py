"""Lowerings: how each operator becomes C.

A lowering is `fn(gen, node) -> bool`: it checks that it can handle the node (dtypes, layouts)
before emitting anything, and returns False otherwise; the generator then runs the node in
Python. `LOWERINGS` maps operator names to lowerings; `kiln.backend.native.conv` adds the
convolution and pooling family.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as _np

from ...graph.ir import Node, Value
from ...ops.registry import REGISTRY, Aval
from .codegen import Generator, View, contiguous_strides
from .ctypes_map import c_literal, c_type, supported_dtype
from .elementwise import (_ACTIVATIONS, _ANY_UNARY, _BINARY, _FLOAT_BINARY, _FLOAT_UNARY,
                          _INT_BINARY, _INT_UNARY, PARALLEL_ELEMENTS, Scalar, emit_copy,
                          emit_elementwise, step_expression)

__all__ = ["LOWERINGS", "lower_node", "lower_view", "register_lowering"]

Lowering = Callable[[Generator, Node], bool]
LOWERINGS: dict[str, Lowering] = {}

F32 = _np.dtype(_np.float32)


def register_lowering(*names: str):
    def deco(fn: Lowering) -> Lowering:
        for name in names:
            LOWERINGS[name] = fn
        return fn
    return deco


def lower_node(gen: Generator, n: Node) -> bool:
    fn = LOWERINGS.get(n.op)
    if fn is None or any(a is None for a in n.avals):
        return False
    if any(v.aval is None for v in n.inputs):
        return False
    return fn(gen, n)


def _size(shape) -> int:
    k = 1
    for d in shape:
        k *= int(d)
    return k


def _f32(*views: View) -> bool:
    return all(v.dtype == F32 for v in views)


# ----------------------------------------------------------------------------------------------
# views: no code
# ----------------------------------------------------------------------------------------------

def lower_view(gen: Generator, n: Node) -> bool:
    """Record the node's result as a view of its input; False when that needs a copy."""
    x = gen.view(n.inputs[0])
    aval = n.avals[0]
    shape = tuple(aval.shape)
    if _np.dtype(aval.dtype) != x.dtype:
        return False
    if x.is_literal:
        gen.views[Value(n, 0)] = View(None, 0, shape, (), x.dtype, x.literal)
        return True
    if n.op in ("stop_gradient", "copy"):
        gen.views[Value(n, 0)] = x
        return True
    if n.op == "transpose":
        axes = n.attrs.get("axes")
        axes = tuple(reversed(range(len(x.shape)))) if axes is None else tuple(axes)
        gen.views[Value(n, 0)] = View(x.storage, x.offset, tuple(x.shape[a] for a in axes),
                                      tuple(x.strides[a] for a in axes), x.dtype)
        return True
    if n.op == "broadcast_to":
        lead = len(shape) - len(x.shape)
        strides = [0] * lead + [0 if d == 1 and shape[lead + i] != 1 else s
                                for i, (d, s) in enumerate(zip(x.shape, x.strides, strict=True))]
        gen.views[Value(n, 0)] = View(x.storage, x.offset, shape, tuple(strides), x.dtype)
        return True
    # reshape, expand_dims, squeeze, batch_flatten
    if x.contiguous():
        gen.views[Value(n, 0)] = View(x.storage, x.offset, shape, contiguous_strides(shape),
                                      x.dtype)
        return True
    squeezed = [(d, s) for d, s in zip(x.shape, x.strides, strict=True) if d != 1]
    if [d for d in shape if d != 1] == [d for d, _ in squeezed]:
        it = iter(s for _, s in squeezed)
        strides = tuple(0 if d == 1 else next(it) for d in shape)
        gen.views[Value(n, 0)] = View(x.storage, x.offset, shape, strides, x.dtype)
        return True
    return False


@register_lowering("reshape", "expand_dims", "squeeze", "batch_flatten", "transpose",
                   "broadcast_to", "copy", "stop_gradient")
def _materialized_view(gen: Generator, n: Node) -> bool:
    """A view that could not stay a view (a reshape of a strided view): copy."""
    x = gen.view(n.inputs[0])
    if not supported_dtype(x.dtype) or x.size != _size(n.avals[0].shape):
        return False
    out = gen.output_view(n)
    if tuple(x.shape) != tuple(out.shape):
        # A reshape copies in the input's own element order: write the output's contiguous
        # memory through a view of the input's shape.
        out = View(out.storage, out.offset, tuple(x.shape), contiguous_strides(x.shape),
                   out.dtype)
    emit_copy(gen, x, out)
    return True


# ----------------------------------------------------------------------------------------------
# elementwise
# ----------------------------------------------------------------------------------------------

_R_OPS = {f"r{b}_scalar" for b in (*_BINARY, *_FLOAT_BINARY, *_INT_BINARY, "floor_divide")}


def _operands(op: str, xs: list[tuple[str, _np.dtype]], scalar=None) -> list:
    if scalar is None:
        return list(xs)
    if op in _R_OPS:
        return [Scalar(scalar), xs[0]]
    return [xs[0], Scalar(scalar)]


def _inplace_candidate(gen: Generator, n: Node, views: list[View], candidates) -> int | None:
    """An operand whose memory the output may take over: arena memory dying here, laid out
    exactly as the output, read by no other operand."""
    out_aval = n.avals[0]
    if Value(n, 0) in gen.claims:
        return None
    nbytes = _size(out_aval.shape) * _np.dtype(out_aval.dtype).itemsize
    for k in candidates:
        v = views[k]
        if v.is_literal or v.storage.kind != "arena" or not v.covers_storage():
            continue
        if v.storage.nbytes != nbytes or tuple(v.shape) != tuple(out_aval.shape):
            continue
        if v.dtype.itemsize != _np.dtype(out_aval.dtype).itemsize:
            continue
        if not gen.dies_here(n.inputs[k]):
            continue
        if any(j != k and not w.is_literal and w.storage is v.storage
               for j, w in enumerate(views)):
            continue
        return k
    return None


_ELEMENTWISE = set(_FLOAT_UNARY) | set(_ANY_UNARY) | set(_INT_UNARY) | set(_ACTIVATIONS) | {
    "cast", "clip", "where"}
for _b in (*_BINARY, *_FLOAT_BINARY, *_INT_BINARY, "floor_divide"):
    _ELEMENTWISE |= {_b, f"{_b}_scalar", f"r{_b}_scalar"}


def _elementwise_node(gen: Generator, n: Node) -> bool:
    if n.num_outputs != 1:
        return False
    views = [gen.view(v) for v in n.inputs]
    if not all(supported_dtype(v.dtype) for v in views):
        return False
    out_dtype = _np.dtype(n.avals[0].dtype)
    xs = [(f"x{k}", v.dtype) for k, v in enumerate(views)]
    expr = step_expression(n.op, n.attrs, _operands(n.op, xs, n.attrs.get("scalar")), out_dtype)
    if expr is None:
        return False
    k = _inplace_candidate(gen, n, views, range(len(views)))
    out = gen.output_view(n, 0, reuse=views[k] if k is not None else None)
    emit_elementwise(gen, out, views, [], expr, inplace_of=k)
    return True


for _name in _ELEMENTWISE:
    LOWERINGS[_name] = _elementwise_node


@register_lowering("fused_elementwise")
def _fused_elementwise(gen: Generator, n: Node) -> bool:
    views = [gen.view(v) for v in n.inputs]
    if not all(supported_dtype(v.dtype) for v in views):
        return False
    acc = ("x0", views[0].dtype)
    acc_aval = n.inputs[0].aval
    body = []
    for step, (op_name, operand) in enumerate(n.attrs["program"]):
        op = REGISTRY[op_name]
        if operand is None:
            operands = [acc]
            out_aval = op.infer(acc_aval)
        elif operand[0] == "scalar":
            operands = _operands(op_name, [acc], operand[1])
            out_aval = op.infer(acc_aval, scalar=operand[1])
        else:
            k = operand[1] + 1
            other = (f"x{k}", views[k].dtype)
            other_aval = n.inputs[k].aval
            if operand[2] == "rhs":
                operands = [acc, other]
                out_aval = op.infer(acc_aval, other_aval)
            else:
                operands = [other, acc]
                out_aval = op.infer(other_aval, acc_aval)
        dtype = _np.dtype(out_aval.dtype)
        expr = step_expression(op_name, {}, operands, dtype)
        if expr is None:
            return False
        body.append(f"const {c_type(dtype)} t{step} = {expr};   /* {op_name} */")
        acc = (f"t{step}", dtype)
        acc_aval = Aval(tuple(out_aval.shape), dtype)
    out_dtype = _np.dtype(n.avals[0].dtype)
    result = step_expression("cast", {}, [acc], out_dtype)
    k = _inplace_candidate(gen, n, views, [0])
    out = gen.output_view(n, 0, reuse=views[k] if k is not None else None)
    emit_elementwise(gen, out, views, body, result, inplace_of=k)
    return True


@register_lowering("full_like")
def _full_like(gen: Generator, n: Node) -> bool:
    dtype = _np.dtype(n.avals[0].dtype)
    if not supported_dtype(dtype):
        return False
    out = gen.output_view(n)
    value = n.attrs.get("fill_value", 0)
    if value == 0 and dtype.kind in "fiub":
        gen.emit(f"memset({gen.ptr(out)}, 0, {out.size * dtype.itemsize});")
    else:
        emit_elementwise(gen, out, [], [], c_literal(value, dtype))
    return True


# ----------------------------------------------------------------------------------------------
# reductions: sum, mean, prod, max, min over any axes
# ----------------------------------------------------------------------------------------------

_COMBINE = {"sum": "{a} + {v}", "mean": "{a} + {v}", "prod": "{a} * {v}"}


def _combine(op: str, dtype, a: str, v: str) -> str:
    if op in _COMBINE:
        return _COMBINE[op].format(a=a, v=v)
    f = dtype.kind == "f"
    if op == "max":
        return f"kiln_max{'f' if dtype == F32 else ''}({a}, {v})" if f else \
            f"({v} > {a} ? {v} : {a})"
    return f"kiln_min{'f' if dtype == F32 else ''}({a}, {v})" if f else \
        f"({v} < {a} ? {v} : {a})"


def _init(op: str, dtype) -> str:
    if op in ("sum", "mean"):
        return c_literal(0, dtype)
    if op == "prod":
        return c_literal(1, dtype)
    if dtype.kind == "f":
        return c_literal(float("-inf") if op == "max" else float("inf"), dtype)
    info = _np.iinfo(dtype) if dtype.kind in "iu" else None
    if info is None:  # bool
        return "0" if op == "max" else "1"
    return c_literal(info.min if op == "max" else info.max, dtype)


@register_lowering("sum", "mean", "prod", "max", "min")
def _reduce(gen: Generator, n: Node) -> bool:
    x = gen.view(n.inputs[0])
    out_dtype = _np.dtype(n.avals[0].dtype)
    if not (supported_dtype(x.dtype) and supported_dtype(out_dtype)) or x.is_literal:
        return False
    if any(d == 0 for d in x.shape):
        return False
    ndim = len(x.shape)
    axis = n.attrs.get("axis")
    axes = set(range(ndim)) if axis is None else {a % ndim for a in axis} if ndim else set()
    acc_dtype = out_dtype
    if n.op in ("max", "min") and out_dtype != x.dtype:
        return False
    x = gen.contiguous(x)
    out = gen.output_view(n)
    if not axes or ndim == 0:
        emit_copy(gen, x, out)
        return True
    # merge neighbouring dimensions of the same kind (x is contiguous)
    blocks: list[list] = []   # [size, reduced]
    for i, d in enumerate(x.shape):
        red = i in axes
        if d == 1:
            continue
        if blocks and blocks[-1][1] == red:
            blocks[-1][0] *= d
        else:
            blocks.append([d, red])
    if not any(r for _, r in blocks):
        emit_copy(gen, x, out)
        return True
    count = _size(x.shape[i] for i in axes)
    # one pass per block of reduced dimensions, last block first
    reduced_idx = [i for i, (_, r) in enumerate(blocks) if r]
    src = x
    sizes = [b[0] for b in blocks]
    for p, bi in enumerate(reversed(reduced_idx)):
        last = p == len(reduced_idx) - 1
        o = _size(sizes[:bi])
        r = sizes[bi]
        i = _size(sizes[bi + 1:])
        if last:
            dst = out
        else:
            s = gen.temp(o * i * acc_dtype.itemsize, note="partial reduction")
            dst = View(s, 0, (o * i,), (1,), acc_dtype)
        step_op = n.op if last or n.op in ("max", "min", "prod") else "sum"
        _emit_reduce_pass(gen, src, dst, o, r, i, step_op, acc_dtype,
                          count if (last and n.op == "mean") else None, p)
        sizes = sizes[:bi] + sizes[bi + 1:]
        src = dst
    return True


def _emit_reduce_pass(gen: Generator, src: View, dst: View, o: int, r: int, i: int, op: str,
                      acc_dtype, divide_by: int | None, part: int) -> None:
    tin, tacc, tout = c_type(src.dtype), c_type(acc_dtype), c_type(dst.dtype)
    name = f"{gen.fn_name('reduce')}_{part}"
    init = _init(op, acc_dtype)
    load = "(" + tacc + ")" if src.dtype != acc_dtype else ""
    final = (lambda a: f"({a} / {c_literal(divide_by, acc_dtype)})") if divide_by else \
        (lambda a: a)
    over_i = i > 1 and o < 4
    lines = [f"static void {name}(void *ctx, long lo, long hi) {{",
             "    void *const *p = (void *const *)ctx;",
             f"    const {tin} *restrict x = (const {tin} *)p[0];",
             f"    {tout} *restrict y = ({tout} *)p[1];"]
    simd = ""
    if op in ("sum", "mean") and acc_dtype.kind == "f":
        simd = "        #pragma omp simd reduction(+:acc)"
    if i == 1:
        lines += ["    for (long o = lo; o < hi; o++) {",
                  f"        const {tin} *xo = x + o * {r}L;",
                  f"        {tacc} acc = {init};"]
        if simd:
            lines.append(simd)
        lines += [f"        for (long r = 0; r < {r}; r++) acc = "
                  f"{_combine(op, acc_dtype, 'acc', load + 'xo[r]')};",
                  f"        y[o] = {final('acc')};",
                  "    }"]
        extent = o
    else:
        olo, ohi, ilo, ihi = ("0", str(o), "lo", "hi") if over_i else ("lo", "hi", "0", str(i))
        lines += [f"    for (long o = {olo}; o < {ohi}; o++) {{",
                  f"        {tout} *yo = y + o * {i}L;",
                  f"        for (long i = {ilo}; i < {ihi}; i++) yo[i] = {init};",
                  f"        for (long r = 0; r < {r}; r++) {{",
                  f"            const {tin} *xr = x + (o * {r}L + r) * {i}L;",
                  f"            for (long i = {ilo}; i < {ihi}; i++) yo[i] = "
                  f"{_combine(op, acc_dtype, 'yo[i]', load + 'xr[i]')};",
                  "        }"]
        if divide_by:
            lines.append(f"        for (long i = {ilo}; i < {ihi}; i++) yo[i] = {final('yo[i]')};")
        lines.append("    }")
        extent = i if over_i else o
    lines.append("}")
    gen.add_function("\n".join(lines) + "\n")
    args = f"(void *){gen.ptr(src, const=True)}, (void *){gen.ptr(dst)}"
    work = o * r * i
    if work >= 2 * PARALLEL_ELEMENTS and extent >= 2:
        grain = max(1, PARALLEL_ELEMENTS // max(work // extent, 1))
        gen.emit(f"{{ void *c[] = {{{args}}}; kiln_parallel_for({name}, c, {extent}, {grain}); }}")
    else:
        gen.emit(f"{{ void *c[] = {{{args}}}; {name}(c, 0, {extent}); }}")


# ----------------------------------------------------------------------------------------------
# matrix products
# ----------------------------------------------------------------------------------------------

_ACT_CODES = {"relu": "KILN_ACT_RELU", "sigmoid": "KILN_ACT_SIGMOID", "tanh": "KILN_ACT_TANH",
              "softrelu": "KILN_ACT_SOFTRELU", "softsign": "KILN_ACT_SOFTSIGN"}


@register_lowering("fully_connected", "fused_dense")
def _dense(gen: Generator, n: Node) -> bool:
    views = [gen.view(v) for v in n.inputs]
    if not _f32(*views) or n.avals[0].dtype != F32 or any(v.is_literal for v in views):
        return False
    act = "KILN_ACT_NONE"
    if n.op == "fused_dense":
        act = _ACT_CODES.get(n.attrs.get("act_type"))
        if act is None:
            return False
    x, w = gen.contiguous(views[0]), gen.contiguous(views[1])
    b = gen.contiguous(views[2]) if len(views) > 2 else None
    nh, k = w.shape
    m = x.size // k
    out = gen.output_view(n)
    bias = gen.ptr(b, const=True) if b is not None else "NULL"
    gen.emit(f"kiln_dense_f32({gen.ptr(x, const=True)}, {gen.ptr(w, const=True)}, {bias}, "
             f"{gen.ptr(out)}, {m}, {nh}, {k}, {act});")
    return True


def _gemm_operand(v: View) -> tuple[int, int] | None:
    """(transposed, leading dimension) when the 2-D view `v` is a matrix BLAS can read."""
    r, c = v.shape
    sr, sc = v.strides
    if (sc == 1 or c == 1) and (sr >= c or r == 1):
        return 0, max(sr, c, 1) if r > 1 else max(c, 1)
    if (sr == 1 or r == 1) and (sc >= r or c == 1):
        return 1, max(sc, r, 1) if c > 1 else max(r, 1)
    return None


@register_lowering("matmul")
def _matmul(gen: Generator, n: Node) -> bool:
    a, b = gen.view(n.inputs[0]), gen.view(n.inputs[1])
    if not _f32(a, b) or n.avals[0].dtype != F32 or a.is_literal or b.is_literal:
        return False
    if len(a.shape) == 1:
        a = View(a.storage, a.offset, (1, a.shape[0]), (a.shape[0] * a.strides[0],
                                                        a.strides[0]), a.dtype)
    if len(b.shape) == 1:
        b = View(b.storage, b.offset, (b.shape[0], 1), (b.strides[0], 1), b.dtype)
    if len(a.shape) != 2 or len(b.shape) != 2:
        return _batched_matmul(gen, n, a, b)
    m, k = a.shape
    nn = b.shape[1]
    if k == 0:
        return False
    ta = _gemm_operand(a)
    if ta is None:
        a = gen.contiguous(a)
        ta = (0, k)
    tb = _gemm_operand(b)
    if tb is None:
        b = gen.contiguous(b)
        tb = (0, nn)
    out = gen.output_view(n)
    gen.emit(f"kiln_sgemm({ta[0]}, {tb[0]}, {m}, {nn}, {k}, 1.0f, {gen.ptr(a, const=True)}, "
             f"{ta[1]}, {gen.ptr(b, const=True)}, {tb[1]}, 0.0f, {gen.ptr(out)}, {nn});")
    return True


def _batched_matmul(gen: Generator, n: Node, a: View, b: View) -> bool:
    if len(a.shape) != len(b.shape) or a.shape[:-2] != b.shape[:-2]:
        return False
    a, b = gen.contiguous(a), gen.contiguous(b)
    batch = _size(a.shape[:-2])
    m, k = a.shape[-2:]
    nn = b.shape[-1]
    out = gen.output_view(n)
    gen.emit(f"for (long bi = 0; bi < {batch}; bi++)")
    gen.emit(f"    kiln_sgemm(0, 0, {m}, {nn}, {k}, 1.0f, {gen.ptr(a, const=True)} + bi * "
             f"{m * k}, {k}, {gen.ptr(b, const=True)} + bi * {k * nn}, {nn}, 0.0f, "
             f"{gen.ptr(out)} + bi * {m * nn}, {nn});")
    return True


# ----------------------------------------------------------------------------------------------
# softmax, pick
# ----------------------------------------------------------------------------------------------

def _split_axis(shape: tuple, axis: int) -> tuple[int, int, int]:
    ax = axis % len(shape)
    return _size(shape[:ax]), shape[ax], _size(shape[ax + 1:])


@register_lowering("softmax", "log_softmax")
def _softmax(gen: Generator, n: Node) -> bool:
    x = gen.view(n.inputs[0])
    if not _f32(x) or x.is_literal or n.avals[0].dtype != F32 or not x.shape:
        return False
    t = n.attrs.get("temperature")
    scale = 1.0 if t is None or t == 1.0 else 1.0 / float(t)
    x = gen.contiguous(x)
    o, length, i = _split_axis(x.shape, n.attrs.get("axis", -1))
    k = _inplace_candidate(gen, n, [x], [0])
    out = gen.output_view(n, 0, reuse=x if k is not None else None)
    gen.emit(f"kiln_softmax_f32({gen.ptr(x, const=True)}, {gen.ptr(out)}, {o}, {length}, {i}, "
             f"{c_literal(scale, F32)}, {1 if n.op == 'log_softmax' else 0});")
    return True


def _index_expr(mode: str, var: str, size: int) -> str:
    if mode == "wrap":
        return f"{var} = (({var} % {size}) + {size}) % {size};"
    return f"{var} = {var} < 0 ? 0 : ({var} >= {size} ? {size - 1} : {var});"


@register_lowering("pick")
def _pick(gen: Generator, n: Node) -> bool:
    data, index = gen.view(n.inputs[0]), gen.view(n.inputs[1])
    if data.is_literal or index.is_literal or not data.shape:
        return False
    if not (supported_dtype(data.dtype) and supported_dtype(index.dtype)):
        return False
    data, index = gen.contiguous(data), gen.contiguous(index)
    o, size, i = _split_axis(data.shape, n.attrs.get("axis", -1))
    out = gen.output_view(n)
    gen.emit(f"{{ const {c_type(data.dtype)} *d = {gen.ptr(data, const=True)};")
    gen.emit(f"  const {c_type(index.dtype)} *ix = {gen.ptr(index, const=True)};")
    gen.emit(f"  {c_type(out.dtype)} *y = {gen.ptr(out)};")
    gen.emit(f"  for (long o = 0; o < {o}; o++) for (long i = 0; i < {i}; i++) {{")
    gen.emit(f"    long j = (long)ix[o * {i}L + i]; {_index_expr(n.attrs['mode'], 'j', size)}")
    gen.emit(f"    y[o * {i}L + i] = d[(o * {size}L + j) * {i}L + i];")
    gen.emit("  } }")
    return True


@register_lowering("pick_backward")
def _pick_backward(gen: Generator, n: Node) -> bool:
    g, index = gen.view(n.inputs[0]), gen.view(n.inputs[1])
    shape = tuple(n.attrs["shape"])
    if g.is_literal or index.is_literal or not shape:
        return False
    if not (supported_dtype(g.dtype) and supported_dtype(index.dtype)):
        return False
    g, index = gen.contiguous(g), gen.contiguous(index)
    o, size, i = _split_axis(shape, n.attrs.get("axis", -1))
    out = gen.output_view(n)
    gen.emit(f"memset({gen.ptr(out)}, 0, {out.size * out.dtype.itemsize});")
    gen.emit(f"{{ const {c_type(g.dtype)} *g = {gen.ptr(g, const=True)};")
    gen.emit(f"  const {c_type(index.dtype)} *ix = {gen.ptr(index, const=True)};")
    gen.emit(f"  {c_type(out.dtype)} *y = {gen.ptr(out)};")
    gen.emit(f"  for (long o = 0; o < {o}; o++) for (long i = 0; i < {i}; i++) {{")
    gen.emit(f"    long j = (long)ix[o * {i}L + i]; {_index_expr(n.attrs['mode'], 'j', size)}")
    gen.emit(f"    y[(o * {size}L + j) * {i}L + i] = g[o * {i}L + i];")
    gen.emit("  } }")
    return True


@register_lowering("softmax_cross_entropy", "softmax_cross_entropy_backward")
def _softmax_cross_entropy(gen: Generator, n: Node) -> bool:
    """Both through the threaded softmax kernel: forward, log-softmax into scratch memory and
    the label's entry picked and negated; backward, softmax into the output, 1 subtracted at
    the label, scaled by the cotangent."""
    x, index = gen.view(n.inputs[0]), gen.view(n.inputs[1])
    backward = n.op == "softmax_cross_entropy_backward"
    ct = gen.view(n.inputs[2]) if backward else None
    if not _f32(x) or x.is_literal or index.is_literal or not x.shape or \
            n.avals[0].dtype != F32 or not supported_dtype(index.dtype):
        return False
    if ct is not None and (not _f32(ct) or ct.is_literal):
        return False
    x, index = gen.contiguous(x), gen.contiguous(index)
    o, size, i = _split_axis(x.shape, n.attrs.get("axis", -1))
    clip = _index_expr("clip", "j", size)
    it = c_type(index.dtype)
    if not backward:
        logp = View(gen.temp(x.size * 4, "log_softmax"), 0, x.shape, contiguous_strides(x.shape),
                    F32)
        out = gen.output_view(n)
        gen.emit(f"kiln_softmax_f32({gen.ptr(x, const=True)}, {gen.ptr(logp)}, {o}, {size}, "
                 f"{i}, 1.0f, 1);")
        gen.emit(f"{{ const float *lp = {gen.ptr(logp, const=True)};")
        gen.emit(f"  const {it} *ix = {gen.ptr(index, const=True)};")
        gen.emit(f"  float *y = {gen.ptr(out)};")
        gen.emit(f"  for (long o = 0; o < {o}; o++) for (long i = 0; i < {i}; i++) {{")
        gen.emit(f"    long j = (long)ix[o * {i}L + i]; {clip}")
        gen.emit(f"    y[o * {i}L + i] = -lp[(o * {size}L + j) * {i}L + i];")
        gen.emit("  } }")
        return True
    ct = gen.contiguous(ct)
    out = gen.output_view(n)
    gen.emit(f"kiln_softmax_f32({gen.ptr(x, const=True)}, {gen.ptr(out)}, {o}, {size}, {i}, "
             "1.0f, 0);")
    gen.emit(f"{{ const {it} *ix = {gen.ptr(index, const=True)};")
    gen.emit(f"  const float *g = {gen.ptr(ct, const=True)};")
    gen.emit(f"  float *y = {gen.ptr(out)};")
    gen.emit(f"  for (long o = 0; o < {o}; o++) {{")
    gen.emit(f"    for (long i = 0; i < {i}; i++) {{")
    gen.emit(f"      long j = (long)ix[o * {i}L + i]; {clip}")
    gen.emit(f"      y[(o * {size}L + j) * {i}L + i] -= 1.0f;")
    gen.emit("    }")
    gen.emit(f"    for (long j = 0; j < {size}; j++) for (long i = 0; i < {i}; i++)")
    gen.emit(f"      y[(o * {size}L + j) * {i}L + i] *= g[o * {i}L + i];")
    gen.emit("  }")
    gen.emit("}")
    return True


# ----------------------------------------------------------------------------------------------
# batch normalisation
# ----------------------------------------------------------------------------------------------

@register_lowering("batch_norm")
def _batch_norm(gen: Generator, n: Node) -> bool:
    views = [gen.view(v) for v in n.inputs]
    if not _f32(*views) or any(v.is_literal for v in views):
        return False
    if any(_np.dtype(a.dtype) != F32 for a in n.avals):
        return False
    x = gen.contiguous(views[0])
    gamma, beta, mean, var = (gen.contiguous(v) for v in views[1:])
    nn, c, s = _split_axis(x.shape, n.attrs["axis"])
    k = _inplace_candidate(gen, n, [x], [0])
    y = gen.output_view(n, 0, reuse=x if k is not None else None)
    mo, vo = gen.output_view(n, 1), gen.output_view(n, 2)
    a = n.attrs
    gen.emit(f"kiln_batch_norm_f32({gen.ptr(x, const=True)}, {gen.ptr(gamma, const=True)}, "
             f"{gen.ptr(beta, const=True)}, {gen.ptr(mean, const=True)}, "
             f"{gen.ptr(var, const=True)}, {gen.ptr(y)}, {gen.ptr(mo)}, {gen.ptr(vo)}, "
             f"{nn}, {c}, {s}, {c_literal(a['eps'], F32)}, {int(bool(a['fix_gamma']))}, "
             f"{int(bool(a['training']))});")
    return True


def _load_optional_lowerings() -> None:
    from . import conv  # noqa: F401  (registers convolution and pooling)
    from . import control_flow  # noqa: F401  (foreach, while_loop, cond)


_load_optional_lowerings()
