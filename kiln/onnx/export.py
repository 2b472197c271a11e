"""Export a kiln model (a HybridBlock, a Symbol, or MXNet-format files) to an ONNX file.

The model's predict-mode graph (BatchNorm with running statistics, no Dropout) is traced for
the given input shapes and translated node by node into ONNX operators of opset 13 (up to 17):
parameters become initializers, inputs are named as in the graph (`data`, `data0` ...).
With `dynamic_batch=True` the first dimension of inputs and outputs is the symbolic `batch`,
and reshapes copy the batch dimension (`0`) instead of fixing it.

Supported kiln operators: fully_connected, convolution (with groups), pooling (max, avg,
global; MXNet's 'full' convention is ONNX's ceil_mode), batch_norm (inference), relu, sigmoid,
tanh, softrelu, softsign, leaky_relu (leaky, elu, selu, prelu), elementwise arithmetic with
broadcasting and its scalar forms, unary math, reshape, transpose, concatenate, stack, split,
flatten, squeeze, expand_dims, softmax, log_softmax, clip, cast, copy, reductions, matmul/dot,
layer_norm, embedding, where, dropout (identity).
"""

from __future__ import annotations

import os

import numpy as _np

from ..base import KilnError
from ..graph.ir import CONST, VAR, Graph, Value

__all__ = ["export_model", "require_onnx"]

_INSTALL = "pip install onnx onnxruntime"


def require_onnx():
    """The `onnx` module, or a KilnError that says how to install it."""
    try:
        import onnx
    except ImportError:
        raise KilnError(f"ONNX export needs the 'onnx' package (and 'onnxruntime' to run the "
                        f"result): {_INSTALL}") from None
    return onnx


def export_model(block_or_symbol, params=None, input_shapes=None, path: str = "model.onnx",
                 opset: int = 13, dynamic_batch: bool = False, input_types=None,
                 input_names=None) -> str:
    """Write `block_or_symbol` as an ONNX model to `path`; returns `path`.

    - a HybridBlock: `params` is ignored (the block's own are used);
    - a Symbol: `params` maps variable names to arrays (`arg:`/`aux:` prefixes allowed);
      every other variable is an input;
    - the name of a `*-symbol.json` file: `params` is its `.params` file (or a dict).

    `input_shapes` is a list of shapes, one per input; `input_types` their dtypes (float32).
    """
    onnx = require_onnx()
    if not 13 <= int(opset) <= 17:
        raise KilnError(f"export_model: opset {opset} is not supported (13 to 17)")
    if input_shapes is None:
        raise KilnError("export_model: give input_shapes, e.g. [(1, 3, 224, 224)]")
    if input_shapes and isinstance(input_shapes[0], int):
        input_shapes = [tuple(input_shapes)]
    block = _as_block(block_or_symbol, params, input_names)
    types = list(input_types or ["float32"] * len(input_shapes))
    from ..io.export import trace_for_export
    from ..ndarray import wrap

    args = [wrap(_np.zeros(tuple(s), _np.dtype(t))) for s, t in zip(input_shapes, types,
                                                                     strict=True)]
    graph, param_objs = trace_for_export(block, args)
    model = _Converter(onnx, graph, param_objs, int(opset), dynamic_batch).model()
    onnx.checker.check_model(model)
    onnx.save(model, os.fspath(path))
    return os.fspath(path)


def _as_block(obj, params, input_names):
    from ..gluon.block import HybridBlock
    from ..gluon.symbol_block import SymbolBlock
    from ..io.params import load_params
    from ..symbol.symbol import Symbol

    if isinstance(obj, HybridBlock):
        return obj
    if isinstance(params, (str, os.PathLike)):
        params = load_params(params)
    values = {(k[4:] if k.startswith(("arg:", "aux:")) else k): v
              for k, v in dict(params or {}).items()}
    if isinstance(obj, (str, os.PathLike)):
        from ..io.symbol_json import load_mx_graph

        graph = load_mx_graph(obj)
        names = input_names or [n.name for n in graph.variables() if n.name not in values]
        block = SymbolBlock.__new__(SymbolBlock)
        HybridBlock.__init__(block)
        block._setup(graph, list(names), os.fspath(obj))
        for name, p in block._params_by_var.items():
            if name not in values:
                raise KilnError(f"export_model: no value for parameter {name!r}")
            p.set_data(values[name])
        return block
    if isinstance(obj, Symbol):
        from ..symbol.symbol import var

        names = input_names or [n.name for n in obj._variables() if n.name not in values]
        return SymbolBlock(obj, [var(n) for n in names], values)
    raise KilnError(f"export_model: cannot export a {type(obj).__name__}; give a HybridBlock, "
                    "a Symbol or a symbol file name")


