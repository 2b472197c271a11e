"""The kiln array: a NumPy buffer plus what autograd needs, and `apply`, the one call through
which every operator runs.

`apply(op, args, attrs)` is kiln's `bind`: on arrays it runs the operator's NumPy implementation
(and records a tape node when autograd needs one); on symbols it hands over to the tracer, which
records a graph node instead. Layers, `np`, `npx` and the symbol namespace therefore share one
operator library.
"""

from __future__ import annotations

import re as _re

import numpy as _np

from . import autograd as _autograd
from .base import DTypeError, KilnError, ShapeError, SymbolicValueError, default_dtype

__all__ = ["ndarray", "apply", "wrap", "is_array", "asarray_input", "Device", "cpu",
           "current_device"]

_STATE = _autograd.STATE
_TapeNode = _autograd.TapeNode
_EMPTY: dict = {}


class Device:
    """Where an array lives. kiln computes on the CPU; the type exists for MXNet's API."""

    __slots__ = ("device_type", "device_id")

    def __init__(self, device_type: str = "cpu", device_id: int = 0):
        if device_type not in ("cpu", "cpu_pinned", "cpu_shared"):
            raise KilnError(f"kiln runs on the CPU; device {device_type}({device_id}) is not "
                            "available")
        self.device_type = device_type
        self.device_id = device_id

    def __repr__(self) -> str:
        return f"{self.device_type}({self.device_id})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Device) and (self.device_type, self.device_id) == (
            other.device_type, other.device_id)

    def __hash__(self) -> int:
        return hash((self.device_type, self.device_id))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_CPU = Device()


def cpu(device_id: int = 0) -> Device:
    return _CPU if device_id == 0 else Device("cpu", device_id)


def current_device() -> Device:
    return _CPU


# Set by kiln.symbol when it is imported: records a graph node for symbolic inputs.
_symbolic_apply = None
# Set by kiln.symbol too: says whether a block is being traced, for operators without inputs
# (random sampling), which must become graph nodes rather than constants.
tracing_hook = None


def apply(op, args: tuple, attrs: dict = _EMPTY, subgraphs: tuple = ()):
    """Apply registry operator `op` to `args` with attributes `attrs`.

    Arrays compute now; if any argument is a symbol, a graph node is recorded instead.
    Returns one output, or a tuple when the operator has several. Control-flow operators take
    their bodies as graphs in `subgraphs`.
    """
    if subgraphs:
        return _apply_control_flow(op, args, attrs, subgraphs)
    datas = []
    tracked = False
    for a in args:
        if type(a) is ndarray:
            datas.append(a._data)
            if a._node is not None or a._grad_req is not None:
                tracked = True
        elif a is None:
            datas.append(None)
        elif getattr(a, "_kiln_symbolic", False):
            return _symbolic_apply(op, args, attrs)
        elif isinstance(a, ndarray):
            datas.append(a._data)
            tracked = tracked or a._node is not None or a._grad_req is not None
        else:
            datas.append(asarray_input(a))
    try:
        out = op.impl(*datas, **attrs)
    except KilnError:
        raise
    except (ValueError, TypeError, IndexError, _np.exceptions.AxisError) as e:
        raise _op_error(op, args, attrs, e) from e
    if type(out) is not tuple:
        # One output, the common case: wrap() inlined, as this runs on every operator call.
        if type(out) is not _np.ndarray:
            out = _np.asarray(out)
        result = _new(ndarray)
        result._data = out
        result._node = None
        result._oidx = 0
        result._grad = None
        result._grad_req = None
        if tracked and _STATE.recording and op.differentiable:
            _record(op, args, attrs, (result,))
        return result
    result = tuple(wrap(o) for o in out)
    if tracked and _STATE.recording and op.differentiable:
        _record(op, args, attrs, result)
    return result


def _apply_control_flow(op, args: tuple, attrs: dict, subgraphs: tuple):
    """`apply` for an operator with bodies: on arrays the bodies run compiled by the numpy
    backend, and the tape node's gradient rule gets the body graphs."""
    if any(getattr(a, "_kiln_symbolic", False) for a in args):
        return _symbolic_apply(op, args, attrs, subgraphs)
    from .ops.control_flow import bodies_for

    datas = [a._data if isinstance(a, ndarray) else asarray_input(a) for a in args]
    out = op.impl(bodies_for(subgraphs), *datas, **attrs)
    outs = tuple(wrap(o) for o in out)
    tracked = any(isinstance(a, ndarray) and (a._node is not None or a._grad_req is not None)
                  for a in args)
    if tracked and _STATE.recording and op.differentiable:
        def vjp(inputs, outputs, cts, **kw):
            return op.grad(subgraphs, inputs, outputs, cts, **kw)

        inputs = tuple(a if isinstance(a, ndarray) else wrap(_np.asarray(a)) for a in args)
        node = _TapeNode(vjp, inputs, attrs, len(outs), op.name, outs)
        for i, o in enumerate(outs):
            o._node = node
            o._oidx = i
    return outs if len(outs) != 1 else outs[0]


