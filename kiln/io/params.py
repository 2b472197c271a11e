"""MXNet's binary NDArray-list format (`.params`, `npx.save`), read and written without pickle.

The layout, all little-endian (MXNet 1.x `NDArray::Save` and `dmlc::Stream`)::

    u64  0x112                   list magic
    u64  0                       reserved
    u64  N                       number of arrays, then N array records
    u64  K                       number of names: N (a dict) or 0 (a list)
    K x  (u64 length, UTF-8 bytes)

    array record
    u32  magic                   0xF993FAC9 (V2), 0xF993FACA (V3, numpy shape semantics),
                                 0xF993FAC8 (V1: no storage type field);
                                 anything else: a pre-V1 record whose first u32 is ndim
    i32  storage type            0 dense, 1 row_sparse, 2 csr        (V2 and V3 only)
    [sparse: storage shape]
    shape                        i32 ndim, then ndim x i64 (pre-V1: u32 dims).
                                 "No array": ndim 0 in V1/V2, ndim -1 in V3; the record ends.
    i32 device type, i32 device id
    i32 type flag                see DTYPE_CODES
    [sparse: per aux array (row_sparse: indices; csr: indptr, indices): i32 type, shape]
    data                         itemsize x prod(shape) bytes, C order (sparse: the values,
                                 prod(storage shape)), then each aux array's bytes

Sparse records are read into dense arrays. Every malformed file raises `FormatError` naming the
file, the byte offset and what is wrong; nothing in a file can make kiln execute code.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO
from collections.abc import Mapping, Sequence

import numpy as _np

from ..base import FormatError, KilnError
from ..ndarray import ndarray, wrap

__all__ = ["save_params", "load_params", "load_params_bytes", "dump_params_bytes",
           "DTYPE_CODES"]

LIST_MAGIC = 0x112
V1_MAGIC = 0xF993FAC8
V2_MAGIC = 0xF993FAC9
V3_MAGIC = 0xF993FACA

#: MXNet type flag -> NumPy dtype (12, bfloat16, is read as float32)
DTYPE_CODES = {
    0: _np.dtype("<f4"), 1: _np.dtype("<f8"), 2: _np.dtype("<f2"), 3: _np.dtype("u1"),
    4: _np.dtype("<i4"), 5: _np.dtype("i1"), 6: _np.dtype("<i8"), 7: _np.dtype("?"),
    8: _np.dtype("<i2"), 9: _np.dtype("<u2"), 10: _np.dtype("<u4"), 11: _np.dtype("<u8"),
}
_BF16 = 12
_CODE_OF = {dt.newbyteorder("="): code for code, dt in DTYPE_CODES.items()}
_STORAGE_AUX = {0: (), 1: ("indices",), 2: ("indptr", "indices")}
# A dimension this large cannot be real; it guards the size arithmetic against overflow.
_MAX_ELEMENTS = 1 << 48


class _Reader:
    """Bounds-checked little-endian reads over a bytes buffer, naming the file in errors."""

    def __init__(self, buf: bytes | memoryview, source: str):
        self.buf = memoryview(buf)
        self.pos = 0
        self.source = source

    def fail(self, what: str) -> FormatError:
        return FormatError(f"{self.source}: {what} (at byte {self.pos} of {len(self.buf)})")

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise self.fail(f"file ends inside {what}: {n} bytes needed, "
                            f"{len(self.buf) - self.pos} left (truncated file?)")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size, what))

    def u64(self, what: str) -> int:
        return self.unpack("<Q", what)[0]

    def i32(self, what: str) -> int:
        return self.unpack("<i", what)[0]

    def u32(self, what: str) -> int:
        return self.unpack("<I", what)[0]

    def shape(self, what: str, numpy_shape: bool) -> tuple | None:
        ndim = self.i32(f"the number of dimensions of {what}")
        if ndim == -1 or (ndim == 0 and not numpy_shape):
            return None
        if ndim < 0 or ndim > 32:
            raise self.fail(f"{what} has {ndim} dimensions")
        dims = self.unpack(f"<{ndim}q", f"the dimensions of {what}")
        _check_dims(self, dims, what)
        return tuple(dims)


def _check_dims(reader: _Reader, dims, what: str) -> None:
    total = 1
    for d in dims:
        if d < 0:
            raise reader.fail(f"{what} has a negative dimension in shape {tuple(dims)}")
        total *= d
        if total > _MAX_ELEMENTS:
            raise reader.fail(f"{what} has an impossible shape {tuple(dims)} (too many elements)")


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _read_array(r: _Reader, index: int) -> _np.ndarray | None:
    what = f"array #{index}"
    start = r.pos
    magic = r.u32(f"the magic number of {what}")
    if magic in (V2_MAGIC, V3_MAGIC):
        numpy_shape = magic == V3_MAGIC
        stype = r.i32(f"the storage type of {what}")
        if stype not in _STORAGE_AUX:
            raise r.fail(f"{what} has unknown storage type {stype} (0 dense, 1 row_sparse, "
                         "2 csr)")
        storage_shape = r.shape(f"the storage shape of {what}", True) if stype else None
        shape = r.shape(f"the shape of {what}", numpy_shape)
    elif magic == V1_MAGIC:
        stype, storage_shape = 0, None
        shape = r.shape(f"the shape of {what}", False)
    else:  # pre-V1: the u32 we read was ndim, followed by u32 dims
        r.pos = start
        ndim = r.u32(f"the number of dimensions of {what}")
        if ndim > 32:
            raise r.fail(f"{what} starts with 0x{magic:08X}, which is not an NDArray magic "
                         "number (0xF993FAC9 V2, 0xF993FACA V3): not an MXNet params file?")
        dims = r.unpack(f"<{ndim}I", f"the dimensions of {what}")
        _check_dims(r, dims, what)
        stype, storage_shape = 0, None
        shape = tuple(dims) if ndim else None
    if shape is None:
        return None
    r.take(8, f"the device of {what}")
    code = r.i32(f"the type flag of {what}")
    if code == _BF16:
        dtype, itemsize = None, 2
    elif code in DTYPE_CODES:
        dtype = DTYPE_CODES[code]
        itemsize = dtype.itemsize
    else:
        raise r.fail(f"{what} has unknown type flag {code}")
    aux = []
    for aux_name in _STORAGE_AUX[stype]:
        aux_code = r.i32(f"the {aux_name} type of sparse {what}")
        if aux_code not in DTYPE_CODES or DTYPE_CODES[aux_code].kind not in "iu":
            raise r.fail(f"sparse {what} has {aux_name} of type flag {aux_code}, not an integer")
        aux_shape = r.shape(f"the {aux_name} shape of sparse {what}", True)
        aux.append((DTYPE_CODES[aux_code], aux_shape or (0,)))
    value_shape = storage_shape if stype else shape
    if value_shape is None:
        raise r.fail(f"sparse {what} has no storage shape")
    raw = r.take(itemsize * _prod(value_shape), f"the data of {what}")
    values = _decode(raw, code, dtype, value_shape)
    aux_arrays = [_np.frombuffer(r.take(dt.itemsize * _prod(s), f"the {n} of sparse {what}"),
                                 dtype=dt).reshape(s)
                  for (dt, s), n in zip(aux, _STORAGE_AUX[stype])]
    if stype == 0:
        return values
    return _densify(r, what, stype, shape, values, aux_arrays)


def _decode(raw: memoryview, code: int, dtype, shape) -> _np.ndarray:
    if code == _BF16:  # bfloat16 is the top half of a float32
        half = _np.frombuffer(raw, dtype="<u2").astype(_np.uint32) << 16
        return half.view(_np.float32).reshape(shape)
    # NOTE: copy, so the array owns aligned memory and outlives the file buffer.
    return _np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _densify(r: _Reader, what: str, stype: int, shape, values, aux) -> _np.ndarray:
    dense = _np.zeros(shape, values.dtype)
    if stype == 1:  # row_sparse: values[i] is row indices[i]
        (indices,) = aux
        if len(indices) != len(values) or (len(indices) and (indices.min() < 0 or
                                                              indices.max() >= shape[0])):
            raise r.fail(f"row_sparse {what} has row indices outside its {shape[0]} rows")
        dense[indices.astype(_np.int64)] = values
        return dense
    indptr, indices = aux
    rows, cols = shape if len(shape) == 2 else (0, 0)
    if (len(shape) != 2 or len(indptr) != rows + 1 or len(indices) != len(values)
            or (len(indptr) and (indptr[0] != 0 or indptr[-1] != len(values)
                                 or (_np.diff(indptr) < 0).any()))
            or (len(indices) and (indices.min() < 0 or indices.max() >= cols))):
        raise r.fail(f"csr {what} has inconsistent indptr/indices for shape {shape}")
    row_of = _np.repeat(_np.arange(rows), _np.diff(indptr).astype(_np.int64))
    dense[row_of, indices.astype(_np.int64)] = values
    return dense


def load_params_bytes(buf: bytes | memoryview, source: str = "<bytes>"):
    """Parse a params file's bytes: a dict name -> NumPy array, or a list when unnamed."""
    r = _Reader(buf, source)
    magic = r.u64("the file header")
    if magic != LIST_MAGIC:
        raise r.fail(f"wrong magic number 0x{magic:X}: not an MXNet/kiln params file "
                     f"(expected 0x{LIST_MAGIC:X})")
    r.u64("the reserved header field")
    count = r.u64("the number of arrays")
    # Each record takes at least 12 bytes, which bounds a hostile count before any allocation.
    if count > (len(r.buf) - r.pos) // 12:
        raise r.fail(f"the header claims {count} arrays, more than the file can hold")
    arrays = [_read_array(r, i) for i in range(count)]
    n_names = r.u64("the number of names")
    if n_names not in (0, count):
        raise r.fail(f"{n_names} names for {count} arrays")
    names = []
    for i in range(n_names):
        length = r.u64(f"the length of name #{i}")
        raw = bytes(r.take(length, f"name #{i}"))
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise r.fail(f"name #{i} is not valid UTF-8: {raw[:40]!r}") from None
        names.append(name)
    if r.pos != len(r.buf):
        raise r.fail(f"{len(r.buf) - r.pos} unexpected bytes after the last name")
    if not names:
        return arrays
    seen = set()
    for name in names:
        if name in seen:
            raise FormatError(f"{source}: the name {name!r} appears twice")
        seen.add(name)
    return dict(zip(names, arrays))


