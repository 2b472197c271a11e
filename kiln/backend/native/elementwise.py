"""Elementwise loops in C: one generated function per node (or fused chain of nodes).

The output is contiguous; every operand is a view with any strides (0 where it broadcasts), or
a literal. Dimensions that are contiguous for every operand merge, so most loops are one flat
loop the compiler vectorises. Large loops run on the thread pool, split over their outermost
dimension.

Operator semantics follow NumPy: the loop types of each operator are NumPy's own
(`ufunc.resolve_dtypes`), so `float32 * bool` computes in float32 and `int32 < 0.5` compares in
float64; NaN propagates through maximum/minimum/relu as in NumPy.
"""

from __future__ import annotations

import functools

import numpy as _np

from .codegen import Generator, LoweringError, View, contiguous_strides
from .ctypes_map import c_literal, c_type, supported_dtype

__all__ = ["emit_copy", "emit_elementwise", "Scalar", "step_expression",
           "PARALLEL_ELEMENTS"]

#: loops over more elements than this use the thread pool
PARALLEL_ELEMENTS = 1 << 15


# ----------------------------------------------------------------------------------------------
# the operator table: op name -> C expression for loaded operands
# ----------------------------------------------------------------------------------------------

def _f(name32: str, name64: str):
    """A function with float and double versions (float32 / float64 loops)."""
    def make(args, t):
        return f"{name32 if t == _np.float32 else name64}({', '.join(args)})"
    return make


def _fmt(template: str):
    def make(args, t):
        return template.format(*args)
    return make


_FLOAT_UNARY = {
    "exp": _f("kiln_expf", "exp"), "log": _f("kiln_logf", "log"), "sqrt": _f("sqrtf", "sqrt"),
    "tanh": _f("kiln_tanhf", "tanh"), "sin": _f("sinf", "sin"), "cos": _f("cosf", "cos"),
    "tan": _f("tanf", "tan"), "arcsin": _f("asinf", "asin"), "arccos": _f("acosf", "acos"),
    "arctan": _f("atanf", "atan"), "sinh": _f("sinhf", "sinh"), "cosh": _f("coshf", "cosh"),
    "arcsinh": _f("asinhf", "asinh"), "arccosh": _f("acoshf", "acosh"),
    "arctanh": _f("atanhf", "atanh"), "log1p": _f("log1pf", "log1p"),
    "expm1": _f("expm1f", "expm1"), "log2": _f("log2f", "log2"), "log10": _f("log10f", "log10"),
    "exp2": _f("exp2f", "exp2"), "cbrt": _f("cbrtf", "cbrt"), "floor": _f("floorf", "floor"),
    "ceil": _f("ceilf", "ceil"), "rint": _f("rintf", "rint"), "trunc": _f("truncf", "trunc"),
    "absolute": _f("fabsf", "fabs"), "sign": _f("kiln_signf", "kiln_sign"),
    "isinf": _fmt("(isinf({0}) != 0)"), "isfinite": _fmt("(isfinite({0}) != 0)"),
    "degrees": lambda a, t: f"({a[0]} * {c_literal(180.0 / _np.pi, t)})",
    "radians": lambda a, t: f"({a[0]} * {c_literal(_np.pi / 180.0, t)})",
}
_ANY_UNARY = {
    "negative": _fmt("(-{0})"),
    "square": _fmt("({0} * {0})"),
    "reciprocal": lambda a, t: f"({c_literal(1, t)} / {a[0]})",
    "isnan": _fmt("({0} != {0})"),
    "logical_not": _fmt("({0} == 0)"),
}
_INT_UNARY = {
    "absolute": _fmt("({0} < 0 ? -{0} : {0})"),
    "sign": _fmt("(({0} > 0) - ({0} < 0))"),
}
# activations: computed in the output's (float) type
_ACTIVATIONS = {
    "relu": _f("kiln_reluf", "kiln_max0"), "sigmoid": _f("kiln_sigmoidf", "kiln_sigmoid"),
    "softrelu": _f("kiln_softreluf", "kiln_softrelu"),
    "softsign": _f("kiln_softsignf", "kiln_softsign"),
}

