"""Checks for operators and blocks, used by kiln's tests and usable in yours.

- `assert_almost_equal(a, b)`: values, with a message that names the worst element.
- `check_gradient(fn, inputs)`: autograd against central finite differences, in float64.
- `check_second_order(fn, inputs)`: the same for the gradient of the gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as _onp

from . import autograd
from .ndarray import ndarray, wrap

__all__ = ["assert_almost_equal", "check_gradient", "check_second_order", "to_numpy"]


def to_numpy(x) -> _onp.ndarray:
    if isinstance(x, ndarray):
        return x._data
    return _onp.asarray(x)


def assert_almost_equal(actual, expected, rtol: float = 1e-5, atol: float = 1e-6,
                        names=("actual", "expected"), check_dtype: bool = False) -> None:
    """Assert two arrays agree within tolerance, naming the worst element when they do not."""
    a = to_numpy(actual)
    b = to_numpy(expected)
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {names[0]} {a.shape}, {names[1]} {b.shape}")
    if check_dtype and a.dtype != b.dtype:
        raise AssertionError(f"dtypes differ: {names[0]} {a.dtype}, {names[1]} {b.dtype}")
    if a.dtype.kind in "biu" and b.dtype.kind in "biu":
        if not _onp.array_equal(a, b):
            raise AssertionError(f"{names[0]} != {names[1]}:\n{a}\n{b}")
        return
    a64 = a.astype(_onp.float64)
    b64 = b.astype(_onp.float64)
    close = _onp.isclose(a64, b64, rtol=rtol, atol=atol, equal_nan=True)
    if not close.all():
        err = _onp.abs(a64 - b64) - rtol * _onp.abs(b64)
        err = _onp.where(_onp.isnan(err), _onp.inf, err)
        idx = _onp.unravel_index(_onp.argmax(err), a.shape) if a.ndim else ()
        raise AssertionError(
            f"{names[0]} and {names[1]} differ at {len(close.ravel()) - close.sum()} of "
            f"{close.size} elements; worst at index {idx}: {a64[idx]!r} vs {b64[idx]!r} "
            f"(rtol={rtol}, atol={atol})")


def _as_list(out) -> list:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _projected(fn, xs, weights) -> float:
    outs = _as_list(fn(*xs))
    return sum(float((to_numpy(o).astype(_onp.float64) * w).sum()) for o, w in zip(outs, weights))


def check_gradient(fn: Callable, inputs: Sequence, eps: float = 1e-6, rtol: float = 1e-4,
                   atol: float = 1e-6, wrt: Sequence[int] | None = None, seed: int = 0) -> None:
    """Compare autograd's gradient of `fn` with central finite differences, in float64.

    `fn` maps kiln arrays to a kiln array (or a tuple of them). The outputs are projected on a
    random direction, so every output element takes part. `wrt` picks the inputs to check
    (default: every floating-point input).
    """
    rng = _onp.random.default_rng(seed)
    xs = []
    for x in inputs:
        data = to_numpy(x)
        if data.dtype.kind == "f":
            data = data.astype(_onp.float64)
        xs.append(wrap(data.copy()))
    if wrt is None:
        wrt = [i for i, x in enumerate(xs) if x.dtype.kind == "f"]
    for i in wrt:
        xs[i].attach_grad()
    with autograd.record():
        outs = _as_list(fn(*xs))
    weights = [rng.standard_normal(o.shape) for o in outs]
    head_grads = [wrap(w.astype(o.dtype)) for o, w in zip(outs, weights)]
    autograd.backward(outs, head_grads)
    with autograd.pause():
        for i in wrt:
            x = xs[i]
            numeric = _onp.zeros(x.shape)
            flat = x._data.reshape(-1)
            for j in range(flat.size):
                orig = flat[j]
                flat[j] = orig + eps
                plus = _projected(fn, xs, weights)
                flat[j] = orig - eps
                minus = _projected(fn, xs, weights)
                flat[j] = orig
                numeric.reshape(-1)[j] = (plus - minus) / (2 * eps)
            analytic = x.grad if x.grad is not None else wrap(_onp.zeros(x.shape))
            assert_almost_equal(analytic, numeric, rtol=rtol, atol=atol,
                                names=(f"autograd d/d(input {i})",
                                       f"finite differences d/d(input {i})"))


def check_second_order(fn: Callable, inputs: Sequence, eps: float = 1e-5, rtol: float = 1e-3,
                       atol: float = 1e-5, seed: int = 1) -> None:
    """Check the gradient of the (projected) gradient of `fn` against finite differences."""
    rng = _onp.random.default_rng(seed + 100)
    probe = _onp.asarray(rng.standard_normal(_as_list(fn(*[wrap(to_numpy(x).astype(
        _onp.float64)) for x in inputs]))[0].shape))

    def first_grads_differentiable(*xs):
        # Gradients of fn at xs, as a function recorded on the caller's tape.
        with autograd.record():
            out = _as_list(fn(*xs))[0]
        return autograd.grad(out, list(xs), head_grads=[wrap(probe.astype(out.dtype))],
                             create_graph=True, retain_graph=True)

    check_gradient(first_grads_differentiable, inputs, eps=eps, rtol=rtol, atol=atol, seed=seed)
