"""`Block` and `HybridBlock`: the building blocks of models, as in MXNet Gluon.

A `Block` holds parameters and child blocks (registered by attribute assignment) and computes in
`forward`. A `HybridBlock` can also be hybridized: `net.hybridize()` makes the next call trace the
forward into a graph, which is optimised, compiled and cached (see `kiln/gluon/hybrid.py`).
A HybridBlock may be written in MXNet 2's style, `forward(self, x)`, or in MXNet 1.x's,
`hybrid_forward(self, F, x, **params)` where `F` is `kiln.ndarray` eagerly and `kiln.symbol`
while tracing.
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections import OrderedDict

from .. import init as _init
from .. import ndarray as _nd
from ..base import KilnError
from ..ndarray import ndarray
from .parameter import Parameter, ParameterDict

__all__ = ["Block", "HybridBlock"]

_NAME_COUNTERS: dict[str, itertools.count] = {}


def _fresh_name(cls_name: str) -> str:
    """'dense0', 'dense1', ...: MXNet's readable block names."""
    key = cls_name.lower()
    counter = _NAME_COUNTERS.setdefault(key, itertools.count())
    return f"{key}{next(counter)}"


class _HookHandle:
    def __init__(self, hooks: dict, key: int):
        self._hooks, self._key = hooks, key

    def detach(self) -> None:
        self._hooks.pop(self._key, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.detach()


class _OwnParams:
    """`block.params`: MXNet 1.x's way to declare parameters (`self.params.get('w', shape=...)`)."""

    def __init__(self, block: Block):
        self._block = block

    def get(self, name: str, **kwargs) -> Parameter:
        reg = self._block._reg_params
        if name not in reg:
            param = Parameter(name, **kwargs)
            reg[name] = param
            object.__setattr__(self._block, name, param)
        return reg[name]

    def get_constant(self, name: str, value=None) -> Parameter:
        from .parameter import Constant

        reg = self._block._reg_params
        if name not in reg:
            reg[name] = Constant(value, name)
        return reg[name]

    def items(self):
        return self._block._reg_params.items()

    def values(self):
        return self._block._reg_params.values()

    def keys(self):
        return self._block._reg_params.keys()

    def __getitem__(self, name: str) -> Parameter:
        return self._block._reg_params[name]

    def __iter__(self):
        return iter(self._block._reg_params)

    def __len__(self) -> int:
        return len(self._block._reg_params)


class Block:
    """Base class of all layers and models.

        >>> class MLP(Block):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.hidden = nn.Dense(256, activation='relu')
        ...         self.output = nn.Dense(10)
        ...     def forward(self, x):
        ...         return self.output(self.hidden(x))
    """

    def __init__(self, prefix: str | None = None, params=None):
        # prefix/params are MXNet 1.x arguments; kiln names parameters by structure instead.
        object.__setattr__(self, "_children", OrderedDict())
        object.__setattr__(self, "_reg_params", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_name", prefix.rstrip("_") if prefix else
                           _fresh_name(type(self).__name__))

    # -- registration -----------------------------------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        if "_children" not in self.__dict__:
            raise KilnError(f"{type(self).__name__}: call super().__init__() before assigning "
                            "attributes in __init__")
        if isinstance(value, Block):
            self.register_child(value, name)
        elif isinstance(value, Parameter):
            self._reg_params[name] = value
        else:  # a plain attribute replaces a child or parameter of the same name
            self._children.pop(name, None)
            self._reg_params.pop(name, None)
        object.__setattr__(self, name, value)

    def register_child(self, block: Block, name: str | None = None) -> None:
        """Register a child block (attribute assignment does this)."""
        if name is None:
            name = str(len(self._children))
        self._children[name] = block

    @property
    def name(self) -> str:
        return self._name

    @property
    def prefix(self) -> str:
        return self._name + "_"

    @property
    def params(self) -> _OwnParams:
        """This block's own parameters (not its children's); `params.get` declares one."""
        return _OwnParams(self)

    def name_scope(self):
        """MXNet 1.x naming scope; kiln names by structure, so this is a plain context."""
        import contextlib

        return contextlib.nullcontext()

    def collect_params(self, select: str | None = None) -> ParameterDict:
        """Every parameter of this block and its children, by structured name ('0.weight').

        `select` is a regular expression (or several joined by '|') the names must match.
        """
        out = ParameterDict()
        self._collect(out, "", set())
        if select is not None:
            regex = re.compile(select)
            out = ParameterDict((k, v) for k, v in out.items() if regex.match(k))
        return out

    def _collect(self, out: dict, prefix: str, seen: set) -> None:
        for name, p in self._reg_params.items():
            if id(p) not in seen:
                seen.add(id(p))
                path = prefix + name
                p._path = path
                out[path] = p
        for name, child in self._children.items():
            child._collect(out, f"{prefix}{name}.", seen)

    # -- initialization and state -----------------------------------------------------------------
    def initialize(self, init=_init.Uniform(), ctx=None, verbose: bool = False,
                   force_reinit: bool = False, device=None) -> None:
        """Initialize every parameter (deferred until the first forward where shapes are
        unknown)."""
        params = self.collect_params()
        already = [k for k, p in params.items() if p._data is not None]
        if already and not force_reinit:
            warnings.warn(f"{len(already)} parameter(s) already initialized, e.g. "
                          f"{already[0]!r}; ignoring. Pass force_reinit=True to re-initialize.",
                          stacklevel=2)
        params.initialize(init, ctx, verbose, force_reinit)
        self._clear_cached()

    def zero_grad(self) -> None:
        self.collect_params().zero_grad()

    def reset_ctx(self, ctx=None) -> None:
        """kiln computes on the CPU: nothing to move."""

    reset_device = reset_ctx

    def cast(self, dtype) -> None:
        for child in self._children.values():
            child.cast(dtype)
        for p in self._reg_params.values():
            p.cast(dtype)
        self._clear_cached()

    def share_parameters(self, shared: dict) -> Block:
        """Use the given parameters (by structured name) instead of this block's own."""
        self._share(shared, "")
        self._clear_cached()
        return self

    def _share(self, shared: dict, prefix: str) -> None:
        for name in list(self._reg_params):
            if prefix + name in shared:
                self._reg_params[name] = shared[prefix + name]
                object.__setattr__(self, name, shared[prefix + name])
        for cname, child in self._children.items():
            child._share(shared, f"{prefix}{cname}.")

    def apply(self, fn) -> Block:
        """Call fn(block) on every child (depth first), then on this block."""
        for child in self._children.values():
            child.apply(fn)
        fn(self)
        return self

    def _clear_cached(self) -> None:
        for child in self._children.values():
            child._clear_cached()

    # -- running ----------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if self._forward_pre_hooks or self._forward_hooks:
            return self._call_with_hooks(args, kwargs)
        return self.forward(*args, **kwargs)

    def _call_with_hooks(self, args, kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            hook(self, args)
        out = self._run(args, kwargs)
        for hook in list(self._forward_hooks.values()):
            hook(self, args, out)
        return out

    def _run(self, args, kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def register_forward_pre_hook(self, hook) -> _HookHandle:
        """hook(block, inputs) runs before every forward."""
        key = id(hook)
        self._forward_pre_hooks[key] = hook
        return _HookHandle(self._forward_pre_hooks, key)

    def register_forward_hook(self, hook) -> _HookHandle:
        """hook(block, inputs, outputs) runs after every forward."""
        key = id(hook)
        self._forward_hooks[key] = hook
        return _HookHandle(self._forward_hooks, key)

    def hybridize(self, active: bool = True, **kwargs) -> None:
        """Hybridize every HybridBlock child (a plain Block itself runs eagerly)."""
        for child in self._children.values():
            child.hybridize(active, **kwargs)

    # -- files ------------------------------------------------------------------------------------
    def save_parameters(self, filename: str, deduplicate: bool = False) -> None:
        """Save every parameter under its structured name, in MXNet's binary format."""
        from ..io.params import save_params

        arrays = {}
        for name, p in self.collect_params().items():
            if p._data is None:
                raise p._uninitialized_error()
            arrays[name] = p._data
        save_params(filename, arrays)

    def load_parameters(self, filename: str, ctx=None, allow_missing: bool = False,
                        ignore_extra: bool = False, cast_dtype: bool = False,
                        dtype_source: str = "current", device=None) -> None:
        """Load what `save_parameters` (or `export`) wrote, matching names exactly."""
        from ..io.params import load_params

        loaded = load_params(filename)
        if not isinstance(loaded, dict):
            raise KilnError(f"{filename}: holds unnamed arrays, not a network's parameters")
        exported = all(k.startswith(("arg:", "aux:")) for k in loaded) and loaded
        if exported:  # an export() file: its names carry MXNet's arg:/aux: prefixes
            loaded = {k[4:]: v for k, v in loaded.items()}
        params = self.collect_params()
        loaded = _mxnet_rnn_names(loaded, params)
        missing = [k for k in params if k not in loaded]
        extra = [k for k in loaded if k not in params]
        problems = []
        if missing and not allow_missing:
            problems.append(("lacks", missing, "allow_missing=True"))
        if extra and not ignore_extra:
            problems.append(("has extra", extra, "ignore_extra=True"))
        if problems:   # name both kinds of mismatch at once: they often come together
            raise KilnError(_mismatch_message(filename, problems, params, loaded))
        for name, p in params.items():
            if name in loaded:
                value = loaded[name]
                if cast_dtype and dtype_source == "current":
                    value = value.astype(p.dtype)
                elif cast_dtype:
                    p.dtype = value.dtype
                p.set_data(value)
        self._clear_cached()

    # -- display ----------------------------------------------------------------------------------
    def __repr__(self) -> str:
        if not self._children:
            return f"{type(self).__name__}({self._repr_args()})"
        lines = [f"{type(self).__name__}("]
        for name, child in self._children.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(")")
        return "\n".join(lines)

    def _repr_args(self) -> str:
        return ""

    def summary(self, *inputs) -> None:
        """Print each layer's output shape and parameter count for these inputs."""
        from .summary import summary

        summary(self, *inputs)


def _mxnet_rnn_names(loaded: dict, params) -> dict:
    """MXNet 1.x saves a recurrent layer's parameters under its unfused cells' names
    ('_unfused.0.l_cell.i2h_weight'); kiln's layers use the fused names ('l0_i2h_weight')."""
    if not any("_unfused." in k for k in loaded):
        return loaded
    from .rnn.rnn_layer import fused_name

    out = {}
    for k, v in loaded.items():
        name = fused_name(k) if k not in params else k
        out[name if name in params else k] = v
    return out


def _mismatch_message(filename, problems, params, loaded) -> str:
    lines = []
    for verb, names, _ in problems:
        shown = ", ".join(repr(n) for n in names[:10]) + (" ..." if len(names) > 10 else "")
        lines.append(f"{filename} {verb} parameters: {shown}.")
    msg = (f"load_parameters: {' '.join(lines)}\n"
           f"  The network's parameters: {sorted(params)[:12]}\n"
           f"  The file's parameters:    {sorted(loaded)[:12]}\n"
           f"  Pass {' and '.join(flag for _, _, flag in problems)} to load anyway.")
    if any(k.startswith(("arg:", "aux:")) for k in loaded):
        msg += ("\n  Some names carry export()'s 'arg:'/'aux:' prefixes but not all of them; "
                "load an export() file with SymbolBlock.imports instead.")
    return msg


def _is_symbolic(x) -> bool:
    return getattr(x, "_kiln_symbolic", False)


class HybridBlock(Block):
    """A block that can be compiled with `hybridize()`.

    Write `forward(self, x)` with `kiln.np`/`npx` operators, or MXNet 1.x's
    `hybrid_forward(self, F, x, **params)`; both run eagerly until `hybridize()` is called.
    """

    def __init__(self, prefix: str | None = None, params=None):
        super().__init__(prefix, params)
        object.__setattr__(self, "_active", False)
        object.__setattr__(self, "_hybrid_options", {})
        object.__setattr__(self, "_cache", None)

    def register_child(self, block: Block, name: str | None = None) -> None:
        if not isinstance(block, HybridBlock):
            raise ValueError(
                f"Children of HybridBlock must also be HybridBlock, but {block!r} has type "
                f"{type(block)}. If you are using Sequential, please try HybridSequential "
                "instead.")
        super().register_child(block, name)

    def hybridize(self, active: bool = True, static_alloc: bool = False,
                  static_shape: bool = False, backend: str | None = None, **options) -> None:
        """Compile this block (and its children) at the next call; `hybridize(False)` undoes it.

        `static_alloc` keeps the intermediate buffers between calls; `backend` picks the code
        generator ('numpy', or 'native'/'auto' where available); other options:
        `verify=True` checks the compiled graph against eager execution on first calls,
        `disable_passes=[...]` switches optimisation passes off by name.
        """
        object.__setattr__(self, "_active", bool(active))
        object.__setattr__(self, "_hybrid_options", dict(
            static_alloc=static_alloc, static_shape=static_shape, backend=backend, **options))
        object.__setattr__(self, "_cache", None)
        for child in self._children.values():
            child.hybridize(active, static_alloc=static_alloc, static_shape=static_shape,
                            backend=backend, **options)

    def _clear_cached(self) -> None:
        object.__setattr__(self, "_cache", None)
        super()._clear_cached()

    def __call__(self, *args, **kwargs):
        if args:
            first = args[0]
            if type(first) is ndarray:
                if self._active and not _tracing():
                    if self._forward_pre_hooks or self._forward_hooks:
                        return self._call_with_hooks(args, kwargs)  # around the cached call
                    return call_cached(self, args, kwargs)
            elif getattr(first, "_kiln_symbolic", False):
                _check_not_mixed(self, args)
                # name the nodes this block records after it; parameters are variables
                with _parameter_symbols(), _scope(self.name):
                    return self._call_eager(args, kwargs)
            if len(args) > 1:
                _check_not_mixed(self, args)
        return self._call_eager(args, kwargs)

    def _call_eager(self, args, kwargs):
        if self._forward_pre_hooks or self._forward_hooks:
            return self._call_with_hooks(args, kwargs)
        return self.forward(*args, **kwargs)

    def _run(self, args, kwargs):
        if self._active and args and type(args[0]) is ndarray and not _tracing():
            return call_cached(self, args, kwargs)
        return self.forward(*args, **kwargs)

    def forward(self, x, *args, **kwargs):
        """Default forward: MXNet 1.x blocks define `hybrid_forward(F, x, **params)` instead."""
        if type(self).hybrid_forward is HybridBlock.hybrid_forward:
            raise NotImplementedError(
                f"{type(self).__name__} must define forward(self, x) or "
                "hybrid_forward(self, F, x, ...)")
        inputs = (x, *args)
        _check_not_mixed(self, inputs)
        if any(_is_symbolic(a) for a in inputs):
            from .. import symbol as F  # noqa: N812  (MXNet's name for the operator module)
        else:
            F = _nd
        params = {name: p.data() for name, p in self._reg_params.items()}
        return self.hybrid_forward(F, x, *args, **kwargs, **params)

    def hybrid_forward(self, F, x, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward(self, x) or "
                                  "hybrid_forward(self, F, x, ...)")

    def infer_shape(self, *args) -> None:
        """Finish deferred initialization by running the forward once on these inputs."""
        self.forward(*args)

    def export(self, path: str, epoch: int = 0, remove_amp_cast: bool = True,
               mode: str = "numpy") -> tuple[str, str]:
        """Write `path-symbol.json` and `path-%04d.params` (MXNet 1.x format) from the graph
        of the last hybridized call, in predict mode; returns both file names.

        `mode='numpy'` writes what MXNet reads in numpy mode (`npx.set_np()`, MXNet 2);
        `mode='legacy'` what MXNet 1.x reads outside it. Load the files back with
        `SymbolBlock.imports(sym_file, ['data'], params_file)`.
        """
        from ..io.export import export_block

        return export_block(self, path, epoch, mode)


def _check_not_mixed(block, inputs) -> None:
    check_not_mixed(type(block).__name__, inputs)


def _tracing() -> bool:
    hook = _nd.tracing_hook
    return hook is not None and hook.active()


from ..symbol.tracing import parameter_symbols as _parameter_symbols  # noqa: E402
from ..symbol.tracing import scope as _scope  # noqa: E402
from .hybrid import call_cached, check_not_mixed  # noqa: E402
