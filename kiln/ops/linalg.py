"""Products (matmul, dot, tensordot, einsum, and outer/inner built from them) and matrix
structure: diagonal, diag, tril, triu, trace."""

# Operator methods take no `self`: Op turns them into static methods (see registry.py).

from __future__ import annotations

import string

import numpy as _np

from .. import autograd as _autograd
from ..base import KilnError, ShapeError
from ..ndarray import apply
from .registry import Aval, Op
from . import _gemm
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
        return _gemm.matmul(a, b)

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
        ga = gb = None
        if _autograd.needs_cotangent(a):
            ga = _ew.unbroadcast(matmul(g2, _shape.swapaxes(b2, -1, -2)), a2.shape)
            if _ndim(a) == 1:
                ga = _shape.reshape(ga, a.shape)
        if _autograd.needs_cotangent(b):
            gb = _ew.unbroadcast(matmul(_shape.swapaxes(a2, -1, -2), g2), b2.shape)
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
        for i, j in zip(ia, ib, strict=False):
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
    """Sum of products over `axes` (an int n: the last n of `a` and first n of `b`; or a pair
    of axis lists)."""
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
        if a.ndim == 2 and b.ndim == 2:   # a matrix product: the same as matmul
            return _gemm.matmul(a, b)
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
    """NumPy's dot: inner product of vectors, matrix product, or a sum over the last axis of
    `a` and the second-to-last of `b`."""
    if out is not None:
        raise KilnError("dot: out= is not supported; assign the result instead")
    return apply(Dot, (a, b))


def outer(a, b):
    """Outer product of the flattened inputs: out[i, j] = a[i] * b[j]."""
    return _ew.multiply(_shape.reshape(a, (-1, 1)), _shape.reshape(b, (1, -1)))


def inner(a, b):
    """Sum of products over the last axes of `a` and `b`."""
    return tensordot(a, b, ((_ndim(a) - 1,), (_ndim(b) - 1,)))


def vdot(a, b):
    """Dot product of the flattened inputs."""
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
    n_ell = max((nd - len(t.replace("...", ""))
                 for t, nd in zip(terms, ndims, strict=True) if "..." in t),
                default=0)
    ell = "".join(spare[:n_ell])
    new_terms = []
    for t, nd in zip(terms, ndims, strict=False):
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
        for term, x in zip(lhs.split(","), operands, strict=False):
            if len(term) != len(x.shape):
                raise ShapeError(f"einsum: subscripts {term!r} for an operand of shape "
                                 f"{tuple(x.shape)}")
            for c, d in zip(term, x.shape, strict=False):
                if sizes.get(c, d) != d and 1 not in (d, sizes[c]):
                    raise ShapeError(f"einsum: index {c!r} has sizes {sizes[c]} and {d}")
                sizes[c] = max(sizes.get(c, d), d)
        dtype = _np.result_type(*[x.dtype for x in operands])
        return Aval(tuple(sizes[c] for c in rhs), dtype)

    def grad(inputs, outputs, cts, *, subscripts):
        lhs, rhs = subscripts.split("->")
        terms = lhs.split(",")
        grads = []
        for i, (term, x) in enumerate(zip(terms, inputs, strict=False)):
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
            if tuple(g.shape) != tuple(x.shape):
                # An index of size 1 here but larger elsewhere broadcast: sum it back. One of
                # size 1 elsewhere but larger here makes g too small: broadcast it up first.
                full = _np.broadcast_shapes(tuple(g.shape), tuple(x.shape))
                if full != tuple(g.shape):
                    g = _shape.broadcast_to(g, full)
                g = _ew.unbroadcast(g, x.shape)
            grads.append(g)
        return tuple(grads)


def einsum(subscripts: str, *operands, optimize=False):
    """Einstein summation, as NumPy's einsum (explicit, implicit and '...' forms)."""
    full = _expand_ellipsis(subscripts, [_ndim(x) for x in operands])
    return apply(Einsum, operands, {"subscripts": full})


# ----------------------------------------------------------------------------------------------
# diagonals and triangles
# ----------------------------------------------------------------------------------------------

def _diag_len(n1: int, n2: int, offset: int) -> int:
    if offset >= 0:
        return max(0, min(n1, n2 - offset))
    return max(0, min(n1 + offset, n2))


class Diagonal(Op):
    """The diagonal at `offset` of the planes (axis1, axis2), as a new last axis."""

    name = "diagonal"
    mx_name = "_np_diagonal"
    attrs = {"offset": 0, "axis1": 0, "axis2": 1}

    def impl(x, *, offset, axis1, axis2):
        # NumPy's diagonal is a read-only view: copy it, as every kiln result owns its buffer.
        return _np.diagonal(x, offset, axis1, axis2).copy()

    def infer(x, *, offset, axis1, axis2):
        shape = tuple(d for i, d in enumerate(x.shape) if i not in (axis1, axis2))
        length = _diag_len(x.shape[axis1], x.shape[axis2], offset)
        return Aval(shape + (length,), x.dtype)

    def grad(inputs, outputs, cts, *, offset, axis1, axis2):
        return (apply(DiagEmbed, (cts[0],), {"offset": offset, "axis1": axis1, "axis2": axis2,
                                              "shape": tuple(inputs[0].shape)}),)


