"""Shapes: MXNet's reshape codes, transpose, concatenation, slicing ..."""

from __future__ import annotations

import builtins


from ...base import KilnError, ShapeError
from ...ops import shape as _sh
from .table import (
    REQUIRED, _in_shape, _prod, _shape_of, reader, writer,
)


# The two dialects of MXNet's reshape codes: what each special code does. Other codes are sizes
# (legacy: > 0; numpy mode: >= 0).
_LEGACY_CODES = {0: "copy", -1: "infer", -2: "rest", -3: "merge", -4: "split"}
_NPX_CODES = {-1: "infer", -2: "copy", -3: "drop", -4: "rest", -5: "merge", -6: "split"}


def legacy_reshape_shape(shape: tuple, codes, reverse: bool = False) -> tuple:
    """The target shape of MXNet 1.x `Reshape(shape=codes)` for an input of `shape`.

    Codes: d > 0 that size; 0 copy the input dimension; -1 infer; -2 copy all remaining
    dimensions; -3 merge two input dimensions; -4 a b split one input dimension into a*b (one of
    a, b may be -1). With `reverse`, codes and dimensions are matched from the right.
    """
    return _reshape_codes(tuple(shape), list(codes), reverse, _LEGACY_CODES, "Reshape")


def npx_reshape_shape(shape: tuple, codes, reverse: bool = False) -> tuple:
    """The target shape of numpy-mode `npx.reshape(x, codes)` (`_npx_reshape`).

    Codes: d >= 0 that size; -1 infer; -2 copy the input dimension; -3 drop an input dimension
    of size 1; -4 copy all remaining; -5 merge two input dimensions; -6 a b split one input
    dimension into a*b (one of a, b may be -1).
    """
    return _reshape_codes(tuple(shape), list(codes), reverse, _NPX_CODES, "npx.reshape")


def _reshape_codes(shape: tuple, codes: list, reverse: bool, actions: dict, who: str) -> tuple:
    split = next(c for c, act in actions.items() if act == "split")
    if reverse:   # match from the right: 'split a b' reads as 'split b a' from there
        back = _reshape_codes(shape[::-1], _reverse_codes(codes, split), False, actions, who)
        return tuple(reversed(back))
    out: list[int] = []
    i = j = 0
    while j < len(codes):
        c = codes[j]
        act = actions.get(c, "size" if c >= 0 else None)
        if act == "size":
            out.append(c)
            i += 1
        elif act == "infer":
            out.append(-1)
            i += 1
        elif act == "copy":
            _need(shape, i, codes, who)
            out.append(shape[i])
            i += 1
        elif act == "drop":
            _need(shape, i, codes, who)
            if shape[i] != 1:
                raise ShapeError(f"{who}: code {c} drops dimension {i}, of size {shape[i]}, "
                                 "not 1")
            i += 1
        elif act == "rest":
            out.extend(shape[i:])
            i = len(shape)
        elif act == "merge":
            _need(shape, i + 1, codes, who)
            out.append(shape[i] * shape[i + 1])
            i += 2
        elif act == "split":
            if j + 2 >= len(codes):
                raise ShapeError(f"{who}: code {c} in {tuple(codes)} needs two sizes after it")
            _need(shape, i, codes, who)
            a, b = codes[j + 1], codes[j + 2]
            if a == -1:
                a = shape[i] // b
            if b == -1:
                b = shape[i] // a
            if a * b != shape[i]:
                raise ShapeError(f"{who}: cannot split dimension {shape[i]} into {a} x {b}")
            out.extend((a, b))
            i += 1
            j += 2
        else:
            raise ShapeError(f"{who}: unknown code {c} in {tuple(codes)}")
        j += 1
    return _sh.resolve_newshape(shape, tuple(out))


def _reverse_codes(codes: list, split: int) -> list:
    out: list[int] = []
    j = len(codes) - 1
    while j >= 0:
        if j >= 2 and codes[j - 2] == split:
            out.extend((split, codes[j], codes[j - 1]))
            j -= 3
        else:
            out.append(codes[j])
            j -= 1
    return out


def _need(shape, i, codes, who):
    if i >= len(shape):
        raise ShapeError(f"{who}: codes {tuple(codes)} use more dimensions than the input "
                         f"shape {tuple(shape)} has")


@reader("Reshape reshape", {"shape": ("ints", ()), "reverse": ("bool", False),
                            "target_shape": ("ints", ()), "keep_highest": ("bool", False)})
def _read_reshape(ins, a):
    x = ins[0]
    codes = a["shape"] or a["target_shape"]
    if all(c > 0 or c == -1 for c in codes) and not a["reverse"]:
        return (_sh.reshape(x, codes),)
    return (_sh.reshape(x, legacy_reshape_shape(_shape_of(x, "Reshape"), codes,
                                                a["reverse"])),)


