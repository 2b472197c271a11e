"""Graphs compiled before: a warm start without generating the C again.

The library cache (cache.py) is keyed by the C source, so finding a compiled graph there means
generating its C first: on ResNet-18 that is most of a warm start (about 25 ms of code
generation, plus importing the lowering modules, which is 45-60 ms more when Python may not
write bytecode caches). This module keys what the generator produced by the *graph* instead:

    signature(graph, bound)   a SHA-256 of everything the generated C depends on: every node's
                              operator, attributes, input wiring and output shapes and dtypes,
                              the values of scalar constants, which inputs are parameters (their
                              shapes, dtypes, and which share one array), the runtime's key
                              (compiler, flags, CPU, kernel sources) and a stamp of the code
                              generator's own sources (names, sizes, modification times)
    remember(sig, ...)        after a compile: which library it is, and what the Runner needs
                              (input and output specs, arena size, where each parameter array
                              comes from), in <cache>/native-1/programs/<sig>.json
    recall(sig)               that record, or None

Not covered (the compile generates the C as before): graphs with control-flow bodies, with
nodes that run in Python (callbacks), attributes whose repr is not a value (it would name an
object's address), compiles with KILN_PROFILE or KILN_DUMP_DIR. The user's source lines and
value names are not part of the signature: they only appear in the C's comments, so a graph
traced from other lines reuses the library (as the source key already allowed), and its
`Compiled.source` is the C of the first trace (read from the cache).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import numpy as _np

from ...graph.ir import CONST, VAR
from .cache import LAYOUT_VERSION, cache_root

__all__ = ["signature", "remember", "recall"]

_STAMP: list[str] = []


def _code_stamp() -> str:
    """Names, sizes and modification times of the sources the generated C depends on (the
    code generator and lowerings, the IR and literals, the operators' attribute helpers):
    an edited file changes the stamp."""
    if not _STAMP:
        here = Path(__file__).resolve().parent
        kiln = here.parents[1]
        parts = []
        for folder in (here, kiln / "graph", kiln / "ops"):
            for name in sorted(os.listdir(folder)):
                if name.endswith(".py"):
                    st = os.stat(folder / name)
                    parts.append(f"{folder.name}/{name}:{st.st_size}:{st.st_mtime_ns}")
        _STAMP.append(hashlib.sha256("\n".join(parts).encode()).hexdigest())
    return _STAMP[0]


def _aval_text(aval) -> str:
    if aval is None:
        return "?"
    return f"{_np.dtype(aval.dtype).str}{tuple(aval.shape)}"


def signature(graph, bound: dict, runtime_key: str) -> str | None:
    """The key of what `generate(graph, bound)` produces, or None for graphs not covered."""
    from .ctypes_map import supported_dtype

    index = {id(n): i for i, n in enumerate(graph.nodes)}
    arrays: dict[int, int] = {}          # id(array) -> group: inputs sharing one array
    lines = [runtime_key, _code_stamp(),
             "inputs " + " ".join(str(index.get(id(n), -1)) for n in graph.inputs)]
    for i, n in enumerate(graph.nodes):
        if n.subgraphs:
            return None
        avals = ",".join(_aval_text(a) for a in n.avals)
        if n.op == VAR:
            if id(n) in bound:
                arr = bound[id(n)]
                if not arr.flags.c_contiguous:
                    return None
                group = arrays.setdefault(id(arr), len(arrays))
                lines.append(f"{i} param {group} {arr.dtype.str}{arr.shape} {avals}")
            else:
                lines.append(f"{i} input {avals}")
            continue
        if n.op == CONST:
            value = _np.asarray(n.value)
            if value.ndim == 0:
                if not supported_dtype(value.dtype):
                    return None
                lines.append(f"{i} const {value.dtype.str} {value.item()!r}")
            else:
                if not value.flags.c_contiguous:
                    return None
                group = arrays.setdefault(id(value), len(arrays))
                lines.append(f"{i} const-array {group} {value.dtype.str}{value.shape}")
            continue
        attrs = repr(sorted(n.attrs.items()))
        if " at 0x" in attrs:            # an object's repr: not a value
            return None
        wiring = " ".join(f"{index.get(id(v.node), -1)}.{v.index}" for v in n.inputs)
        lines.append(f"{i} {n.op} ({wiring}) {attrs} {avals}")
    lines.append("outputs " + " ".join(f"{index.get(id(v.node), -1)}.{v.index}"
                                       for v in graph.outputs))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _path(sig: str) -> Path:
    return cache_root() / LAYOUT_VERSION / "programs" / f"{sig}.json"


def remember(sig: str, library_key: str, program) -> None:
    """Record a compiled program under its graph signature (best effort: a cache that cannot
    be written costs the next process a code generation, nothing else)."""
    if program.callbacks or any(o is None for o in program.param_origins):
        return
    record = {
        "library_key": library_key,
        "input_specs": [[num, list(shape)] for num, shape in program.input_specs],
        "output_specs": [[num, list(shape)] for num, shape in program.output_specs],
        "param_origins": [list(o) for o in program.param_origins],
        "arena_bytes": program.arena_bytes,
        "lowered": program.lowered,
        "fallback": program.fallback,
        "inplace": program.inplace,
    }
    record["check"] = _checksum(record)
    path = _path(sig)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{sig[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)      # atomic: a reader sees the old record or the new one
    except OSError:
        pass


def recall(sig: str) -> dict | None:
    """The record of `sig`, or None (missing or unreadable)."""
    try:
        record = json.loads(_path(sig).read_text())
    except (OSError, ValueError):
        return None
    need = ("library_key", "input_specs", "output_specs", "param_origins", "arena_bytes", "check")
    if not (isinstance(record, dict) and all(k in record for k in need)):
        return None
    # the arena size and the specs decide what the compiled code may write: a record damaged
    # on disk must not be trusted (it costs a code generation, not a crash)
    check = record.pop("check")
    return record if check == _checksum(record) else None


def _checksum(record: dict) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def params_of(record: dict, graph, bound: dict) -> list | None:
    """The param arrays in PRM order, rebuilt from their origins (None if one cannot be)."""
    params = []
    try:
        for origin in record["param_origins"]:
            kind = origin[0]
            if kind == "input":
                params.append(bound[id(graph.inputs[origin[1]])])
            elif kind == "const":
                params.append(_np.ascontiguousarray(graph.nodes[origin[1]].value))
            elif kind == "fill":
                params.append(_np.full(tuple(origin[2]), origin[1], _np.dtype(origin[3])))
            else:
                return None
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return params
