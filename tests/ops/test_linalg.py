"""Products (matmul, dot, tensordot, einsum ...), matrix structure (diag, tril ...) and
np.linalg.norm: forward against NumPy, gradients, errors."""

from __future__ import annotations

import numpy as onp
import pytest
from np_compare import assert_matches, rand

from kiln import autograd, np
from kiln.base import KilnError, ShapeError
from kiln.test_utils import check_gradient, check_second_order

MATMUL_SHAPES = [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)),
                 ((5, 2, 3), (3, 4)), ((2, 3), (5, 3, 4)), ((5, 1, 2, 3), (4, 3, 2)),
                 ((4,), (2, 4, 3)), ((2, 2, 4), (4,))]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul(sa, sb):
    a, b = rand(*sa, dtype="float32"), rand(*sb, dtype="float32", seed=1)
    assert_matches(np.matmul(np.array(a), np.array(b)), onp.matmul(a, b), rtol=1e-5)
    assert_matches(np.array(a) @ np.array(b), a @ b, rtol=1e-5)
    assert_matches(a @ np.array(b), a @ b, rtol=1e-5)        # NumPy operand on the left
    check_gradient(np.matmul, [rand(*sa), rand(*sb, seed=1)])


@pytest.mark.parametrize("da,db", [("float32", "float64"), ("int32", "int32"),
                                   ("int64", "float32")])
def test_matmul_dtypes(da, db):
    a = onp.arange(6).reshape(2, 3).astype(da)
    b = onp.arange(6).reshape(3, 2).astype(db)
    assert_matches(np.matmul(np.array(a), np.array(b)), a @ b)


def test_matmul_errors():
    with pytest.raises(ShapeError, match=r"matmul.*\(2, 3\).*\(4, 5\)"):
        np.matmul(np.ones((2, 3)), np.ones((4, 5)))
    with pytest.raises(ShapeError, match="matmul"):
        np.matmul(np.ones(()), np.ones((2,)))


def test_matmul_second_order():
    check_second_order(np.matmul, [rand(2, 3), rand(3, 2, seed=1)])
    check_second_order(lambda a, b: np.tanh(a @ b) @ b.T, [rand(2, 3), rand(3, 3, seed=1)])


DOT_SHAPES = [((), ()), ((), (2, 3)), ((2, 3), ()), ((3,), (3,)), ((2, 3), (3,)),
              ((3,), (3, 4)), ((2, 3), (3, 4)), ((2, 3, 4), (4,)), ((4,), (2, 4, 3)),
              ((2, 3, 4), (5, 4, 2)), ((2, 3), (4, 3, 5))]


@pytest.mark.parametrize("sa,sb", DOT_SHAPES)
def test_dot(sa, sb):
    a, b = rand(*sa, dtype="float32"), rand(*sb, dtype="float32", seed=1)
    assert_matches(np.dot(np.array(a), np.array(b)), onp.dot(a, b), rtol=1e-5)
    assert_matches(np.array(a).dot(np.array(b)), onp.dot(a, b), rtol=1e-5)
    check_gradient(np.dot, [rand(*sa), rand(*sb, seed=1)])


