"""The native kernel library's loops for eager operators, where NumPy's are slow.

When native code is in use in this process (a C compiler exists and `KILN_BACKEND` is not
`numpy`), a few operators' NumPy implementations hand their common case to the binding
(`kiln/backend/native/_binding_eager.c`): 2-D float32 products (`_gemm.py`), softmax
cross-entropy and its gradient, relu and sigmoid, a float32 array times a bool mask (relu's
gradient), sums over a leading axis (bias gradients), and 1-D and 2-D convolution and pooling
with their gradients (`conv.py`, `pooling.py`). Each binding function returns None for arrays
it does not take, and the operator then computes in NumPy, which stays the reference.

Why: in an eager training step most arrays are a batch's activations (256x256 floats for
bench W2), and NumPy's loops for these are two to five times slower than one C pass (a mask
is cast to float32 in chunks first; a relu compares and selects in two passes). For a
convolutional net the NumPy engine's im2col and window loops were most of an eager step.

`call(name, *args)` runs the binding's function and returns its result, or None when native
code is not in use or the function declines; `function(name)` is the function itself;
`use_native(False)` switches them all off (tests compare both paths).
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["function", "call", "use_native"]

# name -> the binding's function or None, filled on first use of each name
_FUNCTIONS: dict = {}
# [binding module or None]: resolved on the first call that wants it
_BINDING: list = []


def _binding():
    if _BINDING:
        return _BINDING[0]
    binding = None
    if os.environ.get("KILN_BACKEND", "auto") in ("auto", "native", ""):
        try:
            from ..backend.native import optimizer_kernels

            if optimizer_kernels.available():      # builds the runtime once per machine
                binding = optimizer_kernels._binding()
        except Exception:   # whatever stops native code from loading, NumPy computes
            binding = None
    _BINDING[:] = [binding]
    return binding


def function(name: str) -> Callable | None:
    """The binding's function `name`, or None when native code is not in use here."""
    try:
        return _FUNCTIONS[name]
    except KeyError:
        binding = _binding()
        fn = _FUNCTIONS[name] = None if binding is None else getattr(binding, name, None)
        return fn


def call(name: str, *args):
    """The binding's function `name` on `args`: its result, or None when native code is not
    in use here or the function declines these arguments (the caller then uses NumPy)."""
    fn = function(name)
    return None if fn is None else fn(*args)


def use_native(flag: bool | None) -> None:
    """Force the native loops off (False), or back to the automatic choice (None/True)."""
    _FUNCTIONS.clear()
    if flag is False:
        _BINDING[:] = [None]
    else:
        _BINDING.clear()