def _record(op, args: tuple, attrs: dict, outs: tuple) -> None:
    """Leave a tape node behind for autograd: `outs` were computed by `op` from `args`."""
    inputs = tuple(a if a is None or isinstance(a, ndarray) else wrap(_np.asarray(a))
                   for a in args)
    node = _TapeNode(op.grad, inputs, attrs, len(outs), op.name,
                     outs if op.save_outputs else None)
    for i, o in enumerate(outs):
        o._node = node
        o._oidx = i


def assign(target, value) -> None:
    """Overwrite `target` in place with `value`: state such as BatchNorm's running statistics.

    While a block is traced the write becomes part of the compiled graph, done after each call.
    """
    if getattr(target, "_kiln_symbolic", False) or getattr(value, "_kiln_symbolic", False):
        tracing_hook.assign(target, value)
        return
    src = value._data if isinstance(value, ndarray) else value
    _np.copyto(target._data, src, casting="same_kind")


def _op_error(op, args, attrs, err: Exception) -> KilnError:
    # The operator's own shape check, when it objects, names the problem in kiln's terms.
    better = _infer_error(op, args, attrs)
    shapes = ", ".join(_describe(a) for a in args)
    if better is not None:
        text = str(better)
        if not text.startswith(op.name):
            text = f"{op.name}: {text}"
        return type(better)(f"{text} (inputs: {shapes})")
    msg = f"{op.name}: {err} (inputs: {shapes}"
    if attrs:
        msg += "; " + ", ".join(f"{k}={v!r}" for k, v in attrs.items())
    msg += ")"
    if isinstance(err, TypeError):
        return DTypeError(msg)
    return ShapeError(msg)


def _infer_error(op, args, attrs) -> KilnError | None:
    """The ShapeError or DTypeError `op.infer` raises for these arguments, if it raises one."""
    from .ops.registry import Aval

    try:
        avals = [None if a is None else Aval(tuple(_np.shape(a)), _np.result_type(a))
                 for a in args]
        op.infer(*avals, **attrs)
    except (ShapeError, DTypeError) as e:
        return e
    except Exception:
        return None
    return None


def _describe(a) -> str:
    if isinstance(a, ndarray):
        return f"{a.dtype.name}{list(a.shape)}"
    if isinstance(a, _np.ndarray):
        return f"numpy {a.dtype.name}{list(a.shape)}"
    return repr(a)


def asarray_input(a):
    """Turn a non-kiln operand (NumPy array, Python number or list) into what an impl takes."""
    if isinstance(a, _np.ndarray):
        return a
    if isinstance(a, (bool, int, float, _np.generic)):
        return a
    if isinstance(a, (list, tuple)):
        arr = _np.asarray(a)
        if arr.dtype.kind == "f":
            arr = arr.astype(default_dtype)
        return arr
    if hasattr(a, "__array__"):
        return _np.asarray(a)
    raise DTypeError(f"cannot use a {type(a).__name__} as an array operand")


_new = object.__new__


def wrap(data) -> ndarray:
    """Wrap a NumPy array (not copied) as a kiln array."""
    if type(data) is not _np.ndarray:
        data = _np.asarray(data)
    a = _new(ndarray)
    a._data = data
    a._node = None
    a._oidx = 0
    a._grad = None
    a._grad_req = None
    return a


def is_array(x) -> bool:
    """Whether x is a kiln array (usable by the operator modules, which load before the class)."""
    return isinstance(x, ndarray)


# The methods shared with symbols (arithmetic, reductions, reshape ...) come from ArrayMethods.
# NOTE: imported here, after `apply` and `wrap` exist and before `ndarray` does: the operator
# modules it loads import those two names, and refer to the class only through `is_array`.
from ._array_methods import ArrayMethods  # noqa: E402


