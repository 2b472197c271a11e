"""Image transforms (MXNet Gluon's `gluon.data.vision.transforms`), as blocks.

Use them on the data part of a dataset:

    >>> t = transforms.Compose([transforms.ToTensor(), transforms.Normalize(0.5, 0.25)])
    >>> train = train.transform_first(t)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as _np

from .... import numpy as np
from ....base import KilnError, ShapeError
from ...block import Block, HybridBlock
from ...nn import Lambda, Sequential

__all__ = ["Compose", "ToTensor", "Normalize", "Cast"]


class Compose(Sequential):
    """Apply several transforms in order (blocks, or plain functions of one array)."""

    def __init__(self, transforms: Sequence[Block | Callable]):
        super().__init__()
        for t in transforms:
            if not isinstance(t, Block):
                if not callable(t):
                    raise KilnError(f"Compose: {t!r} is neither a Block nor a function")
                t = Lambda(t)
            self.add(t)


class Cast(HybridBlock):
    """Convert to `dtype`."""

    def __init__(self, dtype="float32"):
        super().__init__()
        self._dtype = _np.dtype(dtype)

    def forward(self, x):
        return np.astype(x, self._dtype)

    def _repr_args(self) -> str:
        return self._dtype.name


class ToTensor(HybridBlock):
    """(H, W, C) or (N, H, W, C) images in [0, 255] to float32 (C, H, W) / (N, C, H, W) in
    [0, 1]. A 2-D (H, W) image becomes (1, H, W)."""

    def forward(self, x):
        ndim = len(x.shape)
        x = np.astype(x, _np.float32) / 255.0
        if ndim == 2:
            return np.expand_dims(x, 0)
        if ndim == 3:
            return np.transpose(x, (2, 0, 1))
        if ndim == 4:
            return np.transpose(x, (0, 3, 1, 2))
        raise ShapeError(f"ToTensor: expected an image (H, W, C) or a batch (N, H, W, C), got "
                         f"shape {tuple(x.shape)}")


class Normalize(HybridBlock):
    """(x - mean) / std per channel, for (C, H, W) or (N, C, H, W) tensors.

    `mean` and `std` are numbers (every channel) or one value per channel.
    """

    def __init__(self, mean: float | Sequence[float] = 0.0,
                 std: float | Sequence[float] = 1.0):
        super().__init__()
        self._mean = _np.asarray(mean, dtype=_np.float32).reshape(-1)
        self._std = _np.asarray(std, dtype=_np.float32).reshape(-1)
        if (self._std == 0).any():
            raise KilnError(f"Normalize: std must not be zero, got {std}")

    def forward(self, x):
        ndim = len(x.shape)
        if ndim not in (3, 4):
            raise ShapeError(f"Normalize: expected (C, H, W) or (N, C, H, W), got shape "
                             f"{tuple(x.shape)}")
        c = x.shape[-3]
        for name, v in (("mean", self._mean), ("std", self._std)):
            if v.size not in (1, c):
                raise ShapeError(f"Normalize: {v.size} {name} values for {c} channels")
        shape = (-1, 1, 1)
        mean = self._mean.reshape(shape)
        inv_std = (1.0 / self._std).reshape(shape)
        return (x - mean) * inv_std

    def _repr_args(self) -> str:
        return f"mean={self._mean.tolist()}, std={self._std.tolist()}"