@reader("_np_reshape", {"newshape": ("ints", REQUIRED), "order": (("C",), "C")})
def _read_np_reshape(ins, a):
    codes = a["newshape"]
    if all(c >= -1 for c in codes):
        return (_sh.reshape(ins[0], codes),)
    return (_sh.reshape(ins[0], npx_reshape_shape(_shape_of(ins[0], "reshape"), codes)),)


@reader("_npx_reshape", {"newshape": ("ints", REQUIRED), "reverse": ("bool", False),
                         "order": (("C",), "C")})
def _read_npx_reshape(ins, a):
    codes = a["newshape"]
    if all(c >= -1 for c in codes) and not a["reverse"]:
        return (_sh.reshape(ins[0], codes),)
    return (_sh.reshape(ins[0], npx_reshape_shape(_shape_of(ins[0], "npx.reshape"), codes,
                                                  a["reverse"])),)


@reader("Flatten flatten _npx_batch_flatten")
def _read_flatten(ins, a):
    shape = _shape_of(ins[0], "Flatten")
    return (_sh.reshape(ins[0], (shape[0], _prod(shape[1:])) if shape else (1, 1)),)


@writer("reshape")
def _write_reshape(node, mode):
    new = tuple(node.attrs["newshape"])
    src = _in_shape(node, 0)
    if src is not None and len(src) >= 2 and len(new) == 2 and new[0] == src[0] and \
            new[1] in (-1, _prod(src[1:])):
        return [("Flatten", {})]
    batch_copy = src is not None and len(src) >= 1 and len(new) >= 1 and new[0] == src[0] \
        and src[0] > 0 and (src[0] != 1 or len(src) > 1)
    if mode == "numpy":
        if batch_copy:  # keep the batch dimension free, as a hand-written reshape would
            return [("_npx_reshape", {"newshape": (-2,) + new[1:]})]
        return [("_np_reshape", {"newshape": new, "order": "C"})]
    if 0 in new:
        return [("_np_reshape", {"newshape": new, "order": "C"})]
    if batch_copy:
        new = (0,) + new[1:]
    return [("Reshape", {"shape": new})]


@reader("transpose _np_transpose _npi_transpose", {"axes": ("opt_ints", None)})
def _read_transpose(ins, a):
    axes = a["axes"] or None
    if axes is not None and any(ax is None for ax in axes):
        raise KilnError(f"transpose: axes {axes} hold None")
    return (_sh.transpose(ins[0], axes),)


@writer("transpose")
def _write_transpose(node, mode):
    axes = node.attrs["axes"]
    attrs = {} if axes is None else {"axes": tuple(axes)}
    return [("_np_transpose" if mode == "numpy" else "transpose", attrs)]


@reader("expand_dims _npi_expand_dims", {"axis": ("int", REQUIRED)})
def _read_expand_dims(ins, a):
    return (_sh.expand_dims(ins[0], a["axis"]),)


@writer("expand_dims")
def _write_expand_dims(node, mode):
    return [("_npi_expand_dims" if mode == "numpy" else "expand_dims",
             {"axis": node.attrs["axis"]})]


@reader("squeeze _np_squeeze _npi_squeeze", {"axis": ("axis", None)})
def _read_squeeze(ins, a):
    return (_sh.squeeze(ins[0], a["axis"]),)


@writer("squeeze")
def _write_squeeze(node, mode):
    axis = node.attrs["axis"]
    attrs = {} if axis is None else {"axis": axis[0] if len(axis) == 1 else tuple(axis)}
    return [("_np_squeeze" if mode == "numpy" else "squeeze", attrs)]


@reader("Concat concat", {"dim": ("int", 1), "num_args": ("int", None)})
def _read_concat(ins, a):
    return (_sh.concatenate(ins, axis=a["dim"]),)


@reader("_npi_concatenate", {"axis": ("opt_int", 0), "num_args": ("int", None)})
def _read_np_concatenate(ins, a):
    return (_sh.concatenate(ins, axis=a["axis"]),)


@writer("concatenate")
def _write_concatenate(node, mode):
    n = len(node.inputs)
    if mode == "numpy":
        return [("_npi_concatenate", {"axis": node.attrs["axis"], "num_args": n})]
    return [("Concat", {"dim": node.attrs["axis"], "num_args": n})]


@reader("stack _npi_stack", {"axis": ("int", 0), "num_args": ("int", None)})
def _read_stack(ins, a):
    return (_sh.stack(ins, axis=a["axis"]),)


@writer("stack")
def _write_stack(node, mode):
    return [("_npi_stack" if mode == "numpy" else "stack",
             {"axis": node.attrs["axis"], "num_args": len(node.inputs)})]


def _squeezed(parts, axis, squeeze):
    return tuple(_sh.squeeze(p, axis) if squeeze else p for p in parts)


@reader("SliceChannel split", {"num_outputs": ("int", REQUIRED), "axis": ("int", 1),
                               "squeeze_axis": ("bool", False)},
        num_outputs=lambda a: a["num_outputs"])
