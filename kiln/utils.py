"""Training utilities: timing (`Timer`, `Benchmark`), `split_and_load`, `clip_global_norm`.

`kiln.gluon.utils` is this module, as MXNet's `gluon.utils`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence

import numpy as _np

from .base import KilnError, ShapeError
from .ndarray import cpu, ndarray, wrap

__all__ = ["Timer", "Benchmark", "split_data", "split_and_load", "clip_global_norm"]


class Timer:
    """Record several running times (d2l's Timer): starts on creation."""

    def __init__(self):
        self.times: list[float] = []
        self.start()

    def start(self) -> None:
        """Start (or restart) the clock."""
        self.tik = time.perf_counter()

    def stop(self) -> float:
        """Stop the clock, record the time since `start()` and return it (seconds)."""
        self.times.append(time.perf_counter() - self.tik)
        return self.times[-1]

    def avg(self) -> float:
        """Mean of the recorded times."""
        if not self.times:
            raise KilnError("Timer.avg(): no time recorded yet; call stop() first")
        return sum(self.times) / len(self.times)

    def sum(self) -> float:
        """Total of the recorded times."""
        return sum(self.times)

    def cumsum(self) -> list[float]:
        """Running totals of the recorded times."""
        return _np.cumsum(self.times).tolist()


class Benchmark:
    """Time a `with` block and print `'{description}: {seconds:.4f} sec'` at its end."""

    def __init__(self, description: str = "Done"):
        self.description = description

    def __enter__(self) -> Benchmark:
        self.timer = Timer()
        return self

    def __exit__(self, *exc) -> None:
        # kiln computes synchronously, so nothing is pending when the block ends.
        self.elapsed = self.timer.stop()
        print(f"{self.description}: {self.elapsed:.4f} sec")


def split_data(data, num_slice: int, batch_axis: int = 0, even_split: bool = True) -> list:
    """Split `data` into `num_slice` slices along `batch_axis`.

    With `even_split=True` the size along the axis must be divisible by `num_slice`.
    """
    if num_slice < 1:
        raise KilnError(f"split_data: num_slice must be >= 1, not {num_slice}")
    size = data.shape[batch_axis]
    if even_split and size % num_slice != 0:
        raise ShapeError(
            f"data with shape {tuple(data.shape)} cannot be evenly split into {num_slice} "
            f"slices along axis {batch_axis}. Use a batch size that's a multiple of "
            f"{num_slice} or set even_split=False to allow uneven partitioning of data.")
    if num_slice > size:
        raise ShapeError(f"too many slices ({num_slice}) for data with shape "
                         f"{tuple(data.shape)} along axis {batch_axis}; use fewer devices or "
                         "a larger batch")
    if num_slice == 1:
        return [data]
    step = size // num_slice
    bounds = [i * step for i in range(num_slice)] + [size]
    if not even_split:
        # spread the remainder over the first slices, so sizes differ by at most one
        extra = size % num_slice
        bounds = [i * step + min(i, extra) for i in range(num_slice)] + [size]
    src = data._data if isinstance(data, ndarray) else _np.asarray(data)
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        index = [slice(None)] * src.ndim
        index[batch_axis] = slice(lo, hi)
        out.append(wrap(src[tuple(index)]))
    return out


def split_and_load(data, ctx_list: Sequence | None = None, batch_axis: int = 0,
                   even_split: bool = True, device_list=None) -> list:
    """Split `data` along `batch_axis` into one slice per device of `ctx_list`.

    kiln computes on the CPU, so every slice stays there; a single device gets `data` whole.
    """
    devices = device_list if device_list is not None else ctx_list
    if devices is None:
        devices = [cpu()]
    if not isinstance(devices, (list, tuple)):
        devices = [devices]
    if not isinstance(data, ndarray):
        data = wrap(_np.asarray(data))
    return split_data(data, len(devices), batch_axis, even_split)


def clip_global_norm(arrays: Sequence[ndarray], max_norm: float,
                     check_isfinite: bool = True):
    """Rescale `arrays` in place so that their joint L2 norm is at most `max_norm`.

    Returns the norm before clipping (a float; a 0-d array when check_isfinite=False).
    """
    if not arrays:
        raise KilnError("clip_global_norm: no arrays given")
    if max_norm <= 0:
        raise KilnError(f"clip_global_norm: max_norm must be positive, not {max_norm}")
    datas = []
    for a in arrays:
        if not isinstance(a, ndarray):
            raise KilnError(f"clip_global_norm: expected kiln arrays (e.g. param.grad()), got "
                            f"{type(a).__name__}")
        datas.append(a._data)
    total = math.sqrt(sum(float(_np.dot(d.ravel(), d.ravel())) for d in datas))
    if check_isfinite and not math.isfinite(total):
        warnings.warn(UserWarning("nan or inf is detected. Clipping results will be undefined."),
                      stacklevel=2)
    scale = max_norm / (total + 1e-8)
    if scale < 1.0:
        with _np.errstate(invalid="ignore"):     # inf * 0: already warned about above
            for d in datas:
                d *= d.dtype.type(scale)
    return total if check_isfinite else wrap(_np.asarray(total, dtype=_np.float32))
