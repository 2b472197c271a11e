"""Loss functions (MXNet Gluon's `gluon.loss`).

Every loss is a HybridBlock called as `loss(pred, label, sample_weight=None)` that returns one
value per sample: the elementwise loss times `weight` (and `sample_weight`, broadcast), averaged
over every axis but `batch_axis`. The forwards use only `kiln.np`/`npx` operators and no Python
decisions on values, so they run eagerly, record gradients and hybridize alike.
"""

from __future__ import annotations

from .. import numpy as np
from .. import numpy_extension as npx
from ..base import KilnError
from ..ops import nn as _nn
from .block import HybridBlock

__all__ = ["Loss", "L2Loss", "L1Loss", "SigmoidBinaryCrossEntropyLoss", "SigmoidBCELoss",
           "SoftmaxCrossEntropyLoss", "SoftmaxCELoss", "KLDivLoss", "HuberLoss", "HingeLoss",
           "SquaredHingeLoss", "LogisticLoss", "TripletLoss", "PoissonNLLLoss",
           "CosineEmbeddingLoss"]


def _reshape_like(x, like):
    """`x` with the shape of `like` (labels given as (N,) for predictions of (N, 1))."""
    if tuple(x.shape) == tuple(like.shape):
        return x
    return np.reshape(x, tuple(like.shape))


def _apply_weighting(loss, weight=None, sample_weight=None):
    if sample_weight is not None:
        loss = loss * sample_weight
    if weight is not None:
        if not isinstance(weight, (int, float)):
            raise KilnError(f"loss weight must be a number, not {type(weight).__name__}")
        loss = loss * weight
    return loss


def _batch_mean(loss, batch_axis: int):
    """Mean over every axis except `batch_axis` (MXNet's `mean(axis=batch_axis, exclude=True)`)."""
    ndim = len(loss.shape)
    axes = tuple(i for i in range(ndim) if i != batch_axis % max(ndim, 1))
    if not axes:
        return loss
    return np.mean(loss, axis=axes)


class Loss(HybridBlock):
    """Base class of losses: holds the global `weight` and the `batch_axis`."""

    def __init__(self, weight: float | None = None, batch_axis: int = 0, **kwargs):
        super().__init__(**kwargs)
        self._weight = weight
        self._batch_axis = batch_axis

    def _repr_args(self) -> str:
        return f"batch_axis={self._batch_axis}, w={self._weight}"

    def forward(self, pred, label, *args):
        raise NotImplementedError(f"{type(self).__name__} must define forward(pred, label)")


class L2Loss(Loss):
    """0.5 * weight * (label - pred)^2, averaged per sample."""

    def __init__(self, weight: float = 1.0, batch_axis: int = 0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)

    def forward(self, pred, label, sample_weight=None):
        label = _reshape_like(label, pred)
        loss = np.square(label - pred)
        loss = _apply_weighting(loss, self._weight / 2, sample_weight)
        return _batch_mean(loss, self._batch_axis)


class L1Loss(Loss):
    """weight * |label - pred|, averaged per sample."""

    def __init__(self, weight: float | None = None, batch_axis: int = 0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)

    def forward(self, pred, label, sample_weight=None):
        label = _reshape_like(label, pred)
        loss = np.abs(label - pred)
        loss = _apply_weighting(loss, self._weight, sample_weight)
        return _batch_mean(loss, self._batch_axis)


