"""The "native" backend: a graph becomes C, compiled by the system compiler, run in one call.

    net.hybridize(backend="native")     # or "auto" (the default): native when a compiler exists

Pipeline (each step in its own module):

    codegen.py, lowering.py, elementwise.py, conv.py   the optimised graph -> C source
    toolchain.py   the system C compiler and its flags
    cache.py       compiled libraries on disk, keyed by source, compiler, flags and CPU
    runtime.py     the kernel library (runtime/kernels) and the CPython binding (_binding.c)

A compiled graph is called through `_kiln_native.Runner`, a C object called with the input
arrays (vectorcall: no argument tuple, no ctypes) that returns new output arrays; intermediate
values live in one arena allocated once per compiled graph. Parameters are read in place (the
optimizers update them in place).

Fallbacks, by design:
  - no C compiler, or the compiler fails: the numpy backend compiles the graph instead, with
    one warning (per distinct reason and process) that carries the compiler's message;
  - an operator without a C lowering: that node alone runs its NumPy implementation, called
    back from C (`Compiled.info['python_nodes']` lists them); everything else stays native.

Inspecting: `Compiled.source` is the generated C (each node's code under a comment with the IR
line and the user's source line); KILN_DUMP_DIR=path writes every generated file there, and
the cache keeps `source.c` beside each library.
"""

from __future__ import annotations

import ctypes
import os
import re
import time
import warnings
from pathlib import Path

import numpy as _np

from .. import Compiled, register_backend
from ...graph.ir import Graph
from . import known
from .cache import digest, lookup_or_build, lookup_verified
from .codegen import LoweringError, NativeProgram, generate
from .toolchain import CompileError, compiler_available, compiler_missing_reason

__all__ = ["NativeBackend", "NativeBackendWarning", "native_available", "CompileError",
           "profile_report"]


class NativeBackendWarning(UserWarning):
    """The native backend could not compile a graph; the numpy backend runs it instead."""


_WARNED: set[str] = set()
_LOCATION = re.compile(r"   # [^\n]*? \*/$", re.MULTILINE)


def native_available() -> bool:
    """Whether the native backend can work here: a C compiler and the kernel sources exist.
    (Nothing is compiled; a compile error later still falls back to NumPy with a warning.)"""
    from .runtime import kernels_source_dir

    return compiler_available() and kernels_source_dir() is not None


def _warn_fallback(reason: str) -> None:
    key = reason[:300]
    if key in _WARNED:
        return
    _WARNED.add(key)
    warnings.warn(f"kiln's native backend could not compile this graph, so it runs on the "
                  f"numpy backend instead: {reason}", NativeBackendWarning, stacklevel=4)


class NativeBackend:
    name = "native"

    def compile(self, graph: Graph, bound: dict, options: dict) -> Compiled:
        try:
            return compile_native(graph, bound, options)
        except CompileError as e:
            reason = e.message
        except LoweringError as e:
            reason = f"cannot lower the graph to C: {e}"
        if not compiler_available():
            reason = compiler_missing_reason()
        _warn_fallback(reason)
        from ..numpy_backend import NumpyBackend

        compiled = NumpyBackend().compile(graph, bound, options)
        compiled.info["fallback_reason"] = reason
        return compiled


