"""`Parameter`: a named, trainable array with deferred initialization, and `ParameterDict`."""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as _np

from .. import init as _init
from ..base import DeferredInitializationError, KilnError, ShapeError
from ..ndarray import cpu, ndarray, wrap

__all__ = ["Parameter", "Constant", "ParameterDict", "DeferredInitializationError"]


def _shape_known(shape) -> bool:
    return shape is not None and all(d > 0 for d in shape)


class Parameter:
    """A trainable array of a block.

    Its shape may have unknown dimensions (0 or -1); `initialize()` then defers the allocation
    until a layer learns the full shape at the first forward, as in MXNet.

        >>> w = Parameter("weight", shape=(2, 3)); w.initialize()
        >>> w.data().shape
        (2, 3)
    """

    #: the trace in progress (kiln.symbol.tracing sets it): data() then returns a variable
    _tracer = None
    #: bumped whenever any parameter gets a new array or grad_req: compiled graphs that refer to
    #: parameter arrays check it before running
    _epoch = 0

    def __init__(self, name: str = "weight", grad_req: str = "write", shape=None,
                 dtype="float32", lr_mult: float = 1.0, wd_mult: float = 1.0, init=None,
                 allow_deferred_init: bool = False, differentiable: bool = True,
                 stype: str = "default", grad_stype: str = "default"):
        if grad_req not in ("write", "add", "null"):
            raise KilnError(f"Parameter {name!r}: grad_req must be 'write', 'add' or 'null', "
                            f"not {grad_req!r}")
        self.name = name
        self._path: str | None = None          # structured name, set by collect_params
        self._shape = None if shape is None else self._as_shape(shape)
        self.dtype = _np.dtype(dtype)
        self.lr_mult = lr_mult
        self.wd_mult = wd_mult
        self.init = init
        self._grad_req = grad_req if differentiable else "null"
        self.allow_deferred_init = allow_deferred_init
        self._data: ndarray | None = None
        self._deferred: tuple | None = None     # (initializer, default initializer)

    @staticmethod
    def _as_shape(shape) -> tuple:
        if isinstance(shape, (int, _np.integer)):
            return (int(shape),)
        return tuple(-1 if d in (0, -1, None) else int(d) for d in shape)

    @property
    def full_name(self) -> str:
        return self._path or self.name

    def __repr__(self) -> str:
        shape = "None" if self._shape is None else str(self._shape)
        return f"Parameter {self.full_name} (shape={shape}, dtype={self.dtype.name})"

    # -- shape ------------------------------------------------------------------------------------
    @property
    def shape(self):
        return self._shape

    @shape.setter
    def shape(self, new_shape) -> None:
        new_shape = self._as_shape(new_shape)
        if self._shape is not None and (len(self._shape) != len(new_shape) or any(
                old not in (-1, new) for old, new in zip(self._shape, new_shape))):
                raise ShapeError(f"Parameter {self.full_name}: cannot change shape "
                                 f"{self._shape} to {new_shape}")
        self._shape = new_shape
        if self._deferred is not None and _shape_known(new_shape):
            self._finish_deferred_init()

    def _infer_shape(self, shape) -> None:
        """Fill unknown dimensions from what a layer saw at its first forward."""
        if self._shape is None or not _shape_known(self._shape):
            self.shape = shape

    # -- initialization ---------------------------------------------------------------------------
    def initialize(self, init=None, ctx=None, default_init=_init.Uniform(),
                   force_reinit: bool = False, device=None) -> None:
        """Allocate and fill the array, or defer that until the shape is known."""
        if self._data is not None and not force_reinit:
            return
        initializer = _init.create(self.init) or _init.create(init)
        default = _init.create(default_init)
        if not _shape_known(self._shape):
            if not self.allow_deferred_init and self._shape is not None:
                raise DeferredInitializationError(
                    f"Parameter {self.full_name} has unknown shape {self._shape} and does not "
                    "allow deferred initialization; give its full shape")
            self._deferred = (initializer, default)
            self._data = None
            return
        self._deferred = (initializer, default)
        self._finish_deferred_init()

    def _finish_deferred_init(self) -> None:
        initializer, default = self._deferred
        self._deferred = None
        data = _np.zeros(self._shape, self.dtype)
        chosen = initializer if initializer is not None else default
        if initializer is not None and self.init is not None:
            initializer.init_array(self.full_name, data)   # a parameter's own init wins
        else:
            chosen(self.full_name, data)
        self._set_array(wrap(data))

    def _set_array(self, arr: ndarray) -> None:
        Parameter._epoch += 1
        self._data = arr
        if self._grad_req != "null":
            arr.attach_grad(self._grad_req)

    def _uninitialized_error(self) -> DeferredInitializationError:
        if self._deferred is not None:
            return DeferredInitializationError(
                f"Parameter {self.full_name} has not been initialized yet because initialization "
                f"was deferred: its shape {self._shape} is not known until the first forward "
                "pass. Pass one batch of data through the network before reading it (or give "
                "the layer its input size, e.g. Dense(256, in_units=512)).")
        return DeferredInitializationError(
            f"Parameter {self.full_name} has not been initialized. Call net.initialize() (or "
            "param.initialize()) before using it.")

    # -- values -----------------------------------------------------------------------------------
    def data(self, ctx=None) -> ndarray:
        """The parameter's array (its symbol while the owning block is being traced)."""
        tracer = Parameter._tracer
        if tracer is not None:
            return tracer.param_symbol(self)
        d = self._data
        if d is None:
            raise self._uninitialized_error()
        return d

    def list_data(self) -> list:
        return [self.data()]

    def grad(self, ctx=None) -> ndarray:
        if self._data is None:
            raise self._uninitialized_error()
        if self._grad_req == "null" or self._data._grad is None:
            raise KilnError(f"Parameter {self.full_name} has no gradient (grad_req is "
                            f"{self._grad_req!r})")
        return self._data._grad

    def list_grad(self) -> list:
        return [self.grad()]

    def list_ctx(self) -> list:
        return [cpu()]

    def set_data(self, data) -> None:
        """Replace the values (keeping the same array, so compiled graphs see the change)."""
        if getattr(data, "_kiln_symbolic", False):
            raise KilnError(f"Parameter {self.full_name}: set_data needs an array, not a symbol")
        new = data._data if isinstance(data, ndarray) else _np.asarray(data)
        if self._data is None:
            self._shape = tuple(new.shape)
            self._deferred = None
            self._set_array(wrap(_np.array(new, dtype=self.dtype)))
            return
        if new.shape != self._data.shape:
            raise ShapeError(f"Parameter {self.full_name}: set_data with shape {new.shape}, "
                             f"but the parameter has shape {self._data.shape}")
        _np.copyto(self._data._data, new, casting="unsafe")

    def zero_grad(self) -> None:
        if self._data is not None and self._data._grad is not None:
            self._data._grad._data[...] = 0

    def reset_ctx(self, ctx=None) -> None:
        """kiln computes on the CPU: nothing to move."""

    reset_device = reset_ctx

    def cast(self, dtype) -> None:
        self.dtype = _np.dtype(dtype)
        if self._data is not None:
            self._set_array(wrap(self._data._data.astype(self.dtype)))

    @property
    def grad_req(self) -> str:
        return self._grad_req

    @grad_req.setter
    def grad_req(self, req: str) -> None:
        if req not in ("write", "add", "null"):
            raise KilnError(f"grad_req must be 'write', 'add' or 'null', not {req!r}")
        if req == self._grad_req:
            return
        Parameter._epoch += 1
        self._grad_req = req
        if self._data is not None:
            self._data.attach_grad(req)

    def var(self):
        """This parameter as a symbol variable (for building graphs by hand)."""
        from ..symbol import var

        return var(self.full_name, shape=self._shape if _shape_known(self._shape) else None,
                   dtype=self.dtype, lr_mult=self.lr_mult, wd_mult=self.wd_mult)


