"""Elementwise operators: forward against NumPy (values and dtypes), broadcasting, the scalar
forms, and gradients against finite differences."""

from __future__ import annotations

import numpy as onp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes
from np_compare import assert_matches, rand

from kiln import autograd, np
from kiln.base import KilnError, ShapeError
from kiln.test_utils import check_gradient, check_second_order

# name -> (NumPy function, (low, high) of a domain away from singularities, differentiable)
UNARY = {
    "negative": (onp.negative, (-2, 2), True),
    "absolute": (onp.absolute, (0.2, 2), True),
    "fabs": (onp.fabs, (-2, -0.2), True),
    "exp": (onp.exp, (-2, 2), True),
    "exp2": (onp.exp2, (-2, 2), True),
    "expm1": (onp.expm1, (-2, 2), True),
    "log": (onp.log, (0.2, 3), True),
    "log2": (onp.log2, (0.2, 3), True),
    "log10": (onp.log10, (0.2, 3), True),
    "log1p": (onp.log1p, (-0.5, 3), True),
    "sqrt": (onp.sqrt, (0.2, 3), True),
    "cbrt": (onp.cbrt, (0.2, 3), True),
    "square": (onp.square, (-2, 2), True),
    "reciprocal": (onp.reciprocal, (0.5, 3), True),
    "sin": (onp.sin, (-3, 3), True),
    "cos": (onp.cos, (-3, 3), True),
    "tan": (onp.tan, (-1.2, 1.2), True),
    "arcsin": (onp.arcsin, (-0.8, 0.8), True),
    "arccos": (onp.arccos, (-0.8, 0.8), True),
    "arctan": (onp.arctan, (-3, 3), True),
    "sinh": (onp.sinh, (-2, 2), True),
    "cosh": (onp.cosh, (-2, 2), True),
    "tanh": (onp.tanh, (-2, 2), True),
    "arcsinh": (onp.arcsinh, (-2, 2), True),
    "arccosh": (onp.arccosh, (1.2, 3), True),
    "arctanh": (onp.arctanh, (-0.8, 0.8), True),
    "degrees": (onp.degrees, (-3, 3), True),
    "radians": (onp.radians, (-90, 90), True),
    "sign": (onp.sign, (-2, 2), False),
    "floor": (onp.floor, (-3, 3), False),
    "ceil": (onp.ceil, (-3, 3), False),
    "rint": (onp.rint, (-3, 3), False),
    "trunc": (onp.trunc, (-3, 3), False),
    "fix": (onp.fix, (-3, 3), False),
    "isnan": (onp.isnan, (-3, 3), False),
    "isinf": (onp.isinf, (-3, 3), False),
    "isfinite": (onp.isfinite, (-3, 3), False),
    "logical_not": (onp.logical_not, (-1, 1), False),
    "signbit": (onp.signbit, (-3, 3), False),
}