_ONNX_DTYPES = {"float32": 1, "uint8": 2, "int8": 3, "uint16": 4, "int16": 5, "int32": 6,
                "int64": 7, "bool": 9, "float16": 10, "float64": 11, "uint32": 12,
                "uint64": 13}


class _Converter:
    def __init__(self, onnx, graph: Graph, params: dict, opset: int, dynamic_batch: bool):
        self.onnx = onnx
        self.h = onnx.helper
        self.graph = graph
        self.params = params
        self.opset = opset
        self.dynamic = dynamic_batch
        self.nodes: list = []
        self.inits: list = []
        self.names: dict[Value, str] = {}
        self.used: set[str] = set()
        self.batch_values: set[Value] = set()
        data = [n for n in graph.inputs if n.name not in params]
        self.batch = data[0].avals[0].shape[0] if data and data[0].avals[0].shape else None
        self.data_inputs = data

    # -- names and constants -----------------------------------------------------------------
    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.used:
            name = f"{base}_{k}"
            k += 1
        self.used.add(name)
        return name

    def const(self, value, base: str = "const", dtype=None) -> str:
        arr = _np.asarray(value, dtype=dtype)
        name = self.fresh(base)
        self.inits.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def emit(self, op: str, inputs: list[str], n_out: int = 1, base: str = "t", **attrs):
        outs = [self.fresh(f"{base}_{op.lower()}{i if n_out > 1 else ''}") for i in range(n_out)]
        self.nodes.append(self.h.make_node(op, inputs, outs, name=self.fresh(f"{base}/{op}"),
                                           **attrs))
        return outs if n_out > 1 else outs[0]

    # -- the model -------------------------------------------------------------------------------
    def model(self):
        h = self.h
        inputs = []
        for n in self.graph.nodes:
            if n.op == VAR:
                v = Value(n, 0)
                if n.name in self.params:
                    arr = self.params[n.name]._data._data
                    self.inits.append(self.onnx.numpy_helper.from_array(arr, n.name))
                    self.used.add(n.name)
                else:
                    self.used.add(n.name)
                    self.batch_values.add(v)
                    inputs.append(self._value_info(n.name, n.avals[0], True))
                self.names[v] = n.name
            elif n.op == CONST:
                self.names[Value(n, 0)] = self.const(n.value, "const")
            else:
                self._convert(n)
        outputs = []
        for i, v in enumerate(self.graph.outputs):
            name = self.names[v]
            out_name = f"output{i}" if len(self.graph.outputs) > 1 else "output"
            self.nodes.append(h.make_node("Identity", [name], [out_name]))
            outputs.append(self._value_info(out_name, v.aval, v in self.batch_values))
        g = h.make_graph(self.nodes, "kiln_model", inputs, outputs, self.inits)
        model = h.make_model(g, producer_name="kiln",
                             opset_imports=[h.make_opsetid("", self.opset)])
        model.ir_version = min(model.ir_version, 8)
        return model

    def _value_info(self, name, aval, batch: bool):
        shape = list(aval.shape)
        if self.dynamic and batch and shape:
            shape[0] = "batch"
        return self.h.make_tensor_value_info(name, _ONNX_DTYPES[_np.dtype(aval.dtype).name],
                                             shape)

    def _convert(self, n) -> None:
        fn = getattr(self, f"op_{n.op}", None)
        if fn is None:
            fn = _SIMPLE.get(n.op) and self._simple
        if fn is None:
            raise KilnError(f"export_model: the operator {n.op!r} (node {n.name!r}) has no ONNX "
                            "translation")
        ins = [self.names[v] for v in n.inputs]
        outs = fn(n, ins)
        outs = outs if isinstance(outs, list) else [outs]
        carries = any(v in self.batch_values for v in n.inputs)
        for i, name in enumerate(outs):
            v = Value(n, i)
            self.names[v] = name
            aval = n.avals[i] if i < len(n.avals) else None
            if carries and aval is not None and aval.shape and aval.shape[0] == self.batch:
                self.batch_values.add(v)

    # -- operators --------------------------------------------------------------------------------
    def _simple(self, n, ins):
        return self.emit(_SIMPLE[n.op], ins, base=n.name or n.op)

    def _scalar_const(self, n, scalar):
        dtype = _np.dtype(n.avals[0].dtype) if n.avals[0] is not None else _np.float32
        if dtype.kind == "b":
            dtype = _np.dtype(_np.asarray(scalar).dtype)
        return self.const(_np.asarray(scalar, dtype=dtype), "scalar")

    def op_fully_connected(self, n, ins):
        x = ins[0]
        shape = n.inputs[0].aval.shape
        if n.attrs["flatten"] and len(shape) != 2:
            x = self.emit("Flatten", [x], base=n.name, axis=1)
        if n.attrs["flatten"] or len(shape) == 2:
            return self.emit("Gemm", [x] + ins[1:], base=n.name, transB=1)
        wt = self.emit("Transpose", [ins[1]], base=n.name, perm=[1, 0])
        y = self.emit("MatMul", [x, wt], base=n.name)
        return self.emit("Add", [y, ins[2]], base=n.name) if len(ins) > 2 else y

    def op_convolution(self, n, ins):
        a = n.attrs
        return self.emit("Conv", ins, base=n.name, kernel_shape=list(a["kernel"]),
                         strides=list(a["stride"]), dilations=list(a["dilate"]),
                         pads=list(a["pad"]) * 2, group=a["num_group"])

    def op_pooling(self, n, ins):
        a = n.attrs
        kind = {"max": "Max", "avg": "Average"}.get(a["pool_type"])
        if kind is None:
            raise KilnError(f"export_model: {a['pool_type']} pooling has no ONNX translation")
        if a["global_pool"]:
            return self.emit(f"Global{kind}Pool", ins, base=n.name)
        attrs = dict(kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
                     pads=list(a["pad"]) * 2,
                     ceil_mode=int(a["pooling_convention"] == "full"))
        if kind == "Average":
            attrs["count_include_pad"] = int(a["count_include_pad"])
        return self.emit(f"{kind}Pool", ins, base=n.name, **attrs)

    def op_batch_norm(self, n, ins):
        a = n.attrs
        ndim = len(n.inputs[0].aval.shape)
        if a["axis"] % ndim != 1:
            raise KilnError("export_model: batch_norm over an axis other than 1")
        gamma = ins[1]
        if a["fix_gamma"]:
            c = n.inputs[0].aval.shape[1]
            gamma = self.const(_np.ones(c, _np.dtype(n.inputs[0].aval.dtype)), "ones")
        y = self.emit("BatchNormalization", [ins[0], gamma, ins[2], ins[3], ins[4]],
                      base=n.name, epsilon=float(a["eps"]))
        return [y, ins[3], ins[4]]

    def op_dropout(self, n, ins):
        return [self.emit("Identity", ins[:1], base=n.name), ins[0]]

    def op_leaky_relu(self, n, ins):
        a = n.attrs
        act = a["act_type"]
        if act == "leaky":
            return self.emit("LeakyRelu", ins[:1], base=n.name, alpha=float(a["slope"]))
        if act == "elu":
            return self.emit("Elu", ins[:1], base=n.name, alpha=float(a["slope"]))
        if act == "selu":
            return self.emit("Selu", ins[:1], base=n.name)
        if act == "prelu":
            ndim = len(n.inputs[0].aval.shape)
            c = n.inputs[1].aval.shape[0]
            slope = self.emit("Reshape", [ins[1], self.const(
                _np.array([c] + [1] * (ndim - 2), _np.int64), "shape")], base=n.name)
            return self.emit("PRelu", [ins[0], slope], base=n.name)
        raise KilnError(f"export_model: leaky_relu act_type {act!r} has no ONNX translation")

    def op_square(self, n, ins):
        return self.emit("Mul", [ins[0], ins[0]], base=n.name)

    def op_softmax(self, n, ins, op="Softmax"):
        x = ins[0]
        t = n.attrs["temperature"]
        if t is not None and t != 1.0:
            x = self.emit("Div", [x, self._scalar_const(n, t)], base=n.name)
        return self.emit(op, [x], base=n.name, axis=n.attrs["axis"])

    def op_log_softmax(self, n, ins):
        return self.op_softmax(n, ins, "LogSoftmax")

    def op_reshape(self, n, ins):
        new = list(n.attrs["newshape"])
        src = n.inputs[0].aval.shape
        carries = n.inputs[0] in self.batch_values
        if len(src) >= 2 and len(new) == 2 and new[0] == src[0] and carries and \
                new[1] in (-1, int(_np.prod(src[1:]))):
            return self.emit("Flatten", ins, base=n.name, axis=1)
        if carries and new and new[0] == src[0] and self.dynamic:
            new[0] = 0
        return self.emit("Reshape", [ins[0], self.const(_np.array(new, _np.int64), "shape")],
                         base=n.name)

    def op_transpose(self, n, ins):
        axes = n.attrs["axes"]
        attrs = {} if axes is None else {"perm": list(axes)}
        return self.emit("Transpose", ins, base=n.name, **attrs)

    def op_concatenate(self, n, ins):
        return self.emit("Concat", ins, base=n.name, axis=n.attrs["axis"])

    def op_stack(self, n, ins):
        axes = self.const(_np.array([n.attrs["axis"]], _np.int64), "axes")
        parts = [self.emit("Unsqueeze", [x, axes], base=n.name) for x in ins]
        return self.emit("Concat", parts, base=n.name, axis=n.attrs["axis"])

    def op_split(self, n, ins):
        sizes = [a.shape[n.attrs["axis"]] for a in n.avals]
        return self.emit("Split", [ins[0], self.const(_np.array(sizes, _np.int64), "split")],
                         n_out=len(sizes), base=n.name, axis=n.attrs["axis"])

    def op_expand_dims(self, n, ins):
        axes = self.const(_np.array([n.attrs["axis"]], _np.int64), "axes")
        return self.emit("Unsqueeze", [ins[0], axes], base=n.name)

    def op_squeeze(self, n, ins):
        axis = n.attrs["axis"]
        if axis is None:
            return self.emit("Squeeze", ins, base=n.name)
        return self.emit("Squeeze", [ins[0], self.const(_np.array(axis, _np.int64), "axes")],
                         base=n.name)

    def op_clip(self, n, ins):
        lo, hi = n.attrs["a_min"], n.attrs["a_max"]
        args = [ins[0], "" if lo is None else self._scalar_const(n, lo),
                "" if hi is None else self._scalar_const(n, hi)]
        while args[-1] == "":
            args.pop()
        return self.emit("Clip", args, base=n.name)

    def op_cast(self, n, ins):
        return self.emit("Cast", ins, base=n.name, to=_ONNX_DTYPES[n.attrs["dtype"]])

    def _reduce(self, n, ins, op):
        axis = n.attrs["axis"]
        keep = int(n.attrs["keepdims"])
        if op == "ReduceSum":
            if axis is None:
                return self.emit(op, ins, base=n.name, keepdims=keep)
            axes = self.const(_np.array(axis, _np.int64), "axes")
            return self.emit(op, [ins[0], axes], base=n.name, keepdims=keep)
        attrs = {"keepdims": keep}
        if axis is not None:
            attrs["axes"] = list(axis)
        return self.emit(op, ins, base=n.name, **attrs)

    def op_sum(self, n, ins):
        return self._reduce(n, ins, "ReduceSum")

    def op_mean(self, n, ins):
        return self._reduce(n, ins, "ReduceMean")

    def op_max(self, n, ins):
        return self._reduce(n, ins, "ReduceMax")

    def op_min(self, n, ins):
        return self._reduce(n, ins, "ReduceMin")

    def op_prod(self, n, ins):
        return self._reduce(n, ins, "ReduceProd")

    def op_dot(self, n, ins):
        if len(n.inputs[1].aval.shape) > 2:
            raise KilnError("export_model: dot with a right operand of more than 2 dimensions")
        return self.emit("MatMul", ins, base=n.name)

    def op_layer_norm(self, n, ins):
        axis = n.attrs["axis"]
        ndim = len(n.inputs[0].aval.shape)
        ax = axis % ndim
        mean = self.emit("ReduceMean", [ins[0]], base=n.name, axes=[ax], keepdims=1)
        d = self.emit("Sub", [ins[0], mean], base=n.name)
        var = self.emit("ReduceMean", [self.emit("Mul", [d, d], base=n.name)], base=n.name,
                        axes=[ax], keepdims=1)
        std = self.emit("Sqrt", [self.emit("Add", [var, self._scalar_const(
            n, n.attrs["eps"])], base=n.name)], base=n.name)
        y = self.emit("Div", [d, std], base=n.name)
        gamma, beta = ins[1], ins[2]
        if ax != ndim - 1:
            shape = self.const(_np.array([-1] + [1] * (ndim - ax - 1), _np.int64), "shape")
            gamma = self.emit("Reshape", [gamma, shape], base=n.name)
            beta = self.emit("Reshape", [beta, shape], base=n.name)
        y = self.emit("Add", [self.emit("Mul", [y, gamma], base=n.name), beta], base=n.name)
        return [y, mean, std]

    def op_embedding(self, n, ins):
        idx = self.emit("Cast", [ins[0]], base=n.name, to=7)
        return self.emit("Gather", [ins[1], idx], base=n.name, axis=0)

    def op_copy(self, n, ins):
        return self.emit("Identity", ins, base=n.name)

    op_stop_gradient = op_copy


