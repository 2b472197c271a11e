"""What `hybridize()` does at call time: trace, optimise, compile, cache, run, and differentiate.

Each hybridized block keeps a `HybridCache`: one compiled `_Entry` per input signature (shapes,
dtypes, static arguments, train/predict mode, whether autograd records and which inputs need
gradients). A new signature is traced and compiled again; many re-traces warn, saying what
changed. Under `autograd.record()` the whole compiled call is one tape node, whose gradient is a
compiled backward graph derived from the registry's rules.
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as _np

from .. import autograd as _autograd
from ..autograd import TapeNode
from ..backend import get_backend
from ..base import KilnError, env_flag, env_int
from ..graph.autodiff import differentiate
from ..graph.interpret import interpret
from ..graph.ir import format_graph
from ..graph.passes import run_pipeline
from ..ndarray import ndarray, wrap
from ..symbol.tracing import scope, trace, unflatten
from .parameter import Parameter

__all__ = ["call_cached", "HybridCache", "VerificationError", "RETRACE_WARNING_LIMIT"]

_STATE = _autograd.STATE
RETRACE_WARNING_LIMIT = 5


class VerificationError(KilnError):
    """`hybridize(verify=True)` found the compiled graph computing something else than eager."""


class RetraceWarning(UserWarning):
    """A hybridized block was traced again and again for new input signatures."""


def _tracked(a: ndarray) -> bool:
    return a._node is not None or a._grad_req is not None


def call_cached(block, args: tuple, kwargs: dict):
    """Run a hybridized block: look up (or build) the compiled graph for these inputs."""
    if IGNORE_HYBRIDIZE[0]:
        return block.forward(*args, **kwargs)
    cache = block._cache
    if cache is None:
        def forward(*sym_args, **kw):
            with scope(block.name):
                return block.forward(*sym_args, **kw)
        cache = HybridCache(forward, block.name, block._hybrid_options)
        object.__setattr__(block, "_cache", cache)
    return cache(args, kwargs)


#: KILN_IGNORE_HYBRIDIZE=1 runs every hybridized block eagerly (a debugging switch); read once,
#: since call_cached is on the hot path. Tests may flip IGNORE_HYBRIDIZE[0].
IGNORE_HYBRIDIZE = [env_flag("KILN_IGNORE_HYBRIDIZE")]


class _Entry:
    """One compiled signature."""

    __slots__ = ("compiled", "forward", "backward", "diff", "num_args", "num_outputs", "params",
                 "state_targets", "out_tree", "epoch", "free_arg_positions", "bwd_free_inputs",
                 "graph", "optimized", "verify_pending", "n_updates", "single", "plain")


class HybridCache:
    """Compiled versions of `fn`, one per input signature (a hybridized block's or a jit's)."""

    def __init__(self, fn, name: str, options: dict):
        self.fn = fn
        self.name = name
        self.options = options
        self.entries: dict = {}
        self.last_key = None
        self.traces = 0
        self.warned = False
        # (shape, dtype, training mode, entry) of the last plain call: one array in, one array
        # out, not recording. A batch-1 inference loop hits it on every call and skips the key.
        self._fast = None

    # -- signatures -------------------------------------------------------------------------------
    def _key(self, args, kwargs):
        recording = _STATE.recording
        parts = []
        for a in args:
            if type(a) is ndarray:
                d = a._data
                parts.append((d.shape, d.dtype.char, recording and _tracked(a)))
            elif a is None or isinstance(a, (bool, int, float, str)):
                parts.append(("static", a))
            elif getattr(a, "_kiln_symbolic", False):
                raise KilnError(f"{self.name}: inputs mix arrays and symbols; pass all "
                                "arrays (to compute) or all symbols (to build a graph)")
            else:
                raise KilnError(f"{self.name}: a hybridized block takes arrays and Python "
                                f"scalars as inputs, not {type(a).__name__}")
        for k, v in sorted(kwargs.items()):
            if isinstance(v, ndarray):
                raise KilnError(f"{self.name}: pass array arguments positionally to a "
                                f"hybridized block (got keyword {k!r})")
            parts.append((k, v))
        return (tuple(parts), _STATE.training, recording)

    def __call__(self, args, kwargs):
        if len(args) == 1 and not kwargs:  # the common case, keyed without a loop
            a = args[0]
            d = a._data
            rec = _STATE.recording
            fast = self._fast
            if fast is not None and not rec and fast[1] is d.dtype and fast[0] == d.shape and \
                    fast[2] is _STATE.training and fast[3].epoch == Parameter._epoch:
                return wrap(fast[3].forward(d)[0])
            key = (((d.shape, d.dtype.char, rec and (a._node is not None or
                                                     a._grad_req is not None)),),
                   _STATE.training, rec)
        else:
            key = self._key(args, kwargs)
        entry = self.entries.get(key)
        if entry is None or entry.epoch != Parameter._epoch:
            entry = self._build(key, args, kwargs)
        arrays = [args[i]._data for i in entry.free_arg_positions]
        if entry.backward is not None and _STATE.recording:
            return self._call_recorded(entry, args, arrays)
        results = entry.forward(*arrays)
        if entry.n_updates:
            self._write_state(entry, results)
        if entry.verify_pending:
            self._verify(entry, args, results)
        elif entry.plain and len(args) == 1 and not kwargs:
            self._fast = (args[0]._data.shape, args[0]._data.dtype, _STATE.training, entry)
        if entry.single:
            return wrap(results[0])
        return unflatten(entry.out_tree, [wrap(r) for r in results[:entry.num_outputs]])[0]

    def _write_state(self, entry: _Entry, results) -> None:
        start = entry.num_outputs
        for target, value in zip(entry.state_targets, results[start:start + entry.n_updates]):
            _np.copyto(target._data._data, value, casting="same_kind")

    # -- building ---------------------------------------------------------------------------------
    def _build(self, key, args, kwargs) -> _Entry:
        opts = self.options
        name = self.name
        started = time.perf_counter()
        self._note_retrace(key)
        traced = trace(lambda *sym_args: self.fn(*sym_args, **kwargs), list(args),
                       static_as_constants=opts.get("static_as_constants", False))
        graph = traced.graph
        entry = _Entry()
        entry.graph = graph
        entry.num_args = traced.num_args
        entry.num_outputs = traced.num_outputs
        entry.n_updates = len(traced.state_targets)
        entry.params = traced.params
        entry.state_targets = traced.state_targets
        entry.out_tree = traced.out_tree
        entry.single = traced.out_tree == "leaf"
        entry.epoch = Parameter._epoch
        entry.free_arg_positions = [i for i, a in enumerate(args) if type(a) is ndarray]
        entry.diff = None
        entry.backward = None
        entry.bwd_free_inputs = []

        training = _STATE.training
        disable = opts.get("disable_passes") or ()
        dump = opts.get("dump_ir")
        bound = {id(n): p._data._data for n, p in zip(graph.inputs[entry.num_args:],
                                                      traced.params)}
        backend = get_backend(opts.get("backend"))
        compile_opts = {"static_alloc": opts.get("static_alloc", False)}

        wrt = self._wrt(key, args, traced) if key[2] else []
        if wrt:
            diff = differentiate(graph, wrt, traced.num_outputs)
            entry.diff = diff
            fwd_graph = run_pipeline(diff.forward, training=training, disable=disable, dump=dump,
                                     label=f"{name}.forward")
            bwd_graph = run_pipeline(diff.backward, training=True, disable=disable, dump=dump,
                                     label=f"{name}.backward")
            bwd_bound = {}
            entry.bwd_free_inputs = []
            for res_node, pos in zip(diff.backward.inputs, diff.input_residuals):
                if pos >= entry.num_args:
                    bwd_bound[id(res_node)] = traced.params[pos - entry.num_args]._data._data
                else:
                    entry.bwd_free_inputs.append(pos)
            entry.backward = backend.compile(bwd_graph, bwd_bound,
                                             dict(compile_opts, label=f"{name}.backward")).fn
        else:
            fwd_graph = run_pipeline(graph, training=training, disable=disable, dump=dump,
                                     label=f"{name}.forward")
        entry.optimized = fwd_graph
        entry.compiled = backend.compile(fwd_graph, bound,
                                         dict(compile_opts, label=f"{name}.forward"))
        entry.forward = entry.compiled.fn
        entry.verify_pending = bool(opts.get("verify") or env_flag("KILN_VERIFY"))
        entry.plain = (entry.single and entry.free_arg_positions == [0] and not entry.n_updates
                       and entry.num_outputs == 1)
        self.entries[key] = entry
        self.traces += 1
        if env_int("KILN_DEBUG") >= 1:
            print(f"--- hybridized {name} ({(time.perf_counter() - started) * 1e3:.1f} ms)"
                  f" ---\n{format_graph(fwd_graph)}")
            if env_int("KILN_DEBUG") >= 2:
                print(entry.compiled.source)
        dump_dir = os.environ.get("KILN_DUMP_DIR")
        if dump_dir:
            os.makedirs(dump_dir, exist_ok=True)
            with open(os.path.join(dump_dir, f"{name}.{entry.compiled.backend}.src"),
                      "w") as f:
                f.write(entry.compiled.source)
        return entry

    def _wrt(self, key, args, traced) -> list[int]:
        """Graph inputs that need gradients: tracked array arguments and trainable parameters."""
        wrt = []
        pos = 0
        for a in args:
            if type(a) is ndarray:
                if _tracked(a) and a._data.dtype.kind == "f":
                    wrt.append(pos)
                pos += 1
        for j, p in enumerate(traced.params):
            if p.grad_req != "null" and p.dtype.kind == "f":
                wrt.append(traced.num_args + j)
        return wrt

    def _note_retrace(self, key) -> None:
        if self.last_key is not None and len(self.entries) >= RETRACE_WARNING_LIMIT and \
                not self.warned:
            self.warned = True
            warnings.warn(
                f"HybridBlock {self.name!r} has been traced and compiled "
                f"{len(self.entries) + 1} times, once per new input signature; the last change "
                f"was {_describe_change(self.last_key, key)}. Each new signature costs a trace "
                "and a compilation: keep input shapes fixed (pad batches to one size), or call "
                "hybridize(False) for inputs that change every call.", RetraceWarning,
                stacklevel=4)
        self.last_key = key

    # -- autograd ---------------------------------------------------------------------------------
    def _call_recorded(self, entry: _Entry, args, arrays):
        diff = entry.diff
        results = entry.forward(*arrays)
        if entry.n_updates:
            self._write_state(entry, results)
        n_out = entry.num_outputs
        residuals = results[n_out + entry.n_updates:]
        outputs = [wrap(r) for r in results[:n_out]]
        inputs = tuple([args[i] for i in entry.free_arg_positions] +
                       [p._data for p in entry.params])
        saved_inputs = [args[i]._data for i in entry.bwd_free_inputs]
        backward = entry.backward
        wrt = diff.wrt
        ct_positions = diff.cotangent_outputs

        def vjp(node_inputs, _outputs, cts, **_attrs):
            grads_out = [None] * len(node_inputs)
            if _STATE.recording:  # create_graph: re-run the joint graph op by op, recorded
                grads = interpret(diff.joint, list(node_inputs) + [cts[i] for i in ct_positions])
                for pos, g in zip(wrt, grads):
                    grads_out[pos] = g
                return grads_out
            grads = backward(*saved_inputs, *residuals, *[cts[i]._data for i in ct_positions])
            for pos, g in zip(wrt, grads):
                grads_out[pos] = wrap(g)
            return grads_out

        node = TapeNode(vjp, inputs, {}, n_out, f"hybridized {self.name}")
        for i, o in enumerate(outputs):
            o._node = node
            o._oidx = i
        if entry.single:
            return outputs[0]
        return unflatten(entry.out_tree, outputs)[0]

    # -- verification -----------------------------------------------------------------------------
    def _verify(self, entry: _Entry, args, results) -> None:
        entry.verify_pending = False
        if any(n.op_def is not None and n.op_def.random for n in entry.graph.nodes):
            return  # random draws differ between two runs by design
        inputs = [args[i] for i in entry.free_arg_positions] + [p._data for p in entry.params]
        with _autograd.pause(train_mode=_STATE.training):
            reference = interpret(entry.graph, inputs)
        for k, (ref, got) in enumerate(zip(reference, results)):
            if not _close(ref._data, got):
                raise VerificationError(self._locate(entry, inputs, k, ref._data, got))

    def _locate(self, entry: _Entry, inputs, k, ref, got) -> str:
        ref_values: dict = {}
        interpret(entry.graph, inputs, lambda n, outs: ref_values.__setitem__(n.name, outs))
        first = None

        def compare(n, outs):
            nonlocal first
            if first is None and n.name in ref_values:
                for a, b in zip(ref_values[n.name], outs):
                    if a.shape == b.shape and not _close(a._data, b._data):
                        first = n
                        return
        with _autograd.pause(train_mode=_STATE.training):
            interpret(entry.optimized, inputs, compare)
        err = float(_np.max(_np.abs(ref.astype(_np.float64) - _np.asarray(got, _np.float64))))
        head = (f"hybridize(verify=True): output {k} of {self.name!r} differs from eager "
                f"execution (max abs difference {err:.3g}).")
        if first is not None:
            return (f"{head} The first diverging node is {first.name!r} ({first.op}), created at "
                    f"{first.loc or 'an unknown line'}: an optimisation pass changed its value. "
                    "Bisect with hybridize(disable_passes=[...]).")
        return (f"{head} The optimised graph agrees with eager execution, so the "
                f"{entry.compiled.backend!r} backend's generated code is at fault; its source is "
                "in the cache entry (KILN_DEBUG=2 prints it).")


def _close(a, b) -> bool:
    a = _np.asarray(a)
    b = _np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind not in "fc":
        return bool(_np.array_equal(a, b))
    tol = 1e-4 if a.dtype == _np.float32 else 1e-9
    return bool(_np.allclose(a, b, rtol=tol, atol=tol, equal_nan=True))


def _describe_change(old, new) -> str:
    (old_args, old_train, old_rec), (new_args, new_train, new_rec) = old, new
    changes = []
    for i, (a, b) in enumerate(zip(old_args, new_args)):
        if a != b:
            changes.append(f"argument {i}: {_fmt(a)} -> {_fmt(b)}")
    if len(old_args) != len(new_args):
        changes.append(f"{len(old_args)} -> {len(new_args)} arguments")
    if old_train != new_train:
        changes.append(f"training mode {old_train} -> {new_train}")
    if old_rec != new_rec:
        changes.append(f"autograd recording {old_rec} -> {new_rec}")
    return "; ".join(changes) or "the parameters were re-initialized"


def _fmt(part) -> str:
    if isinstance(part, tuple) and len(part) == 3 and isinstance(part[0], tuple):
        return f"shape {part[0]} dtype {_np.dtype(part[1]).name}"
    return repr(part)