class SigmoidBinaryCrossEntropyLoss(Loss):
    """Binary cross-entropy: -(y log p + (1 - y) log(1 - p)) with p = sigmoid(pred).

    With `from_sigmoid=False` (default) `pred` are logits and the stable form
    max(x, 0) - x*y + log(1 + exp(-|x|)) is used; `pos_weight` scales the positive term.
    """

    def __init__(self, from_sigmoid: bool = False, weight: float | None = None,
                 batch_axis: int = 0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._from_sigmoid = from_sigmoid

    def forward(self, pred, label, sample_weight=None, pos_weight=None):
        label = _reshape_like(label, pred)
        if not self._from_sigmoid:
            if pos_weight is None:
                loss = npx.relu(pred) - pred * label + npx.softrelu(-np.abs(pred))
            else:
                # (1 - y) x + (1 + (pw - 1) y) log(1 + exp(-x)), written stably
                log_weight = 1 + (pos_weight - 1) * label
                loss = pred - pred * label + log_weight * (
                    npx.softrelu(-np.abs(pred)) + npx.relu(-pred))
        else:
            eps = 1e-12
            pos = np.log(pred + eps) * label
            if pos_weight is not None:
                pos = pos * pos_weight
            loss = -(pos + np.log(1.0 - pred + eps) * (1.0 - label))
        loss = _apply_weighting(loss, self._weight, sample_weight)
        return _batch_mean(loss, self._batch_axis)


SigmoidBCELoss = SigmoidBinaryCrossEntropyLoss


class SoftmaxCrossEntropyLoss(Loss):
    """Cross-entropy of softmax(pred) along `axis` against class labels.

    sparse_label=True: `label` holds class indices (shape of pred without `axis`);
    otherwise a distribution of pred's shape. from_logits=True: pred is already log-softmax.
    """

    def __init__(self, axis: int = -1, sparse_label: bool = True, from_logits: bool = False,
                 weight: float | None = None, batch_axis: int = 0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._axis = axis
        self._sparse_label = sparse_label
        self._from_logits = from_logits

    def forward(self, pred, label, sample_weight=None):
        if self._sparse_label and not self._from_logits and sample_weight is None:
            # One fused operator (cheap eagerly, one loop in C): the same values as the
            # composite below. Per position rather than with the class axis kept: the batch
            # mean is the same, and only a sample_weight needs the kept axis to broadcast.
            loss = _nn.softmax_cross_entropy(pred, label, axis=self._axis)
            loss = _apply_weighting(loss, self._weight)
            return _batch_mean(loss, self._batch_axis)
        if not self._from_logits:
            pred = npx.log_softmax(pred, axis=self._axis)
        if self._sparse_label:
            loss = -npx.pick(pred, label, axis=self._axis, keepdims=True)
        else:
            label = _reshape_like(label, pred)
            loss = -np.sum(pred * label, axis=self._axis, keepdims=True)
        loss = _apply_weighting(loss, self._weight, sample_weight)
        return _batch_mean(loss, self._batch_axis)


SoftmaxCELoss = SoftmaxCrossEntropyLoss


class KLDivLoss(Loss):
    """Kullback-Leibler divergence label * (log label - pred).

    from_logits=True (default, as MXNet): `pred` holds log-probabilities; otherwise
    log_softmax is applied along `axis` first. Averaged over non-batch axes as in MXNet 2
    (MXNet 1.x summed them).
    """

    def __init__(self, from_logits: bool = True, axis: int = -1, weight: float | None = None,
                 batch_axis: int = 0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._from_logits = from_logits
        self._axis = axis

    def forward(self, pred, label, sample_weight=None):
        if not self._from_logits:
            pred = npx.log_softmax(pred, axis=self._axis)
        loss = label * (np.log(label + 1e-12) - pred)
        loss = _apply_weighting(loss, self._weight, sample_weight)
        return _batch_mean(loss, self._batch_axis)


class HuberLoss(Loss):
    """Smooth L1: 0.5/rho * d^2 where |d| <= rho, |d| - 0.5 * rho elsewhere."""

    def __init__(self, rho: float = 1.0, weight: float | None = None, batch_axis: int = 0,
                 **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        if rho <= 0:
            raise KilnError(f"HuberLoss: rho must be positive, not {rho}")
        self._rho = rho

    def forward(self, pred, label, sample_weight=None):
        label = _reshape_like(label, pred)
        dist = np.abs(label - pred)
        loss = np.where(dist > self._rho, dist - 0.5 * self._rho,
                        (0.5 / self._rho) * np.square(dist))
        loss = _apply_weighting(loss, self._weight, sample_weight)
        return _batch_mean(loss, self._batch_axis)


class HingeLoss(Loss):
    """max(0, margin - pred * label) for labels in {-1, 1}."""

    def __init__(self, margin: float = 1.0, weight: float | None = None, batch_axis: int = 0,
                 **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._margin = margin

    def forward(self, pred, label, sample_weight=None):
        label = _reshape_like(label, pred)
        loss = npx.relu(self._margin - pred * label)
        loss = _apply_weighting(loss, self._weight, sample_weight)
        return _batch_mean(loss, self._batch_axis)


class SquaredHingeLoss(Loss):
    """max(0, margin - pred * label)^2 for labels in {-1, 1}."""

    def __init__(self, margin: float = 1.0, weight: float | None = None, batch_axis: int = 0,
                 **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._margin = margin

    def forward(self, pred, label, sample_weight=None):
        label = _reshape_like(label, pred)
        loss = np.square(npx.relu(self._margin - pred * label))
        loss = _apply_weighting(loss, self._weight, sample_weight)
        return _batch_mean(loss, self._batch_axis)


class LogisticLoss(Loss):
    """log(1 + exp(-pred * label)); label_format 'signed' ({-1, 1}) or 'binary' ({0, 1})."""

    def __init__(self, weight: float | None = None, batch_axis: int = 0,
                 label_format: str = "signed", **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        if label_format not in ("signed", "binary"):
            raise KilnError(f"LogisticLoss: label_format must be 'signed' or 'binary', not "
                            f"{label_format!r}")
        self._label_format = label_format

    def forward(self, pred, label, sample_weight=None):
        label = _reshape_like(label, pred)
        if self._label_format == "signed":
            label = (label + 1.0) / 2.0          # to {0, 1}
        loss = npx.relu(pred) - pred * label + npx.softrelu(-np.abs(pred))
        loss = _apply_weighting(loss, self._weight, sample_weight)
        return _batch_mean(loss, self._batch_axis)


class TripletLoss(Loss):
    """max(0, |pred - positive|^2 - |pred - negative|^2 + margin), summed over features."""

    def __init__(self, margin: float = 1.0, weight: float | None = None, batch_axis: int = 0,
                 **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._margin = margin

    def forward(self, pred, positive, negative, sample_weight=None):
        positive = _reshape_like(positive, pred)
        negative = _reshape_like(negative, pred)
        axes = tuple(i for i in range(len(pred.shape)) if i != self._batch_axis)
        diff = np.square(positive - pred) - np.square(negative - pred)
        loss = npx.relu(np.sum(diff, axis=axes) + self._margin)
        return _apply_weighting(loss, self._weight, sample_weight)


class PoissonNLLLoss(Loss):
    """Negative log-likelihood of a Poisson target: exp(pred) - target * pred (from_logits),
    or pred - target * log(pred + epsilon); `compute_full` adds Stirling's approximation of
    log(target!) where target > 1. Averaged per sample, as MXNet 2 (1.x returned one mean)."""

    def __init__(self, weight: float | None = None, from_logits: bool = True,
                 batch_axis: int = 0, compute_full: bool = False, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._from_logits = from_logits
        self._compute_full = compute_full

    def forward(self, pred, target, sample_weight=None, epsilon: float = 1e-8):
        target = _reshape_like(target, pred)
        if self._from_logits:
            loss = np.exp(pred) - target * pred
        else:
            loss = pred - target * np.log(pred + epsilon)
        if self._compute_full:
            # target*log(target) - target + 0.5*log(2*pi*target), only where target > 1
            stirling = target * np.log(target + 1e-12) - target + 0.5 * np.log(
                2 * np.pi * target + 1e-12)
            loss = loss + np.where(target > 1, stirling, np.zeros_like(stirling))
        loss = _apply_weighting(loss, self._weight, sample_weight)
        return _batch_mean(loss, self._batch_axis)


class CosineEmbeddingLoss(Loss):
    """1 - cos(x1, x2) for label 1, max(0, cos(x1, x2) - margin) for label -1; one value per
    pair (MXNet 1.x returned shape (N, 1))."""

    def __init__(self, weight: float | None = None, batch_axis: int = 0, margin: float = 0.0,
                 **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._margin = margin

    def forward(self, input1, input2, label, sample_weight=None):
        input1 = _reshape_like(input1, input2)
        dot = np.sum(input1 * input2, axis=-1)
        norms = np.sqrt(np.sum(np.square(input1), axis=-1) * np.sum(np.square(input2), axis=-1))
        cos = dot / np.maximum(norms, 1e-12)
        cos = np.reshape(cos, (-1, 1))
        label = np.reshape(label, (-1, 1))
        # any label other than 1 counts as dissimilar, as in MXNet 2
        loss = np.where(label == 1, 1.0 - cos, npx.relu(cos - self._margin))
        loss = _apply_weighting(loss, self._weight, sample_weight)
        return _batch_mean(loss, self._batch_axis)