class ndarray(ArrayMethods):
    """An n-dimensional array, NumPy-compatible, with gradients.

    Create arrays with `kiln.np` (`np.array`, `np.zeros`, `np.random.normal` ...). Arithmetic,
    indexing and methods follow NumPy; `attach_grad()` and `autograd.record()` add gradients.
    """

    # `_fresh_grad` (left unset until backward writes a gradient) tells gluon.Trainer which
    # parameters received a gradient since its last step. `_handover` (unset: False) marks a
    # cotangent whose buffer nothing else refers to (a compiled backward graph's fresh output,
    # or an eager rule's: see autograd.backward): a variable with grad_req='write' may take that
    # buffer as its gradient instead of copying.
    __slots__ = ("_data", "_node", "_oidx", "_grad", "_grad_req", "_fresh_grad", "_handover",
                 "__weakref__")
    # NumPy defers to our reflected operators (onp.float32(2) * x stays a kiln array).
    __array_ufunc__ = None
    _kiln_symbolic = False

    def __init__(self, data=None, dtype=None):
        # ndarray(...) is rarely called directly; np.array is the documented way.
        arr = _np.array([] if data is None else data, dtype=dtype)
        if dtype is None and arr.dtype == _np.float64 and not isinstance(data, _np.ndarray):
            arr = arr.astype(default_dtype)
        self._data = arr
        self._node = None
        self._oidx = 0
        self._grad = None
        self._grad_req = None

    # -- what an array is -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self._data.shape

    @property
    def dtype(self) -> _np.dtype:
        return self._data.dtype

    @property
    def size(self) -> int:
        return self._data.size

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def itemsize(self) -> int:
        return self._data.itemsize

    @property
    def nbytes(self) -> int:
        return self._data.nbytes

    @property
    def strides(self) -> tuple:
        return self._data.strides

    @property
    def device(self) -> Device:
        return _CPU

    ctx = context = device

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d array")
        return len(self._data)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    # -- conversion to Python and NumPy -----------------------------------------------------------
    def asnumpy(self) -> _np.ndarray:
        """A NumPy copy of the contents."""
        return self._data.copy()

    def __array__(self, dtype=None, copy=None):
        if dtype is not None and _np.dtype(dtype) != self._data.dtype:
            return self._data.astype(dtype)
        return self._data.copy() if copy else self._data

    def item(self, *args):
        return self._data.item(*args)

    def tolist(self):
        return self._data.tolist()

    def asscalar(self):
        if self._data.size != 1:
            raise ShapeError(f"asscalar() needs an array of one element, not shape {self.shape}")
        return self._data.item()

    def __bool__(self) -> bool:
        return bool(self._data)

    def __float__(self) -> float:
        return float(self._data)

    def __int__(self) -> int:
        return int(self._data)

    def __index__(self) -> int:
        if self._data.dtype.kind not in "iub":
            raise TypeError(f"only integer arrays can be used as an index, not {self.dtype}")
        return int(self._data)

    def __complex__(self) -> complex:
        return complex(self._data)

    def __repr__(self) -> str:
        # MXNet's numpy mode names every dtype but float32 (the default) and bool, while NumPy
        # names none of float64, int64 and bool: add or drop the `dtype=` accordingly.
        text = repr(self._data)
        name = self._data.dtype.name
        if name == "float32":
            return _re.sub(r",\s*dtype=float32\)$", ")", text)
        if name in ("float64", "int64") and not text.endswith(f"dtype={name})"):
            return f"{text[:-1]}, dtype={name})"
        return text

    def __str__(self) -> str:
        return str(self._data)

    def __format__(self, spec: str) -> str:
        if self._data.ndim == 0:
            return format(self._data.item(), spec)
        return format(str(self), spec)

    def __reduce__(self):
        return (wrap, (self._data,))

    def __copy__(self) -> ndarray:
        return wrap(self._data.copy())

    def __deepcopy__(self, memo) -> ndarray:
        return wrap(self._data.copy())

    __hash__ = None

    # -- devices (kiln computes on the CPU; these keep MXNet code running) ------------------------
    def as_in_context(self, device) -> ndarray:
        return self

    as_in_ctx = to_device = as_in_context

    def copyto(self, other):
        """Copy into another array (returned), or to a device (a new array)."""
        if isinstance(other, ndarray):
            _np.copyto(other._data, _np.broadcast_to(self._data, other.shape), casting="unsafe")
            return other
        return wrap(self._data.copy())

    def wait_to_read(self) -> None:
        """Arrays are computed synchronously; kept for MXNet code."""

    def as_np_ndarray(self) -> ndarray:
        return self

    def as_nd_ndarray(self) -> ndarray:
        return self

    # -- autograd ---------------------------------------------------------------------------------
    def attach_grad(self, grad_req: str = "write", stype=None) -> None:
        """Allocate a gradient buffer: later `backward()` calls write (or add) into `.grad`."""
        if grad_req not in ("write", "add", "null"):
            raise KilnError(f"grad_req must be 'write', 'add' or 'null', not {grad_req!r}")
        self._node = None
        if grad_req == "null":
            self._grad_req = None
            self._grad = None
            return
        self._grad_req = grad_req
        self._grad = wrap(_np.zeros_like(self._data))

    @property
    def grad(self) -> ndarray | None:
        return self._grad

    @property
    def grad_req(self) -> str:
        return self._grad_req or "null"

    def _accumulate_grad(self, g: ndarray) -> None:
        grad = self._grad
        if grad is None:
            grad = self._grad = wrap(_np.zeros_like(self._data))
        if self._grad_req == "add":
            grad._data += g._data
        elif getattr(g, "_handover", False) and _can_take(grad._data, g._data):
            # The gradient wrapper keeps its identity (p.grad() is the same object); only its
            # buffer is replaced, by one nobody else holds, saving a copy per parameter.
            g._handover = False
            grad._data = g._data
        else:
            _np.copyto(grad._data, g._data, casting="same_kind")
        self._fresh_grad = True

    def backward(self, out_grad=None, retain_graph: bool = False, train_mode: bool = True,
                 create_graph: bool = False) -> None:
        """Gradients of this array with respect to the variables it was computed from."""
        _autograd.backward(self, out_grad, retain_graph=retain_graph, train_mode=train_mode,
                           create_graph=create_graph)

    def detach(self) -> ndarray:
        """The same values, cut from the autograd graph."""
        return wrap(self._data)

    # -- in-place updates -------------------------------------------------------------------------
    def _check_inplace(self, what: str) -> None:
        if _STATE.recording and self._node is not None:
            raise KilnError(
                f"{what} would overwrite an array recorded by autograd, whose value the backward "
                "pass needs. Write `a = a + b` instead of `a += b` inside autograd.record().")

    def __setitem__(self, key, value) -> None:
        self._check_inplace("x[...] = v")
        if isinstance(value, ndarray):
            value = value._data
        elif getattr(value, "_kiln_symbolic", False):
            raise SymbolicValueError("cannot assign a symbol into a concrete array")
        try:
            self._data[_index_key(key)] = value
        except (ValueError, IndexError, TypeError) as e:
            raise ShapeError(f"x[...] = v on an array of shape {self.shape}: {e}") from e

    def _inplace(self, ufunc, other, what: str) -> ndarray:
        self._check_inplace(what)
        other = other._data if isinstance(other, ndarray) else other
        try:
            ufunc(self._data, other, out=self._data, casting="same_kind")
        except (ValueError, TypeError) as e:
            raise ShapeError(f"{what} on an array of shape {self.shape}: {e}") from e
        return self

    def __iadd__(self, other):
        return self._inplace(_np.add, other, "x += y")

    def __isub__(self, other):
        return self._inplace(_np.subtract, other, "x -= y")

    def __imul__(self, other):
        return self._inplace(_np.multiply, other, "x *= y")

    def __itruediv__(self, other):
        return self._inplace(_np.true_divide, other, "x /= y")

    def __ifloordiv__(self, other):
        return self._inplace(_np.floor_divide, other, "x //= y")

    def __imod__(self, other):
        return self._inplace(_np.remainder, other, "x %= y")

    def __ipow__(self, other):
        return self._inplace(_np.power, other, "x **= y")


