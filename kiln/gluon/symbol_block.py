"""`SymbolBlock`: a block made from a graph, e.g. a model exported by kiln or MXNet 1.x.

    >>> net = SymbolBlock.imports('model-symbol.json', ['data'], 'model-0000.params')
    >>> y = net(x)

The block keeps the graph as MXNet operators (`kiln.io.symbol_json.MxGraph`) and its forward
runs them one by one through kiln's operator fronts (`run_graph`). So the block computes
eagerly, records gradients under `autograd.record()` (it can be fine-tuned), is traced into a
kiln graph by `hybridize()`, and exports again. An imported BatchNorm follows the train/predict
mode at run time (batch statistics and running-statistics updates while training), an imported
Dropout drops only while training.

Every graph variable that is not an input is a parameter, named as in the graph; auxiliary
states (BatchNorm's running mean and variance) get grad_req 'null'.
"""

from __future__ import annotations

import os

from ..graph.ir import VAR
from ..base import FormatError, KilnError
from ..io.params import load_params
from ..io.symbol_json import MxGraph, graph_to_mx, load_mx_graph, run_graph
from ..ndarray import ndarray
from .block import HybridBlock
from .parameter import Parameter

__all__ = ["SymbolBlock"]


def _as_list(x) -> list:
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


class SymbolBlock(HybridBlock):
    """A block whose forward is a given graph.

    `SymbolBlock(outputs, inputs, params=None)` builds one from kiln symbols: `outputs` the
    symbol(s) computed, `inputs` the variable(s) the forward takes; every other variable is a
    parameter, whose value comes from `params` (name -> Parameter or array) when given.
    """

    def __init__(self, outputs, inputs, params=None, prefix: str | None = None):
        super().__init__(prefix)
        from ..symbol.symbol import Group, Symbol

        outs = _as_list(outputs)
        if not outs or not all(isinstance(o, Symbol) for o in outs):
            raise KilnError("SymbolBlock: outputs must be a Symbol or a list of Symbols")
        ins = _as_list(inputs)
        names = []
        for s in ins:
            if not isinstance(s, Symbol) or len(s._outputs) != 1 or \
                    s._outputs[0].node.op != VAR:
                raise KilnError(f"SymbolBlock: inputs must be variables (sym.var), not {s!r}")
            names.append(s.name)
        graph = Group(outs).graph()
        given = dict(params.items()) if params is not None else {}
        param_objs = {k: v for k, v in given.items() if isinstance(v, Parameter)}
        mx, constants = graph_to_mx(graph, "numpy", param_objs)
        self._setup(mx, names, "the graph")
        for name, value in constants.items():
            self._params_by_var[name].set_data(value)
        for name, value in given.items():
            if name not in self._params_by_var:
                continue
            if isinstance(value, Parameter):
                self._params_by_var[name] = value
                self._reg_params[name] = value
            else:
                self._params_by_var[name].set_data(value)

    # -- construction ----------------------------------------------------------------------------
    def _setup(self, graph: MxGraph, input_names: list[str], what: str) -> None:
        object.__setattr__(self, "_graph", graph)
        variables = [n.name for n in graph.variables()]
        unknown = [n for n in input_names if n not in variables]
        if unknown:
            raise KilnError(
                f"SymbolBlock: input name(s) {unknown} are not variables of {what}. Its "
                f"variables are: {variables}. Pass the names of the data inputs (MXNet exports "
                "name them 'data', or 'data0', 'data1' ...); every other variable is a "
                "parameter.")
        if len(set(input_names)) != len(input_names):
            raise KilnError(f"SymbolBlock: input names {input_names} repeat a name")
        object.__setattr__(self, "_input_names", list(input_names))
        aux = graph.aux_names()
        params: dict[str, Parameter] = {}
        for node in graph.variables():
            if node.name in input_names:
                continue
            hints = node.attrs
            shape = hints.get("shape")
            shape = tuple(-1 if d <= 0 else d for d in shape) if shape else None
            constant = hints.get("constant", False)
            p = Parameter(node.name, shape=shape, dtype=hints.get("dtype", "float32"),
                          grad_req="null" if (node.name in aux or constant) else "write",
                          allow_deferred_init=True)
            params[node.name] = p
            self._reg_params[node.name] = p
        object.__setattr__(self, "_params_by_var", params)

    @classmethod
    def imports(cls, symbol_file, input_names, param_file=None, ctx=None,
                allow_missing: bool = False, ignore_extra: bool = False,
                device=None) -> SymbolBlock:
        """Load a model written by `export()` (kiln's or MXNet 1.x's, legacy or numpy mode).

        `input_names`: the data inputs (a name or a list); every other variable of the graph is
        a parameter, loaded from `param_file` (names with or without the `arg:`/`aux:`
        prefixes). Missing parameters are an error unless `allow_missing` (then initialize
        them before use); parameters the graph does not use are an error unless
        `ignore_extra`.
        """
        graph = load_mx_graph(symbol_file)
        names = [input_names] if isinstance(input_names, str) else list(input_names)
        block = cls.__new__(cls)
        HybridBlock.__init__(block)
        block._setup(graph, names, os.fspath(symbol_file))
        if param_file is not None:
            block._load_file(param_file, allow_missing, ignore_extra)
        elif not allow_missing and block._params_by_var:
            raise KilnError(f"SymbolBlock.imports: no param_file given for the parameters "
                            f"{sorted(block._params_by_var)[:10]}; pass one, or "
                            "allow_missing=True and initialize them")
        return block

    def _load_file(self, param_file, allow_missing: bool, ignore_extra: bool) -> None:
        source = os.fspath(param_file)
        loaded = load_params(param_file)
        if isinstance(loaded, list) and not loaded:  # a model without parameters
            loaded = {}
        if not isinstance(loaded, dict):
            raise FormatError(f"{source}: holds unnamed arrays, not a model's parameters")
        values: dict[str, ndarray] = {}
        for key, value in loaded.items():
            name = key[4:] if key.startswith(("arg:", "aux:")) else key
            if name in values:
                raise FormatError(f"{source}: parameter {name!r} appears twice (as arg: and "
                                  "aux:)")
            values[name] = value
        wanted = self._params_by_var
        missing = [n for n in wanted if n not in values]
        extra = [k for k in values if k not in wanted]
        if missing and not allow_missing:
            prefixed = [k for k in loaded if k.startswith(("arg:", "aux:"))]
            raise KilnError(
                f"SymbolBlock.imports: {source} lacks parameter(s) {missing[:10]} of the graph."
                f"\n  Inputs you named: {self._input_names}"
                f"\n  The graph's parameters: {sorted(wanted)[:12]}"
                f"\n  The file's names: {sorted(loaded)[:12]}"
                + ("\n  (arg:/aux: prefixes are stripped before matching)" if prefixed else "")
                + "\n  If one of the missing names is a data input, add it to input_names; "
                "pass allow_missing=True to initialize the rest yourself.")
        if extra and not ignore_extra:
            hint = [k for k in extra if k in self._input_names]
            raise KilnError(
                f"SymbolBlock.imports: {source} holds parameter(s) {extra[:10]} that the graph "
                f"does not use (its parameters: {sorted(wanted)[:12]})."
                + (f" {hint} are named as inputs." if hint else "")
                + " Pass ignore_extra=True to load anyway.")
        self._check_shapes(values, source)
        for name, value in values.items():
            if name in wanted:
                p = wanted[name]
                p.dtype = value.dtype
                p._shape = None
                p.set_data(value)

    def _check_shapes(self, values: dict, source: str) -> None:
        """Each loaded parameter must fit the operators that read it."""
        from ..io import mxnet_ops

        graph = self._graph
        for node in graph.nodes:
            spec = mxnet_ops.READERS.get(node.op)
            if spec is None or spec.params is None:
                continue
            expected = spec.params([None] * len(node.inputs), node.attrs)
            for i, shape in expected.items():
                if i >= len(node.inputs):
                    continue
                var = graph.nodes[node.inputs[i][0]]
                if not var.is_var or var.name not in values:
                    continue
                got = tuple(values[var.name].shape)
                if len(got) != len(shape) or any(
                        e not in (-1, g) for e, g in zip(shape, got, strict=True)):
                    want = "(" + ", ".join("?" if d == -1 else str(d) for d in shape) + ")"
                    raise FormatError(
                        f"{source}: parameter {var.name!r} has shape {got}, but node "
                        f"{node.name!r} ({node.op}) of the graph needs {want}")

    # -- running ---------------------------------------------------------------------------------
    def forward(self, *args):
        if len(args) != len(self._input_names):
            raise KilnError(f"SymbolBlock: the graph takes {len(self._input_names)} input(s) "
                            f"{self._input_names}, {len(args)} given")
        values = dict(zip(self._input_names, args, strict=True))
        for name, p in self._params_by_var.items():
            values[name] = p.data() if p._data is not None else _Deferred(p)
        outs = run_graph(self._graph, values, self._finish_param(values))
        return outs[0] if len(outs) == 1 else outs

    def _finish_param(self, values: dict):
        from ..io import mxnet_ops

        def on_param(name, node, k, shapes):
            value = values.get(name)
            if not isinstance(value, _Deferred):
                return
            p = value.param
            spec = mxnet_ops.READERS.get(node.op)
            if p._deferred is not None and spec is not None and spec.params is not None:
                shape = spec.params(shapes, node.attrs).get(k)
                if shape is not None and all(d > 0 for d in shape):
                    p._infer_shape(shape)
            values[name] = p.data()
        return on_param

    def _repr_args(self) -> str:
        return f"inputs={self._input_names}, {len(self._params_by_var)} parameters"


class _Deferred:
    """A parameter whose shape the first forward will tell."""

    __slots__ = ("param",)

    def __init__(self, param: Parameter):
        self.param = param
