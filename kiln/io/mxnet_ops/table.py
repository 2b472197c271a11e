"""The table's machinery: `MxOp`, the `reader`/`writer` registrations and shared helpers."""

from __future__ import annotations

from typing import NamedTuple
from collections.abc import Callable

from ...base import KilnError, ShapeError

KILN_PREFIX = "_kiln_"
REQUIRED = object()
_F32_MAX = 3.4028234663852886e38


class MxOp(NamedTuple):
    """How to read one MXNet operator."""

    spec: dict                          # attribute -> (kind, default or REQUIRED)
    run: Callable                       # run(inputs, attrs) -> tuple of outputs
    num_outputs: Callable               # num_outputs(attrs) -> outputs MXNet counts
    # params(input shapes, attrs) -> {input index: parameter shape}; -1 where the data's shape
    # (None when unknown) would tell
    params: Callable | None = None
    aux: tuple = ()                     # indices of auxiliary-state inputs
    subgraphs: int = 0                  # control flow: run(inputs, attrs, subgraphs)


READERS: dict[str, MxOp] = {}
WRITERS: dict[str, Callable] = {}
#: MXNet op -> inputs that are auxiliary states (written with version 1, as MXNet does)
AUX_INPUTS = {"BatchNorm": (3, 4), "_npx_batch_norm": (3, 4)}


def _one(_attrs) -> int:
    return 1


def reader(names: str, spec: dict | None = None, num_outputs=_one, params=None, aux=(),
           subgraphs: int = 0):
    """Register `run` as the reader of the space-separated MXNet op `names`."""
    def deco(run):
        op = MxOp(spec or {}, run, num_outputs, params, aux, subgraphs)
        for name in names.split():
            READERS[name] = op
        return run
    return deco


def writer(kiln_names: str):
    def deco(fn):
        for name in kiln_names.split():
            WRITERS[name] = fn
        return fn
    return deco


def _npx(name: str):
    """An npx front that only some builds have (convolution and pooling are being added)."""
    from ... import numpy_extension as npx

    fn = getattr(npx, name, None)
    if fn is None:
        raise KilnError(f"this build of kiln has no npx.{name} operator, which the graph needs")
    return fn


def _shape_of(x, what: str) -> tuple:
    try:
        return tuple(x.shape)
    except ShapeError:
        raise ShapeError(f"{what} needs the shape of its input, which is not known here; give "
                         "the input variables shapes (e.g. symbol_from_json(text, shapes="
                         "{'data': (1, 3, 224, 224)})) or load the model with "
                         "SymbolBlock.imports") from None


def _in_shape(node, i: int):
    aval = node.inputs[i].aval if i < len(node.inputs) else None
    return None if aval is None else tuple(aval.shape)


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n

def _input(ins, i, what):
    if i >= len(ins) or ins[i] is None:
        raise KilnError(f"the node has no {what} input (input {i})")
    return ins[i]
