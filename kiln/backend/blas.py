"""How many threads NumPy's BLAS uses, where kiln can set it (the OpenBLAS NumPy ships).

Recurrent layers run one small matrix product per time step. Split over threads, such a
product spends more on synchronisation than it saves, and on a machine whose other cores are
busy a BLAS thread waiting for its turn stalls every step (several times slower on the shared
2-core test machine). `blas_threads(1)` runs a block of such products on one thread (the
recurrent operator gets its parallelism from splitting the batch instead). Without a known BLAS
it does nothing.
"""

from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager
from collections.abc import Iterator

__all__ = ["blas_threads", "blas_thread_control"]

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
            "openblas_get_num_threads64_", "openblas_get_num_threads")
_CONTROL: list = []   # [(getter, setter)] once looked up; [None] when there is none


def _loaded_openblas() -> list[str]:
    """Paths of the OpenBLAS libraries this process has loaded (Linux), else NumPy's own."""
    paths: list[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                path = line.rsplit(" ", 1)[-1].strip()
                if "openblas" in os.path.basename(path).lower() and path not in paths:
                    paths.append(path)
    except OSError:
        pass
    if not paths:
        import glob

        import numpy

        paths = glob.glob(os.path.join(os.path.dirname(numpy.__file__), os.pardir,
                                       "numpy.libs", "*openblas*"))
    return paths


def blas_thread_control():
    """(get, set) functions for the BLAS thread count, or None."""
    if not _CONTROL:
        found = None
        for path in _loaded_openblas():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            getter = next((getattr(lib, n) for n in _GETTERS if hasattr(lib, n)), None)
            setter = next((getattr(lib, n) for n in _SETTERS if hasattr(lib, n)), None)
            if getter is not None and setter is not None:
                getter.restype = ctypes.c_int
                setter.argtypes = [ctypes.c_int]
                found = (getter, setter)
                break
        _CONTROL.append(found)
    return _CONTROL[0]


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Run the block with NumPy's BLAS on `n` threads (no-op where that cannot be set)."""
    control = blas_thread_control()
    if control is None:
        yield
        return
    get, set_ = control
    before = get()
    if before == n:
        yield
        return
    set_(n)
    try:
        yield
    finally:
        set_(before)