_SIMPLE = {
    "relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softrelu": "Softplus",
    "softsign": "Softsign", "negative": "Neg", "absolute": "Abs", "exp": "Exp", "log": "Log",
    "sqrt": "Sqrt", "reciprocal": "Reciprocal", "sin": "Sin", "cos": "Cos", "floor": "Floor",
    "ceil": "Ceil", "sign": "Sign", "erf": "Erf",
    "add": "Add", "subtract": "Sub", "multiply": "Mul", "true_divide": "Div", "power": "Pow",
    "maximum": "Max", "minimum": "Min", "equal": "Equal", "greater": "Greater", "less": "Less",
    "matmul": "MatMul", "where": "Where",
}
# kiln scalar op -> (ONNX op, scalar first)
_SCALAR = {
    "add_scalar": ("Add", False), "subtract_scalar": ("Sub", False),
    "rsubtract_scalar": ("Sub", True), "multiply_scalar": ("Mul", False),
    "true_divide_scalar": ("Div", False), "rtrue_divide_scalar": ("Div", True),
    "power_scalar": ("Pow", False), "rpower_scalar": ("Pow", True),
    "maximum_scalar": ("Max", False), "minimum_scalar": ("Min", False),
    "equal_scalar": ("Equal", False), "greater_scalar": ("Greater", False),
    "less_scalar": ("Less", False),
}


def _make_scalar(onnx_op, scalar_first):
    def convert(self, n, ins):
        c = self._scalar_const(n, n.attrs["scalar"]) if onnx_op not in (
            "Equal", "Greater", "Less") else self.const(_np.asarray(
                n.attrs["scalar"], _np.dtype(n.inputs[0].aval.dtype)), "scalar")
        args = [c, ins[0]] if scalar_first else [ins[0], c]
        return self.emit(onnx_op, args, base=n.name)
    return convert


for _name, (_op, _first) in _SCALAR.items():
    setattr(_Converter, f"op_{_name}", _make_scalar(_op, _first))
