"""What `hybridize()` does at call time: trace, optimise, compile, cache, run, and differentiate.

Each hybridized block keeps a `HybridCache`: one compiled `_Entry` per input signature (shapes,
dtypes, static arguments, train/predict mode, whether autograd records and which inputs need
gradients). A new signature is traced and compiled again; many re-traces warn, saying what
changed. Under `autograd.record()` the whole compiled call is one tape node, whose gradient is a
compiled backward graph derived from the registry's rules.
"""

from __future__ import annotations

import os
import sys
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


def check_not_mixed(name: str, inputs) -> None:
    """Arrays and symbols do not mix as inputs (MXNet's rule): symbols build a graph, arrays
    compute, and an array among symbols would silently become a constant of the graph."""
    if any(isinstance(a, ndarray) for a in inputs) and any(
            getattr(a, "_kiln_symbolic", False) for a in inputs):
        raise KilnError(
            f"{name}: inputs mix arrays and symbols "
            f"({', '.join(type(a).__name__ for a in inputs)}); pass all arrays (to compute) "
            "or all symbols (to build a graph)")


#: KILN_IGNORE_HYBRIDIZE=1 runs every hybridized block eagerly (a debugging switch); read once,
#: since call_cached is on the hot path. Tests may flip IGNORE_HYBRIDIZE[0].
IGNORE_HYBRIDIZE = [env_flag("KILN_IGNORE_HYBRIDIZE")]