ALIASES = {"abs": "absolute", "fix": "trunc", "bitwise_not": "invert", "round": "around",
           "divide": "true_divide", "deg2rad": "radians", "rad2deg": "degrees",
           "remainder": "mod", "pow": "power"}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_forward_float32(name):
    np_fn, (lo, hi), _ = UNARY[name]
    x = rand(2, 3, low=lo, high=hi, dtype="float32")
    assert_matches(getattr(np, name)(np.array(x)), np_fn(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("dtype", ["float64", "int32", "bool"])
def test_unary_result_dtype_follows_numpy(name, dtype):
    np_fn, (lo, hi), _ = UNARY[name]
    x = onp.array([1, 2, 1]).astype(dtype) if name != "arccosh" else onp.array([1, 2, 3])
    x = x.astype(dtype)
    if name in ("arcsin", "arccos", "arctanh"):
        x = onp.zeros(3, dtype)
    with onp.errstate(all="ignore"):
        try:
            expected = np_fn(x)
        except TypeError:  # NumPy has no loop for this dtype: kiln must refuse too
            with pytest.raises(TypeError):
                getattr(np, name)(np.array(x))
            return
    assert_matches(getattr(np, name)(np.array(x)), expected)


@pytest.mark.parametrize("name", sorted(n for n, v in UNARY.items() if v[2]))
def test_unary_gradient(name):
    _, (lo, hi), _ = UNARY[name]
    fn = getattr(np, name)
    check_gradient(fn, [rand(2, 3, low=lo, high=hi, seed=1)])


@pytest.mark.parametrize("name", sorted(n for n, v in UNARY.items() if not v[2]))
def test_piecewise_constant_ops_give_constants(name):
    # sign, floor ... have zero gradient: their results are constants to autograd.
    x = np.array(rand(2, 3, low=-2, high=2))
    x.attach_grad()
    with autograd.record():
        y = getattr(np, name)(x)
    assert y._node is None


def test_aliases():
    for alias, name in ALIASES.items():
        assert getattr(np, alias) is getattr(np, name), alias


def test_around_and_round_decimals():
    x = onp.array([0.5, 1.5, 2.5, -0.5, 1.2345, -1.2355], dtype="float32")
    assert_matches(np.around(np.array(x)), onp.around(x))
    assert_matches(np.round(np.array(x), 2), onp.round(x, 2))
    assert_matches(np.array(x).round(1), onp.round(x, 1))


@pytest.mark.parametrize("name,ref", [
    ("sigmoid", lambda x: 1 / (1 + onp.exp(-x))),
    ("relu", lambda x: onp.maximum(x, 0)),
    ("softrelu", lambda x: onp.log1p(onp.exp(x))),
    ("softsign", lambda x: x / (1 + onp.abs(x))),
])
def test_activations(name, ref):
    from kiln import npx

    x = rand(3, 4, low=-3, high=3, dtype="float32")
    out = getattr(npx, name)(np.array(x))
    assert_matches(out, ref(x.astype("float64")).astype("float32"), rtol=1e-5, atol=1e-6)
    check_gradient(getattr(npx, name), [rand(3, 4, low=-3, high=3) + 0.05])


def test_sigmoid_does_not_overflow():
    from kiln import npx

    out = npx.sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    assert_matches(out, onp.array([0.0, 0.5, 1.0], dtype="float32"))


# ----------------------------------------------------------------------------------------------
# binary operators
# ----------------------------------------------------------------------------------------------

# name -> (NumPy function, (low, high) domain for both operands, differentiable)
BINARY = {
    "add": (onp.add, (-2, 2), True),
    "subtract": (onp.subtract, (-2, 2), True),
    "multiply": (onp.multiply, (-2, 2), True),
    "true_divide": (onp.true_divide, (0.5, 2), True),
    "power": (onp.power, (0.5, 2), True),
    "mod": (onp.mod, (0.5, 3), True),
    "fmod": (onp.fmod, (0.5, 3), True),
    "floor_divide": (onp.floor_divide, (0.5, 3), False),
    "maximum": (onp.maximum, (-2, 2), True),
    "minimum": (onp.minimum, (-2, 2), True),
    "fmax": (onp.fmax, (-2, 2), True),
    "fmin": (onp.fmin, (-2, 2), True),
    "arctan2": (onp.arctan2, (0.5, 2), True),
    "hypot": (onp.hypot, (0.5, 2), True),
    "logaddexp": (onp.logaddexp, (-2, 2), True),
    "copysign": (onp.copysign, (-2, 2), True),
    "heaviside": (onp.heaviside, (-2, 2), False),
    "equal": (onp.equal, (-2, 2), False),
    "not_equal": (onp.not_equal, (-2, 2), False),
    "less": (onp.less, (-2, 2), False),
    "less_equal": (onp.less_equal, (-2, 2), False),
    "greater": (onp.greater, (-2, 2), False),
    "greater_equal": (onp.greater_equal, (-2, 2), False),
    "logical_and": (onp.logical_and, (-1, 1), False),
    "logical_or": (onp.logical_or, (-1, 1), False),
    "logical_xor": (onp.logical_xor, (-1, 1), False),
}
BITWISE = {"bitwise_and": onp.bitwise_and, "bitwise_or": onp.bitwise_or,
           "bitwise_xor": onp.bitwise_xor, "left_shift": onp.left_shift,
           "right_shift": onp.right_shift, "gcd": onp.gcd, "lcm": onp.lcm}


def _operands(name, shape_a, shape_b, dtype="float32", seed=0):
    lo, hi = BINARY[name][1]
    a = rand(*shape_a, low=lo, high=hi, dtype=dtype, seed=seed)
    b = rand(*shape_b, low=lo, high=hi, dtype=dtype, seed=seed + 1)
    if name in ("equal", "not_equal", "less_equal", "greater_equal", "maximum", "minimum"):
        b.flat[0] = a.flat[0]  # make some elements tie
    return a, b


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("shapes", [((2, 3), (2, 3)), ((3, 1, 4), (2, 4)), ((4,), (2, 1, 4)),
                                    ((), (2, 3))])
def test_binary_forward_broadcasting(name, shapes):
    np_fn = BINARY[name][0]
    a, b = _operands(name, *shapes)
    assert_matches(getattr(np, name)(np.array(a), np.array(b)), np_fn(a, b), rtol=1e-5)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_scalar_forms(name):
    np_fn = BINARY[name][0]
    lo, hi = BINARY[name][1]
    a = rand(2, 3, low=lo, high=hi, dtype="float32")
    s = float(onp.float32((lo + hi) / 2 + 0.25))
    fn = getattr(np, name)
    assert_matches(fn(np.array(a), s), np_fn(a, s))
    assert_matches(fn(s, np.array(a)), np_fn(s, a))
    assert_matches(fn(np.array(a), 2), np_fn(a, 2))
    assert_matches(fn(2, np.array(a)), np_fn(2, a))


@pytest.mark.parametrize("name", sorted(n for n, v in BINARY.items() if v[2]))
@pytest.mark.parametrize("shapes", [((2, 3), (2, 3)), ((3, 1), (1, 4)), ((2, 3), (3,))])
def test_binary_gradient(name, shapes):
    a, b = _operands(name, *shapes, dtype="float64", seed=3)
    if name in ("maximum", "minimum", "fmax", "fmin"):
        b.flat[0] += 0.1  # no ties: the derivative is not defined there
    check_gradient(getattr(np, name), [a, b])


@pytest.mark.parametrize("name", sorted(n for n, v in BINARY.items() if v[2]))
def test_binary_scalar_gradients(name):
    lo, hi = BINARY[name][1]
    s = (lo + hi) / 2 + 0.25
    a = rand(2, 3, low=lo, high=hi, seed=4)
    fn = getattr(np, name)
    check_gradient(lambda x: fn(x, s), [a])
    check_gradient(lambda x: fn(s, x), [a])


@pytest.mark.parametrize("name", sorted(BITWISE))
def test_integer_binary_ops(name):
    a = onp.array([[1, 6, 12], [3, 5, 9]], dtype="int32")
    b = onp.array([2, 3, 4], dtype="int32")
    fn = getattr(np, name)
    assert_matches(fn(np.array(a), np.array(b)), BITWISE[name](a, b))
    assert_matches(fn(np.array(a), 3), BITWISE[name](a, 3))
    assert_matches(fn(5, np.array(a)), BITWISE[name](5, a))


def test_bitwise_on_bool_and_operators():
    a = onp.array([True, False, True])
    b = onp.array([True, True, False])
    ka, kb = np.array(a), np.array(b)
    assert_matches(ka & kb, a & b)
    assert_matches(ka | kb, a | b)
    assert_matches(ka ^ kb, a ^ b)
    assert_matches(~ka, ~a)
    i = onp.array([5, 6], dtype="int64")
    assert_matches(np.array(i) & 3, i & 3)
    assert_matches(~np.array(i), ~i)
    assert_matches(np.invert(np.array(i)), onp.invert(i))
    assert_matches(np.array(i) << 1, i << 1)
    assert_matches(np.array(i) >> 1, i >> 1)


OPERATORS = {
    "+": (lambda a, b: a + b), "-": (lambda a, b: a - b), "*": (lambda a, b: a * b),
    "/": (lambda a, b: a / b), "//": (lambda a, b: a // b), "%": (lambda a, b: a % b),
    "**": (lambda a, b: a ** b), "<": (lambda a, b: a < b), "<=": (lambda a, b: a <= b),
    ">": (lambda a, b: a > b), ">=": (lambda a, b: a >= b), "==": (lambda a, b: a == b),
    "!=": (lambda a, b: a != b),
}


@pytest.mark.parametrize("op", sorted(OPERATORS))
def test_python_operators_all_forms(op):
    f = OPERATORS[op]
    a = rand(2, 3, low=0.5, high=2, dtype="float32")
    b = rand(3, low=0.5, high=2, dtype="float32", seed=1)
    b[0] = a[0, 0]
    ka, kb = np.array(a), np.array(b)
    assert_matches(f(ka, kb), f(a, b))
    assert_matches(f(ka, 1.5), f(a, 1.5))
    assert_matches(f(1.5, ka), f(1.5, a))
    assert_matches(f(ka, 2), f(a, 2))
    assert_matches(f(2, ka), f(2, a))
    assert_matches(f(ka, b), f(a, b))   # a NumPy operand, on either side
    assert_matches(f(a, kb), f(a, b))


def test_unary_python_operators():
    a = rand(2, 3, dtype="float32")
    ka = np.array(a)
    assert_matches(-ka, -a)
    assert_matches(+ka, +a)
    assert_matches(abs(ka), abs(a))
    with pytest.raises(TypeError):
        ~ka


@pytest.mark.parametrize("lhs,rhs", [
    ("float32", 1.0), ("float32", 1), ("float16", 2.5), ("int32", 1), ("int32", 1.5),
    ("int8", 3), ("uint8", 2), ("bool", 1), ("bool", True), ("float32", onp.float64(2.0)),
    ("int32", onp.int64(2)), ("float64", onp.float32(2.0)), ("bool", 1.5),
])
def test_weak_scalar_promotion(lhs, rhs):
    # NumPy 2's rules: Python scalars are weak, NumPy scalars are not.
    x = onp.array([1, 2, 3]).astype(lhs)
    kx = np.array(x)
    for f in (OPERATORS["+"], OPERATORS["*"], OPERATORS["-"], OPERATORS["/"],
              OPERATORS["<"]):
        if lhs == "bool" and f is OPERATORS["-"] and isinstance(rhs, bool):
            continue
        assert_matches(f(kx, rhs), f(x, rhs))
        assert_matches(f(rhs, kx), f(rhs, x))


@pytest.mark.parametrize("da,db", [("float32", "float64"), ("int32", "float32"),
                                   ("int64", "float32"), ("int8", "uint8"), ("bool", "int32"),
                                   ("float16", "float32"), ("int32", "int64")])
def test_array_promotion(da, db):
    a = onp.array([1, 2, 3]).astype(da)
    b = onp.array([3, 1, 2]).astype(db)
    for f in (OPERATORS["+"], OPERATORS["*"], OPERATORS["/"], OPERATORS["=="]):
        assert_matches(f(np.array(a), np.array(b)), f(a, b))


def test_numpy_scalar_on_the_left_stays_kiln():
    x = np.array([1.0, 2.0])
    for out in (onp.float32(2) * x, onp.float64(2) + x, onp.int64(3) - x, onp.float32(1) < x):
        assert isinstance(out, np.ndarray)
    assert (onp.float32(2) * x).dtype == onp.float32
    assert (onp.float64(2) * x).dtype == onp.float64
    assert_matches(onp.float32(3) - x, onp.float32(3) - onp.array([1.0, 2.0], "float32"))


def test_two_python_scalars():
    assert_matches(np.add(1.0, 2.0), onp.add(1.0, 2.0))
    assert_matches(np.multiply(2, 3), onp.multiply(2, 3))


def test_binary_shape_mismatch_names_op_and_shapes():
    with pytest.raises(ShapeError) as info:
        np.add(np.ones((2, 3)), np.ones((4,)))
    msg = str(info.value)
    assert "add" in msg and "(2, 3)" in msg.replace("[2, 3]", "(2, 3)") and "4" in msg
    with pytest.raises(ShapeError, match="multiply"):
        np.ones((2, 3)) * np.ones((3, 2))


def test_power_gradients_scalar_forms():
    a = rand(2, 3, low=0.5, high=2, seed=5)
    check_gradient(lambda x: x ** 2, [a])
    check_gradient(lambda x: x ** 0.5, [a])
    check_gradient(lambda x: 2 ** x, [a])
    check_gradient(lambda x: 2.5 - x, [a])
    check_gradient(lambda x: 3 / x, [a])
    check_gradient(lambda x, y: x ** y, [a, rand(3, low=0.5, high=2)])


def test_maximum_minimum_ties_send_the_gradient_to_one_side():
    a = np.array([1.0, 2.0, 3.0])
    b = np.array([1.0, 1.0, 4.0])
    a.attach_grad()
    b.attach_grad()
    with autograd.record():
        y = np.maximum(a, b)
    y.backward()
    assert_matches(a.grad + b.grad, onp.ones(3, "float32"))


# ----------------------------------------------------------------------------------------------
# where, clip, nan_to_num, isclose, casts and copies
# ----------------------------------------------------------------------------------------------

def test_where_forward_and_gradient():
    c = rand(2, 3) > 0
    x = rand(2, 3, dtype="float32", seed=1)
    y = rand(3, dtype="float32", seed=2)
    assert_matches(np.where(np.array(c), np.array(x), np.array(y)), onp.where(c, x, y))
    assert_matches(np.where(np.array(c), np.array(x), 0.5), onp.where(c, x, 0.5))
    assert_matches(np.where(np.array(c), 0, np.array(x)), onp.where(c, 0, x))
    assert_matches(np.where(c, np.array(x), np.array(y)), onp.where(c, x, y))
    check_gradient(lambda a, b: np.where(np.array(c), a, b), [rand(2, 3), rand(3, seed=1)])
    check_gradient(lambda a: np.where(np.array(c), a, 1.0), [rand(2, 3)])


def test_where_of_two_scalars_is_float32_and_single_argument_is_nonzero():
    c = np.array([True, False])
    out = np.where(c, 1.0, 0.0)
    assert out.dtype == onp.float32  # MXNet's default float type
    assert out.tolist() == [1.0, 0.0]
    idx = np.where(np.array([[0, 1], [1, 0]]))
    ref = onp.where(onp.array([[0, 1], [1, 0]]))
    assert len(idx) == 2
    for i, r in zip(idx, ref):
        assert_matches(i, r)


def test_clip_scalar_and_array_bounds():
    x = rand(3, 4, low=-2, high=2, dtype="float32")
    assert_matches(np.clip(np.array(x), -0.5, 0.5), onp.clip(x, -0.5, 0.5))
    assert_matches(np.clip(np.array(x), None, 0.5), onp.clip(x, None, 0.5))
    assert_matches(np.array(x).clip(-0.5), onp.clip(x, -0.5, None))
    lo = rand(4, low=-1.5, high=-0.5, dtype="float32", seed=3)
    hi = rand(3, 1, low=0.5, high=1.5, dtype="float32", seed=4)
    assert_matches(np.clip(np.array(x), np.array(lo), np.array(hi)), onp.clip(x, lo, hi))
    assert_matches(np.clip(np.array(x), np.array(lo), 1.0), onp.clip(x, lo, 1.0))
    i = onp.arange(6, dtype="int32")
    assert_matches(np.clip(np.array(i), 1, 4), onp.clip(i, 1, 4))
    with pytest.raises(ValueError):
        np.clip(np.array(x), None, None)


def test_clip_gradients():
    x = rand(3, 4, low=-2, high=2, seed=7)
    check_gradient(lambda a: np.clip(a, -0.5, 0.5), [x])
    lo = rand(4, low=-1.5, high=-0.5, seed=3)
    hi = rand(3, 1, low=0.5, high=1.5, seed=4)
    check_gradient(lambda a, b, c: np.clip(a, b, c), [x, lo, hi])


def test_nan_to_num():
    x = onp.array([1.0, onp.nan, onp.inf, -onp.inf, -2.0], dtype="float32")
    assert_matches(np.nan_to_num(np.array(x)), onp.nan_to_num(x))
    assert_matches(np.nan_to_num(np.array(x), nan=0.5, posinf=9.0, neginf=-9.0),
                   onp.nan_to_num(x, nan=0.5, posinf=9.0, neginf=-9.0))
    i = onp.array([1, 2], "int32")
    assert_matches(np.nan_to_num(np.array(i)), onp.nan_to_num(i))
    xa = np.array(x.astype("float64"))
    xa.attach_grad()
    with autograd.record():
        y = np.nan_to_num(xa, posinf=1e3, neginf=-1e3) * 3
    y.backward()
    assert_matches(xa.grad, onp.array([3.0, 0, 0, 0, 3.0]))


def test_nan_to_num_gradient_on_finite_values():
    check_gradient(lambda a: np.nan_to_num(a) * a, [rand(2, 3)])


def test_isclose_and_array_equal():
    a = onp.array([1.0, 2.0, onp.nan, 1e-9], "float32")
    b = onp.array([1.0 + 1e-7, 2.1, onp.nan, 0.0], "float32")
    assert_matches(np.isclose(np.array(a), np.array(b)), onp.isclose(a, b))
    assert_matches(np.isclose(np.array(a), np.array(b), equal_nan=True),
                   onp.isclose(a, b, equal_nan=True))
    assert_matches(np.isclose(np.array(a), 2.0, rtol=0.1), onp.isclose(a, 2.0, rtol=0.1))
    assert np.array_equal(np.array([1, 2]), np.array([1, 2])) is True
    assert np.array_equal(np.array([1, 2]), np.array([1, 3])) is False
    assert np.array_equal(np.array([1, 2]), np.array([[1, 2]])) is False
    assert np.allclose(np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-9])) is True


@pytest.mark.parametrize("src,dst", [("float32", "float64"), ("float64", "float16"),
                                     ("float32", "int32"), ("int64", "float32"),
                                     ("bool", "float32"), ("float32", "bool")])
def test_astype(src, dst):
    x = (rand(2, 3, low=-3, high=3) * 2).astype(src)
    out = np.array(x).astype(dst)
    assert_matches(out, x.astype(dst))


def test_astype_copy_false_and_gradient():
    x = np.ones((2,), dtype="float32")
    assert x.astype("float32", copy=False) is x
    assert x.astype("float32") is not x
    check_gradient(lambda a: np.astype(a, "float32") * 2, [rand(3)], eps=1e-3, rtol=1e-3)
    check_gradient(lambda a: (a * 2).astype("float64"), [rand(3)])
    xi = np.array([1, 2], dtype="int32")
    xi.attach_grad()
    with autograd.record():
        y = (xi.astype("float32") * 2).sum()
    y.backward()  # an integer input gets no gradient
    assert_matches(xi.grad, onp.zeros(2, "int32"))


def test_copy_is_a_new_buffer_and_differentiable():
    x = np.array([1.0, 2.0])
    y = np.copy(x)
    y[0] = 5
    assert x[0].item() == 1.0
    assert x.copy() is not x
    check_gradient(lambda a: np.copy(a) * a, [rand(3)])


def test_stop_gradient():
    from kiln import npx

    x = np.array([1.0, 2.0])
    x.attach_grad()
    with autograd.record():
        y = (npx.stop_gradient(x) * x).sum()
    y.backward()
    assert_matches(x.grad, onp.array([1.0, 2.0], "float32"))


def test_full_like_zeros_like_ones_like():
    x = np.array(rand(2, 3, dtype="float64"))
    assert_matches(np.zeros_like(x), onp.zeros((2, 3)))
    assert_matches(np.ones_like(x), onp.ones((2, 3)))
    assert_matches(np.full_like(x, 7), onp.full((2, 3), 7.0))
    assert_matches(np.full_like(x, 7, dtype="int32"), onp.full((2, 3), 7, "int32"))
    assert_matches(np.zeros_like(x, dtype="float32"), onp.zeros((2, 3), "float32"))
    assert np.empty_like(x).shape == (2, 3)


def test_bad_unary_input_type_is_a_clear_error():
    with pytest.raises(KilnError):
        np.exp("hello")


# ----------------------------------------------------------------------------------------------
# second order
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [np.tanh, np.exp, np.sin, np.log, np.sqrt,
                                lambda x: x * x * x, lambda x: 1 / x])