class DiagEmbed(Op):
    """Zeros of `shape` with the last axis of the input written on the diagonal at `offset` of
    the planes (axis1, axis2): the inverse placement of `diagonal`, and `diag` of a vector."""

    name = "diag_embed"
    mx_name = "_kiln_diag_embed"
    attrs = {"offset": 0, "axis1": 0, "axis2": 1, "shape": ()}

    def impl(g, *, offset, axis1, axis2, shape):
        out = _np.zeros(shape, g.dtype)
        length = g.shape[-1]
        rows = _np.arange(length) + max(-offset, 0)
        cols = _np.arange(length) + max(offset, 0)
        # moveaxis gives a writable view of `out` with the two planes' axes last.
        _np.moveaxis(out, (axis1, axis2), (-2, -1))[..., rows, cols] = g
        return out

    def infer(g, *, offset, axis1, axis2, shape):
        expected = Diagonal.infer(Aval(tuple(shape), g.dtype), offset=offset, axis1=axis1,
                                  axis2=axis2)
        if tuple(g.shape) != expected.shape:
            raise ShapeError(f"diag_embed: input of shape {tuple(g.shape)} does not fill the "
                             f"diagonal {offset} of shape {tuple(shape)}; expected "
                             f"{expected.shape}")
        return Aval(tuple(shape), g.dtype)

    def grad(inputs, outputs, cts, *, offset, axis1, axis2, shape):
        return (apply(Diagonal, (cts[0],), {"offset": offset, "axis1": axis1, "axis2": axis2}),)


def diagonal(a, offset: int = 0, axis1: int = 0, axis2: int = 1):
    """The diagonal of the planes (axis1, axis2), as NumPy's: those axes are replaced by a last
    axis holding the diagonal at `offset` (above the main one when positive)."""
    ndim = _ndim(a)
    if ndim < 2:
        raise ShapeError(f"diagonal: needs at least 2 dimensions, not shape {tuple(a.shape)}")
    ax1, ax2 = _reduce.norm_axis((axis1, axis2), ndim)
    if ax1 == ax2:
        raise ShapeError(f"diagonal: axis1 and axis2 are the same axis ({ax1})")
    return apply(Diagonal, (a,), {"offset": int(offset), "axis1": ax1, "axis2": ax2})


def diag(v, k: int = 0):
    """The k-th diagonal of a matrix, or a square matrix with vector `v` on its k-th diagonal."""
    if _ndim(v) == 2:
        return diagonal(v, k)
    if _ndim(v) != 1:
        raise ShapeError(f"diag: needs a 1-D or 2-D array, not shape {tuple(v.shape)}")
    n = v.shape[0] + abs(int(k))
    return apply(DiagEmbed, (v,), {"offset": int(k), "axis1": 0, "axis2": 1, "shape": (n, n)})


def diagflat(v, k: int = 0):
    """A matrix with the flattened `v` on its k-th diagonal."""
    return diag(_shape.ravel(v), k)


class _Triangle(Op):
    attrs = {"k": 0}

    def infer(x, *, k):
        return Aval(x.shape, x.dtype)


class Tril(_Triangle):
    """The lower triangle (on and below the k-th diagonal) of the last two axes; zeros above."""

    name = "tril"
    mx_name = "_npi_tril"

    def impl(x, *, k):
        return _np.tril(x, k)

    def grad(inputs, outputs, cts, *, k):
        return (apply(Tril, (cts[0],), {"k": k}),)


class Triu(_Triangle):
    """The upper triangle (on and above the k-th diagonal) of the last two axes; zeros below."""

    name = "triu"
    mx_name = "_npi_triu"

    def impl(x, *, k):
        return _np.triu(x, k)

    def grad(inputs, outputs, cts, *, k):
        return (apply(Triu, (cts[0],), {"k": k}),)


def _triangle(op, m, k):
    if _ndim(m) == 0:
        raise ShapeError(f"{op.name}: needs an array of at least 1 dimension")
    if _ndim(m) == 1:  # NumPy reads a vector as the rows of a square matrix
        m = _shape.broadcast_to(m, (m.shape[0], m.shape[0]))
    return apply(op, (m,), {"k": int(k)})


def tril(m, k: int = 0):
    """Lower triangle of (each matrix of) `m`, from the k-th diagonal down."""
    return _triangle(Tril, m, k)


def triu(m, k: int = 0):
    """Upper triangle of (each matrix of) `m`, from the k-th diagonal up."""
    return _triangle(Triu, m, k)


def trace(a, offset: int = 0, axis1: int = 0, axis2: int = 1, dtype=None):
    """Sum along a diagonal (the main one of a matrix by default)."""
    return _reduce.sum(diagonal(a, offset, axis1, axis2), axis=-1, dtype=dtype)


# Inverses, determinants and solves, re-exported: np.linalg finds them all here.
from .linalg_solve import det, inv, slogdet, solve  # noqa: E402, F401
