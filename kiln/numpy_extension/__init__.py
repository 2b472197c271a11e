"""`kiln.npx`: the operators NumPy lacks (neural-network layers) and MXNet's runtime helpers.

Like `kiln.np`, every operator here is a thin wrapper over the registry and works on arrays and
symbols alike.
"""

from __future__ import annotations

import functools

from ..base import KilnError
from ..control_flow import cond, foreach, while_loop  # noqa: F401
from ..ndarray import Device, cpu, current_device  # noqa: F401
from ..ops.conv import convolution, deconvolution  # noqa: F401
from ..ops.elementwise import relu, sigmoid, softrelu, softsign, stop_gradient, tanh  # noqa: F401
from ..ops.nn import (  # noqa: F401
    activation, batch_flatten, batch_norm, dropout, embedding, fully_connected, layer_norm,
    log_softmax, one_hot, pick, softmax,
)
from ..ops.activations import erf, leaky_relu  # noqa: F401
from ..ops.nn_extra import (  # noqa: F401
    arange_like, masked_softmax, reshape, sequence_mask, smooth_l1, topk,
)
from ..ops.norm import group_norm, instance_norm  # noqa: F401
from ..ops.pooling import pooling  # noqa: F401
from ..ops.random import seed  # noqa: F401

_np_active = [True]


def set_np(shape: bool = True, array: bool = True, dtype: bool = False) -> None:
    """Accepted for MXNet code: NumPy semantics are kiln's only semantics."""
    _np_active[0] = True


def reset_np() -> None:
    """Accepted for MXNet code; kiln keeps NumPy semantics."""


def is_np_array() -> bool:
    return True


def is_np_shape() -> bool:
    return True


def use_np(func):
    """Decorator MXNet code puts on blocks and functions; a no-op in kiln."""
    return func


use_np_array = use_np_shape = use_np


def waitall() -> None:
    """Wait for pending computation. kiln computes synchronously, so there is none."""


def gpu(device_id: int = 0) -> Device:
    raise KilnError("kiln computes on the CPU; no GPU device is available (use npx.cpu())")


def num_gpus() -> int:
    return 0


current_context = current_device
cpu_pinned = functools.partial(Device, "cpu_pinned")


def save(file, arr) -> None:
    """Save an array, a list of arrays or a dict of arrays in MXNet's binary .params format."""
    from ..io.params import save_params

    save_params(file, arr)


def load(file):
    """Load what `save` wrote (or an MXNet .params/.nd file): a list or a dict of arrays."""
    from ..io.params import load_params

    return load_params(file)


__all__ = [n for n in list(globals()) if not n.startswith("_")]