def test_dot_errors():
    with pytest.raises(ShapeError, match="dot"):
        np.dot(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(KilnError, match="out="):
        np.dot(np.ones(2), np.ones(2), out=np.ones(()))


@pytest.mark.parametrize("axes", [0, 1, 2, ([1], [0]), ([2, 0], [0, 1]), ([0, 2], [1, 0]),
                                  ((-1, 1), (0, -2)), (2, 0)])
def test_tensordot(axes):
    a, b = rand(2, 3, 4, dtype="float32"), rand(4, 2, 3, dtype="float32", seed=1)
    if axes == 1:
        b = rand(4, 3, dtype="float32", seed=1)
    elif axes == 2:
        b = rand(3, 4, 5, dtype="float32", seed=1)
    elif axes == ([1], [0]):
        b = rand(3, 5, dtype="float32", seed=1)
    elif axes == ((-1, 1), (0, -2)):
        b = rand(4, 3, 2, dtype="float32", seed=1)
    elif axes == (2, 0):
        b = rand(4, 2, dtype="float32", seed=1)
    assert_matches(np.tensordot(np.array(a), np.array(b), axes), onp.tensordot(a, b, axes),
                   rtol=1e-5)
    check_gradient(lambda p, q: np.tensordot(p, q, axes), [a.astype("float64"),
                                                           b.astype("float64")])


def test_tensordot_errors():
    with pytest.raises(ShapeError, match="tensordot"):
        np.tensordot(np.ones((2, 3)), np.ones((4, 3)), ([0], [0]))
    with pytest.raises(ShapeError, match="same number of axes"):
        np.tensordot(np.ones((2, 3)), np.ones((3, 2)), ([0, 1], [1]))


def test_outer_inner_vdot():
    a, b = rand(3, dtype="float32"), rand(4, dtype="float32", seed=1)
    assert_matches(np.outer(np.array(a), np.array(b)), onp.outer(a, b))
    m = rand(2, 3, dtype="float32")
    assert_matches(np.outer(np.array(m), np.array(b)), onp.outer(m, b))
    c = rand(5, 4, dtype="float32", seed=2)
    assert_matches(np.inner(np.array(b), np.array(c)), onp.inner(b, c))
    assert_matches(np.inner(np.array(c), np.array(c)), onp.inner(c, c), rtol=1e-5)
    assert_matches(np.vdot(np.array(c), np.array(c)), onp.vdot(c, c), rtol=1e-5)
    check_gradient(np.outer, [rand(3), rand(4, seed=1)])
    check_gradient(np.inner, [rand(2, 4), rand(3, 4, seed=1)])
    check_gradient(np.vdot, [rand(2, 3), rand(3, 2, seed=1)])


EINSUM_CASES = [
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("ij,jk", [(2, 3), (3, 4)]),                  # implicit output
    ("ba,ac", [(2, 3), (3, 4)]),                  # implicit: output letters sorted
    ("i,i->", [(3,), (3,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ij->ji", [(2, 3)]),
    ("ij->", [(2, 3)]),
    ("ij->j", [(2, 3)]),
    ("bij,bjk->bik", [(5, 2, 3), (5, 3, 4)]),
    ("...ij,...jk->...ik", [(5, 2, 3), (5, 3, 4)]),
    ("...ij,...jk", [(5, 2, 3), (3, 4)]),         # implicit with ellipsis, broadcast
    ("i...,i...->...", [(3, 2, 4), (3, 2, 4)]),
    ("...,...", [(2, 3), (2, 3)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("bi, bi -> b", [(3, 4), (3, 4)]),           # spaces
    ("ij,j->i", [(2, 3), (1,)]),                  # a size-1 index broadcasts
]


@pytest.mark.parametrize("subscripts,shapes", EINSUM_CASES)
def test_einsum(subscripts, shapes):
    ops = [rand(*s, dtype="float32", seed=i) for i, s in enumerate(shapes)]
    assert_matches(np.einsum(subscripts, *[np.array(o) for o in ops]),
                   onp.einsum(subscripts, *ops), rtol=1e-5)
    check_gradient(lambda *xs: np.einsum(subscripts, *xs),
                   [o.astype("float64") for o in ops])


def test_einsum_repeated_index_forward_and_gradient_error():
    m = rand(3, 3, dtype="float32")
    assert_matches(np.einsum("ii", np.array(m)), onp.einsum("ii", m))
    assert_matches(np.einsum("ii->i", np.array(m)), onp.einsum("ii->i", m))
    x = np.array(m)
    x.attach_grad()
    with autograd.record():
        y = np.einsum("ii", x)
    with pytest.raises(KilnError, match="repeated index"):
        y.backward()


def test_einsum_errors():
    with pytest.raises(ShapeError, match="einsum"):
        np.einsum("ij,jk", np.ones((2, 3)))
    with pytest.raises(ShapeError, match="einsum"):
        np.einsum("ij,jk->ik", np.ones((2, 3)), np.ones((4, 5)))
    with pytest.raises(ShapeError, match="einsum"):
        np.einsum("ijk->i", np.ones((2, 3)))


def test_einsum_second_order():
    check_second_order(lambda a, b: np.einsum("ij,jk->ik", a, b) ** 2,
                       [rand(2, 3), rand(3, 2, seed=1)])


# ----------------------------------------------------------------------------------------------
# diag, diagonal, diagflat, tril, triu, trace
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [0, 1, 2, -1, -3, 5])
def test_diag(k):
    v = rand(3, dtype="float32")
    m = rand(3, 4, dtype="float32")
    assert_matches(np.diag(np.array(v), k), onp.diag(v, k))
    assert_matches(np.diag(np.array(m), k), onp.diag(m, k))
    check_gradient(lambda a: np.diag(a, k), [rand(3)])
    check_gradient(lambda a: np.diag(a, k), [rand(3, 4)])
    assert_matches(np.diagflat(np.array(m), k), onp.diagflat(m, k))


def test_diag_errors():
    with pytest.raises(ShapeError, match="diag"):
        np.diag(np.ones((2, 2, 2)))
    with pytest.raises(ShapeError, match="diagonal"):
        np.diagonal(np.ones(3))
    with pytest.raises(ShapeError, match="same axis"):
        np.diagonal(np.ones((2, 2)), 0, 1, -1)


@pytest.mark.parametrize("offset,axis1,axis2", [(0, 0, 1), (1, 0, 1), (-1, 0, 1), (0, 1, 2),
                                                (1, 2, 0), (-2, -1, -3), (0, 2, 1)])
def test_diagonal(offset, axis1, axis2):
    x = rand(3, 4, 5, dtype="float32")
    want = onp.diagonal(x, offset, axis1, axis2)
    got = np.diagonal(np.array(x), offset, axis1, axis2)
    assert_matches(got, want)
    got[...] = 0  # kiln results own their memory (NumPy's diagonal is a read-only view)
    check_gradient(lambda a: np.diagonal(a, offset, axis1, axis2), [rand(3, 4, 5)])
    check_second_order(lambda a: np.diagonal(a, offset, axis1, axis2) ** 3, [rand(3, 4, 5)])


@pytest.mark.parametrize("fn", ["tril", "triu"])
@pytest.mark.parametrize("k", [0, 1, -1, 3])
def test_tril_triu(fn, k):
    for shape in [(4,), (3, 4), (2, 3, 4)]:
        x = rand(*shape, dtype="float32")
        assert_matches(getattr(np, fn)(np.array(x), k), getattr(onp, fn)(x, k))
        check_gradient(lambda a: getattr(np, fn)(a, k), [rand(*shape)])
    with pytest.raises(ShapeError, match=fn):
        getattr(np, fn)(np.array(1.0))


def test_trace():
    m = rand(3, 4, dtype="float32")
    assert_matches(np.trace(np.array(m)), onp.trace(m))
    assert_matches(np.trace(np.array(m), 1), onp.trace(m, 1))
    t = rand(2, 3, 3, dtype="float32")
    assert_matches(np.trace(np.array(t), 0, 1, 2), onp.trace(t, 0, 1, 2))
    i = onp.arange(9, dtype="int32").reshape(3, 3)
    assert_matches(np.trace(np.array(i)), onp.trace(i))
    check_gradient(np.trace, [rand(3, 4)])


# ----------------------------------------------------------------------------------------------
# np.linalg.norm
# ----------------------------------------------------------------------------------------------

VECTOR_ORDS = [None, 2, 1, onp.inf, -onp.inf, 0, 3, 0.5, -1]
MATRIX_ORDS = [None, "fro", 1, -1, onp.inf, -onp.inf]


@pytest.mark.parametrize("ord", VECTOR_ORDS)
@pytest.mark.parametrize("axis", [None, 0, 1, -1])
@pytest.mark.parametrize("keepdims", [False, True])
def test_vector_norms(ord, axis, keepdims):
    x = rand(3, 4, low=0.2, high=2.0, dtype="float32")
    x[0, 0] = -x[0, 0]
    if axis is None:
        x = x[0]  # a vector: NumPy treats 2-D input without axis as a matrix
    got = np.linalg.norm(np.array(x), ord=ord, axis=axis if x.ndim == 2 else None,
                         keepdims=keepdims)
    want = onp.linalg.norm(x, ord=ord, axis=axis if x.ndim == 2 else None, keepdims=keepdims)
    assert_matches(got, want, rtol=1e-5)
    if ord != 0:
        check_gradient(lambda a: np.linalg.norm(a, ord=ord, axis=axis if x.ndim == 2 else None,
                                                keepdims=keepdims), [x.astype("float64")])


@pytest.mark.parametrize("ord", MATRIX_ORDS)
@pytest.mark.parametrize("axis", [None, (0, 1), (1, 0), (-1, 0)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_matrix_norms(ord, axis, keepdims):
    x = rand(3, 4, low=-2, high=2, dtype="float32", seed=3)
    got = np.linalg.norm(np.array(x), ord=ord, axis=axis, keepdims=keepdims)
    want = onp.linalg.norm(x, ord=ord, axis=axis, keepdims=keepdims)
    assert_matches(got, want, rtol=1e-5)
    check_gradient(lambda a: np.linalg.norm(a, ord=ord, axis=axis, keepdims=keepdims),
                   [x.astype("float64")])


def test_norm_of_a_batch_of_matrices_and_of_n_d_without_ord():
    x = rand(2, 3, 4, dtype="float32")
    assert_matches(np.linalg.norm(np.array(x)), onp.linalg.norm(x), rtol=1e-5)
    assert_matches(np.linalg.norm(np.array(x), axis=(1, 2)), onp.linalg.norm(x, axis=(1, 2)),
                   rtol=1e-5)
    assert_matches(np.linalg.norm(np.array(x), ord=1, axis=(2, 1)),
                   onp.linalg.norm(x, ord=1, axis=(2, 1)), rtol=1e-5)
    assert_matches(np.linalg.norm(np.array(x), keepdims=True),
                   onp.linalg.norm(x, keepdims=True), rtol=1e-5)


def test_norm_dtypes_and_errors():
    i = onp.array([3, 4], dtype="int32")
    assert_matches(np.linalg.norm(np.array(i)), onp.linalg.norm(i))
    with pytest.raises(KilnError, match="ord"):
        np.linalg.norm(np.ones((2, 2)), ord=2)          # spectral norm: needs an SVD
    with pytest.raises(KilnError, match="ord"):
        np.linalg.norm(np.ones((2, 2)), ord="nuc")
    with pytest.raises(KilnError, match="ord"):
        np.linalg.norm(np.ones(3), ord="fro")
    with pytest.raises(ShapeError, match="norm"):
        np.linalg.norm(np.ones((2, 2, 2)), ord=1)
    with pytest.raises(ShapeError, match="norm"):
        np.linalg.norm(np.ones((2, 2, 2)), axis=(0, 1, 2))


# ----------------------------------------------------------------------------------------------
# np.linalg: inv, det, slogdet, solve, and NumPy 2's diagonal/trace on the last two axes
# ----------------------------------------------------------------------------------------------

def _well_conditioned(*shape, seed=0):
    n = shape[-1]
    return rand(*shape, seed=seed) + 3 * onp.eye(n)


@pytest.mark.parametrize("shape", [(3, 3), (2, 3, 3)])
def test_inv_det_slogdet(shape):
    a = _well_conditioned(*shape).astype("float32")
    assert_matches(np.linalg.inv(np.array(a)), onp.linalg.inv(a), rtol=1e-4, atol=1e-5)
    assert_matches(np.linalg.det(np.array(a)), onp.linalg.det(a), rtol=1e-4)
    sign, logabs = np.linalg.slogdet(np.array(-a))
    want_sign, want_logabs = onp.linalg.slogdet(-a)
    assert_matches(sign, want_sign)
    assert_matches(logabs, want_logabs, rtol=1e-5)
    a64 = _well_conditioned(*shape, seed=1)
    check_gradient(np.linalg.inv, [a64])
    check_gradient(np.linalg.det, [a64])
    check_gradient(lambda m: np.linalg.slogdet(m)[1], [a64])
    check_gradient(lambda m: np.linalg.slogdet(-m)[0] * 2, [a64])


def test_inv_of_integers_is_float64():
    i = onp.array([[2, 1], [1, 3]], dtype="int32")
    assert_matches(np.linalg.inv(np.array(i)), onp.linalg.inv(i))
    assert_matches(np.linalg.det(np.array(i)), onp.linalg.det(i))


@pytest.mark.parametrize("sa,sb", [((3, 3), (3,)), ((3, 3), (3, 2)), ((2, 3, 3), (3,)),
                                   ((2, 3, 3), (2, 3, 4)), ((2, 3, 3), (3, 1))])
def test_solve(sa, sb):
    a = _well_conditioned(*sa).astype("float32")
    b = rand(*sb, seed=2).astype("float32")
    assert_matches(np.linalg.solve(np.array(a), np.array(b)), onp.linalg.solve(a, b),
                   rtol=1e-4, atol=1e-5)
    check_gradient(np.linalg.solve, [_well_conditioned(*sa, seed=3), rand(*sb, seed=4)])


def test_linalg_errors():
    with pytest.raises(ShapeError, match="inv.*square"):
        np.linalg.inv(np.ones((2, 3)))
    with pytest.raises(ShapeError, match="det"):
        np.linalg.det(np.ones(3))
    with pytest.raises(ShapeError, match="solve"):
        np.linalg.solve(np.eye(3), np.ones((4,)))
    with pytest.raises(ShapeError, match="inv"):
        np.linalg.inv(np.zeros((2, 2)))  # singular: NumPy's LinAlgError, named


def test_linalg_second_order():
    check_second_order(np.linalg.inv, [_well_conditioned(2, 2)])


def test_numpy2_linalg_diagonal_and_trace_use_the_last_axes():
    x = rand(2, 3, 4, dtype="float32")
    assert_matches(np.linalg.diagonal(np.array(x)), onp.linalg.diagonal(x))
    assert_matches(np.linalg.diagonal(np.array(x), offset=1), onp.linalg.diagonal(x, offset=1))
    assert_matches(np.linalg.trace(np.array(x)), onp.linalg.trace(x))
    assert_matches(np.linalg.matmul(np.array(x), np.array(x).transpose(0, 2, 1)),
                   onp.linalg.matmul(x, x.transpose(0, 2, 1)), rtol=1e-5)