def test_second_order_unary(fn):
    check_second_order(fn, [rand(2, 3, low=0.5, high=1.5)])


def test_second_order_multiply_and_sigmoid():
    from kiln import npx

    check_second_order(np.multiply, [rand(2, 3), rand(2, 3, seed=1)])
    check_second_order(lambda x, y: x * x * y, [rand(2, 3), rand(3, seed=1)])
    check_second_order(npx.sigmoid, [rand(2, 3)])
    check_second_order(lambda x: x ** 3, [rand(2, 3, low=0.5, high=1.5)])


def test_gradient_of_a_promoted_operand_keeps_its_dtype():
    a = np.array([1.0, 2.0])                      # float32
    b = np.array([3.0, 4.0], dtype="float64")
    a.attach_grad()
    b.attach_grad()
    with autograd.record():
        (g,) = autograd.grad((a * b).sum(), [a], create_graph=True)
    assert g.dtype == onp.float32
    assert_matches(g, onp.array([3.0, 4.0], "float32"))


# ----------------------------------------------------------------------------------------------
# property: any pair of broadcastable shapes, forward and gradient
# ----------------------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3),
       name=st.sampled_from(["add", "subtract", "multiply", "true_divide", "maximum", "hypot"]))
def test_binary_broadcasting_property(shapes, name):
    sa, sb = shapes.input_shapes
    a = rand(*sa, low=0.5, high=2, seed=1)
    b = rand(*sb, low=0.5, high=2, seed=2) + 0.01  # no ties for maximum
    fn = getattr(np, name)
    assert_matches(fn(np.array(a), np.array(b)), BINARY[name][0](a, b))
    check_gradient(fn, [a, b])
