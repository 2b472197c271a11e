"""The `Optimizer` base class, its registry and the `Updater` that keeps per-parameter states.

Optimizers update weights **in place**, on the NumPy buffer of each weight array: a parameter
keeps the same array object for its whole life (compiled graphs hold it), so an update must
never rebind it. Updates use NumPy ufuncs with `out=` and per-shape scratch buffers, so a step
allocates nothing after the first.

An optimizer subclass implements `create_state(index, weight)` and
`_step(index, weight, grad, state, lr, wd)` on NumPy arrays; the base class applies
`rescale_grad`, `clip_gradient`, learning-rate schedules and per-parameter `lr_mult`/`wd_mult`.
"""

from __future__ import annotations

import json
import warnings
from typing import Any
from collections.abc import Callable

import numpy as _np

from ..base import KilnError
from ..ndarray import ndarray, wrap

__all__ = ["Optimizer", "register", "create", "Updater", "get_updater"]

_REGISTRY: dict[str, type] = {}


def register(klass: type) -> type:
    """Make an optimizer class creatable by its lowercase name (`create('sgd')`)."""
    if not (isinstance(klass, type) and issubclass(klass, Optimizer)):
        raise KilnError(f"register: {klass!r} is not a subclass of Optimizer")
    name = klass.__name__.lower()
    if name in _REGISTRY and _REGISTRY[name] is not klass:
        warnings.warn(f"optimizer {name!r} ({_REGISTRY[name].__module__}) is replaced by "
                      f"{klass.__module__}.{klass.__name__}", stacklevel=2)
    _REGISTRY[name] = klass
    return klass


def create(name: str | Optimizer, **kwargs) -> Optimizer:
    """An optimizer by (case-insensitive) name: `create('adam', learning_rate=1e-3)`."""
    if isinstance(name, Optimizer):
        if kwargs:
            raise KilnError("create(): options were given with an Optimizer instance; set them "
                            "on the instance instead")
        return name
    if not isinstance(name, str):
        raise KilnError(f"an optimizer is a name or an Optimizer, not {type(name).__name__}")
    klass = _REGISTRY.get(name.lower())
    if klass is None:
        raise KilnError(f"unknown optimizer {name!r}; known: {sorted(_REGISTRY)}")
    return klass(**kwargs)


def _np_of(x) -> _np.ndarray:
    if isinstance(x, ndarray):
        return x._data
    if isinstance(x, _np.ndarray):
        return x
    raise KilnError(f"optimizer: expected a kiln or NumPy array, got {type(x).__name__}")


# Decaying states (momenta of parameters whose gradient is zero, e.g. dead ReLU units) sink into
# subnormal floats, which make x86 arithmetic ~10x slower and never decay back to zero; every
# _FLUSH_EVERY updates of a parameter its state's subnormals are set to zero.
_FLUSH_EVERY = 64


def _float32_c(*arrays) -> bool:
    return all(a.dtype == _np.float32 and a.flags.c_contiguous for a in arrays)


_NATIVE_KERNELS: list = []


def native_optimizer_kernels():
    """kiln.backend.native.optimizer_kernels when native code is in use here, else None.

    KILN_BACKEND=numpy keeps updates in NumPy; a machine without a C compiler does too.
    """
    if not _NATIVE_KERNELS:
        kernels = None
        import os

        if os.environ.get("KILN_BACKEND", "auto") in ("auto", "native"):
            try:
                from ..backend.native import optimizer_kernels as candidate

                kernels = candidate if candidate.available() else None
            except ImportError:
                kernels = None
        _NATIVE_KERNELS.append(kernels)
    return _NATIVE_KERNELS[0]


def _flush_subnormals(state) -> None:
    if state is None:
        return
    if isinstance(state, tuple | list):
        for s in state:
            _flush_subnormals(s)
        return
    a = state._data if isinstance(state, ndarray) else state
    if a.dtype.kind == "f":
        tiny = _np.finfo(a.dtype).tiny
        _np.copyto(a, 0, where=_np.abs(a) < tiny)


