"""kiln: a deep-learning framework that joins imperative and symbolic programming.

Write models imperatively with NumPy-style arrays (`kiln.np`, `kiln.npx`), autograd and Gluon
blocks; call `hybridize()` and the same code is traced into a graph, optimised, and run compiled.

    >>> from kiln import np, npx
    >>> from kiln.gluon import nn
"""

from __future__ import annotations

from ._malloc import tune_malloc as _tune_malloc

_tune_malloc()

from . import autograd, base, ops  # noqa: E402
from . import ndarray  # noqa: E402
from . import numpy as np  # noqa: E402
from . import numpy_extension as npx  # noqa: E402
from . import symbol, viz  # noqa: E402
from .base import KilnError  # noqa: E402
from .ndarray import Device, cpu, current_device  # noqa: E402
from .jit import jit  # noqa: E402
from . import init, optimizer, metric, utils  # noqa: E402
from .optimizer import lr_scheduler  # noqa: E402
from . import gluon  # noqa: E402

nd = ndarray
sym = symbol
context = ndarray
Context = Device
current_context = current_device

__version__ = "0.1.0"

__all__ = ["np", "npx", "nd", "ndarray", "sym", "symbol", "autograd", "ops", "base", "KilnError",
           "Device", "cpu", "current_device", "jit", "viz", "init", "optimizer", "lr_scheduler",
           "metric", "utils", "gluon"]