def _can_take(old: _np.ndarray, new: _np.ndarray) -> bool:
    """Whether `new` can replace the gradient buffer `old`: same shape and dtype, and as usable
    (C order, aligned, writable) for the optimizers' in-place kernels."""
    return new.shape == old.shape and new.dtype == old.dtype and new.flags.c_contiguous and \
        new.flags.aligned and new.flags.writeable


_autograd._ndarray = ndarray
_autograd._wrap = wrap


def _index_key(key):
    """An index with kiln arrays replaced by their NumPy buffers."""
    if isinstance(key, ndarray):
        return key._data
    if isinstance(key, tuple):
        return tuple(k._data if isinstance(k, ndarray) else k for k in key)
    if isinstance(key, list):
        return _np.asarray([k._data if isinstance(k, ndarray) else k for k in key])
    return key


def __getattr__(name: str):
    # `F.np`, `F.npx` and MXNet 1.x spellings (`F.FullyConnected`) in a hybrid_forward that runs
    # eagerly: F is this module.
    if name in ("np", "npx"):
        import kiln

        return getattr(kiln, name)
    if name == "contrib":
        from . import contrib

        return contrib
    if not name.startswith("__"):
        from .symbol import legacy

        try:
            return getattr(legacy, name)
        except AttributeError:
            pass
    raise AttributeError(f"module 'kiln.ndarray' has no attribute {name!r}")
