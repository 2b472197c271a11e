"""Products: matmul, dot, tensordot, einsum (and outer/inner built from them)."""

from __future__ import annotations

import string

import numpy as _np

from ..base import KilnError, ShapeError
from ..ndarray import apply
from .registry import Aval, Op
from . import elementwise as _ew
from . import reduce as _reduce
from . import shape as _shape


def _ndim(x) -> int:
    return len(x.shape)


class Matmul(Op):
    """Matrix product with NumPy's rules: batch dimensions broadcast, 1-D operands are vectors."""

    name = "matmul"
    mx_name = "_npi_matmul"
    inputs = ("a", "b")

    def impl(a, b):
        return _np.matmul(a, b)

    def infer(a, b):
        sa, sb = tuple(a.shape), tuple(b.shape)
        if not sa or not sb:
            raise ShapeError("matmul: operands must have at least one dimension")
        a2 = (1,) + sa if len(sa) == 1 else sa
        b2 = sb + (1,) if len(sb) == 1 else sb
        if a2[-1] != b2[-2]:
            raise ShapeError(f"matmul: shapes {sa} and {sb} do not align ({a2[-1]} != {b2[-2]})")
        batch = _np.broadcast_shapes(a2[:-2], b2[:-2])
        shape = batch + (a2[-2], b2[-1])
        if len(sa) == 1:
            shape = shape[:-2] + shape[-1:]
        if len(sb) == 1:
            shape = shape[:-1]
        return Aval(shape, _np.result_type(a.dtype, b.dtype))

    def grad(inputs, outputs, cts):
        a, b = inputs
        g = cts[0]
        a2 = a if _ndim(a) > 1 else _shape.reshape(a, (1, -1))
        b2 = b if _ndim(b) > 1 else _shape.reshape(b, (-1, 1))
        out2 = Matmul.infer(Aval(a2.shape, a.dtype), Aval(b2.shape, b.dtype)).shape
        g2 = _shape.reshape(g, out2) if tuple(g.shape) != out2 else g
        ga = _ew.unbroadcast(matmul(g2, _shape.swapaxes(b2, -1, -2)), a2.shape)
        gb = _ew.unbroadcast(matmul(_shape.swapaxes(a2, -1, -2), g2), b2.shape)
        if _ndim(a) == 1:
            ga = _shape.reshape(ga, a.shape)
        if _ndim(b) == 1:
            gb = _shape.reshape(gb, b.shape)
        return ga, gb


def matmul(a, b):
    """Matrix product (the @ operator)."""
    return apply(Matmul, (a, b))


class Tensordot(Op):
    """Sum over `axes = (axes_a, axes_b)` of the product, NumPy's tensordot."""

    name = "tensordot"
    mx_name = "_npi_tensordot"
    attrs = {"axes": ((), ())}
    inputs = ("a", "b")

    def impl(a, b, *, axes):
        return _np.tensordot(a, b, axes)

    def infer(a, b, *, axes):
        ia, ib = axes
        for i, j in zip(ia, ib):
            if a.shape[i] != b.shape[j]:
                raise ShapeError(f"tensordot: axis {i} of {tuple(a.shape)} and axis {j} of "
                                 f"{tuple(b.shape)} differ")
        free_a = [d for i, d in enumerate(a.shape) if i not in ia]
        free_b = [d for i, d in enumerate(b.shape) if i not in ib]
        return Aval(tuple(free_a + free_b), _np.result_type(a.dtype, b.dtype))

    def grad(inputs, outputs, cts, *, axes):
        a, b = inputs
        g = cts[0]
        ia, ib = axes
        free_a = [i for i in range(_ndim(a)) if i not in ia]
        free_b = [i for i in range(_ndim(b)) if i not in ib]
        nfa = len(free_a)
        # g has dims free_a + free_b. Contract g's b-part with b's free axes for ga ...
        ga = tensordot(g, b, (tuple(range(nfa, nfa + len(free_b))), tuple(free_b)))
        order = free_a + [ia[ib.index(j)] for j in sorted(ib)]
        ga = _shape.transpose(ga, tuple(_np.argsort(order).tolist())) if order != sorted(
            order) else ga
        # ... and a's free axes with g's a-part for gb.
        gb = tensordot(a, g, (tuple(free_a), tuple(range(nfa))))
        order = [ib[ia.index(i)] for i in sorted(ia)] + free_b
        gb = _shape.transpose(gb, tuple(_np.argsort(order).tolist())) if order != sorted(
            order) else gb
        return ga, gb


def tensordot(a, b, axes=2):
    if isinstance(axes, (int, _np.integer)):
        n = int(axes)
        axes = (tuple(range(_ndim(a) - n, _ndim(a))), tuple(range(n)))
    else:
        ia, ib = axes
        ia = (ia,) if isinstance(ia, (int, _np.integer)) else tuple(ia)
        ib = (ib,) if isinstance(ib, (int, _np.integer)) else tuple(ib)
        if len(ia) != len(ib):
            raise ShapeError("tensordot: both operands need the same number of axes")
        axes = (tuple(int(i) % _ndim(a) for i in ia), tuple(int(j) % _ndim(b) for j in ib))
    return apply(Tensordot, (a, b), {"axes": axes})