_BINARY = {
    "add": _fmt("({0} + {1})"), "subtract": _fmt("({0} - {1})"),
    "multiply": _fmt("({0} * {1})"), "true_divide": _fmt("({0} / {1})"),
    "equal": _fmt("({0} == {1})"), "not_equal": _fmt("({0} != {1})"),
    "less": _fmt("({0} < {1})"), "greater": _fmt("({0} > {1})"),
    "less_equal": _fmt("({0} <= {1})"), "greater_equal": _fmt("({0} >= {1})"),
    "logical_and": _fmt("(({0} != 0) & ({1} != 0))"),
    "logical_or": _fmt("(({0} != 0) | ({1} != 0))"),
    "logical_xor": _fmt("(({0} != 0) ^ ({1} != 0))"),
}
_FLOAT_BINARY = {
    "maximum": _f("kiln_maxf", "kiln_max"), "minimum": _f("kiln_minf", "kiln_min"),
    "power": _f("powf", "pow"), "mod": _f("kiln_modf_py", "kiln_mod_py"),
    "arctan2": _f("atan2f", "atan2"), "hypot": _f("hypotf", "hypot"),
}
_INT_BINARY = {
    "maximum": _fmt("({0} > {1} ? {0} : {1})"), "minimum": _fmt("({0} < {1} ? {0} : {1})"),
    "mod": _fmt("kiln_mod_int({0}, {1})"), "floor_divide": _fmt("kiln_floordiv_int({0}, {1})"),
    "bitwise_and": _fmt("({0} & {1})"), "bitwise_or": _fmt("({0} | {1})"),
    "bitwise_xor": _fmt("({0} ^ {1})"),
}
_BOOL_BINARY = {
    "maximum": _fmt("({0} | {1})"), "minimum": _fmt("({0} & {1})"),
    "bitwise_and": _fmt("({0} & {1})"), "bitwise_or": _fmt("({0} | {1})"),
    "bitwise_xor": _fmt("({0} ^ {1})"),
}


@functools.lru_cache(maxsize=4096)
def _loop_types(ufunc_name: str, operand_types: tuple) -> tuple | None:
    """NumPy's loop dtypes (inputs..., output) for `ufunc_name` on these operand types
    (dtypes, or Python scalar types for weak scalars)."""
    ufunc = getattr(_np, ufunc_name, None)
    if not isinstance(ufunc, _np.ufunc):
        return None
    try:
        types = ufunc.resolve_dtypes(operand_types + (None,) * ufunc.nout)
    except (TypeError, ValueError, AttributeError):
        return None
    return tuple(_np.dtype(t) for t in types)


_UFUNC_NAMES = {"mod": "remainder"}


def _cast(expr: str, src, dst) -> str:
    src, dst = _np.dtype(src), _np.dtype(dst)
    if src == dst:
        return expr
    if dst.kind == "b":
        return f"({expr} != 0)"
    return f"(({c_type(dst)}){expr})"


class Scalar:
    """A weakly typed Python number operand (an operator's `scalar` attribute)."""

    def __init__(self, value):
        self.value = value

    @property
    def type(self):
        v = self.value
        return _np.dtype(type(v)) if isinstance(v, _np.generic) else type(v)


