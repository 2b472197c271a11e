"""The LSTM of the `rnn` operator in C (runtime/kernels/lstm.c), for float32 layers.

`kiln/ops/rnn.py` asks `lstm_forward` / `lstm_backward` first and computes in NumPy when they
return None: another dtype, or no native kernels in this process (no C compiler, or
`KILN_BACKEND=numpy`, which keeps every computation in NumPy). The results are the NumPy
implementation's up to the order of float32 additions and the kernels' exp/tanh (a few ulp).

Why C: a training step of an LSTM is a sequence of small per-step products and gate passes;
in NumPy each step is about ten array calls over (N, 4H) slices and a product run by a
single-threaded BLAS (the products are too small to share), and Python threads over the two
halves of the batch recover only part of a second core. Here each step is one kiln_sgemm on
kiln's pool and one fused pass over the rows (bench/lstm.py measures the layer).
"""

from __future__ import annotations

import ctypes
import os

import numpy as _np

__all__ = ["lstm_forward", "lstm_backward", "use_native"]

_F32 = _np.dtype(_np.float32)
_FNS: list = []        # [(forward, backward)] or [None], resolved on first use
_P = ctypes.c_void_p
_L = ctypes.c_long


def _resolve():
    fns = None
    if os.environ.get("KILN_BACKEND", "auto") in ("auto", "native", ""):
        try:
            from . import optimizer_kernels
            from .runtime import _load, load_runtime

            if optimizer_kernels.available():     # builds the runtime once per machine
                lib = _load(load_runtime().kernels_lib, global_symbols=True)
                fwd, bwd = lib.kiln_lstm_forward_f32, lib.kiln_lstm_backward_f32
                fwd.argtypes = [_L] * 4 + [_P] * 7 + [ctypes.c_int] + [_P] * 5
                fwd.restype = None
                bwd.argtypes = [_L] * 4 + [_P] * 11 + [ctypes.c_int] + [_P] * 7
                bwd.restype = ctypes.c_int
                fns = (fwd, bwd)
        except Exception:   # whatever stops native code from loading, NumPy computes
            fns = None
    _FNS[:] = [fns]
    return fns


def use_native(flag: bool | None) -> None:
    """Force the C kernels off (False), or back to the automatic choice (None/True)."""
    if flag is False:
        _FNS[:] = [None]
    else:
        _FNS.clear()


def _functions():
    return _FNS[0] if _FNS else _resolve()


def _ready(arrays) -> list | None:
    """C-ordered float32 versions of `arrays`, or None when one is not float32."""
    if any(a.dtype != _F32 for a in arrays):
        return None
    return [_np.ascontiguousarray(a) for a in arrays]


def _ptr(a: _np.ndarray) -> int:
    return a.ctypes.data


def _outputs(out, shapes, inputs) -> list[_np.ndarray]:
    """Arrays to write the results into: the caller's `out` arrays where they fit (float32,
    C-ordered, writeable, the right shape, sharing no memory with an input), new ones else."""
    made = []
    for i, shape in enumerate(shapes):
        a = out[i] if out is not None and i < len(out) else None
        if not (isinstance(a, _np.ndarray) and a.dtype == _F32 and a.shape == shape
                and a.flags.c_contiguous and a.flags.writeable
                and not any(_np.may_share_memory(a, x) for x in inputs)):
            a = _np.empty(shape, _F32)
        made.append(a)
    return made


def lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0, reverse: bool, out=None):
    """(y, last state, last cell, gate activations, cell states), or None (use NumPy).
    `out`: arrays to fill where they fit (see _outputs)."""
    fns = _functions()
    arrays = _ready((x, w_ih, w_hh, b_ih, b_hh, h0, c0)) if fns else None
    if arrays is None:
        return None
    x, w_ih, w_hh, b_ih, b_hh, h0, c0 = arrays
    t_len, n, i = x.shape
    h = w_hh.shape[1]
    outs = _outputs(out, [(t_len, n, h), (n, h), (n, h), (t_len, n, 4 * h), (t_len, n, h)],
                    arrays)
    fns[0](t_len, n, i, h, *map(_ptr, arrays), int(bool(reverse)), *map(_ptr, outs))
    return tuple(outs)


def lstm_backward(dy, dh, dc, x, w_ih, w_hh, h0, c0, y, gates, cells, reverse: bool,
                  out=None):
    """(dx, dW_ih, dW_hh, db_ih, db_hh, dh0, dc0), or None (use NumPy).
    `out`: arrays to fill where they fit (see _outputs)."""
    fns = _functions()
    arrays = _ready((dy, dh, dc, x, w_ih, w_hh, h0, c0, y, gates, cells)) if fns else None
    if arrays is None:
        return None
    x, w_ih, w_hh = arrays[3], arrays[4], arrays[5]
    t_len, n, i = x.shape
    h = w_hh.shape[1]
    outs = tuple(_outputs(out, [x.shape, w_ih.shape, w_hh.shape, (4 * h,), (4 * h,), (n, h),
                                (n, h)], arrays))
    if fns[1](t_len, n, i, h, *map(_ptr, arrays), int(bool(reverse)), *map(_ptr, outs)):
        raise MemoryError("lstm backward: no memory for the gate gradients "
                          f"({t_len} x {n} x {4 * h} float32)")
    return outs