class Dot(Op):
    """NumPy's dot: vector inner product, matrix product, or sum over a's last and b's
    second-to-last axis."""

    name = "dot"
    mx_name = "_np_dot"
    inputs = ("a", "b")

    def impl(a, b):
        return _np.dot(a, b)

    def infer(a, b):
        if _ndim(a) == 0 or _ndim(b) == 0:
            return Aval(tuple(a.shape) or tuple(b.shape), _np.result_type(a.dtype, b.dtype))
        return Tensordot.infer(a, b, axes=_dot_axes(a, b))

    def grad(inputs, outputs, cts):
        a, b = inputs
        if _ndim(a) == 0 or _ndim(b) == 0:
            g = cts[0]
            return (_ew.unbroadcast(g * b, a.shape), _ew.unbroadcast(g * a, b.shape))
        return Tensordot.grad(inputs, outputs, cts, axes=_dot_axes(a, b))


def _dot_axes(a, b):
    return ((_ndim(a) - 1,), (max(_ndim(b) - 2, 0),))


def dot(a, b, out=None):
    if out is not None:
        raise KilnError("dot: out= is not supported; assign the result instead")
    return apply(Dot, (a, b))


def outer(a, b):
    return _ew.multiply(_shape.reshape(a, (-1, 1)), _shape.reshape(b, (1, -1)))


def inner(a, b):
    return tensordot(a, b, ((_ndim(a) - 1,), (_ndim(b) - 1,)))


def vdot(a, b):
    return dot(_shape.ravel(a), _shape.ravel(b))


# ----------------------------------------------------------------------------------------------
# einsum
# ----------------------------------------------------------------------------------------------

def _expand_ellipsis(subscripts: str, ndims: list[int]) -> str:
    """Explicit-form subscripts with '...' replaced by letters the expression does not use."""
    subscripts = subscripts.replace(" ", "")
    if "->" in subscripts:
        lhs, rhs = subscripts.split("->")
    else:
        lhs, rhs = subscripts, None
    terms = lhs.split(",")
    if len(terms) != len(ndims):
        raise ShapeError(f"einsum: {len(terms)} operand subscripts for {len(ndims)} operands")
    spare = [c for c in string.ascii_letters if c not in subscripts]
    n_ell = max((nd - len(t.replace("...", "")) for t, nd in zip(terms, ndims) if "..." in t),
                default=0)
    ell = "".join(spare[:n_ell])
    new_terms = []
    for t, nd in zip(terms, ndims):
        if "..." in t:
            k = nd - len(t.replace("...", ""))
            t = t.replace("...", ell[n_ell - k:] if k else "")
        new_terms.append(t)
    if rhs is None:  # implicit mode: the letters used once, sorted, after the ellipsis letters
        counts = {}
        for t in new_terms:
            for c in t:
                counts[c] = counts.get(c, 0) + 1
        rhs = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    else:
        rhs = rhs.replace("...", ell)
    return ",".join(new_terms) + "->" + rhs


class Einsum(Op):
    name = "einsum"
    mx_name = "_npi_einsum"
    attrs = {"subscripts": ""}
    inputs = ("*operands",)

    def impl(*operands, subscripts):
        return _np.einsum(subscripts, *operands, optimize=len(operands) > 2)

    def infer(*operands, subscripts):
        lhs, rhs = subscripts.split("->")
        sizes = {}
        for term, x in zip(lhs.split(","), operands):
            if len(term) != len(x.shape):
                raise ShapeError(f"einsum: subscripts {term!r} for an operand of shape "
                                 f"{tuple(x.shape)}")
            for c, d in zip(term, x.shape):
                if sizes.get(c, d) != d and 1 not in (d, sizes[c]):
                    raise ShapeError(f"einsum: index {c!r} has sizes {sizes[c]} and {d}")
                sizes[c] = max(sizes.get(c, d), d)
        dtype = _np.result_type(*[x.dtype for x in operands])
        return Aval(tuple(sizes[c] for c in rhs), dtype)

    def grad(inputs, outputs, cts, *, subscripts):
        lhs, rhs = subscripts.split("->")
        terms = lhs.split(",")
        grads = []
        for i, (term, x) in enumerate(zip(terms, inputs)):
            if len(set(term)) != len(term):
                raise KilnError(f"einsum: the gradient for an operand with a repeated index "
                                f"({term!r}, a diagonal) is not implemented")
            others = [t for j, t in enumerate(terms) if j != i]
            reachable = set(rhs).union(*others) if others else set(rhs)
            kept = "".join(c for c in term if c in reachable)
            sub = ",".join([rhs] + others) + "->" + kept
            ops = [cts[0]] + [inputs[j] for j in range(len(inputs)) if j != i]
            g = einsum(sub, *ops)
            if kept != term:  # letters only this operand sums over: broadcast back
                shape = tuple(x.shape[term.index(c)] if c in kept else 1 for c in term)
                g = _shape.broadcast_to(_shape.reshape(g, shape), x.shape)
            grads.append(_ew.unbroadcast(g, x.shape))
        return tuple(grads)


def einsum(subscripts: str, *operands, optimize=False):
    """Einstein summation, as NumPy's einsum (explicit, implicit and '...' forms)."""
    full = _expand_ellipsis(subscripts, [_ndim(x) for x in operands])
    return apply(Einsum, operands, {"subscripts": full})


def trace(a):
    """Sum of the main diagonal of a 2-D array."""
    if _ndim(a) != 2:
        raise ShapeError(f"trace: needs a 2-D array, not shape {tuple(a.shape)}")
    return _reduce.sum(_ew.multiply(a, _np.eye(a.shape[0], a.shape[1], dtype=a.dtype)))
