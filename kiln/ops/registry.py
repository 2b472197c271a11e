"""The operator registry.

Every operator of kiln is one subclass of `Op`, defined once, with everything the rest of kiln needs
to know about it:

- ``impl(*arrays, **attrs)``: the eager implementation on NumPy arrays. It is also the living
  specification every compiled backend is tested against.
- ``infer(*avals, **attrs)``: output shapes and dtypes from input shapes and dtypes (`Aval`),
  used while tracing, by the verifier and by ``Symbol.infer_shape``.
- ``grad(inputs, outputs, cotangents, **attrs)``: the vector-Jacobian product, written with
  kiln's own operators so it runs eagerly, records for second-order gradients, and builds
  backward graphs when given symbols. Operators without a gradient say ``differentiable = False``.

Control-flow operators (``foreach``, ``while_loop``, ``cond``: ``has_subgraphs = True``) hold
their bodies as graphs on the node (``Node.subgraphs``), never in the attributes; each of their
functions takes the bodies first: ``impl(bodies, *arrays)`` gets callables a backend built from
the graphs (see `kiln.ops.control_flow.Body`), ``infer(graphs, *avals)`` and
``grad(graphs, inputs, outputs, cotangents)`` the graphs themselves. `infer_avals` hides the
difference from code that infers types for every operator alike.

Defining the class registers it: ``REGISTRY["relu"]`` is the class. Methods are written without
``self`` (they become static methods), because an operator is a record of functions, not an object
with state.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, NamedTuple
from collections.abc import Callable

import numpy as _np

__all__ = ["Op", "Aval", "REGISTRY", "get_op", "infer_avals"]

REGISTRY: dict[str, type[Op]] = {}


class Aval(NamedTuple):
    """An abstract value: what is known of an array without its contents."""

    shape: tuple
    dtype: _np.dtype

    def __str__(self) -> str:
        return format_aval(self)


_SHORT_DTYPES = {
    "float32": "f32", "float64": "f64", "float16": "f16", "int8": "i8", "int16": "i16",
    "int32": "i32", "int64": "i64", "uint8": "u8", "uint16": "u16", "uint32": "u32",
    "uint64": "u64", "bool": "bool",
}
_LONG_DTYPES = {v: k for k, v in _SHORT_DTYPES.items()}


def format_aval(aval: Aval) -> str:
    """`f32[1,256]`, the form avals take in the printed IR."""
    dims = ",".join("?" if d is None else str(d) for d in aval.shape)
    name = _SHORT_DTYPES.get(_np.dtype(aval.dtype).name, _np.dtype(aval.dtype).name)
    return f"{name}[{dims}]"


def parse_aval(text: str) -> Aval:
    """Inverse of `format_aval`."""
    name, _, rest = text.strip().partition("[")
    dims = rest.rstrip("]")
    shape = tuple(None if d == "?" else int(d) for d in dims.split(",") if d)
    return Aval(shape, _np.dtype(_LONG_DTYPES.get(name, name)))


_OP_FUNCTIONS = ("impl", "infer", "grad", "num_outputs_for", "linearize")


class Op:
    """Base class of operators; see the module docstring."""

    name: ClassVar[str] = ""
    #: the operator's name in MXNet 1.x symbol files, when MXNet has it
    mx_name: ClassVar[str | None] = None
    #: attribute names and their defaults, in the order the IR prints them
    attrs: ClassVar[dict[str, Any]] = {}
    #: input names, for errors and for MXNet-style argument naming
    inputs: ClassVar[tuple[str, ...]] = ("data",)
    num_outputs: ClassVar[int] = 1
    differentiable: ClassVar[bool] = True
    #: the gradient rule reads the outputs (exp, tanh, softmax ...), so the tape keeps them
    save_outputs: ClassVar[bool] = False
    #: draws random numbers: never folded, never merged with an equal-looking node
    random: ClassVar[bool] = False
    #: a control-flow operator: its nodes carry body graphs, passed first to impl/infer/grad
    has_subgraphs: ClassVar[bool] = False
    #: impl takes `out=` (one array or None per output) and may return those arrays, filled,
    #: instead of new ones: a compiled graph then lends it its own buffers (no copy, no fresh
    #: pages per call); impl must leave an `out` array alone when it may overlap an input
    impl_fills_out: ClassVar[bool] = False

    impl: ClassVar[Callable]
    infer: ClassVar[Callable]
    grad: ClassVar[Callable | None] = None
    num_outputs_for: ClassVar[Callable | None] = None
    #: control flow only: linearize(graphs, inputs, attrs) -> (outputs, backward), used by graph
    #: autodiff so that a loop's forward keeps what its backward needs (see autodiff.py)
    linearize: ClassVar[Callable | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for fn_name in _OP_FUNCTIONS:
            fn = cls.__dict__.get(fn_name)
            if inspect.isfunction(fn):
                setattr(cls, fn_name, staticmethod(fn))
        name = cls.__dict__.get("name")
        if name:
            if name in REGISTRY:
                raise RuntimeError(f"operator {name!r} is defined twice")
            REGISTRY[name] = cls

    @classmethod
    def n_outputs(cls, attrs: dict) -> int:
        """How many outputs a node of this operator has with these attributes."""
        if cls.num_outputs_for is not None:
            return cls.num_outputs_for(**attrs)
        return cls.num_outputs

    @classmethod
    def full_attrs(cls, attrs: dict) -> dict:
        """`attrs` completed with the defaults, in declaration order."""
        unknown = set(attrs) - set(cls.attrs)
        if unknown:
            from ..base import KilnError

            raise KilnError(f"{cls.name}: unknown attribute(s) {sorted(unknown)}; "
                            f"it takes {list(cls.attrs)}")
        return {k: attrs.get(k, v) for k, v in cls.attrs.items()}


def get_op(name: str) -> type[Op]:
    try:
        return REGISTRY[name]
    except KeyError:
        from ..base import KilnError

        raise KilnError(f"unknown operator {name!r}") from None


def infer_avals(op: type[Op], avals, attrs: dict, subgraphs: tuple = ()) -> tuple[Aval, ...]:
    """The output avals of `op` applied to `avals` (a tuple, even for one output)."""
    out = op.infer(subgraphs, *avals, **attrs) if op.has_subgraphs else op.infer(*avals, **attrs)
    return (out,) if isinstance(out, Aval) else tuple(out)