class Optimizer:
    """Base class of the optimizers (MXNet's `mxnet.optimizer.Optimizer`).

    Parameters common to every optimizer:
      learning_rate   the step size (each optimizer has its own default)
      wd              L2 weight decay, scaled per parameter by its `wd_mult`
      rescale_grad    multiplies every gradient first (Trainer sets it to 1/batch_size)
      clip_gradient   clip the rescaled gradient into [-clip_gradient, clip_gradient]
      lr_scheduler    an `lr_scheduler.LRScheduler`; its base_lr becomes `learning_rate`
      multi_precision keep a float32 master copy of float16 weights
      param_dict      index -> Parameter, for `lr_mult`/`wd_mult` (Trainer fills it in)
    """

    _default_lr = 0.01

    def __init__(self, rescale_grad: float = 1.0, param_idx2name: dict | None = None,
                 wd: float = 0.0, clip_gradient: float | None = None,
                 learning_rate: float | None = None, lr_scheduler=None, sym=None,
                 begin_num_update: int = 0, multi_precision: bool = False,
                 param_dict: dict | None = None, aggregate_num: int | None = None,
                 use_fused_step: bool | None = None, **kwargs):
        if kwargs:
            raise KilnError(f"{type(self).__name__}: unknown option(s) "
                            f"{', '.join(sorted(kwargs))}; see help(kiln.optimizer."
                            f"{type(self).__name__}) for the accepted ones")
        self.rescale_grad = rescale_grad
        if lr_scheduler is not None and learning_rate is not None:
            lr_scheduler.base_lr = learning_rate      # an explicit rate wins, as in MXNet
        if learning_rate is None:
            learning_rate = lr_scheduler.base_lr if lr_scheduler is not None else \
                self._default_lr
        self.lr = float(learning_rate)
        self.lr_scheduler = lr_scheduler
        self.wd = wd
        if clip_gradient is not None and clip_gradient <= 0:
            clip_gradient = None                      # MXNet: a negative value switches it off
        self.clip_gradient = clip_gradient
        self.multi_precision = multi_precision
        self.begin_num_update = begin_num_update
        self.num_update = begin_num_update
        self._index_update_count: dict[Any, int] = {}
        self.idx2name = dict(param_idx2name or {})
        self.param_dict = dict(param_dict or {})
        self.lr_mult: dict = {}
        self.wd_mult: dict = {}
        self.aggregate_num = aggregate_num
        self.use_fused_step = use_fused_step
        # (shape, dtype, slot) -> scratch array reused across steps
        self._scratch: dict[tuple, _np.ndarray] = {}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(learning_rate={self.learning_rate}, wd={self.wd}, "
                f"rescale_grad={self.rescale_grad}, clip_gradient={self.clip_gradient})")

    # -- learning rate --------------------------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        if self.lr_scheduler is not None:
            return self.lr_scheduler(self.num_update)
        return self.lr

    @learning_rate.setter
    def learning_rate(self, lr: float) -> None:
        self.set_learning_rate(lr)

    def set_learning_rate(self, lr: float) -> None:
        """Set the rate; not allowed while a scheduler decides it."""
        if self.lr_scheduler is not None:
            raise KilnError(
                "set_learning_rate: this optimizer has an lr_scheduler, which decides the "
                "learning rate. Change the scheduler (e.g. its base_lr) or create the "
                "optimizer without one.")
        self.lr = float(lr)

    def set_lr_mult(self, args_lr_mult: dict) -> None:
        """Per-parameter learning-rate multipliers, by index or name (Parameter.lr_mult wins)."""
        self.lr_mult = dict(args_lr_mult)

    def set_wd_mult(self, args_wd_mult: dict) -> None:
        """Per-parameter weight-decay multipliers, by index or name (Parameter.wd_mult wins)."""
        self.wd_mult = dict(args_wd_mult)

    def _update_count(self, index) -> None:
        count = self._index_update_count.get(index, self.begin_num_update) + 1
        self._index_update_count[index] = count
        self.num_update = max(count, self.num_update)

    def _mult(self, index, table: dict, attr: str) -> float:
        p = self.param_dict.get(index)
        if p is not None:
            return getattr(p, attr)
        if index in table:
            return table[index]
        name = self.idx2name.get(index)
        return table.get(name, 1.0) if name is not None else 1.0

    def _get_lr(self, index) -> float:
        return self.learning_rate * self._mult(index, self.lr_mult, "lr_mult")

    def _get_wd(self, index) -> float:
        return self.wd * self._mult(index, self.wd_mult, "wd_mult")

    def _get_lrs(self, indices) -> list[float]:
        return [self._get_lr(i) for i in indices]

    def _get_wds(self, indices) -> list[float]:
        return [self._get_wd(i) for i in indices]

    # -- states ---------------------------------------------------------------------------------
    def create_state(self, index, weight: ndarray):
        """The auxiliary state (e.g. momentum) of one weight: None, an array or a tuple."""
        return None

    def create_state_multi_precision(self, index, weight: ndarray):
        """`create_state`, plus a float32 master copy when a float16 weight is trained with
        multi_precision=True: the state is then (master copy, inner state)."""
        if weight.dtype == _np.float16:
            if self.multi_precision:
                master = wrap(weight._data.astype(_np.float32))
                return (master, self.create_state(index, master))
            warnings.warn("Accumulating float16 updates in float16 loses precision; pass "
                          "multi_precision=True to the optimizer", stacklevel=2)
        return self.create_state(index, weight)

    def _zeros(self, weight: ndarray) -> ndarray:
        """A zero state array like `weight` (float32 unless the weight is float64)."""
        dtype = weight.dtype if weight.dtype in (_np.float32, _np.float64) else _np.float32
        return wrap(_np.zeros(weight.shape, dtype))

    # -- updates --------------------------------------------------------------------------------
    def update(self, index, weight, grad, state) -> None:
        """Update `weight` in place from `grad` (single values or lists of them)."""
        if isinstance(index, (list, tuple)):
            self.step(index, weight, grad, state)
        else:
            self.step([index], [weight], [grad], [state])

    def update_multi_precision(self, index, weight, grad, state) -> None:
        """`update`, through the float32 master copy for float16 weights (multi_precision)."""
        if not isinstance(index, (list, tuple)):
            index, weight, grad, state = [index], [weight], [grad], [state]
        plain = ([], [], [], [])   # updated together: one native call where available
        for i, w, g, s in zip(index, weight, grad, state, strict=True):
            if self.multi_precision and w.dtype == _np.float16:
                master, inner = s
                g32 = wrap(_np_of(g).astype(_np.float32))
                self.step([i], [master], [g32], [inner])
                _np.copyto(w._data, master._data, casting="unsafe")
            else:
                for lst, item in zip(plain, (i, w, g, s)):
                    lst.append(item)
        if plain[0]:
            self.step(*plain)

    def step(self, indices, weights, grads, states) -> None:
        """One update of each weight listed (MXNet 2's form of `update`)."""
        if len(indices) > 1 and self._fused_step(indices, weights, grads, states):
            return
        for index, weight, grad, state in zip(indices, weights, grads, states, strict=True):
            w = _np_of(weight)
            g = _np_of(grad)
            if g.shape != w.shape:
                name = self.idx2name.get(index, index)
                raise KilnError(f"{type(self).__name__}: gradient of shape {g.shape} for "
                                f"parameter {name!r} of shape {w.shape}")
            self._update_count(index)
            lr = self._get_lr(index)
            wd = self._get_wd(index)
            self._step(index, w, g, state, lr, wd)
            if self._index_update_count[index] % _FLUSH_EVERY == 0:
                _flush_subnormals(state)

    def _step(self, index, weight: _np.ndarray, grad: _np.ndarray, state, lr: float,
              wd: float) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _step")

    def _fused_step(self, indices, weights, grads, states) -> bool:
        """Update every weight in one native call when the optimizer has such a kernel and
        kiln's native kernels are in use; False to take the per-weight NumPy path."""
        return False

    def _fused_arrays(self, indices, weights, grads, states, n_states: int):
        """(weights, grads, [state lists], lrs, wds) as float32 NumPy arrays for a native kernel
        (counting the updates), or None when any array does not qualify."""
        kernels = native_optimizer_kernels()
        if kernels is None:
            return None
        ws, gs, st = [], [], [[] for _ in range(n_states)]
        for w, g, s in zip(weights, grads, states, strict=True):
            w, g = _np_of(w), _np_of(g)
            parts = () if s is None else ((s,) if n_states == 1 else tuple(s))
            if len(parts) != n_states or w.shape != g.shape or not _float32_c(w, g, *[
                    p._data for p in parts]):
                return None
            ws.append(w)
            gs.append(g)
            for k, p in enumerate(parts):
                st[k].append(p._data)
        for index in indices:
            self._update_count(index)
        return kernels, ws, gs, st, self._get_lrs(indices), self._get_wds(indices)

    def _flush_all(self, indices, states) -> None:
        for index, state in zip(indices, states):
            if self._index_update_count[index] % _FLUSH_EVERY == 0:
                _flush_subnormals(state)

    # -- helpers for subclasses -------------------------------------------------------------------
    def _buf(self, like: _np.ndarray, slot: int = 0) -> _np.ndarray:
        """A scratch array shaped like `like`, reused across steps (one per shape and slot)."""
        key = (like.shape, like.dtype.str, slot)
        buf = self._scratch.get(key)
        if buf is None:
            buf = self._scratch[key] = _np.empty_like(like)
        return buf

    def _prep_grad(self, grad: _np.ndarray, weight: _np.ndarray, wd: float,
                   scale: float = 1.0, clip_after_wd: bool = False) -> _np.ndarray:
        """scale * (clip(rescale_grad * grad) + wd * weight), in a scratch buffer (slot 0).

        With clip_after_wd: scale * clip(rescale_grad * grad + wd * weight), the order of
        MXNet's fused Adam and RMSProp kernels. Folding `scale` (often the learning rate) into
        the rescale saves a pass when there is no clipping.
        """
        out = self._buf(weight, 0)
        clip = self.clip_gradient
        if clip is None or clip_after_wd:
            first = self.rescale_grad * (scale if clip is None else 1.0)
            _np.multiply(grad, first, out=out, casting="unsafe")
            if wd:
                tmp = self._buf(weight, 1)
                _np.multiply(weight, wd * (scale if clip is None else 1.0), out=tmp)
                out += tmp
            if clip is not None:
                _np.clip(out, -clip, clip, out=out)
                if scale != 1.0:
                    out *= scale
            return out
        _np.multiply(grad, self.rescale_grad, out=out, casting="unsafe")
        _np.clip(out, -clip, clip, out=out)
        if scale != 1.0:
            out *= scale
        if wd:
            tmp = self._buf(weight, 1)
            _np.multiply(weight, wd * scale, out=tmp)
            out += tmp
        return out

    def _state_json(self) -> dict:
        """Scalars that `Trainer.save_states` keeps (JSON, no pickle)."""
        out = {"optimizer": type(self).__name__, "num_update": self.num_update,
               "index_update_count": [[k, v] for k, v in self._index_update_count.items()],
               "lr": self.lr, "wd": self.wd}
        if self.lr_scheduler is not None and hasattr(self.lr_scheduler, "_state"):
            out["lr_scheduler"] = {"class": type(self.lr_scheduler).__name__,
                                   "state": self.lr_scheduler._state()}
        return out

    def _load_state_json(self, meta: dict) -> None:
        self.num_update = int(meta["num_update"])
        self._index_update_count = {k: int(v) for k, v in meta["index_update_count"]}
        self.lr = float(meta["lr"])
        self.wd = float(meta["wd"])
        sched = meta.get("lr_scheduler")
        if sched and self.lr_scheduler is not None and \
                type(self.lr_scheduler).__name__ == sched["class"]:
            self.lr_scheduler._load_state(sched["state"])


