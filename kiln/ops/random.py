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
    """1 with probability `prob`, else 0 (float32 by default). An array `prob` gives one draw
    per element."""
    from . import elementwise as _ew

    if size is None and not isinstance(prob, (int, float)):
        size = tuple(prob.shape) if hasattr(prob, "shape") else _np.shape(prob)
    u = uniform(0.0, 1.0, size=size)
    return _ew.astype(_ew.less(u, prob), _np.dtype(dtype).name if dtype else "float32")


def multinomial(n: int, pvals, size=None):
    """Counts of `n` draws over categories with probabilities `pvals` (int64)."""
    from ..ndarray import wrap

    p = pvals._data if hasattr(pvals, "_data") else _np.asarray(pvals, dtype=_np.float64)
    return wrap(generator().multinomial(int(n), p, size=size))


# ----------------------------------------------------------------------------------------------
# other distributions, with scalar parameters
# ----------------------------------------------------------------------------------------------

def _define_sampler(name: str, params: dict, integer: bool = False, renamed: dict | None = None):
    """A sampling operator drawing with `Generator.<name>(*params, size)`, and its front.

    `params` maps the front's parameter names to their defaults; `renamed` gives the attribute
    name of a parameter whose own name is taken (gamma's `shape` is not the output shape). The
    parameters are attributes, so they must be numbers (see `normal`/`uniform` for
    differentiable array parameters).
    """
    renamed = renamed or {}
    keys = {p: renamed.get(p, p) for p in params}
    attrs = {**{keys[p]: v for p, v in params.items()}, "shape": (),
             "dtype": "int64" if integer else "float32"}

    def impl(*, shape, dtype, **kwargs):
        out = getattr(generator(), name)(*[kwargs[keys[p]] for p in params], size=shape)
        return _np.asarray(out).astype(dtype, copy=False)

    op = type(f"Random_{name}", (_Sampler,), {
        "name": f"random_{name}", "mx_name": f"_npi_{name}", "attrs": attrs,
        "impl": staticmethod(impl), "__doc__": f"Samples of numpy.random.Generator.{name}."})

    def front(*args, size=None, dtype=None, **kwargs):
        values = dict(params)
        names = list(params)
        if len(args) > len(names):
            raise KilnError(f"random.{name}: takes {names} and size, dtype by keyword")
        values.update(zip(names, args, strict=False))
        for k, v in kwargs.items():
            if k not in values:
                raise KilnError(f"random.{name}: unknown argument {k!r}; it takes {names}")
            values[k] = v
        for k in names:
            if not isinstance(values[k], (int, float, _np.integer, _np.floating)):
                raise KilnError(f"random.{name}: {k} must be a number, not "
                                f"{type(values[k]).__name__}; draw per-element parameters "
                                "with numpy and wrap the result with np.array")
        dt = _np.dtype(dtype).name if dtype is not None else attrs["dtype"]
        return sample(op, {**{keys[k]: float(values[k]) for k in names},
                           "shape": _size(size), "dtype": dt})

    front.__name__ = front.__qualname__ = name
    front.__doc__ = (f"Samples from the {name} distribution with parameters "
                     f"{', '.join(f'{k}={v}' for k, v in params.items())}; size gives the shape.")
    front.op = op
    return front


exponential = _define_sampler("exponential", {"scale": 1.0})
gamma = _define_sampler("gamma", {"shape": 1.0, "scale": 1.0}, renamed={"shape": "k"})
beta = _define_sampler("beta", {"a": 1.0, "b": 1.0})
chisquare = _define_sampler("chisquare", {"df": 1.0})
laplace = _define_sampler("laplace", {"loc": 0.0, "scale": 1.0})
logistic = _define_sampler("logistic", {"loc": 0.0, "scale": 1.0})
gumbel = _define_sampler("gumbel", {"loc": 0.0, "scale": 1.0})
lognormal = _define_sampler("lognormal", {"mean": 0.0, "sigma": 1.0})
rayleigh = _define_sampler("rayleigh", {"scale": 1.0})
weibull = _define_sampler("weibull", {"a": 1.0})
pareto = _define_sampler("pareto", {"a": 1.0})
power = _define_sampler("power", {"a": 1.0})
poisson = _define_sampler("poisson", {"lam": 1.0}, integer=True)
