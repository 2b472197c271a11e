"""Evaluating symbols on concrete arrays: `Symbol.eval` and MXNet 1.x's `bind`/`Executor`."""

from __future__ import annotations

import numpy as _np

from .. import autograd
from ..base import KilnError
from ..graph.interpret import interpret
from ..ndarray import ndarray, wrap


def _as_array(name: str, value) -> ndarray:
    if isinstance(value, ndarray):
        return value
    if getattr(value, "_kiln_symbolic", False):
        raise KilnError(f"the value given for {name!r} is a symbol, not an array")
    return wrap(_np.asarray(value))


def evaluate(sym, arrays: dict) -> list:
    """The symbol's outputs, computed from arrays given by variable name."""
    graph = sym.graph()
    missing = [n.name for n in graph.inputs if n.name not in arrays]
    if missing:
        raise KilnError(f"eval: no value for variable(s) {missing}; the symbol's inputs are "
                        f"{[n.name for n in graph.inputs]}")
    return interpret(graph, [_as_array(n.name, arrays[n.name]) for n in graph.inputs])


class Executor:
    """Forward and backward over a bound symbol (MXNet 1.x's `sym.bind(...)`)."""

    def __init__(self, sym, args, args_grad=None, grad_req="write", aux_states=None):
        self._sym = sym
        self._graph = sym.graph()
        names = [n.name for n in self._graph.inputs]
        if isinstance(args, (list, tuple)):
            args = dict(zip(sym.list_arguments(), args))
        if isinstance(aux_states, (list, tuple)):
            aux_states = dict(zip(sym.list_auxiliary_states(), aux_states))
        self.arg_dict = {k: _as_array(k, v) for k, v in dict(args or {}).items()}
        self.aux_dict = {k: _as_array(k, v) for k, v in dict(aux_states or {}).items()}
        missing = [n for n in names if n not in self.arg_dict and n not in self.aux_dict]
        if missing:
            raise KilnError(f"bind: no value for {missing}")
        if isinstance(args_grad, (list, tuple)):
            args_grad = dict(zip(sym.list_arguments(), args_grad))
        self.grad_dict = dict(args_grad or {})
        reqs = grad_req if isinstance(grad_req, dict) else dict.fromkeys(self.grad_dict, grad_req)
        for name, g in self.grad_dict.items():
            arr = self.arg_dict[name]
            arr.attach_grad(reqs.get(name, "write"))
            arr._grad = g if isinstance(g, ndarray) else wrap(_np.asarray(g))
        self.outputs: list = []

    @classmethod
    def allocate(cls, sym, grad_req, shapes):
        arg_shapes, _, aux_shapes = sym.infer_shape(**shapes)
        args = {n: wrap(_np.zeros(s, _np.float32)) for n, s in
                zip(sym.list_arguments(), arg_shapes)}
        aux = {n: wrap(_np.zeros(s, _np.float32)) for n, s in
               zip(sym.list_auxiliary_states(), aux_shapes)}
        grads = {} if grad_req == "null" else {n: wrap(_np.zeros_like(a._data))
                                               for n, a in args.items() if n not in shapes}
        return cls(sym, args, grads, grad_req, aux)

    def forward(self, is_train: bool = False, **kwargs) -> list:
        for k, v in kwargs.items():
            self.arg_dict[k] = _as_array(k, v)
        values = [self.arg_dict.get(n.name, self.aux_dict.get(n.name))
                  for n in self._graph.inputs]
        if is_train:
            with autograd.record():
                self.outputs = interpret(self._graph, values)
        else:
            with autograd.predict_mode():
                self.outputs = interpret(self._graph, values)
        return self.outputs

    def backward(self, out_grads=None) -> None:
        if not self.outputs:
            raise KilnError("backward() before forward(is_train=True)")
        if out_grads is not None and not isinstance(out_grads, (list, tuple)):
            out_grads = [out_grads]
        autograd.backward(self.outputs, out_grads)
        for name in self.grad_dict:
            self.grad_dict[name] = self.arg_dict[name].grad

    @property
    def output_dict(self) -> dict:
        return dict(zip(self._sym.list_outputs(), self.outputs))
