"""2-D float32 matrix products for the operators' NumPy implementations.

`matmul(a, b, out=None, bias=None)` computes `a @ b` like `numpy.matmul`, plus a dense layer's
bias when given. When the native kernels are in use in this process (a C compiler exists and
`KILN_BACKEND` is not `numpy`), large 2-D float32 products run in the kernel library's
`kiln_sgemm` instead, through the binding's `matmul_f32`: single-threaded BLAS blocks (MKL's
when the `mkl` package is installed, else OpenBLAS's, else kiln's own kernels) on kiln's thread
pool, with the GIL released. On the project's two-core machine NumPy's OpenBLAS reached ~90
GFLOP/s on a training step's products (batch 256, hidden 256) with its own two threads, and
much less when other processes were busy; the same products ran at 110-170 GFLOP/s through
kiln_sgemm on OpenBLAS blocks, and faster on MKL's
(bench/train_ab.py, bench/gemm.py). Transposed views (`w.T`, `g.T`) are read in place, as
the BLAS's transpose flags, never copied.

Everything else, and any product the binding declines (another dtype, more than two
dimensions, strides that are neither row- nor column-wise, an `out` overlapping an operand,
fewer than `MIN_WORK` multiply-adds), goes to NumPy, which stays the reference: the results
differ from NumPy's only by the order of the float32 additions.

`use_native(False)` switches the native path off, with `_native`'s other loops (tests
compare both paths).
"""

from __future__ import annotations

import numpy as _np

from . import _native

__all__ = ["matmul", "use_native", "native_in_use"]

#: m*n*k below which NumPy's call is cheaper than the kernel library's (measured:
#: bench/train_ab.py). Small products gain nothing
#: from threads and NumPy's dispatch is already short.
MIN_WORK = 64.0 * 64.0 * 64.0

_f32 = _np.dtype(_np.float32)
_np_matmul = _np.matmul


def use_native(flag: bool | None) -> None:
    """Force the native path off (False), or back to the automatic choice (None/True); the
    other eager loops of `_native` with it."""
    _native.use_native(flag)


def native_in_use() -> bool:
    """Whether large 2-D float32 products run in the kernel library (resolves it now)."""
    return _native.function("matmul_f32") is not None


def matmul(a, b, out=None, bias=None):
    """`a @ b` (NumPy's `matmul` semantics), plus `bias` along the last axis when given (a dense
    layer); 2-D float32 products above MIN_WORK in C."""
    if a.dtype is _f32 and b.dtype is _f32 and a.ndim == 2 and b.ndim == 2:
        fn = _native.function("matmul_f32")
        if fn is not None:
            r = fn(a, b, out, MIN_WORK, bias)
            if r is not None:
                return r
    y = _np_matmul(a, b) if out is None else _np_matmul(a, b, out=out)
    if bias is not None:
        y += bias
    return y