class _Entry:
    """One compiled signature."""

    __slots__ = ("compiled", "forward", "backward", "diff", "num_args", "num_outputs", "params",
                 "state_targets", "out_tree", "epoch", "free_arg_positions", "bwd_free_inputs",
                 "graph", "optimized", "verify_pending", "n_updates", "single", "plain",
                 "param_arrays", "bwd_outputs_fresh")


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
        self.nested: dict = {}   # list structure of the arguments -> its own cache
        self.last_nested = None
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
            elif _is_static(a):
                # the type is part of the key: 1, 1.0 and True are equal but trace differently
                parts.append(("static", type(a).__name__, a))
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
            if not _is_static(v):
                raise KilnError(f"{self.name}: keyword argument {k!r} of a hybridized block "
                                "must be a Python scalar, string, None or a tuple of them (it "
                                f"is part of the cache key), not {type(v).__name__}")
            parts.append(("keyword", k, type(v).__name__, v))
        return (tuple(parts), _STATE.training, recording)

    def __call__(self, args, kwargs):
        a = args[0] if len(args) == 1 and not kwargs else None
        if type(a) is ndarray:  # the common case, keyed without a loop
            d = a._data
            rec = _STATE.recording
            fast = self._fast
            if fast is not None and not rec and fast[1] is d.dtype and fast[0] == d.shape and \
                    fast[2] is _STATE.training and fast[3].epoch == Parameter._epoch:
                return wrap(fast[3].forward(d)[0])
            key = (((d.shape, d.dtype.char, rec and (a._node is not None or
                                                     a._grad_req is not None)),),
                   _STATE.training, rec)
            entry = self.entries.get(key)
            if entry is not None and entry.plain and entry.epoch == Parameter._epoch:
                if not rec:
                    self._fast = (d.shape, d.dtype, _STATE.training, entry)
                return wrap(entry.forward(d)[0])  # one array in, one out, nothing else to do
        else:
            if any(type(x) in (list, tuple) and _holds_array(x) for x in args):
                return self._call_nested(args, kwargs)
            key = self._key(args, kwargs)
            entry = self.entries.get(key)
        if entry is None or (entry.epoch != Parameter._epoch and not _params_unchanged(entry)):
            entry = self._build(key, args, kwargs)
        arrays = [args[i]._data for i in entry.free_arg_positions]
        if entry.backward is not None and _STATE.recording:
            return self._call_recorded(entry, args, arrays)
        results = entry.forward(*arrays)
        if entry.verify_pending:  # before the state write-back: eager reads the old state too
            self._verify(entry, args, results)
        if entry.n_updates:
            self._write_state(entry, results)
        if entry.single:
            return wrap(results[0])
        return unflatten(entry.out_tree, [wrap(r) for r in results[:entry.num_outputs]])[0]

    def _call_nested(self, args, kwargs):
        """Arguments that are lists of arrays (a recurrent cell's states): the arrays become
        arguments of their own, and a cache per list structure rebuilds the lists for `fn`."""
        from ..control_flow import flatten, unflatten

        leaves, tree = flatten(list(args))
        key = (_structure(tree), len(leaves))
        inner = self.nested.get(key)
        if inner is None:
            fn = self.fn
            inner = HybridCache(lambda *xs, **kw: fn(*unflatten(tree, xs), **kw), self.name,
                                self.options)
            self.nested[key] = inner
        self.last_nested = (tree, inner)   # what export() traces again
        return inner(tuple(leaves), kwargs)

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
        entry.param_arrays = [(p._data._data, p.grad_req) for p in traced.params]
        entry.free_arg_positions = [i for i, a in enumerate(args) if type(a) is ndarray]
        entry.diff = None
        entry.backward = None
        entry.bwd_outputs_fresh = False
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
                else:  # graph input `pos` is argument free_arg_positions[pos]
                    entry.bwd_free_inputs.append(entry.free_arg_positions[pos])
            bwd = backend.compile(bwd_graph, bwd_bound, dict(compile_opts,
                                                             label=f"{name}.backward"))
            entry.backward = bwd.fn
            # The native runner allocates every output afresh; the numpy backend's outputs may
            # be an implementation's return value, checked per call (see vjp).
            entry.bwd_outputs_fresh = bwd.backend == "native"
        else:
            fwd_graph = run_pipeline(graph, training=training, disable=disable, dump=dump,
                                     label=f"{name}.forward")
        entry.optimized = fwd_graph
        entry.compiled = backend.compile(fwd_graph, bound,
                                         dict(compile_opts, label=f"{name}.forward"))
        entry.forward = entry.compiled.fn
        entry.verify_pending = bool(opts.get("verify") or env_flag("KILN_VERIFY"))
        _update_plain(entry)
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
                stacklevel=_user_stacklevel())
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
        fresh = entry.bwd_outputs_fresh

        def vjp(node_inputs, _outputs, cts, **_attrs):
            grads_out = [None] * len(node_inputs)
            if _STATE.recording:  # create_graph: re-run the joint graph op by op, recorded
                grads = interpret(diff.joint, list(node_inputs) + [cts[i] for i in ct_positions])
                for pos, g in zip(wrt, grads):
                    grads_out[pos] = g
                return grads_out
            ct_arrays = [cts[i]._data for i in ct_positions]
            grads = backward(*saved_inputs, *residuals, *ct_arrays)
            # Fresh buffers (not an input, residual or parameter handed back, nor one returned
            # twice) may become the variables' gradients without a copy (_accumulate_grad).
            if fresh:
                for pos, g in zip(wrt, grads):
                    w = grads_out[pos] = wrap(g)
                    w._handover = True
                return grads_out
            taken = {id(a) for a in saved_inputs}
            taken.update(id(a) for a in residuals)
            taken.update(id(a) for a in ct_arrays)
            taken.update(id(p._data._data) for p in entry.params)
            for pos, g in zip(wrt, grads):
                w = grads_out[pos] = wrap(g)
                if g.base is None and id(g) not in taken:
                    w._handover = True
                    taken.add(id(g))
            return grads_out

        # The outputs are handed over so that autograd can make zero cotangents for those the
        # loss does not use (it cannot infer the shapes of a whole compiled graph).
        node = TapeNode(vjp, inputs, {}, n_out, f"hybridized {self.name}", outputs)
        for i, o in enumerate(outputs):
            o._node = node
            o._oidx = i
        if entry.single:
            return outputs[0]
        return unflatten(entry.out_tree, outputs)[0]

    # -- verification -----------------------------------------------------------------------------
    def _verify(self, entry: _Entry, args, results) -> None:
        entry.verify_pending = False
        _update_plain(entry)
        if _draws_random(entry.graph):
            return  # random draws differ between two runs by design
        inputs = [args[i] for i in entry.free_arg_positions] + [p._data for p in entry.params]
        with _autograd.pause(train_mode=_STATE.training):
            reference = interpret(entry.graph, inputs)
        for k, (ref, got) in enumerate(zip(reference, results)):
            if not _close(ref._data, got):
                raise VerificationError(self._locate(entry, inputs, k, ref._data, got))

    def _locate(self, entry: _Entry, inputs, k, ref, got) -> str:
        """The message for a diverging output: the first node of the optimised graph whose value
        differs from the traced node of the same name (passes keep the names of the nodes they
        replace), with the traced node's operator and source line."""
        reference: dict = {}  # node name -> (traced node, its outputs)
        first = None

        def keep(n, outs):
            if n.name is not None:
                reference[n.name] = (n, outs)

        def compare(n, outs):
            nonlocal first
            if first is None and n.name in reference:
                for a, b in zip(reference[n.name][1], outs):
                    if a.shape == b.shape and not _close(a._data, b._data):
                        first = n
                        return
        with _autograd.pause(train_mode=_STATE.training):
            interpret(entry.graph, inputs, keep)
            interpret(entry.optimized, inputs, compare)
        err = float(_np.max(_np.abs(ref.astype(_np.float64) - _np.asarray(got, _np.float64))))
        head = (f"hybridize(verify=True): output {k} of {self.name!r} differs from eager "
                f"execution (max abs difference {err:.3g}).")
        if first is not None:
            traced = reference[first.name][0]
            became = "" if first.op == traced.op else f", optimised into {first.op}"
            return (f"{head} The first diverging node is {first.name!r} ({traced.op}{became}), "
                    f"created at {traced.loc or 'an unknown line'}: an optimisation pass changed "
                    "its value. Bisect with hybridize(disable_passes=[...]).")
        return (f"{head} The optimised graph agrees with eager execution, so the "
                f"{entry.compiled.backend!r} backend's generated code is at fault; its source is "
                "in the cache entry (KILN_DEBUG=2 prints it).")


