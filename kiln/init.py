"""Parameter initializers (MXNet's `mxnet.init`).

An initializer is called with a parameter's name and its array and fills the array in place.
Names decide the default rule, as in MXNet: `*weight` gets the initializer's weight rule,
`*bias` and `*beta` zeros, `*gamma` ones, running means zeros and running variances ones.
A parameter created with its own `init` (BatchNorm's gamma, say) uses that instead.
"""

from __future__ import annotations

import math

import numpy as _np

from .base import KilnError
from .ops.random import generator

__all__ = ["Initializer", "Uniform", "Normal", "Xavier", "MSRAPrelu", "Zero", "One",
           "Constant", "Orthogonal", "Mixed", "create", "register"]

_REGISTRY: dict[str, type] = {}


def register(cls):
    """Make an initializer class creatable by its lowercase name (`init='xavier'`)."""
    _REGISTRY[cls.__name__.lower()] = cls
    return cls


def create(init) -> Initializer:
    """An initializer from an instance, a registered name ('zeros', 'xavier') or None."""
    if init is None or isinstance(init, Initializer):
        return init
    if isinstance(init, str):
        key = init.lower()
        key = {"zeros": "zero", "ones": "one"}.get(key, key)
        if key not in _REGISTRY:
            raise KilnError(f"unknown initializer {init!r}; known: {sorted(_REGISTRY)}")
        return _REGISTRY[key]()
    raise KilnError(f"an initializer must be an Initializer or its name, not {init!r}")


class Initializer:
    """Base class: fills arrays according to their parameter names."""

    def __init__(self, **kwargs):
        self._kwargs = kwargs

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._kwargs.items())
        return f"{type(self).__name__}({args})"

    def dumps(self) -> str:
        """MXNet's JSON form, `["name", {kwargs}]`, used for the `__init__` attribute."""
        import json

        return json.dumps([type(self).__name__.lower(), self._kwargs])

    def __call__(self, name: str, arr) -> None:
        data = arr._data if hasattr(arr, "_data") else arr
        name = str(name)
        if name.endswith(("weight", "_w", ".w")):
            self._init_weight(name, data)
        elif name.endswith(("bias", "beta")):
            data[...] = 0
        elif name.endswith("gamma"):
            data[...] = 1
        elif name.endswith(("running_mean", "moving_mean")):
            data[...] = 0
        elif name.endswith(("running_var", "moving_var")):
            data[...] = 1
        else:
            self._init_default(name, data)

    def init_array(self, name: str, data: _np.ndarray) -> None:
        """Fill `data` with this initializer's rule regardless of the name's suffix."""
        self._init_weight(name, data)

    def _init_weight(self, name: str, data: _np.ndarray) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _init_weight")

    def _init_default(self, name: str, data: _np.ndarray) -> None:
        # Parameters with other names (embeddings, custom ones) use the weight rule, as MXNet 2.
        self._init_weight(name, data)


def _fill(data: _np.ndarray, values: _np.ndarray) -> None:
    data[...] = values.astype(data.dtype, copy=False)


@register
class Uniform(Initializer):
    """U(-scale, scale); MXNet's default with scale 0.07."""

    def __init__(self, scale: float = 0.07):
        super().__init__(scale=scale)
        self.scale = scale

    def _init_weight(self, name, data):
        _fill(data, generator().uniform(-self.scale, self.scale, data.shape))


@register
class Normal(Initializer):
    """N(0, sigma^2)."""

    def __init__(self, sigma: float = 0.01):
        super().__init__(sigma=sigma)
        self.sigma = sigma

    def _init_weight(self, name, data):
        _fill(data, generator().normal(0.0, self.sigma, data.shape))


@register
class Zero(Initializer):
    def _init_weight(self, name, data):
        data[...] = 0


@register
class One(Initializer):
    def _init_weight(self, name, data):
        data[...] = 1


@register
class Constant(Initializer):
    def __init__(self, value=0.0):
        super().__init__(value=value)
        self.value = value

    def _init_weight(self, name, data):
        data[...] = self.value._data if hasattr(self.value, "_data") else self.value

    _init_default = _init_weight


def _fans(shape: tuple) -> tuple[float, float]:
    if len(shape) < 2:
        raise KilnError(f"Xavier/MSRA initialization needs a weight of at least 2 dimensions, "
                        f"got shape {shape}")
    receptive = _np.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


@register
class Xavier(Initializer):
    """Glorot initialization: variance scaled by fan-in, fan-out or their average."""

    def __init__(self, rnd_type: str = "uniform", factor_type: str = "avg", magnitude: float = 3):
        super().__init__(rnd_type=rnd_type, factor_type=factor_type, magnitude=magnitude)
        if rnd_type not in ("uniform", "gaussian"):
            raise KilnError(f"Xavier: rnd_type must be 'uniform' or 'gaussian', not {rnd_type!r}")
        if factor_type not in ("avg", "in", "out"):
            raise KilnError(f"Xavier: factor_type must be 'avg', 'in' or 'out', not "
                            f"{factor_type!r}")
        self.rnd_type, self.factor_type, self.magnitude = rnd_type, factor_type, float(magnitude)

    def _init_weight(self, name, data):
        fan_in, fan_out = _fans(data.shape)
        factor = {"avg": (fan_in + fan_out) / 2.0, "in": fan_in, "out": fan_out}[self.factor_type]
        scale = math.sqrt(self.magnitude / factor)
        if self.rnd_type == "uniform":
            _fill(data, generator().uniform(-scale, scale, data.shape))
        else:
            _fill(data, generator().normal(0.0, scale, data.shape))


@register
class MSRAPrelu(Xavier):
    """He initialization for (P)ReLU networks: Gaussian, magnitude 2 / (1 + slope^2)."""

    def __init__(self, factor_type: str = "avg", slope: float = 0.25):
        super().__init__("gaussian", factor_type, 2.0 / (1 + slope ** 2))
        self._kwargs = {"factor_type": factor_type, "slope": slope}


@register
class Orthogonal(Initializer):
    """A (scaled) random orthogonal matrix, for recurrent weights."""

    def __init__(self, scale: float = 1.414, rand_type: str = "uniform"):
        super().__init__(scale=scale, rand_type=rand_type)
        self.scale, self.rand_type = scale, rand_type

    def _init_weight(self, name, data):
        rows = data.shape[0]
        cols = int(_np.prod(data.shape[1:]))
        rng = generator()
        tmp = rng.uniform(-1, 1, (rows, cols)) if self.rand_type == "uniform" else \
            rng.normal(0, 1, (rows, cols))
        u, _, v = _np.linalg.svd(tmp, full_matrices=False)
        q = u if u.shape == tmp.shape else v
        _fill(data, self.scale * q.reshape(data.shape))


class Mixed(Initializer):
    """Pick an initializer by regular expression on the parameter name."""

    def __init__(self, patterns, initializers):
        super().__init__()
        import re

        self.map = [(re.compile(p), create(i)) for p, i in zip(patterns, initializers)]

    def __call__(self, name, arr):
        for pattern, init in self.map:
            if pattern.match(str(name)):
                init(name, arr)
                return
        raise KilnError(f"Mixed: no pattern matches parameter {name!r}; add '.*' as a fallback")