def load_params(file) -> dict | list:
    """Read a params file into a dict name -> kiln array (or a list when it has no names)."""
    source = os.fspath(file) if isinstance(file, (str, os.PathLike)) else getattr(
        file, "name", "<stream>")
    try:
        if isinstance(file, (str, os.PathLike)):
            with open(file, "rb") as f:
                buf = f.read()
        else:
            buf = file.read()
    except OSError as e:
        raise FormatError(f"{source}: cannot read ({e.strerror or e})") from e
    out = load_params_bytes(buf, source)
    if isinstance(out, dict):
        return {k: (wrap(v) if v is not None else None) for k, v in out.items()}
    return [wrap(v) if v is not None else None for v in out]


def _encode_record(arr: _np.ndarray, numpy_shape: bool) -> list[bytes]:
    dtype = arr.dtype.newbyteorder("=")
    if dtype not in _CODE_OF:
        raise KilnError(f"cannot save an array of dtype {arr.dtype} in the params format")
    if arr.ndim == 0 and not numpy_shape:
        raise KilnError("a 0-d array cannot be saved in the V2 (legacy) format; use V3")
    parts = [struct.pack("<Ii", V3_MAGIC if numpy_shape else V2_MAGIC, 0),
             struct.pack(f"<i{arr.ndim}q", arr.ndim, *arr.shape),
             struct.pack("<iii", 1, 0, _CODE_OF[dtype]),
             _np.ascontiguousarray(arr, dtype=dtype.newbyteorder("<")).tobytes()]
    return parts