def _draws_random(graph) -> bool:
    """Whether the graph (or a loop or branch body in it) samples random numbers."""
    return any((n.op_def is not None and n.op_def.random) or any(_draws_random(g) for g in
                                                                  n.subgraphs)
               for n in graph.nodes)


def _params_unchanged(entry: _Entry) -> bool:
    """After some parameter somewhere got a new array or grad_req (the global epoch moved),
    whether this entry's own parameters are as it was compiled for (then it stays valid: a
    network initialized elsewhere must not retrace this one)."""
    if any(p._data is None or p._data._data is not arr or p.grad_req != req
           for p, (arr, req) in zip(entry.params, entry.param_arrays)):
        return False
    entry.epoch = Parameter._epoch
    return True


def _update_plain(entry: _Entry) -> None:
    """Whether a call is only `forward(array)[0]`: one result, no state to write back, no
    backward graph, nothing to verify (the fast path of `HybridCache.__call__`)."""
    entry.plain = (entry.single and not entry.n_updates and entry.backward is None and
                   not entry.verify_pending and entry.free_arg_positions == [0])


def _user_stacklevel() -> int:
    """The `stacklevel` that attributes a warning to the user's line: the first caller outside
    kiln (a block's call and a jit function's call are nested differently)."""
    from ..symbol.symbol import _KILN_DIR

    level, frame = 2, sys._getframe(2)  # 1 is the warn() caller, this function's caller
    while frame is not None and frame.f_code.co_filename.startswith(_KILN_DIR):
        frame = frame.f_back
        level += 1
    return level


def _close(a, b) -> bool:
    a = _np.asarray(a)
    b = _np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind not in "fc":
        return bool(_np.array_equal(a, b))
    tol = 1e-4 if a.dtype == _np.float32 else 1e-9
    return bool(_np.allclose(a, b, rtol=tol, atol=tol, equal_nan=True))


def _holds_array(x) -> bool:
    if type(x) in (list, tuple):
        return any(_holds_array(e) for e in x)
    return isinstance(x, ndarray)


def _structure(tree):
    """A hashable form of a list structure (`control_flow.flatten`'s tree)."""
    if tree is None:
        return None
    kind, items = tree
    return (kind.__name__, tuple(_structure(t) for t in items))


def _is_static(a) -> bool:
    """A Python value the trace specializes on (it must be hashable: it is in the cache key)."""
    if a is None or isinstance(a, (bool, int, float, str)):
        return True
    return isinstance(a, tuple) and all(_is_static(x) for x in a)


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
        shape, char, needs_grad = part
        return f"shape {shape} dtype {_np.dtype(char).name}" + (
            " (needs a gradient)" if needs_grad else "")
    if isinstance(part, tuple) and len(part) == 3 and part[0] == "static":
        return f"Python value {part[2]!r}"
    if isinstance(part, tuple) and len(part) == 4 and part[0] == "keyword":
        return f"{part[1]}={part[3]!r}"
    return repr(part)
