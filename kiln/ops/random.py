"""Random sampling operators and kiln's one random generator.

Sampling operators take no array inputs; their attributes say what to draw. Inside a traced
forward they become graph nodes (marked `random`, so no pass folds or merges them), and every
call of the compiled graph draws afresh, as MXNet does.
"""

from __future__ import annotations

import numpy as _np

from ..base import KilnError, as_dtype
from ..ndarray import apply
from .registry import Aval, Op

_state = {"rng": _np.random.default_rng()}


def generator() -> _np.random.Generator:
    """The generator every kiln sampling operator draws from."""
    return _state["rng"]


def seed(seed_state: int | None = None) -> None:
    """Reset kiln's random generator, so later draws repeat."""
    if seed_state is not None and not isinstance(seed_state, (int, _np.integer)):
        raise KilnError(f"seed must be an integer, not {type(seed_state).__name__}")
    _state["rng"] = _np.random.default_rng(seed_state)


def _size(size) -> tuple:
    if size is None:
        return ()
    if isinstance(size, (int, _np.integer)):
        return (int(size),)
    return tuple(int(d) for d in size)


class _Sampler(Op):
    random = True
    differentiable = False
    inputs = ()

    def infer(*, shape, dtype, **_params):
        return Aval(tuple(shape), _np.dtype(dtype))


class RandomNormal(_Sampler):
    name = "random_normal"
    mx_name = "_npi_normal"
    attrs = {"loc": 0.0, "scale": 1.0, "shape": (), "dtype": "float32"}

    def impl(*, loc, scale, shape, dtype):
        rng = generator()
        if _np.dtype(dtype) in (_np.float32, _np.float64):
            out = rng.standard_normal(shape, dtype=dtype)
        else:
            out = rng.standard_normal(shape).astype(dtype)
        if scale != 1.0:
            out *= scale
        if loc != 0.0:
            out += loc
        return out


class RandomUniform(_Sampler):
    name = "random_uniform"
    mx_name = "_npi_uniform"
    attrs = {"low": 0.0, "high": 1.0, "shape": (), "dtype": "float32"}

    def impl(*, low, high, shape, dtype):
        rng = generator()
        if _np.dtype(dtype) in (_np.float32, _np.float64):
            out = rng.random(shape, dtype=dtype)
        else:
            out = rng.random(shape).astype(dtype)
        if high - low != 1.0:
            out *= high - low
        if low != 0.0:
            out += low
        return out


class RandomRandint(_Sampler):
    name = "random_randint"
    mx_name = "_npi_random_randint"
    attrs = {"low": 0, "high": 1, "shape": (), "dtype": "int64"}

    def impl(*, low, high, shape, dtype):
        return generator().integers(low, high, size=shape, dtype=dtype)


def sample(op, attrs):
    """Draw from sampling operator `op`: now, or as a graph node while a block is traced."""
    from .. import ndarray as _nd

    hook = _nd.tracing_hook
    if hook is not None and hook.active():
        return hook.nullary(op, attrs)
    return apply(op, (), attrs)


def _float_dtype(dtype) -> str:
    dt = as_dtype(dtype)
    if dt.kind != "f":
        raise KilnError(f"expected a floating dtype, not {dt}")
    return dt.name


def normal(loc=0.0, scale=1.0, size=None, dtype=None, **_ignored):
    """Samples from N(loc, scale**2). Array `loc`/`scale` broadcast (and are differentiable)."""
    if not isinstance(loc, (int, float)) or not isinstance(scale, (int, float)):
        from . import elementwise as _ew

        shape = _size(size) if size is not None else _np.broadcast_shapes(
            _np.shape(loc) if not hasattr(loc, "shape") else loc.shape,
            _np.shape(scale) if not hasattr(scale, "shape") else scale.shape)
        z = sample(RandomNormal, {"loc": 0.0, "scale": 1.0, "shape": shape,
                                  "dtype": _float_dtype(dtype)})
        return _ew.add(_ew.multiply(z, scale), loc)
    return sample(RandomNormal, {"loc": float(loc), "scale": float(scale), "shape": _size(size),
                                 "dtype": _float_dtype(dtype)})


def uniform(low=0.0, high=1.0, size=None, dtype=None, **_ignored):
    """Samples from U[low, high)."""
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
        from . import elementwise as _ew

        shape = _size(size) if size is not None else _np.broadcast_shapes(
            getattr(low, "shape", ()), getattr(high, "shape", ()))
        u = sample(RandomUniform, {"low": 0.0, "high": 1.0, "shape": shape,
                                   "dtype": _float_dtype(dtype)})
        return _ew.add(_ew.multiply(u, _ew.subtract(high, low)), low)
    return sample(RandomUniform, {"low": float(low), "high": float(high), "shape": _size(size),
                                  "dtype": _float_dtype(dtype)})


def randint(low, high=None, size=None, dtype=None, **_ignored):
    """Integers from [low, high) (from [0, low) when `high` is omitted)."""
    if high is None:
        low, high = 0, low
    if high <= low:
        raise KilnError(f"randint: high ({high}) must be greater than low ({low})")
    dt = _np.dtype(dtype) if dtype is not None else _np.dtype(_np.int64)
    return sample(RandomRandint, {"low": int(low), "high": int(high), "shape": _size(size),
                                  "dtype": dt.name})


def randn(*size, dtype=None):
    return normal(0.0, 1.0, size=size or None, dtype=dtype)


def rand(*size, dtype=None):
    return uniform(0.0, 1.0, size=size or None, dtype=dtype)


def random(size=None, dtype=None):
    return uniform(0.0, 1.0, size=size, dtype=dtype)


random_sample = random


def shuffle(x) -> None:
    """Shuffle an array in place along its first axis."""
    if getattr(x, "_kiln_symbolic", False):
        raise KilnError("shuffle works in place on a concrete array, not on a symbol")
    generator().shuffle(x._data if hasattr(x, "_data") else x)


def permutation(x):
    from ..ndarray import wrap

    if isinstance(x, (int, _np.integer)):
        return wrap(generator().permutation(int(x)))
    return wrap(generator().permutation(x._data if hasattr(x, "_data") else _np.asarray(x)))


def choice(a, size=None, replace: bool = True, p=None):
    """Random samples from `a` (an array, or range(a) when an int)."""
    from ..ndarray import wrap

    a_data = a._data if hasattr(a, "_data") else a
    p_data = p._data if hasattr(p, "_data") else p
    out = generator().choice(a_data, size=size, replace=replace, p=p_data)
    return wrap(_np.asarray(out))


def bernoulli(prob=0.5, size=None, dtype=None):
    u = uniform(0.0, 1.0, size=size)
    from . import elementwise as _ew

    return _ew.astype(_ew.less(u, prob), _np.dtype(dtype).name if dtype else "float32")
