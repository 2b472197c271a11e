"""Fused optimizer updates in C, for `gluon.Trainer` to call when they are available.

Each function updates float32 NumPy arrays in place with MXNet's formulas, in one pass over the
memory (NumPy needs four to six passes and scratch buffers for the same step):

    g   = clip(rescale * grad, clip) + wd * weight          (clip <= 0 or None: no clipping)
    SGD:  mom = momentum * mom - lr * g;  weight += mom       (mom None: weight -= lr * g)
    Adam: mean = beta1 * mean + (1 - beta1) * g
          var  = beta2 * var + (1 - beta2) * g * g
          weight -= lr_t * mean / (sqrt(var) + epsilon)
          lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)

The `_multi` forms update a whole list of parameters in one native call (per-parameter learning
rates and weight decays), which is what a Trainer step should use.

    >>> from kiln.backend.native import optimizer_kernels as ok
    >>> if ok.available():
    ...     ok.sgd_update(w, g, mom, lr=0.1, momentum=0.9, wd=1e-4, rescale=1 / 64)

`available()` is False where no C compiler exists; callers then keep their NumPy updates. The
functions raise TypeError for arrays that are not C-contiguous float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as _np

__all__ = ["available", "sgd_update", "adam_update", "sgd_update_multi", "adam_update_multi",
           "adam_lr"]

_BINDING: list = []


def _binding():
    if not _BINDING:
        from .runtime import load_runtime

        _BINDING.append(load_runtime().binding)
    return _BINDING[0]


def available() -> bool:
    """Whether the native kernels can be used (builds them the first time on this machine)."""
    if _BINDING:
        return True
    from . import native_available

    if not native_available():
        return False
    from .toolchain import CompileError

    try:
        _binding()
    except CompileError:
        return False
    return True


def _clip(clip) -> float:
    return -1.0 if clip is None or clip <= 0 else float(clip)


def sgd_update(weight: _np.ndarray, grad: _np.ndarray, mom: _np.ndarray | None, lr: float,
               momentum: float = 0.0, wd: float = 0.0, rescale: float = 1.0,
               clip: float | None = None) -> None:
    """One SGD step on `weight` (and `mom`) in place."""
    _binding().sgd_update(weight, grad, mom, float(lr), float(momentum), float(wd),
                          float(rescale), _clip(clip))


def adam_update(weight: _np.ndarray, grad: _np.ndarray, mean: _np.ndarray, var: _np.ndarray,
                lr: float, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8,
                wd: float = 0.0, rescale: float = 1.0, clip: float | None = None,
                t: int | None = None) -> None:
    """One Adam step in place. `lr` is used as given, unless `t` (the update count, from 1) is
    given: then MXNet's bias correction is applied to it (see `adam_lr`)."""
    if t is not None:
        lr = adam_lr(lr, beta1, beta2, t)
    _binding().adam_update(weight, grad, mean, var, float(lr), float(beta1), float(beta2),
                           float(epsilon), float(wd), float(rescale), _clip(clip))


def adam_lr(lr: float, beta1: float, beta2: float, t: int) -> float:
    """MXNet's bias-corrected Adam rate for update number t (from 1)."""
    return lr * math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)


def sgd_update_multi(weights: Sequence[_np.ndarray], grads: Sequence[_np.ndarray],
                     moms: Sequence[_np.ndarray] | None, lrs: Sequence[float],
                     wds: Sequence[float], momentum: float = 0.0, rescale: float = 1.0,
                     clip: float | None = None) -> None:
    """SGD steps for many parameters in one native call (moms None: no momentum)."""
    _binding().sgd_update_multi(weights, grads, moms, lrs, wds, float(momentum), float(rescale),
                                _clip(clip))


def adam_update_multi(weights: Sequence[_np.ndarray], grads: Sequence[_np.ndarray],
                      means: Sequence[_np.ndarray], variances: Sequence[_np.ndarray],
                      lrs: Sequence[float], wds: Sequence[float], beta1: float = 0.9,
                      beta2: float = 0.999, epsilon: float = 1e-8, rescale: float = 1.0,
                      clip: float | None = None) -> None:
    """Adam steps for many parameters in one native call; `lrs` are bias-corrected rates."""
    _binding().adam_update_multi(weights, grads, means, variances, lrs, wds, float(beta1),
                                 float(beta2), float(epsilon), float(rescale), _clip(clip))
