"""kiln: a deep-learning framework that joins imperative and symbolic programming.

Write models imperatively with NumPy-style arrays (`kiln.np`, `kiln.npx`), autograd and Gluon
blocks; call `hybridize()` and the same code is traced into a graph, optimised, and run compiled.

    >>> from kiln import np, npx
    >>> from kiln.gluon import nn
"""

from __future__ import annotations

from . import autograd, base, ops
from . import ndarray
from . import numpy as np
from . import numpy_extension as npx
from . import symbol
from .base import KilnError
from .ndarray import Device, cpu, current_device
from .jit import jit  # noqa: F401

nd = ndarray
sym = symbol
context = ndarray
Context = Device
current_context = current_device

__version__ = "0.1.0"

__all__ = ["np", "npx", "nd", "ndarray", "sym", "symbol", "autograd", "ops", "base", "KilnError",
           "Device",
           "cpu", "current_device"]
