"""Helpers shared by the hybridization tests: comparing values, running a function eagerly and
compiled (forward and gradients), and interpreting graphs."""

from __future__ import annotations

import numpy as onp

import kiln
from kiln import autograd
from kiln.graph.interpret import interpret
from kiln.ndarray import ndarray, wrap


def to_numpy(x) -> onp.ndarray:
    if isinstance(x, ndarray):
        return x._data
    return onp.asarray(x)


def as_list(out) -> list:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def tolerance(dtype) -> tuple[float, float]:
    """(rtol, atol) for comparing two computations of the same value in `dtype`."""
    if onp.dtype(dtype) == onp.float64:
        return 1e-9, 1e-11
    return 2e-4, 2e-5


def assert_same(actual, expected, what: str = "value", check_dtype: bool = True) -> None:
    """Equal shapes and dtypes; equal values (float32 tolerance for floats, exact otherwise)."""
    a, b = to_numpy(actual), to_numpy(expected)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    if check_dtype:
        assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} != {b.dtype}"
    if b.dtype.kind in "fc":
        rtol, atol = tolerance(b.dtype)
        scale = max(1.0, float(onp.nanmax(onp.abs(b))) if b.size else 1.0)
        onp.testing.assert_allclose(a, b, rtol=rtol, atol=atol * scale, equal_nan=True,
                                    err_msg=what)
    else:
        onp.testing.assert_array_equal(a, b, err_msg=what)


def assert_all_same(actual, expected, what: str = "output") -> None:
    actual, expected = as_list(actual), as_list(expected)
    assert len(actual) == len(expected), f"{what}: {len(actual)} values != {len(expected)}"
    for k, (a, b) in enumerate(zip(actual, expected)):
        assert_same(a, b, f"{what} {k}")


def fresh(xs) -> list:
    """Copies of the arrays (so that gradients and in-place changes do not leak between runs)."""
    return [wrap(to_numpy(x).copy()) if isinstance(x, (ndarray, onp.ndarray)) else x for x in xs]


def weights_for(outs, seed: int = 0) -> list:
    """Fixed random head gradients, one per floating output."""
    rng = onp.random.default_rng(seed)
    return [wrap(rng.standard_normal(o.shape).astype(o.dtype)) if o.dtype.kind == "f" else None
            for o in outs]


def gradients(fn, xs, seed: int = 0) -> tuple[list, list]:
    """(outputs, gradients of sum(out * w) for every floating input) of fn(*xs), recorded."""
    xs = fresh(xs)
    wrt = [x for x in xs if isinstance(x, ndarray) and x.dtype.kind == "f"]
    for x in wrt:
        x.attach_grad()
    with autograd.record():
        outs = as_list(fn(*xs))
    heads = [(o, w) for o, w in zip(outs, weights_for(outs, seed))
             if w is not None and (o._node is not None or o._grad_req is not None)]
    if heads:
        autograd.backward([o for o, _ in heads], [w for _, w in heads])
    return outs, [x.grad for x in wrt]


def check_jit(fn, *xs, grad: bool = True, static_alloc: bool = False, **options) -> None:
    """`kiln.jit(fn)` agrees with `fn` run eagerly: outputs, twice (the cached graph), and the
    gradients of every floating input."""
    compiled = kiln.jit(fn, static_alloc=static_alloc, **options)
    expected = fn(*fresh(xs))
    for attempt in ("first call", "cached call"):
        assert_all_same(compiled(*fresh(xs)), expected, f"{attempt}: output")
    if grad:
        _, g_eager = gradients(fn, xs)
        outs, g_compiled = gradients(compiled, xs)
        assert_all_same(outs, expected, "recorded output")
        for k, (a, b) in enumerate(zip(g_compiled, g_eager)):
            assert_same(a, b, f"gradient of input {k}")


def run_graph(graph, xs) -> list:
    """Interpret `graph` on arrays `xs`; returns NumPy arrays."""
    with autograd.pause():
        return [to_numpy(o) for o in interpret(graph, [wrap(to_numpy(x)) for x in xs])]
