"""Evaluation metrics (MXNet's `mxnet.gluon.metric`).

A metric accumulates over batches: `update(labels, preds)` takes arrays or lists of arrays
(kiln or NumPy), `get()` returns `(name, value)`, `reset()` starts over.

    >>> acc = metric.Accuracy()
    >>> acc.update(labels=np.array([0, 1]), preds=np.array([[0.9, 0.1], [0.3, 0.7]]))
    >>> acc.get()
    ('accuracy', 1.0)

Metrics run outside the graph, on NumPy copies of the values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as _np

from .base import KilnError, ShapeError

__all__ = ["EvalMetric", "CompositeEvalMetric", "Accuracy", "TopKAccuracy", "MAE", "MSE",
           "RMSE", "CrossEntropy", "NegativeLogLikelihood", "Loss", "CustomMetric", "create",
           "register", "check_label_shapes"]

_REGISTRY: dict[str, type] = {}


def register(klass: type) -> type:
    """Make a metric creatable by its lowercase name (`create('acc')` style)."""
    _REGISTRY[klass.__name__.lower()] = klass
    return klass


def _alias(*names: str):
    def deco(klass):
        for n in names:
            _REGISTRY[n] = klass
        return klass
    return deco


def create(metric, *args, **kwargs) -> EvalMetric:
    """A metric from a name ('acc', 'mse' ...), a function, a list of these, or an instance."""
    if isinstance(metric, EvalMetric):
        return metric
    if callable(metric):
        return CustomMetric(metric, *args, **kwargs)
    if isinstance(metric, (list, tuple)):
        composite = CompositeEvalMetric()
        for m in metric:
            composite.add(create(m, *args, **kwargs))
        return composite
    if isinstance(metric, str):
        klass = _REGISTRY.get(metric.lower())
        if klass is None:
            raise KilnError(f"unknown metric {metric!r}; known: {sorted(_REGISTRY)}")
        return klass(*args, **kwargs)
    raise KilnError(f"cannot create a metric from {type(metric).__name__}")


def _to_numpy(x) -> _np.ndarray:
    data = getattr(x, "_data", None)
    if isinstance(data, _np.ndarray):
        return data
    if getattr(x, "_kiln_symbolic", False):
        raise KilnError("metrics need concrete arrays, not symbols")
    return _np.asarray(x)


def check_label_shapes(labels, preds, wrap: bool = False, shape: bool = False):
    """Check that labels and preds agree in number (or shape); with `wrap`, turn single arrays
    into one-element lists."""
    if shape:
        lshape, pshape = tuple(_to_numpy(labels).shape), tuple(_to_numpy(preds).shape)
        if lshape != pshape:
            raise ShapeError(f"Shape of labels {lshape} does not match shape of predictions "
                             f"{pshape}")
    else:
        nl = len(labels) if isinstance(labels, (list, tuple)) else 1
        np_ = len(preds) if isinstance(preds, (list, tuple)) else 1
        if nl != np_:
            raise ShapeError(f"{nl} label array(s) but {np_} prediction array(s); pass one "
                             "label array per prediction array")
    if wrap:
        if not isinstance(labels, (list, tuple)):
            labels = [labels]
        if not isinstance(preds, (list, tuple)):
            preds = [preds]
    return labels, preds


class EvalMetric:
    """Base class: keeps `sum_metric` and `num_inst`; `get()` is their ratio."""

    def __init__(self, name: str, output_names=None, label_names=None, **kwargs):
        self.name = str(name)
        self.output_names = output_names
        self.label_names = label_names
        self._kwargs = kwargs
        self.reset()

    def __str__(self) -> str:
        return f"EvalMetric: {dict(self.get_name_value())}"

    def update(self, labels, preds) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement update(labels, preds)")

    def update_dict(self, label: dict, pred: dict) -> None:
        """Update from dicts name -> array, using output_names/label_names when set."""
        preds = [pred[n] for n in self.output_names] if self.output_names is not None else \
            list(pred.values())
        labels = [label[n] for n in self.label_names] if self.label_names is not None else \
            list(label.values())
        self.update(labels, preds)

    def reset(self) -> None:
        self.num_inst = 0
        self.sum_metric = 0.0

    def get(self) -> tuple:
        """(name, value); the value is NaN before the first update."""
        if self.num_inst == 0:
            return self.name, float("nan")
        return self.name, float(self.sum_metric / self.num_inst)

    def get_name_value(self) -> list:
        name, value = self.get()
        if not isinstance(name, list):
            name, value = [name], [value]
        return list(zip(name, value, strict=True))

    def get_config(self) -> dict:
        config = dict(self._kwargs)
        config.update({"metric": type(self).__name__, "name": self.name,
                       "output_names": self.output_names, "label_names": self.label_names})
        return config


@register
@_alias("composite")
class CompositeEvalMetric(EvalMetric):
    """Several metrics updated together; `get()` returns lists of names and values."""

    def __init__(self, metrics: Sequence | None = None, name: str = "composite",
                 output_names=None, label_names=None):
        super().__init__(name, output_names=output_names, label_names=label_names)
        self.metrics = [create(m) for m in (metrics or [])]

    def add(self, metric) -> None:
        self.metrics.append(create(metric))

    def get_metric(self, index: int) -> EvalMetric:
        try:
            return self.metrics[index]
        except IndexError:
            raise KilnError(f"metric index {index} is out of range: this composite holds "
                            f"{len(self.metrics)} metrics") from None

    def update(self, labels, preds) -> None:
        for m in self.metrics:
            m.update(labels, preds)

    def update_dict(self, labels, preds) -> None:
        for m in self.metrics:
            m.update_dict(labels, preds)

    def reset(self) -> None:
        for m in getattr(self, "metrics", []):
            m.reset()

    def get(self) -> tuple:
        names, values = [], []
        for m in self.metrics:
            name, value = m.get()
            if isinstance(name, list):
                names.extend(name)
                values.extend(value)
            else:
                names.append(name)
                values.append(value)
        return names, values


@register
@_alias("acc")
class Accuracy(EvalMetric):
    """Fraction of correct predictions. Predictions of a different shape than the labels are
    scores: the class is their argmax along `axis`."""

    def __init__(self, axis: int = 1, name: str = "accuracy", output_names=None,
                 label_names=None):
        super().__init__(name, axis=axis, output_names=output_names, label_names=label_names)
        self.axis = axis

    def update(self, labels, preds) -> None:
        labels, preds = check_label_shapes(labels, preds, True)
        for label, pred in zip(labels, preds, strict=True):
            label = _to_numpy(label)
            pred = _to_numpy(pred)
            if pred.shape != label.shape:
                pred = pred.argmax(axis=self.axis)
            pred = pred.astype(_np.int64).reshape(-1)
            label = label.astype(_np.int64).reshape(-1)
            if pred.shape != label.shape:
                raise ShapeError(f"Accuracy: {label.size} labels for {pred.size} predictions")
            self.sum_metric += int((pred == label).sum())
            self.num_inst += label.size


@register
@_alias("top_k_accuracy", "top_k_acc")
class TopKAccuracy(EvalMetric):
    """Fraction of samples whose label is among the `top_k` highest scores."""

    def __init__(self, top_k: int = 1, name: str = "top_k_accuracy", output_names=None,
                 label_names=None):
        if top_k < 1:
            raise KilnError(f"TopKAccuracy: top_k must be >= 1, not {top_k}")
        super().__init__(f"{name}_{top_k}", top_k=top_k, output_names=output_names,
                         label_names=label_names)
        self.top_k = top_k

    def update(self, labels, preds) -> None:
        labels, preds = check_label_shapes(labels, preds, True)
        for label, pred in zip(labels, preds, strict=True):
            label = _to_numpy(label).astype(_np.int64).reshape(-1)
            pred = _to_numpy(pred)
            if pred.ndim != 2:
                raise ShapeError(f"TopKAccuracy: predictions must be (batch, classes), not "
                                 f"{pred.shape}")
            if pred.shape[0] != label.size:
                raise ShapeError(f"TopKAccuracy: {label.size} labels for {pred.shape[0]} "
                                 "predictions")
            k = min(self.top_k, pred.shape[1])
            top = _np.argpartition(-pred, k - 1, axis=1)[:, :k]
            self.sum_metric += int((top == label[:, None]).any(axis=1).sum())
            self.num_inst += label.size


def _per_sample(label: _np.ndarray, pred: _np.ndarray, what: str):
    """Labels and predictions as (N, -1) float64, with (N,) and (N, 1) treated alike."""
    n = label.shape[0] if label.ndim else 1
    label = label.reshape(n, -1).astype(_np.float64)
    pred = pred.reshape(pred.shape[0] if pred.ndim else 1, -1).astype(_np.float64)
    if label.shape != pred.shape:
        raise ShapeError(f"{what}: labels of shape {label.shape} and predictions of shape "
                         f"{pred.shape} do not match")
    return label, pred, n


@register
class MAE(EvalMetric):
    """Mean absolute error (per-sample means, averaged over samples)."""

    def __init__(self, name: str = "mae", output_names=None, label_names=None):
        super().__init__(name, output_names=output_names, label_names=label_names)

    def update(self, labels, preds) -> None:
        labels, preds = check_label_shapes(labels, preds, True)
        for label, pred in zip(labels, preds, strict=True):
            label, pred, n = _per_sample(_to_numpy(label), _to_numpy(pred), "MAE")
            self.sum_metric += float(_np.abs(label - pred).mean(axis=1).sum())
            self.num_inst += n


@register
class MSE(EvalMetric):
    """Mean squared error (per-sample means, averaged over samples)."""

    def __init__(self, name: str = "mse", output_names=None, label_names=None):
        super().__init__(name, output_names=output_names, label_names=label_names)

    def update(self, labels, preds) -> None:
        labels, preds = check_label_shapes(labels, preds, True)
        for label, pred in zip(labels, preds, strict=True):
            label, pred, n = _per_sample(_to_numpy(label), _to_numpy(pred), "MSE")
            self.sum_metric += float(_np.square(label - pred).mean(axis=1).sum())
            self.num_inst += n


@register
class RMSE(MSE):
    """Root of the mean squared error."""

    def __init__(self, name: str = "rmse", output_names=None, label_names=None):
        super().__init__(name, output_names=output_names, label_names=label_names)

    def get(self) -> tuple:
        name, value = super().get()
        return name, math.sqrt(value) if not math.isnan(value) else value


@register
@_alias("ce")
class CrossEntropy(EvalMetric):
    """Mean of -log(p[label]) for predicted probabilities p (rows of preds)."""

    def __init__(self, eps: float = 1e-12, name: str = "cross-entropy", output_names=None,
                 label_names=None):
        super().__init__(name, eps=eps, output_names=output_names, label_names=label_names)
        self.eps = eps

    def update(self, labels, preds) -> None:
        labels, preds = check_label_shapes(labels, preds, True)
        for label, pred in zip(labels, preds, strict=True):
            label = _to_numpy(label).astype(_np.int64).reshape(-1)
            pred = _to_numpy(pred)
            pred = pred.reshape(-1, pred.shape[-1])
            if pred.shape[0] != label.size:
                raise ShapeError(f"{type(self).__name__}: {label.size} labels for "
                                 f"{pred.shape[0]} predictions")
            prob = pred[_np.arange(label.size), label].astype(_np.float64)
            self.sum_metric += float(-_np.log(prob + self.eps).sum())
            self.num_inst += label.size


@register
@_alias("nll_loss")
class NegativeLogLikelihood(CrossEntropy):
    def __init__(self, eps: float = 1e-12, name: str = "nll-loss", output_names=None,
                 label_names=None):
        super().__init__(eps, name, output_names, label_names)


@register
class Loss(EvalMetric):
    """The mean of the values passed as `preds` (e.g. the per-sample losses); labels unused."""

    def __init__(self, name: str = "loss", output_names=None, label_names=None):
        super().__init__(name, output_names=output_names, label_names=label_names)

    def update(self, _, preds) -> None:
        if not isinstance(preds, (list, tuple)):
            preds = [preds]
        for pred in preds:
            pred = _to_numpy(pred)
            self.sum_metric += float(pred.astype(_np.float64).sum())
            self.num_inst += pred.size


@register
class CustomMetric(EvalMetric):
    """A metric from `feval(label, pred) -> value` (or `(sum, count)`) on NumPy arrays."""

    def __init__(self, feval: Callable, name: str | None = None, allow_extra_outputs: bool = False,
                 output_names=None, label_names=None):
        if name is None:
            name = getattr(feval, "__name__", "custom")
            if name.find("<") != -1:
                name = f"custom({name})"
        super().__init__(name, output_names=output_names, label_names=label_names)
        self._feval = feval
        self._allow_extra_outputs = allow_extra_outputs

    def update(self, labels, preds) -> None:
        if self._allow_extra_outputs:     # more predictions than labels: zip drops the extra
            labels = labels if isinstance(labels, (list, tuple)) else [labels]
            preds = preds if isinstance(preds, (list, tuple)) else [preds]
        else:
            labels, preds = check_label_shapes(labels, preds, True)
        for label, pred in zip(labels, preds, strict=False):
            value = self._feval(_to_numpy(label), _to_numpy(pred))
            if isinstance(value, tuple):
                total, count = value
                self.sum_metric += total
                self.num_inst += count
            else:
                self.sum_metric += value
                self.num_inst += 1


def np(numpy_feval: Callable, name: str | None = None,
       allow_extra_outputs: bool = False) -> CustomMetric:
    """A CustomMetric from a function of NumPy arrays (MXNet's `metric.np`)."""
    def feval(label, pred):
        return numpy_feval(label, pred)
    feval.__name__ = numpy_feval.__name__
    return CustomMetric(feval, name, allow_extra_outputs)