def dump_params_bytes(data, numpy_shape: bool = True) -> bytes:
    """The bytes of a params file holding `data` (an array, a list or a dict of arrays)."""
    if isinstance(data, Mapping):
        names = [str(k) for k in data]
        arrays = list(data.values())
    else:
        names = []
        arrays = [data] if isinstance(data, (ndarray, _np.ndarray)) else list(data)
    parts = [struct.pack("<QQQ", LIST_MAGIC, 0, len(arrays))]
    for a in arrays:
        if getattr(a, "_kiln_symbolic", False):
            raise KilnError("cannot save a symbol's value: it has none outside a compiled run")
        arr = a._data if isinstance(a, ndarray) else _np.asarray(a)
        parts.extend(_encode_record(arr, numpy_shape))
    parts.append(struct.pack("<Q", len(names)))
    for name in names:
        raw = name.encode("utf-8")
        parts.append(struct.pack("<Q", len(raw)))
        parts.append(raw)
    return b"".join(parts)


def save_params(file, data: ndarray | Sequence | Mapping, numpy_shape: bool = True) -> None:
    """Write arrays in the params format: V3 records by default (MXNet numpy mode); pass
    `numpy_shape=False` for V2 records that MXNet reads outside numpy mode."""
    buf = dump_params_bytes(data, numpy_shape)
    if isinstance(file, (str, os.PathLike)):
        tmp = f"{os.fspath(file)}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(buf)
        os.replace(tmp, file)  # never leave a half-written file under the real name
    else:
        _write(file, buf)


def _write(stream: BinaryIO, buf: bytes) -> None:
    stream.write(buf)