def _read_slice_channel(ins, a):
    parts = _sh.split(ins[0], a["num_outputs"], axis=a["axis"])
    return _squeezed(parts, a["axis"], a["squeeze_axis"])


def _split_v2_outputs(a) -> int:
    return a["sections"] if a["sections"] > 0 else builtins.max(len(a["indices"]), 1)


@reader("_split_v2 _npi_split",
        {"indices": ("ints", ()), "axis": ("int", 0), "squeeze_axis": ("bool", False),
         "sections": ("int", 0)}, num_outputs=_split_v2_outputs)
def _read_split_v2(ins, a):
    if a["sections"] > 0:
        parts = _sh.split(ins[0], a["sections"], axis=a["axis"])
    else:  # MXNet writes the cut points with a leading 0
        parts = _sh.split(ins[0], list(a["indices"][1:]), axis=a["axis"])
    return _squeezed(parts, a["axis"], a["squeeze_axis"])


@writer("split")
def _write_split(node, mode):
    indices, axis = tuple(node.attrs["indices"]), node.attrs["axis"]
    src = _in_shape(node, 0)
    n = len(indices) + 1
    if mode == "legacy" and src is not None and src[axis] % n == 0 and \
            indices == tuple(src[axis] // n * k for k in range(1, n)):
        return [("SliceChannel", {"axis": axis, "num_outputs": n})]
    return [("_split_v2", {"axis": axis, "indices": [0, *indices], "sections": 0,
                           "squeeze_axis": False})]


@reader("slice crop _npi_slice", {"begin": ("opt_ints", REQUIRED), "end": ("opt_ints", REQUIRED),
                                  "step": ("opt_ints", ())})
def _read_slice(ins, a):
    begin, end, step = a["begin"] or (), a["end"] or (), a["step"] or ()
    if len(end) != len(begin) or len(step) > len(begin):
        raise KilnError(f"slice: begin {begin}, end {end} and step {step} differ in length")
    key = tuple(slice(b, e, step[i] if i < len(step) else None)
                for i, (b, e) in enumerate(zip(begin, end, strict=True)))
    return (_sh.getitem(ins[0], key),)


@reader("slice_axis", {"axis": ("int", REQUIRED), "begin": ("int", REQUIRED),
                       "end": ("opt_int", REQUIRED)})
def _read_slice_axis(ins, a):
    axis = a["axis"]
    cut = slice(a["begin"], a["end"])
    key = (slice(None),) * axis + (cut,) if axis >= 0 else \
        (Ellipsis, cut) + (slice(None),) * (-axis - 1)
    return (_sh.getitem(ins[0], key),)


@writer("getitem")
def _write_getitem(node, mode):
    key = node.attrs["key"]
    if not isinstance(key, tuple) or not key or not all(
            isinstance(k, slice) or (isinstance(k, int) and not isinstance(k, bool))
            for k in key):
        return None
    begin, end, step, squeeze = [], [], [], []
    for axis, k in enumerate(key):
        if isinstance(k, int):
            begin.append(k)
            end.append(None if k == -1 else k + 1)
            step.append(None)
            squeeze.append(axis)
        else:
            if k.step is not None and k.step <= 0:
                return None
            begin.append(k.start)
            end.append(k.stop)
            step.append(k.step)
    chain = [("slice", {"begin": begin, "end": end, "step": step})]
    if squeeze:
        axis = squeeze[0] if len(squeeze) == 1 else tuple(squeeze)
        chain.append(("_np_squeeze" if mode == "numpy" else "squeeze", {"axis": axis}))
    return chain


@reader("broadcast_to _npi_broadcast_to", {"shape": ("ints", REQUIRED)})
def _read_broadcast_to(ins, a):
    shape = a["shape"]
    if 0 in shape:  # legacy: 0 keeps the input's dimension
        src = _shape_of(ins[0], "broadcast_to")
        shape = tuple(src[i] if d == 0 else d for i, d in enumerate(shape))
    return (_sh.broadcast_to(ins[0], shape),)


@writer("broadcast_to")
def _write_broadcast_to(node, mode):
    return [("_npi_broadcast_to" if mode == "numpy" else "broadcast_to",
             {"shape": tuple(node.attrs["shape"])})]


@reader("tile _npi_tile", {"reps": ("ints", REQUIRED)})
def _read_tile(ins, a):
    return (_sh.tile(ins[0], a["reps"]),)


@writer("tile")
def _write_tile(node, mode):
    return [("_npi_tile" if mode == "numpy" else "tile", {"reps": tuple(node.attrs["reps"])})]


@reader("reverse flip _npi_flip", {"axis": ("axis", None)})
def _read_flip(ins, a):
    return (_sh.flip(ins[0], a["axis"]),)


@writer("flip")
def _write_flip(node, mode):
    axis = node.attrs["axis"]
    if axis is None:
        return None
    return [("_npi_flip" if mode == "numpy" else "reverse", {"axis": tuple(axis)})]


# ----------------------------------------------------------------------------------------------