def step_expression(op: str, attrs: dict, operands: list, out_dtype) -> str | None:
    """C expression for `op` on `operands` (each a (C expression, dtype) pair or a Scalar)
    giving `out_dtype`; None when there is no C form."""
    out_dtype = _np.dtype(out_dtype)
    if not supported_dtype(out_dtype):
        return None
    types = [o.type if isinstance(o, Scalar) else _np.dtype(o[1]) for o in operands]

    def as_type(k: int, dtype) -> str:
        o = operands[k]
        if isinstance(o, Scalar):
            return c_literal(o.value, dtype)
        return _cast(o[0], o[1], dtype)

    base = op[:-len("_scalar")] if op.endswith("_scalar") else op
    if op.endswith("_scalar") and base.startswith("r") and \
            base[1:] in (*_BINARY, *_FLOAT_BINARY, *_INT_BINARY):
        base = base[1:]
    if base in _ACTIVATIONS:
        if out_dtype.kind != "f":
            if base == "relu" and out_dtype.kind in "iu":
                e = as_type(0, out_dtype)
                return f"({e} < 0 ? 0 : {e})"
            return None
        return _ACTIVATIONS[base]([as_type(0, out_dtype)], out_dtype)
    if op == "cast":
        return as_type(0, out_dtype)
    if op == "clip":
        e = as_type(0, out_dtype)
        mx = _f("kiln_maxf", "kiln_max") if out_dtype.kind == "f" else _INT_BINARY["maximum"]
        mn = _f("kiln_minf", "kiln_min") if out_dtype.kind == "f" else _INT_BINARY["minimum"]
        if attrs.get("a_min") is not None:
            e = mx([e, c_literal(attrs["a_min"], out_dtype)], out_dtype)
        if attrs.get("a_max") is not None:
            e = mn([e, c_literal(attrs["a_max"], out_dtype)], out_dtype)
        return e
    if op == "where":
        return f"(({as_type(0, _np.bool_)}) ? {as_type(1, out_dtype)} : " \
               f"{as_type(2, out_dtype)})"
    loop = _loop_types(_UFUNC_NAMES.get(base, base), tuple(types))
    if loop is None:
        return None
    in_types, result = loop[:-1], loop[-1]
    if not all(supported_dtype(t) for t in loop):
        return None
    args = [as_type(k, lt) for k, lt in enumerate(in_types)]
    t = in_types[0]
    if len(args) == 1:
        if t.kind == "f" and base in _FLOAT_UNARY:
            expr = _FLOAT_UNARY[base](args, t)
        elif base in _ANY_UNARY:
            expr = _ANY_UNARY[base](args, t)
        elif t.kind in "iub" and base in _INT_UNARY:
            expr = _INT_UNARY[base](args, t)
        else:
            return None
    elif len(args) == 2:
        if base in _BINARY:
            expr = _BINARY[base](args, t)
        elif t.kind == "f" and base in _FLOAT_BINARY:
            expr = _FLOAT_BINARY[base](args, t)
        elif t.kind == "b" and base in _BOOL_BINARY:
            expr = _BOOL_BINARY[base](args, t)
        elif t.kind in "iu" and base in _INT_BINARY:
            expr = _INT_BINARY[base](args, t)
        else:
            return None
    else:
        return None
    if result.kind == "b" and base in ("add", "multiply"):
        expr = f"({expr} != 0)"      # NumPy's bool + bool is `or`, bool * bool is `and`
    return _cast(expr, result, out_dtype)


# ----------------------------------------------------------------------------------------------
# loops
# ----------------------------------------------------------------------------------------------

def _broadcast_strides(view: View, out_shape: tuple) -> tuple:
    nd = len(out_shape)
    lead = nd - len(view.shape)
    strides = [0] * nd
    for i, (d, s) in enumerate(zip(view.shape, view.strides, strict=True)):
        strides[lead + i] = 0 if d == 1 else s
    return tuple(strides)


def _merge_dims(shape: tuple, stride_sets: list[tuple]) -> tuple[list, list[list]]:
    """Drop size-1 dimensions and merge neighbours that are contiguous for every operand."""
    dims = [(d, [st[i] for st in stride_sets]) for i, d in enumerate(shape) if d != 1]
    merged: list = []
    for d, sts in dims:
        if merged:
            pd, psts = merged[-1]
            if all(ps == s * d for ps, s in zip(psts, sts, strict=True)):
                merged[-1] = (pd * d, sts)
                continue
        merged.append((d, list(sts)))
    if not merged:
        merged = [(1, [0] * len(stride_sets))]
    return [d for d, _ in merged], [[sts[k] for _, sts in merged] for k in
                                     range(len(stride_sets))]


def _index(loop_vars: list[str], strides: list[int]) -> str:
    terms = []
    for v, s in zip(loop_vars, strides, strict=True):
        if s == 0:
            continue
        terms.append(v if s == 1 else f"{v} * {s}")
    return " + ".join(terms) if terms else "0"