class Constant(Parameter):
    """A parameter that is not trained (grad_req 'null') with a fixed initial value."""

    def __init__(self, value, name: str = "const"):
        value = value._data if isinstance(value, ndarray) else _np.asarray(value)
        super().__init__(name, grad_req="null", shape=value.shape, dtype=value.dtype,
                         init=_init.Constant(value))
        self.value = value


class ParameterDict(dict):
    """name -> Parameter, as `collect_params()` returns it, with bulk operations."""

    def initialize(self, init=_init.Uniform(), ctx=None, verbose: bool = False,
                   force_reinit: bool = False) -> None:
        for p in self.values():
            p.initialize(None, ctx, default_init=init, force_reinit=force_reinit)

    def zero_grad(self) -> None:
        for p in self.values():
            p.zero_grad()

    def reset_ctx(self, ctx=None) -> None:
        """kiln computes on the CPU: nothing to move."""

    def setattr(self, name: str, value) -> None:
        """Set an attribute (e.g. 'grad_req', 'lr_mult') on every parameter."""
        for p in self.values():
            setattr(p, name, value)

    def select(self, pattern: str) -> ParameterDict:
        regex = re.compile(pattern)
        return ParameterDict((k, v) for k, v in self.items() if regex.match(k))

    def save(self, filename: str, strip_prefix: str = "") -> None:
        from ..io.params import save_params

        save_params(filename, {k[len(strip_prefix):] if k.startswith(strip_prefix) else k:
                               v.data() for k, v in self.items()})

    def update(self, other: Iterable = (), **kwargs) -> None:  # type: ignore[override]
        for k, v in dict(other, **kwargs).items():
            if k in self and self[k] is not v:
                raise KilnError(f"cannot update ParameterDict: a different parameter is already "
                                f"named {k!r}")
            self[k] = v