def compile_native(graph: Graph, bound: dict, options: dict) -> Compiled:
    """Compile `graph` to a native Runner (raises CompileError / LoweringError)."""
    from .runtime import load_library, load_runtime

    if not compiler_available():
        raise CompileError(compiler_missing_reason())
    started = time.perf_counter()
    rt = load_runtime()
    label = str(options.get("label") or "graph")
    profile = options.get("profile") or os.environ.get("KILN_PROFILE", "")
    profile = False if profile in ("", "0") else profile
    # A graph compiled before (by any process) skips code generation: known.py
    shortcut = None
    if not profile and not os.environ.get("KILN_DUMP_DIR"):
        shortcut = known.signature(graph, bound, rt.key)
        if shortcut is not None:
            compiled = _load_known(shortcut, graph, bound, rt, started)
            if compiled is not None:
                return compiled
    program = generate(graph, bound, label, profile)
    # The key ignores the user's source lines in comments (the binary does not depend on them),
    # so the same graph traced from another line of code still hits the cache.
    key = digest("graph", rt.key, _LOCATION.sub(" */", program.source))
    tc = rt.toolchain

    def build(d) -> None:
        tc.build_shared(str(d / "source.c"), str(d / "lib.so"), include_dirs=[str(rt.kernels_src)],
                        libs=(str(rt.kernels_lib), f"-Wl,-rpath,{rt.kernels_lib.parent}"))

    entry = lookup_or_build("graphs", key, build, source=program.source)
    try:
        lib = load_library(entry.library)
    except CompileError:
        # verified but unloadable (e.g. the kernel library moved): rebuild once
        from .cache import _discard

        _discard(entry.directory)
        entry = lookup_or_build("graphs", key, build, source=program.source)
        lib = load_library(entry.library)
    address = ctypes.cast(lib.kiln_graph_run, ctypes.c_void_p).value
    arena = _aligned_bytes(program.arena_bytes)
    callback = make_callback(program, arena) if program.callbacks else None
    runner = rt.binding.Runner(address, program.input_specs, program.output_specs,
                               tuple(program.params), arena, callback)
    _dump(label, key, program.source)
    info = {
        "backend": "native",
        "binding": "CPython extension type with vectorcall (_kiln_native.Runner)",
        "cache": "hit" if entry.hit else "miss",
        "key": key,
        "library": str(entry.library),
        "compile_seconds": entry.build_seconds,
        "seconds": time.perf_counter() - started,
        "arena_bytes": program.arena_bytes,
        "lowered": dict(program.lowered),
        "python_nodes": dict(program.fallback),
        "in_place": program.inplace,
        "blas": rt.blas,
        "threads": rt.binding.get_num_threads(),
        "generated": True,
    }
    if program.profile_labels:
        info["profile_labels"] = program.profile_labels
        _PROFILED[id(runner)] = (runner, info)
    if shortcut is not None:
        known.remember(shortcut, key, program)
    return Compiled(runner, "native", program.source, program.free_inputs, info)


def _load_known(shortcut: str, graph: Graph, bound: dict, rt, started: float):
    """The Compiled of a graph whose library and runtime description are on disk (see
    known.py), or None (not recorded, or its library is missing or damaged: the caller
    generates the C and rebuilds as for a new graph)."""
    from .runtime import load_library

    record = known.recall(shortcut)
    if record is None:
        return None
    entry = lookup_verified("graphs", record["library_key"])
    params = known.params_of(record, graph, bound) if entry is not None else None
    if params is None:
        return None
    try:
        lib = load_library(entry.library)
        source = entry.source.read_text()
    except (CompileError, OSError):
        return None
    address = ctypes.cast(lib.kiln_graph_run, ctypes.c_void_p).value
    arena = _aligned_bytes(record["arena_bytes"])
    input_specs = [(num, tuple(shape)) for num, shape in record["input_specs"]]
    output_specs = [(num, tuple(shape)) for num, shape in record["output_specs"]]
    runner = rt.binding.Runner(address, input_specs, output_specs, tuple(params), arena, None)
    info = {
        "backend": "native",
        "binding": "CPython extension type with vectorcall (_kiln_native.Runner)",
        "cache": "hit",
        "key": record["library_key"],
        "library": str(entry.library),
        "compile_seconds": 0.0,
        "seconds": time.perf_counter() - started,
        "arena_bytes": record["arena_bytes"],
        "lowered": dict(record.get("lowered", {})),
        "python_nodes": dict(record.get("fallback", {})),
        "in_place": record.get("inplace", 0),
        "blas": rt.blas,
        "threads": rt.binding.get_num_threads(),
        "generated": False,           # the C was not generated again (known.py)
    }
    free_inputs = [n for n in graph.inputs if id(n) not in bound]
    return Compiled(runner, "native", source, free_inputs, info)


_PROFILED: dict[int, tuple] = {}    # id(runner) -> (runner, info) of profiled graphs


