"""Attribute values as text, and a safe reader for that text.

Attributes hold Python literals plus a few extras (slices, `...`, NumPy arrays and scalars).
`format_literal` writes them; `parse_literal` reads them back by walking the syntax tree of a
restricted grammar, so text from a file can never execute code (no `eval`).
"""

from __future__ import annotations

import ast
import math

import numpy as _np

from ..base import FormatError

__all__ = ["format_literal", "parse_literal"]

_DTYPE_NAMES = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
                "uint16", "uint32", "uint64", "bool_", "bool"}
# Arrays longer than this print as a placeholder: the IR stays readable.
MAX_PRINTED_ELEMENTS = 16


def format_literal(v) -> str:
    if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
        return repr(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, _np.generic):
        return f"{_np.dtype(type(v)).name}({format_literal(v.item())})"
    if isinstance(v, tuple):
        inner = ", ".join(format_literal(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, list):
        return "[" + ", ".join(format_literal(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{format_literal(k)}: {format_literal(x)}"
                               for k, x in v.items()) + "}"
    if isinstance(v, slice):
        return f"slice({format_literal(v.start)}, {format_literal(v.stop)}, " \
               f"{format_literal(v.step)})"
    if v is Ellipsis:
        return "..."
    if isinstance(v, _np.ndarray):
        if v.size > MAX_PRINTED_ELEMENTS:
            dims = ",".join(str(d) for d in v.shape)
            return f"<{v.dtype.name}[{dims}] array>"
        return f"array({format_literal(v.tolist())}, dtype={v.dtype.name})"
    if isinstance(v, _np.dtype):
        return repr(v.name)
    return repr(v)


def parse_literal(text: str):
    """Read a value written by `format_literal` (and plain Python literals)."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
        return _eval(tree.body, text)
    except SyntaxError as e:
        raise FormatError(f"cannot parse attribute value {text!r}: {e.msg}") from None
    except FormatError:
        raise
    except (RecursionError, MemoryError, ValueError, TypeError) as e:
        # nesting too deep, an integer too long, an array of ragged lists ...
        raise FormatError(f"cannot read attribute value {text[:80]!r}: "
                          f"{type(e).__name__}") from None


def _eval(node, text: str):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        names = {"None": None, "True": True, "False": False, "inf": math.inf, "nan": math.nan}
        if node.id in names:
            return names[node.id]
        raise FormatError(f"unknown name {node.id!r} in attribute value {text!r}")
    if isinstance(node, ast.Tuple):
        return tuple(_eval(e, text) for e in node.elts)
    if isinstance(node, ast.List):
        return [_eval(e, text) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {_eval(k, text): _eval(v, text) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _eval(node.operand, text)
        if isinstance(operand, (int, float)) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return _eval_call(node, text)
    raise FormatError(f"attribute value {text!r} is not a literal kiln can read")


def _eval_call(node: ast.Call, text: str):
    name = node.func.id
    args = [_eval(a, text) for a in node.args]
    kwargs = {k.arg: (k.value.id if isinstance(k.value, ast.Name) else _eval(k.value, text))
              for k in node.keywords}
    if name == "slice" and len(args) <= 3 and not kwargs:
        return slice(*args)
    if name == "array" and len(args) == 1 and set(kwargs) <= {"dtype"}:
        dtype = kwargs.get("dtype")
        if dtype is not None and dtype not in _DTYPE_NAMES:
            raise FormatError(f"unknown dtype {dtype!r} in attribute value {text!r}")
        return _np.asarray(args[0], dtype=dtype)
    if name in _DTYPE_NAMES and len(args) == 1 and not kwargs:
        return _np.dtype(name).type(args[0])
    raise FormatError(f"attribute value {text!r} calls {name!r}, which kiln does not read")