# ----------------------------------------------------------------------------------------------
# Updater: the per-index states, and their (pickle-free) serialisation
# ----------------------------------------------------------------------------------------------

_META_KEY = "__kiln_updater_meta__"


def _flatten_state(state, prefix: str, arrays: dict) -> Any:
    """A JSON description of `state`'s structure; its arrays go into `arrays` by path."""
    if state is None:
        return None
    if isinstance(state, (ndarray, _np.ndarray)):
        arrays[prefix] = state if isinstance(state, ndarray) else wrap(state)
        return "array"
    if isinstance(state, (tuple, list)):
        return [_flatten_state(s, f"{prefix}.{i}", arrays) for i, s in enumerate(state)]
    raise KilnError(f"cannot save optimizer state of type {type(state).__name__}")


def _unflatten_state(desc, prefix: str, arrays: dict, source: str):
    if desc is None:
        return None
    if desc == "array":
        if prefix not in arrays:
            raise KilnError(f"{source}: optimizer state array {prefix!r} is missing")
        return arrays[prefix]
    return tuple(_unflatten_state(d, f"{prefix}.{i}", arrays, source)
                 for i, d in enumerate(desc))


class Updater:
    """Applies an optimizer to weights by index, creating each index's state on first use."""

    def __init__(self, optimizer: Optimizer):
        self.optimizer = optimizer
        self.states: dict[Any, Any] = {}
        self.states_synced: dict[Any, bool] = {}

    def __call__(self, index, grad, weight) -> None:
        if not isinstance(index, (list, tuple)):
            index, grad, weight = [index], [grad], [weight]
        states = []
        for i, w in zip(index, weight, strict=True):
            if i not in self.states:
                self.states[i] = self.optimizer.create_state_multi_precision(i, w)
                self.states_synced[i] = True
            states.append(self.states[i])
        self.optimizer.update_multi_precision(list(index), list(weight), list(grad), states)

    def get_states_arrays(self) -> dict:
        """name -> array for every state array, plus the JSON metadata as a uint8 array."""
        arrays: dict[str, ndarray] = {}
        structure = {}
        for index, state in self.states.items():
            structure[json.dumps(index)] = _flatten_state(state, f"state:{json.dumps(index)}",
                                                          arrays)
        meta = {"format": "kiln-updater-1", "structure": structure,
                "optimizer": self.optimizer._state_json()}
        arrays[_META_KEY] = wrap(_np.frombuffer(json.dumps(meta).encode(), dtype=_np.uint8))
        return arrays

    def get_states(self, dump_optimizer: bool = False) -> bytes:
        """The states in MXNet's binary array-list format (JSON metadata inside; no pickle)."""
        from ..io.params import dump_params_bytes

        return dump_params_bytes(self.get_states_arrays())

    def set_states_arrays(self, arrays: dict, source: str = "<states>") -> None:
        # Copies: arrays read from bytes may be read-only views, and states are updated in place.
        arrays = {k: wrap(_np.array(v._data if isinstance(v, ndarray) else v))
                  for k, v in arrays.items()}
        if _META_KEY not in arrays:
            raise KilnError(f"{source}: not an optimizer-states file (no {_META_KEY!r} entry); "
                            "write it with Trainer.save_states")
        raw = arrays[_META_KEY]._data
        try:
            meta = json.loads(raw.astype(_np.uint8).tobytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise KilnError(f"{source}: corrupt optimizer-states metadata: {e}") from e
        if meta.get("format") != "kiln-updater-1":
            raise KilnError(f"{source}: unknown optimizer-states format {meta.get('format')!r}")
        saved = meta["optimizer"]["optimizer"]
        if saved != type(self.optimizer).__name__:
            raise KilnError(f"{source}: states of a {saved} optimizer cannot be loaded into a "
                            f"{type(self.optimizer).__name__}; create the Trainer with "
                            f"{saved.lower()!r}")
        states = {}
        for key, desc in meta["structure"].items():
            states[json.loads(key)] = _unflatten_state(desc, f"state:{key}", arrays, source)
        self.states = states
        self.states_synced = dict.fromkeys(states, False)
        self.optimizer._load_state_json(meta["optimizer"])

    def set_states(self, states: bytes) -> None:
        from ..io.params import load_params_bytes

        self.set_states_arrays(load_params_bytes(states), "<states>")


def get_updater(optimizer: Optimizer) -> Callable:
    """An `Updater` for `optimizer` (MXNet's `get_updater`)."""
    return Updater(optimizer)