def emit_elementwise(gen: Generator, out: View, operands: list[View],
                     body: list[str], result: str, comment: str = "",
                     inplace_of: int | None = None) -> None:
    """Emit a loop computing `out` (contiguous) from `operands`.

    `body` are C statements over `x0`, `x1` ... (the operands' elements, in their own C types)
    ending in the expression `result` (of the output's C type). `inplace_of`: the operand whose
    memory `out` overwrites (same index, same layout), so pointers may alias.
    """
    shape = tuple(out.shape) or (1,)
    arrays = [(k, v) for k, v in enumerate(operands) if not v.is_literal]
    strides = [_broadcast_strides(v, tuple(out.shape)) or (0,) for _, v in arrays]
    out_strides = contiguous_strides(tuple(out.shape)) or (1,)
    if not out.shape:
        strides = [(0,) for _ in arrays]
    dims, merged = _merge_dims(shape, strides + [out_strides])
    total = 1
    for d in dims:
        total *= d
    name = gen.fn_name("ew")
    loop_vars = [f"i{k}" for k in range(len(dims))]
    lines = [f"static void {name}(void *ctx, long lo, long hi) {{"]
    if comment:
        lines.insert(0, comment)
    lines.append("    void *const *p = (void *const *)ctx;")
    for j, (k, v) in enumerate(arrays):
        t = c_type(v.dtype)
        alias = inplace_of is not None and v.storage is out.storage
        restrict = "" if alias else "restrict "
        lines.append(f"    const {t} *{restrict}a{k} = (const {t} *)p[{j}];")
    ot = c_type(out.dtype)
    alias_out = inplace_of is not None or any(v.storage is out.storage for _, v in arrays)
    lines.append(f"    {ot} *{'' if alias_out else 'restrict '}o = ({ot} *)p[{len(arrays)}];")
    indent = "    "
    lines.append(f"{indent}for (long {loop_vars[0]} = lo; {loop_vars[0]} < hi; "
                 f"{loop_vars[0]}++) {{")
    for depth in range(1, len(dims)):
        indent += "    "
        lines.append(f"{indent}for (long {loop_vars[depth]} = 0; {loop_vars[depth]} < "
                     f"{dims[depth]}; {loop_vars[depth]}++) {{")
    inner = indent + "    "
    for j, (k, v) in enumerate(arrays):
        lines.append(f"{inner}const {c_type(v.dtype)} x{k} = a{k}[{_index(loop_vars, merged[j])}];")
    for k, v in enumerate(operands):
        if v.is_literal:
            lines.append(f"{inner}const {c_type(v.dtype)} x{k} = "
                         f"{c_literal(v.literal, v.dtype)};")
    for stmt in body:
        lines.append(f"{inner}{stmt}")
    lines.append(f"{inner}o[{_index(loop_vars, merged[-1])}] = {result};")
    for depth in range(len(dims) - 1, -1, -1):
        lines.append("    " * (depth + 1) + "}")
    lines.append("}")
    gen.add_function("\n".join(lines) + "\n")
    ptrs = [gen.ptr(v, const=True) for _, v in arrays] + [gen.ptr(out)]
    inner_size = total // dims[0]
    grain = max(1, PARALLEL_ELEMENTS // max(inner_size, 1))
    call_args = ", ".join(f"(void *){p}" for p in ptrs)
    if total >= 2 * PARALLEL_ELEMENTS and dims[0] >= 2:
        gen.emit(f"{{ void *c[] = {{{call_args}}}; kiln_parallel_for({name}, c, {dims[0]}, "
                 f"{grain}); }}")
    else:
        gen.emit(f"{{ void *c[] = {{{call_args}}}; {name}(c, 0, {dims[0]}); }}")


def emit_copy(gen: Generator, src: View, dst: View) -> None:
    """dst (contiguous) = src (any view, or a literal), cast to dst's type."""
    if not src.is_literal and src.contiguous() and src.dtype == dst.dtype and \
            src.size == dst.size:
        nbytes = dst.size * dst.dtype.itemsize
        gen.emit(f"memcpy({gen.ptr(dst)}, {gen.ptr(src, const=True)}, {nbytes});")
        return
    if not src.is_literal and len(src.shape) != len(dst.shape):
        if src.size != dst.size:
            raise LoweringError("copy between views of different sizes")
        # a reshape of a strided view: copy in the source's shape, the destination is dense
        dst = View(dst.storage, dst.offset, src.shape, contiguous_strides(src.shape), dst.dtype)
    expr = _cast("x0", src.dtype, dst.dtype)
    emit_elementwise(gen, dst, [src], [], expr)