def profile_report(compiled) -> list[tuple[str, float]]:
    """(node, seconds per call) for a graph compiled with KILN_PROFILE=1 (or the compile
    option profile=True), slowest first. `compiled` is a Compiled or its runner (a hybridized
    entry's `forward` or `backward`).

        >>> for node, t in profile_report(entry.compiled)[:10]:
        ...     print(f"{t * 1e6:9.1f} us  {node}")
    """
    from .runtime import load_library

    if not isinstance(compiled, Compiled):
        compiled = Compiled(compiled, "native", info=_PROFILED.get(id(compiled), (None, {}))[1])
    labels = compiled.info.get("profile_labels")
    if not labels:
        raise ValueError("this graph was not compiled with profiling (set KILN_PROFILE=1)")
    lib = load_library(Path(compiled.info["library"]))
    times = ctypes.POINTER(ctypes.c_double)()
    calls = ctypes.c_long()
    n = lib.kiln_graph_profile(ctypes.byref(times), ctypes.byref(calls))
    per_call = max(calls.value, 1)
    rows = [(labels[i], times[i] / per_call) for i in range(n)]
    return sorted(rows, key=lambda r: -r[1])


def _aligned_bytes(nbytes: int) -> _np.ndarray:
    """A uint8 array of `nbytes` whose data is 64-byte aligned."""
    raw = _np.empty(nbytes + 64, _np.uint8)
    skip = (-raw.ctypes.data) % 64
    return raw[skip:skip + nbytes]


def _dump(label: str, key: str, source: str) -> None:
    folder = os.environ.get("KILN_DUMP_DIR")
    if not folder:
        return
    os.makedirs(folder, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in label)
    with open(os.path.join(folder, f"{safe}.{key[:12]}.c"), "w") as f:
        f.write(source)


# ----------------------------------------------------------------------------------------------
# nodes run in Python
# ----------------------------------------------------------------------------------------------

def make_callback(program: NativeProgram, arena: _np.ndarray):
    """The Python function the generated C calls for nodes without a C lowering:
    callback(node_index, inputs, outputs) runs the node's NumPy implementation on views of the
    same memory."""
    handlers = {spec.node_index: _handler(spec, arena, program.params)
                for spec in program.callbacks}

    def callback(k, inputs, outputs):
        handlers[k](inputs, outputs)

    return callback


def _handler(spec, arena, params):
    from ...ops.registry import REGISTRY

    impl = spec.impl
    ins = [_getter(v, arena, params) for v in spec.inputs]
    outs = [_getter(v, arena, params) for v in spec.outputs]
    lends = getattr(REGISTRY.get(spec.op), "impl_fills_out", False)

    def run(inputs, outputs):
        args = [g(inputs, outputs) for g in ins]
        dests = [g(inputs, outputs) for g in outs]
        with _np.errstate(all="ignore"):
            result = impl(*args, out=dests) if lends else impl(*args)
        results = result if isinstance(result, tuple) else (result,)
        for d, r in zip(dests, results, strict=True):
            if r is not d:    # a result the implementation did not write in place
                _np.copyto(d, r, casting="unsafe")

    return run


def _getter(view, arena, params):
    """A function (inputs, outputs) -> the NumPy array `view` denotes."""
    from numpy.lib.stride_tricks import as_strided

    dtype = view.dtype
    if view.is_literal:
        value = _np.broadcast_to(_np.asarray(view.literal, dtype), view.shape)
        return lambda inputs, outputs: value
    s = view.storage
    item = dtype.itemsize
    strides = tuple(st * item for st in view.strides)

    def shaped(flat):
        return as_strided(flat[view.offset:], view.shape, strides)

    if s.kind == "arena":
        fixed = shaped(arena[s.offset:s.offset + s.nbytes].view(dtype))
        return lambda inputs, outputs: fixed
    if s.kind == "param":
        fixed = shaped(params[s.index].reshape(-1).view(_np.uint8).view(dtype))
        return lambda inputs, outputs: fixed
    if s.kind == "input":
        return lambda inputs, outputs: shaped(inputs[s.index].reshape(-1).view(_np.uint8)
                                              .view(dtype))
    return lambda inputs, outputs: shaped(outputs[s.index].reshape(-1).view(_np.uint8)
                                          .view(dtype))


register_backend("native", NativeBackend)
